"""Images per second: the on-device front end vs the image cache vs the CPU render path.

Workloads (issue "Scale and hardening", part 2):

- ``fsdd-1s``: real FSDD recordings at 8 kHz tiled to 1 s windows, n_fft 256, hop 64,
  64 mels, 128x128x3 images (the demo settings);
- ``long-20s``: 20 s windows at 22.05 kHz of real FSDD speech (recordings resampled
  and concatenated), n_fft 2048, hop 512, 128 mels, 512x512x3 images (the seed's settings).

Methods, each timed per batch (32 and 64 windows) as the median of ``--repeats`` runs after
one warm-up each, in the same process, the methods alternated (frontend, cache[, render], then
the reverse order, ...):

- ``frontend``: waveform batch (an in-memory float32 array) → tensor → device →
  :class:`SpectrogramFrontend` → float images in [0, 1] on the device;
- ``cache``: a random batch of rows of an :class:`ImageCache` (uint8 memmap, already in the
  page cache: warm reads, the best case for the cache) → float tensor / 255 → device;
- ``render``: :func:`render_signal` (librosa + PIL) on each window of the batch, one process
  (CPU only; the rendering of a dataset runs it in worker processes).

The figures are for the CPU with ``--threads`` torch threads and as many BLAS threads
(default 1, like the single process render path: a multi-threaded OpenBLAS spin-waits on a loaded machine
and slows librosa's small mel products down); with a CUDA GPU the same script also prints the ``frontend`` and
``cache`` rows on ``cuda`` (synchronised before the clock stops).

End to end (issue 6): files per second of :meth:`Predictor.predict` on a CSV of audio files,
``images='cached'`` (decode, render images with librosa + PIL, resize, model) vs
``images='on-the-fly'`` (decode, waveform windows, :class:`FrontendPipeline` and model on the
predictor's device), with the same small model (``--backbone``, random weights, flip TTA,
one fold) and ``--workers`` loading processes; ``cache`` is the same predictor reading the
already-rendered image cache of those files (the model's share of the time, no audio work).
Per device, each path is warmed up once, then the paths are timed alternately (ABC, CBA, ...)
and the median of ``--repeats`` runs is quoted:

- ``fsdd``: real FSDD recordings (8 kHz, mostly one 1 s window), the fsdd-1s render settings;
- ``long-60s``: 60 s files of real FSDD speech at 22.05 kHz, 20 s windows at a 10 s hop
  (5 windows a file), the long-20s render settings.

Training (issue 6, ``--images on-the-fly``): images/s of one :meth:`Trainer.fit` epoch on FSDD
files (the fsdd-1s settings at 64x64, the preset's augmentation: flip, masks, stretches), fed
``cache`` (:class:`SegmentDataset` over the rendered image cache, albumentations on the CPU) vs
``frontend`` (:class:`WaveformDataset` over the decoded audio, :class:`FrontendPipeline`
with :class:`DeviceAugment` on the training device); same model (``--backbone``), same batches,
alternated, medians. The one-off set-up of each (render the cache vs decode the audio) is
printed beside it.

Run: ``.venv/bin/python benchmarks/frontend.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pandas as pd
import soundfile as sf
import torch
from threadpoolctl import threadpool_limits

from specimg.audio import load_audio, pad_audio
from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig
from specimg.models import create_backbone
from specimg.predict import Predictor
from specimg.spectrogram import ImageCache, render_dataset, render_signal
from specimg.spectrogram._frontend import SpectrogramFrontend

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "datasets" / "fsdd"


def fsdd_windows(n: int, seed: int = 0) -> np.ndarray:
    """``n`` FSDD recordings at 8 kHz, each tiled to one 1 s window: (n, 8000) float32."""
    table = pd.read_csv(FSDD / "labels.csv").sample(n, random_state=seed, replace=n > 3000)
    return np.stack([pad_audio(load_audio(FSDD / p, sr=8000), length=8000)[:8000] for p in table["path"]])


def long_windows(n: int, seconds: float = 20.0, sr: int = 22050, seed: int = 0) -> np.ndarray:
    """``n`` windows of real speech: random FSDD recordings at ``sr`` concatenated: (n, seconds * sr) float32."""
    rng = np.random.default_rng(seed)
    table = pd.read_csv(FSDD / "labels.csv").sample(200, random_state=seed)
    clips = [load_audio(FSDD / p, sr=sr) for p in table["path"]]
    length = int(round(seconds * sr))
    out = np.empty((n, length), dtype=np.float32)
    for i in range(n):
        parts: List[np.ndarray] = []
        total = 0
        while total < length:
            parts.append(clips[rng.integers(len(clips))])
            total += len(parts[-1])
        out[i] = np.concatenate(parts)[:length]
    return out


def timed(fns: Dict[str, Callable[[], object]], repeats: int, device: torch.device) -> Dict[str, float]:
    """Median seconds of each ``fn()``: one warm-up call each, then ``repeats`` rounds with the order of the
    methods reversed every other round (AB, BA, ...), so that a change in the machine's load hits them alike."""
    for fn in fns.values():
        fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for r in range(repeats):
        for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            fns[k]()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def bench_workload(name: str, cfg: RenderConfig, windows: np.ndarray, batch_sizes: List[int], repeats: int,
                   render_windows: int, tmp: Path, devices: List[torch.device]) -> List[Dict[str, object]]:
    rng = np.random.default_rng(0)
    n = len(windows)
    frontend_u8 = SpectrogramFrontend(cfg, output="uint8")
    with torch.no_grad():  # the cache holds the images of these windows (the content does not change the speed)
        images = torch.cat([frontend_u8(torch.from_numpy(windows[i:i + 32])) for i in range(0, n, 32)])
    images = images.permute(0, 2, 3, 1).contiguous().numpy()  # (n, H, W, 3) uint8
    cache = ImageCache.from_arrays(tmp / name, images, pd.DataFrame({"file_id": np.arange(n), "segment": 0}),
                                   pd.DataFrame({"file_id": np.arange(n), "path": [f"w{i}" for i in range(n)]}),
                                   config=cfg)
    memmap = cache.images
    np.asarray(memmap).sum()  # warm the page cache

    rows: List[Dict[str, object]] = []
    # render path: per window, CPU, independent of the batch size (timed with the CPU's first batch size)
    sub = windows[:render_windows]
    render_rate = float("nan")
    for device in devices:
        frontend = SpectrogramFrontend(cfg).to(device)
        for bs in batch_sizes:
            starts = rng.integers(0, n - bs + 1, size=repeats + 1)
            it = iter(np.tile(starts, 4))
            idx = [np.sort(rng.choice(n, size=bs, replace=False)) for _ in range(repeats + 1)]
            it_idx = iter(idx * 4)

            def run_frontend() -> torch.Tensor:
                s = next(it)
                x = torch.from_numpy(windows[s:s + bs]).to(device, non_blocking=True)  # (bs, n_samples)
                with torch.no_grad():
                    return frontend(x)  # (bs, 3, H, W)

            def run_cache() -> torch.Tensor:
                batch = torch.from_numpy(memmap[next(it_idx)])  # (bs, H, W, 3) uint8, fancy-indexed copy
                return batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)  # (bs, 3, H, W)

            fns: Dict[str, Callable[[], object]] = {"frontend": run_frontend, "cache": run_cache}
            if device.type == "cpu" and render_rate != render_rate:
                fns["render"] = lambda: [render_signal(y, config=cfg) for y in sub]
            t = timed(fns, repeats, device)
            if "render" in t:
                render_rate = len(sub) / t["render"]
            rows.append(dict(workload=name, device=str(device), batch=bs, frontend=bs / t["frontend"],
                             cache=bs / t["cache"], render=render_rate if device.type == "cpu" else float("nan")))
    return rows


def fsdd_files(n: int, seed: int = 0) -> List[str]:
    """Paths of ``n`` random FSDD recordings."""
    table = pd.read_csv(FSDD / "labels.csv").sample(n, random_state=seed)
    return [str(FSDD / p) for p in table["path"]]


def long_files(n: int, folder: Path, seconds: float = 60.0, sr: int = 22050, seed: int = 0) -> List[str]:
    """Write ``n`` files of ``seconds`` of real FSDD speech at ``sr`` (recordings back to back); their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, y in enumerate(long_windows(n, seconds=seconds, sr=sr, seed=seed)):
        paths.append(str(folder / f"long_{i}.wav"))
        sf.write(paths[-1], y, sr, subtype="PCM_16")
    return paths


def bench_predict(name: str, cfg: RenderConfig, paths: List[str], backbone: str, repeats: int, workers: int,
                  tmp: Path, devices: List[torch.device]) -> List[Dict[str, object]]:
    """Files/s of Predictor.predict on ``paths`` with each front end (and from the rendered cache), per device."""
    csv = tmp / f"{name}.csv"
    pd.DataFrame({"path": paths}).to_csv(csv, index=False)
    cache = render_dataset(csv, tmp / f"{name}-cache", cfg, progress=False)
    h, w = cfg.spectrogram.image_size
    torch.manual_seed(0)
    model = create_backbone(backbone, num_classes=10, weights="none").eval()
    rows: List[Dict[str, object]] = []
    for device in devices:
        preds = {fe: Predictor([model], classes=[str(d) for d in range(10)], render_config=cfg,
                               mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), input_size=(3, h, w),
                               device=str(device), tta="flip", batch_size=64, images=images)
                 for fe, images in (("cpu", "cached"), ("gpu", "on-the-fly"))}
        runs: Dict[str, Callable[[], object]] = {
            "cpu": lambda: preds["cpu"].predict(csv, workers=workers, progress=False),
            "gpu": lambda: preds["gpu"].predict(csv, workers=workers, progress=False),
            "cache": lambda: preds["cpu"].predict(cache, progress=False),
        }
        for fn in runs.values():  # warm-up: imports, librosa's and the front end's first calls, allocator
            fn()
        times: Dict[str, List[float]] = {k: [] for k in runs}
        for r in range(repeats):
            for k in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                res = runs[k]()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times[k].append(time.perf_counter() - t0)
                assert len(res.files) == len(paths) and res.errors.empty  # type: ignore[attr-defined]
        rate = {k: len(paths) / float(np.median(v)) for k, v in times.items()}
        rows.append(dict(workload=name, device=str(device), files=len(paths),
                         windows=len(cache.segments), **rate))
    return rows


def bench_train(paths: List[str], backbone: str, repeats: int, tmp: Path, devices: List[torch.device]
                ) -> List[Dict[str, object]]:
    """Training images/s of one epoch fed from the image cache vs through the device front end, per device."""
    from specimg.config import TrainConfig
    from specimg.data import (DeviceAugment, FrontendPipeline, SegmentDataset, WaveformDataset, WaveformSet,
                              cache_targets, spectrogram_transforms)
    from specimg.training import Trainer

    labels = [Path(p).name.split("_")[0] for p in paths]
    csv = tmp / "train.csv"
    pd.DataFrame({"path": paths, "label": labels}).to_csv(csv, index=False)
    cfg = RenderConfig(audio=AudioConfig(sample_rate=8000), segment=SegmentConfig(seconds=1.0, hop=0.5),
                       spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=64, image_size=(64, 64)))
    aug = dict(hflip=0.5, time_mask=0.1, freq_mask=0.1, freq_stretch=0.15, time_stretch=0.15)
    t0 = time.perf_counter()
    cache = render_dataset(csv, tmp / "train-cache", cfg, progress=False)
    t_render = time.perf_counter() - t0
    t0 = time.perf_counter()
    waves = WaveformSet.load(csv, cfg, progress=False)
    t_load = time.perf_counter() - t0
    fids, targets = cache_targets(cache)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    rows: List[Dict[str, object]] = []
    for device in devices:
        config = TrainConfig().with_options(backbone=backbone, weights="none", epochs=1, warmup_epochs=0.0, batch_size=32,
                             device=str(device), num_workers=0, **aug)
        tf = spectrogram_transforms(train=True, cache_size=(64, 64), image_size=(64, 64), n_masks=2, **aug)
        sets = {"cache": (SegmentDataset(cache.images, targets, file_ids=fids, transform=tf, mean=mean, std=std,
                                         num_classes=10), None),
                "frontend": (WaveformDataset(waves, num_classes=10),
                             FrontendPipeline(cfg, mean=mean, std=std, augment=DeviceAugment(n_masks=2, **aug)))}

        def run(kind: str) -> None:
            data, pipe = sets[kind]
            torch.manual_seed(0)
            model = create_backbone(backbone, num_classes=10, weights="none")
            Trainer(config, progress=False, batch_transform=pipe).fit(model, data, num_classes=10)

        for kind in sets:  # warm-up
            run(kind)
        times: Dict[str, List[float]] = {k: [] for k in sets}
        for r in range(repeats):
            for k in (list(sets) if r % 2 == 0 else list(sets)[::-1]):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                run(k)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times[k].append(time.perf_counter() - t0)
        rate = {k: len(cache.segments) / float(np.median(v)) for k, v in times.items()}
        rows.append(dict(device=str(device), files=len(paths), windows=len(cache.segments), render_s=t_render,
                         load_s=t_load, **rate))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per setting; the median is quoted")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--quick", action="store_true", help="3 repeats, fewer windows: a smoke run")
    ap.add_argument("--backbone", default="test_efficientnet",
                    help="model of the end-to-end prediction figure (random weights; default: timm's tiny "
                         "test_efficientnet, so that the front end's share shows)")
    ap.add_argument("--workers", type=int, default=1, help="Predictor.predict loading processes")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    threadpool_limits(limits=args.threads)  # numpy's BLAS (the render path's mel product) as many threads as torch
    n_short, n_long, render_short, render_long = 512, 160, 64, 8
    n_files, n_long_files = 512, 24
    if args.quick:
        args.repeats, n_short, n_long, render_short, render_long = 3, 256, 96, 32, 4
        n_files, n_long_files = 128, 6
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), {platform.processor() or platform.machine()}"
          + (f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"medians of {args.repeats} runs after a warm-up; images/s; cache = warm memmap reads; "
          f"{os.cpu_count()} CPU cores, load average {load:.1f} at the start (other work skews CPU figures)")

    fsdd_cfg = RenderConfig(audio=AudioConfig(sample_rate=8000), segment=SegmentConfig(seconds=1.0, hop=0.5),
                            spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=64, image_size=(128, 128)))
    long_cfg = RenderConfig(audio=AudioConfig(sample_rate=22050), segment=SegmentConfig(seconds=20.0, hop=10.0),
                            spectrogram=SpectrogramConfig(n_fft=2048, hop_length=512, n_mels=128,
                                                          image_size=(512, 512)))
    rows: List[Dict[str, object]] = []
    pred_rows: List[Dict[str, object]] = []
    train_rows: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        train_rows += bench_train(fsdd_files(n_files), args.backbone, args.repeats, Path(tmp), devices)
        rows += bench_workload("fsdd-1s 128x128", fsdd_cfg, fsdd_windows(n_short), [32, 64], args.repeats,
                               render_short, Path(tmp), devices)
        rows += bench_workload("long-20s 512x512", long_cfg, long_windows(n_long), [32, 64], args.repeats,
                               render_long, Path(tmp), devices)
        pred_rows += bench_predict("fsdd 128x128", fsdd_cfg, fsdd_files(n_files), args.backbone, args.repeats,
                                   args.workers, Path(tmp), devices)
        pred_rows += bench_predict("long-60s 512x512", long_cfg, long_files(n_long_files, Path(tmp) / "long"),
                                   args.backbone, args.repeats, args.workers, Path(tmp), devices)
    print(f"{'workload':<18} {'device':<6} {'batch':>5} {'frontend':>10} {'cache':>10} {'render':>9} "
          f"{'frontend/cache':>15} {'frontend/render':>16}")
    for r in rows:
        render = r["render"]
        render_s = f"{render:>9.1f}" if render == render else f"{'-':>9}"
        ratio_r = f"{r['frontend'] / render:>15.2f}x" if render == render else f"{'-':>16}"
        print(f"{r['workload']:<18} {r['device']:<6} {r['batch']:>5} {r['frontend']:>10.1f} {r['cache']:>10.1f} "
              f"{render_s} {r['frontend'] / r['cache']:>14.3f}x {ratio_r}")
    print(f"\nend-to-end Predictor.predict, files/s (backbone {args.backbone}, random weights, flip TTA, 1 model, "
          f"{args.workers} loading worker(s); medians of {args.repeats} alternated runs after a warm-up each):")
    print(f"{'workload':<18} {'device':<6} {'files':>5} {'windows':>7} {'cpu':>9} {'gpu':>9} {'cache':>9} "
          f"{'gpu/cpu':>8}")
    for r in pred_rows:
        print(f"{r['workload']:<18} {r['device']:<6} {r['files']:>5} {r['windows']:>7} {r['cpu']:>9.1f} "
              f"{r['gpu']:>9.1f} {r['cache']:>9.1f} {r['gpu'] / r['cpu']:>7.2f}x")
    print(f"\ntraining, one epoch, images/s (backbone {args.backbone}, random weights, batch 32, flip + masks + "
          f"stretches; medians of {args.repeats} alternated runs after a warm-up each):")
    print(f"{'device':<6} {'files':>5} {'windows':>7} {'cache':>9} {'frontend':>9} {'frontend/cache':>15} "
          f"{'render once (s)':>16} {'decode once (s)':>16}")
    for r in train_rows:
        print(f"{r['device']:<6} {r['files']:>5} {r['windows']:>7} {r['cache']:>9.1f} {r['frontend']:>9.1f} "
              f"{r['frontend'] / r['cache']:>14.2f}x {r['render_s']:>16.2f} {r['load_s']:>16.2f}")


if __name__ == "__main__":
    main()

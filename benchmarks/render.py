"""Render throughput: specimg's image cache vs the seed solution's per-window PNG loop, at equal process counts.

Workload (issue 14): ``--files`` (20) files of 120 s at 22.05 kHz made of real FSDD
speech (recordings resampled and concatenated), 20 s windows at a hop of 10 s and of
5 s, 512x512 images, n_fft 2048, hop 512, 128 mels on both sides. Both sides render
the same files.

- ``seed``: the seed solution's loop: for every window, ``librosa.load(offset=,
  duration=)``, ``librosa.feature.melspectrogram``, ``power_to_db``, uint8, PIL
  bilinear resize, RGB, one PNG file. With P processes it runs over the files in a
  ``ProcessPoolExecutor`` of P workers with specimg's initializer (one BLAS thread
  each), the pool specimg uses;
- ``specimg``: ``render_dataset(workers=P)`` (the uint8 cache), and ``specimg+png``
  with ``png=True`` (also a grayscale PNG per window).

Every run is a fresh subprocess with ``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``
(one thread per process on both sides), timed from after its imports. The runs of one
setting alternate (seed, specimg, specimg+png, then the reverse order, ...) and the
median of ``--repeats`` (>= 3) is quoted with the ratio to the seed's median measured in
the same run. Peak RSS is the larger of the process's own ``VmHWM`` and its children's ``ru_maxrss``;
``specimg`` is also run on a quarter of the files to show that it stays flat.

``--stages`` instead prints where one 120 s file's time goes (process CPU time, one
thread, medians of ``--repeats`` rounds that time every stage of the three sides once,
the order reversed every other round): the seed loop per window; specimg before issue 14
(librosa's float64 STFT, dense mel product, three HWC channels per image, a shard
``.npy`` per file then a consolidation copy into ``images.npy``) and after it (float32
STFT a block of frames at a time, the mel filterbank in bands, one plane per image
written straight into the preallocated ``images.npy``); and each of those levers
alone, alternated with the alternative it replaced in the same way.

``--whole`` times whole processes, start-up and imports included, as a user meets them (issue 24): the
command line ``specimg render CSV --out DIR --workers 1 ...`` (the same render settings) against the seed's
loop as a script of its own (``benchmarks/seed_render.py``), one process each, one BLAS thread, on 60 files of
120 s (``--files``), at hops of 10 and 5 s, alternated, medians of 3; then specimg's peak RSS (``VmHWM``) on a
quarter of the files and on all of them, and both sides on one file (their start-up).

``--thread-ab`` times specimg's render workers with one BLAS/OpenMP thread each
(``specimg._parallel.single_threaded_worker``) against the libraries' default of a
thread per core in every worker, alternated in one run.

Run: ``.venv/bin/python benchmarks/render.py`` (``--quick`` for a smoke run;
``--stages`` for the breakdown; ``--whole`` for whole processes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

from seed_render import seed_file

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "datasets" / "fsdd"
SR, SECONDS, SIZE = 22050, 20.0, 512
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def make_long_files(folder: Path, n: int, seconds: float, seed: int = 0) -> Path:
    """N files of real speech: random FSDD recordings concatenated to ``seconds``, at 22.05 kHz."""
    import librosa
    import pandas as pd
    import soundfile as sf

    rng = np.random.default_rng(seed)
    table = pd.read_csv(FSDD / "labels.csv", dtype={"label": str})
    clips = [librosa.resample(sf.read(FSDD / p, dtype="float32")[0], orig_sr=8000, target_sr=SR)
             for p in table["path"].sample(300, random_state=seed)]
    rows = []
    for i in range(n):
        parts, total = [], 0
        while total < seconds * SR:
            c = clips[rng.integers(len(clips))]
            parts.append(c)
            total += len(c)
        y = np.concatenate(parts)[: int(seconds * SR)]
        name = f"long_{i:02d}.wav"
        sf.write(folder / name, y, SR)
        rows.append({"path": name, "label": f"c{i % 2}"})
    pd.DataFrame(rows).to_csv(folder / "files.csv", index=False)
    sf.write(folder / "warm.wav", np.concatenate(clips)[: int(SECONDS * SR)], SR)  # each run's warm-up file
    return folder / "files.csv"


def render_config(hop: float):
    from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig

    return RenderConfig(audio=AudioConfig(sample_rate=SR), segment=SegmentConfig(seconds=SECONDS, hop=hop),
                        spectrogram=SpectrogramConfig(n_fft=2048, hop_length=512, n_mels=128,
                                                      image_size=(SIZE, SIZE)))


# ----------------------------------------------------------------------------- the seed's loop
def seed_run(paths: List[str], out: Path, hop: float, processes: int) -> int:
    from concurrent.futures import ProcessPoolExecutor

    from specimg._parallel import single_threaded_worker

    out.mkdir(parents=True, exist_ok=True)
    if processes == 1:
        return sum(seed_file(p, str(out), hop) for p in paths)
    with ProcessPoolExecutor(max_workers=processes, initializer=single_threaded_worker) as pool:
        return sum(pool.map(seed_file, paths, [str(out)] * len(paths), [hop] * len(paths)))


# ----------------------------------------------------------------------------- one timed run per subprocess
def child(args: argparse.Namespace) -> None:
    """One run of one side, in this fresh process; prints a JSON line."""
    import librosa  # noqa: F401  imported before the clock starts, on both sides
    import pandas as pd
    import PIL.Image  # noqa: F401
    import scipy.fft  # noqa: F401

    from specimg.spectrogram import render_dataset

    table = pd.read_csv(args.csv, dtype=str).iloc[: args.n]
    table["path"] = [str(Path(args.csv).parent / p) for p in table["path"]]
    if args.child == "default-threads":  # the A/B of --thread-ab: workers keep BLAS/OpenMP's thread per core
        import specimg._parallel

        specimg._parallel.single_threaded_worker = _default_threads  # the pool's initializer, looked up at start
    # warm-up, both sides: librosa loads its modules (scipy.signal ...) on first use; not part of the throughput
    warm = Path(args.out).with_name(Path(args.out).name + "-warm")
    if args.child == "seed":
        seed_file(str(Path(args.csv).parent / "warm.wav"), str(_mkdir(warm)), args.hop)
    else:
        from specimg.spectrogram import render_file

        render_file(Path(args.csv).parent / "warm.wav", config=render_config(args.hop))
    t0, c0 = time.perf_counter(), _cpu_seconds()
    if args.child == "seed":
        n_images = seed_run(list(table["path"]), Path(args.out), args.hop, args.processes)
    else:
        cache = render_dataset(table, args.out, render_config(args.hop), workers=args.processes,
                               png=args.child == "specimg+png", progress=False)
        n_images = len(cache.images)
    dt, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    # this process's own peak from VmHWM: its ru_maxrss would carry the benchmark driver's high-water mark over
    # from the fork; pool workers forked from here report theirs through RUSAGE_CHILDREN
    rss = max(_vm_hwm_kb(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"images": n_images, "seconds": dt, "cpu_seconds": cpu, "peak_rss_mb": rss / 1024}))


def _vm_hwm_kb() -> int:
    """Peak resident memory of this process image (``VmHWM`` in ``/proc/self/status``), in kB."""
    with open("/proc/self/status") as fh:
        return int(next(line for line in fh if line.startswith("VmHWM")).split()[1])


def _default_threads() -> None:
    """The A side of --thread-ab: a pool process keeps the libraries' default threads."""


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children (a pool's workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_side(side: str, csv: Path, out: Path, hop: float, n: int, processes: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", side, "--csv", str(csv), "--out", str(out),
           "--hop", str(hop), "--n", str(n), "--processes", str(processes)]
    env = {**os.environ, **(ONE_THREAD if side != "default-threads" else {})}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError(f"{side} run failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def alternated(sides: List[str], repeats: int, run: Callable[[str, int], dict]) -> Dict[str, List[dict]]:
    """``repeats`` rounds of every side, the order reversed every other round (ABC, CBA, ...)."""
    runs: Dict[str, List[dict]] = {s: [] for s in sides}
    for r in range(repeats):
        for s in (sides if r % 2 == 0 else sides[::-1]):
            runs[s].append(run(s, r))
    return runs


def compare(csv: Path, tmp: Path, n: int, repeats: int, processes: List[int], hops: List[float]) -> None:
    sides = ["seed", "specimg", "specimg+png"]
    print("img/s: wall clock; CPU ms/img: user + system time of the run's processes per image (what the machine's "
          "other load does not change); ratio: the seed's median over this side's, per column")
    print(f"{'hop':>4} {'P':>2} {'side':<12} {'images':>6} {'img/s':>8} {'ratio':>7} {'CPU ms/img':>11} {'ratio':>7} "
          f"{'peak MB':>8}   runs (img/s)")
    for hop in hops:
        for p in processes:
            runs = alternated(sides, repeats, lambda s, r: run_side(s, csv, tmp / f"{s}_{hop}_{p}_{r}", hop, n, p))
            rate = {s: float(np.median([x["images"] / x["seconds"] for x in v])) for s, v in runs.items()}
            cpu = {s: float(np.median([1000 * x["cpu_seconds"] / x["images"] for x in v])) for s, v in runs.items()}
            for s, v in runs.items():
                print(f"{hop:>4.0f} {p:>2} {s:<12} {v[0]['images']:>6} {rate[s]:>8.2f} {rate[s] / rate['seed']:>6.1f}x "
                      f"{cpu[s]:>11.2f} {cpu['seed'] / cpu[s]:>6.1f}x {max(x['peak_rss_mb'] for x in v):>8.0f}   "
                      + ", ".join(f"{x['images'] / x['seconds']:.1f}" for x in v))
            for r in range(repeats):
                for s in sides:
                    _rmtree(tmp / f"{s}_{hop}_{p}_{r}")
    quarter = max(1, n // 4)
    p = max(processes)
    small = run_side("specimg", csv, tmp / "mem_small", 5.0, quarter, p)
    large = run_side("specimg", csv, tmp / "mem_large", 5.0, n, p)
    print(f"specimg peak RSS, hop 5, {p} processes: {quarter} files {small['peak_rss_mb']:.0f} MB "
          f"({small['images']} images) vs {n} files {large['peak_rss_mb']:.0f} MB ({large['images']} images): "
          f"ratio {large['peak_rss_mb'] / small['peak_rss_mb']:.2f}")


def whole_run(side: str, csv: Path, out: Path, hop: float) -> dict:
    """One whole process of one side, start-up and imports included: wall seconds, images, peak RSS."""
    if side == "seed":
        target = ["path", str(Path(__file__).with_name("seed_render.py")), str(csv), str(out), "--hop", str(hop)]
    else:  # the command line a user types (`specimg render ...`), one process (--workers 1)
        target = ["module", "specimg", "render", str(csv), "--out", str(out), "--workers", "1",
                  "--sample-rate", str(SR), "--seconds", str(SECONDS), "--hop", str(hop), "--n-fft", "2048",
                  "--hop-length", "512", "--n-mels", "128", "--image-size", str(SIZE), "--quiet"]
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _WITH_PEAK, *target], capture_output=True, text=True,
                         env={**os.environ, **ONE_THREAD})
    dt = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(f"{side} failed ({' '.join(target)}):\n{res.stderr[-3000:]}")
    peak_kb = int(res.stderr.strip().splitlines()[-1].split()[-1])
    images = len(list(out.glob("*.png"))) if side == "seed" else _cached_images(out)
    return {"seconds": dt, "images": images, "peak_rss_mb": peak_kb / 1024}


#: runs a script or a module as ``python PATH ...`` / ``python -m MODULE ...`` would, then prints the process's
#: own peak RSS (VmHWM; a child's ru_maxrss would carry the driver's over the fork and exec)
_WITH_PEAK = """
import atexit, runpy, sys
def _peak():
    with open("/proc/self/status") as fh:
        print("VmHWM_kB", next(ln for ln in fh if ln.startswith("VmHWM")).split()[1], file=sys.stderr)
atexit.register(_peak)
kind, target, *rest = sys.argv[1:]
sys.argv = [target, *rest]
runpy.run_path(target, run_name="__main__") if kind == "path" else runpy.run_module(target, run_name="__main__",
                                                                                    alter_sys=True)
"""


def _cached_images(out: Path) -> int:
    from specimg.spectrogram import ImageCache

    return len(ImageCache.open(out).images)


def whole(csv: Path, tmp: Path, n: int, repeats: int, hops: List[float]) -> None:
    """--whole: ``specimg render --workers 1`` against ``seed_render.py`` as whole processes, alternated."""
    import pandas as pd

    print(f"whole processes, one each (start-up and imports included), {n} files, one BLAS thread, wall seconds, "
          f"medians of {repeats} alternated runs (seed, specimg, then the reverse order, ...)")
    print(f"{'hop':>4} {'side':<8} {'images':>6} {'seconds':>8} {'ratio':>7} {'peak MB':>8}   runs (s)")
    for hop in hops:
        runs = alternated(["seed", "specimg"], repeats, lambda s, r: whole_run(s, csv, tmp / f"w_{s}_{hop}_{r}", hop))
        med = {s: float(np.median([x["seconds"] for x in v])) for s, v in runs.items()}
        for s, v in runs.items():
            print(f"{hop:>4.0f} {s:<8} {v[0]['images']:>6} {med[s]:>8.2f} {med['seed'] / med[s]:>6.1f}x "
                  f"{max(x['peak_rss_mb'] for x in v):>8.0f}   " + ", ".join(f"{x['seconds']:.2f}" for x in v))
        for r in range(repeats):
            for s in runs:
                _rmtree(tmp / f"w_{s}_{hop}_{r}")
    quarter = tmp / "quarter.csv"
    pd.read_csv(csv).iloc[: max(1, n // 4)].to_csv(quarter, index=False)
    small, large = (whole_run("specimg", c, tmp / f"w_mem_{k}", 5.0) for k, c in (("s", quarter), ("l", csv)))
    print(f"specimg peak RSS, one process, hop 5: {max(1, n // 4)} files {small['peak_rss_mb']:.0f} MB vs {n} files "
          f"{large['peak_rss_mb']:.0f} MB: ratio {large['peak_rss_mb'] / small['peak_rss_mb']:.2f}")
    start = tmp / "one.csv"
    pd.read_csv(csv).iloc[:1].to_csv(start, index=False)
    one = alternated(["seed", "specimg"], repeats, lambda s, r: whole_run(s, start, tmp / f"w_one_{s}_{r}", 10.0))
    print("one file (start-up's share), hop 10: " + ", ".join(
        f"{s} {np.median([x['seconds'] for x in v]):.2f} s" for s, v in one.items()))


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- where the time goes
def _interleaved_ms(fns: Dict[object, Callable[[], object]], repeats: int) -> Dict[object, float]:
    """Median process CPU ms of each function over ``repeats`` rounds that time every function once, in order
    and then in the reverse order (A B C, C B A, ...), after one untimed call each (first calls, caches): the
    sides compared alternate, so that the load of a shared machine falls on them alike."""
    for fn in fns.values():
        fn()
    keys = list(fns)
    times: Dict[object, List[float]] = {k: [] for k in keys}
    for r in range(repeats):
        for k in (keys if r % 2 == 0 else keys[::-1]):
            t0 = time.process_time()
            fns[k]()
            times[k].append(time.process_time() - t0)
    return {k: 1000.0 * float(np.median(v)) for k, v in times.items()}


def before_features(y: np.ndarray, spec) -> np.ndarray:
    """specimg's feature matrix before issue 14: librosa.stft (float64 FFT), |X|^2, dense BLAS mel product, dB."""
    import librosa

    stft = librosa.stft(y, n_fft=spec.n_fft, hop_length=spec.hop_length)
    mag = np.abs(stft)
    mel = librosa.filters.mel(sr=SR, n_fft=spec.n_fft, n_mels=spec.n_mels).dot(mag * mag)
    db = librosa.power_to_db(mel, ref=np.max, top_db=spec.top_db)
    return ((db + spec.top_db) / spec.top_db).astype(np.float32)


def before_images(F: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """specimg's images before issue 14: each window resized, then copied into three HWC channels."""
    from specimg.spectrogram._image import _resize

    out = np.empty((len(frames), SIZE, SIZE, 3), dtype=np.uint8)
    for i, (a, b) in enumerate(frames):
        out[i, :, :, 0] = _resize(F[:, a:b], (SIZE, SIZE))
        out[i, :, :, 1] = out[i, :, :, 0]
        out[i, :, :, 2] = out[i, :, :, 0]
    return out


def stages(csv: Path, tmp: Path, repeats: int, seconds: float = 120.0) -> None:
    """Per-stage CPU time of one 120 s file, before and after, and each lever alone."""
    import librosa
    import scipy.fft
    import soundfile as sf
    import torch
    from threadpoolctl import threadpool_limits
    from PIL import Image

    from specimg.spectrogram import _image as im
    from specimg.spectrogram._render import expected_windows

    threadpool_limits(1)
    torch.set_num_threads(1)
    path = str(csv.parent / "long_00.wav")
    print(f"one file of {seconds:.0f} s at {SR} Hz, 20 s windows, {SIZE}x{SIZE}; process CPU ms, one thread, "
          f"medians of {repeats} alternated rounds (every stage of every side once a round, ABC, CBA, ...)")
    for hop in (10.0, 5.0):
        cfg = render_config(hop)
        spec = cfg.spectrogram
        y = im._load(path, cfg)
        yp, _, frames = im._window_plan(y, config=cfg, label=None, path=path)
        n_win = len(frames)
        F_before = before_features(yp, spec)
        F = im.feature_matrix(yp, sr=SR, config=spec)
        mel = im.mel_power(yp, sr=SR, config=spec)
        hwc = before_images(F_before, frames)
        planes = im.window_planes(F, frames, config=spec)
        mm = np.lib.format.open_memmap(tmp / "rows.npy", mode="w+", dtype=np.uint8, shape=planes.shape)

        def shard_then_copy() -> None:  # before: a shard per file, then consolidation reads it into images.npy
            np.save(tmp / "shard.npy", hwc)
            with open(tmp / "final.npy", "wb") as fh:
                fh.write(np.load(tmp / "shard.npy").tobytes())

        seed = {
            "load the window (librosa.load offset/duration)":
                lambda: librosa.load(path, sr=SR, offset=50.0, duration=SECONDS),
            "melspectrogram (float64 FFT, einsum mel)":
                lambda: librosa.feature.melspectrogram(y=yp[:int(SECONDS * SR)], sr=SR, n_fft=2048, hop_length=512,
                                                       n_mels=128),
            "uint8 + resize + RGB": lambda: Image.fromarray(im._to_u8(F[:, frames[1, 0]:frames[1, 1]])).resize(
                (SIZE, SIZE), Image.BILINEAR).convert("RGB"),
            "PNG save (RGB, level 6)": lambda: Image.fromarray(hwc[0]).save(tmp / "seed.png"),
        }
        before = {
            "load (libsndfile's float32 conversion)": lambda: sf.read(path, dtype="float32", always_2d=True),
            "STFT float64 + dense mel + dB (librosa)": lambda: before_features(yp, spec),
            "images: resize, 3 HWC channels": lambda: before_images(F_before, frames),
            "shard .npy + consolidation copy": shard_then_copy,
        }
        after = {
            "load (specimg: 16-bit PCM read as int16, scaled)": lambda: im._load(path, cfg),
            "header -> planned rows": lambda: expected_windows(path, cfg, None),
            "STFT float32 + banded mel (mel_power)": lambda: im.mel_power(yp, sr=SR, config=spec),
            "dB + [0, 1]": lambda: ((librosa.power_to_db(mel, ref=np.max, top_db=80.0) + 80.0) / 80.0).astype(
                np.float32),
            "images: resize into the memmap rows (1 plane)": lambda mm=mm: im.window_planes(F, frames, config=spec,
                                                                                            out=mm),
        }
        # every stage of the three sides timed once per round, the rounds alternating the order
        t = _interleaved_ms({(side, k): f for side, stages_ in (("seed", seed), ("before", before), ("after", after))
                             for k, f in stages_.items()}, repeats)
        t_seed, t_before, t_after = ({k: t[side, k] for k in stages_} for side, stages_ in
                                     (("seed", seed), ("before", before), ("after", after)))
        print(f"\nhop {hop:.0f} s: {n_win} windows")
        print(f"  seed loop, per window ({n_win} per file):")
        for k, v in t_seed.items():
            print(f"    {k:<52} {v:8.2f} ms")
        seed_file_ms = n_win * sum(t_seed.values())
        print(f"    {'= per file':<52} {seed_file_ms:8.1f} ms  ({sum(t_seed.values()):.1f} ms/image)")
        for name, t in (("specimg before", t_before), ("specimg after", t_after)):
            print(f"  {name}, per file:")
            for k, v in t.items():
                print(f"    {k:<52} {v:8.2f} ms")
            total = sum(t.values())
            print(f"    {'= per file':<52} {total:8.1f} ms  ({total / n_win:.2f} ms/image, "
                  f"{seed_file_ms / total:.1f}x the seed loop)")
        _levers(yp, spec, hwc, tmp, repeats, scipy.fft)
        del mm


def _levers(yp, spec, hwc, tmp: Path, repeats: int, sfft) -> None:
    """Each lever of issue 14 alone: its time against the alternative it replaced, on the same file."""
    import torch

    from specimg.spectrogram import _image as im

    n_fft, hop = spec.n_fft, spec.hop_length
    w32 = im._window(n_fft, None)
    frames_v = np.lib.stride_tricks.sliding_window_view(np.pad(yp, n_fft // 2), n_fft)[::hop]
    bank = im._mel_bank(SR, n_fft, spec.n_mels, 0.0, None)
    dense = np.ascontiguousarray(np.concatenate([_dense_part(g, n_fft) for g in bank], axis=1))  # (bins, n_mels)
    spec32 = sfft.rfft(frames_v[:128] * w32, axis=-1)
    power = np.square(spec32.real) + np.square(spec32.imag)
    out = np.empty((128, spec.n_mels), np.float32)
    n_blocks = len(frames_v) / 128.0
    block32 = torch.from_numpy(np.ascontiguousarray(frames_v[:128] * w32))
    plane = np.ascontiguousarray(hwc[..., 0])  # (n_windows, H, W): what specimg stores
    rows = [
        ("FFT of the file's frames: float64 (librosa's)",
         lambda: sfft.rfft(frames_v[:128] * w32.astype(np.float64), axis=-1), n_blocks),
        ("FFT of the file's frames: float32 (scipy, specimg)", lambda: sfft.rfft(frames_v[:128] * w32, axis=-1), n_blocks),
        ("FFT of the frames: float32, torch (MKL; not used)", lambda: torch.fft.rfft(block32, dim=-1), n_blocks),
        ("mel product: dense (n_mels x bins)", lambda: power @ dense, n_blocks),
        ("mel product: 8 bands of the filterbank", lambda: im._apply_bank(bank, power, out), n_blocks),
        ("|X|^2, then the bands' product", lambda: im._apply_bank(
            bank, np.square(spec32.real) + np.square(spec32.imag), out), n_blocks),
        ("squared (re, im) pairs in the bands' product (specimg)", lambda: im._apply_bank(
            bank, np.square(spec32.view(np.float32)), out, interleaved=True), n_blocks),
        ("store: 3 HWC channels into a new .npy (memmap)", lambda: _store(tmp / "s3.npy", hwc), 1.0),
        ("store: 1 plane into a new .npy (memmap)", lambda: _store(tmp / "s1.npy", plane), 1.0),
        ("PNG copies: RGB, level 6 (per image)", lambda: _png(hwc[0], tmp, "RGB", 6), 1.0),
        ("PNG copies: grayscale, level 1 (specimg, per image)", lambda: _png(hwc[0, :, :, 0], tmp, "L", 1), 1.0),
    ]
    print("  levers, per file (each alone):")
    t = _interleaved_ms({name: fn for name, fn, _ in rows}, repeats)  # each lever and its alternative alternate
    for name, _, scale in rows:
        print(f"    {name:<52} {t[name] * scale:8.2f} ms")
    print(f"    bytes per image stored: 3 HWC channels {hwc[0].nbytes}, one plane {hwc[0, :, :, 0].nbytes}")
    print(f"    what torch's FFT would cost render first (a fresh process, after numpy/scipy/librosa): "
          f"{_torch_import_cost()}")


def _torch_import_cost() -> str:
    """``import torch`` in a fresh interpreter: wall seconds and resident memory (VmRSS) before / after.

    Resident memory is read from ``/proc/self/status``: ``ru_maxrss`` of a process started from a large one
    carries the parent's high-water mark.
    """
    code = ("import time\nimport numpy, scipy.fft, librosa\n"
            "rss = lambda: int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]) // 1024\n"
            "r0 = rss(); t = time.perf_counter()\nimport torch\n"
            "print(f'import torch {time.perf_counter() - t:.2f} s, resident memory {r0} -> {rss()} MB')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def _store(path: Path, images: np.ndarray) -> None:
    """Write images into a new file's memmap (first touch of every page, as a render's rows)."""
    path.unlink(missing_ok=True)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=images.shape)
    mm[:] = images
    del mm


def _dense_part(group, n_fft: int) -> np.ndarray:
    """One band group's weights placed in the full (bins, bands) filterbank."""
    a, b, lo, hi, w = group[:5]
    full = np.zeros((n_fft // 2 + 1, b - a), np.float32)
    full[lo:hi] = w
    return full


def _png(img: np.ndarray, tmp: Path, mode: str, level: int) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(img)).save(tmp / f"x_{mode}.png", compress_level=level)


# ----------------------------------------------------------------------------- main
def fsdd_render(out: Path, workers: int) -> dict:
    code = r"""
import json, sys, time
from specimg.presets import fsdd_render_config
from specimg.spectrogram import render_dataset
t0 = time.perf_counter()
c = render_dataset(sys.argv[1], sys.argv[2], fsdd_render_config(128), workers=int(sys.argv[3]), progress=False)
print(json.dumps({"files": len(c.files), "images": len(c.images), "seconds": time.perf_counter() - t0}))
"""
    res = subprocess.run([sys.executable, "-c", code, str(FSDD / "labels.csv"), str(out), str(workers)],
                         capture_output=True, text=True, check=True, env={**os.environ, **ONE_THREAD})
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=None, help="files of 120 s (default 20; --whole: 60)")
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="process counts (both sides)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per side and setting; the median is quoted")
    ap.add_argument("--hops", type=float, nargs="+", default=[10.0, 5.0], help="window hops in seconds")
    ap.add_argument("--quick", action="store_true", help="4 files of 60 s, 1 repeat, no FSDD")
    ap.add_argument("--stages", action="store_true", help="only the per-stage breakdown of one 120 s file")
    ap.add_argument("--whole", action="store_true",
                    help="whole processes, start-up included: `specimg render --workers 1` against "
                         "benchmarks/seed_render.py (default here: 60 files, hops 10 and 5, medians of 3)")
    ap.add_argument("--thread-ab", action="store_true",
                    help="only compare render workers with one BLAS/OpenMP thread each (specimg's) vs the libraries' "
                         "default thread per core, hop 10, alternated, medians of --repeats")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    for name, kind in (("--csv", str), ("--out", str), ("--hop", float), ("--n", int)):
        ap.add_argument(name, type=kind, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.processes = args.processes[0]
        return child(args)
    seconds = 120.0
    if args.files is None:
        args.files = 60 if args.whole else 20
    if args.quick:
        args.files, args.repeats, seconds = 4, 1, 60.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv = make_long_files(tmp, args.files if not args.stages else 1, seconds)
        load = os.getloadavg()[0]
        print(f"workload: {args.files} files x {seconds:.0f} s at {SR} Hz (real FSDD speech), 20 s windows, "
              f"{SIZE}x{SIZE}, n_fft 2048, hop 512, 128 mels; {os.cpu_count()} CPU cores, load average {load:.1f} "
              "at the start (other work skews the figures; the ratios are within one run)")
        if args.stages:
            return stages(csv, tmp, max(args.repeats, 5), seconds)
        if args.whole:
            return whole(csv, tmp, args.files, args.repeats, args.hops)
        if args.thread_ab:
            p = max(args.processes)
            runs = alternated(["specimg", "default-threads"], args.repeats,
                              lambda s, r: run_side(s, csv, tmp / f"ab_{s}_{r}", 10.0, args.files, p))
            one, dflt = (float(np.median([x["images"] / x["seconds"] for x in v])) for v in runs.values())
            print(f"hop 10, {p} workers: one thread per worker {one:.1f} img/s vs default threads "
                  f"{dflt:.1f} img/s: ratio {one / dflt:.2f}x")
            return
        compare(csv, tmp, args.files, args.repeats, args.processes, args.hops)
        if not args.quick and (FSDD / "labels.csv").exists():
            p = max(args.processes)
            f = fsdd_render(tmp / "fsdd", p)
            print(f"whole FSDD ({f['files']} files -> {f['images']} images of 128x128, 1 s windows, hop 0.5 s, "
                  f"{p} processes): {f['seconds']:.1f} s")


if __name__ == "__main__":
    main()

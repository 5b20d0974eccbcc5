"""Training benchmark on FSDD: speaker-held-out accuracy, pretrained vs random init, pipeline throughput.

(a) Leave-one-speaker-out (6 folds) file accuracy, mean +- std over folds,
    ``tf_efficientnet_lite0`` with its offline ImageNet weights, CPU-friendly
    settings (64x64 images, 1 s windows, a few epochs).
(b) The same folds, the same budget (epochs, schedule, seed) from a random
    initialisation (``weights="none"``): what the ImageNet weights buy.
(c) Training throughput (images/s) of the full specimg pipeline (SegmentDataset
    over the memmapped cache, albumentations flip + masks, DataLoader, Trainer
    step with its schedule, class-weighted loss, AMP/channels-last on CUDA) vs
    a bare timm training loop (index the memmap, normalise, forward, backward,
    SGD step) on the same cached images, same backbone, same batch size and
    precision, alternated epoch by epoch in the same run (A B, B A, ...);
    prints the medians and their ratio (target >= 0.9x).

Run: ``.venv/bin/python benchmarks/train.py`` (long: 2 x 6 folds x 4 epochs of
~2,500 images, about an hour on 2 CPU cores), or with ``--quick`` for a smoke
run that still prints every figure (6 takes per digit and speaker, 2 of the 6
folds, 3 epochs, 32x32 images; a few minutes).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pandas as pd
import torch

from specimg.config import TrainConfig
from specimg.presets import fsdd_render_config, fsdd_train_config
from specimg.data import SegmentDataset, cache_targets, spectrogram_transforms
from specimg.models import backbone_data_config, create_backbone
from specimg.spectrogram import ImageCache, render_dataset
from specimg.training import Callback, Trainer, train_cv

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "datasets" / "fsdd"
BACKBONE = "tf_efficientnet_lite0"


def fsdd_cache(out: Path, *, takes: int, size: int, workers: int) -> ImageCache:
    table = pd.read_csv(FSDD / "labels.csv", dtype={"label": str})
    take = table["path"].str.extract(r"_(\d+)\.wav$")[0].astype(int)
    table = table[take < takes].copy()
    table["path"] = [str(FSDD / p) for p in table["path"]]
    return render_dataset(table, out / f"cache_{takes}_{size}", fsdd_render_config(size), workers=workers,
                          progress=False)


# ----------------------------------------------------------------------------- (c) throughput
class _EpochTimer(Callback):
    """Wall-clock and process CPU seconds of every training epoch."""

    def __init__(self) -> None:
        self.wall: List[float] = []
        self.cpu: List[float] = []

    def on_epoch_start(self, trainer, epoch):
        self._t = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, trainer, epoch, logs):  # no validation data: the epoch is the training loop
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        self.wall.append(time.perf_counter() - self._t[0])
        self.cpu.append(time.process_time() - self._t[1])


class BareLoop:
    """A bare timm training loop on the same images (same batch size, device, precision), an epoch at a time."""

    def __init__(self, cache: ImageCache, rows: np.ndarray, config: TrainConfig, trainer: Trainer) -> None:
        import timm

        self.device, self.amp, self.cl, self.trainer = (trainer.device, trainer.amp_dtype, trainer.channels_last,
                                                        trainer)
        torch.manual_seed(0)
        self.model = timm.create_model(BACKBONE, num_classes=len(cache.classes)).to(self.device)
        if self.cl:
            self.model = self.model.to(memory_format=torch.channels_last)
        cfg = timm.data.resolve_data_config(model=self.model)
        self.mean = torch.tensor(cfg["mean"], device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(cfg["std"], device=self.device).view(1, 3, 1, 1) * 255
        _, self.targets = cache_targets(cache)
        optim = config.optim
        self.opt = torch.optim.SGD(self.model.parameters(), lr=optim.lr, momentum=optim.momentum,
                                   weight_decay=optim.weight_decay)
        self.images, self.rows, self.bs, self.rng = cache.images, rows, optim.batch_size, np.random.default_rng(0)
        self.timer = _EpochTimer()
        self.model.train()

    def epoch(self) -> None:
        """One epoch, its wall-clock and CPU seconds appended to ``self.timer``."""
        device, bs = self.device, self.bs
        self.timer.on_epoch_start(self.trainer, 0)
        order = self.rng.permutation(self.rows)
        for i in range(0, len(order) - bs + 1, bs):
            idx = np.sort(order[i:i + bs])
            x = torch.from_numpy(self.images[idx]).to(device, non_blocking=True)  # (B, H, W, 3) uint8
            x = (x.permute(0, 3, 1, 2).float() - self.mean) / self.std  # (B, 3, H, W)
            if self.cl:
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(self.targets[idx]).to(device)
            with torch.autocast(device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                loss = torch.nn.functional.cross_entropy(self.model(x).float(), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        self.timer.on_epoch_end(self.trainer, 0, {})


class _Alternate(_EpochTimer):
    """Times the specimg pipeline's epochs and runs one epoch of the bare loop beside each, after the odd epochs
    and before the even ones (A B, B A, A B, ...), so that each side runs as often first as second and the load
    of a shared machine falls on both alike."""

    def __init__(self, bare: BareLoop) -> None:
        super().__init__()
        self.bare = bare

    def on_epoch_start(self, trainer, epoch):  # the trainer counts epochs from 1
        if epoch % 2 == 0:
            self.bare.epoch()
        super().on_epoch_start(trainer, epoch)

    def on_epoch_end(self, trainer, epoch, logs):
        super().on_epoch_end(trainer, epoch, logs)
        if epoch % 2 == 1:
            self.bare.epoch()


def library_epochs(cache: ImageCache, rows: np.ndarray, config: TrainConfig, epochs: int,
                   timer: _EpochTimer) -> _EpochTimer:
    """Times per epoch of the full specimg pipeline (no validation, no checkpoints), into ``timer``."""
    torch.manual_seed(0)
    model = create_backbone(BACKBONE, num_classes=len(cache.classes), weights="none")
    data_cfg = backbone_data_config(model, image_size=cache.images.shape[1:3])
    hw = tuple(cache.images.shape[1:3])
    aug = config.augment
    tf = spectrogram_transforms(train=True, image_size=hw, cache_size=hw, hflip=aug.hflip,
                                time_mask=aug.time_mask, freq_mask=aug.freq_mask)
    ds = SegmentDataset.from_cache(cache, rows, transform=tf, mean=data_cfg["mean"], std=data_cfg["std"])
    Trainer(config.with_options(epochs=epochs), callbacks=[timer], progress=False).fit(model, ds)
    return timer


def throughput(cache: ImageCache, config: TrainConfig, *, n_images: int, epochs: int) -> Dict:
    """Images/s of both loops, alternated epoch by epoch (A B, B A, ...) over ``epochs`` epochs each in one run,
    the first epoch of each dropped (warm-up: kernel selection, allocator, page cache, loader start).

    Each figure is the median over the timed epochs, and the ratio is that of the medians of the same run. On
    the CPU (timed with one torch thread) with no loader workers the ratio is taken on process CPU time, which
    other jobs on a shared machine do not inflate (wall-clock figures are printed too); on CUDA, or with loader
    worker processes (whose CPU time the parent does not see), on wall-clock time.
    """
    threads = torch.get_num_threads()
    on_cpu = Trainer(config, progress=False).device.type == "cpu"
    if on_cpu:  # one thread: no OpenMP spin-waiting, so process CPU time is the work done, whatever else runs
        torch.set_num_threads(1)
    try:
        return _throughput(cache, config, n_images=n_images, epochs=epochs)
    finally:
        torch.set_num_threads(threads)


def _throughput(cache: ImageCache, config: TrainConfig, *, n_images: int, epochs: int) -> Dict:
    rows = np.random.default_rng(0).permutation(len(cache.images))[:n_images]
    batch = config.optim.batch_size
    n_used = (len(rows) // batch) * batch  # both drop the last partial batch
    trainer = Trainer(config, progress=False)
    sides = library_epochs(cache, rows, config, epochs, _Alternate(BareLoop(cache, rows, config, trainer)))
    bare = sides.bare.timer
    assert len(sides.wall) == len(bare.wall) == epochs  # every specimg epoch has its bare one
    lib_wall, lib_cpu, bare_wall, bare_cpu = sides.wall[1:], sides.cpu[1:], bare.wall[1:], bare.cpu[1:]
    use_cpu = trainer.device.type == "cpu" and trainer.num_workers == 0
    wall_ratio = float(np.median(bare_wall) / np.median(lib_wall))
    cpu_ratio = float(np.median(bare_cpu) / np.median(lib_cpu))
    return {"device": str(trainer.device), "batch_size": batch, "images_per_epoch": n_used,
            "epochs_timed": len(lib_wall), "amp": str(trainer.amp_dtype), "num_workers": trainer.num_workers,
            "torch_threads": torch.get_num_threads(), "order": "A B, B A, ... (epoch by epoch)",
            "specimg_images_per_s": n_used / float(np.median(lib_wall)),
            "bare_images_per_s": n_used / float(np.median(bare_wall)),
            "specimg_images_per_s_best": n_used / float(np.min(lib_wall)),
            "bare_images_per_s_best": n_used / float(np.min(bare_wall)),
            "specimg_epoch_s": [round(s, 3) for s in lib_wall], "bare_epoch_s": [round(s, 3) for s in bare_wall],
            "wall_ratio": wall_ratio, "cpu_time_ratio": cpu_ratio if use_cpu else None,
            "ratio": cpu_ratio if use_cpu else wall_ratio, "ratio_basis": "process CPU time" if use_cpu else "wall"}


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 360 files, 2 of the 6 folds, 3 epochs, 32x32")
    ap.add_argument("--out", default=str(ROOT / "bench_out" / "train"))
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=2, help="render processes")
    ap.add_argument("--init-folds", default=None,
                    help="folds (comma-separated) on which to train the random-init comparison; default: all run")
    args = ap.parse_args()

    quick = args.quick
    takes, size = (6, 32) if quick else (50, 64)
    epochs = args.epochs or (3 if quick else 8)
    folds = [0, 1] if quick else None
    out = Path(args.out) / ("quick" if quick else "full")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cache = fsdd_cache(out, takes=takes, size=size, workers=args.workers)
    print(f"cache: {len(cache.files)} files, {len(cache.images)} images {cache.images.shape[1:]} "
          f"({time.perf_counter() - t0:.1f} s)")
    base = fsdd_train_config(epochs=epochs, device=args.device, seed=0)  # the demo's settings
    results: Dict = {"quick": quick, "takes": takes, "image_size": size, "epochs": epochs}

    init_folds = [int(f) for f in args.init_folds.split(",")] if args.init_folds else folds
    for name, weights in (("pretrained", "offline"), ("random_init", "none")):
        t0 = time.perf_counter()
        res = train_cv(cache, out / f"run_{name}", base.replace(weights=weights),
                       folds=folds if name == "pretrained" else init_folds, resume=False,
                       verbose=False)  # always trained afresh: the time is part of the result
        m = res.metrics
        results[name] = {"folds": res.folds, "mean": m["mean"]["accuracy"], "std": m["std"]["accuracy"],
                         "per_speaker": {g: v["accuracy"] for g, v in m["per_group"].items()},
                         "seconds": time.perf_counter() - t0}
        print(f"({'a' if name == 'pretrained' else 'b'}) {name:>11}: speaker-held-out file accuracy "
              f"{m['mean']['accuracy']:.3f} +- {m['std']['accuracy']:.3f} over folds {res.folds} "
              f"({time.perf_counter() - t0:.0f} s)")
        print("      per held-out speaker: " + ", ".join(f"{g} {v['accuracy']:.3f}" for g, v in m["per_group"].items()))
    same = results["random_init"]["folds"]
    pre = json.loads((out / "run_pretrained" / "metrics.json").read_text())["folds"]
    pre_same = float(np.mean([pre[str(k)]["accuracy"] for k in same]))
    gain = pre_same - results["random_init"]["mean"]
    results["pretrained_on_init_folds"] = pre_same
    print(f"    on folds {same}: pretrained {pre_same:.3f} vs random init {results['random_init']['mean']:.3f}, "
          f"same budget: {gain:+.3f} accuracy from the ImageNet weights")

    tp = throughput(cache, base, n_images=128 if quick else 1024, epochs=10)
    results["throughput"] = tp
    print(f"(c) throughput on {tp['device']} (batch {tp['batch_size']}, amp {tp['amp']}, "
          f"{tp['num_workers']} loader workers, {tp['torch_threads']} torch thread(s), medians of "
          f"{tp['epochs_timed']} epochs each, alternated A B, B A, ...): specimg "
          f"{tp['specimg_images_per_s']:.1f} img/s, bare timm loop {tp['bare_images_per_s']:.1f} img/s (wall clock, "
          f"ratio {tp['wall_ratio']:.2f}x)")
    print(f"    specimg / bare throughput ratio on {tp['ratio_basis']}: {tp['ratio']:.2f}x (target >= 0.9x)")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()

"""The demo's CPU training time, lever by lever, against the settings it had before issue 14.

Every setting trains the same fold (the held-out speaker ``yweweler``) of the
same FSDD subset (``--files`` files per speaker, all six speakers) for
``--epochs`` epochs with ``specimg.train_cv`` and the FSDD preset, and its fit
time is read from the fold's ``log.csv`` (training and validation, without
rendering or model creation). Settings run in alternating order, ``--repeats``
times each, and the medians are compared with the baseline measured in the
same run:

- ``before``: the demo before issue 14: 64x64 images, batches of 32, validation
  (with flip TTA) after every epoch, 2 torch threads;
- ``img64x48``: 64 mel bands x 48 time columns instead of 64 (a quarter fewer pixels);
- ``validate_last``: validate the last epoch only (``validate_last=1``);
- ``threads1``: one torch thread instead of two (how far the second core helps one process);
- ``freeze_stem_b0`` / ``freeze_stem_b01``: the stem and the first (two) block(s) kept at their
  ImageNet weights (``freeze=``; no backward pass through them);
- ``ema``: the moving average of the weights (``ema=0.99``: what it costs).

Printed: images/s per setting (training images x epochs / fit seconds), the
median fit seconds and the speed-up over ``before`` (a ratio > 1 is faster).
Accuracy is not measured here: ``benchmarks/fsdd_variants.py`` does that.

Run: ``.venv/bin/python benchmarks/demo_speed.py [--repeats 3] [--epochs 2] [--files 100]``
(about 4 minutes on 2 CPU cores). One run here (2026-12-01, 2 busy cores, 500 training files, 2 epochs,
3 alternated repeats; fit seconds, speed-up over ``before``): before 3.73 s (1.00), img64x48 3.57 s (1.05),
validate_last 3.85 s (0.97), threads1 5.95 s (0.63), freeze_stem_b0 4.38 s (0.85), freeze_stem_b01
3.60 s (1.04), ema 4.63 s (0.81). Only one thread instead of two (0.63x) and the weight average (0.81x)
stand out of the run-to-run spread (about +-10 %): at 64x64 on this CPU no lever tried here buys the
2x that a 5-minute demo would need.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
import pandas as pd
import torch

from specimg.presets import fsdd_render_config, fsdd_train_config
from specimg.spectrogram import render_dataset
from specimg.training import train_cv

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "datasets" / "fsdd"

#: setting -> (image (height, width), torch threads, TrainConfig overrides of the pre-issue-14 demo)
SETTINGS: Dict[str, Tuple[Tuple[int, int], int, Dict[str, Any]]] = {
    "before": ((64, 64), 2, {}),
    "img64x48": ((64, 48), 2, {}),
    "validate_last": ((64, 64), 2, dict(validate_last=1)),
    "threads1": ((64, 64), 1, {}),
    "freeze_stem_b0": ((64, 64), 2, dict(freeze=("conv_stem", "bn1", "blocks.0"))),
    "freeze_stem_b01": ((64, 64), 2, dict(freeze=("conv_stem", "bn1", "blocks.0", "blocks.1"))),
    "ema": ((64, 64), 2, dict(ema=0.99)),
}


def _subset(n_per_speaker: int, work: Path) -> Path:
    table = pd.read_csv(FSDD / "labels.csv", dtype=str)
    table = table.sample(frac=1.0, random_state=0).groupby("speaker").head(n_per_speaker)
    table["path"] = [str(FSDD / p) for p in table["path"]]
    csv = work / "subset.csv"
    table.to_csv(csv, index=False)
    return csv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--files", type=int, default=100, help="files per speaker (6 speakers)")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="specimg_demo_speed_"))
    csv = _subset(args.files, work)
    settings = SETTINGS
    names = args.settings.split(",")
    caches = {}
    for size in {settings[n][0] for n in names}:
        rcfg = fsdd_render_config()
        rcfg = rcfg.replace(spectrogram=rcfg.spectrogram.replace(image_size=size))
        caches[size] = render_dataset(csv, work / f"cache_{size[0]}x{size[1]}", rcfg, workers=2, progress=False)
    seconds: Dict[str, list] = {n: [] for n in names}
    n_train = None
    for r in range(args.repeats):
        for name in (names if r % 2 == 0 else names[::-1]):  # alternate the order
            size, threads, over = settings[name]
            over = {"epochs": args.epochs, **over}
            torch.set_num_threads(threads)
            cfg = fsdd_train_config(device="cpu", **over)
            run = work / "runs" / name
            res = train_cv(caches[size], run, cfg, folds=[0], verbose=False, resume=False)
            log = pd.read_csv(run / "fold_0" / "log.csv")
            seconds[name].append(float(log["seconds"].iloc[-1]))
            n_train = len(caches[size].files) - len(res.oof_files)  # the out-of-fold files are fold 0's
            print(f"  repeat {r + 1} {name}: {seconds[name][-1]:.1f} s", flush=True)
    base = np.median(seconds["before"]) if "before" in seconds else None
    rows = []
    for name in names:
        med = float(np.median(seconds[name]))
        rows.append({"setting": name, "median_fit_s": round(med, 2),
                     "images_per_s": round(n_train * args.epochs / med, 1) if n_train else None,
                     "speedup_vs_before": round(base / med, 3) if base else None,
                     "all_s": " ".join(f"{s:.1f}" for s in seconds[name])})
    print(f"\n{args.files} files x 6 speakers, fold 0 held out ({n_train} training files), {args.epochs} epochs, "
          f"{args.repeats} alternated repeats, started {time.strftime('%H:%M')}:")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()

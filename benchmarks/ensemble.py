"""Benchmark: do the stackers, the blends and ``--method auto`` beat the single models and their plain mean?

Four genuinely different real models are cross-validated on the Free Spoken Digit Dataset with the library's own
cross-validation (:func:`specimg.train_cv`), leave-one-speaker-out (6 speakers, 6 folds: no voice is both trained on
and validated), all on the same folds:

- ``lite0_mel64``: ``tf_efficientnet_lite0`` (offline ImageNet weights) on 64x64 64-band mel images (the FSDD preset);
- ``lite0_mfcc64``: the same backbone on 64x64 images of 30 MFCCs;
- ``lite1_mel48``: ``tf_efficientnet_lite1`` on 48x48 mel images (another backbone; smaller images keep it CPU-sized);
- ``lite0_mel40``: ``tf_efficientnet_lite0`` on 40x40 mel images (another image size).

Their out-of-fold predictions are then stacked with :func:`specimg.stacking.compare_stackers`: every candidate
(each model alone, the mean, the fitted blend, the CNN stackers, LightGBM, the seed's 0.45/0.45/0.1 blend and
``auto``) is scored on the same outer folds (the speakers), ``auto`` choosing per fold by an inner cross-validation
on the other speakers only. The table gives the pooled accuracy/UAR/log-loss, the accuracy on each held-out
speaker, and a paired comparison against the mean and the best single model (per-speaker differences with a
Wilcoxon signed-rank test and a sign test; per-file discordant pairs with an exact McNemar test).

    nice -n 10 .venv/bin/python benchmarks/ensemble.py --runs-dir /work/bench_out/ensemble_runs \\
        --out /work/bench_out/ensemble > /work/bench_out/ensemble.log 2>&1 &
    .venv/bin/python benchmarks/ensemble.py --quick      # smoke run: 300 files, 3 speakers, 3 epochs (minutes)

Trained runs are kept in ``--runs-dir``: a second call with the same options trains nothing (``train_cv``
resumes and skips finished folds) and only stacks again. Outputs in ``--out``: ``ensemble_table.md`` /
``ensemble_table.csv`` (the table), ``per_fold.csv``, ``comparison.json`` and ``model_weights.png`` (the CNN
stacker's per-class model weights, averaged over the fold stackers).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
FSDD = REPO.parent / "shared" / "datasets" / "fsdd"

#: The base models: name -> (backbone, image size, spectrogram overrides).
MODELS: Dict[str, Any] = {
    "lite0_mel64": ("tf_efficientnet_lite0", 64, {}),
    "lite0_mfcc64": ("tf_efficientnet_lite0", 64, {"feature": "mfcc", "n_mfcc": 30}),
    "lite1_mel48": ("tf_efficientnet_lite1", 48, {}),
    "lite0_mel40": ("tf_efficientnet_lite0", 40, {}),
}
QUICK_SPEAKERS = ("george", "jackson", "lucas")


def fsdd_table(fsdd: Path, *, quick: bool) -> pd.DataFrame:
    """The FSDD files to use (absolute paths); quick: takes 0-9 of three speakers (300 files)."""
    df = pd.read_csv(fsdd / "labels.csv", dtype={"label": str})
    if quick:
        take = df["path"].str.extract(r"_(\d+)\.wav$")[0].astype(int)
        df = df[(take < 10) & df["speaker"].isin(QUICK_SPEAKERS)]
    df = df.assign(path=[str((fsdd / p).resolve()) for p in df["path"]])
    return df[["path", "label", "speaker"]].reset_index(drop=True)


def train_models(table: pd.DataFrame, runs_dir: Path, *, quick: bool, epochs: int, workers: int) -> List[Path]:
    """Render each distinct image config once and cross-validate every model (resumes; finished runs are kept)."""
    from specimg.presets import fsdd_render_config, fsdd_train_config
    from specimg.spectrogram import render_dataset
    from specimg.training import train_cv

    n_splits = table["speaker"].nunique()
    runs = []
    for name, (backbone, size, spec) in MODELS.items():
        size = {64: 48, 48: 40, 40: 32}[size] if quick else size
        rcfg = fsdd_render_config(size)
        rcfg = rcfg.replace(spectrogram=rcfg.spectrogram.replace(**spec))
        cache_dir = runs_dir / "caches" / rcfg.hash()
        cache = render_dataset(table, cache_dir, rcfg, workers=workers, progress=False)
        cfg = fsdd_train_config(backbone=backbone, epochs=epochs, n_splits=n_splits, device="cpu")
        t0 = time.perf_counter()
        res = train_cv(cache, runs_dir / name, cfg, verbose=False)
        print(f"{name}: {backbone}, {size}x{size} {spec.get('feature', 'mel')}, {epochs} epoch(s): out-of-fold "
              f"accuracy {res.metrics['oof']['accuracy']:.4f} ({time.perf_counter() - t0:.0f} s this call)",
              flush=True)
        runs.append(runs_dir / name)
    return runs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 300 files of 3 speakers, 3 epochs, 48/40/32 px")
    p.add_argument("--runs-dir", type=Path, help="where the trained runs are kept (default OUT/runs)")
    p.add_argument("--out", type=Path, help="output folder (default bench_out/ensemble[_quick])")
    p.add_argument("--fsdd", type=Path, default=FSDD, help=f"FSDD folder (default {FSDD})")
    p.add_argument("--epochs", type=int, help="epochs per fold (default 4; quick 3)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--workers", type=int, default=1, help="render processes")
    p.add_argument("--train-only", action="store_true", help="train (or resume) the runs and stop")
    args = p.parse_args(argv)
    if not (args.fsdd / "labels.csv").is_file():
        p.error(f"FSDD not found at {args.fsdd} (expected labels.csv there); pass --fsdd.")
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or REPO / "bench_out" / ("ensemble_quick" if args.quick else "ensemble")
    runs_dir = args.runs_dir or out / "runs"
    epochs = args.epochs or (3 if args.quick else 4)
    t0 = time.perf_counter()
    runs = train_models(fsdd_table(args.fsdd, quick=args.quick), runs_dir, quick=args.quick, epochs=epochs,
                        workers=args.workers)
    print(f"training: {time.perf_counter() - t0:.0f} s", flush=True)
    if args.train_only:
        return 0
    raise SystemExit("stacking half not written yet")


if __name__ == "__main__":
    sys.exit(main())

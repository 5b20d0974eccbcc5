"""The main job on the bundled default data (FSDD): render -> train -> predict held-out speakers -> report.

``make demo`` runs this. It renders the Free Spoken Digit Dataset into 1 s
mel-spectrogram images and fine-tunes the offline ImageNet EfficientNet-Lite0
(:func:`specimg.presets.fsdd_demo_config`: 64x64 images, 16 epochs with mixup
and a moving average of the weights) on four of the six speakers. The model of the last epoch (chosen by no one) then predicts
every file of the two held-out speakers with flip TTA, and the report of that
prediction is written. The last line is the held-out file accuracy, with the
speakers named. Re-running it resumes: finished images and folds are skipped.

    python examples/demo_fsdd.py [--data FSDD_FOLDER] --out demo_out [--epochs 8]
    python examples/demo_fsdd.py --full --out demo_full   # six-fold leave-one-speaker-out instead

The held-out speakers are fold 0 of a three-fold speaker split (scikit-learn's
``StratifiedGroupKFold`` with the run's seed, 0): two voices, 1,000 files.
``--full`` trains all six leave-one-speaker-out folds instead, with the
previous demo's settings (:func:`specimg.presets.fsdd_train_config`: 8 epochs),
and prints each held-out speaker's accuracy at the best epoch (chosen on that
speaker, so optimistic) and at the last.

Without ``--data`` FSDD is taken from ``../shared/datasets/fsdd`` or, failing that, downloaded once into the
user cache (:func:`specimg.datasets.fsdd_path`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from specimg.datasets import fsdd_path
from specimg.predict import Predictor, evaluate_predictions, report_run
from specimg.presets import fsdd_demo_config
from specimg.spectrogram import render_dataset
from specimg.training import Run, train_cv


def held_out_split(out: Path, cache, config, group, device: str) -> None:
    """Train fold 0 of a three-fold group split, predict its held-out files, report, print the last line."""
    t0 = time.perf_counter()
    train_cv(cache, out / "run", config, folds=[0])
    run = Run.open(out / "run")
    print(f"\ntrained on {run.folds['fold'].ne(0).sum()} files in {time.perf_counter() - t0:.0f} s")

    held = cache.files.assign(fold=cache.files["path"].map(run.folds.set_index("path")["fold"]))
    held = held[held["fold"] == 0]
    names = ", ".join(sorted(held[group].unique())) if group else f"{len(held)} files of fold 0"
    t0 = time.perf_counter()
    pred = Predictor.from_run(out / "run", device=device, tta="flip")
    table = held[["abspath", "label"]].rename(columns={"abspath": "path"})
    result = pred.predict(table, out=out / "held_out.csv", progress=False)
    print(f"predicted {len(result.files)} held-out files with flip TTA in {time.perf_counter() - t0:.0f} s "
          f"-> {out / 'held_out.csv'}")
    metrics = evaluate_predictions(out / "held_out.csv", report=out / "report")
    print(f"report: {out / 'report' / 'report.md'}  (UAR {metrics['uar']:.3f})")
    accuracy = float((result.files["prediction"].astype(str) == result.files["label"].astype(str)).mean())
    who = "speakers" if group else "files"
    print(f"held-out {who} {names} ({len(held)} files, last epoch): file accuracy {accuracy:.3f}")


def leave_one_speaker_out(out: Path, cache, config, group) -> None:
    """The six-fold protocol: every speaker held out once."""
    t0 = time.perf_counter()
    result = train_cv(cache, out / "run", config)
    print(f"\ntrained {len(result.folds)} folds in {time.perf_counter() - t0:.0f} s")
    m = result.metrics
    run, last = Run.open(out / "run"), []
    print("file accuracy per held-out fold: at the best epoch (chosen on that fold, as train_cv keeps it) and at "
          "the last epoch (chosen by nobody):")
    for k, row in sorted(m["folds"].items(), key=lambda kv: int(kv[0])):
        held_out = run.folds.loc[run.folds["fold"] == int(k), group].iloc[0] if group else f"fold {k}"
        last.append(float(pd.read_csv(run.fold_dir(int(k)) / Run.LOG)["val_accuracy"].iloc[-1]))
        print(f"  {held_out:>10}: best {row['accuracy']:.3f} (epoch {row['best_epoch']})  last {last[-1]:.3f}  "
              f"({row['n_files']} files)")
    print(f"out-of-fold report: {report_run(out / 'run') / 'report.md'}")
    print(f"held-out speakers, mean +- std over the {len(last)} folds: file accuracy {m['mean']['accuracy']:.3f} "
          f"+- {m['std']['accuracy']:.3f} at the best epoch, {np.mean(last):.3f} +- {np.std(last):.3f} at the last")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None,
                    help="a folder with a labels.csv, or of class folders (default: FSDD from "
                         "../shared/datasets/fsdd, else downloaded once into the user cache)")
    ap.add_argument("--out", default="demo_out")
    ap.add_argument("--full", action="store_true",
                    help="six-fold leave-one-speaker-out (about 13 minutes on 2 cores) instead of one split")
    ap.add_argument("--epochs", type=int, default=None, help="epochs (default: the preset's 16, --full 8)")
    ap.add_argument("--workers", type=int, default=2, help="render processes")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = ap.parse_args()

    out = Path(args.out)
    if args.data is not None:  # your data: a folder with a labels.csv, or a folder of class folders
        data = Path(args.data)
        source = data / "labels.csv" if (data / "labels.csv").exists() else data
    else:
        source = fsdd_path() / "labels.csv"
    print(f"data: {source}")
    t0 = time.perf_counter()
    render_config, _ = fsdd_demo_config()
    cache = render_dataset(source, out / "cache", render_config, workers=args.workers)
    n_reused = cache.reused_files
    print(f"\n{len(cache.files)} files ({len(cache.files) - n_reused} rendered, {n_reused} reused from the cache) -> "
          f"{len(cache.images)} images {cache.images.shape[1:]} in {time.perf_counter() - t0:.1f} s ({cache.root})")
    if len(cache.errors):
        print(f"{len(cache.errors)} file(s) failed: see {cache.root / 'errors.csv'}")

    group = "speaker" if "speaker" in cache.files.columns else None
    n_groups = cache.files[group].nunique() if group else 5
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    if args.full:
        _, config = fsdd_demo_config(device=args.device, group_column=group, n_splits=min(6, n_groups),
                                     split=False, **overrides)
        leave_one_speaker_out(out, cache, config, group)
    else:
        _, config = fsdd_demo_config(device=args.device, group_column=group, **overrides)
        held_out_split(out, cache, config, group, args.device)


if __name__ == "__main__":
    main()

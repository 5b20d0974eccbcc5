"""The main job on the bundled default data (FSDD): render -> train -> per-speaker accuracy -> report -> predict.

``make demo`` runs this. It renders the Free Spoken Digit Dataset into 1 s
mel-spectrogram images, fine-tunes the offline ImageNet EfficientNet-Lite0 with
leave-one-speaker-out folds (every fold holds out one voice), prints the file
accuracy on each held-out speaker, writes the out-of-fold report and predicts
a few files with the fold ensemble. Re-running it resumes: finished images and
folds are skipped.

    python examples/demo_fsdd.py [--data FSDD_FOLDER] --out demo_out [--epochs 8]

The settings are :func:`specimg.presets.fsdd_demo_config` (64x64 images, 8
epochs). Each fold keeps its best epoch, chosen on the held-out speaker
itself (optimistic), so the demo prints the last epoch's accuracy next to it.

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
from specimg.predict import Predictor, report_run
from specimg.presets import fsdd_demo_config
from specimg.spectrogram import render_dataset
from specimg.training import Run, train_cv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None,
                    help="a folder with a labels.csv, or of class folders (default: FSDD from "
                         "../shared/datasets/fsdd, else downloaded once into the user cache)")
    ap.add_argument("--out", default="demo_out")
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs per fold (default: the preset's 8)")
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
    files = cache.files
    n_reused = cache.reused_files
    print(f"\n{len(files)} files ({len(files) - n_reused} rendered, {n_reused} reused from the cache) -> "
          f"{len(cache.images)} images {cache.images.shape[1:]} "
          f"in {time.perf_counter() - t0:.1f} s ({cache.root})")
    if len(cache.errors):
        print(f"{len(cache.errors)} file(s) failed: see {cache.root / 'errors.csv'}")

    group = "speaker" if "speaker" in files.columns else None
    n_groups = files[group].nunique() if group else 5
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    _, config = fsdd_demo_config(device=args.device, group_column=group, n_splits=min(6, n_groups), **overrides)
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
    print(f"mean +- std over folds: accuracy {m['mean']['accuracy']:.3f} +- {m['std']['accuracy']:.3f} "
          f"(last epoch {np.mean(last):.3f} +- {np.std(last):.3f}), UAR {m['mean']['uar']:.3f}")

    report = report_run(out / "run")
    print(f"out-of-fold report: {report / 'report.md'}")

    sample = files["abspath"].iloc[::600].tolist()
    pred = Predictor.from_run(out / "run", device=args.device, tta=config.tta)
    print("\nthe fold ensemble on a few files (each was in the training data of all but one fold model; the honest "
          "figures are the out-of-fold ones above):")
    for path in sample:
        p = pred.predict_file(path)
        print(f"  {Path(path).name:>22}: {pred.classes[int(p.argmax())]} (p={p.max():.2f})")


if __name__ == "__main__":
    main()

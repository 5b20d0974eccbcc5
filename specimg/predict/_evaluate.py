"""Evaluate file predictions against labels and write reports."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, Literal, Mapping, Optional, Union

import numpy as np
import pandas as pd

from .._io import PathLike
from ..audio import read_table
from ..exceptions import DataError
from ..tasks import Task, task_kind
from .aggregate import read_predictions, table_columns
from .report import write_report

__all__ = ["evaluate_predictions", "report_run", "run_images", "predict_errors"]

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


def _task_of(cols: list, labels: Any, task: Union[None, str, Task]) -> Task:
    """The task of an evaluation: given, else multi-label for a ``labels`` column or a tagged ``labels=`` table."""
    if isinstance(task, Task):
        return task
    if task is not None:
        return Task.for_kind(str(task))
    kind = "multi-label" if "labels" in cols else "single-label"
    if kind == "single-label" and labels is not None:
        try:
            kind = task_kind(read_table(labels))
        except DataError:
            pass
    return Task.for_kind(kind)


def evaluate_predictions(preds: Union[PathLike, pd.DataFrame], *, labels: Optional[Union[PathLike, pd.DataFrame]] = None,
                         report: Optional[PathLike] = None, format: Literal["markdown", "html"] = "markdown",
                         images: Optional[Callable[[str], Any]] = None, title: str = "specimg evaluation",
                         task: Union[None, str, Task] = None, decision: Optional[Mapping[str, Any]] = None,
                         extra: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Score a prediction table with its task's metrics (:mod:`specimg.tasks`).

    - a **file table** (``path, [label|labels], prediction, prob_<class>...``: ``specimg predict`` output or a
      run's ``oof_files.csv``) is scored file by file: accuracy, UAR, macro-F1, log-loss, per class and the
      confusion matrix (single-label); macro / micro average precision, per-class AP, macro ROC-AUC and F1
      at the per-class thresholds (multi-label: ``decision['file']``, 0.5 without);
    - a multi-label **window table** (the same with a ``segment`` column: ``--segments`` output or
      ``oof_segments.csv``) window by window against its own ``labels`` (``decision['window']``);
    - a **detection table** (``path, start, end, class, score``) is matched to the events of an annotation
      table (:func:`~specimg.predict.evaluate_detections`).

    Parameters
    ----------
    preds : path or DataFrame
    labels : path or DataFrame, optional
        The true labels or tags (CSV, class-folder tree or annotation table), joined on ``path``; without it
        the table's own ``label`` / ``labels`` column is used. Labelled files that have no prediction
        (``specimg predict`` could not read them) are not scored: they are listed in ``metrics['missing']``
        (with the reason from the ``<stem>_errors.csv`` that predict wrote beside ``preds``) and in the
        report. So are the files of that errors table when there is no ``labels``.
    report : path, optional
        Folder for the report (:func:`~specimg.predict.write_report`).
    format : {'markdown', 'html'}
    images : callable, optional
        ``path -> uint8 image`` for example spectrograms in the report.
    title : str
    task : Task, {'single-label', 'multi-label'} or None
        Whose predictions these are; ``None``: multi-label when ``preds`` has a ``labels`` column or
        ``labels`` holds tag sets (a run's evaluation passes its own task).
    decision : mapping or None
        The task's decision rule: a multi-label run's ``thresholds.json``.
    extra : mapping or None
        More rows of the report's table (and ``"extra"`` of its ``metrics.json``): a run's report lists
        its classical anchor there.

    Returns
    -------
    metrics : dict
        The task's scores, and ``missing``: ``path -> reason`` of the files not scored.

    Raises
    ------
    DataError
        Labels the predictions' classes do not include, files with no label, predicted files that are not
        in ``labels``.
    """
    from ._detect import DETECTION_COLUMNS, evaluate_detections

    cols = table_columns(preds)
    if set(DETECTION_COLUMNS) <= set(cols):
        return evaluate_detections(preds, labels=labels, report=report, title=title)
    task = _task_of(cols, labels, task)
    source = "the prediction frame" if isinstance(preds, pd.DataFrame) else f"prediction file {str(preds)!r}"
    level = "window" if "segment" in cols and task.truth_column == "labels" else "file"
    table: Any = preds
    if level == "window":  # one unit per window
        raw = preds.copy() if isinstance(preds, pd.DataFrame) else pd.read_csv(preds, dtype={"path": str,
                                                                                             "labels": str})
        raw["path"] = [f"{p}#{int(k)}" for p, k in zip(raw["path"], raw["segment"])]
        table = raw.drop(columns=["segment"])
    frame, classes, probs = read_predictions(table, task=task)
    if frame.empty:
        raise DataError(f"{source[0].upper()}{source[1:]} has no rows: there is nothing to evaluate. Predict some "
                        "files first (`specimg predict RUN INPUT --out PRED.csv`), or pass a run's oof_files.csv.")
    column = task.truth_column
    if labels is not None and level == "file":
        truth_table = read_table(labels)
        truth_map = dict(zip(truth_table["path"], task.table_truth(truth_table)))
        unknown = [p for p in frame["path"] if p not in truth_map]
        if unknown:
            raise DataError(f"{len(unknown)} predicted file(s) are not in the labels, e.g. {unknown[0]!r}. The "
                            "predictions and --labels must list the same paths (as written in the input table).")
        missing = _missing(preds, list(truth_map), set(frame["path"]))
        values = [truth_map[p] for p in frame["path"]]
    elif column in frame.columns:
        values = frame[column].tolist()
        errors = None if isinstance(preds, pd.DataFrame) else predict_errors(preds)
        failed = pd.read_csv(errors, dtype=str, keep_default_na=False)["path"].tolist() if errors is not None else []
        missing = _missing(preds, failed, set(frame["path"]))
    else:
        raise DataError(f"{source[0].upper()}{source[1:]} has no {column!r} column; pass --labels INPUT (labels=...) "
                        "with the true labels.")
    truth = task.truth_of(values, classes, paths=frame["path"].tolist(), where=source)
    metrics = task.evaluation_metrics(truth, probs, classes, decision, level)
    metrics["task"], metrics["missing"] = task.kind, missing
    if missing:
        first = next(iter(missing.items()))
        _logger.warning("%d file(s) are not scored (no prediction), e.g. %s: %s", len(missing), *first)
    if report is not None:
        write_report(report, truth, probs, classes, task=task, decision=decision, level=level,
                     paths=frame["path"].tolist(), images=images, format=format, title=title, missing=missing,
                     extra=extra)
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
    anchor = opened.metrics.get("anchor") if opened.path(Run.METRICS).is_file() else None
    extra = None
    if anchor:  # the classical anchor of the same folds, beside the CNN's scores
        extra = {"anchor (MFCC + LightGBM, mean over folds)": ", ".join(
            f"{name} {anchor['mean'][key]:.4f}" for key, name in opened.task.headline_scores
            if anchor["mean"].get(key) is not None)}
    evaluate_predictions(opened.path(Run.OOF_FILES), report=Path(run) / "report", format=format, images=images,
                         title=f"Out-of-fold predictions of {Path(run).name} ({backbone})", task=opened.task,
                         decision=opened.thresholds, extra=extra)
    return Path(run) / "report"

"""The file-level prediction table that training, prediction and stacking exchange (:func:`predictions_frame`,
:func:`read_predictions`), one row per file::

    path, [label], [fold], prediction, prob_<class 0>, prob_<class 1>, ...

the ``prob_`` columns in class order and summing to 1. A multi-label table has ``labels`` (true tags,
``;``-separated) instead of ``label``, its ``prediction`` is the tags at or above their thresholds, and its
rows need not sum to 1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from ..exceptions import DataError
from ..scoring import check_probs
from ..tasks import Task, aggregate_segments, flip_tta_average

__all__ = [
    "aggregate_segments",
    "flip_tta_average",
    "predictions_frame",
    "read_predictions",
    "PROB_PREFIX",
]

#: Prefix of the probability columns of a prediction table: ``prob_<class>``.
PROB_PREFIX = "prob_"

#: Tolerance on ``|sum(probabilities) - 1|`` for one row of a prediction table.
_SUM_TOL = 1e-3

def _class_names(classes: Sequence[Any], *, owner: str) -> list:
    names = [str(c) for c in classes]
    if len(names) == 0:
        raise DataError(f"The 'classes' argument of {owner} must name at least one class. Got an empty list.")
    if len(set(names)) != len(names):
        dup = sorted({c for c in names if names.count(c) > 1})
        raise DataError(f"The 'classes' argument of {owner} must not repeat a class. Repeated: {dup}.")
    return names


def predictions_frame(
    paths: Sequence[Any],
    probs: Any,
    classes: Sequence[Any],
    labels: Optional[Sequence[Any]] = None,
    folds: Optional[Sequence[Any]] = None,
) -> pd.DataFrame:
    """Build the file-level prediction table from arrays.

    Parameters
    ----------
    paths : sequence of str [shape=(n_files,)]
        The file of each row (as written in the input table).
    probs : np.ndarray [shape=(n_files, n_classes)]
        Probabilities; each row sums to 1.
    classes : sequence of str [shape=(n_classes,)]
        Class names in the column order of ``probs``.
    labels : sequence of str [shape=(n_files,)], optional
        True labels; written as a ``label`` column.
    folds : sequence of int [shape=(n_files,)], optional
        Out-of-fold fold index of each file; written as a ``fold`` column.

    Returns
    -------
    pd.DataFrame
        Columns ``path``, [``label``], [``fold``], ``prediction``, then
        ``prob_<class>`` for each class in ``classes`` order.

    Examples
    --------
    >>> predictions_frame(["a.wav"], [[0.3, 0.7]], ["cat", "dog"]).columns.tolist()
    ['path', 'prediction', 'prob_cat', 'prob_dog']
    """
    owner = "predictions_frame"
    names = _class_names(classes, owner=owner)
    p = check_probs(probs, name="probs", owner=owner)
    n = p.shape[0]
    if p.shape[1] != len(names):
        raise DataError(
            f"The 'probs' argument of {owner} must have one column per class ({len(names)} classes). "
            f"Got shape {p.shape}."
        )
    sums = p.sum(axis=1)
    if n and np.max(np.abs(sums - 1.0)) > _SUM_TOL:
        row = int(np.argmax(np.abs(sums - 1.0)))
        raise DataError(
            f"The rows of 'probs' given to {owner} must sum to 1 (+/- {_SUM_TOL}). Row {row} sums to "
            f"{sums[row]:.6g}; apply a softmax or renormalise."
        )
    path_list = [str(x) for x in paths]
    if len(path_list) != n:
        raise DataError(
            f"The 'paths' argument of {owner} must have {n} entries (one per row of probs). Got {len(path_list)}."
        )
    frame = pd.DataFrame({"path": path_list})
    if labels is not None:
        lab = list(labels)
        if len(lab) != n:
            raise DataError(f"The 'labels' argument of {owner} must have {n} entries. Got {len(lab)}.")
        frame["label"] = [None if _is_missing(v) else str(v) for v in lab]
    if folds is not None:
        fold_arr = np.asarray(folds)
        if fold_arr.shape != (n,):
            raise DataError(f"The 'folds' argument of {owner} must have shape ({n},). Got {fold_arr.shape}.")
        frame["fold"] = _as_int_folds(fold_arr, where=f"the 'folds' argument of {owner}")
    frame["prediction"] = [names[i] for i in np.argmax(p, axis=1)] if n else []
    frame[[PROB_PREFIX + name for name in names]] = p
    return frame


def table_columns(table: Union[str, "os.PathLike[str]", pd.DataFrame]) -> list:
    """The columns of a prediction table or CSV (none for an unreadable file: read_predictions names the problem)."""
    if isinstance(table, pd.DataFrame):
        return list(table.columns)
    try:
        return list(pd.read_csv(table, nrows=0).columns)
    except Exception:
        return []


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _as_int_folds(values: np.ndarray, *, where: str) -> np.ndarray:
    try:
        as_float = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(
            f"The fold values in {where} must be integers. Got values such as {values[:3].tolist()}."
        ) from None
    bad = ~np.isfinite(as_float) | (as_float != np.round(as_float))
    if np.any(bad):
        i = int(np.argmax(bad))
        raise DataError(
            f"The fold values in {where} must be whole numbers for every row. Row {i} has {values[i]!r}."
        )
    return as_float.astype(np.int64)


def read_predictions(
    path_or_df: Union[str, "os.PathLike[str]", pd.DataFrame],
    *,
    task: Union[None, str, Task] = None,
) -> Tuple[pd.DataFrame, list, np.ndarray]:
    """Read and validate a file-level prediction table.

    Parameters
    ----------
    path_or_df : str, path-like or pd.DataFrame
        A CSV written by :func:`predictions_frame` (e.g. ``RUN/oof_files.csv``),
        or the frame itself.
    task : Task, {'single-label', 'multi-label'} or None
        The task whose predictions these are: ``'multi-label'`` tables hold
        independent scores in [0, 1] per class (no sum to check); single-label
        rows must sum to 1. ``None``: multi-label when the table has a
        ``labels`` column (true tags).

    Returns
    -------
    frame : pd.DataFrame
        A validated copy: ``path`` and ``label`` as strings (missing labels as
        None), ``fold`` as int when present, ``prediction`` filled from the
        probabilities when the column is absent.
    classes : list of str
        Class names, in the order of the ``prob_`` columns.
    probs : np.ndarray [shape=(n_files, n_classes), dtype=float64]

    Raises
    ------
    DataError
        The file is missing or unreadable, a column is missing or malformed,
        a path is repeated, or a row of probabilities is invalid. The message
        names the source, the column or row, and the fix.
    """
    frame, source = _load_predictions(path_or_df)
    classes, prob_cols = _prob_columns(frame, source)
    probs = _checked_probs(frame, prob_cols, source)
    if not isinstance(task, Task):
        task = Task.for_kind(task if task is not None else "multi-label" if "labels" in frame.columns
                             else "single-label")
    _check_sums(frame, probs, source, task=task)
    return _normalised_columns(frame, classes, probs, source, task=task), classes, probs


def _load_predictions(path_or_df: Union[str, "os.PathLike[str]", pd.DataFrame]) -> Tuple[pd.DataFrame, str]:
    """The table (a copy, index reset) and how messages name it."""
    if isinstance(path_or_df, pd.DataFrame):
        frame = path_or_df.copy()
        if "path" in frame.columns:
            frame["path"] = frame["path"].astype(str)
        return frame.reset_index(drop=True), "the prediction frame"
    source = str(path_or_df)
    if not Path(source).is_file():
        raise DataError(f"Prediction file {source!r} does not exist. Pass the path of a CSV such as RUN/oof_files.csv.")
    try:
        frame = pd.read_csv(source, dtype={"path": str, "label": str, "labels": str, "prediction": str},
                            keep_default_na=False,
                            na_values={"label": [""], "prediction": [""], "fold": ["", "nan", "NaN"]})
    except pd.errors.EmptyDataError:
        raise DataError(f"Prediction file {source!r} is empty (no header, no rows). Pass a CSV written by "
                        "`specimg predict` or a run's oof_files.csv.") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"Prediction file {source!r} cannot be read as CSV: {exc}. Pass a CSV written by "
                        "`specimg predict` or a run's oof_files.csv.") from None
    return frame.reset_index(drop=True), source


def _prob_columns(frame: pd.DataFrame, source: str) -> Tuple[list, list]:
    """(classes, prob columns), after checking the path column and that each file has one row."""
    if "path" not in frame.columns:
        raise DataError(f"{source} has no 'path' column. A prediction table needs the columns path, [label], "
                        f"[fold], prediction, prob_<class>...; found {list(frame.columns)}.")
    prob_cols = [c for c in frame.columns if str(c).startswith(PROB_PREFIX)]
    if not prob_cols:
        raise DataError(f"{source} has no '{PROB_PREFIX}<class>' columns. A prediction table needs one probability "
                        f"column per class; found {list(frame.columns)}.")
    classes = [str(c)[len(PROB_PREFIX):] for c in prob_cols]
    if any(c == "" for c in classes):
        raise DataError(f"{source} has a probability column named just {PROB_PREFIX!r}; name it prob_<class>.")
    dup = frame["path"].duplicated(keep=False)
    if dup.any():
        repeated = frame.loc[dup, "path"].unique().tolist()
        raise DataError(f"{source} must have one row per file, but path {repeated[0]!r} is repeated"
                        + (f" (and {len(repeated) - 1} more)" if len(repeated) > 1 else "")
                        + "; aggregate segment predictions to files first.")
    return classes, prob_cols


def _checked_probs(frame: pd.DataFrame, prob_cols: list, source: str) -> np.ndarray:
    """The probabilities as float64, every one a finite number >= 0 (the message names the file)."""
    try:
        probs = frame[prob_cols].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        for c in prob_cols:
            bad_rows = np.flatnonzero(pd.to_numeric(frame[c], errors="coerce").isna().to_numpy())
            if bad_rows.size:
                i = int(bad_rows[0])
                raise DataError(
                    f"Column {c!r} of {source} must hold a probability for every file, but file "
                    f"{frame['path'].iloc[i]!r} has {frame[c].iloc[i]!r}"
                    + (f" ({bad_rows.size} such rows in all)" if bad_rows.size > 1 else "")
                    + ". Predict these files again, or drop their rows.") from None
        raise
    bad = ~np.isfinite(probs).all(axis=1) | (probs < 0).any(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{source}: the probabilities of file {frame['path'].iloc[i]!r} must be finite and >= 0. "
                        f"Got {probs[i].tolist()}" + (f" ({int(bad.sum())} such rows in all)" if bad.sum() > 1 else "")
                        + ". Predict these files again, or drop their rows.")
    return probs


def _check_sums(frame: pd.DataFrame, probs: np.ndarray, source: str, *, task: Task) -> None:
    """Softmax rows sum to 1; sigmoid scores lie in [0, 1]."""
    if task.activation == "sigmoid":
        off = (probs > 1.0 + 1e-6).any(axis=1)
        if off.any():
            i = int(np.argmax(off))
            raise DataError(f"{source}: the scores of file {frame['path'].iloc[i]!r} must lie in [0, 1] (a "
                            f"{task.kind} table holds one sigmoid score per class). Got {probs[i].tolist()}.")
        return
    sums = probs.sum(axis=1)
    off = np.abs(sums - 1.0) > _SUM_TOL
    if off.any():
        i = int(np.argmax(off))
        raise DataError(
            f"{source}: the probabilities of file {frame['path'].iloc[i]!r} must sum to 1 (+/- {_SUM_TOL}). "
            f"They sum to {sums[i]:.6g}. (A multi-label table's scores need not: it has a 'labels' column, or "
            "pass task='multi-label'.)")


def _normalised_columns(frame: pd.DataFrame, classes: list, probs: np.ndarray, source: str, *,
                        task: Task) -> pd.DataFrame:
    """``label`` as str or None, ``fold`` as int, ``prediction`` filled in (the task's rule) when absent."""
    if "label" in frame.columns:
        frame["label"] = [None if _is_missing(v) else str(v) for v in frame["label"].tolist()]
    if "fold" in frame.columns:
        frame["fold"] = _as_int_folds(frame["fold"].to_numpy(), where=f"column 'fold' of {source}")
    for col in ("labels",) + (("prediction",) if task.truth_column == "labels" else ()):
        if col in frame.columns:  # tag sets: an empty cell is the empty set
            frame[col] = ["" if _is_missing(v) else str(v) for v in frame[col].tolist()]
    if "prediction" not in frame.columns:
        frame["prediction"] = task.decide(probs, classes)
    else:
        frame["prediction"] = frame["prediction"].astype(str)
    return frame

"""Pseudo-labels: confident test predictions added to the training table, flagged as such.

The ``pseudo`` column is the guard: training may use pseudo-labelled files
for fitting, but must keep them out of validation folds and scores.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from ..exceptions import DataError, ParameterError

__all__ = ["select_pseudo_labels", "pseudo_training_table"]

_PSEUDO_COLUMNS = ["path", "label", "confidence", "pseudo"]


def select_pseudo_labels(
    paths: Sequence[Any],
    probs: Any,
    classes: Sequence[Any],
    *,
    threshold: float = 0.85,
    max_per_class: Optional[int] = None,
) -> pd.DataFrame:
    """Pick the files whose top probability reaches ``threshold`` as pseudo-labelled.

    Parameters
    ----------
    paths : sequence of str [shape=(n_files,)]
        Unlabelled (test) files.
    probs : np.ndarray [shape=(n_files, n_classes)]
        Their predicted probabilities (e.g. of a blend of stackers).
    classes : sequence of str [shape=(n_classes,)]
        Class names in column order.
    threshold : float in (0, 1]
        A file is selected when ``max(probs[i]) >= threshold``.
    max_per_class : int >= 1, optional
        Keep at most this many files per predicted class, the most confident
        first (ties keep file order), so one easy class does not flood training.

    Returns
    -------
    pd.DataFrame
        Columns ``path``, ``label`` (predicted class), ``confidence`` (its
        probability), ``pseudo`` (True); rows in the order of ``paths``.

    Raises
    ------
    ParameterError
        ``threshold`` outside (0, 1] or ``max_per_class`` not a positive int.
    DataError
        Shapes disagree or probabilities are not finite.

    Examples
    --------
    >>> select_pseudo_labels(["a", "b"], [[0.9, 0.1], [0.6, 0.4]], ["x", "y"])["path"].tolist()
    ['a']
    """
    owner = "select_pseudo_labels"
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) or not 0 < threshold <= 1:
        raise ParameterError(
            f"The 'threshold' parameter of {owner} must be a number in (0, 1] (a probability). Got {threshold!r}."
        )
    if max_per_class is not None and (
        isinstance(max_per_class, bool) or not isinstance(max_per_class, (int, np.integer)) or max_per_class < 1
    ):
        raise ParameterError(
            f"The 'max_per_class' parameter of {owner} must be an int >= 1 or None. Got {max_per_class!r}."
        )
    names = [str(c) for c in classes]
    try:
        p = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"The 'probs' argument of {owner} must be a numeric array.") from None
    path_list = [str(x) for x in paths]
    if p.ndim != 2 or p.shape != (len(path_list), len(names)):
        raise DataError(
            f"The 'probs' argument of {owner} must have shape (n_files, n_classes) = ({len(path_list)}, {len(names)}). "
            f"Got {p.shape}."
        )
    if p.size and not np.all(np.isfinite(p)):
        raise DataError(f"The 'probs' argument of {owner} must be finite. Got NaN/inf values.")
    if len(path_list) == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(_PSEUDO_COLUMNS, [object, object, float, bool])})

    best = np.argmax(p, axis=1)
    confidence = p[np.arange(len(best)), best]
    table = pd.DataFrame(
        {
            "path": path_list,
            "label": [names[i] for i in best],
            "confidence": confidence,
            "pseudo": True,
        }
    )
    table = table[table["confidence"] >= threshold]
    if max_per_class is not None:
        ranked = table.sort_values("confidence", ascending=False, kind="stable")
        table = ranked.groupby("label", sort=False).head(int(max_per_class)).sort_index()
    return table.reset_index(drop=True)


def pseudo_training_table(train_table: pd.DataFrame, pseudo_rows: pd.DataFrame) -> pd.DataFrame:
    """Append pseudo-labelled rows to a training table, with a boolean ``pseudo`` guard column.

    Parameters
    ----------
    train_table : pd.DataFrame
        The labelled training files; needs ``path`` and ``label`` (other
        columns, such as ``group`` or ``speaker``, are kept).
    pseudo_rows : pd.DataFrame
        Output of :func:`select_pseudo_labels` (``path``, ``label``, and
        optionally ``confidence``).

    Returns
    -------
    pd.DataFrame
        The original rows (``pseudo`` False, ``confidence`` 1.0) followed by
        the pseudo rows (``pseudo`` True). A ``group`` column, when present,
        is set to the path for pseudo rows; other columns they lack are NA.

    Raises
    ------
    DataError
        A column is missing, or a pseudo path is already in the training
        table (a file must not be both labelled and pseudo-labelled).
    """
    owner = "pseudo_training_table"
    for name, frame in (("train_table", train_table), ("pseudo_rows", pseudo_rows)):
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"The {name!r} argument of {owner} must be a pandas DataFrame. Got {type(frame).__name__}.")
        missing = [c for c in ("path", "label") if c not in frame.columns]
        if missing:
            raise DataError(
                f"The {name!r} argument of {owner} lacks the column(s) {missing}; found {list(frame.columns)}."
            )
    if pseudo_rows["label"].isna().any():
        raise DataError(f"The 'pseudo_rows' argument of {owner} has rows without a label.")
    known = set(train_table["path"].astype(str))
    clash = [p for p in pseudo_rows["path"].astype(str) if p in known]
    if clash:
        raise DataError(
            f"File {clash[0]!r} is both in the training table and among the pseudo-labelled rows"
            + (f" ({len(clash)} such files)" if len(clash) > 1 else "")
            + "; pseudo-label only files that have no label."
        )

    original = train_table.copy()
    if "pseudo" in original.columns:  # a table that already holds pseudo rows keeps its flags
        original["pseudo"] = original["pseudo"].fillna(False).astype(bool)
    else:
        original["pseudo"] = False
    if "confidence" not in original.columns:
        original["confidence"] = 1.0
    extra = pseudo_rows.copy()
    extra["path"] = extra["path"].astype(str)
    extra["label"] = extra["label"].astype(str)
    extra["pseudo"] = True
    if "confidence" not in extra.columns:
        extra["confidence"] = np.nan
    if "group" in original.columns and "group" not in extra.columns:
        extra["group"] = extra["path"]
    columns = list(original.columns) + [c for c in extra.columns if c not in original.columns]
    out = pd.concat([original, extra[[c for c in columns if c in extra.columns]]], ignore_index=True)
    out = out[columns]
    out["pseudo"] = out["pseudo"].astype(bool)
    return out

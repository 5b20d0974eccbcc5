"""Pseudo-labels: confident test predictions added to the training table, flagged as such.

The ``pseudo`` column is the guard: training may use pseudo-labelled files
for fitting, but must keep them out of validation folds and scores.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

import numpy as np
import pandas as pd

from .._io import PathLike
from .._validation import check_int
from ..exceptions import DataError, ParameterError
from ..predict.aggregate import read_predictions

__all__ = ["select_pseudo_labels", "pseudo_training_table", "pseudo_label_table"]

_PSEUDO_COLUMNS = ["path", "label", "confidence", "pseudo"]


def select_pseudo_labels(
    paths: Sequence[Any],
    probs: Any,
    classes: Sequence[Any],
    *,
    threshold: float = 0.85,
    inclusive: bool = False,
    max_per_class: Optional[int] = None,
) -> pd.DataFrame:
    """Pick the files whose top probability is above ``threshold`` as pseudo-labelled.

    Parameters
    ----------
    paths : sequence of str [shape=(n_files,)]
        Unlabelled (test) files.
    probs : np.ndarray [shape=(n_files, n_classes)]
        Their predicted probabilities (e.g. of a blend of stackers).
    classes : sequence of str [shape=(n_classes,)]
        Class names in column order.
    threshold : float in (0, 1]
        A file is selected when ``max(probs[i]) > threshold`` (strictly, as
        the seed solution did: a file at exactly 0.85 is not taken).
    inclusive : bool
        Select it when ``max(probs[i]) >= threshold`` instead.
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
        ``threshold`` outside (0, 1], ``inclusive`` not a bool or
        ``max_per_class`` not a positive int.
    DataError
        Shapes disagree or probabilities are not finite.

    Examples
    --------
    >>> select_pseudo_labels(["a", "b"], [[0.9, 0.1], [0.85, 0.15]], ["x", "y"])["path"].tolist()
    ['a']
    >>> select_pseudo_labels(["a", "b"], [[0.9, 0.1], [0.85, 0.15]], ["x", "y"], inclusive=True)["path"].tolist()
    ['a', 'b']
    """
    owner = "select_pseudo_labels"
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) or not 0 < threshold <= 1:
        raise ParameterError(
            f"The 'threshold' parameter of {owner} must be a number in (0, 1] (a probability). Got {threshold!r}."
        )
    if not isinstance(inclusive, (bool, np.bool_)):
        raise ParameterError(f"The 'inclusive' parameter of {owner} must be True (>= threshold) or False "
                             f"(> threshold). Got {inclusive!r}.")
    check_int(max_per_class, "max_per_class", owner=owner, low=1, allow_none=True)
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
    table = pd.DataFrame({"path": path_list, "label": [names[i] for i in best], "confidence": confidence,
                          "pseudo": True})
    keep = table["confidence"] >= threshold if inclusive else table["confidence"] > threshold
    table = table[keep]
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


# --------------------------------------------------------------------------- pseudo-labels
def _relative_or_absolute(abspath: str, folder: Path) -> str:
    try:
        return os.path.relpath(abspath, folder)
    except ValueError:  # another drive (Windows)
        return str(Path(abspath).resolve())


def _test_audio(frame: pd.DataFrame, test_predictions: Any, test_input: Any, source: str) -> List[str]:
    """The absolute audio path of every predicted test file (from the test input, or next to the predictions)."""
    from ..audio import read_table

    if test_input is not None:
        tt = read_table(test_input)
        where = dict(zip(tt["path"], tt["abspath"]))
        absent = [p for p in frame["path"] if p not in where]
        if absent:
            raise DataError(f"{len(absent)} predicted file(s) are not in the test input, e.g. {absent[0]!r}. Pass the "
                            "same test CSV or folder that was predicted.")
        return [where[p] for p in frame["path"]]
    base = Path.cwd() if isinstance(test_predictions, pd.DataFrame) else Path(test_predictions).parent
    test_abs = [p if os.path.isabs(p) else str(base / p) for p in frame["path"]]
    lost = [p for p, a in zip(frame["path"], test_abs) if not os.path.exists(a)]
    if lost:
        raise DataError(f"Test file {lost[0]!r} is not found next to {source}"
                        + (f" ({len(lost)} files missing)" if len(lost) > 1 else "")
                        + ". Pass the test input that was predicted (--test-input) so its paths can be found.")
    return test_abs


def pseudo_label_table(
    test_predictions: Union[PathLike, pd.DataFrame],
    train: Union[PathLike, pd.DataFrame],
    *,
    out: Optional[PathLike] = None,
    test_input: Optional[Union[PathLike, pd.DataFrame]] = None,
    threshold: float = 0.85,
    inclusive: bool = False,
    max_per_class: Optional[int] = None,
) -> pd.DataFrame:
    """A training table: the labelled files plus the confident test predictions as pseudo-labels.

    Parameters
    ----------
    test_predictions : path or DataFrame
        File-level test predictions (``path, prediction, prob_<class>...``),
        e.g. ``specimg predict`` or ``specimg stack --test`` output. Must not
        be out-of-fold predictions of training files.
    train : path or DataFrame
        The labelled training input (CSV or class-folder tree, see
        :func:`specimg.audio.read_table`).
    out : path, optional
        Where the table will be written: its paths are made relative to this
        file's folder (absolute where that is impossible), so the CSV works
        from its location. Without it, paths are absolute.
    test_input : path or DataFrame, optional
        The test input that was predicted, to find the audio of its paths;
        without it, relative test paths are resolved against the folder of
        ``test_predictions`` (or the working directory for a DataFrame).
    threshold : float in (0, 1]
        Keep a test file when its top probability is above this (``> threshold``, as the seed did).
    inclusive : bool
        Keep it when the top probability equals ``threshold`` too (``>=``).
    max_per_class : int, optional
        At most this many pseudo-labelled files per class, most confident first.

    Returns
    -------
    table : pd.DataFrame
        ``path, label, [group, ...extra columns], confidence, pseudo``: the
        training rows (``pseudo`` False) then the selected test rows
        (``pseudo`` True, ``label`` = the predicted class). Training keeps
        rows with ``pseudo`` True out of every validation fold.

    Raises
    ------
    DataError
        Out-of-fold predictions given as test predictions, unlabelled
        training rows, classes the training set does not have, a test file
        that is also a training file, or test audio that cannot be found.
    """
    from ..audio import read_table

    frame, classes, probs = read_predictions(test_predictions)
    source = "the test predictions" if isinstance(test_predictions, pd.DataFrame) else str(test_predictions)
    if "fold" in frame.columns:
        raise DataError(f"{source} has a 'fold' column: these are out-of-fold predictions of training files "
                        "(RUN/oof_files.csv), not test predictions. Pseudo-label only unlabelled test files: pass "
                        "the output of `specimg predict RUN TEST` or `specimg stack ... --test`.")
    table = read_table(train)
    unlabelled = table["label"].isna()
    if unlabelled.any():
        raise DataError(f"The training input has {int(unlabelled.sum())} unlabelled file(s), e.g. "
                        f"{table['path'][unlabelled].iloc[0]!r}. Every training row needs a label.")
    if set(classes) != set(table["label"]):
        raise DataError(f"The test predictions' classes {classes} differ from the training labels "
                        f"{sorted(set(table['label']))}. Predict with runs trained on this training set.")

    test_abs = _test_audio(frame, test_predictions, test_input, source)
    train_abs = {str(Path(a).resolve()) for a in table["abspath"]}
    clash = [p for p, a in zip(frame["path"], test_abs) if str(Path(a).resolve()) in train_abs]
    if clash:
        raise DataError(f"Test file {clash[0]!r} is also a training file"
                        + (f" ({len(clash)} such files)" if len(clash) > 1 else "")
                        + ". Pseudo-label only files that have no label.")

    picked = select_pseudo_labels(test_abs, probs, classes, threshold=threshold, inclusive=inclusive,
                                  max_per_class=max_per_class)
    folder = Path(out).resolve().parent if out is not None else None

    def rewrite(abspaths: Sequence[str]) -> List[str]:
        if folder is None:
            return [str(Path(a).resolve()) for a in abspaths]
        return [_relative_or_absolute(str(Path(a).resolve()), folder) for a in abspaths]

    base_rows = table.drop(columns=["abspath"]).copy()
    default_group = (table["group"] == table["path"]).all()
    base_rows["path"] = rewrite(table["abspath"].tolist())
    if default_group:
        base_rows = base_rows.drop(columns=["group"])
    picked = picked.assign(path=rewrite(picked["path"].tolist()))
    return pseudo_training_table(base_rows, picked)

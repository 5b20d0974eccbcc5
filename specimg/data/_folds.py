"""Cross-validation folds over source files, never splitting a file or a group."""

from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from .._validation import check_int
from ..exceptions import DataError, ParameterError

__all__ = ["file_folds", "pseudo_mask", "pseudo_leaks"]


def pseudo_mask(files: pd.DataFrame) -> np.ndarray:
    """Which rows are pseudo-labelled (a truthy ``pseudo`` column), shape (n_files,), bool."""
    if "pseudo" not in files.columns:
        return np.zeros(len(files), dtype=bool)
    col = files["pseudo"]
    if col.dtype == bool:
        return col.to_numpy(dtype=bool)
    return np.array([str(v).strip().lower() in ("true", "1", "yes", "1.0") for v in col], dtype=bool)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or str(v) == ""


def file_folds(
    files: pd.DataFrame,
    *,
    n_splits: int = 5,
    group_column: Optional[str] = None,
    seed: int = 0,
    stratify: bool = True,
    label_column: str = "label",
) -> np.ndarray:
    """Assign every file to a cross-validation fold.

    Files are grouped so that no group is ever split between training and
    validation: each file is its own group by default (all the windows of a
    file stay together), or all the files sharing a value of
    ``group_column`` (a speaker, a patient) stay together. With
    ``stratify=True`` the folds keep the class proportions
    (scikit-learn ``StratifiedGroupKFold``), else ``GroupKFold``.

    Rows whose boolean ``pseudo`` column is true (pseudo-labelled files) are
    never used for validation: they get fold ``-1`` and belong to every
    training split.

    Parameters
    ----------
    files : pd.DataFrame [shape=(n_files, ...)]
        One row per file with a label column (``ImageCache.files``).
    n_splits : int
        Number of folds (>= 2, <= the number of groups).
    group_column : str or None
        Column whose values must not be split across folds.
    seed : int
        Seed of the shuffled assignment.
    stratify : bool
        Keep class proportions per fold.
    label_column : str
        Column of the labels.

    Returns
    -------
    folds : np.ndarray [shape=(n_files,), dtype=int64]
        Fold index in ``[0, n_splits)`` per file, ``-1`` for pseudo-labelled
        files.

    Raises
    ------
    ParameterError
        ``n_splits`` not an int >= 2, more folds than groups, a missing
        group column.
    DataError
        Unlabelled files, a single class, a class with fewer files than
        folds.

    Examples
    --------
    >>> files = pd.DataFrame({"label": ["a", "b"] * 4, "speaker": list("ppqqrrss")})
    >>> folds = file_folds(files, n_splits=2, group_column="speaker")
    >>> all(len(set(folds[files["speaker"] == s])) == 1 for s in "pqrs")  # a speaker never spans two folds
    True
    >>> sorted(set(folds.tolist()))
    [0, 1]
    """
    n_splits = check_int(n_splits, "n_splits", owner="file_folds", low=2)
    if label_column not in files.columns:
        raise DataError(f"file_folds needs a {label_column!r} column; the table has {list(files.columns)}.")
    if group_column is not None and group_column not in files.columns:
        available = [c for c in files.columns if c not in ("abspath",)]
        raise ParameterError(f"The group column {group_column!r} (group_column) is not in the input table. "
                             f"Available columns: {available}. Add it to the input CSV or pick one of these.")
    pseudo = pseudo_mask(files)
    labels = files[label_column].to_numpy(dtype=object)
    missing = np.array([_missing(v) for v in labels], dtype=bool)
    if missing.any():
        where = files["path"].iloc[np.flatnonzero(missing)[:3]].tolist() if "path" in files.columns else \
            np.flatnonzero(missing)[:3].tolist()
        raise DataError(f"{int(missing.sum())} of {len(files)} file(s) have no label (e.g. {where}). Training needs "
                        "a label for every file: drop the unlabelled files from the input, or use `specimg predict` "
                        "for them.")
    real = ~pseudo
    y = np.array([str(v) for v in labels], dtype=object)[real]
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise DataError(f"Training needs at least 2 classes; the labelled (non-pseudo) files all have the label "
                        f"{classes[0] if len(classes) else None!r}. Add files of another class.")
    few = [(c, int(k)) for c, k in zip(classes, counts) if k < n_splits]
    if few:
        listed = ", ".join(f"{c!r} ({k} file{'s' if k != 1 else ''})" for c, k in few)
        raise DataError(f"Class(es) {listed} have fewer files than the {n_splits} folds (n_splits, --folds), so "
                        f"some folds would validate without them. Lower n_splits (--folds) to at most "
                        f"{min(k for _, k in few)}, or add files of these classes.")
    if group_column is None:
        groups = np.arange(int(real.sum()))
    else:
        gcol = files[group_column].to_numpy(dtype=object)[real]
        if any(_missing(g) for g in gcol):
            raise DataError(f"The group column {group_column!r} is empty for some labelled files. Give every file a "
                            "group value.")
        groups = np.unique(np.array([str(g) for g in gcol], dtype=object), return_inverse=True)[1]
    n_groups = int(len(np.unique(groups)))
    if n_splits > n_groups:
        what = f"values of {group_column!r}" if group_column else "files"
        raise ParameterError(f"The 'n_splits' parameter must be <= the number of groups: there are only {n_groups} "
                             f"{what} to split, got n_splits={n_splits}. Lower n_splits (--folds) to at most "
                             f"{n_groups}.")
    if stratify:
        splitter: Any = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    else:
        splitter = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    out_real = np.full(int(real.sum()), -1, dtype=np.int64)
    with warnings.catch_warnings():
        # the per-class counts were checked above; sklearn's warning about them would only repeat it
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        for k, (_, val) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
            out_real[val] = k
    folds = np.full(len(files), -1, dtype=np.int64)
    folds[real] = out_real
    return folds


def pseudo_leaks(files: pd.DataFrame, folds: np.ndarray, fold: int, group_column: Optional[str]) -> np.ndarray:
    """Pseudo-labelled files that must stay out of ``fold``'s training split.

    Pseudo-labelled files (fold ``-1``) train every fold, except one that
    validates their group: with a group column (speaker, patient), training on
    a pseudo-labelled recording of a validation speaker would leak that voice
    into the fold's score.

    Parameters
    ----------
    files : pd.DataFrame
        The file table (with a ``pseudo`` column when there are pseudo labels).
    folds : np.ndarray [shape=(n_files,)]
        From :func:`file_folds`.
    fold : int
        The validation fold.
    group_column : str or None

    Returns
    -------
    leaks : np.ndarray [shape=(n_files,), dtype=bool]
    """
    is_pseudo = pseudo_mask(files)
    if not group_column or not is_pseudo.any():
        return np.zeros(len(files), dtype=bool)
    groups = files[group_column].astype(str).to_numpy()
    return is_pseudo & np.isin(groups, groups[np.asarray(folds) == fold])

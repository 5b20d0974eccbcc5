"""Out-of-fold alignment (:func:`align_runs`: several runs' prediction tables -> one stack input), the inner
cross-validation of a stacker (:func:`cross_val_stack`), and what the stackers share.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from .._validation import check_int
from ..audio import sort_labels
from ..exceptions import DataError, NotFittedError, ParameterError
from ..predict.aggregate import read_predictions, table_columns
from ..tasks import Task

__all__ = ["align_runs", "run_task", "cross_val_stack", "check_stack_input", "early_stopping_split", "fit_with_groups",
           "beats_the_start"]

RunSource = Union[str, "os.PathLike[str]", pd.DataFrame]


def check_stack_input(X: Any, *, owner: str, name: str = "X") -> np.ndarray:
    """Return stacker input as float64 ``(n_files, n_models, n_classes)``.

    Accepts a 3-D array, or a list of ``n_models`` ``(n_files, n_classes)`` arrays (stacked on axis 1).

    Raises
    ------
    DataError
        Wrong shape, non-finite or negative values.
    """
    if isinstance(X, (list, tuple)) and len(X) and np.ndim(X[0]) == 2:
        shapes = {np.shape(m) for m in X}
        if len(shapes) != 1:
            raise DataError(
                f"The {name!r} argument of {owner} was given as a list of probability matrices of different "
                f"shapes {sorted(shapes)}; each must be (n_files, n_classes) for the same files and classes."
            )
        X = np.stack([np.asarray(m, dtype=np.float64) for m in X], axis=1)
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"The {name!r} argument of {owner} must be a numeric array of probabilities.") from None
    if arr.ndim != 3 or 0 in arr.shape:
        raise DataError(
            f"The {name!r} argument of {owner} must have shape (n_files, n_models, n_classes) with no empty axis "
            f"(use align_runs to build it; for one model use X[:, None, :]). Got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise DataError(
            f"The {name!r} argument of {owner} must be finite. Got {int(np.sum(~np.isfinite(arr)))} NaN/inf values."
        )
    if arr.min() < 0:
        raise DataError(
            f"The {name!r} argument of {owner} must hold probabilities >= 0. Got a minimum of {arr.min():.4g}; "
            "pass softmax outputs, not logits."
        )
    return arr


def _check_y(y: Any, n_files: int, *, owner: str) -> np.ndarray:
    arr = np.asarray(y, dtype=object)
    if arr.ndim != 1 or arr.shape[0] != n_files:
        raise DataError(
            f"The 'y' argument of {owner} must have shape ({n_files},) (one label per file). Got {arr.shape}."
        )
    missing = [i for i, v in enumerate(arr) if v is None or (isinstance(v, float) and np.isnan(v))]
    if missing:
        raise DataError(
            f"The 'y' argument of {owner} has {len(missing)} missing labels (first at row {missing[0]}). "
            "Stackers train on labelled out-of-fold predictions only."
        )
    return arr.astype(str)


class _StackerBase(ClassifierMixin, BaseEstimator):
    """Shared plumbing of the stackers: labels, classes, fitted checks. ``fit`` calls :meth:`_setup_fit` first and
    :meth:`_finish_fit` once training succeeded, so a failed ``fit`` leaves no half-fitted state."""

    def _setup_fit(self, X: Any, y: Any) -> Tuple[np.ndarray, np.ndarray, List[str]]:
        """Check ``X`` and ``y``; return X as float64, y as class codes, and the class names."""
        owner = f"{type(self).__name__}.fit"
        arr = check_stack_input(X, owner=owner)
        labels = _check_y(y, arr.shape[0], owner=owner)
        classes = getattr(self, "classes", None)
        if classes is None:
            names = sort_labels(labels)
            if len(names) != arr.shape[2]:
                raise DataError(
                    f"{owner}: 'y' has {len(names)} distinct labels but X has {arr.shape[2]} classes on its last axis. "
                    "Pass classes=[...] (the labels in the order of X's last axis, e.g. from align_runs)."
                )
        else:
            names = [str(c) for c in classes]
            if len(set(names)) != len(names):
                raise ParameterError(
                    f"The 'classes' parameter of {type(self).__name__} must not repeat a label. Got {names}."
                )
            if len(names) != arr.shape[2]:
                raise DataError(
                    f"{owner}: the 'classes' parameter names {len(names)} classes "
                    f"but X has {arr.shape[2]} on its last axis."
                )
            unknown = sorted(set(labels.tolist()) - set(names))
            if unknown:
                raise DataError(f"{owner}: 'y' has labels that are not in 'classes': {unknown}. Known: {names}.")
        index = {c: i for i, c in enumerate(names)}
        codes = np.fromiter((index[v] for v in labels), dtype=np.int64, count=len(labels))
        return arr, codes, names

    @staticmethod
    def _check_flag(value: Any, name: str, *, owner: str) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise ParameterError(f"The {name!r} parameter of {owner} must be True or False. Got {value!r}.")

    @staticmethod
    def _check_open_fraction(value: Any, name: str, *, owner: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 < value < 1:
            raise ParameterError(f"The {name!r} parameter of {owner} must be a finite number > 0 and < 1. Got "
                                 f"{value!r}.")

    def _finish_fit(self, names: List[str], n_models: int) -> None:
        self.classes_ = np.asarray(names, dtype=object)
        self.n_models_ = int(n_models)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "classes_")

    def _check_predict_input(self, X: Any, *, method: str) -> np.ndarray:
        name = type(self).__name__
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"This {name} instance is not fitted yet. Call 'fit' with out-of-fold predictions before '{method}'."
            )
        arr = check_stack_input(X, owner=f"{name}.{method}")
        expected = (self.n_models_, len(self.classes_))
        if arr.shape[1:] != expected:
            raise DataError(
                f"{name}.{method}: X must have shape (n_files, {expected[0]}, {expected[1]}) like the data it was "
                f"fitted on (models, classes). Got {arr.shape}."
            )
        return arr

    def predict(self, X: Any, **kwargs: Any) -> np.ndarray:
        """Predicted labels: the argmax of :meth:`predict_proba`.

        Returns
        -------
        np.ndarray [shape=(n_files,), dtype=object]
        """
        proba = self.predict_proba(X, **kwargs)
        return self.classes_[np.argmax(proba, axis=1)]


def early_stopping_split(
    codes: np.ndarray, groups: Optional[np.ndarray], *, fraction: float, seed: int
) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """The (train, validation) rows a stacker early-stops on, or None when the data is too small to split.

    With ``groups`` (the outer folds, speakers...) of two or more values, whole groups are held out
    (:class:`~sklearn.model_selection.GroupShuffleSplit`); otherwise a stratified split of files.

    Parameters
    ----------
    codes : np.ndarray [shape=(n_files,), dtype=int]
        Class codes.
    groups : np.ndarray [shape=(n_files,)] or None
    fraction : float in (0, 1)
        Share of the rows (or groups) held out.
    seed : int
    """
    from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit, StratifiedShuffleSplit

    n = len(codes)
    if n < 10:
        return None
    idx = np.zeros(n)
    if groups is not None and len(np.unique(groups)) >= 2:
        splitter: Any = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        train, val = next(splitter.split(idx, codes, groups))
    else:
        counts = np.bincount(codes)
        n_val = max(int(round(fraction * n)), 1)
        stratify = counts[counts > 0].min() >= 2 and n_val >= len(counts[counts > 0])
        splitter = (StratifiedShuffleSplit if stratify else ShuffleSplit)(n_splits=1, test_size=n_val,
                                                                          random_state=seed)
        train, val = next(splitter.split(idx, codes))
    if len(train) == 0 or len(val) == 0:
        return None
    return np.sort(train), np.sort(val)


def beats_the_start(start_losses: np.ndarray, losses: np.ndarray, *, tol_se: float) -> bool:
    """Whether held-out per-file losses improve on the start's by more than ``tol_se`` standard errors (paired).

    ``mean(d) > tol_se * std(d) / sqrt(n)`` with ``d = start_losses - losses``: a stacker leaves its start (the
    mean of the models) only for an improvement larger than the noise of its estimate.
    """
    d = np.asarray(start_losses, dtype=np.float64) - np.asarray(losses, dtype=np.float64)
    if d.size == 0 or d.mean() <= 0:
        return False
    if tol_se <= 0 or d.size < 2:
        return True
    return bool(d.mean() > tol_se * d.std(ddof=1) / np.sqrt(d.size))


def fit_with_groups(estimator: Any, X: np.ndarray, y: np.ndarray, groups: Optional[np.ndarray], **kwargs: Any) -> Any:
    """``estimator.fit(X, y, groups=groups, **kwargs)`` when its ``fit`` takes groups, else without them."""
    import inspect

    if groups is not None and "groups" in inspect.signature(estimator.fit).parameters:
        kwargs["groups"] = groups
    return estimator.fit(X, y, **kwargs)


def run_task(source: RunSource) -> Task:
    """The task of a run (folder: its ``config.json``), or of a prediction table (a ``labels`` column: multi-label)."""
    if not isinstance(source, pd.DataFrame) and Path(source).is_dir():
        from ..training import Run

        return Run(source).task
    return Task.for_kind("multi-label" if "labels" in table_columns(source) else "single-label")


def _run_name(source: RunSource, i: int) -> str:
    return f"run {i}" if isinstance(source, pd.DataFrame) else f"run {i} ({source})"


def _read_run(source: RunSource, task: Any = None) -> Tuple[pd.DataFrame, List[str], np.ndarray]:
    if not isinstance(source, pd.DataFrame) and Path(source).is_dir():
        from ..training import Run  # the run folder's layout (imported here: it brings torch)

        folder = Path(source)
        source = folder / Run.OOF_FILES
        if not source.is_file():
            hint = ("its training has not finished a fold yet: run the same `specimg train` command again (it "
                    "resumes)" if (folder / Run.CONFIG).is_file() else
                    "it is not a run folder written by `specimg train`")
            raise DataError(f"Run folder {str(folder)!r} has no oof_files.csv: {hint}. Or pass the path of an "
                            "out-of-fold prediction CSV instead.")
    return read_predictions(source, task=task)


def _check_same_classes(classes: List[str], ref: List[str], name: str, ref_name: str) -> None:
    if set(classes) == set(ref):
        return
    missing = sorted(set(ref) - set(classes))
    added = sorted(set(classes) - set(ref))
    detail = "; ".join(part for part in (
        f"it lacks class {', '.join(map(repr, missing))}" if missing else "",
        f"it has extra class {', '.join(map(repr, added))}" if added else "",
    ) if part)
    raise DataError(f"The classes of {name} differ from those of {ref_name}: {detail}. "
                    "Stack only runs trained on the same label set.")


def _check_same_files(frame: pd.DataFrame, paths: List[str], name: str, ref_name: str) -> None:
    these, ref = set(frame["path"]), set(paths)
    if these == ref:
        return
    lacking = [p for p in paths if p not in these]
    if lacking:
        raise DataError(f"File {lacking[0]!r} is in {ref_name} but missing from {name}"
                        + (f" ({len(lacking)} files missing in all)" if len(lacking) > 1 else "")
                        + ". All runs must predict the same files; re-run prediction or drop the file everywhere.")
    extra = sorted(these - ref)
    raise DataError(f"File {extra[0]!r} is in {name} but not in {ref_name}"
                    + (f" ({len(extra)} extra files in all)" if len(extra) > 1 else "")
                    + ". All runs must predict the same files.")


def _labels_of(aligned: pd.DataFrame, name: str, require: bool, task: Task,
               classes: List[str]) -> Optional[np.ndarray]:
    """The runs' truth: labels (single-label), or multi-hot rows of the ``labels`` tags (multi-label)."""
    column = task.truth_column
    if column in aligned.columns and aligned[column].notna().all():
        if column == "label":
            return aligned["label"].astype(str).to_numpy(dtype=object)
        return task.truth_of(aligned[column].tolist(), classes, paths=aligned["path"].tolist())
    if require:
        raise DataError(f"{name} has no {column!r} for every file, but stacking needs labelled "
                        "out-of-fold predictions (RUN/oof_files.csv written by `specimg train`; require_folds=True). "
                        "Give test predictions with --test (require_folds=False).")
    return None


def _folds_of(aligned: pd.DataFrame, name: str, require: bool) -> Optional[np.ndarray]:
    if "fold" in aligned.columns:
        return aligned["fold"].to_numpy(dtype=np.int64)
    if require:
        raise DataError(f"{name} has no 'fold' column, but stacking needs out-of-fold predictions (RUN/oof_files.csv "
                        "written by `specimg train`; require_folds=True). Give test predictions with --test "
                        "(require_folds=False).")
    return None


def _check_agree(values: np.ndarray, ref: np.ndarray, paths: List[str], name: str, ref_name: str, *,
                 what: str) -> None:
    differ = values != ref
    diff = np.flatnonzero(differ.any(axis=1) if differ.ndim == 2 else differ)
    if not diff.size:
        return
    i = int(diff[0])
    if what == "label":
        raise DataError(f"File {paths[i]!r} has label {values[i]!r} in {name} but {ref[i]!r} in {ref_name}. "
                        "The runs must be trained on the same labels.")
    raise DataError(f"File {paths[i]!r} is in fold {int(values[i])} in {name} but in fold {int(ref[i])} in "
                    f"{ref_name}. Stack only runs that share one fold split, or the stacker learns from leaked "
                    "predictions.")


def align_runs(
    frames_or_paths: Sequence[RunSource],
    *,
    require_folds: bool = True,
    task: Optional[Task] = None,
) -> Tuple[List[str], np.ndarray, Optional[np.ndarray], List[str], Optional[np.ndarray]]:
    """Read several runs' file-level predictions into one stack input.

    Parameters
    ----------
    frames_or_paths : sequence of (str, path-like or pd.DataFrame)
        One entry per run: a prediction CSV (e.g. ``RUN/oof_files.csv`` or a
        ``predict`` output), a run folder (its ``oof_files.csv`` is read), or
        a frame in that format.
    require_folds : bool
        If True (out-of-fold predictions for training a stacker), every run
        must have labels and a ``fold`` column, and they must agree. Set False
        for test predictions, which may have neither.
    task : Task or None
        The runs' task (:func:`run_task`); ``None``: what the first table
        holds (tags: multi-label).

    Returns
    -------
    paths : list of str [shape=(n_files,)]
        File order of the first run.
    X : np.ndarray [shape=(n_files, n_models, n_classes), dtype=float64]
        ``X[i, m]`` is run ``m``'s probability vector for ``paths[i]``.
    y : np.ndarray [shape=(n_files,), dtype=object] or [shape=(n_files, n_classes)], or None
        Labels (single-label) or multi-hot tag rows (multi-label), when the
        runs have them.
    classes : list of str [shape=(n_classes,)]
        Class order of the last axis of ``X`` (the first run's column order;
        other runs' columns are reordered to it).
    folds : np.ndarray [shape=(n_files,), dtype=int64] or None
        Out-of-fold index, when the runs have it.

    Raises
    ------
    DataError
        A run lacks a file the first run has (or has one more), the class
        sets differ, labels or folds disagree, or folds/labels are missing
        while ``require_folds`` is True. The message names the file or class
        and the run.
    """
    if isinstance(frames_or_paths, (str, os.PathLike, pd.DataFrame)):
        sources: List[RunSource] = [frames_or_paths]
    else:
        sources = list(frames_or_paths)
    if not sources:
        raise DataError("align_runs needs at least one run. Got an empty list.")
    task = task or run_task(sources[0])
    runs = [_read_run(s, task) for s in sources]
    names = [_run_name(s, i) for i, s in enumerate(sources)]

    ref_frame, ref_classes, _ = runs[0]
    paths = ref_frame["path"].tolist()
    X = np.empty((len(paths), len(runs), len(ref_classes)), dtype=np.float64)
    y: Optional[np.ndarray] = None
    y_from = ""
    folds: Optional[np.ndarray] = None
    folds_from = ""
    for m, ((frame, classes, probs), name) in enumerate(zip(runs, names)):
        _check_same_classes(classes, ref_classes, name, names[0])
        _check_same_files(frame, paths, name, names[0])
        row = pd.Series(np.arange(len(frame)), index=frame["path"]).loc[paths].to_numpy()
        X[:, m, :] = probs[row][:, [classes.index(c) for c in ref_classes]]
        aligned = frame.iloc[row].reset_index(drop=True)
        labels = _labels_of(aligned, name, require_folds, task, list(ref_classes))
        if labels is not None:
            if y is None:
                y, y_from = labels, name
            _check_agree(labels, y, paths, name, y_from, what="label")
        f = _folds_of(aligned, name, require_folds)
        if f is not None:
            if folds is None:
                folds, folds_from = f, name
            _check_agree(f, folds, paths, name, folds_from, what="fold")
    return paths, X, y, list(ref_classes), folds


def cross_val_stack(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    groups: Optional[Any] = None,
    n_splits: int = 5,
    seed: int = 0,
    extra: Optional[Any] = None,
) -> np.ndarray:
    """Out-of-fold probabilities of a stacker (inner cross-validation).

    Each split fits a :func:`sklearn.base.clone` of ``estimator`` on the other files' out-of-fold predictions
    and predicts the held-out files.

    Parameters
    ----------
    estimator : stacker
        ``CNNStacker``, ``LGBMStacker``, ``WeightedBlend`` or any estimator with
        ``fit(X, y)``/``predict_proba(X)`` on 3-D input.
    X : np.ndarray [shape=(n_files, n_models, n_classes)]
    y : sequence of str [shape=(n_files,)]
    groups : sequence [shape=(n_files,)], optional
        Group of each file (speaker, patient, source recording): splits are
        :class:`~sklearn.model_selection.StratifiedGroupKFold` so no group is
        on both sides; without groups :class:`~sklearn.model_selection.StratifiedKFold`.
    n_splits : int >= 2
    seed : int
        Shuffling seed of the splitter.
    extra : np.ndarray or pd.DataFrame [shape=(n_files, n_extra)], optional
        Per-file features passed as ``extra=`` to ``fit`` and ``predict_proba``
        (for :class:`LGBMStacker`).

    Returns
    -------
    np.ndarray [shape=(n_files, n_classes), dtype=float64]
        Held-out probabilities, columns in the estimator's class order (the
        ``classes`` parameter, or the numeric-aware sorted labels of ``y``).
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    owner = "cross_val_stack"
    check_int(n_splits, "n_splits", owner=owner, low=2)
    arr = check_stack_input(X, owner=owner)
    labels = _check_y(y, arr.shape[0], owner=owner)
    params = estimator.get_params(deep=False)
    classes = params.get("classes")
    names = sort_labels(labels) if classes is None else [str(c) for c in classes]
    counts = pd.Series(labels).value_counts()
    g = None if groups is None else np.asarray(groups)
    if g is None:
        if counts.min() < n_splits:
            raise DataError(
                f"{owner}: class {counts.idxmin()!r} has {int(counts.min())} files, fewer than n_splits={n_splits}. "
                "Lower n_splits."
            )
        splitter: Any = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(labels)), labels)
    else:
        if g.shape != (arr.shape[0],):
            raise DataError(f"The 'groups' argument of {owner} must have shape ({arr.shape[0]},). Got {g.shape}.")
        n_groups = len(np.unique(g))
        if n_groups < n_splits:
            raise DataError(f"{owner}: there are {n_groups} groups, fewer than n_splits={n_splits}. Lower n_splits.")
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(labels)), labels, g)

    oof = np.full((arr.shape[0], len(names)), np.nan)
    for train, test in splits:
        est = clone(estimator)
        if "classes" in params and classes is None:
            est.set_params(classes=names)  # same columns in every split even if a class is absent from one
        kw_fit = {} if extra is None else {"extra": _take(extra, train)}
        kw_pred = {} if extra is None else {"extra": _take(extra, test)}
        fit_with_groups(est, arr[train], labels[train], None if groups is None else g[train], **kw_fit)
        proba = est.predict_proba(arr[test], **kw_pred)
        fitted = {str(c): j for j, c in enumerate(est.classes_)}
        block = np.zeros((len(test), len(names)))
        for k, c in enumerate(names):
            if c in fitted:  # a class absent from this training split keeps probability 0
                block[:, k] = proba[:, fitted[c]]
        oof[test] = block
    return oof


def _take(extra: Any, idx: np.ndarray) -> Any:
    return extra.iloc[idx] if isinstance(extra, pd.DataFrame) else np.asarray(extra)[idx]

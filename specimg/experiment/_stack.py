"""Stack or blend several runs' out-of-fold predictions, and build pseudo-labelled training tables.

These are the library functions behind ``specimg stack`` and
``specimg pseudo-label``; the experiment runner calls them too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from ..exceptions import DataError, ParameterError
from ..predict.aggregate import predictions_frame, read_predictions
from ..predict.metrics import uar
from ._steps import atomic_csv, atomic_text

__all__ = ["StackResult", "stack_runs", "make_stacker", "pseudo_label_table", "STACK_METHODS"]

PathLike = Union[str, "os.PathLike[str]"]
RunSource = Union[str, "os.PathLike[str]", pd.DataFrame]
StackMethod = Literal["cnn", "cnn-skip", "lgbm", "blend", "mean"]

#: The methods of :func:`stack_runs`.
STACK_METHODS = ("cnn", "cnn-skip", "lgbm", "blend", "mean")


def _scores(y: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> Dict[str, float]:
    pred = np.asarray(classes, dtype=object)[np.argmax(probs, axis=1)].astype(str)
    return {"accuracy": float(np.mean(pred == y)), "uar": float(uar(y, pred))}


def make_stacker(method: str, classes: Sequence[str], *, weights: Optional[Sequence[float]] = None,
                 params: Optional[Mapping[str, Any]] = None, seed: int = 0) -> Any:
    """The (unfitted) estimator of a stacking method.

    Parameters
    ----------
    method : {'cnn', 'cnn-skip', 'lgbm', 'blend', 'mean'}
        ``'cnn'``/``'cnn-skip'``: :class:`~specimg.stacking.CNNStacker` without /
        with residual connections; ``'lgbm'``: :class:`~specimg.stacking.LGBMStacker`;
        ``'blend'``: :class:`~specimg.stacking.WeightedBlend` with ``weights``
        (fitted on the out-of-fold predictions when None); ``'mean'``: equal weights.
    classes : sequence of str
    weights : sequence of float, optional
        ``'blend'`` only.
    params : mapping, optional
        Extra constructor arguments of the stacker (e.g. ``{'epochs': 30}``).
        LightGBM gets ``n_jobs=1`` unless given.
    seed : int
    """
    from ..stacking import CNNStacker, LGBMStacker, WeightedBlend

    params = dict(params or {})
    if method not in STACK_METHODS:
        raise ParameterError(f"The 'method' parameter must be one of {', '.join(map(repr, STACK_METHODS))}. "
                             f"Got {method!r}.")
    if weights is not None and method != "blend":
        raise ParameterError(f"Weights apply to method='blend' only; method={method!r} learns its own "
                             "combination. Drop the weights or use method='blend'.")
    try:
        if method in ("cnn", "cnn-skip"):
            params.setdefault("seed", seed)
            return CNNStacker(skip=method == "cnn-skip", classes=list(classes), **params)
        if method == "lgbm":
            params.setdefault("random_state", seed)
            # Stack inputs are small (files x models*classes): one thread is fast, and LightGBM's OpenMP
            # threads spin badly on a busy machine (50x slower measured on 2 shared cores).
            params.setdefault("n_jobs", 1)
            return LGBMStacker(classes=list(classes), **params)
        if method == "blend":
            return WeightedBlend(weights=None if weights is None else list(weights), fit_weights=weights is None,
                                 classes=list(classes), **params)
        return WeightedBlend(weights=None, fit_weights=False, classes=list(classes), **params)
    except TypeError as exc:
        raise ParameterError(f"Bad parameter for the {method!r} stacker: {exc}. Check the stacker options "
                             "(e.g. stacking.cnn / stacking.lgbm in a recipe).") from None


@dataclass
class StackResult:
    """What :func:`stack_runs` returns.

    Attributes
    ----------
    method : str
    names : list of str
        The members (runs), in input order.
    classes : list of str
    oof : pd.DataFrame
        Honest out-of-fold predictions of the stack (inner cross-validation):
        ``path, label, fold, prediction, prob_<class>...``; ``fold`` is the
        base runs' fold, so the table can itself be stacked or blended.
    metrics : dict
        ``accuracy``/``uar`` of every member, of their probability mean and of
        the stack (``models``, ``mean``, ``stack``), plus the blend ``weights``
        when the method has them, and the same on the test set when it is
        labelled (``test``).
    test : pd.DataFrame or None
        Test predictions of the stack fitted on all out-of-fold predictions.
    estimator : object
        The stacker fitted on all out-of-fold predictions.
    """

    method: str
    names: List[str]
    classes: List[str]
    oof: pd.DataFrame
    metrics: Dict[str, Any]
    test: Optional[pd.DataFrame] = None
    estimator: Any = field(default=None, repr=False)

    def write(self, out_dir: PathLike) -> Path:
        """Write ``oof_files.csv``, ``metrics.json`` and (with a test set) ``test_files.csv`` atomically."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_csv(self.oof, out / "oof_files.csv")
        if self.test is not None:
            atomic_csv(self.test, out / "test_files.csv")
        atomic_text(out / "metrics.json", json.dumps(self.metrics, indent=2) + "\n")
        return out


def _source_name(source: RunSource, i: int) -> str:
    if isinstance(source, pd.DataFrame):
        return f"model{i}"
    p = Path(source)
    return p.parent.name if p.is_file() or p.suffix == ".csv" else p.name


def _source_key(source: RunSource) -> Optional[str]:
    """The file a run source reads (to find a run given twice); None for a frame."""
    if isinstance(source, pd.DataFrame):
        return None
    p = Path(source)
    return str((p / "oof_files.csv" if p.is_dir() else p).resolve())


def _member_names(sources: Sequence[RunSource], names: Optional[Sequence[str]]) -> List[str]:
    """The members' names: given, or the run folder names (qualified by their parent folder when they clash)."""
    if names is not None:
        out = [str(n) for n in names]
        if len(out) != len(sources):
            raise ParameterError(f"The 'names' parameter of stack_runs (--names) must name each of the "
                                 f"{len(sources)} runs. Got {len(out)} names.")
        dup = sorted({n for n in out if out.count(n) > 1})
        if dup:
            raise ParameterError(f"The 'names' parameter of stack_runs (--names) repeats {dup[0]!r}; every run "
                                 f"needs its own name. Got {out}.")
        return out
    base = [_source_name(s, i) for i, s in enumerate(sources)]
    out = list(base)
    for i, s in enumerate(sources):
        if base.count(base[i]) > 1 and not isinstance(s, pd.DataFrame):
            p = Path(s)
            run = p.parent if p.is_file() or p.suffix == ".csv" else p
            out[i] = f"{run.parent.name}/{run.name}"
    return [n if out.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(out)]


def stack_runs(
    oof: Sequence[RunSource],
    *,
    method: StackMethod = "lgbm",
    names: Optional[Sequence[str]] = None,
    test: Optional[Sequence[RunSource]] = None,
    weights: Optional[Sequence[float]] = None,
    inner_folds: Optional[int] = None,
    params: Optional[Mapping[str, Any]] = None,
    seed: int = 0,
) -> StackResult:
    """Stack (or blend) the out-of-fold predictions of several runs, scored honestly.

    The runs' ``oof_files.csv`` are aligned (:func:`~specimg.stacking.align_runs`),
    then the stacker is scored with an inner cross-validation whose splits
    are grouped by the runs' own ``fold`` column
    (:func:`~specimg.stacking.cross_val_stack`): a file's stacked prediction
    comes from a stacker that never saw its fold, and groups (speakers,
    patients) stay held out because the outer folds kept them together.
    Finally the stacker is fitted on all out-of-fold predictions and applied
    to the test predictions, if given.

    Parameters
    ----------
    oof : sequence of path or DataFrame [shape=(n_models,)]
        Run folders (their ``oof_files.csv`` is read) or prediction tables
        with ``label`` and ``fold`` columns.
    method : {'cnn', 'cnn-skip', 'lgbm', 'blend', 'mean'}
        See :func:`make_stacker`. ``'mean'`` and ``'blend'`` with fixed
        ``weights`` learn nothing, so their out-of-fold predictions are
        computed directly.
    names : sequence of str, optional
        Member names for the metrics (default: the run folder names).
    test : sequence of path or DataFrame [shape=(n_models,)], optional
        One test prediction table per run, in the same order as ``oof``.
    weights : sequence of float, optional
        Blend weights, one per run (``method='blend'`` only); None fits them.
    inner_folds : int, optional
        Inner cross-validation folds (default: the number of outer folds).
    params : mapping, optional
        Extra stacker arguments.
    seed : int

    Returns
    -------
    result : StackResult

    Raises
    ------
    DataError
        Runs that do not describe the same files, classes, labels or folds;
        test tables that do not match the runs.
    ParameterError
        A bad method, weights, names or inner fold count; a run given twice;
        one run for ``'blend'`` or ``'mean'``, which combine several.

    Examples
    --------
    >>> res = stack_runs(["runs/a", "runs/b", "runs/c"], method="lgbm")  # doctest: +SKIP
    >>> res.metrics["stack"]["uar"], res.metrics["mean"]["uar"]  # doctest: +SKIP
    """
    from ..stacking import align_runs, cross_val_stack

    sources = list(oof) if not isinstance(oof, (str, os.PathLike, pd.DataFrame)) else [oof]
    if not sources:
        raise ParameterError("stack_runs needs at least one run. Got none.")
    keys = [_source_key(src) for src in sources]
    for i, key in enumerate(keys):
        if key is not None and keys.index(key) != i:
            raise ParameterError(f"Run {i} ({sources[i]}) is the same as run {keys.index(key)} "
                                 f"({sources[keys.index(key)]}): each run must be given once. Remove the repeat.")
    if method in ("blend", "mean") and len(sources) < 2:
        given = "a frame" if isinstance(sources[0], pd.DataFrame) else repr(str(sources[0]))
        raise ParameterError(f"method={method!r} (--method) combines several runs, but only one was given "
                             f"({given}). Give two or more runs, or use method 'lgbm' or 'cnn' to recalibrate "
                             "one run.")
    member_names = _member_names(sources, names)
    if weights is not None:
        try:
            w = [float(x) for x in weights]
        except (TypeError, ValueError):
            raise ParameterError(f"The 'weights' parameter of stack_runs (--weights) must be numbers. "
                                 f"Got {weights!r}.") from None
        if len(w) != len(sources):
            raise ParameterError(f"The 'weights' parameter of stack_runs (--weights) needs one weight per run: "
                                 f"{len(sources)} run(s) but {len(w)} weight(s) ({w}). Give the weights in the "
                                 "order of the runs.")
        weights = w
    paths, X, y, classes, folds = align_runs(sources, require_folds=True)
    if y is None or folds is None:  # align_runs(require_folds=True) guarantees both; keep the types honest
        raise DataError("stack_runs needs labelled out-of-fold predictions with a 'fold' column.")
    n_outer = int(len(np.unique(folds)))
    k = n_outer if inner_folds is None else inner_folds
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ParameterError(f"The inner fold count (inner_folds / --folds) must be an int >= 2. Got {k!r}"
                             + (f"; the runs have only {n_outer} fold(s)" if inner_folds is None else "") + ".")
    if k > n_outer:
        raise ParameterError(f"The inner fold count (inner_folds / --folds) must be <= the {n_outer} outer folds of "
                             f"the runs: the inner splits are grouped by the runs' fold column. Got {k}.")
    estimator = make_stacker(method, classes, weights=weights, params=params, seed=seed)
    learns = method not in ("mean",) and not (method == "blend" and weights is not None)
    if learns:
        probs = cross_val_stack(estimator, X, y, groups=folds, n_splits=int(k), seed=seed)
    else:
        probs = estimator.fit(X, y).predict_proba(X)
    final = estimator.fit(X, y)  # on all out-of-fold predictions: for the test set and the weights
    oof_frame = predictions_frame(paths, probs, classes, labels=y, folds=folds)

    metrics: Dict[str, Any] = {
        "method": method,
        "classes": list(classes),
        "n_files": int(len(paths)),
        "outer_folds": n_outer,
        "inner_folds": int(k) if learns else None,
        "members": member_names,
        "models": {n: _scores(y, X[:, m], classes) for m, n in enumerate(member_names)},
        "mean": _scores(y, X.mean(axis=1), classes),
        "stack": _scores(y, probs, classes),
    }
    if hasattr(final, "weights_"):
        metrics["weights"] = {n: float(v) for n, v in zip(member_names, final.weights_)}

    test_frame = None
    if test is not None:
        tests = list(test) if not isinstance(test, (str, os.PathLike, pd.DataFrame)) else [test]
        if len(tests) != len(sources):
            raise ParameterError(f"Give one test prediction table per run, in the same order: {len(sources)} run(s) "
                                 f"but {len(tests)} test table(s).")
        t_paths, t_X, t_y, t_classes, _ = align_runs(tests, require_folds=False)
        if t_classes != list(classes):
            if set(t_classes) != set(classes):
                raise DataError(f"The test predictions have the classes {t_classes} but the out-of-fold predictions "
                                f"have {list(classes)}. Predict the test set with the same runs.")
            order = [t_classes.index(c) for c in classes]
            t_X = t_X[:, :, order]
        t_probs = final.predict_proba(t_X)
        test_frame = predictions_frame(t_paths, t_probs, classes, labels=t_y)
        if t_y is not None:
            known = set(classes)
            if all(v in known for v in t_y):
                metrics["test"] = {
                    "n_files": int(len(t_paths)),
                    "models": {n: _scores(t_y, t_X[:, m], classes) for m, n in enumerate(member_names)},
                    "mean": _scores(t_y, t_X.mean(axis=1), classes),
                    "stack": _scores(t_y, t_probs, classes),
                }
    return StackResult(method=method, names=member_names, classes=list(classes), oof=oof_frame, metrics=metrics,
                       test=test_frame, estimator=final)


# --------------------------------------------------------------------------- pseudo-labels
def _relative_or_absolute(abspath: str, folder: Path) -> str:
    try:
        return os.path.relpath(abspath, folder)
    except ValueError:  # another drive (Windows)
        return str(Path(abspath).resolve())


def pseudo_label_table(
    test_predictions: Union[PathLike, pd.DataFrame],
    train: Union[PathLike, pd.DataFrame],
    *,
    out: Optional[PathLike] = None,
    test_input: Optional[Union[PathLike, pd.DataFrame]] = None,
    threshold: float = 0.85,
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
        Keep a test file when its top probability is at least this.
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
    from ..stacking import pseudo_training_table, select_pseudo_labels

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
    missing = sorted(set(classes) - set(table["label"]))
    extra = sorted(set(table["label"]) - set(classes))
    if missing or extra:
        raise DataError(f"The test predictions' classes {classes} differ from the training labels "
                        f"{sorted(set(table['label']))}. Predict with runs trained on this training set.")

    # where the test audio is
    if test_input is not None:
        tt = read_table(test_input)
        where = dict(zip(tt["path"], tt["abspath"]))
        absent = [p for p in frame["path"] if p not in where]
        if absent:
            raise DataError(f"{len(absent)} predicted file(s) are not in the test input, e.g. {absent[0]!r}. Pass the "
                            "same test CSV or folder that was predicted.")
        test_abs = [where[p] for p in frame["path"]]
    else:
        base = Path.cwd() if isinstance(test_predictions, pd.DataFrame) else Path(test_predictions).parent
        test_abs = [p if os.path.isabs(p) else str(base / p) for p in frame["path"]]
        lost = [p for p, a in zip(frame["path"], test_abs) if not os.path.exists(a)]
        if lost:
            raise DataError(f"Test file {lost[0]!r} is not found next to {source}"
                            + (f" ({len(lost)} files missing)" if len(lost) > 1 else "")
                            + ". Pass the test input that was predicted (--test-input) so its paths can be found.")
    train_abs = {str(Path(a).resolve()) for a in table["abspath"]}
    clash = [p for p, a in zip(frame["path"], test_abs) if str(Path(a).resolve()) in train_abs]
    if clash:
        raise DataError(f"Test file {clash[0]!r} is also a training file"
                        + (f" ({len(clash)} such files)" if len(clash) > 1 else "")
                        + ". Pseudo-label only files that have no label.")

    picked = select_pseudo_labels(test_abs, probs, classes, threshold=threshold, max_per_class=max_per_class)
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

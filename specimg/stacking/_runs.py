"""Stack or blend several runs' out-of-fold predictions: ``specimg stack`` as a library function."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from ..exceptions import DataError, ParameterError
from ..predict.aggregate import predictions_frame
from ._align import align_runs, run_task
from ._result import StackResult
from ._compare import CANDIDATES, STACK_METHODS, StackComparison, compare_stackers

__all__ = ["StackResult", "stack_runs"]
RunSource = Union[str, "os.PathLike[str]", pd.DataFrame]
StackMethod = Literal["cnn", "cnn-skip", "lgbm", "blend", "mean", "seed-blend", "auto"]


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


def _check_weights(weights: Optional[Sequence[float]], n_runs: int) -> Optional[List[float]]:
    if weights is None:
        return None
    try:
        w = [float(x) for x in weights]
    except (TypeError, ValueError):
        raise ParameterError(f"The 'weights' parameter of stack_runs (--weights) must be numbers. "
                             f"Got {weights!r}.") from None
    if len(w) != n_runs:
        raise ParameterError(f"The 'weights' parameter of stack_runs (--weights) needs one weight per run: "
                             f"{n_runs} run(s) but {len(w)} weight(s) ({w}). Give the weights in the "
                             "order of the runs.")
    return w


def _check_sources(sources: List[RunSource], method: str) -> None:
    if not sources:
        raise ParameterError("stack_runs needs at least one run. Got none.")
    if method not in STACK_METHODS:
        raise ParameterError(f"The 'method' parameter of stack_runs (--method) must be one of "
                             f"{', '.join(STACK_METHODS)}. Got {method!r}.")
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


def _check_inner_folds(inner_folds: Optional[int], n_outer: int) -> int:
    k = n_outer if inner_folds is None else inner_folds
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ParameterError(f"The inner fold count (inner_folds / --folds) must be an int >= 2. Got {k!r}"
                             + (f"; the runs have only {n_outer} fold(s)" if inner_folds is None else "") + ".")
    if k > n_outer:
        raise ParameterError(f"The inner fold count (inner_folds / --folds) must be <= the {n_outer} outer folds of "
                             f"the runs: the inner splits are grouped by the runs' fold column. Got {k}.")
    return int(k)


def _test_input(test: Any, n_runs: int, classes: List[str]) -> Any:
    """``(paths, X_test, labels)`` of the test tables, columns in the runs' class order."""
    tests = list(test) if not isinstance(test, (str, os.PathLike, pd.DataFrame)) else [test]
    if len(tests) != n_runs:
        raise ParameterError(f"Give one test prediction table per run, in the same order: {n_runs} run(s) "
                             f"but {len(tests)} test table(s).")
    t_paths, t_X, t_y, t_classes, _ = align_runs(tests, require_folds=False)
    if t_classes != list(classes):
        if set(t_classes) != set(classes):
            raise DataError(f"The test predictions have the classes {t_classes} but the out-of-fold predictions "
                            f"have {list(classes)}. Predict the test set with the same runs.")
        t_X = t_X[:, :, [t_classes.index(c) for c in classes]]
    return t_paths, t_X, t_y


def _scores(frame: pd.DataFrame, candidate: str) -> Dict[str, float]:
    row = frame[(frame["candidate"] == candidate) & (frame["fold"] == "all")].iloc[0]
    return {"accuracy": float(row["accuracy"]), "uar": float(row["uar"])}


def _candidate_scores(cmp: StackComparison, candidate: str) -> Dict[str, Any]:
    """Pooled ``accuracy, uar, log_loss`` of a candidate and its ``accuracy, uar, n_files`` on each outer fold."""
    rows = cmp.scores[cmp.scores["candidate"] == candidate]
    pooled = rows[rows["fold"] == "all"].iloc[0]
    return {"kind": cmp.kinds[candidate], **{m: float(pooled[m]) for m in ("accuracy", "uar", "log_loss")},
            "folds": {str(r["fold"]): {"accuracy": float(r["accuracy"]), "uar": float(r["uar"]),
                                       "n_files": int(r["n_files"])}
                      for _, r in rows[rows["fold"] != "all"].iterrows()}}


def _metrics(cmp: StackComparison, method: str, key: str, member_names: List[str], model_keys: List[str],
             n_files: int, n_outer: int, k: int, learns: bool) -> Dict[str, Any]:
    scores = cmp.scores
    metrics: Dict[str, Any] = {
        "method": method,
        "classes": list(cmp.classes),
        "n_files": int(n_files),
        "outer_folds": n_outer,
        "inner_folds": k if learns else None,
        "members": member_names,
        "models": {n: _scores(scores, mk) for n, mk in zip(member_names, model_keys)},
        "mean": _scores(scores, "mean") if "mean" in cmp.candidates else _scores(scores, model_keys[0]),
        "stack": _scores(scores, key),
        "candidates": {c: _candidate_scores(cmp, c) for c in cmp.candidates},
    }
    if cmp.choices is not None:
        picked = ", ".join(f"{c} in {int(n)} of {len(cmp.choices)} folds"
                           for c, n in cmp.choices["choice"].value_counts().items())
        metrics["selection"] = {
            "metric": cmp.metric,
            "summary": f"auto picked {picked}, each by inner cross-validation {cmp.metric} on the other folds only",
            "folds": cmp.choices[["fold", "choice", "reason"]].to_dict(orient="records"),
        }
    if method not in ("mean",) and key in cmp.model_weights:
        w = cmp.model_weights[key]
        metrics["model_weights"] = {n: {c: float(w[i, j]) for j, c in enumerate(cmp.classes)}
                                    for i, n in enumerate(member_names)}
    if method == "blend":
        metrics["weights"] = {n: float(cmp.model_weights["blend"][i].mean()) for i, n in enumerate(member_names)}
    return metrics


def _test_metrics(cmp: StackComparison, key: str, t_y: Any, member_names: List[str],
                  model_keys: List[str]) -> Optional[Dict[str, Any]]:
    if t_y is None or cmp.test is None or not all(v in set(cmp.classes) for v in t_y):
        return None
    from ._compare import _score

    index = {c: i for i, c in enumerate(cmp.classes)}
    codes = np.fromiter((index[v] for v in t_y), dtype=np.int64, count=len(t_y))

    def sc(c: str) -> Dict[str, float]:
        s = _score(codes, cmp.test[c])  # type: ignore[index]
        return {"accuracy": s["accuracy"], "uar": s["uar"]}

    return {"n_files": int(len(t_y)), "models": {n: sc(mk) for n, mk in zip(member_names, model_keys)},
            "mean": sc("mean" if "mean" in cmp.test else model_keys[0]), "stack": sc(key)}


def stack_runs(
    oof: Sequence[RunSource],
    *,
    method: StackMethod = "auto",
    names: Optional[Sequence[str]] = None,
    test: Optional[Sequence[RunSource]] = None,
    weights: Optional[Sequence[float]] = None,
    inner_folds: Optional[int] = None,
    params: Optional[Mapping[str, Any]] = None,
    compare: bool = False,
    metric: Optional[str] = None,
    seed: int = 0,
) -> StackResult:
    """Stack (or blend) the out-of-fold predictions of several runs, every candidate scored on the same folds.

    The runs' ``oof_files.csv`` are aligned (:func:`~specimg.stacking.align_runs`) and every candidate is scored
    on the runs' own folds (:func:`~specimg.stacking.compare_stackers`), so groups (speakers, patients) stay held
    out as the base runs kept them.

    Parameters
    ----------
    oof : sequence of path or DataFrame [shape=(n_models,)]
        Run folders (their ``oof_files.csv`` is read) or prediction tables
        with ``label`` and ``fold`` columns.
    method : {'auto', 'cnn', 'cnn-skip', 'lgbm', 'blend', 'mean', 'seed-blend', 'logistic'}
        The predictions returned. Runs of a task that scores each class on
        its own (multi-label) take ``'auto'``, ``'mean'``, ``'blend'`` (fixed
        ``weights``, or fitted per class on the logits) or its alias
        ``'logistic'`` (:class:`~specimg.stacking.MultiLabelStacker`), and
        their stacked predictions use per-class thresholds fitted on the
        stacked out-of-fold scores. ``'auto'``: per fold, the candidate with
        the best ``metric`` in an inner cross-validation on the other folds;
        ``'seed-blend'``: 0.45 CNN + 0.45 CNN-skip + 0.1 LightGBM. ``'mean'``
        and ``'blend'`` with fixed ``weights`` learn nothing.
    names : sequence of str, optional
        Member names for the metrics (default: the run folder names).
    test : sequence of path or DataFrame [shape=(n_models,)], optional
        One test prediction table per run, in the same order as ``oof``.
    weights : sequence of float, optional
        Blend weights, one per run (``method='blend'`` only); None fits them.
    inner_folds : int, optional
        Cross-validate the stack on this many groups of the runs' folds
        (default: one per fold of the runs).
    params : mapping, optional
        Extra arguments of the method's stacker (of the CNN stackers for
        ``'cnn'``/``'cnn-skip'``; by method, ``{'cnn': {...}, 'lgbm': {...}}``,
        for ``'auto'`` and ``'seed-blend'``; multi-label:
        :class:`~specimg.stacking.MultiLabelStacker`'s ``C`` and ``max_iter``).
    compare : bool
        Score every candidate, or (False) only each run alone, the mean and
        what ``method`` needs. ``'auto'`` always scores every candidate: it
        chooses among them.
    metric : str or None
        What ``'auto'`` chooses by: ``'accuracy'`` (default), ``'uar'`` or
        ``'log_loss'``; multi-label ``'macro_ap'`` (default: the runs' task
        metric) or ``'macro_roc_auc'``.
    seed : int
        Seeds the stackers that draw at random (the CNN stackers, LightGBM);
        the multi-label stackers draw nothing.

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
    >>> res = stack_runs(["runs/a", "runs/b", "runs/c"], method="auto")  # doctest: +SKIP
    >>> res.metrics["stack"]["accuracy"], res.metrics["selection"]["summary"]  # doctest: +SKIP
    """
    sources = list(oof) if not isinstance(oof, (str, os.PathLike, pd.DataFrame)) else [oof]
    task = run_task(sources[0]) if sources else None
    if task is not None and task.activation == "sigmoid":  # independent scores per class: combined class by class
        from ._classwise import stack_classwise

        _check_sources(sources, "auto")
        return stack_classwise(sources, task=task, method=method, names=_member_names(sources, names), test=test,
                               weights=_check_weights(weights, len(sources)), inner_folds=inner_folds,
                               params=params, compare=compare, metric=metric)
    metric = metric or "accuracy"
    if metric not in ("accuracy", "uar", "log_loss"):
        raise ParameterError(f"The 'metric' parameter of stack_runs (--metric) must be 'accuracy', 'uar' or "
                             f"'log_loss' for single-label runs (what 'auto' chooses by). Got {metric!r}.")
    _check_sources(sources, method)
    member_names = _member_names(sources, names)
    weights = _check_weights(weights, len(sources))
    if weights is not None and method != "blend":
        raise ParameterError(f"Weights apply to method='blend' only; method={method!r} learns its own "
                             "combination. Drop the weights or use method='blend'.")
    paths, X, y, classes, folds = align_runs(sources, require_folds=True)
    if y is None or folds is None:  # align_runs(require_folds=True) guarantees both; keep the types honest
        raise DataError("stack_runs needs labelled out-of-fold predictions with a 'fold' column.")
    n_outer = int(len(np.unique(folds)))
    k = _check_inner_folds(inner_folds, n_outer)
    by_method = _params_by_method(method, params)
    t_paths, t_X, t_y = _test_input(test, len(sources), classes) if test is not None else (None, None, None)
    cmp = compare_stackers(X, y, folds, classes=classes, names=member_names, X_test=t_X,
                           methods=_methods_for(method, compare, len(sources)),
                           auto=method == "auto", metric=metric, params=by_method, weights=weights,
                           n_splits=None if k == n_outer else k, seed=seed)
    model_keys = cmp.candidates[:len(sources)]
    learns = method not in ("mean",) and not (method == "blend" and weights is not None)
    metrics = _metrics(cmp, method, method, member_names, model_keys, len(paths), n_outer, k, learns)
    test_frame = None
    if t_X is not None and cmp.test is not None:
        test_frame = predictions_frame(t_paths, cmp.test[method], classes, labels=t_y)
        tm = _test_metrics(cmp, method, t_y, member_names, model_keys)
        if tm is not None:
            metrics["test"] = tm
    return StackResult(method=method, names=member_names, classes=list(classes),
                       oof=predictions_frame(paths, cmp.oof[method], classes, labels=y, folds=folds),
                       metrics=metrics, test=test_frame, comparison=cmp, estimators=list(cmp.estimators.get(method, [])))


def _methods_for(method: str, compare: bool, n_runs: int) -> List[str]:
    """The combinations to score: all of them (``auto`` chooses among all), or the mean and ``method``."""
    if compare or method == "auto":
        return [m for m in CANDIDATES if n_runs > 1 or m not in ("mean", "blend")]
    return [m for m in ("mean", method) if m in CANDIDATES and (n_runs > 1 or m != "mean")]


def _params_by_method(method: str, params: Optional[Mapping[str, Any]]) -> Dict[str, Mapping[str, Any]]:
    """``params`` as stacker options by method: given per method, or for the one ``method`` names."""
    if not params:
        return {}
    if all(k in STACK_METHODS and isinstance(v, Mapping) for k, v in params.items()):
        return {str(k): dict(v) for k, v in params.items()}
    if method in ("cnn", "cnn-skip", "lgbm", "blend"):
        return {method: dict(params)}
    raise ParameterError(f"For method={method!r} give the stacker options by method, e.g. "
                         f"{{'cnn': {{'epochs': 50}}, 'lgbm': {{'num_leaves': 8}}}}. Got {dict(params)!r}.")

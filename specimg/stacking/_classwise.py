"""Stacking runs that score every class on its own (multi-label): combined class by class, a sigmoid out.

``'mean'`` (weighted with ``weights``: ``'blend'``), ``'logistic'`` (:class:`MultiLabelStacker`; a ``'blend'``
without weights) or ``'auto'`` (per outer fold, the better of the two by ``metric`` in an inner
cross-validation on the other folds). The stacked predictions are the tags at or above per-class thresholds
fitted on the stacked out-of-fold scores (``thresholds.json``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from ..data import window_label_text
from ..exceptions import DataError, NotFittedError, ParameterError
from ..scoring import tag_scores
from ..tasks import Task
from ._align import align_runs, check_stack_input
from ._result import StackResult

__all__ = ["MultiLabelStacker", "stack_classwise", "CLASSWISE_METHODS"]

#: The stacking methods of runs that score each class on its own.
CLASSWISE_METHODS = ("auto", "mean", "blend", "logistic")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


class MultiLabelStacker(BaseEstimator):
    """One logistic regression per class on the runs' logits of that class; sigmoid scores out.

    A scikit-learn estimator (``get_params`` / ``set_params`` / ``clone``; ``fit`` returns ``self``; learnt
    state ends in ``_``; :class:`~specimg.exceptions.NotFittedError` before ``fit``) whose input is the stack
    array of :func:`~specimg.stacking.align_runs`: ``X`` of shape ``(n_files, n_runs, n_classes)``.

    Parameters
    ----------
    C : float
        Inverse L2 strength of scikit-learn's ``LogisticRegression``.
    max_iter : int
        Iterations of its solver.

    Attributes
    ----------
    coef_ : np.ndarray [shape=(n_classes, n_runs)]
    intercept_ : np.ndarray [shape=(n_classes,)]
        A class with only positives or only negatives in the training data keeps the mean of the runs
        (coefficients ``1 / n_runs`` on the logits, intercept 0).
    n_runs_, n_classes_ : int

    Examples
    --------
    >>> X = np.array([[[0.9, 0.2]], [[0.2, 0.8]], [[0.7, 0.1]], [[0.1, 0.9]]])
    >>> Y = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    >>> MultiLabelStacker().fit(X, Y).predict(X).tolist()
    [[1, 0], [0, 1], [1, 0], [0, 1]]
    """

    def __init__(self, C: float = 1.0, max_iter: int = 1000) -> None:
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: Any, Y: Any) -> "MultiLabelStacker":
        """``X`` [shape=(n, n_runs, n_classes)] scores in [0, 1], ``Y`` [shape=(n, n_classes)] multi-hot."""
        from sklearn.linear_model import LogisticRegression

        if isinstance(self.C, bool) or not isinstance(self.C, (int, float)) or not self.C > 0:
            raise ParameterError(f"The 'C' parameter of MultiLabelStacker must be a number > 0. Got {self.C!r}.")
        X = check_stack_input(X, owner="MultiLabelStacker.fit")
        Y = np.asarray(Y)
        if Y.shape != (X.shape[0], X.shape[2]):
            raise DataError(f"MultiLabelStacker.fit: Y must be multi-hot of shape {(X.shape[0], X.shape[2])} (files, "
                            f"classes); got {Y.shape}.")
        Y = Y > 0.5
        n_runs, n_classes = X.shape[1], X.shape[2]
        coef = np.full((n_classes, n_runs), 1.0 / n_runs)
        intercept = np.zeros(n_classes)
        for c in range(n_classes):
            if Y[:, c].all() or not Y[:, c].any():
                continue
            lr = LogisticRegression(C=float(self.C), max_iter=int(self.max_iter)).fit(_logit(X[:, :, c]), Y[:, c])
            coef[c], intercept[c] = lr.coef_[0], lr.intercept_[0]
        self.coef_, self.intercept_ = coef, intercept
        self.n_runs_, self.n_classes_ = int(n_runs), int(n_classes)
        return self

    def _check_fitted(self, X: Any) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise NotFittedError("This MultiLabelStacker is not fitted yet. Call fit(X, Y) first.")
        X = check_stack_input(X, owner="MultiLabelStacker.predict_proba")
        if X.shape[1:] != (self.n_runs_, self.n_classes_):
            raise DataError(f"MultiLabelStacker was fitted on {self.n_runs_} runs x {self.n_classes_} classes; X has "
                            f"{X.shape[1]} x {X.shape[2]}.")
        return X

    def predict_proba(self, X: Any) -> np.ndarray:
        """Scores [shape=(n, n_classes)] in (0, 1)."""
        X = self._check_fitted(X)
        z = np.einsum("nmc,cm->nc", _logit(X), self.coef_) + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

    def predict(self, X: Any, thresholds: Optional[Sequence[float]] = None) -> np.ndarray:
        """Multi-hot tags [shape=(n, n_classes)]: scores at or above ``thresholds`` (one per class; 0.5)."""
        s = self.predict_proba(X)
        t = np.full(s.shape[1], 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        return (s >= t).astype(np.int64)


def _mean(X: np.ndarray, weights: Optional[Sequence[float]] = None) -> np.ndarray:
    w = np.ones(X.shape[1]) if weights is None else np.asarray(weights, dtype=np.float64)
    return np.einsum("nmc,m->nc", X, w / w.sum())


def _score(Y: np.ndarray, S: np.ndarray, metric: str) -> float:
    v = tag_scores(Y, S)[metric]
    return float(v) if np.isfinite(v) else -1.0


def _inner_groups(folds: np.ndarray, k: Optional[int]) -> np.ndarray:
    """The inner cross-validation groups of some files: their folds, or ``k`` groups of whole folds."""
    values = np.unique(folds)
    if k is None or k >= len(values):
        return folds
    group_of = {int(f): i % k for i, f in enumerate(values)}
    return np.array([group_of[int(f)] for f in folds])


def _inner_choice(X: np.ndarray, Y: np.ndarray, folds: np.ndarray, *, metric: str, k: Optional[int],
                  params: Mapping[str, Any]) -> Tuple[str, str]:
    """'mean' or 'logistic' by ``metric`` of honest predictions on these files (one inner split per group)."""
    groups = _inner_groups(folds, k)
    inner = np.zeros_like(Y, dtype=np.float64)
    for g in np.unique(groups):
        hold = groups == g
        inner[hold] = MultiLabelStacker(**params).fit(X[~hold], Y[~hold]).predict_proba(X[hold])
    s_mean, s_lr = _score(Y, _mean(X), metric), _score(Y, inner, metric)
    pick = "logistic" if s_lr > s_mean else "mean"
    return pick, f"inner {metric}: logistic {s_lr:.4f}, mean {s_mean:.4f}"


def _outer(X: np.ndarray, Y: np.ndarray, folds: np.ndarray, method: str, weights: Optional[Sequence[float]],
           X_test: Optional[np.ndarray], *, metric: str, k: Optional[int], params: Mapping[str, Any]
           ) -> Tuple[np.ndarray, Optional[np.ndarray], List[Dict[str, Any]], List[Any]]:
    """Honest out-of-fold scores of ``method``, its test scores (mean of the fold stackers), the choices, the
    fitted fold stackers."""
    if method in ("mean", "blend"):  # 'blend' here has its weights (a fitted blend is 'logistic')
        test = None if X_test is None else _mean(X_test, weights)
        return _mean(X, weights), test, [], []
    oof, tests, choices, fitted = np.zeros(Y.shape), [], [], []
    for f in np.unique(folds):
        hold = folds == f
        pick, why = "logistic", ""
        if method == "auto":
            pick, why = (_inner_choice(X[~hold], Y[~hold], folds[~hold], metric=metric, k=k, params=params)
                         if len(np.unique(folds[~hold])) > 1 else ("mean", "one training fold: the mean"))
        if pick == "logistic":
            est = MultiLabelStacker(**params).fit(X[~hold], Y[~hold])
            oof[hold] = est.predict_proba(X[hold])
            tests.append(None if X_test is None else est.predict_proba(X_test))
            fitted.append(est)
        else:
            oof[hold] = _mean(X[hold])
            tests.append(None if X_test is None else _mean(X_test))
        if method == "auto":
            choices.append({"fold": int(f), "choice": pick, "reason": why})
    test = None if X_test is None else np.mean(tests, axis=0)
    return oof, test, choices, fitted


def _scored(Y: np.ndarray, S: np.ndarray) -> Dict[str, Optional[float]]:
    s = tag_scores(Y, S)
    return {k: (float(v) if np.isfinite(v) else None) for k, v in s.items()}


def _check_options(method: str, metric: Optional[str], params: Optional[Mapping[str, Any]], task: Task,
                   n_runs: int, weights: Optional[Sequence[float]]) -> Tuple[str, Dict[str, Any]]:
    if method not in CLASSWISE_METHODS:
        raise ParameterError(f"The runs are {task.kind} (independent scores per class): stack them with method "
                             f"{', '.join(map(repr, CLASSWISE_METHODS))} (--method). Got {method!r}; the CNN, "
                             "LightGBM and seed-blend stackers combine single-label probabilities.")
    metric = metric or task.metric
    if metric not in ("macro_ap", "macro_roc_auc"):
        raise ParameterError(f"The 'metric' parameter of stack_runs (--metric) must be 'macro_ap' or 'macro_roc_auc' "
                             f"for {task.kind} runs (what 'auto' chooses by). Got {metric!r}.")
    opts = dict(params or {})
    if set(opts) == {"logistic"} and isinstance(opts["logistic"], Mapping):
        opts = dict(opts["logistic"])
    unknown = sorted(set(opts) - {"C", "max_iter"})
    if unknown:
        raise ParameterError(f"The 'params' of stack_runs for {task.kind} runs are MultiLabelStacker's options "
                             f"(C, max_iter), given as such or under 'logistic'. Got {unknown}.")
    if n_runs < 2 and (method == "mean" or (method == "blend" and weights is not None)):
        raise ParameterError(f"method={method!r} (--method) combines several runs, but only one was given. Give two "
                             "or more runs, or use method 'logistic' to recalibrate one run.")
    return metric, opts


def stack_classwise(sources: Sequence[Any], *, task: Task, method: str = "auto", names: Sequence[str],
                    test: Optional[Sequence[Any]] = None, weights: Optional[Sequence[float]] = None,
                    inner_folds: Optional[int] = None, params: Optional[Mapping[str, Any]] = None,
                    compare: bool = False, metric: Optional[str] = None) -> Any:
    """Stack runs that score every class on its own (what :func:`~specimg.stacking.stack_runs` does for
    them); returns a :class:`~specimg.stacking.StackResult`.

    ``inner_folds`` groups the outer folds into that many inner folds for ``'auto'``'s choice; ``params``
    are :class:`MultiLabelStacker`'s; ``compare`` also scores the candidate ``method`` did not return.

    Raises
    ------
    ParameterError
        A method, metric or parameter these runs do not have (named).
    """
    metric, opts = _check_options(method, metric, params, task, len(sources), weights)
    if method == "blend" and weights is None:  # a fitted blend of per-class scores: per class, on the logits
        method = "logistic"
    paths, X, Y, classes, folds = align_runs(sources, task=task)
    if Y is None or folds is None:  # align_runs(require_folds=True) guarantees both
        raise DataError("Stacking needs labelled out-of-fold predictions with a 'fold' column.")
    n_outer = int(len(np.unique(folds)))
    if inner_folds is not None and (isinstance(inner_folds, bool) or not isinstance(inner_folds, int)
                                    or not 2 <= inner_folds <= n_outer):
        raise ParameterError(f"The inner fold count (inner_folds / --folds) must be an int in [2, {n_outer}] (the "
                             f"runs' outer folds). Got {inner_folds!r}.")
    X_test = t_paths = t_Y = None
    if test is not None:
        t_paths, X_test, t_Y, t_classes, _ = align_runs(list(test), require_folds=False, task=task)
        X_test = X_test[:, :, [t_classes.index(c) for c in classes]]
    oof, test_scores, choices, fitted = _outer(X, Y, folds, method, weights, X_test, metric=metric, k=inner_folds,
                                               params=opts)
    stacked = pd.DataFrame({"labels": window_label_text(Y, classes),
                            **{f"prob_{c}": oof[:, j] for j, c in enumerate(classes)}})
    decision = task.fit_decision(stacked, None, classes)  # files only: a stack pools nothing
    if decision is not None:
        decision["rule"] = "max F1 on the stacked out-of-fold scores (score >= threshold)"
    metrics: Dict[str, Any] = {"task": task.kind, "method": method, "metric": metric, "classes": classes,
                               "n_files": len(paths), "outer_folds": n_outer, "inner_folds": inner_folds,
                               "members": list(names), "models": {n: _scored(Y, X[:, m]) for m, n in enumerate(names)},
                               "mean": _scored(Y, _mean(X)), "stack": _scored(Y, oof)}
    if compare:
        others = {m: _outer(X, Y, folds, m, None, None, metric=metric, k=inner_folds, params=opts)[0]
                  for m in ("mean", "logistic", "auto") if m != method}
        metrics["candidates"] = {m: _scored(Y, s) for m, s in {method: oof, **others}.items()}
    if choices:
        metrics["selection"] = {"metric": metric, "folds": choices,
                                "summary": "auto picked " + ", ".join(f"{c['choice']} on fold {c['fold']}"
                                                                      for c in choices)}
    test_frame = None if X_test is None else task.prediction_frame(
        t_paths, test_scores, classes, truth=None if t_Y is None else window_label_text(t_Y, classes),
        decision=decision)
    return StackResult(method=method, names=list(names), classes=classes,
                       oof=task.prediction_frame(paths, oof, classes, truth=window_label_text(Y, classes),
                                                 folds=folds, decision=decision), metrics=metrics, test=test_frame,
                       estimators=fitted, decision=decision)


def summary_lines(m: Dict[str, Any], out: Any) -> List[str]:
    """What ``specimg stack`` prints for runs stacked class by class."""

    def f(v: Optional[float]) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    lines = [f"{m['n_files']} out-of-fold files, {len(m['models'])} {m['task']} models, {m['outer_folds']} outer "
             f"folds; macro AP / micro AP / macro ROC-AUC on the same folds:"]
    rows = [*m["models"].items(), ("mean", m["mean"]), (f"{m['method']} (stack)", m["stack"])]
    width = max(len(n) for n, _ in rows) + 2
    for name, s in rows:
        lines.append(f"  {name:<{width}} {f(s['macro_ap'])}  {f(s['micro_ap'])}  {f(s['macro_roc_auc'])}")
    if "selection" in m:
        lines.append(m["selection"]["summary"])
    lines.append(f"wrote {out / 'oof_files.csv'}, {out / 'metrics.json'}, {out / 'thresholds.json'}")
    return lines

"""Stacking multi-label runs: independent scores per class, combined per class, sigmoid out.

The single-label stackers (CNN, LightGBM, the simplex blend) combine
probability vectors that sum to one. A multi-label run scores every class on
its own (a sigmoid each), so its runs are combined class by class:

- ``'mean'``: the mean of the runs' scores;
- ``'blend'`` with ``weights``: their weighted mean; without weights a
  fitted blend, the same as ``'logistic'``;
- ``'logistic'``: :class:`MultiLabelStacker`, one logistic regression per
  class on the runs' logits of that class (scikit-learn), a sigmoid out;
- ``'auto'``: on each outer fold, the better of ``'mean'`` and
  ``'logistic'`` by macro average precision in an inner cross-validation on
  the other folds only.

Every out-of-fold score of a file comes from stackers fitted on the other
folds of the base runs (their ``fold`` column), as for single-label
stacking, and every candidate is scored by macro / micro AP and macro
ROC-AUC on the same folds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from ..audio import parse_tags, tags_text
from ..data import tag_matrix
from ..exceptions import DataError, NotFittedError, ParameterError
from ..predict.aggregate import read_predictions
from ..scoring import multilabel_scores

__all__ = ["MultiLabelStacker", "align_multilabel_runs", "is_multilabel_source", "stack_multilabel",
           "MULTILABEL_METHODS"]

RunSource = Union[str, "os.PathLike[str]", pd.DataFrame]
#: The stacking methods of multi-label runs.
MULTILABEL_METHODS = ("auto", "mean", "blend", "logistic")


def _table(source: RunSource) -> RunSource:
    if not isinstance(source, pd.DataFrame) and Path(source).is_dir():
        from ..training import Run  # the run folder's layout (imported here: it brings torch)

        return Path(source) / Run.OOF_FILES
    return source


def is_multilabel_source(source: RunSource) -> bool:
    """Whether a run (folder, CSV or frame) holds multi-label predictions (its ``config.json`` or a ``labels``
    column)."""
    import json

    if not isinstance(source, pd.DataFrame) and Path(source).is_dir():
        from ..training import Run

        try:
            if json.loads((Path(source) / Run.CONFIG).read_text()).get("task") == "multi-label":
                return True
        except (OSError, ValueError):
            pass
    table = _table(source)
    if isinstance(table, pd.DataFrame):
        return "labels" in table.columns
    try:
        return "labels" in pd.read_csv(table, nrows=0).columns
    except Exception:
        return False


def align_multilabel_runs(sources: Sequence[RunSource], *, require_folds: bool = True
                          ) -> Tuple[List[str], np.ndarray, Optional[np.ndarray], List[str], Optional[np.ndarray]]:
    """``(paths, X (n_files, n_runs, n_classes), Y multi-hot or None, classes, folds or None)`` of multi-label runs.

    Raises
    ------
    DataError
        Runs that do not list the same files, classes, tags or folds (named).
    """
    runs = [read_predictions(_table(s), multi_label=True) for s in sources]
    ref, classes, _ = runs[0]
    paths = ref["path"].tolist()
    X = np.empty((len(paths), len(runs), len(classes)))
    Y, folds = None, None
    for m, (frame, cls, scores) in enumerate(runs):
        if set(cls) != set(classes):
            raise DataError(f"Run {m} has the classes {cls}, run 0 {classes}. Stack runs trained on the same tags.")
        if set(frame["path"]) != set(paths):
            odd = sorted(set(frame["path"]) ^ set(paths))[0]
            raise DataError(f"File {odd!r} is predicted by only some of the runs (run {m} vs run 0). All runs must "
                            "predict the same files.")
        row = pd.Series(np.arange(len(frame)), index=frame["path"]).loc[paths].to_numpy()
        X[:, m] = scores[row][:, [cls.index(c) for c in classes]]
        aligned = frame.iloc[row]
        if "labels" in aligned.columns:
            y = tag_matrix([parse_tags(v) for v in aligned["labels"]], classes, where=f"run {m}")
            if Y is not None and (Y != y).any():
                i = int(np.flatnonzero((Y != y).any(axis=1))[0])
                raise DataError(f"File {paths[i]!r} has other tags in run {m} than in run 0. The runs must be "
                                "trained on the same tags.")
            Y = y
        if "fold" in aligned.columns:
            f = aligned["fold"].to_numpy(dtype=np.int64)
            if folds is not None and (folds != f).any():
                i = int(np.flatnonzero(folds != f)[0])
                raise DataError(f"File {paths[i]!r} is in fold {f[i]} in run {m} but in fold {folds[i]} in run 0. "
                                "Stack only runs that share one fold split.")
            folds = f
    if require_folds and (Y is None or folds is None):
        raise DataError("Stacking multi-label runs needs their out-of-fold predictions with 'labels' and 'fold' "
                        "columns (RUN/oof_files.csv written by `specimg train`).")
    return paths, X, Y, list(classes), folds


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


class MultiLabelStacker:
    """One logistic regression per class on the runs' logits of that class; sigmoid scores out.

    Parameters
    ----------
    C : float
        Inverse L2 strength of scikit-learn's ``LogisticRegression``.

    Attributes
    ----------
    coef_ : np.ndarray [shape=(n_classes, n_runs)]
    intercept_ : np.ndarray [shape=(n_classes,)]
        A class with only positives or only negatives in the training data
        keeps the mean of the runs (coefficients ``1 / n_runs`` on the
        logits, intercept 0).
    """

    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "MultiLabelStacker":
        """``X`` [shape=(n, n_runs, n_classes)] scores, ``Y`` [shape=(n, n_classes)] multi-hot."""
        from sklearn.linear_model import LogisticRegression

        X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y) > 0.5
        n_runs, n_classes = X.shape[1], X.shape[2]
        self.coef_ = np.full((n_classes, n_runs), 1.0 / n_runs)
        self.intercept_ = np.zeros(n_classes)
        for c in range(n_classes):
            if Y[:, c].all() or not Y[:, c].any():
                continue
            lr = LogisticRegression(C=self.C, max_iter=1000).fit(_logit(X[:, :, c]), Y[:, c])
            self.coef_[c], self.intercept_[c] = lr.coef_[0], lr.intercept_[0]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Scores [shape=(n, n_classes)] in (0, 1)."""
        if not hasattr(self, "coef_"):
            raise NotFittedError("This MultiLabelStacker is not fitted yet. Call fit(X, Y) first.")
        z = np.einsum("nmc,cm->nc", _logit(np.asarray(X, dtype=np.float64)), self.coef_) + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))


def _mean(X: np.ndarray, weights: Optional[Sequence[float]] = None) -> np.ndarray:
    w = np.ones(X.shape[1]) if weights is None else np.asarray(weights, dtype=np.float64)
    return np.einsum("nmc,m->nc", X, w / w.sum())


def _macro_ap(Y: np.ndarray, S: np.ndarray) -> float:
    v = multilabel_scores(Y, S)["macro_ap"]
    return float(v) if np.isfinite(v) else -1.0


def _inner_choice(X: np.ndarray, Y: np.ndarray, folds: np.ndarray) -> Tuple[str, str]:
    """'mean' or 'logistic' by macro AP of honest predictions on these files (one inner split per fold)."""
    inner = np.zeros_like(Y, dtype=np.float64)
    for f in np.unique(folds):
        hold = folds == f
        inner[hold] = MultiLabelStacker().fit(X[~hold], Y[~hold]).predict_proba(X[hold])
    ap_mean, ap_lr = _macro_ap(Y, _mean(X)), _macro_ap(Y, inner)
    pick = "logistic" if ap_lr > ap_mean else "mean"
    return pick, f"inner macro AP: logistic {ap_lr:.4f}, mean {ap_mean:.4f}"


def _outer(X: np.ndarray, Y: np.ndarray, folds: np.ndarray, method: str, weights: Optional[Sequence[float]],
           X_test: Optional[np.ndarray]) -> Tuple[np.ndarray, Optional[np.ndarray], List[Dict[str, Any]]]:
    """Honest out-of-fold scores of ``method``, its test scores (mean of the fold stackers), the choices."""
    if method in ("mean", "blend"):  # 'blend' here has its weights (a fitted blend is 'logistic')
        test = None if X_test is None else _mean(X_test, weights)
        return _mean(X, weights), test, []
    oof, tests, choices = np.zeros(Y.shape), [], []
    for f in np.unique(folds):
        hold = folds == f
        pick, why = ("logistic", "") if method == "logistic" else \
            _inner_choice(X[~hold], Y[~hold], folds[~hold]) if len(np.unique(folds[~hold])) > 1 else ("mean", "")
        if pick == "logistic":
            est = MultiLabelStacker().fit(X[~hold], Y[~hold])
            oof[hold] = est.predict_proba(X[hold])
            tests.append(None if X_test is None else est.predict_proba(X_test))
        else:
            oof[hold] = _mean(X[hold])
            tests.append(None if X_test is None else _mean(X_test))
        if method == "auto":
            choices.append({"fold": int(f), "choice": pick, "reason": why})
    test = None if X_test is None else np.mean(tests, axis=0)
    return oof, test, choices


def _frame(paths: List[str], scores: np.ndarray, classes: List[str], Y: Optional[np.ndarray],
           folds: Optional[np.ndarray]) -> pd.DataFrame:
    out = pd.DataFrame({"path": paths})
    if Y is not None:
        out["labels"] = [tags_text([c for c, v in zip(classes, row) if v]) for row in Y]
    if folds is not None:
        out["fold"] = folds
    out["prediction"] = [tags_text([c for c, v in zip(classes, row) if v >= 0.5]) for row in scores]
    for j, c in enumerate(classes):
        out[f"prob_{c}"] = scores[:, j]
    return out


def stack_multilabel(sources: Sequence[RunSource], *, method: str = "auto", names: Sequence[str],
                     test: Optional[Sequence[RunSource]] = None, weights: Optional[Sequence[float]] = None) -> Any:
    """Stack multi-label runs (what :func:`~specimg.stacking.stack_runs` does for them); returns a StackResult.

    Raises
    ------
    ParameterError
        A method the multi-label runs do not have.
    """
    from ._runs import StackResult

    if method not in MULTILABEL_METHODS:
        raise ParameterError(f"The runs are multi-label (independent scores per class): stack them with method "
                             f"{', '.join(map(repr, MULTILABEL_METHODS))} (--method). Got {method!r}; the CNN, "
                             "LightGBM and seed-blend stackers combine single-label probabilities.")
    if method == "blend" and weights is None:  # a fitted blend of multi-label runs: per class, on the logits
        method = "logistic"
    paths, X, Y, classes, folds = align_multilabel_runs(sources)
    if Y is None or folds is None:  # align_multilabel_runs(require_folds=True) guarantees both
        raise DataError("Stacking multi-label runs needs labelled out-of-fold predictions with a 'fold' column.")
    X_test = None
    if test is not None:
        t_paths, X_test, t_Y, t_classes, _ = align_multilabel_runs(list(test), require_folds=False)
        X_test = X_test[:, :, [t_classes.index(c) for c in classes]]
    oof, test_scores, choices = _outer(X, Y, folds, method, weights, X_test)
    members = {n: _scored(Y, X[:, m]) for m, n in enumerate(names)}
    metrics: Dict[str, Any] = {"task": "multi-label", "method": method, "classes": classes,
                               "n_files": len(paths), "outer_folds": int(len(np.unique(folds))),
                               "members": list(names), "models": members, "mean": _scored(Y, _mean(X)),
                               "stack": _scored(Y, oof)}
    if choices:
        metrics["selection"] = {"metric": "macro_ap", "folds": choices,
                                "summary": "auto picked " + ", ".join(f"{c['choice']} on fold {c['fold']}"
                                                                      for c in choices)}
    test_frame = None if X_test is None else _frame(t_paths, test_scores, classes, t_Y, None)
    return StackResult(method=method, names=list(names), classes=classes, oof=_frame(paths, oof, classes, Y, folds),
                       metrics=metrics, test=test_frame)


def _scored(Y: np.ndarray, S: np.ndarray) -> Dict[str, Optional[float]]:
    s = multilabel_scores(Y, S)
    return {k: (float(v) if np.isfinite(v) else None) for k, v in s.items()}


def summary_lines(m: Dict[str, Any], out: Path) -> List[str]:
    """What ``specimg stack`` prints for multi-label runs."""

    def f(v: Optional[float]) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    lines = [f"{m['n_files']} out-of-fold files, {len(m['models'])} multi-label models, {m['outer_folds']} outer "
             f"folds; macro AP / micro AP / macro ROC-AUC on the same folds:"]
    rows = [*m["models"].items(), ("mean", m["mean"]), (f"{m['method']} (stack)", m["stack"])]
    width = max(len(n) for n, _ in rows) + 2
    for name, s in rows:
        lines.append(f"  {name:<{width}} {f(s['macro_ap'])}  {f(s['micro_ap'])}  {f(s['macro_roc_auc'])}")
    if "selection" in m:
        lines.append(m["selection"]["summary"])
    lines.append(f"wrote {out / 'oof_files.csv'}, {out / 'metrics.json'}")
    return lines

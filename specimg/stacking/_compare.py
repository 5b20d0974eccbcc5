"""Every way of combining the runs, scored on the same outer folds; ``auto`` picks among them by inner CV only.

Each learned candidate is fitted on the other outer folds and predicts the held-out one; ``auto``'s choice never
reads the outer fold's labels. A test set is predicted by each outer fold's stacker, averaged (as the seed did).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ..audio import sort_labels
from ..exceptions import DataError, ParameterError
from ..scoring import uar
from ._align import _check_y, check_stack_input, fit_with_groups

__all__ = ["StackComparison", "compare_stackers", "make_stacker", "SEED_BLEND", "STACK_METHODS", "CANDIDATES"]

#: The seed's blend of its three stackers.
SEED_BLEND: Dict[str, float] = {"cnn": 0.45, "cnn-skip": 0.45, "lgbm": 0.1}
#: The candidates that learn (are fitted on the training folds).
_LEARNED = ("blend", "cnn", "cnn-skip", "lgbm")
#: The combinations :func:`compare_stackers` scores (besides each model alone and ``auto``).
CANDIDATES = ("mean", "blend", "cnn", "cnn-skip", "lgbm", "seed-blend")
#: The methods of :func:`stack_runs` / ``specimg stack --method``.
STACK_METHODS = CANDIDATES + ("auto",)
#: Ties of the selection metric and of the log-loss go to the earlier (simpler) candidate.
_SIMPLER_FIRST = ("mean", "<models>", "blend", "seed-blend", "cnn", "cnn-skip", "lgbm")
_EPS = 1e-15

Metric = Literal["accuracy", "uar", "log_loss"]


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
    from ._blend import WeightedBlend
    from ._cnn import CNNStacker
    from ._lgbm import LGBMStacker

    params = dict(params or {})
    methods = ("cnn", "cnn-skip", "lgbm", "blend", "mean")
    if method not in methods:
        raise ParameterError(f"The 'method' parameter must be one of {', '.join(map(repr, methods))}. "
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
            # threads spin-wait on a busy machine, which can make a fit many times slower.
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
class StackComparison:
    """What :func:`compare_stackers` returns.

    Attributes
    ----------
    candidates : list of str
        In table order: the models (by name), then the combinations, then ``'auto'``.
    kinds : dict[str, str]
        ``'model'``, ``'combination'`` or ``'auto'`` per candidate.
    classes : list of str
    fold_labels : list of str
        One label per outer fold: the base runs' fold value(s) it holds out.
    scores : pd.DataFrame
        ``candidate, kind, fold, n_files, accuracy, uar, log_loss``: one row per
        candidate and outer fold, and one with ``fold == 'all'`` (pooled).
    oof : dict[str, np.ndarray [shape=(n_files, n_classes)]]
        Each candidate's out-of-fold probabilities.
    fold_of_file : np.ndarray [shape=(n_files,), dtype=int]
        The outer fold (index into ``fold_labels``) of each file.
    codes : np.ndarray [shape=(n_files,), dtype=int]
        Each file's label as an index into ``classes``.
    choices : pd.DataFrame or None
        ``auto`` only: ``fold, choice, reason`` and the inner-CV score of every
        candidate (one column each).
    metric : str
        What ``auto`` maximises (log-loss: minimises) in the inner cross-validation.
    test : dict[str, np.ndarray [shape=(n_test, n_classes)]] or None
        Each candidate's test probabilities: the mean of its fold stackers' predictions.
    model_weights : dict[str, np.ndarray [shape=(n_models, n_classes)]]
        Per-class model weights of each candidate, averaged over the fold stackers
        (the CNN stacker's learned weights; LightGBM's share of split gain; a
        blend's weights; 1/n_models for the mean; one-hot for a model alone).
    estimators : dict[str, list]
        The fitted fold stackers of each learned candidate, one per outer fold.
    """

    candidates: List[str]
    kinds: Dict[str, str]
    classes: List[str]
    fold_labels: List[str]
    scores: pd.DataFrame
    oof: Dict[str, np.ndarray]
    fold_of_file: np.ndarray
    codes: np.ndarray
    metric: str = "accuracy"
    choices: Optional[pd.DataFrame] = None
    test: Optional[Dict[str, np.ndarray]] = None
    model_weights: Dict[str, np.ndarray] = field(default_factory=dict)
    estimators: Dict[str, List[Any]] = field(default_factory=dict, repr=False)

    def table(self) -> pd.DataFrame:
        """One row per candidate: pooled ``accuracy, uar, log_loss`` and the accuracy on each outer fold."""
        pooled = self.scores[self.scores["fold"] == "all"].set_index("candidate")
        per = self.scores[self.scores["fold"] != "all"].pivot(index="candidate", columns="fold", values="accuracy")
        rows = []
        for c in self.candidates:
            row = {"candidate": c, "kind": self.kinds[c], **pooled.loc[c, ["accuracy", "uar", "log_loss"]].to_dict()}
            row.update({f"fold {f}": per.loc[c, f] for f in self.fold_labels})
            rows.append(row)
        return pd.DataFrame(rows)

    def paired(self, baseline: str = "mean", *, metric: str = "accuracy") -> pd.DataFrame:
        """Each candidate against ``baseline`` on the same folds and files.

        Returns
        -------
        pd.DataFrame
            ``candidate, mean_diff`` (mean per-fold difference of ``metric``),
            ``wins, losses, ties`` (folds), ``sign_p`` (two-sided sign test on
            the folds), ``wilcoxon_p`` (Wilcoxon signed-rank test on the
            per-fold differences; NaN when all are 0), ``files_better,
            files_worse`` (files only one of the two gets right) and
            ``mcnemar_p`` (exact McNemar test on those files).
        """
        from scipy.stats import binomtest, wilcoxon

        if baseline not in self.oof:
            raise ParameterError(f"The 'baseline' parameter of StackComparison.paired must be one of "
                                 f"{self.candidates}. Got {baseline!r}.")
        per = self.scores[self.scores["fold"] != "all"].pivot(index="candidate", columns="fold", values=metric)
        y = self.codes
        right = {c: np.argmax(p, axis=1) == y for c, p in self.oof.items()}
        rows = []
        for c in self.candidates:
            if c == baseline:
                continue
            d = (per.loc[c, self.fold_labels] - per.loc[baseline, self.fold_labels]).to_numpy(dtype=float)
            wins, losses = int((d > 1e-12).sum()), int((d < -1e-12).sum())
            b = int((right[c] & ~right[baseline]).sum())
            w = int((~right[c] & right[baseline]).sum())
            rows.append({"candidate": c, "mean_diff": float(d.mean()), "wins": wins, "losses": losses,
                         "ties": len(d) - wins - losses,
                         "sign_p": float(binomtest(wins, wins + losses).pvalue) if wins + losses else 1.0,
                         "wilcoxon_p": float(wilcoxon(d).pvalue) if np.any(np.abs(d) > 1e-12) else float("nan"),
                         "files_better": b, "files_worse": w,
                         "mcnemar_p": float(binomtest(b, b + w).pvalue) if b + w else 1.0})
        return pd.DataFrame(rows)


# --------------------------------------------------------------------------- splits
def _outer_splits(codes: np.ndarray, folds: np.ndarray, n_splits: Optional[int],
                  seed: int) -> List[Tuple[str, np.ndarray, np.ndarray]]:
    """``(label, train rows, held-out rows)`` per outer fold: one per base fold, or ``n_splits`` grouped ones."""
    from sklearn.model_selection import StratifiedGroupKFold

    values = np.unique(folds)
    if n_splits is None or n_splits == len(values):
        return [(str(v), np.flatnonzero(folds != v), np.flatnonzero(folds == v)) for v in values]
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    out = []
    for train, test in splitter.split(np.zeros(len(codes)), codes, folds):
        out.append(("+".join(str(v) for v in np.unique(folds[test])), train, test))
    return sorted(out, key=lambda s: int(s[2].min()))


def _inner_splits(codes: np.ndarray, groups: np.ndarray, seed: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Leave one of the training folds out at a time; with a single training fold, a stratified 3-way split."""
    from sklearn.model_selection import StratifiedKFold

    values = np.unique(groups)
    if len(values) >= 2:
        return [(np.flatnonzero(groups != v), np.flatnonzero(groups == v)) for v in values]
    k = min(3, int(np.bincount(codes)[np.unique(codes)].min()))
    if k < 2:
        raise DataError("compare_stackers: the training part of an outer fold is one fold with a class of a single "
                        "file, so no inner cross-validation can choose for method 'auto'. Use runs with 3 or more "
                        "folds, or pick a method.")
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(codes)), codes))


# --------------------------------------------------------------------------- candidates
def _learned_needed(methods: Sequence[str]) -> List[str]:
    need = {m for m in methods if m in _LEARNED}
    if "seed-blend" in methods:
        need |= set(SEED_BLEND)
    return [m for m in _LEARNED if m in need]


def _fit_learned(X: np.ndarray, y: np.ndarray, groups: np.ndarray, learned: Sequence[str], classes: List[str],
                 params: Mapping[str, Mapping[str, Any]], weights: Optional[Sequence[float]],
                 seed: int) -> Dict[str, Any]:
    out = {}
    for m in learned:
        est = make_stacker(m, classes, weights=weights if m == "blend" else None, params=params.get(m), seed=seed)
        out[m] = fit_with_groups(est, X, y, groups)
    return out


def _probs(X: np.ndarray, fitted: Mapping[str, Any], model_keys: Sequence[str],
           methods: Sequence[str]) -> Dict[str, np.ndarray]:
    """Every candidate's probabilities for ``X`` (the models, the mean, the fitted stackers, the seed's blend)."""
    out = {k: X[:, i] for i, k in enumerate(model_keys)}
    if "mean" in methods:
        out["mean"] = X.mean(axis=1)
    for m, est in fitted.items():
        out[m] = est.predict_proba(X)
    if "seed-blend" in methods:
        total = sum(SEED_BLEND.values())
        out["seed-blend"] = sum(w * out[k] for k, w in SEED_BLEND.items()) / total
    return out


def _weights(fitted: Mapping[str, Any], model_keys: Sequence[str], methods: Sequence[str],
             n_classes: int) -> Dict[str, np.ndarray]:
    """Per-class model weights ``(n_models, n_classes)`` of every candidate, for one outer fold."""
    n = len(model_keys)
    out = {k: np.repeat(np.eye(n)[i][:, None], n_classes, axis=1) for i, k in enumerate(model_keys)}
    if "mean" in methods:
        out["mean"] = np.full((n, n_classes), 1.0 / n)
    for m, est in fitted.items():
        w = getattr(est, "model_weights_", None)
        out[m] = np.asarray(w) if w is not None else np.repeat(np.asarray(est.weights_)[:, None], n_classes, 1)
    if "seed-blend" in methods:
        out["seed-blend"] = sum(w * out[k] for k, w in SEED_BLEND.items()) / sum(SEED_BLEND.values())
    return out


def _score(codes: np.ndarray, probs: np.ndarray) -> Dict[str, float]:
    pred = np.argmax(probs, axis=1)
    p_true = np.clip(probs[np.arange(len(codes)), codes], _EPS, None)
    return {"accuracy": float(np.mean(pred == codes)), "uar": float(uar(codes.astype(str), pred.astype(str))),
            "log_loss": float(-np.mean(np.log(p_true)))}


def _rank_key(name: str, s: Mapping[str, float], metric: str, model_keys: Sequence[str]) -> Tuple[float, ...]:
    """Sort key, best first: the metric, then the log-loss, then the simpler candidate."""
    primary = s["log_loss"] if metric == "log_loss" else -s[metric]
    simple = _SIMPLER_FIRST.index("<models>" if name in model_keys else name)
    return (round(primary, 12), round(s["log_loss"], 6), simple)  # log-losses within 1e-6: the same predictions


def _select(inner: Mapping[str, Mapping[str, float]], metric: str, model_keys: Sequence[str],
            held: str) -> Tuple[str, str]:
    """The candidate with the best inner-CV score, and a sentence that says why."""
    ranked = sorted(inner, key=lambda c: _rank_key(c, inner[c], metric, model_keys))
    best = ranked[0]
    fmt = (lambda c: f"{c} {inner[c][metric]:.4f}")
    shown = ranked[:3] + [c for c in ("mean",) if c in inner and c not in ranked[:3]]
    best_model = min(model_keys, key=lambda c: _rank_key(c, inner[c], metric, model_keys))
    if best_model not in shown:
        shown.append(best_model)
    why = (f"{best}: best inner-CV {metric.replace('_', '-')} on the folds other than {held} "
           f"({', '.join(fmt(c) for c in shown)})")
    if len(ranked) > 1 and metric != "log_loss" and round(inner[ranked[1]][metric], 12) == round(inner[best][metric], 12):
        a, b = round(inner[best]["log_loss"], 6), round(inner[ranked[1]]["log_loss"], 6)
        why += (f"; tie with {ranked[1]} broken by the lower log-loss ({a:.6f} < {b:.6f})" if a < b
                else f"; tie with {ranked[1]} (same log-loss) goes to the simpler candidate")
    return best, why


def _inner_choice(X: np.ndarray, codes: np.ndarray, groups: np.ndarray, classes: List[str], model_keys: List[str],
                  methods: Sequence[str], params: Mapping[str, Mapping[str, Any]],
                  weights: Optional[Sequence[float]], metric: str, seed: int,
                  held: str) -> Tuple[str, str, Dict[str, float]]:
    """Choose a candidate for one outer fold from its training folds alone (inner cross-validation)."""
    learned = _learned_needed(methods)
    labels = np.asarray(classes, dtype=object)[codes]
    oof: Dict[str, np.ndarray] = {}
    for tr, te in _inner_splits(codes, groups, seed):
        fitted = _fit_learned(X[tr], labels[tr], groups[tr], learned, classes, params, weights, seed)
        for c, p in _probs(X[te], fitted, model_keys, methods).items():
            oof.setdefault(c, np.zeros((len(codes), len(classes))))[te] = p
    inner = {c: _score(codes, p) for c, p in oof.items()}
    choice, reason = _select(inner, metric, model_keys, held)
    return choice, reason, {c: s[metric] for c, s in inner.items()}


def _check_compare_args(X: Any, y: Any, folds: Any, classes: Optional[Sequence[str]], methods: Sequence[str],
                        metric: str) -> Tuple[np.ndarray, np.ndarray, List[str], np.ndarray]:
    owner = "compare_stackers"
    arr = check_stack_input(X, owner=owner)
    labels = _check_y(y, arr.shape[0], owner=owner)
    names = sort_labels(labels) if classes is None else [str(c) for c in classes]
    if len(names) != arr.shape[2]:
        raise DataError(f"{owner}: {len(names)} classes but X has {arr.shape[2]} on its last axis. Pass classes=[...] "
                        "in the order of X's last axis (e.g. from align_runs).")
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise DataError(f"{owner}: 'y' has labels that are not in 'classes': {unknown}. Known: {names}.")
    f = np.asarray(folds)
    if f.shape != (arr.shape[0],):
        raise DataError(f"The 'folds' argument of {owner} must have shape ({arr.shape[0]},): the base runs' fold of "
                        f"each file. Got {f.shape}.")
    bad = [m for m in methods if m not in CANDIDATES]
    if bad:
        raise ParameterError(f"The 'methods' parameter of {owner} may list {', '.join(CANDIDATES)}. Got {bad}.")
    if metric not in ("accuracy", "uar", "log_loss"):
        raise ParameterError(f"The 'metric' parameter of {owner} (--metric) must be 'accuracy', 'uar' or "
                             f"'log_loss'. Got {metric!r}.")
    index = {c: i for i, c in enumerate(names)}
    return arr, np.fromiter((index[v] for v in labels), dtype=np.int64, count=len(labels)), names, f


@dataclass
class _Setup:
    """What every outer fold of :func:`compare_stackers` shares."""

    arr: np.ndarray
    codes: np.ndarray
    folds: np.ndarray
    classes: List[str]
    model_keys: List[str]
    methods: List[str]
    params: Mapping[str, Mapping[str, Any]]
    weights: Optional[Sequence[float]]
    metric: str
    seed: int


def _outer_fold(s: _Setup, label: str, tr: np.ndarray, te: np.ndarray, t_arr: Optional[np.ndarray],
                auto: bool) -> Tuple[Dict[str, Any], Dict[str, np.ndarray], Optional[Dict[str, np.ndarray]],
                                     Dict[str, np.ndarray], Optional[Dict[str, Any]]]:
    """Fit the learned candidates on the training folds; predict the held-out fold (and the test set); choose."""
    labels = np.asarray(s.classes, dtype=object)[s.codes]
    learned = _learned_needed(s.methods)
    fitted = _fit_learned(s.arr[tr], labels[tr], s.folds[tr], learned, s.classes, s.params, s.weights, s.seed)
    held = _probs(s.arr[te], fitted, s.model_keys, s.methods)
    on_test = None if t_arr is None else _probs(t_arr, fitted, s.model_keys, s.methods)
    w = _weights(fitted, s.model_keys, s.methods, len(s.classes))
    if not auto:
        return fitted, held, on_test, w, None
    choice, reason, inner = _inner_choice(s.arr[tr], s.codes[tr], s.folds[tr], s.classes, s.model_keys, s.methods,
                                          s.params, s.weights, s.metric, s.seed, held=f"fold {label}")
    held["auto"], w["auto"] = held[choice], w[choice]
    if on_test is not None:
        on_test["auto"] = on_test[choice]
    return fitted, held, on_test, w, {"choice": choice, "reason": reason, **inner}


def _model_keys(names: Sequence[str]) -> List[str]:
    """Model names as candidate names: a model called like a method (or 'auto') is prefixed with 'model:'."""
    return [f"model:{n}" if n in STACK_METHODS else str(n) for n in names]


def compare_stackers(
    X: Any,
    y: Any,
    folds: Any,
    *,
    classes: Optional[Sequence[str]] = None,
    names: Optional[Sequence[str]] = None,
    X_test: Any = None,
    methods: Sequence[str] = CANDIDATES,
    auto: bool = True,
    metric: Metric = "accuracy",
    params: Optional[Mapping[str, Mapping[str, Any]]] = None,
    weights: Optional[Sequence[float]] = None,
    n_splits: Optional[int] = None,
    seed: int = 0,
) -> StackComparison:
    """Score every way of combining the models on the same outer folds, and choose among them honestly.

    Parameters
    ----------
    X : np.ndarray [shape=(n_files, n_models, n_classes)]
        Out-of-fold probabilities of the base runs (see :func:`align_runs`).
    y : sequence of str [shape=(n_files,)]
    folds : sequence of int [shape=(n_files,)]
        The base runs' fold of each file: the outer folds. Each outer fold's
        stackers are fitted on the other folds (and early-stop on whole folds).
    classes : sequence of str, optional
        Labels in the order of X's last axis (default: the sorted labels).
    names : sequence of str, optional
        Model names (default ``model0``, ``model1``...).
    X_test : np.ndarray [shape=(n_test, n_models, n_classes)], optional
        Test probabilities of the same models: every outer fold's stacker
        predicts them, and the fold predictions are averaged.
    methods : sequence of str
        The combinations to score besides each model alone: any of ``'mean'``,
        ``'blend'``, ``'cnn'``, ``'cnn-skip'``, ``'lgbm'``, ``'seed-blend'``
        (the last needs the three stackers, which are then fitted even if not listed).
    auto : bool
        Add ``'auto'``: per outer fold, the candidate with the best ``metric``
        in an inner cross-validation on the other folds (leave one out at a
        time); ties go to the lower log-loss, then to the simpler candidate.
    metric : {'accuracy', 'uar', 'log_loss'}
        What ``auto`` chooses by.
    params : mapping, optional
        Stacker options by method, e.g. ``{'cnn': {'epochs': 50}, 'lgbm': {'num_leaves': 8}}``
        (``'cnn'`` options also apply to ``'cnn-skip'`` unless it has its own).
    weights : sequence of float, optional
        Fixed weights of the ``'blend'`` candidate (default: fitted).
    n_splits : int, optional
        Group the base folds into this many outer folds (default: one outer fold per base fold).
    seed : int

    Returns
    -------
    StackComparison

    Examples
    --------
    >>> cmp = compare_stackers(X, y, folds, classes=classes, names=["mel", "mfcc"])  # doctest: +SKIP
    >>> cmp.table()  # doctest: +SKIP
    >>> cmp.choices[["fold", "choice", "reason"]]  # doctest: +SKIP
    """
    arr, codes, classes_, f = _check_compare_args(X, y, folds, classes, methods, metric)
    n, n_models, n_classes = arr.shape
    model_keys = _model_keys(names if names is not None else [f"model{i}" for i in range(n_models)])
    if len(model_keys) != n_models or len(set(model_keys)) != n_models:
        raise ParameterError(f"The 'names' parameter of compare_stackers must name each of the {n_models} models "
                             f"once. Got {list(names or [])}.")
    t_arr = None if X_test is None else check_stack_input(X_test, owner="compare_stackers", name="X_test")
    if t_arr is not None and t_arr.shape[1:] != arr.shape[1:]:
        raise DataError(f"compare_stackers: X_test must have shape (n_test, {n_models}, {n_classes}) like X. "
                        f"Got {t_arr.shape}.")
    params = dict(params or {})
    if "cnn" in params and "cnn-skip" not in params:
        params["cnn-skip"] = params["cnn"]
    methods = [m for m in CANDIDATES if m in methods or (m in SEED_BLEND and "seed-blend" in methods)]
    learned = _learned_needed(methods)
    splits = _outer_splits(codes, f, n_splits, seed)
    candidates = model_keys + methods + (["auto"] if auto else [])
    oof = {c: np.zeros((n, n_classes)) for c in candidates}
    test = None if t_arr is None else {c: np.zeros((len(t_arr), n_classes)) for c in candidates}
    weight_sum = {c: np.zeros((n_models, n_classes)) for c in candidates}
    estimators: Dict[str, List[Any]] = {m: [] for m in learned}
    fold_of_file = np.zeros(n, dtype=np.int64)
    rows, choice_rows = [], []
    setup = _Setup(arr=arr, codes=codes, folds=f, classes=classes_, model_keys=model_keys, methods=methods,
                   params=params, weights=weights, metric=metric, seed=seed)
    for k, (label, tr, te) in enumerate(splits):
        fold_of_file[te] = k
        fitted, held, on_test, w, choice = _outer_fold(setup, label, tr, te, t_arr, auto)
        for m, est in fitted.items():
            estimators[m].append(est)
        if choice is not None:
            choice_rows.append({"fold": label, **choice})
        for c in candidates:
            oof[c][te] = held[c]
            weight_sum[c] += w[c]
            if test is not None and on_test is not None:
                test[c] += on_test[c] / len(splits)
            rows.append({"candidate": c, "fold": label, "n_files": len(te), **_score(codes[te], held[c])})
    kinds = {c: "model" if c in model_keys else "auto" if c == "auto" else "combination" for c in candidates}
    rows += [{"candidate": c, "fold": "all", "n_files": n, **_score(codes, oof[c])} for c in candidates]
    scores = pd.DataFrame(rows)
    scores.insert(1, "kind", scores["candidate"].map(kinds))
    return StackComparison(candidates=candidates, kinds=kinds, classes=classes_, fold_labels=[s[0] for s in splits],
                           scores=scores, oof=oof, fold_of_file=fold_of_file, codes=codes, metric=metric,
                           choices=pd.DataFrame(choice_rows) if auto else None, test=test,
                           model_weights={c: v / len(splits) for c, v in weight_sum.items()}, estimators=estimators)

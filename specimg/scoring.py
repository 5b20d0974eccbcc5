"""The classification metrics every stage scores with: one way to compute a file's accuracy, UAR or AP.

Labels (accuracy, UAR, macro-F1, log-loss, confusion matrix) and tags (one independent score per class:
AP, ROC-AUC, per-class thresholds of maximum F1). UAR, the *unweighted average recall* (mean of the
per-class recalls, scikit-learn's ``balanced_accuracy_score``), is the headline metric of paralinguistic
challenges. Pooling windows into files is the task's (:mod:`specimg.tasks`).
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
)

from .exceptions import DataError

__all__ = ["label_scores", "file_scores", "uar", "check_probs", "classification_metrics", "check_labels",
           "check_multi_hot", "average_precisions", "roc_aucs", "tag_scores", "fit_thresholds",
           "tag_metrics"]


def check_probs(probs: Any, *, name: str, owner: str, ndim: int = 2) -> np.ndarray:
    """Return ``probs`` as a finite, non-negative float64 array of ``ndim`` dimensions."""
    try:
        arr = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"The {name!r} argument of {owner} must be an array of probabilities. "
            f"It cannot be read as numbers: {exc}."
        ) from None
    if arr.ndim != ndim:
        raise DataError(
            f"The {name!r} argument of {owner} must have {ndim} dimensions. Got shape {arr.shape}."
        )
    if arr.size and not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise DataError(
            f"The {name!r} argument of {owner} must be finite. Got {bad} NaN/inf values; "
            "check the model outputs for overflow."
        )
    if arr.size and arr.min() < 0:
        raise DataError(
            f"The {name!r} argument of {owner} must hold probabilities >= 0. Got a minimum of "
            f"{arr.min():.4g}; pass softmax outputs, not logits."
        )
    return arr


def label_scores(y_true: Any, y_pred: Any) -> Dict[str, float]:
    """``{'accuracy', 'uar'}`` of predicted labels (compared as strings).

    Examples
    --------
    >>> label_scores(["a", "a", "b"], ["a", "b", "b"])
    {'accuracy': 0.6666666666666666, 'uar': 0.75}
    """
    t = np.asarray(y_true).astype(str)
    p = np.asarray(y_pred).astype(str)
    return {"accuracy": float(np.mean(t == p)) if len(t) else float("nan"), "uar": uar(t, p)}


def file_scores(file_probs: np.ndarray, file_targets: np.ndarray) -> Dict[str, float]:
    """File-level accuracy and UAR of probabilities (argmax) against class indices."""
    pred = np.argmax(np.asarray(file_probs), axis=1)
    return {"accuracy": float(accuracy_score(file_targets, pred)),
            "uar": float(balanced_accuracy_score(file_targets, pred))}


def _as_labels(values: Any, *, name: str, owner: str) -> np.ndarray:
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise DataError(f"The {name!r} argument of {owner} must be 1-D (one label per file). Got shape {arr.shape}.")
    missing = [i for i, v in enumerate(arr) if v is None or (isinstance(v, float) and np.isnan(v))]
    if missing:
        raise DataError(
            f"The {name!r} argument of {owner} has {len(missing)} missing labels (first at row {missing[0]}). "
            "Drop unlabelled files before scoring."
        )
    return arr.astype(str)


def check_labels(
    y: Any, classes: Sequence[Any], *, name: str = "y_true", owner: str = "classification_metrics"
) -> np.ndarray:
    """Return ``y`` as an array of str labels, each one of ``classes``.

    Parameters
    ----------
    y : sequence [shape=(n_files,)]
        Labels (compared as strings).
    classes : sequence of str
        The allowed labels.
    name, owner : str
        Used in the error message.

    Returns
    -------
    np.ndarray [shape=(n_files,), dtype=str]

    Raises
    ------
    DataError
        A label is missing or not in ``classes``; the message names the unknown labels.
    """
    labels = _as_labels(y, name=name, owner=owner)
    known = {str(c) for c in classes}
    unknown = sorted(set(labels.tolist()) - known)
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise DataError(
            f"The {name!r} argument of {owner} has labels that are not among the {len(known)} classes: {shown}. "
            f"Known classes: {sorted(known)}. Check that the predictions come from a model trained on these labels."
        )
    return labels


def uar(y_true: Any, y_pred: Any) -> float:
    """Unweighted average recall: the mean over classes of the per-class recall.

    Equal to scikit-learn's :func:`~sklearn.metrics.balanced_accuracy_score`;
    classes absent from ``y_true`` do not count.

    Parameters
    ----------
    y_true, y_pred : sequence of str [shape=(n_files,)]
        True and predicted labels.

    Returns
    -------
    float in [0, 1]

    Examples
    --------
    >>> uar(["a", "a", "a", "b"], ["a", "a", "b", "b"])  # (2/3 + 1/1) / 2
    0.8333333333333333
    """
    t = _as_labels(y_true, name="y_true", owner="uar")
    p = _as_labels(y_pred, name="y_pred", owner="uar")
    if t.shape != p.shape:
        raise DataError(f"'y_true' and 'y_pred' of uar must have the same length. Got {len(t)} and {len(p)}.")
    if len(t) == 0:
        raise DataError("uar needs at least one file. Got empty label arrays.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # y_pred has classes not in y_true: recall is still defined
        return float(balanced_accuracy_score(t, p))


def classification_metrics(y_true: Any, probs: Any, classes: Sequence[Any]) -> Dict[str, Any]:
    """Score file-level probabilities against true labels.

    Parameters
    ----------
    y_true : sequence of str [shape=(n_files,)]
        True labels, each one of ``classes``.
    probs : np.ndarray [shape=(n_files, n_classes)]
        Probabilities in ``classes`` column order; the prediction is the argmax.
    classes : sequence of str [shape=(n_classes,)]

    Returns
    -------
    dict
        ``n_files``, ``accuracy``, ``uar``, ``macro_f1``, ``log_loss``
        (computed with all ``classes`` as labels), ``classes``,
        ``per_class`` (class -> precision, recall, f1, support) and
        ``confusion`` (list of lists, rows = true class, columns = predicted,
        in ``classes`` order). Plain Python types, ready for ``json.dump``.

    Raises
    ------
    DataError
        A label of ``y_true`` is not in ``classes`` (the message names it), or
        the shapes disagree.

    Examples
    --------
    >>> m = classification_metrics(["a", "b"], [[0.9, 0.1], [0.2, 0.8]], ["a", "b"])
    >>> m["accuracy"], m["uar"]
    (1.0, 1.0)
    """
    owner = "classification_metrics"
    names = [str(c) for c in classes]
    if len(names) < 1 or len(set(names)) != len(names):
        raise DataError(f"The 'classes' argument of {owner} must be a non-empty list of distinct labels. Got {names}.")
    labels = check_labels(y_true, names, name="y_true", owner=owner)
    try:
        p = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"The 'probs' argument of {owner} must be a numeric array.") from None
    if p.ndim != 2 or p.shape != (len(labels), len(names)):
        raise DataError(
            f"The 'probs' argument of {owner} must have shape (n_files, n_classes) = ({len(labels)}, {len(names)}). "
            f"Got {p.shape}."
        )
    if len(labels) == 0:
        raise DataError(f"{owner} needs at least one file. Got empty arrays.")
    if not np.all(np.isfinite(p)):
        raise DataError(f"The 'probs' argument of {owner} must be finite. Got NaN/inf values.")

    pred = np.asarray(names, dtype=object)[np.argmax(p, axis=1)].astype(str)
    prec, rec, f1, support = precision_recall_fscore_support(labels, pred, labels=names, zero_division=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        bal = balanced_accuracy_score(labels, pred)
        # Rows are renormalised so that slightly-off sums (float32 softmax) do not warn.
        ll = log_loss(labels, p / np.clip(p.sum(axis=1, keepdims=True), 1e-12, None), labels=names)
    return {
        "n_files": int(len(labels)),
        "accuracy": float(accuracy_score(labels, pred)),
        "uar": float(bal),
        "macro_f1": float(f1_score(labels, pred, average="macro", zero_division=0)),
        "log_loss": float(ll),
        "classes": names,
        "per_class": {
            c: {
                "precision": float(prec[i]),
                "recall": float(rec[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(names)
        },
        "confusion": confusion_matrix(labels, pred, labels=names).astype(int).tolist(),
    }


# --------------------------------------------------------------------------- multi-label
def check_multi_hot(y: Any, n_classes: int, *, name: str = "y_true", owner: str = "tag_metrics") -> np.ndarray:
    """Return ``y`` as a ``(n, n_classes)`` array of 0 / 1 (bool), or raise a DataError naming the problem."""
    try:
        arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"The {name!r} argument of {owner} must be a multi-hot array of 0 and 1.") from None
    if arr.ndim != 2 or arr.shape[1] != n_classes:
        raise DataError(f"The {name!r} argument of {owner} must have shape (n, {n_classes}) (one 0/1 column per "
                        f"class). Got {arr.shape}.")
    if arr.size and not np.isin(arr, (0.0, 1.0)).all():
        raise DataError(f"The {name!r} argument of {owner} must hold only 0 and 1 (tag absent / present).")
    return arr > 0.5


def _tag_input(y_true: Any, scores: Any, owner: str, n_classes: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``(truth, scores)`` of a multi-label metric, checked: multi-hot truth, scores of its shape."""
    if n_classes is None:
        s = np.asarray(scores, dtype=np.float64)
        n_classes = s.shape[1] if s.ndim == 2 else -1
    y = check_multi_hot(y_true, n_classes, owner=owner)
    s = check_probs(scores, name="scores", owner=owner)
    if s.shape != y.shape:
        raise DataError(f"The 'scores' argument of {owner} must have shape {y.shape} (as y_true). Got {s.shape}.")
    return y, s


def average_precisions(y_true: Any, scores: Any) -> np.ndarray:
    """Average precision of every class (scikit-learn ``average_precision_score``); NaN without a positive.

    Parameters
    ----------
    y_true : np.ndarray [shape=(n, n_classes)]
        Multi-hot truth.
    scores : np.ndarray [shape=(n, n_classes)]
        Independent scores (sigmoid outputs).

    Returns
    -------
    ap : np.ndarray [shape=(n_classes,), dtype=float64]

    Examples
    --------
    >>> average_precisions([[1, 0], [0, 0], [1, 0]], [[0.9, 0.2], [0.1, 0.3], [0.4, 0.1]]).tolist()
    [1.0, nan]
    """
    y, s = _tag_input(y_true, scores, "average_precisions")
    out = np.full(y.shape[1], np.nan)
    for c in range(y.shape[1]):
        if y[:, c].any():
            out[c] = average_precision_score(y[:, c], s[:, c])
    return out


def roc_aucs(y_true: Any, scores: Any) -> np.ndarray:
    """ROC-AUC of every class; NaN for a class without positives or without negatives.

    Examples
    --------
    >>> roc_aucs([[1, 1], [0, 1], [1, 1]], [[0.9, 0.2], [0.1, 0.3], [0.4, 0.1]]).tolist()
    [1.0, nan]
    """
    y, s = _tag_input(y_true, scores, "roc_aucs")
    out = np.full(y.shape[1], np.nan)
    for c in range(y.shape[1]):
        if y[:, c].any() and not y[:, c].all():
            out[c] = roc_auc_score(y[:, c], s[:, c])
    return out


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.mean(values[~np.isnan(values)])) if (~np.isnan(values)).any() else float("nan")


def tag_scores(y_true: Any, scores: Any) -> Dict[str, float]:
    """``macro_ap``, ``micro_ap`` and ``macro_roc_auc`` of multi-label scores.

    The macro averages are over the classes where the score is defined
    (a positive; for ROC-AUC also a negative); the micro AP ranks every
    (item, class) pair together. NaN when no class qualifies.

    Examples
    --------
    >>> m = tag_scores([[1, 0], [0, 1], [1, 0]], [[0.9, 0.2], [0.1, 0.8], [0.6, 0.1]])
    >>> m["macro_ap"], m["micro_ap"], m["macro_roc_auc"]
    (1.0, 1.0, 1.0)
    """
    y, s = _tag_input(y_true, scores, "tag_scores")
    micro = float(average_precision_score(y.ravel(), s.ravel())) if y.any() else float("nan")
    return {"macro_ap": _nanmean(average_precisions(y, s)), "micro_ap": micro,
            "macro_roc_auc": _nanmean(roc_aucs(y, s))}


def fit_thresholds(y_true: Any, scores: Any, *, default: float = 0.5) -> np.ndarray:
    """Per-class decision thresholds of maximum F1 (a score ``>=`` its threshold is a detection).

    For each class the threshold is the score, among the observed ones,
    whose F1 (scikit-learn ``precision_recall_curve``) is highest; ties go to
    the highest threshold (fewer false alarms). A class without a positive
    keeps ``default``.

    Parameters
    ----------
    y_true : np.ndarray [shape=(n, n_classes)]
    scores : np.ndarray [shape=(n, n_classes)]
    default : float

    Returns
    -------
    thresholds : np.ndarray [shape=(n_classes,), dtype=float64]

    Examples
    --------
    >>> fit_thresholds([[1], [0], [1], [0]], [[0.8], [0.3], [0.4], [0.6]]).tolist()
    [0.4]
    """
    y, s = _tag_input(y_true, scores, "fit_thresholds")
    out = np.full(y.shape[1], float(default))
    for c in range(y.shape[1]):
        if not y[:, c].any():
            continue
        precision, recall, thresholds = precision_recall_curve(y[:, c], s[:, c])
        p, r = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
        f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
        best = np.flatnonzero(f1 >= f1.max() - 1e-12)
        out[c] = float(thresholds[best].max())
    return out


def tag_metrics(y_true: Any, scores: Any, classes: Sequence[Any], *,
                thresholds: Optional[Any] = None) -> Dict[str, Any]:
    """Score multi-label predictions: AP, ROC-AUC and F1 at per-class thresholds.

    Parameters
    ----------
    y_true : np.ndarray [shape=(n, n_classes)]
        Multi-hot truth (a row of zeros: a negative).
    scores : np.ndarray [shape=(n, n_classes)]
        Independent scores in ``classes`` column order.
    classes : sequence of str [shape=(n_classes,)]
    thresholds : np.ndarray [shape=(n_classes,)] or None
        Decision thresholds (a score ``>=`` its threshold is a detection);
        ``None``: 0.5 for every class.

    Returns
    -------
    dict
        ``n_files``, ``task`` (``'multi-label'``), ``macro_ap``, ``micro_ap``,
        ``macro_roc_auc``, ``macro_f1``, ``micro_f1`` (at the thresholds),
        ``classes``, ``thresholds`` and ``per_class`` (class -> ``ap``,
        ``roc_auc``, ``precision``, ``recall``, ``f1``, ``threshold``,
        ``support``; NaN where undefined). Plain Python types.

    Examples
    --------
    >>> m = tag_metrics([[1, 0], [0, 1], [1, 1]], [[0.9, 0.2], [0.1, 0.8], [0.6, 0.7]], ["a", "b"])
    >>> m["macro_ap"], m["macro_f1"]
    (1.0, 1.0)
    """
    owner = "tag_metrics"
    names = [str(c) for c in classes]
    if not names or len(set(names)) != len(names):
        raise DataError(f"The 'classes' argument of {owner} must be a non-empty list of distinct tags. Got {names}.")
    y, s = _tag_input(y_true, scores, owner, len(names))
    if len(y) == 0:
        raise DataError(f"{owner} needs at least one file. Got empty arrays.")
    t = np.full(len(names), 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    if t.shape != (len(names),) or not np.isfinite(t).all():
        raise DataError(f"The 'thresholds' argument of {owner} must hold one finite number per class "
                        f"({len(names)}). Got shape {t.shape}.")
    pred = s >= t[None, :]
    prec, rec, f1, support = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    ap, auc = average_precisions(y, s), roc_aucs(y, s)
    summary = tag_scores(y, s)

    def num(v: float) -> Optional[float]:
        return None if np.isnan(v) else float(v)

    return {
        "n_files": int(len(y)), "task": "multi-label",
        "macro_ap": num(summary["macro_ap"]), "micro_ap": num(summary["micro_ap"]),
        "macro_roc_auc": num(summary["macro_roc_auc"]),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(y, pred, average="micro", zero_division=0)),
        "classes": names, "thresholds": [float(v) for v in t],
        "per_class": {c: {"ap": num(ap[i]), "roc_auc": num(auc[i]), "precision": float(prec[i]),
                          "recall": float(rec[i]), "f1": float(f1[i]), "threshold": float(t[i]),
                          "support": int(support[i])} for i, c in enumerate(names)},
    }

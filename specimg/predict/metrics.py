"""Classification metrics of file-level predictions (thin, checked wrappers of scikit-learn).

UAR, the *unweighted average recall* (mean of the per-class recalls, scikit-learn's
``balanced_accuracy_score``), is the headline metric of paralinguistic
challenges; accuracy, macro F1 and log-loss come along, with per-class
precision/recall/F1 and the confusion matrix.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, Sequence

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)

from ..exceptions import DataError

__all__ = ["uar", "classification_metrics", "check_labels"]


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

"""Class weights, mixup and the file-level metrics the trainer optimises."""

from __future__ import annotations

from typing import Dict, Literal, Optional, Tuple

import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from ..exceptions import ParameterError

__all__ = ["class_weights", "aggregate_files", "file_scores"]


def class_weights(targets: np.ndarray, num_classes: int, *,
                  mode: Literal["inverse", "none"] = "inverse") -> Optional[torch.Tensor]:
    """Cross-entropy weights from class counts.

    Parameters
    ----------
    targets : np.ndarray [shape=(n,), dtype=int]
        Class index of every training window.
    num_classes : int
    mode : {'inverse', 'none'}
        ``'inverse'``: ``n / (num_classes * count_c)`` (scikit-learn's
        "balanced" weights; a class absent from ``targets`` gets 0);
        ``'none'``: no weights.

    Returns
    -------
    weights : torch.Tensor [shape=(num_classes,), dtype=float32] or None

    Examples
    --------
    >>> [round(w, 3) for w in class_weights(np.array([0, 0, 0, 1]), 2).tolist()]
    [0.667, 2.0]
    """
    if mode == "none":
        return None
    if mode != "inverse":
        raise ParameterError(f"The 'mode' parameter of class_weights must be 'inverse' or 'none'. Got {mode!r}.")
    targets = np.asarray(targets, dtype=np.int64)
    counts = np.bincount(targets[targets >= 0], minlength=num_classes).astype(np.float64)
    w = np.zeros(num_classes, dtype=np.float64)
    seen = counts > 0
    w[seen] = counts.sum() / (num_classes * counts[seen])
    return torch.tensor(w, dtype=torch.float32)


def aggregate_files(probs: np.ndarray, file_ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Average window probabilities per file.

    Parameters
    ----------
    probs : np.ndarray [shape=(n_windows, n_classes)]
    file_ids : np.ndarray [shape=(n_windows,)]

    Returns
    -------
    ids : np.ndarray [shape=(n_files,)]
        Sorted unique file ids.
    file_probs : np.ndarray [shape=(n_files, n_classes)]
    """
    ids, inv = np.unique(np.asarray(file_ids), return_inverse=True)
    sums = np.zeros((len(ids), probs.shape[1]), dtype=np.float64)
    np.add.at(sums, inv, probs)
    counts = np.bincount(inv, minlength=len(ids)).astype(np.float64)
    return ids, (sums / counts[:, None]).astype(np.float32)


def file_scores(file_probs: np.ndarray, file_targets: np.ndarray) -> Dict[str, float]:
    """File-level accuracy and UAR (unweighted average recall = balanced accuracy)."""
    pred = np.argmax(file_probs, axis=1)
    return {"accuracy": float(accuracy_score(file_targets, pred)),
            "uar": float(balanced_accuracy_score(file_targets, pred))}

"""Class weights of the loss; the file-level pooling and metrics the trainer optimises come from :mod:`specimg.scoring`."""

from __future__ import annotations

from typing import Dict, Literal, Optional, Tuple

import numpy as np
import torch

from ..exceptions import ParameterError
from ..scoring import aggregate_files, file_scores

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

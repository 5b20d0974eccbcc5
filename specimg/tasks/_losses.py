"""The losses the two tasks train with: :func:`class_weights` for the single-label cross-entropy; for
multi-label, losses on logits ``(B, C)`` and float targets ``(B, C)`` in [0, 1] (mixup may make them
fractional) that return the mean over every (item, class) term (Lin et al. 2017, Ridnik et al. 2021).
"""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
import torch
from torch import nn

from ..exceptions import ParameterError

__all__ = ["class_weights", "BCEWithLogits", "FocalBCE", "AsymmetricLoss", "positive_weights"]


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


#: ``pos_weight='balanced'`` is ``n_neg / n_pos`` clipped to this range.
POS_WEIGHT_RANGE = (1.0, 100.0)


class BCEWithLogits(nn.Module):
    """Binary cross-entropy on logits, averaged over items and classes (``pos_weight``: per class, (C,))."""

    def __init__(self, pos_weight: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=self.pos_weight)


class FocalBCE(nn.Module):
    """Focal binary cross-entropy: ``(1 - p_t) ** gamma`` times each term (``gamma=0`` is the BCE)."""

    def __init__(self, gamma: float = 2.0, pos_weight: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        self.gamma = float(gamma)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        bce = nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=self.pos_weight,
                                                             reduction="none")  # (B, C)
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        return ((1 - p_t).clamp(min=0) ** self.gamma * bce).mean()


class AsymmetricLoss(nn.Module):
    """Asymmetric loss (Ridnik et al. 2021): plain positive terms, shifted and focused negative terms.

    ``loss = -[y log(p) w_pos + (1 - y) p_m ** gamma log(1 - p_m)]`` with
    ``p_m = max(p - clip, 0)``.
    """

    def __init__(self, gamma: float = 4.0, clip: float = 0.05, pos_weight: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        self.gamma, self.clip = float(gamma), float(clip)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        pos = targets * nn.functional.logsigmoid(logits)  # (B, C)
        if self.pos_weight is not None:
            pos = pos * self.pos_weight
        p_m = (p - self.clip).clamp(min=0)
        neg = (1 - targets) * p_m ** self.gamma * torch.log((1 - p_m).clamp(min=1e-8))
        return -(pos + neg).mean()


def positive_weights(targets: np.ndarray, mode: str = "balanced") -> Optional[torch.Tensor]:
    """Per-class ``pos_weight``: ``n_neg / n_pos`` of the training windows, clipped to [1, 100] (``'none'``: None).

    Examples
    --------
    >>> positive_weights(np.array([[1, 0], [0, 0], [0, 1], [0, 1]], dtype=np.float32)).tolist()
    [3.0, 1.0]
    """
    if mode == "none":
        return None
    t = np.asarray(targets, dtype=np.float64)
    n_pos = t.sum(axis=0)
    n_neg = len(t) - n_pos
    w = np.where(n_pos > 0, n_neg / np.maximum(n_pos, 1e-12), 1.0)
    return torch.tensor(np.clip(w, *POS_WEIGHT_RANGE), dtype=torch.float32)

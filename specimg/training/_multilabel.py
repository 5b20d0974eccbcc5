"""Multi-label training: the per-class losses, their positive weights, mixup targets and validation scores.

A multi-label model has one logit per class and a sigmoid on each
(:class:`~specimg.models.Ensemble` with ``activation='sigmoid'``); its
targets are multi-hot rows. The losses here take logits ``(B, C)`` and
float targets ``(B, C)`` in [0, 1] (mixup may make them fractional) and
return the mean over every (item, class) term:

- :class:`BCEWithLogits`: :class:`torch.nn.BCEWithLogitsLoss` with an
  optional per-class ``pos_weight``;
- :class:`FocalBCE`: each term times ``(1 - p_t) ** gamma`` (Lin et al.
  2017), ``p_t`` the probability given to the target;
- :class:`AsymmetricLoss`: Ridnik et al. 2021 (ASL): positive terms plain,
  negative terms focused by ``p ** gamma`` after shifting their probability
  down by ``clip`` (easy negatives then cost nothing).
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..scoring import aggregate_segments, multilabel_scores

__all__ = ["BCEWithLogits", "FocalBCE", "AsymmetricLoss", "positive_weights", "multilabel_criterion",
           "mixup_targets", "multilabel_validation"]

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


def multilabel_criterion(config: TrainConfig, targets: np.ndarray) -> nn.Module:
    """The loss of a multi-label fit from its config (``multi_label_loss``, ``pos_weight``, ``focal_gamma``)."""
    weight = positive_weights(targets, config.pos_weight)
    if config.multi_label_loss == "focal":
        return FocalBCE(config.focal_gamma, pos_weight=weight)
    if config.multi_label_loss == "asymmetric":
        return AsymmetricLoss(config.focal_gamma, pos_weight=weight)
    return BCEWithLogits(pos_weight=weight)


def mixup_targets(y: torch.Tensor, perm: torch.Tensor, lam: float, mode: str) -> torch.Tensor:
    """Targets of a mixup batch ``lam * x + (1 - lam) * x[perm]``: their union (max) or their ``lam``-mix.

    Examples
    --------
    >>> y = torch.tensor([[1., 0.], [0., 1.]])
    >>> mixup_targets(y, torch.tensor([1, 0]), 0.7, "union").tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    >>> [[round(v, 2) for v in r] for r in mixup_targets(y, torch.tensor([1, 0]), 0.7, "mix").tolist()]
    [[0.7, 0.3], [0.3, 0.7]]
    """
    if mode == "union":
        return torch.maximum(y, y[perm])
    return lam * y + (1.0 - lam) * y[perm]


def multilabel_validation(probs: np.ndarray, targets: np.ndarray, ids: np.ndarray, *,
                          pooling: str = "max") -> Dict[str, float]:
    """Validation loss (window BCE on the sigmoid scores) and macro AP / ROC-AUC on the pooled units.

    Parameters
    ----------
    probs : np.ndarray [shape=(n_windows, n_classes)]
        Sigmoid scores.
    targets : np.ndarray [shape=(n_windows, n_classes)]
        Multi-hot window targets.
    ids : np.ndarray [shape=(n_windows,)]
        The unit each window is scored in (its file; or the window itself).
    pooling : {'max', 'mean'}
        Window scores -> unit scores, per class; a unit's target is the
        union of its windows' targets.

    Returns
    -------
    dict
        ``val_loss``, ``val_macro_ap``, ``val_micro_ap``, ``val_macro_roc_auc``.
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    t = np.asarray(targets, dtype=np.float64)
    loss = float(-(t * np.log(p) + (1 - t) * np.log(1 - p)).mean())
    _, scores = aggregate_segments(probs, ids, method=pooling, normalize=False)
    _, truth = aggregate_segments(t, ids, method="max", normalize=False)
    s = multilabel_scores(truth > 0.5, scores)
    # an undefined score (no class with a positive in the fold) never wins an epoch
    clean = {k: (v if np.isfinite(v) else -1.0) for k, v in s.items()}
    return {"val_loss": loss, "val_macro_ap": clean["macro_ap"], "val_micro_ap": clean["micro_ap"],
            "val_macro_roc_auc": clean["macro_roc_auc"]}

"""The inference core: normalise -> optional flip TTA -> softmax / sigmoid -> mean over fold models.

Validation in training, :class:`specimg.predict.Predictor` and the exported graph all compute window
probabilities with :class:`Ensemble`: what is validated is what is predicted is what is exported.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import torch
from torch import nn

from .._validation import check_choice, fail
from ..data import PixelNormalize

__all__ = ["Ensemble", "Activation", "TTA"]

Activation = Literal["softmax", "sigmoid"]
TTA = Literal["flip", "none"]


class Ensemble(nn.Module):
    """Fold models behind one forward: images in, window probabilities out.

    Parameters
    ----------
    models : sequence of nn.Module
        Backbones mapping ``(B, 3, H, W)`` normalised images to logits
        ``(B, n_classes)``.
    normalize : PixelNormalize or None
        Applied first, to pixel input (``[0, 255]``, uint8 or float);
        ``None`` when the input is already normalised.
    tta : {'flip', 'none'}
        ``'flip'``: every image and its horizontal (time) flip; their
        probabilities are averaged, the seed's test-time augmentation.
    activation : {'softmax', 'sigmoid'}
        ``'softmax'`` for single-label classes (rows sum to 1),
        ``'sigmoid'`` for independent (multi-label) tags.
    channels_last : bool
        Run the models on channels-last input (faster convolutions on CPU
        and GPU; the values do not depend on it beyond float rounding).

    Examples
    --------
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    >>> core = Ensemble([net, net], normalize=PixelNormalize(), tta="flip")
    >>> core(torch.zeros(5, 3, 4, 4, dtype=torch.uint8)).shape
    torch.Size([5, 2])
    """

    def __init__(self, models: Sequence[nn.Module], *, normalize: Optional[PixelNormalize] = None,
                 tta: TTA = "none", activation: Activation = "softmax", channels_last: bool = False) -> None:
        super().__init__()
        models = list(models)
        if not models or not all(isinstance(m, nn.Module) for m in models):
            fail("Ensemble", "models", "a non-empty sequence of nn.Module", models)
        if normalize is not None and not isinstance(normalize, PixelNormalize):
            fail("Ensemble", "normalize", "a PixelNormalize or None", normalize)
        self.models = nn.ModuleList(models)
        self.normalize = normalize
        self.tta = check_choice(tta, "tta", ("flip", "none"), owner="Ensemble")
        self.activation = check_choice(activation, "activation", ("softmax", "sigmoid"), owner="Ensemble")
        self.channels_last = bool(channels_last)

    def extra_repr(self) -> str:
        return f"n_models={len(self.models)}, tta={self.tta!r}, activation={self.activation!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Window probabilities.

        Parameters
        ----------
        x : torch.Tensor [shape=(B, 3, H, W)]
            Pixels (with ``normalize``) or normalised images.

        Returns
        -------
        probs : torch.Tensor [shape=(B, n_classes), dtype=float32]
            Averaged over flips and models; the logits are taken in float32
            (also under autocast) before the activation.
        """
        if self.normalize is not None:
            x = self.normalize(x)  # (B, 3, H, W) float32
        n = x.shape[0]
        if self.tta == "flip":
            x = torch.cat([x, x.flip(3)], dim=0)  # (2B, 3, H, W)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        p: Optional[torch.Tensor] = None
        for model in self.models:
            logits = model(x).float()  # (B or 2B, n_classes)
            q = logits.softmax(dim=1) if self.activation == "softmax" else logits.sigmoid()
            if self.tta == "flip":
                q = 0.5 * (q[:n] + q[n:])  # (B, n_classes)
            p = q if p is None else p + q
        return p / len(self.models)  # type: ignore[operator]

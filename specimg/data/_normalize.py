"""Pixel normalisation: the one definition of "image pixels -> backbone input"."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import torch
from torch import nn

from .._validation import fail

__all__ = ["PixelNormalize", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _triple(value: Sequence[float], name: str) -> Tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3:
        fail("PixelNormalize", name, "three numbers (one per channel, on the 0-1 scale)", value)
    return out  # type: ignore[return-value]


class PixelNormalize(nn.Module):
    """Pixels in ``[0, pixel_max]`` -> ``(x / pixel_max - mean) / std``, per channel.

    Training (on the device, after the batch is moved there), the
    validation predictions, :class:`~specimg.predict.Predictor` and the
    exported graph all normalise through this module, computed as
    ``x * scale + bias`` in float32.

    Parameters
    ----------
    mean, std : (float, float, float)
        The backbone's normalisation on the 0-1 scale (timm's
        ``pretrained_cfg``).
    pixel_max : float
        The value of a full-scale pixel: 255 for uint8 images.

    Examples
    --------
    >>> norm = PixelNormalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    >>> norm(torch.tensor([0, 255], dtype=torch.uint8).reshape(1, 1, 1, 2).expand(1, 3, 1, 2))[0, :, 0, :].tolist()
    [[-1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0]]
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, *,
                 pixel_max: float = 255.0) -> None:
        super().__init__()
        mean_t = torch.tensor(_triple(mean, "mean"), dtype=torch.float32).reshape(1, 3, 1, 1)
        std_t = torch.tensor(_triple(std, "std"), dtype=torch.float32).reshape(1, 3, 1, 1)
        if (std_t <= 0).any():
            fail("PixelNormalize", "std", "three numbers > 0", tuple(std))
        if not float(pixel_max) > 0:
            fail("PixelNormalize", "pixel_max", "a number > 0", pixel_max)
        self.mean: Tuple[float, ...] = tuple(float(v) for v in mean_t.flatten())
        self.std: Tuple[float, ...] = tuple(float(v) for v in std_t.flatten())
        self.pixel_max = float(pixel_max)
        self.register_buffer("scale", 1.0 / (self.pixel_max * std_t))
        self.register_buffer("bias", -mean_t / std_t)

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}, pixel_max={self.pixel_max:g}"

    def forward(self, x: torch.Tensor, train: bool = False, generator: Optional[Any] = None) -> torch.Tensor:
        """Normalise a batch (or one image).

        Parameters
        ----------
        x : torch.Tensor [shape=(B, 3, H, W) or (3, H, W)]
            Pixels, uint8 or float, in ``[0, pixel_max]``.
        train, generator
            Ignored: the signature of a :class:`~specimg.training.Trainer`
            batch transform.

        Returns
        -------
        x : torch.Tensor [shape=like the input, dtype=float32]
        """
        scale, bias = self.scale, self.bias
        if x.dim() == 3:
            scale, bias = scale[0], bias[0]
        return x.float() * scale + bias

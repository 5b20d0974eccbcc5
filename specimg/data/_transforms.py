"""Albumentations pipelines for spectrogram images (uint8, HWC)."""

from __future__ import annotations

from typing import Optional, Tuple

import albumentations as A
import numpy as np
import cv2

from ..exceptions import ParameterError

__all__ = ["spectrogram_transforms", "SpectrogramStretch"]


class SpectrogramStretch(A.ImageOnlyTransform):
    """Rescale a spectrogram image along frequency and/or time, keeping its size.

    Frequency rescaling is anchored at the bottom row (0 Hz stays 0 Hz, the
    rest moves up or down like a vocal-tract-length change); time rescaling is
    anchored at the left edge. Rows or columns left empty are filled with 0.

    Parameters
    ----------
    freq : float
        Largest relative change of the frequency axis (factor in [1 - freq, 1 + freq]).
    time : float
        Largest relative change of the time axis.
    p : float
        Probability of applying the transform (each axis is then drawn independently with p=0.5).
    """

    def __init__(self, freq: float = 0.1, time: float = 0.0, p: float = 0.5) -> None:
        super().__init__(p=p)
        self.freq, self.time = float(freq), float(time)

    def get_params(self) -> dict:
        fy = 1.0 + self.py_random.uniform(-self.freq, self.freq) if self.freq > 0 and self.py_random.random() < 0.5 else 1.0
        fx = 1.0 + self.py_random.uniform(-self.time, self.time) if self.time > 0 and self.py_random.random() < 0.5 else 1.0
        return {"fy": fy, "fx": fx}

    def apply(self, img: np.ndarray, fy: float = 1.0, fx: float = 1.0, **params) -> np.ndarray:
        h, w = img.shape[:2]
        out = img
        if fy != 1.0:
            nh = max(1, int(round(h * fy)))
            scaled = cv2.resize(out, (w, nh), interpolation=cv2.INTER_LINEAR).reshape(nh, w, -1)
            out = scaled[nh - h:] if nh >= h else np.concatenate(
                [np.zeros((h - nh, w, scaled.shape[2]), img.dtype), scaled], axis=0)
        if fx != 1.0:
            nw = max(1, int(round(w * fx)))
            scaled = cv2.resize(out, (nw, h), interpolation=cv2.INTER_LINEAR).reshape(h, nw, -1)
            out = scaled[:, :w] if nw >= w else np.concatenate(
                [scaled, np.zeros((h, w - nw, scaled.shape[2]), img.dtype)], axis=1)
        return np.ascontiguousarray(out.reshape(img.shape))

    def get_transform_init_args_names(self) -> tuple:
        return ("freq", "time")


def spectrogram_transforms(
    *,
    train: bool,
    image_size: Optional[Tuple[int, int]] = None,
    cache_size: Optional[Tuple[int, int]] = None,
    hflip: float = 0.5,
    time_mask: float = 0.0,
    freq_mask: float = 0.0,
    n_masks: int = 2,
    freq_stretch: float = 0.0,
    time_stretch: float = 0.0,
) -> Optional[A.Compose]:
    """Build the augmentation / resizing pipeline of one split.

    Works on the cached uint8 images before normalisation. On a spectrogram
    image the x axis is time and the y axis frequency, so a horizontal flip
    reverses time, a *time* mask is a full-height stripe and a *frequency*
    mask a full-width stripe (SpecAugment).

    Parameters
    ----------
    train : bool
        Training pipeline (augmentations) or evaluation pipeline (resize only).
    image_size : (int, int) or None
        (height, width) the backbone sees; ``None`` keeps ``cache_size``.
    cache_size : (int, int) or None
        (height, width) of the cached images; a resize is added only when it
        differs from ``image_size``.
    hflip : float
        Probability of a horizontal flip (training only).
    time_mask, freq_mask : float
        Largest stripe width (fraction of the width) / height (fraction of the
        height); ``0`` disables that mask.
    n_masks : int
        Up to this many stripes of each kind per image.
    freq_stretch, time_stretch : float
        Rescale the image along frequency / time by a random factor in
        ``[1 - x, 1 + x]`` (training only, p=0.5 each), keeping the lowest
        frequency at the bottom row: a vocal-tract-length / tempo
        perturbation in image space.

    Returns
    -------
    transform : albumentations.Compose or None
        ``None`` when there is nothing to do (evaluation at the cached size),
        so that the data loader skips the call.

    Examples
    --------
    >>> t = spectrogram_transforms(train=True, image_size=(32, 64), cache_size=(64, 64), time_mask=0.1)
    >>> [type(x).__name__ for x in t.transforms]
    ['Resize', 'HorizontalFlip', 'XYMasking']
    """
    for name, v in (("hflip", hflip),):
        if not 0.0 <= float(v) <= 1.0:
            raise ParameterError(f"The {name!r} parameter of spectrogram_transforms must be a probability in "
                                 f"[0, 1]. Got {v!r}.")
    for name, v in (("time_mask", time_mask), ("freq_mask", freq_mask), ("freq_stretch", freq_stretch),
                    ("time_stretch", time_stretch)):
        if not 0.0 <= float(v) < 1.0:
            raise ParameterError(f"The {name!r} parameter of spectrogram_transforms must be a fraction in "
                                 f"[0, 1). Got {v!r}.")
    ops: list = []
    size = tuple(image_size) if image_size is not None else (tuple(cache_size) if cache_size is not None else None)
    if size is not None and cache_size is not None and tuple(cache_size) != size:
        down = size[0] * size[1] < cache_size[0] * cache_size[1]
        ops.append(A.Resize(size[0], size[1], interpolation=cv2.INTER_AREA if down else cv2.INTER_LINEAR))
    if train:
        if hflip > 0:
            ops.append(A.HorizontalFlip(p=hflip))
        if freq_stretch > 0 or time_stretch > 0:
            ops.append(SpectrogramStretch(freq=freq_stretch, time=time_stretch, p=1.0))
        if (time_mask > 0 or freq_mask > 0) and size is None:
            raise ParameterError("spectrogram_transforms needs image_size or cache_size to size the masks.")
        if time_mask > 0 or freq_mask > 0:
            h, w = size  # type: ignore[misc]
            kw: dict = {}
            if time_mask > 0:
                kw.update(num_masks_x=(1, n_masks), mask_x_length=(1, max(1, int(round(time_mask * w)))))
            if freq_mask > 0:
                kw.update(num_masks_y=(1, n_masks), mask_y_length=(1, max(1, int(round(freq_mask * h)))))
            ops.append(A.XYMasking(fill=0, p=0.5, **kw))
    if not ops:
        return None
    return A.Compose(ops)

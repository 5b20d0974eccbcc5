"""Training input: :class:`CachedImages` (an image cache, augmented on the CPU) or :class:`OnTheFlyImages`
(waveform windows made into images on the device); :func:`~specimg.training.train_cv` never asks which.

Both give pixels on the 0-255 scale; the trainer normalises them.
"""

from __future__ import annotations

from typing import Any, ClassVar, List, Literal, Optional, Tuple

import numpy as np
import pandas as pd
from torch import nn
from torch.utils.data import Dataset

from .._validation import fail
from ..config import RenderConfig, TrainConfig
from ._dataset import SegmentDataset, cache_targets
from ._device import DeviceAugment, FrontendPipeline
from ._transforms import spectrogram_transforms
from ._waveform import WaveformDataset, WaveformSet

__all__ = ["TrainingImages", "CachedImages", "OnTheFlyImages", "ImagesKind"]

ImagesKind = Literal["cached", "on-the-fly"]


class TrainingImages:
    """What :func:`~specimg.training.train_cv` trains on: tables, targets, datasets and a device transform.

    Attributes
    ----------
    kind : {'cached', 'on-the-fly'}
    data : ImageCache or WaveformSet
    files, segments : pd.DataFrame
    classes : list of str
    config : RenderConfig
    """

    kind: ClassVar[str] = ""

    def __init__(self, data: Any) -> None:
        self.data = data

    @property
    def files(self) -> pd.DataFrame:
        return self.data.files.reset_index(drop=True)

    @property
    def segments(self) -> pd.DataFrame:
        return self.data.segments

    @property
    def classes(self) -> List[str]:
        return list(self.data.classes)

    @property
    def config(self) -> RenderConfig:
        return self.data.config

    @property
    def root(self) -> Any:
        return self.data.root

    @property
    def n_windows(self) -> int:
        return int(len(self.data.segments))

    def targets(self) -> Tuple[np.ndarray, np.ndarray]:
        """File id and class index (``-1``: unlabelled) of every window."""
        return cache_targets(self.data)

    @property
    def rendered_size(self) -> Tuple[int, int]:
        """(height, width) of the images as rendered, before any resize to the backbone's size."""
        raise NotImplementedError

    def dataset(self, rows: np.ndarray, targets: np.ndarray, file_ids: np.ndarray, *, train: bool,
                config: TrainConfig, image_size: Tuple[int, int], num_classes: int) -> Dataset:
        """The windows ``rows`` as a torch Dataset of ``(input, target)`` items."""
        raise NotImplementedError

    def device_transform(self, *, config: TrainConfig, image_size: Tuple[int, int], mean: Any,
                         std: Any) -> Optional[nn.Module]:
        """What turns a batch into pixels on the device (``None``: the batch already is pixels)."""
        raise NotImplementedError


class CachedImages(TrainingImages):
    """Images rendered once into an :class:`~specimg.spectrogram.ImageCache`, augmented on the CPU."""

    kind = "cached"

    @property
    def rendered_size(self) -> Tuple[int, int]:
        return int(self.data.images.shape[1]), int(self.data.images.shape[2])

    def dataset(self, rows: np.ndarray, targets: np.ndarray, file_ids: np.ndarray, *, train: bool,
                config: TrainConfig, image_size: Tuple[int, int], num_classes: int) -> Dataset:
        aug = config.augment.to_dict() if train else {}
        aug.pop("mixup", None)  # a batch operation (the trainer's)
        transform = spectrogram_transforms(train=train, image_size=image_size, cache_size=self.rendered_size, **aug)
        return SegmentDataset(self.data.images, targets, rows=rows, file_ids=file_ids, transform=transform,
                              seed=config.seed, num_classes=num_classes, normalize=False)

    def device_transform(self, *, config: TrainConfig, image_size: Tuple[int, int], mean: Any,
                         std: Any) -> Optional[nn.Module]:
        return None


class OnTheFlyImages(TrainingImages):
    """Decoded audio (:class:`~specimg.data.WaveformSet`); each batch becomes images on the training device."""

    kind = "on-the-fly"

    def __init__(self, data: WaveformSet) -> None:
        if not isinstance(data, WaveformSet):
            fail("OnTheFlyImages", "data", "a WaveformSet", type(data).__name__)
        super().__init__(data)

    @property
    def rendered_size(self) -> Tuple[int, int]:
        return tuple(int(v) for v in self.data.config.spectrogram.image_size)  # type: ignore[return-value]

    def dataset(self, rows: np.ndarray, targets: np.ndarray, file_ids: np.ndarray, *, train: bool,
                config: TrainConfig, image_size: Tuple[int, int], num_classes: int) -> Dataset:
        return WaveformDataset(self.data, targets, rows=rows, file_ids=file_ids, num_classes=num_classes)

    def device_transform(self, *, config: TrainConfig, image_size: Tuple[int, int], mean: Any,
                         std: Any) -> Optional[nn.Module]:
        a = config.augment
        augment = DeviceAugment(hflip=a.hflip, time_mask=a.time_mask, freq_mask=a.freq_mask, n_masks=a.n_masks,
                                freq_stretch=a.freq_stretch, time_stretch=a.time_stretch)
        return FrontendPipeline(self.data.config, image_size=image_size, mean=mean, std=std, augment=augment,
                                normalize=False)

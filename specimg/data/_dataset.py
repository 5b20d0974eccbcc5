"""A torch Dataset over the rows of an image cache."""

from __future__ import annotations

import mmap
import os
import random
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..exceptions import DataError
from ._folds import _missing
from ._normalize import IMAGENET_MEAN, IMAGENET_STD, PixelNormalize

if TYPE_CHECKING:  # pragma: no cover
    from ..spectrogram import ImageCache

__all__ = ["SegmentDataset", "IMAGENET_MEAN", "IMAGENET_STD"]


class SegmentDataset(Dataset):
    """Windows of an image cache as normalised CHW float tensors (or raw uint8 ones).

    A ``np.memmap`` image array is mapped again in each DataLoader worker, not pickled. Augmentation is seeded
    per item from ``(seed, epoch, row)``, whatever the workers and the read order (call :meth:`set_epoch`
    before each epoch).

    Parameters
    ----------
    images : np.ndarray or ImageArray [shape=(n_images, H, W, 3), dtype=uint8]
        All the images (HWC, low frequencies at the bottom row), e.g. a cache's
        :attr:`~specimg.spectrogram.ImageCache.images`.
    targets : np.ndarray [shape=(n_images,), dtype=int] or None
        Class index of every image row; ``None`` (or ``-1``) for unlabelled.
        Multi-label: a multi-hot array [shape=(n_images, n_classes)] (each
        item's target is then a float32 tensor of 0 and 1).
    rows : np.ndarray [shape=(n,), dtype=int] or None
        The image rows this dataset serves (a fold); ``None`` is all of them.
    file_ids : np.ndarray [shape=(n_images,), dtype=int] or None
        Source file of every image row, used to aggregate window predictions
        per file.
    transform : callable or None
        An albumentations pipeline applied to the uint8 HWC image (see
        :func:`spectrogram_transforms`).
    mean, std : (float, float, float)
        Normalisation of the backbone (``backbone_data_config``), on the
        0-1 scale.
    seed : int
        Seed of the augmentation.
    num_classes : int or None
        Number of classes (kept for the trainer).
    normalize : bool
        ``True``: items are float32, normalised by :class:`~specimg.data.PixelNormalize` (``mean``, ``std``).
        ``False``: uint8 pixels, for a trainer that normalises on the device (what
        :func:`~specimg.training.train_cv` does: a quarter of the bytes through the loader).

    Examples
    --------
    >>> images = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    >>> ds = SegmentDataset(images, np.array([0, 1, 0, 1]), rows=np.array([1, 3]))
    >>> x, y = ds[0]
    >>> tuple(x.shape), y
    ((3, 32, 32), 1)
    """

    def __init__(
        self,
        images: np.ndarray,
        targets: Optional[np.ndarray] = None,
        *,
        rows: Optional[np.ndarray] = None,
        file_ids: Optional[np.ndarray] = None,
        transform: Optional[Callable[..., Any]] = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        seed: int = 0,
        num_classes: Optional[int] = None,
        normalize: bool = True,
    ) -> None:
        if getattr(images, "ndim", None) != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise DataError(f"SegmentDataset expects images of shape (n, H, W, 3) and dtype uint8; got shape "
                            f"{getattr(images, 'shape', None)} and dtype {getattr(images, 'dtype', None)}.")
        n = len(images)
        self.rows = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        if self.rows.size and (self.rows.min() < 0 or self.rows.max() >= n):
            raise DataError(f"SegmentDataset rows must lie in [0, {n}); got {self.rows.min()}..{self.rows.max()}.")
        if targets is None:
            targets = np.full(n, -1, dtype=np.int64)
        targets = _as_targets(targets)
        if targets.shape[:1] != (n,):
            raise DataError(f"SegmentDataset targets must have one entry per image ({n}); got shape {targets.shape}.")
        self._all_targets = targets
        self._all_file_ids = None if file_ids is None else np.asarray(file_ids, dtype=np.int64)
        if self._all_file_ids is not None and self._all_file_ids.shape != (n,):
            raise DataError(f"SegmentDataset file_ids must have one entry per image ({n}); got shape "
                            f"{self._all_file_ids.shape}.")
        self._norm = PixelNormalize(mean, std) if normalize else None
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.normalize = bool(normalize)
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self.num_classes = num_classes
        self.image_shape: Tuple[int, int] = (int(images.shape[1]), int(images.shape[2]))
        self._source = _memmap_source(images)
        self._images: Optional[np.ndarray] = images
        self._pid = os.getpid()

    @classmethod
    def from_cache(
        cls,
        cache: "ImageCache",
        rows: Optional[np.ndarray] = None,
        *,
        transform: Optional[Callable[..., Any]] = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        seed: int = 0,
    ) -> "SegmentDataset":
        """Dataset over (some rows of) an :class:`~specimg.spectrogram.ImageCache`.

        Targets are the index of each window's file label in
        ``cache.classes`` (``-1`` when unlabelled).
        """
        file_ids, targets = cache_targets(cache)
        return cls(cache.images, targets, rows=rows, file_ids=file_ids, transform=transform, mean=mean, std=std,
                   seed=seed, num_classes=len(cache.classes))

    # -- properties over the selected rows ---------------------------------
    @property
    def targets(self) -> np.ndarray:
        """Class index of each item (``-1`` when unlabelled), shape (n,)."""
        return self._all_targets[self.rows]

    @property
    def file_ids(self) -> Optional[np.ndarray]:
        """Source file of each item, shape (n,), or None."""
        return None if self._all_file_ids is None else self._all_file_ids[self.rows]

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of this epoch."""
        self.epoch = int(epoch)

    # -- lazy memmap --------------------------------------------------------
    def _array(self) -> np.ndarray:
        if self._source is not None and (self._images is None or self._pid != os.getpid()):
            filename, dtype, shape, offset, order = self._source
            self._images = np.memmap(filename, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
            self._pid = os.getpid()
        if self._images is None:  # pragma: no cover - an in-memory array (or a cache's ImageArray) travels along
            raise DataError("SegmentDataset lost its images.")
        return self._images

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self._source is not None:
            state["_images"] = None  # re-mapped in the receiving process
        return state

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, Any]:
        row = int(self.rows[index])
        image = np.asarray(self._array()[row])  # (H, W, 3) uint8
        if self.transform is not None:
            rng = np.random.default_rng((self.seed, self.epoch, row))
            set_state = getattr(self.transform, "set_random_state", None)
            if set_state is not None:
                set_state(rng, random.Random(int(rng.integers(2**63))))
            image = self.transform(image=image)["image"]
        if not image.flags.writeable or not image.flags.c_contiguous:  # a read-only memmap row
            image = np.array(image, order="C")
        x = torch.from_numpy(image).permute(2, 0, 1)  # (3, H, W) uint8
        if self._norm is not None:
            x = self._norm(x)  # (3, H, W) float32
        return x, item_target(self._all_targets, row)


def _as_targets(targets: Any) -> np.ndarray:
    """Class indices (1-D, int64) or multi-hot multi-label targets (2-D, float32)."""
    arr = np.asarray(targets)
    if arr.ndim == 2:
        return arr.astype(np.float32)
    return arr.astype(np.int64)


def item_target(targets: np.ndarray, row: int) -> Any:
    """One item's target: a class index (int) or a multi-hot float32 tensor [shape=(n_classes,)]."""
    if targets.ndim == 2:
        return torch.from_numpy(np.array(targets[row], dtype=np.float32))
    return int(targets[row])


def _memmap_source(images: np.ndarray) -> Optional[tuple]:
    """How to re-open ``images`` in another process, when it maps a whole file region."""
    if isinstance(images, np.memmap) and getattr(images, "filename", None) and isinstance(images.base, mmap.mmap):
        order = "F" if images.flags.f_contiguous and not images.flags.c_contiguous else "C"
        return (str(images.filename), images.dtype.str, tuple(images.shape), int(images.offset), order)
    return None


def cache_targets(cache: "ImageCache") -> Tuple[np.ndarray, np.ndarray]:
    """File id and class index (``-1`` when unlabelled) of every cached window.

    Returns
    -------
    file_ids : np.ndarray [shape=(n_images,), dtype=int64]
    targets : np.ndarray [shape=(n_images,), dtype=int64]
    """
    index = {c: i for i, c in enumerate(cache.classes)}
    files = cache.files
    label_of = {}
    for fid, lab in zip(files["file_id"].to_numpy(), files["label"].to_numpy()):
        label_of[int(fid)] = -1 if _missing(lab) else index.get(str(lab), -1)
    file_ids = cache.segments["file_id"].to_numpy(dtype=np.int64)
    targets = np.array([label_of.get(int(f), -1) for f in file_ids], dtype=np.int64)
    return file_ids, targets

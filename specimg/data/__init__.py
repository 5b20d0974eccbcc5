"""Batches and folds: datasets over the image cache, augmentation, file-grouped folds, targets from tag sets."""

from ._dataset import SegmentDataset as SegmentDataset
from ._dataset import cache_targets as cache_targets
from ._device import DeviceAugment as DeviceAugment
from ._device import FrontendPipeline as FrontendPipeline
from ._folds import file_folds as file_folds
from ._inputs import CachedImages as CachedImages
from ._inputs import OnTheFlyImages as OnTheFlyImages
from ._inputs import TrainingImages as TrainingImages
from ._folds import pseudo_leaks as pseudo_leaks
from ._tags import as_tag_table as as_tag_table
from ._tags import sample_negatives as sample_negatives
from ._tags import tag_classes as tag_classes
from ._tags import tag_folds as tag_folds
from ._tags import tag_matrix as tag_matrix
from ._tags import window_label_text as window_label_text
from ._tags import window_targets as window_targets
from ._folds import pseudo_mask as pseudo_mask
from ._normalize import IMAGENET_MEAN as IMAGENET_MEAN
from ._normalize import IMAGENET_STD as IMAGENET_STD
from ._normalize import PixelNormalize as PixelNormalize
from ._transforms import spectrogram_transforms as spectrogram_transforms
from ._waveform import WaveformDataset as WaveformDataset
from ._waveform import WaveformSet as WaveformSet

__all__ = [
    "DeviceAugment",
    "FrontendPipeline",
    "PixelNormalize",
    "TrainingImages",
    "CachedImages",
    "OnTheFlyImages",
    "SegmentDataset",
    "cache_targets",
    "file_folds",
    "pseudo_mask",
    "pseudo_leaks",
    "spectrogram_transforms",
    "WaveformSet",
    "WaveformDataset",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "as_tag_table",
    "tag_classes",
    "tag_matrix",
    "window_targets",
    "window_label_text",
    "tag_folds",
    "sample_negatives",
]

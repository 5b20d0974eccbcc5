"""Spectrogram images: mel / MFCC features, window images, the image cache."""

from ._cache import ImageCache as ImageCache
from ._cache import render_dataset as render_dataset
from ._frontend import SpectrogramFrontend as SpectrogramFrontend
from ._image import feature_matrix as feature_matrix
from ._image import render_file as render_file
from ._image import render_signal as render_signal
from ._image import signal_windows as signal_windows
from ._image import to_images as to_images

__all__ = ["ImageCache", "SpectrogramFrontend", "render_dataset", "feature_matrix", "render_file", "render_signal", "signal_windows",
           "to_images"]

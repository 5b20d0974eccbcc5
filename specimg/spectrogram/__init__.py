"""Spectrogram images: mel / MFCC features, window images, the image cache.

The torch front end (:class:`SpectrogramFrontend`) is imported on first use, so
``import specimg.spectrogram`` and ``specimg render`` do not load torch.
"""

from typing import TYPE_CHECKING, Any

from ._config import CACHE_FORMAT_VERSION as CACHE_FORMAT_VERSION
from ._config import RenderConfig as RenderConfig
from ._config import SpectrogramConfig as SpectrogramConfig
from ._config import default_hop_length as default_hop_length
from ._config import default_n_fft as default_n_fft
from ._config import mel_bands_that_fit as mel_bands_that_fit
from ._config import ms_to_samples as ms_to_samples
from ._render import render_dataset as render_dataset
from ._store import ImageArray as ImageArray
from ._store import ImageCache as ImageCache
from ._image import _load as load_for_render  # the one config-driven decode (render, prediction, waveforms)
from ._image import _window_starts as window_plan  # the one window plan (render, signal_windows, waveforms)
from ._image import feature_matrix as feature_matrix
from ._image import render_file as render_file
from ._image import render_signal as render_signal
from ._image import signal_windows as signal_windows
from ._image import to_images as to_images

__all__ = ["SpectrogramConfig", "RenderConfig", "ms_to_samples", "default_n_fft", "default_hop_length",
           "mel_bands_that_fit", "CACHE_FORMAT_VERSION", "ImageCache", "ImageArray", "SpectrogramFrontend",
           "render_dataset", "load_for_render", "window_plan", "feature_matrix", "render_file", "render_signal",
           "signal_windows", "to_images"]


def __getattr__(name: str) -> Any:
    if name == "SpectrogramFrontend":  # torch: loaded only when the front end is used
        from ._frontend import SpectrogramFrontend

        globals()[name] = SpectrogramFrontend
        return SpectrogramFrontend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from ._frontend import SpectrogramFrontend as SpectrogramFrontend

"""How a window becomes an image (:class:`SpectrogramConfig`, its STFT defaults at any sample rate) and
:class:`RenderConfig`: everything that decides the pixels of a cached image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional, Tuple, Union

from .._validation import ConfigBase, check_choice, check_float, check_int, check_positive, fail
from ..audio import AudioConfig, SegmentConfig

__all__ = ["SpectrogramConfig", "RenderConfig", "ms_to_samples", "default_n_fft", "default_hop_length",
           "mel_bands_that_fit", "CACHE_FORMAT_VERSION"]

#: Bumped whenever the image cache layout or the rendering maths changes, so
#: that a cache written by an older specimg is never silently reused.
CACHE_FORMAT_VERSION = 1


# librosa's Slaney mel scale (htk=False): linear below 1 kHz, logarithmic above
_F_SP, _MIN_LOG_HZ = 200.0 / 3, 1000.0
_MIN_LOG_MEL, _LOGSTEP = _MIN_LOG_HZ / _F_SP, math.log(6.4) / 27.0


def hz_to_mel(hz: Any) -> Any:
    """``librosa.hz_to_mel(hz)`` (Slaney's scale), float or array."""
    import numpy as np

    f = np.asarray(hz, dtype=np.float64)
    return np.where(f >= _MIN_LOG_HZ, _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP,
                    f / _F_SP)


def mel_to_hz(mel: Any) -> Any:
    """``librosa.mel_to_hz(mel)`` (Slaney's scale), float or array."""
    import numpy as np

    m = np.asarray(mel, dtype=np.float64)
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), _F_SP * m)


def ms_to_samples(ms: float, sample_rate: int) -> int:
    """Convert a duration in milliseconds to a whole number of samples.

    Examples
    --------
    >>> ms_to_samples(16, 44100)  # the voice-pathology n_fft
    706
    """
    return int(round(ms * sample_rate / 1000.0))


#: librosa's STFT at 44.1 kHz, ``n_fft=2048`` and ``hop_length=512`` samples (46.4 ms and 11.6 ms): the
#: durations :class:`SpectrogramConfig`'s defaults keep at any sample rate.
STFT_REFERENCE = {"n_fft": 2048, "hop_length": 512, "sample_rate": 44100}
#: The most mel bands :class:`SpectrogramConfig` chooses by itself (``n_mels=None``).
DEFAULT_N_MELS = 128


def default_n_fft(sample_rate: int) -> int:
    """The default STFT size: the largest power of two not longer than 46.4 ms (2048 samples at 44.1 kHz).

    Examples
    --------
    >>> [default_n_fft(sr) for sr in (2000, 8000, 16000, 22050, 44100, 48000)]
    [64, 256, 512, 1024, 2048, 2048]
    """
    ref = STFT_REFERENCE
    p = 1
    while 2 * p * ref["sample_rate"] <= ref["n_fft"] * int(sample_rate):  # exact in integers
        p *= 2
    return p


def default_hop_length(sample_rate: int) -> int:
    """The default STFT hop: 11.6 ms (512 samples at 44.1 kHz), rounded to whole samples.

    Examples
    --------
    >>> [default_hop_length(sr) for sr in (2000, 8000, 16000, 22050, 44100, 48000)]
    [23, 93, 186, 256, 512, 557]
    """
    ref = STFT_REFERENCE
    return max(1, (ref["hop_length"] * int(sample_rate) + ref["sample_rate"] // 2) // ref["sample_rate"])


def mel_bands_that_fit(sample_rate: int, n_fft: int, *, fmin: float = 0.0, fmax: Optional[float] = None,
                       most: int = DEFAULT_N_MELS) -> int:
    """The most mel bands (up to ``most``; 0 if not even one) whose every filter holds at least one STFT bin.

    A band narrower than the bin spacing ``sample_rate / n_fft`` has no bin
    inside it (librosa warns "Empty filters detected"): its image row would
    be black. The test is librosa's (Slaney mel scale): filter ``i`` of
    ``librosa.filters.mel`` is zero everywhere unless some bin frequency lies
    strictly between mel points ``i`` and ``i + 2``.

    Examples
    --------
    >>> mel_bands_that_fit(22050, 1024), mel_bands_that_fit(8000, 256), mel_bands_that_fit(2000, 64)
    (128, 128, 62)
    """
    import numpy as np

    top = sample_rate / 2.0 if fmax is None else float(fmax)
    lo_mel, hi_mel = float(hz_to_mel(float(fmin))), float(hz_to_mel(top))
    bin_hz = sample_rate / float(n_fft)
    n_bins = 1 + n_fft // 2
    for n in range(int(most), 0, -1):
        points = mel_to_hz(np.linspace(lo_mel, hi_mel, n + 2))  # the filterbank's (mel_filters)
        # the first bin above points[i] must lie below points[i + 2]
        if np.all(np.minimum(np.floor(points[:-2] / bin_hz) + 1, n_bins) * bin_hz < points[2:]):
            return n
    return 0


def _stft_length(value: Any, name: str, sample_rate: Optional[int]) -> Any:
    """Check an STFT length: an int of samples, a ``'16ms'`` duration or None; in samples when the rate is known."""
    o = "SpectrogramConfig"
    rule = "an int >= 1 (samples), a duration such as '16ms', or None (the default for the sample rate)"
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        try:
            ms = float(text[:-2]) if text.endswith("ms") else float("nan")
        except ValueError:
            ms = float("nan")
        if not math.isfinite(ms) or ms <= 0:
            fail(o, name, rule, value)
        if sample_rate is None:
            return value
        samples = ms_to_samples(ms, sample_rate)
        if samples < 1:
            fail(o, name, rule, value, f"At {sample_rate} Hz it is {samples} samples; give a longer duration.")
        return samples
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        fail(o, name, rule, value)
    return int(value)


@dataclass(frozen=True)
class SpectrogramConfig(ConfigBase):
    """How a window becomes an image.

    The STFT defaults scale with the sample rate: ``n_fft=None`` is the
    largest power of two not longer than 46.4 ms and ``hop_length=None``
    11.6 ms (librosa's 2048 / 512 samples at 44.1 kHz; 1024 / 256 at
    22.05 kHz, 256 / 93 at 8 kHz), ``n_mels=None`` is 128 bands or fewer
    when the STFT is too short for 128 non-empty ones, and ``fmax=None`` is
    Nyquist. A :class:`RenderConfig` resolves them at its
    ``audio.sample_rate`` (:meth:`resolve`), so a cache's ``config.json``
    holds samples.

    Parameters
    ----------
    feature : {'mel', 'mfcc'}
        Log-mel spectrogram (dB) or MFCC.
    n_fft, hop_length, win_length : int, str or None
        STFT parameters in samples, or durations such as ``'16ms'``
        (converted at the sample rate with :func:`ms_to_samples`; see also
        :meth:`from_ms`); ``None``: the defaults above (``win_length=None``
        is ``n_fft``).
    n_mels : int or None
        Mel bands (also the mel bands under the MFCC); ``None``: up to 128
        (:func:`mel_bands_that_fit`).
    fmin, fmax : float
        Frequency range of the mel filterbank; ``fmax=None`` is Nyquist.
    power : float
        Exponent of the magnitude spectrogram (2: power, 1: magnitude).
    top_db : float
        Dynamic range kept below the file's loudest bin.
    n_mfcc : int
        MFCC coefficients (feature='mfcc').
    image_size : (int, int)
        Output (height, width) in pixels; the seed used 512x512.
    channels : {'replicate', 'delta'}
        ``'replicate'`` copies the image into 3 channels (what ImageNet
        backbones expect); ``'delta'`` stacks the feature, its delta and its
        delta-delta.

    Examples
    --------
    >>> cfg = SpectrogramConfig().resolve(8000)
    >>> cfg.n_fft, cfg.hop_length, cfg.n_mels
    (256, 93, 128)
    >>> SpectrogramConfig(n_fft="32ms", hop_length=64).resolve(8000).n_fft
    256
    """

    feature: Literal["mel", "mfcc"] = "mel"
    n_fft: Union[int, str, None] = None
    hop_length: Union[int, str, None] = None
    win_length: Union[int, str, None] = None
    n_mels: Optional[int] = None
    fmin: float = 0.0
    fmax: Optional[float] = None
    power: float = 2.0
    top_db: float = 80.0
    n_mfcc: int = 20
    image_size: Tuple[int, int] = (512, 512)
    channels: Literal["replicate", "delta"] = "replicate"

    def __post_init__(self) -> None:
        o = "SpectrogramConfig"
        check_choice(self.feature, "feature", ("mel", "mfcc"), owner=o)
        for name in ("n_fft", "hop_length", "win_length"):
            object.__setattr__(self, name, _stft_length(getattr(self, name), name, None))
        check_int(self.n_mels, "n_mels", owner=o, low=1, allow_none=True)
        check_int(self.n_mfcc, "n_mfcc", owner=o, low=1)
        if isinstance(self.win_length, int) and isinstance(self.n_fft, int) and self.win_length > self.n_fft:
            fail(o, "win_length", f"None or an int in [1, n_fft={self.n_fft}]", self.win_length)
        check_float(self.fmin, "fmin", owner=o, low=0.0, fix="It is in Hz.")
        check_float(self.fmax, "fmax", owner=o, low=self.fmin, include_low=False, allow_none=True,
                    fix=f"It is in Hz, above fmin={self.fmin}; None is Nyquist.")
        check_positive(self.power, "power", owner=o)
        check_positive(self.top_db, "top_db", owner=o)
        if self.feature == "mfcc" and self.n_mels is not None and self.n_mfcc > self.n_mels:
            fail(o, "n_mfcc", f"<= n_mels={self.n_mels}", self.n_mfcc, "Raise n_mels or lower n_mfcc.")
        size = self.image_size
        if isinstance(size, int):
            size = (size, size)
        size = tuple(size)
        if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 8 for s in size):
            fail(o, "image_size", "an int or (height, width) of ints >= 8", self.image_size)
        object.__setattr__(self, "image_size", size)
        check_choice(self.channels, "channels", ("replicate", "delta"), owner=o)

    @property
    def resolved(self) -> bool:
        """True when the STFT lengths and ``n_mels`` are all in samples / bands (no default left to choose)."""
        return all(isinstance(getattr(self, n), int) for n in ("n_fft", "hop_length", "n_mels")) and (
            self.win_length is None or isinstance(self.win_length, int))

    def resolve(self, sample_rate: int) -> "SpectrogramConfig":
        """This config with its defaults and durations turned into samples at ``sample_rate`` (Hz).

        Explicit sample counts are kept as they are; a config that is
        already :attr:`resolved` is returned unchanged.

        Examples
        --------
        >>> c = SpectrogramConfig(n_fft="16ms", hop_length="8ms", n_mels=64).resolve(44100)
        >>> c.n_fft, c.hop_length, c.win_length
        (706, 353, None)
        """
        if self.resolved:
            return self
        check_int(sample_rate, "sample_rate", owner="SpectrogramConfig.resolve", low=1)
        n_fft = _stft_length(self.n_fft, "n_fft", sample_rate) or default_n_fft(sample_rate)
        hop = _stft_length(self.hop_length, "hop_length", sample_rate) or default_hop_length(sample_rate)
        win = _stft_length(self.win_length, "win_length", sample_rate)
        n_mels = self.n_mels
        if n_mels is None:
            n_mels = mel_bands_that_fit(sample_rate, n_fft, fmin=self.fmin, fmax=self.fmax)
            if n_mels == 0:
                fail("SpectrogramConfig", "n_mels", "a number of mel bands that each hold an STFT bin", None,
                     f"No band between fmin={self.fmin} and fmax={self.fmax} Hz holds one of the bins "
                     f"{sample_rate / n_fft:.1f} Hz apart (n_fft={n_fft} at {sample_rate} Hz): raise n_fft or widen "
                     "the frequency range.")
        return self.replace(n_fft=n_fft, hop_length=hop, win_length=win, n_mels=n_mels)

    @classmethod
    def from_ms(cls, sample_rate: int, *, n_fft_ms: float, hop_ms: float, **kwargs: Any) -> "SpectrogramConfig":
        """Build a config with the STFT given in milliseconds.

        Examples
        --------
        The voice-pathology settings (44.1 kHz, n_fft 16 ms, hop 8 ms):

        >>> cfg = SpectrogramConfig.from_ms(44100, n_fft_ms=16, hop_ms=8, feature="mfcc", n_mfcc=13)
        >>> cfg.n_fft, cfg.hop_length
        (706, 353)
        """
        return cls(n_fft=ms_to_samples(n_fft_ms, sample_rate), hop_length=ms_to_samples(hop_ms, sample_rate), **kwargs)


@dataclass(frozen=True)
class RenderConfig(ConfigBase):
    """Everything that decides the pixels of a cached image.

    Its :meth:`hash` keys the image cache: a changed config never reuses stale
    images.
    """

    audio: AudioConfig = field(default_factory=AudioConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    spectrogram: SpectrogramConfig = field(default_factory=SpectrogramConfig)

    def __post_init__(self) -> None:
        for name, cls in (("audio", AudioConfig), ("segment", SegmentConfig), ("spectrogram", SpectrogramConfig)):
            v = getattr(self, name)
            if isinstance(v, Mapping):
                object.__setattr__(self, name, cls.from_dict(v))
            elif not isinstance(v, cls):
                fail("RenderConfig", name, f"a {cls.__name__}", v)
        # the spectrogram's rate-dependent defaults, in samples at this rate; replace() re-resolves what was asked
        object.__setattr__(self, "_requested_spectrogram", self.spectrogram)
        object.__setattr__(self, "spectrogram", self.spectrogram.resolve(self.audio.sample_rate))
        a, s = self.audio, self.segment
        if a.duration is not None and a.pad_mode == "none" and a.duration < s.seconds:
            fail("RenderConfig", "audio.duration", f">= the window length segment.seconds={s.seconds}",
                 a.duration, "Shorten the window or allow padding (pad_mode='tile').")

    def replace(self, **changes: Any) -> "RenderConfig":
        """A copy with some sections changed; the spectrogram's defaults are resolved again at the new rate."""
        changes.setdefault("spectrogram", getattr(self, "_requested_spectrogram", self.spectrogram))
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RenderConfig":
        data = dict(data)
        data.pop("hash", None)
        data.pop("version", None)
        return super().from_dict(data)  # type: ignore[return-value]

    @property
    def min_samples(self) -> int:
        """Files are padded up to this many samples (at least one window)."""
        sec = self.audio.min_seconds if self.audio.min_seconds is not None else self.segment.seconds
        sec = max(sec, self.segment.seconds) if self.audio.pad_mode != "none" else sec
        return int(round(sec * self.audio.sample_rate))

    def hash(self) -> str:
        """A short stable digest of the config and the cache format version."""
        payload = json.dumps({"version": CACHE_FORMAT_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

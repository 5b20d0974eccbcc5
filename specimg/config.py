"""Configuration as data: one frozen dataclass per stage.

Each config validates itself on construction (raising
:class:`~specimg.exceptions.ParameterError` that names the option and the fix),
round-trips through :meth:`to_dict` / :meth:`from_dict`, and is written next to
every cache and run so that any result can be re-run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional, Tuple, TypeVar, Union

from ._validation import check_choice, check_float, check_int, check_positive, fail
from .exceptions import ParameterError

__all__ = [
    "AudioConfig",
    "SegmentConfig",
    "SpectrogramConfig",
    "RenderConfig",
    "ms_to_samples",
    "default_n_fft",
    "default_hop_length",
    "mel_bands_that_fit",
]

#: Bumped whenever the image cache layout or the rendering maths changes, so
#: that a cache written by an older specimg is never silently reused.
CACHE_FORMAT_VERSION = 1

T = TypeVar("T", bound="_Config")


def _fail(owner: str, name: str, rule: str, value: Any, fix: str = "") -> None:
    fail(owner, name, rule, value, fix)


def _positive(owner: str, name: str, value: Any, *, allow_none: bool = False) -> None:
    check_positive(value, name, owner=owner, allow_none=allow_none)


def _choice(owner: str, name: str, value: Any, choices: Tuple[str, ...]) -> None:
    check_choice(value, name, choices, owner=owner)


#: The deprecated ``frontend=`` spelling of ``images=`` (accepted for one release, with a DeprecationWarning).
LEGACY_FRONTEND = {"cpu": "cached", "gpu": "on-the-fly"}


def images_kind(value: Any, *, owner: str, name: str = "images", legacy: Any = None, stacklevel: int = 3) -> str:
    """Resolve ``images=`` (``'cached'`` / ``'on-the-fly'``) and the deprecated ``frontend=`` (``'cpu'`` / ``'gpu'``).

    Examples
    --------
    >>> images_kind("on-the-fly", owner="TrainConfig")
    'on-the-fly'
    """
    import warnings

    if legacy is not None:
        if legacy not in LEGACY_FRONTEND:
            fail(owner, "frontend", "'cpu' or 'gpu' (deprecated: use images='cached' or 'on-the-fly')", legacy)
        warnings.warn(f"{owner}: frontend={legacy!r} is deprecated and will be removed in the next release; use "
                      f"images={LEGACY_FRONTEND[legacy]!r} (--images {LEGACY_FRONTEND[legacy]}).",
                      DeprecationWarning, stacklevel=stacklevel)
        return LEGACY_FRONTEND[legacy]
    if value in LEGACY_FRONTEND:  # the old values under the new name
        return images_kind(None, owner=owner, legacy=value, stacklevel=stacklevel + 1)
    if value not in ("cached", "on-the-fly"):
        fail(owner, name, "'cached' (images rendered once into a cache) or 'on-the-fly' (made on the device from "
             "the audio of each batch)", value)
    return str(value)


def ms_to_samples(ms: float, sample_rate: int) -> int:
    """Convert a duration in milliseconds to a whole number of samples.

    Examples
    --------
    >>> ms_to_samples(16, 44100)  # the voice-pathology n_fft
    706
    """
    return int(round(ms * sample_rate / 1000.0))


class _Config:
    """Shared to_dict / from_dict / hashing for the frozen config dataclasses."""

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ParameterError(
                f"{cls.__name__} got unknown option(s) {unknown}; valid options are {sorted(names)}."
            )
        return cls(**dict(data))

    def replace(self: T, **changes: Any) -> T:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class AudioConfig(_Config):
    """How audio files are read.

    Parameters
    ----------
    sample_rate : int
        Every file is resampled to this rate (librosa's soxr resampler).
    offset : float
        Seconds skipped at the start of each file.
    duration : float or None
        Keep only this many seconds after ``offset`` (``1.0`` for the
        voice-pathology recipe's "first 1 s"); ``None`` keeps all.
    min_seconds : float or None
        Files shorter than this are extended to it by ``pad_mode``. ``None``
        means "one window" (:attr:`SegmentConfig.seconds`); the music-genre
        seed used 120 s.
    pad_mode : {'tile', 'zero', 'none'}
        ``'tile'`` loops the file (concatenated with itself, the seed's
        choice), ``'zero'`` appends silence, ``'none'`` leaves short files
        short (a file shorter than one window is then an error).
    allow_truncated : bool
        Keep what a truncated file holds (its header announces more audio
        than is there: an interrupted download or export), with a warning
        naming it, instead of listing it as an error
        (:func:`~specimg.audio.load_audio`, ``--allow-truncated``).
    """

    sample_rate: int = 22050
    offset: float = 0.0
    duration: Optional[float] = None
    min_seconds: Optional[float] = None
    pad_mode: Literal["tile", "zero", "none"] = "tile"
    allow_truncated: bool = False

    def __post_init__(self) -> None:
        o = "AudioConfig"
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int) or self.sample_rate < 1000:
            _fail(o, "sample_rate", "an int >= 1000 (Hz)", self.sample_rate)
        check_float(self.offset, "offset", owner=o, low=0.0)
        _positive(o, "duration", self.duration, allow_none=True)
        _positive(o, "min_seconds", self.min_seconds, allow_none=True)
        _choice(o, "pad_mode", self.pad_mode, ("tile", "zero", "none"))
        if not isinstance(self.allow_truncated, bool):
            _fail(o, "allow_truncated", "True or False", self.allow_truncated)


@dataclass(frozen=True)
class SegmentConfig(_Config):
    """How a file is cut into windows.

    Parameters
    ----------
    seconds : float
        Window length in seconds (the seed: 20 s).
    hop : float
        Default hop between window starts in seconds (the seed: 10 s).
    class_hop : dict[str, float]
        Per-label hop used for labelled (training) files; the seed used 5 s
        for rare classes to oversample them. Keys are labels as strings.
    last : {'align_end', 'drop'}
        Policy for the tail that a whole number of hops does not reach:
        ``'align_end'`` (default) adds one last window that ends exactly at
        the file's end, so the end of every file is seen; ``'drop'`` ignores
        the tail.
    """

    seconds: float = 20.0
    hop: float = 10.0
    class_hop: Mapping[str, float] = field(default_factory=dict)
    last: Literal["align_end", "drop"] = "align_end"

    def __post_init__(self) -> None:
        o = "SegmentConfig"
        _positive(o, "seconds", self.seconds)
        _positive(o, "hop", self.hop)
        if not isinstance(self.class_hop, Mapping):
            _fail(o, "class_hop", "a mapping label -> hop seconds", self.class_hop)
        clean = {}
        for label, hop in self.class_hop.items():
            if isinstance(hop, bool) or not isinstance(hop, (int, float)) or not math.isfinite(hop) or hop <= 0:
                _fail(o, f"class_hop[{label!r}]", "a finite number > 0 (seconds)", hop,
                      "Write it as LABEL=SECONDS, e.g. --class-hop blues=5.")
            clean[str(label)] = float(hop)
        object.__setattr__(self, "class_hop", dict(sorted(clean.items())))
        _choice(o, "last", self.last, ("align_end", "drop"))

    def hop_for(self, label: Optional[str]) -> float:
        """The hop used for a file with this label (``None``: unlabelled)."""
        if label is None:
            return float(self.hop)
        return float(self.class_hop.get(str(label), self.hop))


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
    f_sp, min_log_hz = 200.0 / 3, 1000.0  # librosa's Slaney mel scale (htk=False)
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0

    def to_mel(f: float) -> float:
        return f / f_sp if f < min_log_hz else min_log_mel + math.log(f / min_log_hz) / logstep

    def to_hz(m: float) -> float:
        return f_sp * m if m < min_log_mel else min_log_hz * math.exp(logstep * (m - min_log_mel))

    top = sample_rate / 2.0 if fmax is None else float(fmax)
    lo_mel, hi_mel = to_mel(float(fmin)), to_mel(top)
    bin_hz = sample_rate / float(n_fft)
    n_bins = 1 + n_fft // 2
    for n in range(int(most), 0, -1):
        points = [to_hz(lo_mel + (hi_mel - lo_mel) * k / (n + 1)) for k in range(n + 2)]
        # the first bin above points[i] must lie below points[i + 2]
        if all(min(math.floor(points[i] / bin_hz) + 1, n_bins) * bin_hz < points[i + 2] for i in range(n)):
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
            _fail(o, name, rule, value)
        if sample_rate is None:
            return value
        samples = ms_to_samples(ms, sample_rate)
        if samples < 1:
            _fail(o, name, rule, value, f"At {sample_rate} Hz it is {samples} samples; give a longer duration.")
        return samples
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        _fail(o, name, rule, value)
    return int(value)


@dataclass(frozen=True)
class SpectrogramConfig(_Config):
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
        _choice(o, "feature", self.feature, ("mel", "mfcc"))
        for name in ("n_fft", "hop_length", "win_length"):
            object.__setattr__(self, name, _stft_length(getattr(self, name), name, None))
        check_int(self.n_mels, "n_mels", owner=o, low=1, allow_none=True)
        check_int(self.n_mfcc, "n_mfcc", owner=o, low=1)
        if isinstance(self.win_length, int) and isinstance(self.n_fft, int) and self.win_length > self.n_fft:
            _fail(o, "win_length", f"None or an int in [1, n_fft={self.n_fft}]", self.win_length)
        check_float(self.fmin, "fmin", owner=o, low=0.0, fix="It is in Hz.")
        check_float(self.fmax, "fmax", owner=o, low=self.fmin, include_low=False, allow_none=True,
                    fix=f"It is in Hz, above fmin={self.fmin}; None is Nyquist.")
        _positive(o, "power", self.power)
        _positive(o, "top_db", self.top_db)
        if self.feature == "mfcc" and self.n_mels is not None and self.n_mfcc > self.n_mels:
            _fail(o, "n_mfcc", f"<= n_mels={self.n_mels}", self.n_mfcc, "Raise n_mels or lower n_mfcc.")
        size = self.image_size
        if isinstance(size, int):
            size = (size, size)
        size = tuple(size)
        if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 8 for s in size):
            _fail(o, "image_size", "an int or (height, width) of ints >= 8", self.image_size)
        object.__setattr__(self, "image_size", size)
        _choice(o, "channels", self.channels, ("replicate", "delta"))

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
                _fail("SpectrogramConfig", "n_mels", "a number of mel bands that each hold an STFT bin", None,
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
class RenderConfig(_Config):
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
                _fail("RenderConfig", name, f"a {cls.__name__}", v)
        # the spectrogram's rate-dependent defaults, in samples at this rate; replace() re-resolves what was asked
        object.__setattr__(self, "_requested_spectrogram", self.spectrogram)
        object.__setattr__(self, "spectrogram", self.spectrogram.resolve(self.audio.sample_rate))
        a, s = self.audio, self.segment
        if a.duration is not None and a.pad_mode == "none" and a.duration < s.seconds:
            _fail("RenderConfig", "audio.duration", f">= the window length segment.seconds={s.seconds}",
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


def _max_epochs() -> Optional[int]:
    """The ``SPECIMG_MAX_EPOCHS`` cap on :attr:`TrainConfig.epochs`, or None when unset."""
    import os

    text = os.environ.get("SPECIMG_MAX_EPOCHS", "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ParameterError(f"The SPECIMG_MAX_EPOCHS environment variable must be an int >= 1 (the most epochs "
                             f"any TrainConfig trains). Got {text!r}. Unset it to train the configured epochs.")
    return int(text)


def _int_in(owner: str, name: str, value: Any, lo: int, hi: Optional[int] = None, *, allow_none: bool = False,
            fix: str = "") -> None:
    check_int(value, name, owner=owner, low=lo, high=hi, allow_none=allow_none, fix=fix)


def _float_in(owner: str, name: str, value: Any, lo: float, hi: float, *, hi_open: bool = True,
              allow_none: bool = False, fix: str = "") -> None:
    check_float(value, name, owner=owner, low=lo, high=None if math.isinf(hi) else hi, include_high=not hi_open,
                allow_none=allow_none, fix=fix)


@dataclass(frozen=True)
class TrainConfig(_Config):
    """How a backbone is fine-tuned on the cached images (one run of k folds).

    The defaults are the voice-pathology recipe: SGD (lr 0.01, momentum 0.9,
    weight decay 1e-4), one epoch of linear warm-up then a cosine decay,
    cross-entropy weighted by the inverse class frequency, horizontal flip
    with p=0.5 and the same flip as test-time augmentation.

    Parameters
    ----------
    backbone : str
        A timm model name or a name registered with
        :func:`specimg.models.register_backbone`.
    weights : str
        Where the pretrained weights come from: ``'auto'``, ``'hub'``,
        ``'offline'``, ``'none'`` (random init) or the path of a checkpoint
        (see :func:`specimg.models.create_backbone`).
    backbone_kwargs : dict
        Extra keyword arguments for the model constructor (timm kwargs such
        as ``drop_path_rate``); must be JSON-serialisable.
    drop_rate : float or None
        Dropout before the classifier; ``None`` keeps the backbone's default.
    epochs : int
        Maximum number of epochs per fold. The ``SPECIMG_MAX_EPOCHS``
        environment variable, when set, caps it (and ``warmup_epochs``):
        smoke runs, such as the documentation's commands in the test suite.
    batch_size : int
        Windows per training batch.
    lr : float
        Peak learning rate (reached at the end of the warm-up).
    optimizer : {'sgd', 'adamw'}
        SGD with (non-Nesterov) momentum, or AdamW.
    momentum : float
        SGD momentum (ignored by AdamW).
    weight_decay : float
        Weight decay (not applied to biases and normalisation weights).
    warmup_epochs : float
        Linear warm-up length in epochs, stepped per batch; ``0`` disables it.
    schedule : {'cosine', 'step'}
        After the warm-up: a cosine decay to 0 over the remaining steps, or a
        step decay multiplying the rate by ``step_gamma`` every
        ``step_size`` epochs.
    step_size : int or None
        Epochs between two decays of the step schedule; ``None`` is a third
        of ``epochs`` (at least 1).
    step_gamma : float
        Decay factor of the step schedule.
    class_weights : {'inverse', 'none'}
        ``'inverse'`` weights the cross-entropy of each class by
        ``n_windows / (n_classes * n_windows_of_class)`` over the training
        windows of the fold; ``'none'`` is the plain loss.
    label_smoothing : float
        Label smoothing of the cross-entropy, in [0, 1).
    metric : {'accuracy', 'uar'}
        File-level metric that picks the best epoch: accuracy or
        unweighted average recall (balanced accuracy), computed on the
        validation fold after averaging window probabilities per file (with
        ``tta``). Ties go to the epoch with the lower validation loss.
    hflip : float
        Probability of a horizontal (time) flip of a training image.
    time_mask, freq_mask : float
        SpecAugment-style masking: the largest width of one full-height
        (time) or full-width (frequency) stripe, as a fraction of the image
        width or height; ``0`` disables it. Stripes are set to 0 (silence).
    freq_stretch, time_stretch : float
        Random rescaling of the image along frequency / time by up to this
        fraction (e.g. ``0.15`` draws a factor in [0.85, 1.15]), anchored at
        the lowest frequency: an image-space stand-in for vocal-tract-length
        and tempo perturbation, which helps models generalise to unseen
        speakers. ``0`` disables it.
    n_masks : int
        Up to this many stripes of each kind are drawn per image (when the
        masking fires, with probability 0.5).
    mixup : float
        Mixup Beta(alpha, alpha) parameter applied to training batches;
        ``0`` disables mixup.
    image_size : int, (int, int) or None
        (height, width) the backbone sees. ``None`` uses the cached images
        as they are (the render stage already chose their size), except for
        backbones that need a fixed input size (timm ``fixed_input_size``,
        e.g. ViTs), which get their default size. Images of another size are
        resized on the fly.
    n_splits : int
        Number of cross-validation folds.
    group_column : str or None
        Column of the input table whose values must never be split across
        folds (a speaker, a patient); ``None`` groups by source file only.
    patience : int or None
        Early stopping: stop a fold after this many epochs without a better
        validation metric; ``None`` disables it.
    select_epoch : {'best', 'last', 'inner'}
        Which epoch's weights each fold keeps: they predict the held-out
        fold (the out-of-fold tables that the scores and the stackers read)
        and are the fold's model for prediction. ``'best'`` is the epoch
        that scores best on the held-out fold itself, so the out-of-fold
        figures are optimistic (that fold chose it); ``'last'`` the last
        epoch (validation still logged, nothing chosen); ``'inner'`` the best
        epoch on an inner split of the training folds (one group-wise fold of
        the fold's training files is held back to choose it, and the model
        trains on the rest; the held-out fold is only predicted).
    validate_last : int or None
        Validate only the last this many epochs and keep the best of them
        (``patience`` counts validated epochs only); ``None`` validates every
        epoch. ``1`` keeps the last epoch, chosen without
        looking at the validation fold, and saves the time of the other
        validation passes.
    ema : float or None
        Keep an exponential moving average of the weights (timm
        ``ModelEmaV3``, buffers included) with this decay, warmed up as
        ``min(ema, 1 - (1 + step) ** -0.75)`` so that short runs average
        over fewer steps; validation, ``best.pt`` and the model that ``fit``
        returns use the averaged weights. ``None`` disables it; ``0.998`` is
        about the last 500 steps.
    freeze : tuple of str, str or None
        Modules of the backbone kept at their pretrained weights, named as
        in ``model.named_modules()`` and comma-separated on the command line,
        e.g. ``("conv_stem", "bn1", "blocks.0")``. Their BatchNorm
        statistics stay fixed as well, and the backward pass stops before
        them. ``None`` trains every layer.
    grad_clip : float or None
        Clip the global gradient norm to this value; ``None`` disables it.
    amp : {'auto', 'bf16', 'fp16', 'off'}
        Mixed precision on CUDA (``'auto'``: bf16 where supported, else
        fp16). Always off on the CPU.
    channels_last : bool
        Run the model and its batches in the channels-last (NHWC) memory
        format, on CUDA and on the CPU alike: on one CPU thread
        ``tf_efficientnet_lite0`` trains 1.7-2.4x faster with it (depthwise
        convolutions), ``resnet18`` at the same speed. Set it to ``False``
        for a custom module that calls ``.view()`` on its feature maps.
    device : str
        ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'`` or
        ``'cuda:N'``.
    num_workers : int or None
        DataLoader worker processes; ``None`` picks 0 on the CPU (the
        model uses every core) and ``min(8, n_cpus - 1)`` on CUDA.
    seed : int
        Seeds the folds, the initialisation, the shuffling and the
        augmentation; runs on the CPU are reproducible bit for bit.
    tta : {'flip', 'none'}
        Test-time augmentation of the validation and out-of-fold
        predictions: ``'flip'`` averages the probabilities of a window and of
        its horizontal flip.
    images : {'cached', 'on-the-fly'}
        How audio becomes images. ``'cached'``: rendered once on the CPU
        into an image cache (:func:`~specimg.spectrogram.render_dataset`)
        that every epoch reads. ``'on-the-fly'``: no image files; each batch
        of waveform windows is turned into images on the training device by
        :class:`~specimg.spectrogram.SpectrogramFrontend` (the same images
        to +-1 pixel level), then augmented there. On a machine without a
        GPU the same front end runs on the CPU.
    multi_label : bool or None
        The task. ``None``: multi-label when the input holds tag sets (a
        ``labels`` column, multi-hot class columns or an annotation table;
        see :func:`~specimg.audio.read_table`), else single-label.
        ``True`` trains a one-label-per-file table as multi-label too (one
        sigmoid per class). The run stores the task it resolved
        (``config.json``). Multi-label runs train with a binary
        cross-entropy per class, predict sigmoid scores (rows do not sum to
        1), pool windows per class (``multi_label_pooling``), pick the best
        epoch by ``multi_label_metric`` and store per-class thresholds
        fitted on the out-of-fold scores; ``metric``, ``class_weights`` and
        ``label_smoothing`` are single-label options.
    multi_label_loss : {'bce', 'focal', 'asymmetric'}
        Multi-label loss: binary cross-entropy with logits; its focal
        variant (each term scaled by ``(1 - p_t) ** focal_gamma``, Lin et
        al. 2017); or the asymmetric loss of Ridnik et al. 2021 (negatives
        focused by ``focal_gamma``, their probabilities shifted down by
        0.05, positives plain), for many negatives per positive.
    focal_gamma : float
        The focusing exponent of the focal and asymmetric losses (Ridnik et
        al. use 4 for the asymmetric loss).
    pos_weight : {'none', 'balanced'}
        Weight of the positive term of each class's loss: ``'balanced'``
        is ``n_negative / n_positive`` over the fold's training windows
        (clipped to [1, 100]), ``'none'`` is 1.
    multi_label_pooling : {'max', 'mean'}
        How a file's window scores pool into its scores, per class, with no
        renormalisation: the maximum (a tag present anywhere in the file) or
        the mean.
    multi_label_metric : {'macro_ap', 'macro_roc_auc'}
        What picks the best epoch of a multi-label run: macro average
        precision (scikit-learn) or macro ROC-AUC over the classes present
        in the validation fold, on files (pooled) for tag tables and on
        windows for annotated recordings.
    mixup_targets : {'union', 'mix'}
        Multi-label mixup targets: ``'union'`` gives a mixed image the tags
        of both images (both sounds are in it), ``'mix'`` the
        ``lam``-weighted mean of their targets. Single-label mixup always
        mixes.
    event_min_seconds : float
        An annotated event labels a window that it overlaps by at least this
        many seconds...
    event_min_fraction : float or None
        ... or by at least this fraction of the event's duration (a short
        call wholly inside a window counts); ``None``: the seconds rule
        alone.
    negative_ratio : float or None
        Keep at most this many windows without any tag per window with one,
        in each fold's training split (drawn with ``seed``); ``None`` keeps
        every negative. Validation keeps all.
    frontend : {'cpu', 'gpu'} or None
        Deprecated spelling of ``images`` (``'cpu'`` is ``'cached'``,
        ``'gpu'`` is ``'on-the-fly'``), accepted with a
        :class:`DeprecationWarning` for this release.

    Examples
    --------
    >>> cfg = TrainConfig(backbone="resnet18", epochs=3, optimizer="adamw", lr=1e-3)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    backbone: str = "tf_efficientnet_lite0"
    weights: str = "auto"
    backbone_kwargs: Mapping[str, Any] = field(default_factory=dict)
    drop_rate: Optional[float] = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.01
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    schedule: Literal["cosine", "step"] = "cosine"
    step_size: Optional[int] = None
    step_gamma: float = 0.1
    class_weights: Literal["inverse", "none"] = "inverse"
    label_smoothing: float = 0.0
    metric: Literal["accuracy", "uar"] = "accuracy"
    hflip: float = 0.5
    time_mask: float = 0.0
    freq_mask: float = 0.0
    n_masks: int = 2
    freq_stretch: float = 0.0
    time_stretch: float = 0.0
    mixup: float = 0.0
    image_size: Optional[Tuple[int, int]] = None
    n_splits: int = 5
    group_column: Optional[str] = None
    patience: Optional[int] = None
    select_epoch: Literal["best", "last", "inner"] = "best"
    validate_last: Optional[int] = None
    ema: Optional[float] = None
    freeze: Union[str, Tuple[str, ...], None] = None
    grad_clip: Optional[float] = None
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True
    device: str = "auto"
    num_workers: Optional[int] = None
    seed: int = 0
    tta: Literal["flip", "none"] = "flip"
    images: Literal["cached", "on-the-fly"] = "cached"
    multi_label: Optional[bool] = None
    multi_label_loss: Literal["bce", "focal", "asymmetric"] = "bce"
    focal_gamma: float = 2.0
    pos_weight: Literal["none", "balanced"] = "none"
    multi_label_pooling: Literal["max", "mean"] = "max"
    multi_label_metric: Literal["macro_ap", "macro_roc_auc"] = "macro_ap"
    mixup_targets: Literal["union", "mix"] = "union"
    event_min_seconds: float = 0.25
    event_min_fraction: Optional[float] = 0.5
    negative_ratio: Optional[float] = None
    frontend: Optional[str] = None

    #: Fields that change how fast a run goes but not its result; a run may be
    #: resumed after changing them.
    RUNTIME_FIELDS = ("device", "num_workers")

    def __post_init__(self) -> None:
        o = "TrainConfig"
        if not isinstance(self.backbone, str) or not self.backbone.strip():
            _fail(o, "backbone", "a timm model name or a registered backbone name", self.backbone,
                  "For example backbone='tf_efficientnet_lite0' or 'resnet18'.")
        if not isinstance(self.weights, str) or not self.weights.strip():
            _fail(o, "weights", "'auto', 'hub', 'offline', 'none' or the path of a checkpoint", self.weights)
        if not isinstance(self.backbone_kwargs, Mapping):
            _fail(o, "backbone_kwargs", "a dict of keyword arguments for the model", self.backbone_kwargs)
        try:
            kwargs = json.loads(json.dumps(dict(self.backbone_kwargs), sort_keys=True))
        except (TypeError, ValueError):
            _fail(o, "backbone_kwargs", "JSON-serialisable (numbers, strings, lists, dicts)", self.backbone_kwargs,
                  "Register a backbone factory with register_backbone for anything richer.")
        object.__setattr__(self, "backbone_kwargs", kwargs)
        _float_in(o, "drop_rate", self.drop_rate, 0.0, 1.0, allow_none=True)
        _int_in(o, "epochs", self.epochs, 1)
        cap = _max_epochs()
        if cap is not None and self.epochs > cap:  # SPECIMG_MAX_EPOCHS: smoke runs (the docs' commands in CI)
            object.__setattr__(self, "epochs", cap)
            object.__setattr__(self, "warmup_epochs", min(self.warmup_epochs, cap))
        _int_in(o, "batch_size", self.batch_size, 1)
        _positive(o, "lr", self.lr)
        _choice(o, "optimizer", self.optimizer, ("sgd", "adamw"))
        _float_in(o, "momentum", self.momentum, 0.0, 1.0)
        _float_in(o, "weight_decay", self.weight_decay, 0.0, math.inf)
        _float_in(o, "warmup_epochs", self.warmup_epochs, 0.0, self.epochs, hi_open=False,
                  fix=f"The warm-up must fit in the {self.epochs} epoch(s); lower warmup_epochs or raise epochs.")
        _choice(o, "schedule", self.schedule, ("cosine", "step"))
        _int_in(o, "step_size", self.step_size, 1, allow_none=True)
        _float_in(o, "step_gamma", self.step_gamma, 0.0, 1.0, hi_open=False)
        _choice(o, "class_weights", self.class_weights, ("inverse", "none"))
        _float_in(o, "label_smoothing", self.label_smoothing, 0.0, 1.0)
        _choice(o, "metric", self.metric, ("accuracy", "uar"))
        _float_in(o, "hflip", self.hflip, 0.0, 1.0, hi_open=False)
        _float_in(o, "time_mask", self.time_mask, 0.0, 1.0, fix="It is the largest stripe width as a fraction of "
                  "the image width, e.g. 0.1.")
        _float_in(o, "freq_mask", self.freq_mask, 0.0, 1.0, fix="It is the largest stripe height as a fraction of "
                  "the image height, e.g. 0.1.")
        _int_in(o, "n_masks", self.n_masks, 1)
        _float_in(o, "freq_stretch", self.freq_stretch, 0.0, 0.5)
        _float_in(o, "time_stretch", self.time_stretch, 0.0, 0.5)
        _float_in(o, "mixup", self.mixup, 0.0, math.inf, fix="It is the Beta(alpha, alpha) parameter; 0 turns "
                  "mixup off, 0.2-0.4 is usual.")
        size = self.image_size
        if size is not None:
            if isinstance(size, int) and not isinstance(size, bool):
                size = (size, size)
            try:
                size = tuple(size)
            except TypeError:
                size = (None,)
            if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 8 for s in size):
                _fail(o, "image_size", "None, an int or (height, width) of ints >= 8", self.image_size)
            object.__setattr__(self, "image_size", size)
        _int_in(o, "n_splits", self.n_splits, 2, fix="Cross-validation needs at least 2 folds.")
        if self.group_column is not None and (not isinstance(self.group_column, str) or not self.group_column):
            _fail(o, "group_column", "None or the name of a column of the input table", self.group_column)
        _int_in(o, "patience", self.patience, 1, allow_none=True, fix="Use None to turn early stopping off.")
        _choice(o, "select_epoch", self.select_epoch, ("best", "last", "inner"))
        if self.select_epoch == "last" and self.patience is not None:
            _fail(o, "patience", "None when select_epoch='last' (early stopping needs an epoch choice)",
                  self.patience, "Use select_epoch='inner' to stop early on an inner split, or drop patience.")
        _int_in(o, "validate_last", self.validate_last, 1, allow_none=True,
                fix="Use None to validate every epoch, 1 for the last epoch only.")
        _float_in(o, "ema", self.ema, 0.0, 1.0, allow_none=True,
                  fix="It is the decay of the weight average, e.g. 0.998; None turns it off.")
        if self.freeze is not None:
            names = self.freeze.split(",") if isinstance(self.freeze, str) else self.freeze
            if (not isinstance(names, (list, tuple)) or not names
                    or not all(isinstance(n, str) and n.strip() for n in names)):
                _fail(o, "freeze", "None, or module names such as ('conv_stem', 'bn1', 'blocks.0')", self.freeze)
            object.__setattr__(self, "freeze", tuple(n.strip() for n in names))
        _positive(o, "grad_clip", self.grad_clip, allow_none=True)
        _choice(o, "amp", self.amp, ("auto", "bf16", "fp16", "off"))
        if not isinstance(self.channels_last, bool):
            _fail(o, "channels_last", "a bool", self.channels_last)
        dev = self.device
        if not isinstance(dev, str) or not (dev in ("auto", "cpu", "cuda") or
                                            (dev.startswith("cuda:") and dev[5:].isdigit())):
            _fail(o, "device", "'auto', 'cpu', 'cuda' or 'cuda:N'", dev)
        _int_in(o, "num_workers", self.num_workers, 0, allow_none=True)
        _int_in(o, "seed", self.seed, 0)
        _choice(o, "tta", self.tta, ("flip", "none"))
        object.__setattr__(self, "images", images_kind(self.images, owner=o, legacy=self.frontend, stacklevel=4))
        self._check_multi_label(o)
        object.__setattr__(self, "frontend", None)

    def _check_multi_label(self, o: str) -> None:
        if self.multi_label is not None and not isinstance(self.multi_label, bool):
            _fail(o, "multi_label", "None (decided by the input), True or False", self.multi_label)
        _choice(o, "multi_label_loss", self.multi_label_loss, ("bce", "focal", "asymmetric"))
        _float_in(o, "focal_gamma", self.focal_gamma, 0.0, 10.0, hi_open=False)
        _choice(o, "pos_weight", self.pos_weight, ("none", "balanced"))
        _choice(o, "multi_label_pooling", self.multi_label_pooling, ("max", "mean"))
        _choice(o, "multi_label_metric", self.multi_label_metric, ("macro_ap", "macro_roc_auc"))
        _choice(o, "mixup_targets", self.mixup_targets, ("union", "mix"))
        _float_in(o, "event_min_seconds", self.event_min_seconds, 0.0, math.inf,
                  fix="It is the overlap in seconds that makes an event label a window; 0 counts any overlap.")
        check_float(self.event_min_fraction, "event_min_fraction", owner=o, low=0.0, high=1.0, include_low=False,
                    allow_none=True, fix="It is a fraction of the event's duration; None uses event_min_seconds alone.")
        check_float(self.negative_ratio, "negative_ratio", owner=o, low=0.0, include_low=False, allow_none=True,
                    fix="None keeps every window without a tag.")

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.pop("frontend", None)  # the deprecated spelling is resolved into ``images``
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        data = dict(data)
        legacy = data.pop("frontend", None)
        if legacy is not None and "images" not in data:  # a run folder written before ``images`` existed
            data["images"] = LEGACY_FRONTEND.get(legacy, legacy)
        return super().from_dict(data)  # type: ignore[return-value]

    def result_dict(self) -> dict:
        """:meth:`to_dict` less the fields that do not change the result and those left at their default.

        Leaving the defaults out keeps a run's fingerprint when a later
        release adds an option (at its default, the result is unchanged).
        """
        d = self.to_dict()
        defaults = TrainConfig().to_dict()
        for name in self.RUNTIME_FIELDS:
            d.pop(name, None)
        return {k: v for k, v in d.items() if k not in defaults or defaults[k] != v}


__all__ += ["TrainConfig"]

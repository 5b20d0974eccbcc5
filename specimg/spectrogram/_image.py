"""A file's spectrogram, computed once, sliced into window images."""

from __future__ import annotations

import functools
from typing import List, Optional, Tuple

import numpy as np

from ..audio import load_audio, pad_audio, segment_bounds
from ._config import RenderConfig, SpectrogramConfig
from ..exceptions import AudioError

__all__ = ["feature_matrix", "to_images", "window_planes", "render_file", "render_signal", "signal_windows"]

#: STFT frames transformed at a time: the frames, their spectrum and its power stay in the CPU cache.
_FRAMES_PER_BLOCK = 128


def feature_matrix(y: np.ndarray, *, sr: int, config: SpectrogramConfig) -> np.ndarray:
    """The whole signal's feature matrix, scaled to [0, 1].

    The mel power is :func:`mel_power`'s; against ``librosa.feature.melspectrogram`` (float64 FFT) the dB values
    agree to float32 rounding (``benchmarks/render.py --stages`` measures both).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    sr : int
    config : SpectrogramConfig
        Its rate-dependent defaults are resolved at ``sr``.

    Returns
    -------
    F : np.ndarray [shape=(n_bins, n_frames), dtype=float32]
        For ``feature='mel'``: dB relative to the file's loudest bin,
        clipped to ``top_db`` below it and mapped to [0, 1], so the same sound
        always gets the same pixel value within a file. For ``'mfcc'``:
        the raw coefficients (scaled per window later, as MFCCs have no fixed
        range). Row 0 is the lowest frequency / coefficient.
    """
    config = config.resolve(sr)
    mel = mel_power(y, sr=sr, config=config)  # (n_mels, n_frames), power 2
    db = _power_to_db(mel, top_db=config.top_db)
    if config.feature == "mfcc":  # librosa.feature.mfcc(S=db, n_mfcc=...): the orthonormal DCT-II over the bands
        import scipy.fft

        return scipy.fft.dct(db, axis=0, type=2, norm="ortho")[: config.n_mfcc].astype(np.float32)
    return ((db + config.top_db) / config.top_db).astype(np.float32)


# The window, the mel filterbank and the dB scale below are librosa's (``filters.get_window("hann")``,
# ``filters.mel``, ``power_to_db``), the same operations in the same precision, written out because importing
# librosa's modules costs a render process more than its work on a short input: they import scipy.signal and
# numba (about a second, ``benchmarks/render.py --whole`` prints the start-up of a one-file render).
# tests/test_spectrogram_librosa.py holds them to librosa's results.
def _power_to_db(power: np.ndarray, *, top_db: float) -> np.ndarray:
    """``librosa.power_to_db(power, ref=np.max, top_db=top_db)`` (``amin=1e-10``)."""
    db = 10.0 * np.log10(np.maximum(1e-10, power))
    db -= 10.0 * np.log10(np.maximum(1e-10, power.max()))
    return np.maximum(db, db.max() - top_db)


def _hann(n_fft: int, win_length: Optional[int]) -> np.ndarray:
    """``librosa.filters.get_window("hann", win_length or n_fft, fftbins=True)`` centred in ``n_fft`` samples."""
    n = win_length or n_fft
    w = 0.5 + 0.5 * np.cos(np.linspace(-np.pi, np.pi, n + 1)[:-1])  # scipy's periodic Hann
    left = (n_fft - n) // 2
    return np.pad(w, (left, n_fft - n - left))


def mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: Optional[float] = None) -> np.ndarray:
    """``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)``: Slaney's mel scale and
    area normalisation, float32, shape ``(n_mels, 1 + n_fft // 2)``."""
    from ._config import hz_to_mel, mel_to_hz

    fmax = float(sr) / 2 if fmax is None else fmax
    bins = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    points = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    gaps = np.diff(points)
    ramps = np.subtract.outer(points, bins)
    weights = np.maximum(0, np.minimum(-ramps[:-2] / gaps[:-1, None], ramps[2:] / gaps[1:, None])).astype(np.float32)
    return (weights * (2.0 / (points[2:] - points[:-2]))[:, None]).astype(np.float32)


def mel_power(y: np.ndarray, *, sr: int, config: SpectrogramConfig) -> np.ndarray:
    """Mel power spectrogram (power 2) of a whole signal: ``librosa.feature.melspectrogram`` in float32 (its
    ``center=True`` STFT a block of frames at a time with :func:`scipy.fft.rfft`, the mostly-zero filterbank a
    band of bins at a time).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    sr : int
    config : SpectrogramConfig
        Resolved (:meth:`~specimg.config.SpectrogramConfig.resolve`).

    Returns
    -------
    mel : np.ndarray [shape=(n_mels, 1 + n // hop_length), dtype=float32]
    """
    import scipy.fft

    n_fft, hop, p = config.n_fft, config.hop_length, float(config.power)
    window = _window(n_fft, config.win_length)  # (n_fft,) float32
    bank = _mel_bank(int(sr), n_fft, config.n_mels, float(config.fmin), config.fmax)
    half = n_fft // 2
    padded = np.zeros(len(y) + 2 * half, dtype=np.float32)  # center=True, pad_mode='constant'
    padded[half:half + len(y)] = y
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]  # (n_frames, n_fft), a view
    out = np.empty((len(frames), config.n_mels), dtype=np.float32)
    buf = np.empty((min(_FRAMES_PER_BLOCK, len(frames)), n_fft), dtype=np.float32)
    for s in range(0, len(frames), _FRAMES_PER_BLOCK):
        e = min(s + _FRAMES_PER_BLOCK, len(frames))
        x = np.multiply(frames[s:e], window, out=buf[: e - s])
        spec = scipy.fft.rfft(x, axis=-1, overwrite_x=True, workers=1)  # (b, n_fft // 2 + 1) complex64
        parts = spec.view(np.float32)  # (b, 2 * n_bins): re, im, re, im ...
        np.square(parts, out=parts)
        if p == 2.0:  # the bands' weights are doubled (one for re^2, one for im^2): |X|^2 inside the product
            _apply_bank(bank, parts, out[s:e], interleaved=True)
        else:  # |X|^p, the exponent librosa applies before the filterbank
            power = (parts[:, 0::2] + parts[:, 1::2]) ** (p / 2.0)
            _apply_bank(bank, power, out[s:e])
    if p != 2.0:
        np.power(out, 2.0 / p, out=out)  # bring any exponent to power 2 for the dB scale
    return out.T


def warm_up(config: RenderConfig) -> None:
    """Compute a short signal's features with ``config``: imports what the features need (scipy.fft)
    and fills the window and filterbank caches, once, in a process that forked workers then inherit."""
    spec = config.spectrogram
    y = np.random.default_rng(0).standard_normal(spec.n_fft * 4).astype(np.float32)
    feature_matrix(y, sr=config.audio.sample_rate, config=spec)


@functools.lru_cache(maxsize=16)
def _window(n_fft: int, win_length: Optional[int]) -> np.ndarray:
    return _hann(n_fft, win_length).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _mel_bank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: Optional[float]
              ) -> List[Tuple[int, int, int, int, np.ndarray, np.ndarray]]:
    """:func:`mel_filters` cut into groups of adjacent bands, each with the bins its filters cover.

    Returns ``[(first band, last band + 1, first bin, last bin + 1, weights (bins, bands), the same weights
    repeated per bin (2 * bins, bands))]``: the product with a power spectrum touches the non-zero part of
    the filterbank only; the repeated weights apply to squared (re, im) pairs directly.
    """
    basis = mel_filters(sr, n_fft, n_mels, fmin, fmax)  # (n_mels, n_bins)
    groups = []
    step = max(1, -(-n_mels // 8))  # 8 groups of bands
    for a in range(0, n_mels, step):
        b = min(a + step, n_mels)
        cols = np.flatnonzero(basis[a:b].any(axis=0))
        lo, hi = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 1)
        w = np.ascontiguousarray(basis[a:b, lo:hi].T)
        groups.append((a, b, lo, hi, w, np.ascontiguousarray(np.repeat(w, 2, axis=0))))
    return groups


def _apply_bank(bank: List[Tuple[int, int, int, int, np.ndarray, np.ndarray]], power: np.ndarray, out: np.ndarray,
                *, interleaved: bool = False) -> None:
    """``out[:, bands] = power[:, bins] @ weights`` for each group: (frames, bins) -> (frames, n_mels).

    ``interleaved``: ``power`` holds (re^2, im^2) pairs, (frames, 2 * bins).
    """
    for a, b, lo, hi, w, w2 in bank:
        if interleaved:
            out[:, a:b] = power[:, 2 * lo:2 * hi] @ w2
        else:
            out[:, a:b] = power[:, lo:hi] @ w


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _to_u8(plane: np.ndarray) -> np.ndarray:
    """[0, 1] float plane (low rows = low frequencies) -> uint8, low frequencies at the bottom."""
    return np.clip(np.rint(plane[::-1] * 255.0), 0, 255).astype(np.uint8)


def _resize_u8(u8: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """uint8 plane -> (H, W) with PIL's bilinear filter (unchanged when it already has that size)."""
    from PIL import Image

    h, w = size
    if u8.shape == (h, w):
        return u8
    return np.asarray(Image.fromarray(np.ascontiguousarray(u8)).resize((w, h), Image.BILINEAR))


def _resize(plane: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """[0, 1] float plane (low rows = low frequencies) → uint8 image, low frequencies at the bottom."""
    return _resize_u8(_to_u8(plane), size)


def window_planes(F: np.ndarray, frames: np.ndarray, *, config: SpectrogramConfig,
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    """The window images of a feature matrix, as stored: one plane each when the channels are copies.

    Parameters
    ----------
    F : np.ndarray [shape=(n_bins, n_frames)]
        From :func:`feature_matrix`.
    frames : np.ndarray [shape=(n_windows, 2)]
        ``[first, last)`` frame of each window.
    config : SpectrogramConfig
    out : np.ndarray, optional
        Where to write (e.g. rows of the cache's memmap), of the returned shape.

    Returns
    -------
    planes : np.ndarray [shape=(n_windows, H, W) for channels='replicate', (n_windows, H, W, 3) for 'delta', dtype=uint8]
    """
    h, w = config.image_size
    shape = (len(frames), h, w) + (() if config.channels == "replicate" else (3,))
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    elif out.shape != shape or out.dtype != np.uint8:
        raise ValueError(f"window_planes: out has shape {out.shape} {out.dtype}, not {shape} uint8")
    if config.channels == "delta":
        _delta_images(F, frames, config=config, out=out)
    elif config.feature == "mfcc":
        for i, (a, b) in enumerate(frames):
            out[i] = _resize(_minmax(F[:, a:b]), (h, w))
    else:
        u8 = _to_u8(F)  # the whole file once: windows overlap; the same pixels as per window
        for i, (a, b) in enumerate(frames):
            out[i] = _resize_u8(u8[:, a:b], (h, w))
    return out


def _delta_images(F: np.ndarray, frames: np.ndarray, *, config: SpectrogramConfig, out: np.ndarray) -> None:
    """Feature, delta and delta-delta planes of each window into ``out`` (n_windows, H, W, 3)."""
    import librosa

    size = config.image_size
    width = min(9, F.shape[1] if F.shape[1] % 2 else F.shape[1] - 1)
    if width >= 3:
        d1 = librosa.feature.delta(F, width=width, order=1, mode="nearest")
        d2 = librosa.feature.delta(F, width=width, order=2, mode="nearest")
    else:
        d1 = d2 = np.zeros_like(F)
    for i, (a, b) in enumerate(frames):
        win = F[:, a:b]
        out[i, :, :, 0] = _resize(_minmax(win) if config.feature == "mfcc" else win, size)
        out[i, :, :, 1] = _resize(_minmax(d1[:, a:b]), size)
        out[i, :, :, 2] = _resize(_minmax(d2[:, a:b]), size)


def expand_planes(planes: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Stored planes -> (n, H, W, 3) images: a (n, H, W) plane is copied into the three channels.

    Parameters
    ----------
    planes : np.ndarray [shape=(n, H, W) or (n, H, W, 3), dtype=uint8]
    out : np.ndarray [shape=(n, H, W, 3), dtype=uint8], optional

    Returns
    -------
    images : np.ndarray [shape=(n, H, W, 3), dtype=uint8]
    """
    planes = np.asarray(planes)
    if planes.ndim == 4:
        if out is None:
            return np.array(planes, dtype=np.uint8)
        out[...] = planes
        return out
    if out is None:
        out = np.empty(planes.shape + (3,), dtype=np.uint8)
    for c in range(3):  # three plane copies: faster than one broadcast into HWC
        out[..., c] = planes
    return out


def to_images(F: np.ndarray, frames: np.ndarray, *, config: SpectrogramConfig) -> np.ndarray:
    """Slice window images out of a feature matrix.

    Parameters
    ----------
    F : np.ndarray [shape=(n_bins, n_frames)]
        From :func:`feature_matrix`.
    frames : np.ndarray [shape=(n_windows, 2)]
        ``[first, last)`` frame of each window.
    config : SpectrogramConfig

    Returns
    -------
    images : np.ndarray [shape=(n_windows, H, W, 3), dtype=uint8]
    """
    return expand_planes(window_planes(F, frames, config=config))


def render_signal(
    y: np.ndarray, *, config: RenderConfig, label: Optional[str] = None, path: str = "<array>"
) -> Tuple[np.ndarray, np.ndarray]:
    """Render a loaded signal into its window images.

    The signal is padded (``config.audio.pad_mode``) to ``config.min_samples``; each window's frames are sliced
    from the feature matrix, computed once.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Audio at ``config.audio.sample_rate``.
    config : RenderConfig
    label : str or None
        Chooses the hop (``config.segment.class_hop``); ``None`` uses the
        default hop.
    path : str
        For error messages.

    Returns
    -------
    images : np.ndarray [shape=(n_windows, H, W, 3), dtype=uint8]
    bounds : np.ndarray [shape=(n_windows, 2), dtype=float64]
        ``[start, end)`` of each window in seconds, on the padded signal.
    """
    planes, bounds = render_planes(y, config=config, label=label, path=path)
    return expand_planes(planes), bounds


def render_planes(
    y: np.ndarray, *, config: RenderConfig, label: Optional[str] = None, path: str = "<array>",
    out: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`render_signal` as the cache stores it: (planes (see :func:`window_planes`), bounds in seconds).

    ``out``, when given, receives the planes if it has their shape (it is
    returned); otherwise a new array is.
    """
    y, bounds, frames = _window_plan(y, config=config, label=label, path=path)
    F = feature_matrix(y, sr=config.audio.sample_rate, config=config.spectrogram)
    h, w = config.spectrogram.image_size
    shape = (len(frames), h, w) + (() if config.spectrogram.channels == "replicate" else (3,))
    target = out if out is not None and out.shape == shape else None
    return window_planes(F, frames, config=config.spectrogram, out=target), bounds / float(config.audio.sample_rate)


def _window_plan(y: np.ndarray, *, config: RenderConfig, label: Optional[str], path: str
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad a signal and plan its windows: (padded y, [start, end) samples, [first, last) STFT frames)."""
    sr = config.audio.sample_rate
    seg, spec = config.segment, config.spectrogram
    win = int(round(seg.seconds * sr))
    # the shortest audio used: one STFT frame (n_fft), or one whole window when windows are shorter than that
    y = pad_audio(y, length=config.min_samples, mode=config.audio.pad_mode, min_samples=min(spec.n_fft, win), sr=sr,
                  path=path)
    if len(y) < win:
        raise AudioError(path, f"lasts {len(y) / sr:.3f} s, shorter than one {seg.seconds} s window, and padding is "
                               "off. Use pad_mode 'tile' or 'zero', or a shorter window.")
    bounds = segment_bounds(len(y), sr=sr, seconds=seg.seconds, hop=seg.hop_for(label), last=seg.last)
    n_frames = 1 + len(y) // spec.hop_length  # librosa.stft with center=True
    n_win_frames = max(1, int(round(win / spec.hop_length)))
    first = np.round(bounds[:, 0] / spec.hop_length).astype(np.int64)
    first = np.clip(first, 0, max(n_frames - n_win_frames, 0))
    return y, bounds, np.stack([first, first + n_win_frames], axis=1)


def signal_windows(
    y: np.ndarray, *, config: RenderConfig, label: Optional[str] = None, path: str = "<array>"
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut a loaded signal into the waveform windows whose images :func:`render_signal` draws.

    The input of :class:`~specimg.spectrogram.SpectrogramFrontend`: padded like :func:`render_signal` pads,
    each window starting on the STFT frame the cached path slices for it (its start rounded to a whole
    ``hop_length``).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Audio at ``config.audio.sample_rate``.
    config : RenderConfig
    label : str or None
        Chooses the hop (``config.segment.class_hop``).
    path : str
        For error messages.

    Returns
    -------
    windows : np.ndarray [shape=(n_windows, round(seconds * sample_rate)), dtype=float32]
        Zero-padded at the end when the last window passes the signal's end
        by a fraction of a hop.
    bounds : np.ndarray [shape=(n_windows, 2), dtype=float64]
        ``[start, end)`` of each window in seconds (as :func:`render_signal`).
    padded : np.ndarray [shape=(m,), dtype=float32]
        The padded signal (for the dB reference).

    Examples
    --------
    >>> from specimg.config import AudioConfig, RenderConfig, SegmentConfig
    >>> cfg = RenderConfig(audio=AudioConfig(sample_rate=8000), segment=SegmentConfig(seconds=1.0, hop=0.5))
    >>> windows, bounds, padded = signal_windows(np.zeros(20000, np.float32), config=cfg)
    >>> windows.shape, bounds[:, 0].tolist()
    ((4, 8000), [0.0, 0.5, 1.0, 1.5])
    """
    y, extended, bounds, starts = _window_starts(y, config=config, label=label, path=path)
    idx = starts[:, None] + np.arange(int(round(config.segment.seconds * config.audio.sample_rate)))[None, :]
    return np.ascontiguousarray(extended[idx]), bounds, y  # windows: (n_windows, win)


def _window_starts(y: np.ndarray, *, config: RenderConfig, label: Optional[str], path: str
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where :func:`signal_windows` cuts: (padded y, padded y zero-extended to the last window's end,
    [start, end) seconds, start samples)."""
    sr = config.audio.sample_rate
    y, bounds, frames = _window_plan(np.asarray(y, dtype=np.float32), config=config, label=label, path=path)
    starts = frames[:, 0] * config.spectrogram.hop_length  # (n_windows,) samples: the frame the cache slices
    need = int(starts.max()) + int(round(config.segment.seconds * sr))
    # the last window may pass the end by a fraction of a hop: zeros there, as the STFT pads
    extended = y if need <= len(y) else np.concatenate([y, np.zeros(need - len(y), dtype=y.dtype)])
    return y, extended, bounds / float(sr), starts


def _load(path: str, config: RenderConfig) -> np.ndarray:
    """A file decoded with ``config.audio`` (rate, offset, duration), mono float32."""
    a = config.audio
    return load_audio(path, sr=a.sample_rate, offset=a.offset, duration=a.duration, allow_truncated=a.allow_truncated)


def render_file(path: str, *, config: RenderConfig, label: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray, float]:
    """Load and render one audio file.

    Returns
    -------
    images : np.ndarray [shape=(n_windows, H, W, 3), dtype=uint8]
    bounds : np.ndarray [shape=(n_windows, 2)]
        Window ``[start, end)`` in seconds.
    duration : float
        The file's duration in seconds (after ``offset``/``duration``, before padding).

    Raises
    ------
    AudioError
        When the file cannot be used; the message names it.
    """
    y = _load(path, config)
    images, bounds = render_signal(y, config=config, label=label, path=path)
    return images, bounds, len(y) / float(config.audio.sample_rate)

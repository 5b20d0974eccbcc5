"""Reading audio files into mono float32 arrays at a fixed sample rate."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np

from ..exceptions import AudioError, ParameterError

__all__ = ["load_audio", "check_audio", "pad_audio", "audio_duration"]

PathLike = Union[str, "os.PathLike[str]"]


def audio_duration(path: PathLike) -> float:
    """Duration of an audio file in seconds, read from its header.

    Raises
    ------
    AudioError
        If the file is missing, empty or not readable.
    """
    import soundfile as sf

    path = Path(path)
    _check_file(path)
    try:
        with sf.SoundFile(str(path)) as f:
            frames, sr = f.frames, f.samplerate
    except Exception as exc:  # soundfile raises RuntimeError / LibsndfileError / TypeError
        raise AudioError(path, f"cannot be read as audio ({_clean(exc)}). "
                               "Convert it to WAV or FLAC, or remove it from the input.") from None
    if frames <= 0:
        # Some headers (MP3 streams) carry no frame count; decode to find out.
        data, sr = _read(path)
        return len(data) / float(sr)
    return frames / float(sr)


def _clean(exc: Exception) -> str:
    msg = str(exc).strip().replace("\n", " ")
    return msg or type(exc).__name__


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "file not found. Check the path (CSV paths are relative to the CSV's folder).")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file.")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes). Re-export or remove it.")


def _read(path: Path, offset: float = 0.0, duration: Optional[float] = None):
    """Decode ``[offset, offset + duration)`` seconds; returns (data (n, ch) float32, native sr)."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            start = int(round(offset * sr))
            if start and f.seekable():
                if f.frames > 0 and start >= f.frames:
                    raise AudioError(path, f"is shorter than the offset of {offset} s. Lower the offset.")
                f.seek(start)
                start = 0
            if start:  # not seekable: read and drop
                f.read(start, dtype="float32", always_2d=True)
            frames = -1 if duration is None else int(round(duration * sr))
            data = f.read(frames, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(path, f"cannot be decoded ({_clean(exc)}). "
                               "Convert it to WAV or FLAC, or remove it from the input.") from None
    return data, sr


def check_audio(y: np.ndarray, *, path: PathLike = "<array>", allow_silent: bool = False) -> np.ndarray:
    """Validate a decoded signal once, at the boundary.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (n, channels)]
        Audio samples.
    path : str
        Used in error messages.
    allow_silent : bool
        Accept an all-zero signal (its image would be blank).

    Returns
    -------
    y : np.ndarray
        The same array.

    Raises
    ------
    AudioError
        Zero-length, NaN/inf or (unless allowed) digitally silent audio.
    """
    if y.size == 0:
        raise AudioError(path, "has no audio samples (zero-length). Re-export or remove it.")
    if not np.all(np.isfinite(y)):
        bad = int(np.size(y) - np.count_nonzero(np.isfinite(y)))
        raise AudioError(path, f"contains {bad} NaN or infinite sample(s). Repair the file (e.g. re-export it) "
                               "or remove it from the input.")
    if not allow_silent and not np.any(y):
        raise AudioError(path, "is silent (every sample is zero), so its spectrogram is blank. Remove it, or "
                               "label silence explicitly and pass allow_silent=True.")
    return y


def load_audio(
    path: PathLike,
    *,
    sr: int = 22050,
    offset: float = 0.0,
    duration: Optional[float] = None,
    allow_silent: bool = False,
) -> np.ndarray:
    """Load an audio file as mono float32 at a fixed sample rate.

    Reads anything libsndfile reads (PCM 8/16/24/32-bit, float, A-law,
    mu-law, FLAC, OGG/Vorbis, MP3; libsndfile picks the decoder from the
    content, so an MP3 stream inside a ``.wav`` name loads too); multi-channel audio is averaged to mono and resampled to ``sr``
    with librosa (soxr).

    Parameters
    ----------
    path : str or os.PathLike
        Audio file.
    sr : int > 0
        Target sample rate in Hz.
    offset : float >= 0
        Seconds to skip at the start.
    duration : float > 0 or None
        Seconds to read after ``offset``; ``None`` reads to the end.
    allow_silent : bool
        Accept an all-zero file.

    Returns
    -------
    y : np.ndarray [shape=(n,), dtype=float32]

    Raises
    ------
    AudioError
        Missing, empty, undecodable, zero-length, NaN/inf or silent audio.

    Examples
    --------
    >>> y = load_audio("recordings/0_jackson_0.wav", sr=8000)  # doctest: +SKIP
    >>> y.dtype, y.ndim
    (dtype('float32'), 1)
    """
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ParameterError(f"The 'sr' parameter of load_audio must be an int > 0 (Hz). Got {sr!r}.")
    if offset < 0:
        raise ParameterError(f"The 'offset' parameter of load_audio must be >= 0 seconds. Got {offset!r}.")
    if duration is not None and duration <= 0:
        raise ParameterError(f"The 'duration' parameter of load_audio must be > 0 seconds or None. Got {duration!r}.")
    path = Path(path)
    _check_file(path)
    data, native_sr = _read(path, offset, duration)
    check_audio(data, path=path, allow_silent=True)
    y = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if native_sr != sr:
        import librosa

        y = librosa.resample(y, orig_sr=native_sr, target_sr=int(sr), res_type="soxr_hq")
    y = np.ascontiguousarray(y, dtype=np.float32)
    check_audio(y, path=path, allow_silent=allow_silent)
    return y


def pad_audio(y: np.ndarray, *, length: int, mode: Literal["tile", "zero", "none"] = "tile") -> np.ndarray:
    """Extend a signal to at least ``length`` samples.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    length : int
        Minimum number of samples.
    mode : {'tile', 'zero', 'none'}
        ``'tile'`` loops the signal (concatenates it with itself, the
        music-genre seed's choice), ``'zero'`` appends zeros, ``'none'``
        returns ``y`` unchanged.

    Returns
    -------
    y_pad : np.ndarray [shape=(max(n, length),)]

    Examples
    --------
    >>> pad_audio(np.array([1., 2., 3.]), length=7)
    array([1., 2., 3., 1., 2., 3., 1.])
    """
    if mode not in ("tile", "zero", "none"):
        raise ParameterError(f"The 'mode' parameter of pad_audio must be 'tile', 'zero' or 'none'. Got {mode!r}.")
    n = len(y)
    if n >= length or mode == "none":
        return y
    if n == 0:
        raise ParameterError("pad_audio cannot extend an empty signal.")
    if mode == "tile":
        return np.resize(y, length).astype(y.dtype, copy=False)
    return np.concatenate([y, np.zeros(length - n, dtype=y.dtype)])

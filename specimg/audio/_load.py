"""Reading audio files into mono float32 arrays at a fixed sample rate."""

from __future__ import annotations

import dataclasses
import io
import logging
from pathlib import Path
from typing import Any, List, Literal, Optional, Tuple

import numpy as np

from .._io import PathLike
from .._validation import check_int
from ..exceptions import AudioError, ParameterError
from ._container import OGG_ANNOUNCED, Truncation, inspect_container, seconds_text

__all__ = ["load_audio", "check_audio", "pad_audio", "audio_duration"]

_logger = logging.getLogger(__name__)


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


#: Frames per read: a file cut mid-stream (a FLAC that loses sync) keeps what was decoded before the cut.
_CHUNK = 1 << 18  # 12 s at 22.05 kHz: few reads per file; a failed chunk is re-read 64 frames at a time (_salvage)


def _read(path: Path, offset: float = 0.0, duration: Optional[float] = None, *, allow_truncated: bool = False):
    """Decode ``[offset, offset + duration)`` seconds: (data (n, ch) float32, native sr). A file that holds less than
    its header announces is an :class:`AudioError`, or with ``allow_truncated`` a logged warning and what is there.
    """
    import soundfile as sf

    trunc = inspect_container(path)
    if trunc is not None and not trunc.usable:
        raise AudioError(path, f"{trunc.describe()}: truncated, nothing to decode. Re-download or re-export it.")
    source: Any = str(path)
    if trunc is not None and trunc.keep_bytes is not None:  # an Ogg stream cut inside a page: its whole pages
        with open(path, "rb") as fh:
            source = io.BytesIO(fh.read(trunc.keep_bytes))
    try:
        with sf.SoundFile(source) as f:
            sr, announced = f.samplerate, f.frames
            start = int(round(offset * sr))
            if start and f.seekable():
                if announced > 0 and start >= announced:
                    raise AudioError(path, f"is shorter than the offset of {offset} s. Lower the offset.")
                f.seek(start)
            elif start:  # not seekable: read and drop
                f.read(start, dtype="float32", always_2d=True)
            want = -1 if duration is None else int(round(duration * sr))
            data, failure = _read_frames(f, want)
            seekable = f.seekable()
        if failure is not None and seekable:  # a stream cut mid-block: salvage the block's decodable frames
            data = _salvage(source, data, start, want)
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(path, f"cannot be decoded ({_clean(exc)}). "
                               "Convert it to WAV or FLAC, or remove it from the input.") from None
    if trunc is None:
        expected = announced - start if announced > 0 else None
        if expected is not None and want >= 0:
            expected = min(expected, want)
        if failure is not None and expected is None:  # the format announces no length: a damaged stream
            if not len(data):
                raise AudioError(path, f"cannot be decoded ({failure}). Convert it to WAV or FLAC, or remove it "
                                       "from the input.")
            trunc = Truncation("no length", f"{seconds_text(start + len(data), sr)} before decoding stops ({failure})")
        elif expected is not None and len(data) < expected:
            held = seconds_text(start + len(data), sr) + (f" before decoding stops ({failure})" if failure else "")
            trunc = Truncation(seconds_text(announced, sr), held)
    elif trunc.announced == OGG_ANNOUNCED:
        trunc = dataclasses.replace(trunc, held=f"{seconds_text(start + len(data), sr)} in {trunc.held}")
    if trunc is not None:
        what = f"{trunc.describe()}: truncated"
        if not len(data):
            raise AudioError(path, f"{what}, nothing to decode. Re-download or re-export it.")
        kept = seconds_text(len(data), sr)
        if not allow_truncated:
            raise AudioError(path, f"{what}, re-download or re-export it (or pass allow_truncated=True, "
                                   f"--allow-truncated, to keep the {kept} that are there).")
        _logger.warning("%s: %s; kept the %s that are there (allow_truncated).", path, what, kept)
    return data, sr


def _salvage(source: Any, data: np.ndarray, start: int, want: int) -> np.ndarray:
    """After a failed read: what small reads still decode past ``data`` (the decoder drops the whole chunk
    that crosses a cut; 64 frames at a time loses at most 64)."""
    import soundfile as sf

    if isinstance(source, io.BytesIO):
        source.seek(0)
    try:
        with sf.SoundFile(source) as f:
            f.seek(start + len(data))
            more, _ = _read_frames(f, -1 if want < 0 else want - len(data), chunk=64)
    except Exception:  # the decoder cannot even seek back: keep what the first pass decoded
        return data
    return np.concatenate([data, more]) if len(more) else data


def _read_frames(f: Any, want: int, *, chunk: int = _CHUNK) -> Tuple[np.ndarray, Optional[str]]:
    """Up to ``want`` frames (``-1``: to the end): (data (n, ch), why decoding stopped early). A seekable stream is
    read in one call first, and only if that fails again in chunks.
    """
    if chunk >= _CHUNK and f.seekable():
        at = f.tell()
        try:
            return _read_float32(f, want), None
        except Exception:  # a damaged or cut stream: again in chunks, keeping what decodes
            f.seek(at)
    parts: List[np.ndarray] = []
    got, failure = 0, None
    while want < 0 or got < want:
        n = chunk if want < 0 else min(chunk, want - got)
        try:
            block = _read_float32(f, n)
        except Exception as exc:  # libsndfile: lost sync, failed seek ... in a damaged or cut stream
            failure = _clean(exc)
            break
        if not len(block):
            break
        parts.append(block)
        got += len(block)
    data = np.concatenate(parts) if parts else np.zeros((0, f.channels), np.float32)
    return data, failure


def _read_float32(f: Any, n: int) -> np.ndarray:
    """``f.read(n, dtype='float32', always_2d=True)``, the same values, faster for 16-bit PCM.

    libsndfile scales 16-bit samples by 1 / 32768 (a power of two: exact in float32) but converts slowly;
    reading them as int16 and scaling here gives the identical array faster (a 120 s file at 22.05 kHz
    loads in 5.0 ms instead of 12.4: ``benchmarks/render.py --stages``).
    """
    if f.subtype == "PCM_16":
        raw = f.read(n, dtype="int16", always_2d=True)
        return np.multiply(raw, np.float32(1.0 / 32768.0), dtype=np.float32)
    return f.read(n, dtype="float32", always_2d=True)


def check_audio(y: np.ndarray, *, path: PathLike = "<array>", allow_silent: bool = False) -> np.ndarray:
    """Validate a decoded signal once, at the boundary.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (n, channels)]
        Audio samples.
    path : str
        Used in error messages.
    allow_silent : bool
        Accept an all-zero or constant (DC) signal (its image would be blank).

    Returns
    -------
    y : np.ndarray
        The same array.

    Raises
    ------
    AudioError
        Zero-length, NaN/inf or (unless allowed) digitally silent or constant audio.
    """
    if y.size == 0:
        raise AudioError(path, "has no audio samples (zero-length). Re-export or remove it.")
    lo, hi = np.min(y), np.max(y)  # two passes, no temporary arrays; NaN propagates into both
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(np.size(y) - np.count_nonzero(np.isfinite(y)))
        raise AudioError(path, f"contains {bad} NaN or infinite sample(s). Repair the file (e.g. re-export it) "
                               "or remove it from the input.")
    if not allow_silent and lo == hi == 0:
        raise AudioError(path, "is silent (every sample is zero), so its spectrogram is blank. Remove it, or "
                               "label silence explicitly and pass allow_silent=True.")
    if not allow_silent and y.size > 1 and lo == hi:
        raise AudioError(path, f"is constant (every sample is {float(lo):.6g}: a DC level, no sound), so its "
                               "spectrogram holds only the 0 Hz row. Remove it, or pass allow_silent=True to keep it.")
    return y


def load_audio(
    path: PathLike,
    *,
    sr: int = 22050,
    offset: float = 0.0,
    duration: Optional[float] = None,
    allow_silent: bool = False,
    allow_truncated: bool = False,
) -> np.ndarray:
    """Load an audio file as mono float32 at a fixed sample rate.

    Reads anything libsndfile reads (PCM, float, A-law, mu-law, FLAC, OGG/Vorbis, MP3, the decoder picked from
    the content); multi-channel audio is averaged to mono and resampled to ``sr`` with soxr's "soxr_hq"
    (:func:`resample`, librosa's default).

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
        Accept an all-zero or constant (DC) file.
    allow_truncated : bool
        Keep what a truncated file holds (and log a warning naming it) instead of raising: a file whose header
        announces more audio than it holds (the checks per format: :mod:`specimg.audio._container`), or
        whose announced frames cannot all be decoded. A file cut inside its header is an error either way.

    Returns
    -------
    y : np.ndarray [shape=(n,), dtype=float32]

    Raises
    ------
    AudioError
        Missing, empty, undecodable, truncated (unless allowed),
        zero-length, NaN/inf, silent or constant audio. The message names the
        file; for a truncated one it says what the header announces and what
        the file holds, e.g. ``header says 120.0 s (960000 samples at 8000
        Hz), file holds 0.020 s (156 samples at 8000 Hz): truncated,
        re-download or re-export it``.

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
    data, native_sr = _read(path, offset, duration, allow_truncated=bool(allow_truncated))
    if data.shape[1] > 1:  # a mono file's samples are checked once, just below
        check_audio(data, path=path, allow_silent=True)
    y = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    check_audio(y, path=path, allow_silent=allow_silent)  # silence and DC before resampling rings at the edges
    if native_sr != sr:
        y = resample(y, native_sr, int(sr))
        y = check_audio(np.ascontiguousarray(y, dtype=np.float32), path=path, allow_silent=True)
    return np.ascontiguousarray(y, dtype=np.float32)


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """``librosa.resample(y, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq")``: soxr's high quality,
    then cut or zero-padded to ``ceil(len(y) * target_sr / orig_sr)`` samples. soxr directly, as librosa calls
    it, without importing librosa (scipy.signal and numba: most of a short render's start-up)."""
    import soxr

    n = int(np.ceil(len(y) * (float(target_sr) / orig_sr)))
    out = soxr.resample(y, orig_sr, target_sr, quality="soxr_hq")
    return out[:n] if len(out) >= n else np.pad(out, (0, n - len(out)))


def pad_audio(y: np.ndarray, *, length: int, mode: Literal["tile", "zero", "none"] = "tile",
              min_samples: int = 1, sr: Optional[int] = None, path: PathLike = "<array>") -> np.ndarray:
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
    min_samples : int >= 1
        The shortest signal that may be extended. Rendering passes one STFT
        frame (``n_fft`` samples): a clip shorter than that has no
        spectrogram of its own, and looping a few milliseconds into a whole
        window would invent a tone.
    sr : int, optional
        The sample rate, to give lengths in seconds in error messages.
    path : str
        Used in error messages.

    Returns
    -------
    y_pad : np.ndarray [shape=(max(n, length),)]

    Raises
    ------
    AudioError
        ``y`` holds fewer than ``min_samples`` samples.

    Examples
    --------
    >>> pad_audio(np.array([1., 2., 3.]), length=7)
    array([1., 2., 3., 1., 2., 3., 1.])
    """
    if mode not in ("tile", "zero", "none"):
        raise ParameterError(f"The 'mode' parameter of pad_audio must be 'tile', 'zero' or 'none'. Got {mode!r}.")
    check_int(min_samples, "min_samples", owner="pad_audio", low=1)
    n = len(y)
    if 0 < n < min_samples:
        held, frame = (seconds_text(n, sr), seconds_text(min_samples, sr)) if sr else (f"{n} samples",
                                                                                     f"{min_samples} samples")
        raise AudioError(path, f"holds {held}, less than one STFT frame ({frame}, n_fft): too short to have a "
                               "spectrogram, and it is not looped up to a window. Remove it, or use a smaller n_fft.")
    if n >= length or mode == "none":
        return y
    if n == 0:
        raise ParameterError("pad_audio cannot extend an empty signal.")
    if mode == "tile":
        return np.resize(y, length).astype(y.dtype, copy=False)
    return np.concatenate([y, np.zeros(length - n, dtype=y.dtype)])

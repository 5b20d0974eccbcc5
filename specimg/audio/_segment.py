"""Cutting a signal into fixed-length windows."""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..exceptions import ParameterError

__all__ = ["segment_bounds", "segment_audio"]


def segment_bounds(
    n_samples: int,
    *,
    sr: int,
    seconds: float = 20.0,
    hop: float = 10.0,
    last: Literal["align_end", "drop"] = "align_end",
) -> np.ndarray:
    """Start and end samples of the windows covering a signal.

    Windows start at ``0, hop, 2*hop, ...`` as long as they fit. The tail
    that no whole window reaches is handled by ``last``:

    - ``'align_end'`` (default): one more window ending exactly at the last
      sample, so the end of every file is seen (it overlaps its neighbour);
    - ``'drop'``: the tail is ignored.

    A tail shorter than one sample (rounding) is never a window of its own.

    Parameters
    ----------
    n_samples : int
        Length of the signal (already padded to at least one window).
    sr : int
        Sample rate in Hz.
    seconds : float > 0
        Window length.
    hop : float > 0
        Distance between window starts.
    last : {'align_end', 'drop'}

    Returns
    -------
    bounds : np.ndarray [shape=(n_windows, 2), dtype=int64]
        ``[start, end)`` in samples.

    Raises
    ------
    ParameterError
        If the signal is shorter than one window or the options are invalid.

    Examples
    --------
    A 120 s file, 20 s windows: 11 windows at a 10 s hop, 21 at a 5 s hop.

    >>> len(segment_bounds(120 * 100, sr=100, seconds=20, hop=10))
    11
    >>> len(segment_bounds(120 * 100, sr=100, seconds=20, hop=5))
    21
    >>> segment_bounds(25 * 100, sr=100, seconds=20, hop=10) // 100
    array([[ 0, 20],
           [ 5, 25]])
    """
    if seconds <= 0 or hop <= 0:
        raise ParameterError(f"segment_bounds needs seconds > 0 and hop > 0. Got seconds={seconds!r}, hop={hop!r}.")
    if last not in ("align_end", "drop"):
        raise ParameterError(f"The 'last' parameter of segment_bounds must be 'align_end' or 'drop'. Got {last!r}.")
    win = int(round(seconds * sr))
    step = hop * sr
    if n_samples < win:
        raise ParameterError(
            f"A signal of {n_samples / sr:.3f} s is shorter than one window of {seconds} s. "
            "Pad it first (pad_audio, or pad_mode='tile'/'zero') or use a shorter window."
        )
    n_full = int(np.floor((n_samples - win) / step + 1e-9)) + 1
    starts = np.round(np.arange(n_full) * step).astype(np.int64)
    if last == "align_end" and n_samples - (starts[-1] + win) >= 1:
        starts = np.append(starts, n_samples - win)
    return np.stack([starts, starts + win], axis=1)


def segment_audio(
    y: np.ndarray,
    *,
    sr: int,
    seconds: float = 20.0,
    hop: float = 10.0,
    last: Literal["align_end", "drop"] = "align_end",
) -> np.ndarray:
    """Cut a signal into overlapping windows.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    sr, seconds, hop, last
        As in :func:`segment_bounds`.

    Returns
    -------
    windows : np.ndarray [shape=(n_windows, round(seconds * sr))]
        A read-only strided view when possible (no copy).

    Examples
    --------
    >>> segment_audio(np.arange(10.0), sr=1, seconds=4, hop=3)
    array([[0., 1., 2., 3.],
           [3., 4., 5., 6.],
           [6., 7., 8., 9.]])
    """
    bounds = segment_bounds(len(y), sr=sr, seconds=seconds, hop=hop, last=last)
    return np.stack([y[s:e] for s, e in bounds])

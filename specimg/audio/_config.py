"""How audio files are read (:class:`AudioConfig`) and cut into windows (:class:`SegmentConfig`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Mapping, Optional

from .._validation import ConfigBase, check_choice, check_float, check_positive, fail

__all__ = ["AudioConfig", "SegmentConfig"]


@dataclass(frozen=True)
class AudioConfig(ConfigBase):
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
            fail(o, "sample_rate", "an int >= 1000 (Hz)", self.sample_rate)
        check_float(self.offset, "offset", owner=o, low=0.0)
        check_positive(self.duration, "duration", owner=o, allow_none=True)
        check_positive(self.min_seconds, "min_seconds", owner=o, allow_none=True)
        check_choice(self.pad_mode, "pad_mode", ("tile", "zero", "none"), owner=o)
        if not isinstance(self.allow_truncated, bool):
            fail(o, "allow_truncated", "True or False", self.allow_truncated)


@dataclass(frozen=True)
class SegmentConfig(ConfigBase):
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
        check_positive(self.seconds, "seconds", owner=o)
        check_positive(self.hop, "hop", owner=o)
        if not isinstance(self.class_hop, Mapping):
            fail(o, "class_hop", "a mapping label -> hop seconds", self.class_hop)
        clean = {}
        for label, hop in self.class_hop.items():
            if isinstance(hop, bool) or not isinstance(hop, (int, float)) or not math.isfinite(hop) or hop <= 0:
                fail(o, f"class_hop[{label!r}]", "a finite number > 0 (seconds)", hop,
                     "Write it as LABEL=SECONDS, e.g. --class-hop blues=5.")
            clean[str(label)] = float(hop)
        object.__setattr__(self, "class_hop", dict(sorted(clean.items())))
        check_choice(self.last, "last", ("align_end", "drop"), owner=o)

    def hop_for(self, label: Optional[str]) -> float:
        """The hop used for a file with this label (``None``: unlabelled)."""
        if label is None:
            return float(self.hop)
        return float(self.class_hop.get(str(label), self.hop))

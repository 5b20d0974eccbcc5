"""Multi-label data made from FSDD, with exact answers: two-digit mixtures and annotated long recordings.

Both builders read FSDD (:func:`specimg.datasets.fsdd_path`) and write WAV
files and a table whose labels are exact by construction:

- :func:`fsdd_mixtures`: clips that add two different digits said by two
  different speakers (``labels`` = both digits). The speakers are paired
  (george+jackson, lucas+nicolas, theo+yweweler by default) and a mixture
  only combines the two speakers of one pair, its ``group``: folds grouped by
  ``group`` are speaker-held-out.
- :func:`fsdd_recordings`: long recordings that concatenate FSDD digits of one
  speaker with silences between them (a faint seeded noise floor), and the
  annotation table (``path,start,end,label``) of each digit's exact start and
  end in seconds.

Used by the tests, the documentation and ``benchmarks/multilabel.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from ._io import atomic_write, atomic_write_csv
from .exceptions import ParameterError

__all__ = ["fsdd_mixtures", "fsdd_recordings", "SPEAKER_PAIRS"]

PathLike = Union[str, "os.PathLike[str]"]

#: The speaker pairs of :func:`fsdd_mixtures`: each pair is a group.
SPEAKER_PAIRS = (("george", "jackson"), ("lucas", "nicolas"), ("theo", "yweweler"))
_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


def _clips(fsdd: Optional[PathLike]) -> Tuple[Path, dict]:
    """FSDD's folder and ``{(speaker, digit): [recording paths sorted by take]}``."""
    from .datasets import fsdd_path

    root = Path(fsdd) if fsdd is not None else fsdd_path()
    table: dict = {}
    for p in sorted((root / "recordings").glob("*.wav")):
        m = _NAME.match(p.name)
        if m:
            table.setdefault((m.group(2), m.group(1)), []).append((int(m.group(3)), p))
    return root, {k: [p for _, p in sorted(v)] for k, v in table.items()}


def _digit_stream(rng: np.random.Generator) -> Iterator[str]:
    """Digits from back-to-back seeded permutations of 0-9 (never the same digit twice in a row)."""
    last = None
    while True:
        perm = [str(d) for d in rng.permutation(10)]
        if perm[0] == last:
            perm[0], perm[-1] = perm[-1], perm[0]
        yield from perm
        last = perm[-1]


def _read(path: Path) -> np.ndarray:
    import soundfile as sf

    y, sr = sf.read(str(path), dtype="float32", always_2d=False)
    if sr != 8000:  # pragma: no cover - FSDD is 8 kHz
        raise ParameterError(f"{path} is not an 8 kHz FSDD recording ({sr} Hz).")
    return y / max(float(np.abs(y).max()), 1e-6)


def fsdd_mixtures(out_dir: PathLike, *, per_pair: int = 20, pairs: Sequence[Tuple[str, str]] = SPEAKER_PAIRS,
                  takes: Sequence[int] = tuple(range(10)), fsdd: Optional[PathLike] = None, seed: int = 0) -> Path:
    """Write clips mixing two digits by two speakers and their table ``mixtures.csv``.

    Mixture ``i`` of a pair adds digit ``a`` by its first speaker and digit
    ``b != a`` by its second (each peak-normalised, the shorter centred on
    the longer, the sum scaled by 0.5). The digits come two by two from
    seeded permutations of 0-9, so every 5 mixtures of a pair hold every digit
    once; the takes are drawn with ``seed``.

    Parameters
    ----------
    out_dir : path
        Gets ``mixtures/*.wav`` and ``mixtures.csv``.
    per_pair : int
        Mixtures per speaker pair.
    pairs : sequence of (str, str)
        Speaker pairs; a mixture's ``group`` is its pair (``'george+jackson'``).
    takes : sequence of int
        FSDD takes drawn from.
    fsdd : path or None
        FSDD's folder (default :func:`specimg.datasets.fsdd_path`).
    seed : int

    Returns
    -------
    csv : Path
        ``path,labels,group,first,second`` (``labels`` = ``'a;b'``;
        ``first`` / ``second`` = the two source recordings).
    """
    import pandas as pd
    import soundfile as sf

    if isinstance(per_pair, bool) or not isinstance(per_pair, int) or per_pair < 1:
        raise ParameterError(f"The 'per_pair' parameter of fsdd_mixtures must be an int >= 1. Got {per_pair!r}.")
    root, clips = _clips(fsdd)
    out = Path(out_dir)
    (out / "mixtures").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for s1, s2 in pairs:
        digits = _digit_stream(rng)
        for i in range(per_pair):
            a, b = next(digits), next(digits)
            ta, tb = (int(rng.choice(list(takes))) for _ in range(2))
            pa, pb = clips[(s1, a)][ta], clips[(s2, b)][tb]
            ya, yb = _read(pa), _read(pb)
            n = max(len(ya), len(yb))
            mix = np.zeros(n, np.float32)
            for y in (ya, yb):
                lo = (n - len(y)) // 2
                mix[lo:lo + len(y)] += 0.5 * y
            name = f"mixtures/{s1}_{a}+{s2}_{b}_{i:03d}.wav"
            atomic_write(out / name, lambda tmp: sf.write(str(tmp), mix, 8000, subtype="PCM_16", format="WAV"),
                         ".wav")
            rows.append({"path": name, "labels": ";".join(sorted((a, b))), "group": f"{s1}+{s2}",
                         "first": str(pa.relative_to(root)), "second": str(pb.relative_to(root))})
    csv = out / "mixtures.csv"
    atomic_write_csv(pd.DataFrame(rows), csv)
    return csv


def fsdd_recordings(out_dir: PathLike, *, speakers: Sequence[str] = ("george", "jackson", "lucas"),
                    per_speaker: int = 2, digits: int = 6, gap: Tuple[float, float] = (0.4, 1.2),
                    takes: Sequence[int] = tuple(range(10)), fsdd: Optional[PathLike] = None, seed: int = 0,
                    noise: float = 1e-3) -> Path:
    """Write long recordings of FSDD digits separated by silences, and their exact annotation table.

    Each recording starts with a silence, then alternates a digit (a random
    take of its speaker; the digits of a speaker's recordings come from
    seeded permutations of 0-9, so every 10 of them hold each digit once) and
    a silence of ``gap`` seconds (drawn uniformly, rounded to whole samples). A faint noise floor (``noise``, as
    a fraction of full scale, seeded) keeps the silences from being digital
    zeros.

    Parameters
    ----------
    out_dir : path
        Gets ``recordings/*.wav`` and ``annotations.csv``.
    speakers : sequence of str
    per_speaker : int
        Recordings per speaker.
    digits : int
        Digits per recording.
    gap : (float, float)
        Range of the silences in seconds.
    takes, fsdd, seed
        As in :func:`fsdd_mixtures`.
    noise : float

    Returns
    -------
    csv : Path
        ``path,start,end,label,speaker``: one row per digit, times in
        seconds exact to the sample (rounded to 6 decimals).
    """
    import pandas as pd
    import soundfile as sf

    lo, hi = (float(g) for g in gap)
    if not 0 <= lo <= hi:
        raise ParameterError(f"The 'gap' parameter of fsdd_recordings must be (low, high) with 0 <= low <= high. "
                             f"Got {gap!r}.")
    _, clips = _clips(fsdd)
    out = Path(out_dir)
    (out / "recordings").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, sr = [], 8000
    for speaker in speakers:
        stream = _digit_stream(rng)
        for r in range(per_speaker):
            parts, pos = [], 0
            name = f"recordings/{speaker}_{r:02d}.wav"
            for _ in range(digits):
                silence = int(round(rng.uniform(lo, hi) * sr))
                parts.append(np.zeros(silence, np.float32))
                pos += silence
                d = next(stream)
                y = _read(clips[(speaker, d)][int(rng.choice(list(takes)))]) * 0.8
                rows.append({"path": name, "start": round(pos / sr, 6), "end": round((pos + len(y)) / sr, 6),
                             "label": d, "speaker": speaker})
                parts.append(y)
                pos += len(y)
            tail = int(round(rng.uniform(lo, hi) * sr))
            parts.append(np.zeros(tail, np.float32))
            signal = np.concatenate(parts)
            signal = signal + noise * rng.standard_normal(len(signal)).astype(np.float32)
            atomic_write(out / name, lambda tmp: sf.write(str(tmp), signal, sr, subtype="PCM_16", format="WAV"),
                         ".wav")
    csv = out / "annotations.csv"
    atomic_write_csv(pd.DataFrame(rows), csv)
    return csv

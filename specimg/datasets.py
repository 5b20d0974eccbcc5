"""The default dataset, wherever it is: the Free Spoken Digit Dataset (FSDD) for the demo, tests and docs.

:func:`fsdd_path` finds FSDD, in this order:

1. the folder given (``make demo DATA=...``, ``--data``) or ``$SPECIMG_FSDD``, which must hold FSDD;
2. ``../shared/datasets/fsdd``, seen from the working folder and from the checkout of specimg;
3. the user cache (``$SPECIMG_CACHE/fsdd-1.0.10``, by default ``~/.cache/specimg/fsdd-1.0.10`` on Linux),
   where
4. the v1.0.10 release is downloaded once from GitHub (:func:`download_fsdd`, with pooch), laid out like
   ``../shared/datasets/fsdd``.

The download is checksummed on what it extracts (:data:`FSDD_RECORDINGS_SHA256`). ``python -m specimg.datasets``
prints the folder (downloading it once if needed), as ``make test`` does before the tests.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tarfile
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence, Tuple

import numpy as np

from ._io import PathLike, atomic_write, atomic_write_csv
from ._validation import check_int
from .exceptions import DataError, ParameterError

__all__ = ["fsdd_path", "download_fsdd", "fsdd_labels", "fsdd_mixtures", "fsdd_recordings", "recordings_digest",
           "FSDD_URL", "FSDD_ARCHIVE_SHA256", "FSDD_RECORDINGS_SHA256", "FSDD_VERSION", "SPEAKER_PAIRS"]

_logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import pandas as pd

#: The FSDD release that the download fetches.
FSDD_VERSION = "1.0.10"
#: Where it comes from (GitHub's archive of the release tag).
FSDD_URL = f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v{FSDD_VERSION}.tar.gz"
#: SHA-256 of the archive at :data:`FSDD_URL`. ``None``: not known yet (it could not be computed offline);
#: the download then checks the extracted recordings instead and logs the archive's digest. The
#: ``SPECIMG_FSDD_SHA256`` environment variable sets it without editing the code.
FSDD_ARCHIVE_SHA256: Optional[str] = None
#: :func:`recordings_digest` of the release's 3,000 recordings (computed from ``../shared/datasets/fsdd``,
#: whose README says its audio is the release's, unchanged). A download without a pinned archive hash must
#: extract exactly these.
FSDD_RECORDINGS_SHA256 = "99aa5e3a7c822ab55b2a3b47e0b05aeb9f011c54837a12e3831ad24108330829"
#: The release's recordings: 6 speakers x 10 digits x 50 takes.
FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
FSDD_N_RECORDINGS = 3000
#: Where the project's machines keep a copy, relative to the working folder or to the checkout's parent.
SHARED = Path("..") / "shared" / "datasets" / "fsdd"

_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


def _is_fsdd(folder: Path) -> bool:
    return (folder / "labels.csv").is_file() and (folder / "recordings").is_dir()


def _cache_root(cache_dir: Optional[PathLike]) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("SPECIMG_CACHE"):
        return Path(os.environ["SPECIMG_CACHE"])
    import pooch

    return Path(pooch.os_cache("specimg"))


def _shared_candidates() -> Iterable[Path]:
    yield Path.cwd() / SHARED
    checkout = Path(__file__).resolve().parents[1]  # the folder holding specimg/ (a source checkout)
    yield checkout / SHARED


def fsdd_path(
    data: Optional[PathLike] = None,
    *,
    download: bool = True,
    cache_dir: Optional[PathLike] = None,
    url: Optional[str] = None,
    known_hash: Optional[str] = None,
    search: Optional[Iterable[PathLike]] = None,
) -> Path:
    """The folder of FSDD (``labels.csv`` and ``recordings/``), downloaded once if it is nowhere else.

    Parameters
    ----------
    data : path, optional
        Where FSDD is (``DATA=``, ``--data``); default ``$SPECIMG_FSDD``. Given, it must hold FSDD.
    download : bool
        Download the release into the user cache when no copy is found.
    cache_dir : path, optional
        The user cache (default ``$SPECIMG_CACHE`` or pooch's ``os_cache('specimg')``).
    url, known_hash : str, optional
        The archive and its SHA-256 (default :data:`FSDD_URL`, ``$SPECIMG_FSDD_URL``;
        :data:`FSDD_ARCHIVE_SHA256`, ``$SPECIMG_FSDD_SHA256``). A ``file://`` URL reads a local mirror.
    search : paths, optional
        Folders to look in before the cache (default: ``../shared/datasets/fsdd`` from the working folder
        and from the checkout).

    Returns
    -------
    Path
        A folder with ``labels.csv`` (``path,label,speaker,sample_rate,seconds``) and ``recordings/``.

    Raises
    ------
    DataError
        ``data`` does not hold FSDD, or FSDD is nowhere and cannot be downloaded; the message lists where
        it looked and how to point at a copy.
    """
    given = data if data is not None else os.environ.get("SPECIMG_FSDD") or None
    if given is not None:
        folder = Path(given)
        if _is_fsdd(folder):
            return folder
        raise DataError(f"FSDD is not at {str(folder)!r} (DATA=, --data or SPECIMG_FSDD): the folder needs a "
                        "labels.csv and a recordings/ folder. Point at a copy of FSDD, or leave it unset to use "
                        "../shared/datasets/fsdd or the download.")
    looked = []
    for candidate in (Path(p) for p in search) if search is not None else _shared_candidates():
        looked.append(str(candidate))
        if _is_fsdd(candidate):
            return candidate.resolve()
    target = _cache_root(cache_dir) / f"fsdd-{FSDD_VERSION}"
    looked.append(str(target))
    if _is_fsdd(target):
        return target
    if not download:
        raise DataError(f"FSDD was not found (looked in {', '.join(looked)}) and download=False. Set DATA= or "
                        "SPECIMG_FSDD to a copy, or allow the download.")
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # one process downloads; the others wait, then find it
        if _is_fsdd(target):
            return target
        try:
            return download_fsdd(target, url=url, known_hash=known_hash)
        except DataError as exc:
            raise DataError(f"FSDD was not found (looked in {', '.join(looked)}) and could not be downloaded: "
                            f"{exc} Set DATA= or SPECIMG_FSDD to a copy of FSDD.") from None


def recordings_digest(recordings: PathLike) -> str:
    """SHA-256 over the ``{digit}_{speaker}_{take}.wav`` files of a folder, sorted by name.

    Each file adds ``name``, a NUL byte, the hex SHA-256 of its bytes and a newline; the result does not
    depend on how the files were archived or compressed.

    Examples
    --------
    >>> recordings_digest(fsdd_path() / "recordings") == FSDD_RECORDINGS_SHA256  # doctest: +SKIP
    True
    """
    h = hashlib.sha256()
    for p in sorted((q for q in Path(recordings).glob("*.wav") if _NAME.match(q.name)), key=lambda q: q.name):
        h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).hexdigest().encode() + b"\n")
    return h.hexdigest()


def download_fsdd(dest: PathLike, *, url: Optional[str] = None, known_hash: Optional[str] = None) -> Path:
    """Download the FSDD release and lay it out like ``../shared/datasets/fsdd``.

    The archive is fetched by pooch (checked against ``known_hash`` when there is one), its
    ``recordings/*.wav`` are extracted and ``labels.csv`` is written. Everything goes into a temporary
    folder beside ``dest`` that is renamed into place at the end, so an interrupted download leaves no
    half dataset and the next call starts again.

    Parameters
    ----------
    dest : path
        The dataset folder to create.
    url, known_hash : str, optional
        As in :func:`fsdd_path`.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    DataError
        The download or its check failed (the message says which).
    """
    import pooch

    dest = Path(dest)
    url = url or os.environ.get("SPECIMG_FSDD_URL") or FSDD_URL
    known_hash = known_hash or os.environ.get("SPECIMG_FSDD_SHA256") or FSDD_ARCHIVE_SHA256
    if known_hash and ":" not in known_hash:
        known_hash = f"sha256:{known_hash}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        _logger.warning("Downloading FSDD v%s from %s into %s (once).", FSDD_VERSION, url, dest)
        downloader = _copy_local if url.startswith("file://") else None  # a local mirror (pooch: http, ftp...)
        try:
            archive = Path(pooch.retrieve(url, known_hash=known_hash, path=work, fname="fsdd.tar.gz",
                                          downloader=downloader, progressbar=False))
        except Exception as exc:  # requests / urllib errors, pooch's hash mismatch (ValueError)
            raise DataError(f"downloading {url} failed ({type(exc).__name__}: {exc}).") from None
        if not known_hash:
            _logger.warning("FSDD archive %s has SHA-256 %s; pin it with SPECIMG_FSDD_SHA256 (or "
                            "specimg.datasets.FSDD_ARCHIVE_SHA256).", url, pooch.file_hash(str(archive)))
        staged = work / "fsdd"
        n = _extract_recordings(archive, staged / "recordings")
        if not known_hash and n != FSDD_N_RECORDINGS:
            raise DataError(f"the archive at {url} holds {n} recordings, not the release's {FSDD_N_RECORDINGS}; "
                            "pass known_hash= (SPECIMG_FSDD_SHA256) for another archive.")
        labels = fsdd_labels(staged / "recordings")
        if not known_hash and sorted(set(labels["speaker"])) != sorted(FSDD_SPEAKERS):
            raise DataError(f"the archive at {url} has the speakers {sorted(set(labels['speaker']))}, not the "
                            f"release's {list(FSDD_SPEAKERS)}.")
        if not known_hash and recordings_digest(staged / "recordings") != FSDD_RECORDINGS_SHA256:
            raise DataError(f"the recordings of the archive at {url} differ from the release's (their digest "
                            f"{recordings_digest(staged / 'recordings')} is not {FSDD_RECORDINGS_SHA256}); pass "
                            "known_hash= (SPECIMG_FSDD_SHA256) to accept another archive.")
        labels.to_csv(staged / "labels.csv", index=False)
        if dest.exists():  # another process finished first
            return dest
        os.replace(staged, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def _copy_local(url: str, output_file: Any, pooch: Any, check_only: bool = False) -> Optional[bool]:
    """A pooch downloader for ``file://`` URLs (a local mirror of the archive)."""
    from urllib.parse import unquote, urlparse
    from urllib.request import url2pathname

    source = Path(url2pathname(unquote(urlparse(url).path)))
    if check_only:
        return source.is_file()
    if hasattr(output_file, "write"):
        with open(source, "rb") as fh:
            shutil.copyfileobj(fh, output_file)
    else:
        shutil.copyfile(source, output_file)
    return None


def _extract_recordings(archive: Path, out: Path) -> int:
    """Extract ``*/recordings/*.wav`` of a tar.gz into ``out`` (flat, names checked); returns their number."""
    out.mkdir(parents=True)
    n = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if not member.isfile() or len(parts) < 2 or parts[-2] != "recordings" or not _NAME.match(parts[-1]):
                    continue
                member.name = parts[-1]  # flat: no path from the archive reaches the disk
                if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: also drops odd modes
                    tar.extract(member, out, filter="data")
                else:  # pragma: no cover
                    tar.extract(member, out)
                n += 1
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"the archive {str(archive)!r} cannot be read ({exc}).") from None
    return n


def fsdd_labels(recordings: PathLike) -> "pd.DataFrame":
    """The ``labels.csv`` table of a folder of FSDD recordings.

    Parameters
    ----------
    recordings : path
        A folder of ``{digit}_{speaker}_{take}.wav`` files.

    Returns
    -------
    pd.DataFrame
        ``path`` (``recordings/NAME``, sorted), ``label`` (the digit), ``speaker``, ``sample_rate`` and
        ``seconds`` (``frames / sample_rate`` rounded to 4 decimals), as in ``../shared/datasets/fsdd``.
    """
    import pandas as pd
    import soundfile as sf

    rows = []
    for p in sorted(Path(recordings).glob("*.wav"), key=lambda q: f"recordings/{q.name}"):
        m = _NAME.match(p.name)
        if m is None:
            continue
        info = sf.info(str(p))
        rows.append({"path": f"recordings/{p.name}", "label": int(m.group(1)), "speaker": m.group(2),
                     "sample_rate": int(info.samplerate), "seconds": round(info.frames / info.samplerate, 4)})
    return pd.DataFrame(rows, columns=["path", "label", "speaker", "sample_rate", "seconds"])


def main(argv: Optional[list] = None) -> int:
    """``python -m specimg.datasets [--data FOLDER] [--no-download] [--mixtures DIR] [--recordings DIR]``: print
    FSDD's folder (downloading it once); with ``--mixtures`` / ``--recordings``, also write the tagged data made
    from it there (:func:`fsdd_mixtures`, :func:`fsdd_recordings`) and print its table."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m specimg.datasets", description=main.__doc__)
    parser.add_argument("--data", default=None, help="a copy of FSDD (default: SPECIMG_FSDD, ../shared, the cache)")
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading")
    parser.add_argument("--mixtures", metavar="DIR", default=None,
                        help="write two-digit mixtures (multi-label, exact tags) into DIR: DIR/mixtures.csv")
    parser.add_argument("--per-pair", type=int, default=20, metavar="N", help="mixtures per speaker pair (20)")
    parser.add_argument("--recordings", metavar="DIR", default=None,
                        help="write annotated long recordings into DIR: DIR/annotations.csv")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        fsdd = fsdd_path(args.data, download=not args.no_download)
        print(fsdd)
        if args.mixtures:
            print(fsdd_mixtures(args.mixtures, per_pair=args.per_pair, fsdd=fsdd))
        if args.recordings:
            print(fsdd_recordings(args.recordings, fsdd=fsdd))
    except (DataError, ParameterError) as exc:
        print(f"specimg.datasets: {exc}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------- tagged data with exact answers
# Both builders write WAV files from FSDD and a table whose labels are exact by construction (a mixture's
# ``group`` is its speaker pair: folds grouped by it are speaker-held-out), for the tests, the documentation and
# ``benchmarks/multilabel.py``.
#: The speaker pairs of :func:`fsdd_mixtures`: each pair is a group.
SPEAKER_PAIRS = (("george", "jackson"), ("lucas", "nicolas"), ("theo", "yweweler"))


def _clips(fsdd: Optional[PathLike]) -> Tuple[Path, dict]:
    """FSDD's folder and ``{(speaker, digit): [recording paths sorted by take]}``."""
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

    Mixture ``i`` of a pair adds digit ``a`` by its first speaker and digit ``b != a`` by its second (each
    peak-normalised, the shorter centred on the longer, the sum scaled by 0.5); the digits come two by two from
    seeded permutations of 0-9 (every 5 mixtures of a pair hold every digit once), the takes drawn with ``seed``.

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

    check_int(per_pair, "per_pair", owner="fsdd_mixtures", low=1)
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

    Each recording alternates silences of ``gap`` seconds (drawn uniformly, whole samples) and digits (a random
    take of its speaker, the digits from seeded permutations of 0-9), starting with a silence; a faint seeded
    noise floor (``noise``, a fraction of full scale) keeps the silences from being digital zeros.

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


if __name__ == "__main__":
    sys.exit(main())

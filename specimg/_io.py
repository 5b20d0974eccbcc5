"""Atomic writes and config diffs shared by every stage that writes results.

Every file goes through :func:`atomic_path`: a temporary file with a unique name in the target's folder,
flushed (``fsync``) and renamed onto the target (``os.replace``): a kill mid-write leaves the old file or the
new one, never a mix. A folder of several files is staged with :func:`atomic_folder`. A long job resumes
through one record of each finished piece's input fingerprint (:func:`write_done`, :func:`read_done`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np
import pandas as pd

__all__ = ["AtomicFile", "atomic_path", "move_into_place", "atomic_write", "atomic_write_text", "atomic_write_csv",
           "atomic_save_npy", "atomic_folder", "write_done", "read_done", "config_diff"]

PathLike = Union[str, "os.PathLike[str]"]


def _fsync(path: Path) -> None:
    """Flush a written file's data to the disk (what ``os.replace`` then makes visible)."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    if os.name != "posix":  # pragma: no cover - Windows
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse it
        pass
    finally:
        os.close(fd)


def move_into_place(src: PathLike, dst: PathLike) -> None:
    """Flush the finished file ``src`` to disk and rename it onto ``dst`` (same folder or file system).

    For a file built under a name of its own that must survive a crash until it is done (a render's
    resumable rows); anything else writes through :class:`AtomicFile`.
    """
    _fsync(Path(src))
    os.replace(src, dst)
    _fsync_dir(Path(dst).parent)


class AtomicFile:
    """A temporary file that becomes ``path`` atomically on :meth:`commit` (or is removed on :meth:`abort`).

    The one mechanism behind every write (:func:`atomic_path` is its ``with`` form): :attr:`tmp` is created
    empty in ``path``'s folder (made if needed) with a unique name, ``.NAME.XXXX<suffix>.tmp`` (a writer that
    wants an extension passes it as ``suffix``: ``np.save`` adds ``.npy``, Pillow and matplotlib read the
    format from it). :meth:`commit` flushes it to disk and renames it onto ``path``. A writer that streams for
    a long time (a waveform cache) holds one open across calls.
    """

    def __init__(self, path: PathLike, suffix: str = "") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=suffix + ".tmp")
        os.close(fd)
        self.tmp = Path(name)

    def commit(self) -> Path:
        """Flush :attr:`tmp` and rename it onto :attr:`path`; returns :attr:`path`."""
        try:
            move_into_place(self.tmp, self.path)
        finally:
            self.abort()
        return self.path

    def abort(self) -> None:
        """Remove :attr:`tmp` (if still there); :attr:`path` stays as it was."""
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def atomic_path(path: PathLike, suffix: str = "") -> AtomicFile:
    """``with atomic_path(path) as tmp:`` write ``tmp``; on a clean exit it is flushed and renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was (:class:`AtomicFile`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "table.csv"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("a,b\\n1,2\\n")
    >>> target.read_text()
    'a,b\\n1,2\\n'
    """
    return AtomicFile(path, suffix)


def atomic_write(path: PathLike, write: Callable[[Path], Any], suffix: str = "") -> None:
    """Call ``write(tmp)`` on a temporary path and make the result ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path, suffix) as tmp:
        write(tmp)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_csv(frame: pd.DataFrame, path: PathLike, **kwargs: Any) -> None:
    """Write a DataFrame as CSV (no index unless ``index=True``) atomically; ``kwargs`` go to ``to_csv``."""
    kwargs.setdefault("index", False)
    atomic_write(path, lambda tmp: frame.to_csv(tmp, **kwargs))


def atomic_save_npy(arr: np.ndarray, path: PathLike) -> None:
    """``np.save`` atomically."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)

    atomic_write(path, write, ".npy")


@contextlib.contextmanager
def atomic_folder(path: PathLike, *, last: Sequence[str] = (), stale: Sequence[str] = ()) -> Iterator[Path]:
    """A temporary folder beside ``path`` to fill; on a clean exit its entries replace their namesakes in ``path``.

    For a folder of several files that a reader takes as one result (a report). Each staged file is flushed,
    then moved with ``os.replace``; a staged sub-folder replaces the old one of its name whole. The files
    named in ``last`` (the marker a reader looks for, such as ``report.md``) are removed from ``path`` before
    anything moves and moved in after the rest, so a reader that sees them sees the new folder complete.
    Entries of ``path`` that the stage does not hold are kept, except those named in ``stale`` (files or
    folders of an older result, such as its examples), removed first. On an exception nothing in ``path``
    changes.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "report"
    >>> with atomic_folder(out, last=["report.md"]) as stage:
    ...     _ = (stage / "per_class.csv").write_text("class,recall\\n")
    ...     _ = (stage / "report.md").write_text("# report\\n")
    >>> sorted(p.name for p in out.iterdir())
    ['per_class.csv', 'report.md']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield stage
        for f in stage.rglob("*"):
            if f.is_file():
                _fsync(f)
        path.mkdir(parents=True, exist_ok=True)
        for name in last:
            (path / name).unlink(missing_ok=True)
        for name in stale:
            if (path / name).is_dir():
                shutil.rmtree(path / name)
            else:
                (path / name).unlink(missing_ok=True)
        entries = sorted(stage.iterdir(), key=lambda e: (e.name in last, e.name))
        for entry in entries:
            target = path / entry.name
            if entry.is_dir() and target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
        _fsync_dir(path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# --------------------------------------------------------------------------- resuming long jobs
def write_done(path: PathLike, fingerprint: str, **info: Any) -> None:
    """Record that a piece of a long job (a fold, an experiment step, a part of a prediction) is finished.

    The one resume mechanism of specimg: a piece writes its outputs (each atomically), then this small JSON
    record ``{"fingerprint": ..., **info}``, last and atomically. :func:`read_done` finds the piece finished
    only when the record is there with the fingerprint of the current inputs (and its outputs exist), so a
    kill at any moment leaves the piece to redo, never half-counted, and a changed input is never reused.
    """
    import json

    atomic_write_text(path, json.dumps({"fingerprint": fingerprint, **info}, indent=2, default=str) + "\n")


def read_done(path: PathLike, fingerprint: Optional[str] = None,
              outputs: Iterable[PathLike] = ()) -> Optional[Dict[str, Any]]:
    """The record :func:`write_done` left at ``path``, or None: missing, unreadable, of another ``fingerprint``
    (when given), or one of ``outputs`` missing."""
    import json

    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or (fingerprint is not None and record.get("fingerprint") != fingerprint):
        return None
    if not all(Path(o).exists() for o in outputs):
        return None
    return record


def config_diff(old: Dict[str, Any], new: Dict[str, Any], prefix: str = "") -> List[str]:
    """``['section.key: old -> new', ...]`` for two nested config dicts."""
    out: List[str] = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out

"""Resumable steps: atomic writes, fingerprints of inputs, and ``OUT/steps/<step>.json``, the record of a
finished step; a step whose record matches its inputs' fingerprint and whose outputs exist is skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import pandas as pd

from .._io import atomic_write_csv as atomic_csv
from .._io import atomic_write_text as atomic_text
from .._io import PathLike, read_done, write_done

__all__ = ["Steps", "fingerprint", "file_digest", "atomic_text", "atomic_csv", "table_digest"]

_logger = logging.getLogger(__name__)


def fingerprint(obj: Any) -> str:
    """A short stable digest of a JSON-serialisable object (keys sorted)."""
    payload = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]


def file_digest(path: PathLike) -> str:
    """SHA-1 of a (small) file's bytes; ``'missing'`` when it does not exist."""
    p = Path(path)
    if not p.is_file():
        return "missing"
    h = hashlib.sha1()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def file_stat(path: PathLike) -> List[int]:
    """``[size, mtime_ns]`` of a (large) file, a cheap stand-in for its content."""
    st = Path(path).stat()
    return [int(st.st_size), int(st.st_mtime_ns)]


def table_digest(table: pd.DataFrame) -> str:
    """Digest of an input table and of the size and modification time of every audio file it lists."""
    h = hashlib.sha1()
    h.update(table.drop(columns=["abspath"], errors="ignore").to_csv(index=False).encode("utf-8"))
    if "abspath" in table.columns:
        for p in table["abspath"]:
            try:
                st = os.stat(p)
                h.update(f"{p}\t{st.st_size}\t{st.st_mtime_ns}\n".encode("utf-8"))
            except OSError:
                h.update(f"{p}\tmissing\n".encode("utf-8"))
    return h.hexdigest()[:16]


class Steps:
    """The step records of one experiment folder.

    Parameters
    ----------
    root : path
        The experiment folder; records live in ``root/steps/``.
    resume : bool
        If False, every step runs again whatever its record says.
    verbose : bool
        Print one line per step (ran / skipped) to stderr.

    Attributes
    ----------
    log : dict[str, str]
        ``step id -> 'ran' | 'skipped'`` in the order the steps were met.
    """

    def __init__(self, root: PathLike, *, resume: bool = True, verbose: bool = True) -> None:
        self.root = Path(root)
        self.dir = self.root / "steps"
        self.resume = resume
        self.verbose = verbose
        self.log: Dict[str, str] = {}

    def _path(self, step: str) -> Path:
        return self.dir / (step.replace("/", "__") + ".json")

    def record(self, step: str) -> Optional[Dict[str, Any]]:
        """The stored record of a step, or None."""
        return read_done(self._path(step))

    def is_done(self, step: str, fp: str, outputs: Iterable[PathLike] = ()) -> bool:
        """True (and logged as skipped) when the record matches ``fp`` and every output exists."""
        if not self.resume or read_done(self._path(step), fp, outputs) is None:
            return False
        self.log[step] = "skipped"
        if self.verbose:
            _logger.info("[skip] %s (inputs unchanged)", step)
        return True

    def start(self, step: str) -> None:
        """Announce a step that is about to run."""
        if self.verbose:
            _logger.info("[run ] %s", step)

    def mark(self, step: str, fp: str, outputs: Iterable[PathLike] = (), **info: Any) -> None:
        """Record a finished step (written last, atomically)."""
        write_done(self._path(step), fp, step=step, outputs=[str(o) for o in outputs],
                   finished=time.strftime("%Y-%m-%dT%H:%M:%S"), **info)
        self.log[step] = "ran"

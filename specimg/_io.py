"""Atomic writes and config diffs shared by every stage that writes results.

A crash mid-write never leaves a half-written file under its final name: each
writer goes to a temporary file in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Union

import numpy as np
import pandas as pd

__all__ = ["tmp_beside", "atomic_write_text", "atomic_write_csv", "atomic_save_npy", "config_diff"]

PathLike = Union[str, "os.PathLike[str]"]


def tmp_beside(path: PathLike, suffix: str = "") -> Path:
    """A new empty temporary file in ``path``'s folder (created if needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix + ".tmp")
    os.close(fd)
    return Path(tmp)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write a text file atomically."""
    path = Path(path)
    tmp = tmp_beside(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_csv(frame: pd.DataFrame, path: PathLike) -> None:
    """Write a DataFrame as CSV (no index) atomically."""
    path = Path(path)
    tmp = tmp_beside(path)
    try:
        frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_save_npy(arr: np.ndarray, path: PathLike) -> None:
    """``np.save`` atomically."""
    path = Path(path)
    tmp = tmp_beside(path, ".npy")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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

"""Reading the input of every stage: a CSV or a folder of audio."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, List, Optional, Union

import numpy as np
import pandas as pd

from ..exceptions import DataError
from ._annotations import _natural, annotation_kind, annotations_to_files, normalize_tag_columns

__all__ = ["read_table", "sort_labels", "AUDIO_EXTENSIONS"]

#: File name endings treated as audio when a folder is given.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf", ".opus")


def sort_labels(labels: Iterable[str]) -> List[str]:
    """Sort labels numeric-aware, so that ``'2' < '10'`` and ``'a2' < 'a10'``.

    Examples
    --------
    >>> sort_labels(["10", "2", "1"])
    ['1', '2', '10']
    """
    return sorted({str(x) for x in labels}, key=_natural)


def _is_audio(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".")


def read_table(source: Union[str, "os.PathLike[str]", pd.DataFrame], *, annotation_column: Optional[str] = None,
               recording: Optional[str] = None) -> pd.DataFrame:
    """Read the list of audio files a stage works on.

    Parameters
    ----------
    source : str, path or DataFrame
        - a CSV with a ``path`` column, optional ``label`` and ``group``
          columns and any other columns (kept); paths are relative to the
          CSV's folder (absolute paths are kept);
        - a folder with one sub-folder per class (labelled);
        - a folder of audio files (unlabelled);
        - a DataFrame shaped like the CSV (paths relative to the working
          directory unless absolute; a table this function returned keeps
          its ``abspath``);
        - multi-label input (:mod:`specimg.audio._annotations`): a
          ``labels`` column of ``;``-separated tags, multi-hot 0/1 class
          columns, or an annotation table (``path,start,end,label`` rows, or
          a tab-separated Raven selection table), one row per recording.
    annotation_column : str or None
        The column of a Raven selection table that holds the tags (default:
        the first of ``Annotation``, ``Species``, ``Label``... present), or
        the label column of a ``path,start,end,...`` table.
    recording : str or None
        The audio file a Raven selection table without ``Begin Path`` /
        ``Begin File`` column annotates (relative to the table's folder).

    Returns
    -------
    table : pd.DataFrame
        Columns ``path`` (as given), ``abspath``, ``label`` (str or None),
        ``group`` (str; the path when no group column is given) and the
        extra columns of the CSV. Labels are strings. Multi-label input
        has ``label`` empty, ``labels`` (a JSON list of tags) and, for
        annotation tables, ``events`` (a JSON list of ``[start, end, tag]``).

    Raises
    ------
    DataError
        Missing input, no ``path`` column, duplicated paths, a folder with
        no audio.
    """
    if isinstance(source, pd.DataFrame):
        df, base, where = source.copy(), Path.cwd(), "The input table"
        for col in ("path", "label", "group"):
            if col in df.columns:
                df[col] = df[col].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    else:
        src = Path(source)
        if not src.exists():
            raise DataError(f"Input {str(src)!r} does not exist. Give a CSV (path,label[,group]) or a folder of audio.")
        where = f"The input {str(src)!r}"
        if src.is_dir():
            df, base = _read_folder(src), src
        else:
            try:
                df = pd.read_csv(src, dtype={"path": str, "label": str, "labels": str, "group": str},
                                 keep_default_na=False, na_values=[""], sep=_separator(src))
            except Exception as exc:
                raise DataError(f"Cannot read {str(src)!r} as a CSV: {exc}") from None
            base = src.parent
    df = _tagged_input(df, where, annotation_column=annotation_column, recording=recording)
    if "path" not in df.columns:
        raise DataError(f"{where} has no 'path' column (columns: {list(df.columns)}). "
                        "The CSV header must start with path,label[,group].")
    df = df[df["path"].notna()].reset_index(drop=True)
    if df.empty:
        raise DataError(f"{where} lists no files (it has a header but no rows). Add one row per audio file: "
                        "path,label[,group].")
    dup = df["path"][df["path"].duplicated()]
    if len(dup):
        raise DataError(f"{where} lists {len(dup)} path(s) twice, e.g. {dup.iloc[0]!r}. Each file must appear once: "
                        "drop the repeated rows.")
    df["path"] = df["path"].astype(str)
    given = df["abspath"] if isinstance(source, pd.DataFrame) and "abspath" in df.columns else None
    df["abspath"] = [str(a) if given is not None and isinstance(a, str) and a else str(p if os.path.isabs(p) else
                     (base / p)) for p, a in zip(df["path"], given if given is not None else df["path"])]
    if "label" not in df.columns:
        df["label"] = None
    df["label"] = df["label"].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip())
    if "group" not in df.columns:
        df["group"] = df["path"]
    df["group"] = [str(g) if g is not None and not (isinstance(g, float) and np.isnan(g)) else p
                   for g, p in zip(df["group"], df["path"])]
    front = ["path", "abspath", "label", "group"]
    return df[front + [c for c in df.columns if c not in front]]


def _separator(src: Path) -> str:
    """``'\\t'`` for a tab-separated table (a Raven selection table), else ``','``."""
    with open(src, encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    return "\t" if "\t" in header and "," not in header else ","


def _tagged_input(df: pd.DataFrame, where: str, *, annotation_column: Optional[str],
                      recording: Optional[str]) -> pd.DataFrame:
    """An annotation table as one row per recording; tags (``labels``, multi-hot columns) as a JSON ``labels``."""
    if annotation_kind(df) is not None:
        df = annotations_to_files(df, where=where, annotation_column=annotation_column, recording=recording)
    elif annotation_column is not None or recording is not None:
        raise DataError(f"{where} is not an annotation table (no start/end or Raven 'Begin Time (s)'/'End Time (s)' "
                        "columns), so annotation_column/recording (--annotation-column, --recording) do not apply. "
                        "Drop them.")
    return normalize_tag_columns(df, where)


def _read_folder(root: Path) -> pd.DataFrame:
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    rows = []
    for d in subdirs:
        for f in sorted(d.rglob("*")):
            if _is_audio(f):
                rows.append({"path": str(f.relative_to(root)), "label": d.name})
    for f in sorted(root.iterdir()):
        if _is_audio(f):
            rows.append({"path": f.name, "label": None})
    if not rows:
        raise DataError(f"Folder {str(root)!r} holds no audio files ({', '.join(AUDIO_EXTENSIONS)}), neither directly "
                        "nor in one sub-folder per class.")
    labelled = {r["label"] is not None for r in rows}
    if labelled == {True, False}:
        raise DataError(f"Folder {str(root)!r} mixes audio files at its top level with class sub-folders. Move the "
                        "top-level files into a class folder, or give a CSV.")
    return pd.DataFrame(rows)

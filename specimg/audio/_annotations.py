"""Multi-label input: tag sets, multi-hot columns and annotation tables (time intervals on recordings).

:func:`~specimg.audio.read_table` turns each into the same columns of the file table: ``labels`` (the file's
tags as a JSON list, so digits stay strings in every CSV; an empty cell is a negative) and, for annotation
tables, ``events`` (a JSON list of ``[start, end, tag]``, sorted by start; a recording listed with an empty
label has none). Multi-hot columns are two or more 0/1 columns in a table without ``label`` / ``labels``.
Windows take their tags from the events later (:func:`specimg.data.window_targets`).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ..exceptions import DataError

__all__ = ["parse_tags", "tags_json", "tags_text", "parse_events", "file_tags", "has_tags",
           "annotation_kind", "annotations_to_files", "normalize_tag_columns", "RAVEN_BEGIN", "RAVEN_END",
           "ANNOTATION_COLUMNS", "TAG_SEPARATOR"]

#: Separator of the tags of one file in a ``labels`` column.
TAG_SEPARATOR = ";"
#: The time columns of a Raven selection table.
RAVEN_BEGIN, RAVEN_END = "Begin Time (s)", "End Time (s)"
#: Annotation columns looked for, in this order, in a Raven table when none is chosen (``annotation_column``).
ANNOTATION_COLUMNS = ("Annotation", "Species", "Label", "label", "Class", "class", "Sound Type", "Call Type")
#: Columns never read as multi-hot class columns.
_RESERVED = {"path", "abspath", "label", "labels", "events", "group", "fold", "pseudo", "file_id", "n_segments",
             "duration", "offset", "n_samples", "reference", "start", "end", "segment"}


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def parse_tags(value: Any, *, where: str = "a 'labels' value") -> List[str]:
    """The tags of one file: from ``'a;b'``, a JSON list ``'["a", "b"]'``, a list, or empty (no tag).

    Tags are stripped of surrounding spaces, empty tags dropped, repeats
    removed (first occurrence kept).

    Examples
    --------
    >>> parse_tags("dog; siren;dog"), parse_tags('["3", "7"]'), parse_tags(None)
    (['dog', 'siren'], ['3', '7'], [])
    """
    if _missing(value):
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        items = [str(v) for v in value]
    else:
        text = str(value).strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except ValueError:
                raise DataError(f"{where} {text!r} starts like a JSON list but is not one. Write the tags "
                                f"separated by '{TAG_SEPARATOR}', e.g. dog;siren.") from None
            if not isinstance(items, list):
                raise DataError(f"{where} {text!r} must be a list of tags.")
            items = [str(v) for v in items]
        else:
            if isinstance(value, float) and value.is_integer():  # a column pandas read as numbers: 3.0 -> '3'
                text = str(int(value))
            items = text.split(TAG_SEPARATOR)
    out: List[str] = []
    for t in (s.strip() for s in items):
        if t and t not in out:
            out.append(t)
    return out


def tags_json(tags: Iterable[str]) -> str:
    """The JSON text of a tag list (what the file table's ``labels`` column holds)."""
    return json.dumps([str(t) for t in tags])


def tags_text(tags: Iterable[str]) -> str:
    """``'a;b'``: tags as a ``labels`` cell of an output table (empty string for none)."""
    return TAG_SEPARATOR.join(str(t) for t in tags)


def parse_events(value: Any) -> List[Tuple[float, float, str]]:
    """The ``events`` cell of a file table: ``[(start, end, tag), ...]`` (empty when missing)."""
    if _missing(value):
        return []
    items = json.loads(value) if isinstance(value, str) else value
    return [(float(a), float(b), str(t)) for a, b, t in items]


def file_tags(files: pd.DataFrame) -> List[List[str]]:
    """The tags of every row of a file table (``labels``; the events' tags where there is no ``labels``)."""
    if "labels" in files.columns:
        return [parse_tags(v) for v in files["labels"]]
    if "events" in files.columns:
        return [sorted({t for _, _, t in parse_events(v)}) for v in files["events"]]
    return [[] for _ in range(len(files))]


def has_tags(files: pd.DataFrame) -> bool:
    """Whether a file table (from :func:`~specimg.audio.read_table`) holds tag sets or events."""
    return "labels" in files.columns or "events" in files.columns


# --------------------------------------------------------------------------- tags and multi-hot columns
def _check_consistent(tag_lists: Sequence[List[str]], where: str) -> None:
    """Refuse tags that differ only by case (``Dog`` and ``dog``): one class spelled two ways."""
    seen: Dict[str, set] = {}
    for tags in tag_lists:
        for t in tags:
            seen.setdefault(t.casefold(), set()).add(t)
    clash = sorted(sorted(v) for v in seen.values() if len(v) > 1)
    if clash:
        shown = "; ".join(" / ".join(repr(t) for t in c) for c in clash[:5])
        raise DataError(f"{where} spells the same tag in different ways: {shown}. Tags are case-sensitive "
                        "classes: use one spelling for each.")
    bad = sorted({t for tags in tag_lists for t in tags if TAG_SEPARATOR in t})
    if bad:
        raise DataError(f"{where}: the tag(s) {bad[:5]} contain '{TAG_SEPARATOR}', the separator of tags. "
                        "Rename them.")


def _binary_column(col: pd.Series) -> bool:
    values = col.dropna()
    if values.empty or values.dtype == bool:
        return False
    try:
        num = pd.to_numeric(values, errors="raise")
    except (TypeError, ValueError):
        return False
    return bool(np.isin(num.to_numpy(dtype=np.float64), (0.0, 1.0)).all())


def multi_hot_columns(df: pd.DataFrame) -> List[str]:
    """The multi-hot class columns of a table without ``label`` / ``labels``: 2+ columns of only 0 and 1."""
    if "labels" in df.columns or "events" in df.columns or ("label" in df.columns and df["label"].notna().any()):
        return []
    cols = [c for c in df.columns if str(c) not in _RESERVED and _binary_column(df[c])]
    return cols if len(cols) >= 2 else []


def normalize_tag_columns(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """A file table's tags as a JSON ``labels`` column (from ``labels`` or multi-hot columns); others untouched."""
    has_label = "label" in df.columns and df["label"].map(lambda v: not _missing(v)).any()
    if "labels" in df.columns:
        if has_label:
            raise DataError(f"{where} has both a 'label' column (one class per file) and a 'labels' column (tags). "
                            "Keep one: 'labels' ('a;b', empty for none) for multi-label, 'label' otherwise.")
        tags = [parse_tags(v, where=f"{where}: the 'labels' value") for v in df["labels"]]
    else:
        cols = multi_hot_columns(df)
        if not cols:
            return df
        if df[cols].isna().any().any():
            col = next(c for c in cols if df[c].isna().any())
            raise DataError(f"{where}: the multi-hot class column {col!r} is empty in some rows. Write 0 or 1 in "
                            "every row of the class columns.")
        values = df[cols].apply(pd.to_numeric).to_numpy() > 0.5
        tags = [[str(c) for c, on in zip(cols, row) if on] for row in values]
    _check_consistent(tags, where)
    out = df.copy()
    out["labels"] = [tags_json(t) for t in tags]
    out["label"] = None
    return out


# --------------------------------------------------------------------------- annotation tables
def annotation_kind(df: pd.DataFrame) -> Optional[str]:
    """``'raven'``, ``'intervals'`` (path,start,end,label) or None for a table of files."""
    if RAVEN_BEGIN in df.columns and RAVEN_END in df.columns:
        return "raven"
    if "start" in df.columns and "end" in df.columns and "path" in df.columns:
        return "intervals"
    return None


def _raven_rows(df: pd.DataFrame, *, annotation_column: Optional[str], recording: Optional[str],
                where: str) -> pd.DataFrame:
    """A Raven selection table as ``path, start, end, label`` rows (one per selection)."""
    if annotation_column is None:
        annotation_column = next((c for c in ANNOTATION_COLUMNS if c in df.columns), None)
        if annotation_column is None:
            raise DataError(f"{where} is a Raven selection table without an annotation column (looked for "
                            f"{', '.join(ANNOTATION_COLUMNS)}; columns: {list(df.columns)}). Name it with "
                            "annotation_column= (--annotation-column COL).")
    elif annotation_column not in df.columns:
        raise DataError(f"The annotation column {annotation_column!r} (annotation_column, --annotation-column) is "
                        f"not in {where}. Columns: {list(df.columns)}.")
    if "Selection" in df.columns and "View" in df.columns:  # Raven lists a selection once per view
        df = df.drop_duplicates(subset="Selection", keep="first")
    begin, end = df[RAVEN_BEGIN].to_numpy(dtype=float), df[RAVEN_END].to_numpy(dtype=float)
    path_col = next((c for c in ("Begin Path", "Begin File") if c in df.columns), None)
    if recording is not None:
        paths = [str(recording)] * len(df)
    elif path_col is not None:
        paths = [str(p) for p in df[path_col]]
        if "File Offset (s)" in df.columns:  # times are in the sequence Raven opened; the offset is in the file
            offset = df["File Offset (s)"].to_numpy(dtype=float)
            begin, end = offset, offset + (end - begin)
    else:
        raise DataError(f"{where} is a Raven selection table that does not name its recording (no 'Begin Path' or "
                        "'Begin File' column). Give the audio file with recording= (--recording PATH).")
    out = pd.DataFrame({"path": paths, "start": begin, "end": end, "label": df[annotation_column].to_numpy()})
    if "group" in df.columns:
        out["group"] = df["group"].to_numpy()
    return out


def _check_intervals(rows: pd.DataFrame, where: str) -> None:
    has = rows["label"].map(lambda v: not _missing(v)).to_numpy()
    start = pd.to_numeric(rows["start"], errors="coerce").to_numpy(dtype=float)
    end = pd.to_numeric(rows["end"], errors="coerce").to_numpy(dtype=float)
    bad = has & ~(np.isfinite(start) & np.isfinite(end) & (start >= 0) & (end > start))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where}: row {i + 1} ({rows['path'].iat[i]!r}, label {rows['label'].iat[i]!r}) has start "
                        f"{rows['start'].iat[i]!s} and end {rows['end'].iat[i]!s}; an event needs 0 <= start < end "
                        f"(seconds)" + (f" ({int(bad.sum())} such rows)" if bad.sum() > 1 else "") + ".")


def annotations_to_files(df: pd.DataFrame, *, where: str, annotation_column: Optional[str] = None,
                         recording: Optional[str] = None) -> pd.DataFrame:
    """One row per recording from an annotation table: ``path, label (empty), labels, events`` + constant columns.

    Parameters
    ----------
    df : pd.DataFrame
        ``path,start,end,label`` rows or a Raven selection table.
    where : str
        How error messages name the table.
    annotation_column : str or None
        The Raven column holding the tags (default: the first of
        :data:`ANNOTATION_COLUMNS` present).
    recording : str or None
        The audio file of a Raven table that has no ``Begin Path`` /
        ``Begin File`` column.

    Returns
    -------
    files : pd.DataFrame [shape=(n_recordings, ...)]
        In order of first appearance; the other columns of the table are kept
        where they hold one value per recording (a ``group`` that varies
        within a recording is an error).
    """
    kind = annotation_kind(df)
    if kind == "raven":
        rows = _raven_rows(df, annotation_column=annotation_column, recording=recording, where=where)
    else:
        label_col = annotation_column or ("label" if "label" in df.columns else "labels" if "labels" in df.columns
                                          else None)
        if label_col is None or label_col not in df.columns:
            raise DataError(f"{where} has start and end columns but no label column (path,start,end,label). Add "
                            "one, or name it with annotation_column= (--annotation-column COL).")
        rows = df.rename(columns={label_col: "label"}) if label_col != "label" else df
    rows = rows[rows["path"].map(lambda v: not _missing(v))].reset_index(drop=True)
    if rows.empty:
        raise DataError(f"{where} lists no annotation (a header but no rows).")
    _check_intervals(rows, where)
    tags = [parse_tags(v, where=f"{where}: the label") if not _missing(v) else [] for v in rows["label"]]
    _check_consistent(tags, where)
    groups = rows.groupby(rows["path"].astype(str), sort=False).indices
    extra = [c for c in rows.columns if c not in ("path", "start", "end", "label", "labels", "events", "abspath")]
    records = []
    for path, idx in groups.items():
        events = sorted((round(float(rows["start"].iat[i]), 6), round(float(rows["end"].iat[i]), 6), t)
                        for i in idx for t in tags[i])
        rec: Dict[str, Any] = {"path": path, "label": None,
                               "labels": tags_json(sorted({t for *_, t in events}, key=_natural)),
                               "events": json.dumps([list(e) for e in events])}
        for c in extra:
            values = rows[c].iloc[idx]
            if values.nunique(dropna=False) == 1:
                rec[c] = values.iloc[0]
            elif c == "group":
                raise DataError(f"{where}: recording {path!r} has several 'group' values "
                                f"({sorted(map(str, values.unique()))[:3]}); a recording belongs to one group.")
        records.append(rec)
    files = pd.DataFrame(records)
    constant = [c for c in extra if c in files.columns and files[c].notna().all()]
    return files[["path", "label", "labels", "events"] + constant]


def _natural(s: str) -> list:
    """The numeric-aware sort key of a label (:func:`~specimg.audio.sort_labels`)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s) if t]

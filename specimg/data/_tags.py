"""Tag sets as training data (:class:`specimg.tasks.MultiLabel`): the tag classes, multi-hot window targets from
events (OpenSoundscape's overlap rule), grouped folds balanced by iterative stratification (Sechidis et al. 2011).
"""

from __future__ import annotations

import logging
import math
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from .._validation import check_int
from ..audio import file_tags, parse_events, sort_labels, tags_json, tags_text
from ..exceptions import DataError, ParameterError
from ._folds import pseudo_mask

_logger = logging.getLogger(__name__)

__all__ = ["as_tag_table", "tag_classes", "tag_matrix", "window_targets", "window_label_text", "tag_folds",
           "sample_negatives"]

def as_tag_table(files: pd.DataFrame) -> pd.DataFrame:
    """The table with a ``labels`` column: a single-label table's ``label`` becomes a one-tag set."""
    if "labels" in files.columns:
        return files
    out = files.copy()
    if "events" in files.columns:
        out["labels"] = [tags_json(t) for t in file_tags(files)]
    else:
        out["labels"] = [tags_json([] if v is None or v != v or str(v) == "" else [str(v)]) for v in files["label"]]
    return out


def tag_classes(files: pd.DataFrame) -> List[str]:
    """Every tag of a file table (its ``labels`` and ``events``), sorted numeric-aware.

    Raises
    ------
    DataError
        A table without any tag (nothing to learn).
    """
    tags = {t for ts in file_tags(files) for t in ts}
    if "events" in files.columns:
        tags |= {t for v in files["events"] for *_, t in parse_events(v)}
    if not tags:
        raise DataError("The multi-label input has no tag at all (every 'labels' cell is empty and no event is "
                        "annotated). Label some files, or some time intervals of the recordings.")
    return sort_labels(tags)


def tag_matrix(tag_lists: Sequence[Sequence[str]], classes: Sequence[str], *, where: str = "the input") -> np.ndarray:
    """Multi-hot rows of tag lists, shape (n, n_classes), float32; a tag not in ``classes`` is a DataError."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(tag_lists), len(classes)), dtype=np.float32)
    unknown = sorted({t for ts in tag_lists for t in ts if t not in index})
    if unknown:
        raise DataError(f"{where} has tag(s) {unknown[:10]} that are not among the {len(classes)} classes "
                        f"({', '.join(classes[:20])}). Check their spelling, or train on them first.")
    for i, ts in enumerate(tag_lists):
        for t in ts:
            out[i, index[t]] = 1.0
    return out


def _event_targets(starts: np.ndarray, ends: np.ndarray, events: list, index: dict, n_classes: int, *,
                   min_seconds: float, min_fraction: Optional[float]) -> np.ndarray:
    """(n_windows, n_classes) multi-hot targets of one recording's windows from its events."""
    out = np.zeros((len(starts), n_classes), dtype=np.float32)
    if not events:
        return out
    e0 = np.array([e[0] for e in events])[None, :]  # (1, n_events)
    e1 = np.array([e[1] for e in events])[None, :]
    overlap = np.minimum(ends[:, None], e1) - np.maximum(starts[:, None], e0)  # (n_windows, n_events)
    hit = (overlap > 0) & (overlap >= min_seconds - 1e-9)
    if min_fraction is not None:
        hit |= (overlap > 0) & (overlap >= min_fraction * (e1 - e0) - 1e-9)
    cls = np.array([index[e[2]] for e in events])
    for j in range(len(events)):
        out[hit[:, j], cls[j]] = 1.0
    return out


def window_targets(files: pd.DataFrame, segments: pd.DataFrame, classes: Sequence[str], *,
                   min_seconds: float = 0.25, min_fraction: Optional[float] = 0.5,
                   offset: float = 0.0) -> np.ndarray:
    """The multi-hot target of every window.

    Parameters
    ----------
    files : pd.DataFrame [shape=(n_files, ...)]
        ``file_id`` and ``labels`` (and ``events`` for annotated recordings).
    segments : pd.DataFrame [shape=(n_windows, ...)]
        ``file_id, start, end`` (seconds from the start of the loaded audio).
    classes : sequence of str [shape=(n_classes,)]
    min_seconds : float >= 0
        An event labels a window it overlaps by at least this many seconds.
    min_fraction : float in (0, 1] or None
        ... or by at least this fraction of the event's duration (a short
        call inside a window); ``None``: the seconds rule alone.
    offset : float
        Seconds skipped at the start of each file when it was loaded
        (:attr:`~specimg.config.AudioConfig.offset`): window times plus
        ``offset`` are the recording's times, which the events use.

    Returns
    -------
    targets : np.ndarray [shape=(n_windows, n_classes), dtype=float32]

    Examples
    --------
    One 3 s recording, an event of '7' from 0.9 to 1.4 s, 1 s windows at a 0.5 s hop:

    >>> files = pd.DataFrame({"file_id": [0], "labels": ['["7"]'], "events": ['[[0.9, 1.4, "7"]]']})
    >>> seg = pd.DataFrame({"file_id": 0, "start": [0.0, 0.5, 1.0, 1.5, 2.0], "end": [1.0, 1.5, 2.0, 2.5, 3.0]})
    >>> window_targets(files, seg, ["7"])[:, 0].tolist()  # 0.1 s, 0.5 s, 0.4 s, 0, 0 of the event
    [0.0, 1.0, 1.0, 0.0, 0.0]
    """
    if isinstance(min_seconds, bool) or not isinstance(min_seconds, (int, float)) or not min_seconds >= 0:
        raise ParameterError(f"The 'min_seconds' parameter of window_targets must be a number >= 0. Got "
                             f"{min_seconds!r}.")
    if min_fraction is not None and not (isinstance(min_fraction, (int, float)) and 0 < min_fraction <= 1):
        raise ParameterError(f"The 'min_fraction' parameter of window_targets must be in (0, 1] or None. Got "
                             f"{min_fraction!r}.")
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(segments), len(classes)), dtype=np.float32)
    fids = segments["file_id"].to_numpy()
    rows_of = pd.Series(np.arange(len(segments))).groupby(fids).indices
    has_events = "events" in files.columns
    tags = tag_matrix(file_tags(files), classes, where="the file table")
    for i, fid in enumerate(files["file_id"].to_numpy()):
        rows = rows_of.get(fid)
        if rows is None:
            continue
        events = parse_events(files["events"].iat[i]) if has_events else []
        if has_events and not (isinstance(files["events"].iat[i], float) and math.isnan(files["events"].iat[i])):
            starts = segments["start"].to_numpy(dtype=np.float64)[rows] + offset
            ends = segments["end"].to_numpy(dtype=np.float64)[rows] + offset
            unknown = sorted({e[2] for e in events} - set(index))
            if unknown:
                raise DataError(f"The events of {files['path'].iat[i] if 'path' in files else fid!r} have tag(s) "
                                f"{unknown} that are not classes ({', '.join(classes)}).")
            out[rows] = _event_targets(starts, ends, events, index, len(classes), min_seconds=float(min_seconds),
                                       min_fraction=min_fraction)
        else:
            out[rows] = tags[i]
    return out


def window_label_text(targets: np.ndarray, classes: Sequence[str]) -> List[str]:
    """``'a;b'`` per row of multi-hot targets (the ``labels`` column of the window tables)."""
    names = np.asarray(list(classes), dtype=object)
    return [tags_text(names[np.flatnonzero(row > 0.5)]) for row in np.asarray(targets)]


def tag_folds(files: pd.DataFrame, classes: Sequence[str], *, n_splits: int = 5,
                     group_column: Optional[str] = None, seed: int = 0, warn: bool = True) -> np.ndarray:
    """Assign every file to a fold: groups kept whole, tags balanced across folds.

    Each group (a file, or the files sharing a ``group_column`` value) is one
    sample whose tag set is the union of its files' tags, plus a "no tag"
    column for groups without any; iterative stratification
    (``iterstrat.ml_stratifiers.MultilabelStratifiedKFold``) spreads every
    tag over the folds as evenly as the groups allow. Pseudo-labelled rows
    (a true ``pseudo`` column) get fold ``-1``.

    Parameters
    ----------
    files : pd.DataFrame [shape=(n_files, ...)]
        With ``labels`` (and ``events``).
    classes : sequence of str
    n_splits : int >= 2
    group_column : str or None
    seed : int
    warn : bool
        Log a warning for tags found in fewer groups than folds.

    Returns
    -------
    folds : np.ndarray [shape=(n_files,), dtype=int64]

    Raises
    ------
    ParameterError
        Bad ``n_splits``, a missing group column, more folds than groups.
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    check_int(n_splits, "n_splits", owner="tag_folds", low=2)
    if group_column is not None and group_column not in files.columns:
        available = [c for c in files.columns if c not in ("abspath", "labels", "events")]
        raise ParameterError(f"The group column {group_column!r} (group_column) is not in the input table. "
                             f"Available columns: {available}. Add it to the input CSV or pick one of these.")
    real = ~pseudo_mask(files)
    y = tag_matrix(file_tags(files), classes, where="the input")[real]
    keys = (files[group_column].astype(str) if group_column else files["path"].astype(str)).to_numpy()[real]
    names, groups = np.unique(keys, return_inverse=True)
    if n_splits > len(names):
        what = f"values of {group_column!r}" if group_column else "files"
        raise ParameterError(f"The 'n_splits' parameter must be <= the number of groups: there are only {len(names)} "
                             f"{what} to split, got n_splits={n_splits}. Lower n_splits (--folds) to at most "
                             f"{len(names)}.")
    yg = np.zeros((len(names), len(classes) + 1), dtype=np.int64)
    np.maximum.at(yg[:, :-1], groups, y.astype(np.int64))
    yg[:, -1] = yg[:, :-1].sum(axis=1) == 0
    rare = [c for c, k in zip(classes, yg[:, :-1].sum(axis=0)) if k < n_splits]
    if rare and warn:
        _logger.warning("tag(s) %s occur in fewer groups than the %d folds: some folds validate without them "
                        "(their scores there are left out)", rare[:10], n_splits)
    group_fold = np.full(len(names), -1, dtype=np.int64)
    splitter = MultilabelStratifiedKFold(n_splits=int(n_splits), shuffle=True, random_state=int(seed))
    for k, (_, val) in enumerate(splitter.split(np.zeros(len(names)), yg)):
        group_fold[val] = k
    folds = np.full(len(files), -1, dtype=np.int64)
    folds[real] = group_fold[groups]
    return folds


def sample_negatives(rows: np.ndarray, targets: np.ndarray, ratio: Optional[float], *, seed: int) -> np.ndarray:
    """Training rows with at most ``ratio`` negative windows (no tag) per positive one, drawn with ``seed``.

    Parameters
    ----------
    rows : np.ndarray [shape=(n,), dtype=int]
        Window rows of a training split.
    targets : np.ndarray [shape=(n_windows, n_classes)]
        Multi-hot targets of every window.
    ratio : float > 0 or None
        ``None`` keeps every negative.
    seed : int

    Returns
    -------
    rows : np.ndarray [shape=(m,), dtype=int64]
        Sorted.

    Examples
    --------
    >>> t = np.array([[1], [0], [0], [0], [0]], dtype=np.float32)
    >>> len(sample_negatives(np.arange(5), t, 2.0, seed=0))  # the positive and 2 of the 4 negatives
    3
    """
    rows = np.asarray(rows, dtype=np.int64)
    if ratio is None:
        return rows
    negative = np.asarray(targets)[rows].sum(axis=1) == 0
    n_pos, neg = int((~negative).sum()), rows[negative]
    keep = min(len(neg), int(math.ceil(float(ratio) * n_pos))) if n_pos else len(neg)
    picked = np.random.default_rng(seed).choice(neg, size=keep, replace=False) if keep < len(neg) else neg
    return np.sort(np.concatenate([rows[~negative], picked]))

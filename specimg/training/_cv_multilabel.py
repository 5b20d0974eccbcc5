"""The multi-label parts of :func:`~specimg.training.train_cv`: targets, folds, tables, scores, thresholds.

:mod:`specimg.training._cv` calls these where a run is multi-label (the task
resolved once, from the input or ``TrainConfig.multi_label``, and stored in
``config.json``); single-label runs never reach this module.

- windows get multi-hot targets (file tags, or events by overlap:
  :func:`specimg.data.window_targets`); folds keep groups whole and balance
  tags (:func:`specimg.data.multilabel_folds`);
- the validation metric is computed on files (window scores pooled per class)
  for tag tables, and on windows for annotated recordings (a long recording
  holds many events: its windows are what is detected);
- the out-of-fold window table shows each window's ``labels``; the file table
  ``labels`` (the union of its windows'), ``prediction`` (the tags at or above
  their threshold) and one ``prob_<class>`` score per class;
- per-class thresholds of maximum F1 are fitted on the pooled out-of-fold
  scores, for files and for windows, and stored with the run
  (:attr:`Run.THRESHOLDS`).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ..audio import parse_tags, tags_text
from ..config import TrainConfig
from ..data import (as_multilabel, multilabel_folds, resolve_task, tag_classes, tag_matrix, window_label_text,
                    window_targets)
from ..exceptions import ParameterError
from ..scoring import aggregate_segments, fit_thresholds, multilabel_scores
from ._run import Run

_logger = logging.getLogger(__name__)

__all__ = ["is_multilabel", "check_folds", "refresh_tags", "targets_and_folds", "splitter", "fold_tables",
           "fold_scores", "SCORE_KEYS", "metrics", "thresholds", "apply_thresholds", "summary"]

#: The per-fold scores of a multi-label run (``fold.json`` and ``metrics.json``).
SCORE_KEYS = ("macro_ap", "micro_ap", "macro_roc_auc", "window_macro_ap", "window_macro_roc_auc")


def is_multilabel(files: pd.DataFrame, config: TrainConfig) -> bool:
    return resolve_task(files, config.multi_label) == "multi-label"


def check_folds(table: pd.DataFrame, config: TrainConfig) -> None:
    """The fold plan of an input table, before any audio work (a missing group column, too many folds...)."""
    files = as_multilabel(table)
    multilabel_folds(files, tag_classes(files), n_splits=config.n_splits, group_column=config.group_column,
                     seed=config.seed, warn=False)


def refresh_tags(data: Any, table: pd.DataFrame) -> None:
    """Give a cache's file table the input table's tags and events (a reused cache keeps the images, not the tags)."""
    cols = [c for c in ("labels", "events") if c in table.columns]
    if not cols:
        return
    files = data.files.copy()
    by_path = table.set_index(table["path"].astype(str))
    for c in cols:
        known = by_path[c].to_dict()
        old = files[c] if c in files.columns else pd.Series([None] * len(files), index=files.index)
        files[c] = [known.get(str(p), o) for p, o in zip(files["path"], old)]
    data.files = files


def targets_and_folds(files: pd.DataFrame, segments: pd.DataFrame, config: TrainConfig, *, offset: float,
                      window_seconds: float) -> Tuple[List[str], np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(classes, window targets (n_windows, C), fold of every file, the validation scoring unit of every window).

    The scoring unit is ``None`` (the file) for tag tables and each window's
    own row for annotated recordings.
    """
    files = as_multilabel(files)
    has_events = "events" in files.columns
    if has_events and config.event_min_seconds > window_seconds:
        raise ParameterError(f"event_min_seconds={config.event_min_seconds} (--event-min-seconds) is longer than "
                             f"the {window_seconds} s windows, so no window could overlap an event that much. "
                             "Lower it below the window length, or render longer windows (--seconds).")
    classes = tag_classes(files)
    targets = window_targets(files, segments, classes, min_seconds=config.event_min_seconds,
                             min_fraction=config.event_min_fraction, offset=offset)
    folds = multilabel_folds(files, classes, n_splits=config.n_splits, group_column=config.group_column,
                             seed=config.seed)
    score_ids = np.arange(len(segments), dtype=np.int64) if has_events else None
    return classes, targets, folds, score_ids


def splitter(classes: Sequence[str], config: TrainConfig) -> Any:
    """The run's fold rule for a subset of its files (``select_epoch='inner'``): tags balanced, groups whole."""
    def split(table: pd.DataFrame, n_splits: int) -> np.ndarray:
        return multilabel_folds(as_multilabel(table), list(classes), n_splits=n_splits,
                                group_column=config.group_column, seed=config.seed, warn=False)

    return split


def _pool(probs: np.ndarray, ids: np.ndarray, pooling: str) -> Tuple[np.ndarray, np.ndarray]:
    return aggregate_segments(probs, ids, method=pooling, normalize=False)


def fold_tables(k: int, *, files: pd.DataFrame, segments: pd.DataFrame, classes: Sequence[str],
                window_file_row: np.ndarray, file_ids: np.ndarray, fid_to_row: Dict[int, int], targets: np.ndarray,
                val_rows: np.ndarray, probs: np.ndarray, pooling: str) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """A fold's out-of-fold window table (with each window's ``labels``) and file table (scores pooled per class)."""
    cols = [f"prob_{c}" for c in classes]
    seg = segments.iloc[val_rows]
    paths = files["path"].to_numpy()
    seg_df = pd.DataFrame({"path": paths[window_file_row[val_rows]], "segment": seg["segment"].to_numpy(),
                           "start": seg["start"].to_numpy(), "end": seg["end"].to_numpy(), "fold": k,
                           "labels": window_label_text(targets[val_rows], classes)})
    seg_df[cols] = probs
    ids, fscores = _pool(probs, file_ids[val_rows], pooling)
    _, ftruth = _pool(targets[val_rows], file_ids[val_rows], "max")
    frows = np.array([fid_to_row[int(f)] for f in ids], dtype=np.int64)
    order = np.argsort(frows, kind="stable")
    frows, fscores, ftruth = frows[order], fscores[order], ftruth[order]
    file_df = pd.DataFrame({"path": paths[frows], "labels": window_label_text(ftruth, classes), "fold": k,
                            "prediction": _tags_at(fscores, classes, np.full(len(classes), 0.5))})
    file_df[cols] = fscores
    return seg_df, file_df


def _tags_at(scores: np.ndarray, classes: Sequence[str], thresholds: np.ndarray) -> List[str]:
    names = np.asarray(list(classes), dtype=object)
    return [tags_text(names[np.flatnonzero(row >= thresholds)]) for row in np.asarray(scores)]


def _truth(frame: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    return tag_matrix([parse_tags(v) for v in frame["labels"]], classes, where="the out-of-fold table") > 0.5


def _scores_of(frame: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    return frame[[f"prob_{c}" for c in classes]].to_numpy(dtype=np.float64)


def fold_scores(seg_df: pd.DataFrame, file_df: pd.DataFrame, classes: Sequence[str]) -> Dict[str, Optional[float]]:
    """File-level and window-level macro AP / ROC-AUC of a fold's out-of-fold tables (None where undefined)."""
    f = multilabel_scores(_truth(file_df, classes), _scores_of(file_df, classes))
    w = multilabel_scores(_truth(seg_df, classes), _scores_of(seg_df, classes))
    out = {"macro_ap": f["macro_ap"], "micro_ap": f["micro_ap"], "macro_roc_auc": f["macro_roc_auc"],
           "window_macro_ap": w["macro_ap"], "window_macro_roc_auc": w["macro_roc_auc"]}
    return {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in out.items()}


def metrics(config: TrainConfig, done: List[int], per_fold: Dict[str, Any], oof_files: pd.DataFrame,
            oof_segments: pd.DataFrame, classes: Sequence[str], *, level: str = "file") -> Dict[str, Any]:
    """``metrics.json`` of a multi-label run: per fold, mean / std over folds, pooled out-of-fold scores.

    ``level``: what the best epoch was chosen on, ``'file'`` (tag tables) or
    ``'window'`` (annotated recordings).
    """
    out: Dict[str, Any] = {"task": "multi-label", "metric": config.multi_label_metric, "level": level,
                           "pooling": config.multi_label_pooling, "n_splits": config.n_splits, "folds_done": done,
                           "folds": per_fold, "group_column": config.group_column,
                           "select_epoch": config.select_epoch}
    if not done:
        return out
    mean, std = {}, {}
    for key in SCORE_KEYS:
        vals = np.array([per_fold[str(k)][key] for k in done if per_fold[str(k)].get(key) is not None], float)
        mean[key] = float(vals.mean()) if len(vals) else None
        std[key] = float(vals.std()) if len(vals) else None
    out["mean"], out["std"] = mean, std
    out["oof"] = fold_scores(oof_segments, oof_files, classes)
    return out


def thresholds(oof_files: pd.DataFrame, oof_segments: pd.DataFrame, classes: Sequence[str],
               config: TrainConfig) -> Dict[str, Any]:
    """``thresholds.json``: per-class thresholds of maximum F1 on the out-of-fold file and window scores."""
    ft = fit_thresholds(_truth(oof_files, classes), _scores_of(oof_files, classes))
    wt = fit_thresholds(_truth(oof_segments, classes), _scores_of(oof_segments, classes))
    return {"classes": list(classes), "rule": "max F1 on the out-of-fold scores (score >= threshold)",
            "pooling": config.multi_label_pooling, "file": dict(zip(classes, map(float, ft))),
            "window": dict(zip(classes, map(float, wt))), "n_files": int(len(oof_files)),
            "n_windows": int(len(oof_segments))}


def apply_thresholds(oof_files: pd.DataFrame, classes: Sequence[str], fitted: Dict[str, Any]) -> pd.DataFrame:
    """The out-of-fold file table with ``prediction`` = the tags at or above their fitted file threshold."""
    t = np.array([fitted["file"][c] for c in classes])
    out = oof_files.copy()
    out["prediction"] = _tags_at(_scores_of(out, classes), classes, t) if len(out) else []
    return out


def summary(run_dir: Any, folds: List[int], m: Dict[str, Any]) -> str:
    """The few lines :meth:`CVResult.summary` prints for a multi-label run."""

    def fmt(v: Optional[float]) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    lines = [f"{len(folds)}/{m['n_splits']} fold(s) done in {run_dir} (multi-label)"]
    w = "window_" if m.get("level") == "window" else ""  # annotated recordings: their windows are what counts
    other = "" if w else "window_"
    if folds:
        lines.append(f"{w.rstrip('_') or 'file'} macro AP {fmt(m['mean'][w + 'macro_ap'])} +- "
                     f"{fmt(m['std'][w + 'macro_ap'])}   macro ROC-AUC {fmt(m['mean'][w + 'macro_roc_auc'])}   "
                     f"{other.rstrip('_') or 'file'} macro AP {fmt(m['mean'][other + 'macro_ap'])}   "
                     "(mean +- std over folds)")
        for k in folds:
            f = m["folds"][str(k)]
            lines.append(f"  fold {k}: macro AP {fmt(f[w + 'macro_ap'])} ({w.rstrip('_') or 'file'}s)  "
                         f"({f['n_files']} files, {f['n_windows']} windows, {m.get('select_epoch', 'best')} epoch "
                         f"{f['best_epoch']}/{f['epochs_run']})")
    return "\n".join(lines)


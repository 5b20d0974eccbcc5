"""The multi-label rows of :class:`~specimg.predict.Predictor`'s tables: tags, thresholded predictions, window labels.

A multi-label run's predictor (``activation='sigmoid'``) writes

- per file: ``path, [labels], prediction, prob_<class>...`` where ``prob_``
  are the pooled sigmoid scores, ``prediction`` the tags whose score reaches
  the run's file threshold (``;``-separated, empty for none) and ``labels``
  the input's true tags when it has them;
- per window: ``path, segment, start, end, [labels], prob_<class>...`` with
  each window's true tags (from the input's events by the run's overlap rule,
  or the file's tags).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd

from ..audio import file_tags, is_multilabel_table, sort_labels, tags_text
from ..data import window_label_text, window_targets

_logger = logging.getLogger(__name__)

__all__ = ["run_task_options", "TableTags", "cache_file_columns", "tags_at"]


def run_task_options(run: Any, aggregate: Optional[str]) -> Dict[str, Any]:
    """The Predictor options a run's task implies (activation, pooling, thresholds, overlap rule)."""
    if not run.multi_label:
        return {"aggregate": aggregate or "mean"}
    cfg = run.train_config
    return {"activation": "sigmoid", "aggregate": aggregate or cfg.multi_label_pooling,
            "thresholds": run.thresholds, "event_overlap": (cfg.event_min_seconds, cfg.event_min_fraction)}


def _vector(thresholds: Optional[Dict[str, Any]], which: str, classes: List[str]) -> np.ndarray:
    table = (thresholds or {}).get(which) or {}
    return np.array([float(table.get(c, 0.5)) for c in classes])


def tags_at(scores: np.ndarray, classes: List[str], thresholds: np.ndarray) -> str:
    """``'a;b'``: the classes whose score is at or above their threshold."""
    return tags_text([c for c, s, t in zip(classes, scores, thresholds) if s >= t])


class TableTags:
    """The true tags of an input table's files and windows, and the thresholds of the predictions."""

    def __init__(self, table: pd.DataFrame, predictor: Any) -> None:
        self.table, self.pred = table, predictor
        self.classes: List[str] = list(predictor.classes)
        self.has_tags = is_multilabel_table(table)
        self.file_columns = ["labels"] if self.has_tags else []
        self.segment_columns = ["labels"] if self.has_tags else []
        self.file_t = _vector(predictor.thresholds, "file", self.classes)
        self.tags = file_tags(table) if self.has_tags else [[] for _ in range(len(table))]
        unknown = sorted({t for ts in self.tags for t in ts} - set(self.classes))
        if unknown:
            _logger.warning("the input's tag(s) %s are not classes of the run (it knows %s); they are kept in the "
                            "'labels' columns but no model scores them", unknown[:10], ", ".join(self.classes))
        self.all_classes = sort_labels(set(self.classes) | set(unknown))

    def file_row(self, i: int, wp: np.ndarray) -> Dict[str, Any]:
        fp = self.pred._pool(wp)
        rec: Dict[str, Any] = {"path": self.table["path"].iat[i]}
        if self.has_tags:
            rec["labels"] = tags_text(self.tags[i])
        rec["prediction"] = tags_at(fp, self.classes, self.file_t)
        rec.update({f"prob_{c}": float(v) for c, v in zip(self.classes, fp)})
        return rec

    def _window_labels(self, i: int, bounds: np.ndarray) -> List[str]:
        if "events" in self.table.columns and isinstance(self.table["events"].iat[i], str):
            files = pd.DataFrame({"file_id": [0], "path": [self.table["path"].iat[i]],
                                  "labels": [self.table["labels"].iat[i]], "events": [self.table["events"].iat[i]]})
            seg = pd.DataFrame({"file_id": 0, "start": np.asarray(bounds)[:, 0], "end": np.asarray(bounds)[:, 1]})
            lo, frac = self.pred.event_overlap
            t = window_targets(files, seg, self.all_classes, min_seconds=lo, min_fraction=frac,
                               offset=self.pred.render_config.audio.offset)
            return window_label_text(t, self.all_classes)
        return [tags_text(self.tags[i])] * len(bounds)

    def segment_rows(self, i: int, bounds: np.ndarray, wp: np.ndarray) -> List[Dict[str, Any]]:
        path = self.table["path"].iat[i]
        labels = self._window_labels(i, bounds) if self.has_tags else None
        out = []
        for s, (a, b) in enumerate(bounds):
            seg: Dict[str, Any] = {"path": path, "segment": s, "start": float(a), "end": float(b)}
            if labels is not None:
                seg["labels"] = labels[s]
            seg.update({f"prob_{c}": float(v) for c, v in zip(self.classes, wp[s])})
            out.append(seg)
        return out


def cache_file_columns(predictor: Any, files: pd.DataFrame, scores: np.ndarray, out: pd.DataFrame) -> pd.DataFrame:
    """``labels`` (when the cache's files have tags) and the thresholded ``prediction`` of an image-cache input."""
    classes = list(predictor.classes)
    if is_multilabel_table(files):
        out["labels"] = [tags_text(t) for t in file_tags(files)]
    t = _vector(predictor.thresholds, "file", classes)
    out["prediction"] = [tags_at(row, classes, t) for row in scores]
    return out

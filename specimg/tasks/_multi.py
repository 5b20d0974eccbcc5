"""A set of tags per file or per window: a sigmoid per class, binary losses, tag-balanced folds, thresholds."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ..audio import file_tags, parse_tags, sort_labels, tags_text
from ..data import as_tag_table, sample_negatives, tag_classes, tag_folds, tag_matrix, window_label_text, \
    window_targets
from ..exceptions import DataError, ParameterError
from ..scoring import fit_thresholds, tag_metrics, tag_scores
from ._base import ReportSection, Task

__all__ = ["MultiLabel"]


class MultiLabel(Task):
    """Tags (a ``labels`` column, multi-hot class columns, or events of annotated recordings): one sigmoid per
    class, scored by average precision, decided by per-class thresholds fitted on the out-of-fold scores.

    - targets: a multi-hot row per window, the file's tags, or for an annotated recording the tag of every
      event the window overlaps by ``event_min_seconds`` or ``event_min_fraction`` of the event
      (:func:`~specimg.data.window_targets`);
    - folds: groups kept whole and tags balanced by iterative stratification (:func:`~specimg.data.tag_folds`);
      at most ``negative_ratio`` windows without a tag per tagged one train a fold;
    - loss: ``bce``, ``focal`` or ``asymmetric`` with ``pos_weight``; mixup targets by ``mixup_targets``;
    - validation: macro / micro AP and macro ROC-AUC on files (window scores pooled per class, ``pooling``) for
      tag tables, on windows for annotated recordings (a long recording holds many events: its windows are
      what is detected);
    - decision: the tags whose score reaches their class's threshold of maximum F1 on the out-of-fold scores,
      for files and for windows (``thresholds.json``).
    """

    kind = "multi-label"
    activation = "sigmoid"
    truth_column = "labels"
    normalize_pooled = False
    score_keys = ("macro_ap", "micro_ap", "macro_roc_auc", "window_macro_ap", "window_macro_roc_auc")

    # ------------------------------------------------------------------ labels and folds
    def check_input(self, table: pd.DataFrame, *, n_splits: int, group_column: Optional[str], seed: int) -> None:
        files = as_tag_table(table)
        tag_folds(files, tag_classes(files), n_splits=n_splits, group_column=group_column, seed=seed, warn=False)

    def prepare_files(self, files: pd.DataFrame, table: Optional[pd.DataFrame] = None) -> pd.DataFrame:
        """A reused cache keeps its images, not its tags: the input table's tags and events count."""
        cols = [c for c in ("labels", "events") if table is not None and c in table.columns]
        if not cols:
            return files
        files = files.copy()
        by_path = table.set_index(table["path"].astype(str))  # type: ignore[union-attr]
        for c in cols:
            known = by_path[c].to_dict()
            old = files[c] if c in files.columns else pd.Series([None] * len(files), index=files.index)
            files[c] = [known.get(str(p), o) for p, o in zip(files["path"], old)]
        return files

    def targets(self, files: pd.DataFrame, segments: pd.DataFrame, classes: Sequence[str], *, offset: float = 0.0,
                window_seconds: Optional[float] = None) -> Tuple[List[str], np.ndarray, Optional[np.ndarray]]:
        files = as_tag_table(files)
        has_events = "events" in files.columns
        cfg = self.config
        if has_events and window_seconds is not None and cfg.event_min_seconds > window_seconds:  # type: ignore
            raise ParameterError(f"event_min_seconds={cfg.event_min_seconds} (--event-min-seconds) is longer than "
                                 f"the {window_seconds} s windows, so no window could overlap an event that much. "
                                 "Lower it below the window length, or render longer windows (--seconds).")
        tags = tag_classes(files)
        targets = window_targets(files, segments, tags, min_seconds=float(cfg.event_min_seconds),  # type: ignore
                                 min_fraction=cfg.event_min_fraction or None, offset=offset)
        score_ids = np.arange(len(segments), dtype=np.int64) if has_events else None
        return tags, targets, score_ids

    def folds(self, files: pd.DataFrame, classes: Sequence[str], *, n_splits: int, group_column: Optional[str],
              seed: int, warn: bool = True) -> np.ndarray:
        return tag_folds(as_tag_table(files), list(classes), n_splits=n_splits, group_column=group_column,
                         seed=seed, warn=warn)

    def training_rows(self, rows: np.ndarray, targets: np.ndarray, *, seed: int) -> np.ndarray:
        return sample_negatives(rows, targets, self.config.negative_ratio, seed=seed)

    def file_truth(self, targets: np.ndarray, window_file_row: np.ndarray, n_files: int,
                   classes: Sequence[str]) -> Optional[List[str]]:
        tags = np.zeros((n_files, len(classes)), dtype=np.float32)  # a file's tags: the union of its windows'
        np.maximum.at(tags, window_file_row, targets)
        return window_label_text(tags, classes)

    # ------------------------------------------------------------------ fitting
    def check_targets(self, train_data: Any, val_data: Any, num_classes: Optional[int], model: Any) -> int:
        if len(train_data) == 0:
            raise DataError("The training split is empty: every file is in the validation fold. Use more files or "
                            "fewer folds.")
        for name, data in (("training", train_data), ("validation", val_data)):
            if data is None:
                continue
            t = np.asarray(data.targets)
            if t.ndim != 2 or (t.size and not np.isin(t, (0.0, 1.0)).all()):
                raise DataError(f"A multi-label fit needs multi-hot {name} targets of shape (n, n_classes) holding "
                                f"0 and 1. Got shape {t.shape}.")
            if name == "validation" and len(data) == 0:
                raise DataError("The validation split is empty.")
        n = int(np.asarray(train_data.targets).shape[1])
        if num_classes is not None and int(num_classes) != n:
            raise DataError(f"The multi-hot targets have {n} columns but num_classes is {num_classes}.")
        return n

    def loss(self, targets: np.ndarray, num_classes: int) -> Any:
        from ._losses import AsymmetricLoss, BCEWithLogits, FocalBCE, positive_weights

        cfg = self.config
        weight = positive_weights(np.asarray(targets), str(cfg.pos_weight))
        if cfg.loss == "focal":
            return FocalBCE(float(cfg.focal_gamma), pos_weight=weight)  # type: ignore[arg-type]
        if cfg.loss == "asymmetric":
            return AsymmetricLoss(float(cfg.focal_gamma), pos_weight=weight)  # type: ignore[arg-type]
        return BCEWithLogits(pos_weight=weight)

    def mixup_loss(self, criterion: Any, logits: Any, y: Any, perm: Any, lam: float) -> Any:
        """A mixed image's targets: the union of both images' tags (both sounds are in it), or their mix."""
        import torch

        mixed = torch.maximum(y, y[perm]) if self.config.mixup_targets == "union" else lam * y + (1.0 - lam) * y[perm]
        return criterion(logits, mixed)

    def validation(self, probs: np.ndarray, targets: np.ndarray, ids: np.ndarray) -> Dict[str, float]:
        """Window binary cross-entropy, and macro / micro AP and macro ROC-AUC of the pooled units.

        An undefined score (no class with a positive in the fold) is ``-1``: it never wins an epoch.
        """
        p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
        t = np.asarray(targets, dtype=np.float64)
        loss = float(-(t * np.log(p) + (1 - t) * np.log(1 - p)).mean())
        _, scores = self.pool(probs, ids)
        _, truth = self.pool(t, ids, "max")
        s = tag_scores(truth > 0.5, scores)
        clean = {k: (v if np.isfinite(v) else -1.0) for k, v in s.items()}
        return {"val_loss": loss, "val_macro_ap": clean["macro_ap"], "val_micro_ap": clean["micro_ap"],
                "val_macro_roc_auc": clean["macro_roc_auc"]}

    # ------------------------------------------------------------------ outputs
    def fold_tables(self, k: int, plan: Any, segments: pd.DataFrame, val_rows: np.ndarray,
                    probs: np.ndarray) -> Tuple[pd.DataFrame, pd.DataFrame]:
        classes = plan.classes
        cols = [f"prob_{c}" for c in classes]
        seg = segments.iloc[val_rows]
        paths = plan.files["path"].to_numpy()
        seg_df = pd.DataFrame({"path": paths[plan.window_file_row[val_rows]], "segment": seg["segment"].to_numpy(),
                               "start": seg["start"].to_numpy(), "end": seg["end"].to_numpy(), "fold": k,
                               "labels": window_label_text(plan.targets[val_rows], classes)})
        seg_df[cols] = probs
        ids, fscores = self.pool(probs, plan.file_ids[val_rows])
        _, ftruth = self.pool(plan.targets[val_rows], plan.file_ids[val_rows], "max")
        frows = np.array([plan.fid_to_row[int(f)] for f in ids], dtype=np.int64)
        order = np.argsort(frows, kind="stable")
        frows, fscores, ftruth = frows[order], fscores[order], ftruth[order]
        return seg_df, self.prediction_frame(paths[frows], fscores, classes, truth=window_label_text(ftruth, classes),
                                             folds=k)

    def truth(self, frame: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
        """The multi-hot truth (bool, (n, n_classes)) of a table's ``labels`` column."""
        return tag_matrix([parse_tags(v) for v in frame["labels"]], classes, where="the out-of-fold table") > 0.5

    @staticmethod
    def scores(frame: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
        return frame[[f"prob_{c}" for c in classes]].to_numpy(dtype=np.float64)

    def fold_scores(self, segments: pd.DataFrame, files: pd.DataFrame, classes: Sequence[str]) -> Dict[str, Any]:
        """File-level and window-level macro AP / ROC-AUC of out-of-fold tables (None where undefined)."""
        f = tag_scores(self.truth(files, classes), self.scores(files, classes))
        w = tag_scores(self.truth(segments, classes), self.scores(segments, classes))
        out = {"macro_ap": f["macro_ap"], "micro_ap": f["micro_ap"], "macro_roc_auc": f["macro_roc_auc"],
               "window_macro_ap": w["macro_ap"], "window_macro_roc_auc": w["macro_roc_auc"]}
        return {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in out.items()}

    def _metrics_facts(self, level: str) -> Dict[str, Any]:
        return {"level": level, "pooling": self.pooling}

    def fit_decision(self, oof_files: pd.DataFrame, oof_segments: Optional[pd.DataFrame],
                     classes: Sequence[str]) -> Optional[Dict[str, Any]]:
        """``thresholds.json``: per-class thresholds of maximum F1 on the out-of-fold file and window scores
        (files only when ``oof_segments`` is None)."""
        ft = fit_thresholds(self.truth(oof_files, classes), self.scores(oof_files, classes))
        out: Dict[str, Any] = {"classes": list(classes), "rule": "max F1 on the out-of-fold scores (score >= "
                               "threshold)", "pooling": self.pooling, "file": dict(zip(classes, map(float, ft))),
                               "n_files": int(len(oof_files))}
        if oof_segments is not None:
            wt = fit_thresholds(self.truth(oof_segments, classes), self.scores(oof_segments, classes))
            out.update(window=dict(zip(classes, map(float, wt))), n_windows=int(len(oof_segments)))
        return out

    def decide(self, scores: np.ndarray, classes: Sequence[str], decision: Optional[Mapping[str, Any]] = None,
               level: str = "file") -> List[str]:
        """The tags at or above their threshold (``decision[level]``; 0.5 without one), ``;``-separated."""
        table = (decision or {}).get(level) or {}
        t = np.array([float(table.get(str(c), 0.5)) for c in classes])
        names = np.asarray([str(c) for c in classes], dtype=object)
        return [tags_text(names[np.flatnonzero(row >= t)]) for row in np.asarray(scores)]

    def summary(self, run_dir: Any, folds: List[int], metrics: Mapping[str, Any]) -> str:
        m = metrics

        def fmt(v: Optional[float]) -> str:
            return "n/a" if v is None else f"{v:.4f}"

        lines = [f"{len(folds)}/{m['n_splits']} fold(s) done in {run_dir} ({self.kind})"]
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
                             f"({f['n_files']} files, {f['n_windows']} windows, {m.get('select_epoch', 'best')} "
                             f"epoch {f['best_epoch']}/{f['epochs_run']})")
        return "\n".join(lines)

    # ------------------------------------------------------------------ evaluation and its report
    def table_truth(self, table: pd.DataFrame) -> List[Any]:
        return file_tags(table)

    def input_truth(self, table: pd.DataFrame) -> Optional[List[str]]:
        if "labels" not in table.columns and "events" not in table.columns:
            return None
        return [tags_text(t) for t in file_tags(table)]

    window_truth_column = True
    headline_scores = (("macro_ap", "macro AP"), ("macro_roc_auc", "macro ROC-AUC"))

    def window_truth(self, table: pd.DataFrame, i: int, bounds: np.ndarray, classes: Sequence[str], *,
                     offset: float = 0.0) -> Optional[List[str]]:
        """Each window's tags: from the row's events by the task's overlap rule, or the file's tags."""
        if "labels" not in table.columns and "events" not in table.columns:
            return None
        if "events" in table.columns and isinstance(table["events"].iat[i], str):
            row = table.iloc[[i]].assign(file_id=0)
            seg = pd.DataFrame({"file_id": 0, "start": np.asarray(bounds)[:, 0], "end": np.asarray(bounds)[:, 1]})
            known = sort_labels(set(map(str, classes)) | set(tag_classes(as_tag_table(row))))
            t = window_targets(as_tag_table(row), seg, known, min_seconds=float(self.config.event_min_seconds),
                               min_fraction=self.config.event_min_fraction or None, offset=offset)
            return window_label_text(t, known)
        return [tags_text(file_tags(table.iloc[[i]])[0])] * len(bounds)

    def truth_of(self, values: Sequence[Any], classes: Sequence[str],
                 paths: Optional[Sequence[str]] = None, where: str = "the table") -> np.ndarray:
        tags = [list(v) if isinstance(v, (list, tuple)) else parse_tags(v) for v in values]
        unknown = sorted({t for ts in tags for t in ts} - set(map(str, classes)))
        if unknown:
            paths = list(paths) if paths is not None else [f"row {i}" for i in range(len(values))]
            first = next(p for p, ts in zip(paths, tags) if set(ts) & set(unknown))
            raise DataError(f"The labels include tag(s) {unknown[:10]} that the model never saw (it knows "
                            f"{', '.join(map(str, classes))}), e.g. file {first!r}. Evaluate on the run's classes "
                            "only: drop these tags or files, or fix their spelling.")
        return tag_matrix(tags, classes)

    def evaluation_metrics(self, truth: np.ndarray, scores: np.ndarray, classes: Sequence[str],
                           decision: Optional[Mapping[str, Any]] = None, level: str = "file") -> Dict[str, Any]:
        """AP, ROC-AUC and F1 at the thresholds of ``decision[level]`` (0.5 without), per class and averaged
        (:func:`~specimg.scoring.tag_metrics`), with the ``level`` scored ('file' or 'window')."""
        table = (decision or {}).get(level) or {}
        t = np.array([float(table.get(str(c), 0.5)) for c in classes])
        metrics = tag_metrics(truth, scores, classes, thresholds=t)
        metrics["level"] = level
        return metrics

    def headline(self, metrics: Mapping[str, Any]) -> List[Tuple[str, Any]]:
        return [(f"{metrics.get('level', 'file')}s", metrics["n_files"])] + [
            (name, metrics[key]) for key, name in (
                ("macro_ap", "macro average precision"), ("micro_ap", "micro average precision"),
                ("macro_roc_auc", "macro ROC-AUC"), ("macro_f1", "macro F1 at the thresholds"),
                ("micro_f1", "micro F1 at the thresholds"))]

    def per_class_table(self, metrics: Mapping[str, Any]) -> pd.DataFrame:
        rows = [{"class": c, **v} for c, v in metrics["per_class"].items()]
        return pd.DataFrame(rows, columns=["class", "ap", "roc_auc", "precision", "recall", "f1", "threshold",
                                           "support"])

    def report_sections(self, metrics: Mapping[str, Any]) -> List[ReportSection]:
        return [ReportSection("Per class", table=self.per_class_table(metrics)),
                ReportSection("Precision-recall curves", figures=(("pr_curves.png", "precision-recall curves"),))]

    def evaluation_line(self, metrics: Mapping[str, Any]) -> str:
        def f(v: Optional[float]) -> str:
            return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.4f}"

        m = metrics
        return (f"{m['n_files']} {m.get('level', 'file')}s ({self.kind}): macro AP {f(m['macro_ap'])}  micro AP "
                f"{f(m['micro_ap'])}  macro ROC-AUC {f(m['macro_roc_auc'])}  macro F1 {f(m['macro_f1'])}  "
                f"micro F1 {f(m['micro_f1'])}")

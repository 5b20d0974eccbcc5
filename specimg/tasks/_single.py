"""One label per file: softmax, cross-entropy, folds stratified by class, windows averaged, argmax."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ..config import TrainConfig
from ..data import file_folds
from ..exceptions import DataError
from ..scoring import classification_metrics, file_scores, label_scores
from ._base import ReportSection, Task

__all__ = ["SingleLabel"]


class SingleLabel(Task):
    """One label per file (the seed recipes): a softmax over the classes, chosen by argmax.

    - targets: the class index of each window's file (``-1`` unlabelled);
    - folds: groups (files, or a ``group_column`` such as a speaker) kept whole, classes stratified
      (:func:`~specimg.data.file_folds`);
    - loss: cross-entropy weighted by ``class_weights`` with ``label_smoothing``; mixup mixes the two losses;
    - validation and out-of-fold scores: accuracy and UAR of the files, window probabilities averaged
      (``pooling``) and renormalised;
    - decision: the most probable class.

    Examples
    --------
    >>> task = SingleLabel()
    >>> task.metric, task.pooling, task.activation
    ('accuracy', 'mean', 'softmax')
    """

    kind = "single-label"
    activation = "softmax"
    truth_column = "label"
    normalize_pooled = True
    score_keys = ("accuracy", "uar")

    # ------------------------------------------------------------------ labels and folds
    def check_input(self, table: pd.DataFrame, *, n_splits: int, group_column: Optional[str], seed: int) -> None:
        file_folds(table, n_splits=n_splits, group_column=group_column, seed=seed)

    def targets(self, files: pd.DataFrame, segments: pd.DataFrame, classes: Sequence[str], *, offset: float = 0.0,
                window_seconds: Optional[float] = None) -> Tuple[List[str], np.ndarray, Optional[np.ndarray]]:
        index = {str(c): i for i, c in enumerate(classes)}
        label_of = {int(f): (index.get(str(lab), -1) if _present(lab) else -1)
                    for f, lab in zip(files["file_id"].to_numpy(), files["label"].to_numpy())}
        fids = segments["file_id"].to_numpy(dtype=np.int64)
        return [str(c) for c in classes], np.array([label_of.get(int(f), -1) for f in fids], dtype=np.int64), None

    def folds(self, files: pd.DataFrame, classes: Sequence[str], *, n_splits: int, group_column: Optional[str],
              seed: int, warn: bool = True) -> np.ndarray:
        return file_folds(files, n_splits=n_splits, group_column=group_column, seed=seed)

    # ------------------------------------------------------------------ fitting
    def check_targets(self, train_data: Any, val_data: Any, num_classes: Optional[int], model: Any) -> int:
        t = np.asarray(train_data.targets)
        if len(train_data) == 0:
            raise DataError("The training split is empty: every file is in the validation fold. Use more files or "
                            "fewer folds.")
        if t.ndim != 1:
            raise DataError(f"A single-label fit needs one class index per training window; the targets have shape "
                            f"{t.shape} (multi-hot rows are a multi-label task: TaskConfig(kind='multi-label')).")
        if (t < 0).any():
            raise DataError(f"{int((t < 0).sum())} training window(s) have no label. Train on labelled files only.")
        if val_data is not None and (len(val_data) == 0 or (np.asarray(val_data.targets) < 0).any()):
            raise DataError("The validation split is empty or has unlabelled windows.")
        num_classes = num_classes or train_data.num_classes or getattr(model, "num_classes", None)
        num_classes = int(num_classes) if num_classes else int(t.max()) + 1
        if int(t.max()) >= num_classes:
            raise DataError(f"Training targets go up to {int(t.max())} but num_classes is {num_classes}.")
        return num_classes

    def loss(self, targets: np.ndarray, num_classes: int) -> Any:
        from torch import nn

        from ._losses import class_weights

        weight = class_weights(targets, num_classes, mode=self.config.class_weights)  # type: ignore[arg-type]
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=float(self.config.label_smoothing))

    def mixup_loss(self, criterion: Any, logits: Any, y: Any, perm: Any, lam: float) -> Any:
        return lam * criterion(logits, y) + (1.0 - lam) * criterion(logits, y[perm])

    def validation(self, probs: np.ndarray, targets: np.ndarray, ids: np.ndarray) -> Dict[str, float]:
        """Window cross-entropy and the accuracy and UAR of the files (window probabilities averaged)."""
        targets = np.asarray(targets)
        loss = float(-np.log(np.clip(probs[np.arange(len(targets)), targets], 1e-12, None)).mean())
        fids, fprobs = self.pool(probs, ids)
        first: Dict[int, int] = {}
        for f, t in zip(ids, targets):
            first.setdefault(int(f), int(t))
        scores = file_scores(fprobs.astype(np.float32), np.array([first[int(f)] for f in fids]))
        return {"val_loss": loss, "val_accuracy": scores["accuracy"], "val_uar": scores["uar"]}

    # ------------------------------------------------------------------ outputs
    def fold_tables(self, k: int, plan: Any, segments: pd.DataFrame, val_rows: np.ndarray,
                    probs: np.ndarray) -> Tuple[pd.DataFrame, pd.DataFrame]:
        cols = [f"prob_{c}" for c in plan.classes]
        seg = segments.iloc[val_rows]
        paths = plan.files["path"].to_numpy()
        seg_df = pd.DataFrame({"path": paths[plan.window_file_row[val_rows]], "segment": seg["segment"].to_numpy(),
                               "start": seg["start"].to_numpy(), "end": seg["end"].to_numpy(), "fold": k})
        seg_df[cols] = probs
        ids, fprobs = self.pool(probs, plan.file_ids[val_rows])
        fprobs = fprobs.astype(np.float32)
        frows = np.array([plan.fid_to_row[int(f)] for f in ids], dtype=np.int64)
        order = np.argsort(frows, kind="stable")
        frows, fprobs = frows[order], fprobs[order]
        return seg_df, self.prediction_frame(paths[frows], fprobs, plan.classes,
                                             truth=plan.files["label"].to_numpy()[frows], folds=k)

    def fold_scores(self, segments: pd.DataFrame, files: pd.DataFrame, classes: Sequence[str]) -> Dict[str, Any]:
        return label_scores(files["label"].to_numpy(), files["prediction"].to_numpy())

    def run_metrics(self, done: List[int], per_fold: Dict[str, Any], oof_files: pd.DataFrame,
                    oof_segments: pd.DataFrame, classes: Sequence[str], files: pd.DataFrame,
                    config: TrainConfig, *, level: str = "file") -> Dict[str, Any]:
        metrics = super().run_metrics(done, per_fold, oof_files, oof_segments, classes, files, config, level=level)
        if done and config.group_column:
            gmap = dict(zip(files["path"], files[config.group_column].astype(str)))
            g = oof_files["path"].map(gmap)
            correct = (oof_files["label"] == oof_files["prediction"]).to_numpy()
            metrics["per_group"] = {str(name): {"accuracy": float(correct[idx].mean()), "n_files": int(len(idx))}
                                    for name, idx in sorted(g.groupby(g).indices.items(), key=lambda kv: kv[0])}
        return metrics

    def decide(self, scores: np.ndarray, classes: Sequence[str], decision: Optional[Mapping[str, Any]] = None,
               level: str = "file") -> List[str]:
        scores = np.asarray(scores)
        if not len(scores):
            return []
        return list(np.asarray([str(c) for c in classes], dtype=object)[scores.argmax(1)])

    def summary(self, run_dir: Any, folds: List[int], metrics: Mapping[str, Any]) -> str:
        m = metrics
        kept = _KEPT[m.get("select_epoch", "best")]
        lines = [f"{len(folds)}/{m['n_splits']} fold(s) done in {run_dir}"]
        if folds:
            lines.append(f"file accuracy {m['mean']['accuracy']:.4f} +- {m['std']['accuracy']:.4f}   "
                         f"UAR {m['mean']['uar']:.4f} +- {m['std']['uar']:.4f}   (mean +- std over folds)")
            for k in folds:
                f = m["folds"][str(k)]
                lines.append(f"  fold {k}: accuracy {f['accuracy']:.4f}  UAR {f['uar']:.4f}  "
                             f"({f['n_files']} files, {kept} epoch {f['best_epoch']}/{f['epochs_run']})")
            if m.get("per_group"):
                lines.append(f"  per {m['group_column']}:")
                for g, v in m["per_group"].items():
                    lines.append(f"    {g}: accuracy {v['accuracy']:.4f} ({v['n_files']} files)")
        return "\n".join(lines)

    # ------------------------------------------------------------------ evaluation and its report
    example_images = True
    headline_scores = (("accuracy", "accuracy"), ("uar", "UAR"))

    def table_truth(self, table: pd.DataFrame) -> List[Any]:
        return [v if _present(v) else None for v in table["label"].tolist()]

    def input_truth(self, table: pd.DataFrame) -> Optional[List[str]]:
        if "label" not in table.columns or not table["label"].notna().any():
            return None
        return table["label"].tolist()

    def truth_of(self, values: Sequence[Any], classes: Sequence[str],
                 paths: Optional[Sequence[str]] = None, where: str = "the table") -> np.ndarray:
        paths = list(paths) if paths is not None else [f"row {i}" for i in range(len(values))]
        unlabelled = [p for p, v in zip(paths, values) if not _present(v) or v is pd.NA]
        if unlabelled:
            raise DataError(f"{len(unlabelled)} file(s) of {where} have no true label, e.g. {unlabelled[0]!r}. Fill "
                            "in their label, drop their rows, or pass --labels INPUT (labels=...) with the true labels "
                            "of every file.")
        y = np.asarray([str(v) for v in values], dtype=object)
        unseen = sorted(set(y) - set(map(str, classes)))
        if unseen:
            first = next(p for p, v in zip(paths, y) if v in unseen)
            n_unseen = int(sum(v in unseen for v in y))
            raise DataError(f"The labels include class(es) {unseen} that the model never saw (it knows "
                            f"{', '.join(map(str, classes))}), e.g. file {first!r}"
                            + (f" ({n_unseen} such files)" if n_unseen > 1 else "")
                            + ". Evaluate on the run's classes only: drop these files, or fix their labels.")
        return y

    def evaluation_metrics(self, truth: np.ndarray, scores: np.ndarray, classes: Sequence[str],
                           decision: Optional[Mapping[str, Any]] = None, level: str = "file") -> Dict[str, Any]:
        """Accuracy, UAR, macro-F1, log-loss, per-class scores and the confusion matrix
        (:func:`~specimg.scoring.classification_metrics`)."""
        return classification_metrics(truth, scores, classes)

    def headline(self, metrics: Mapping[str, Any]) -> List[Tuple[str, Any]]:
        return [("files", metrics["n_files"])] + [(k, float(metrics[k])) for k in ("accuracy", "uar", "macro_f1",
                                                                                    "log_loss")]

    def per_class_table(self, metrics: Mapping[str, Any]) -> pd.DataFrame:
        names = metrics["classes"]
        return pd.DataFrame({"class": names, **{k: [metrics["per_class"][c][k] for c in names]
                                                 for k in ("precision", "recall", "f1", "support")}})

    def report_sections(self, metrics: Mapping[str, Any]) -> List[ReportSection]:
        return [ReportSection("Per class", table=self.per_class_table(metrics),
                              figures=(("recall.png", "per-class recall"),)),
                ReportSection("Confusion matrix", figures=(("confusion.png", "confusion matrix"),))]

    def report_tables(self, metrics: Mapping[str, Any]) -> Dict[str, pd.DataFrame]:
        names = metrics["classes"]
        return {"confusion.csv": pd.DataFrame(metrics["confusion"], index=pd.Index(names, name="true"),
                                              columns=names)}

    def evaluation_line(self, metrics: Mapping[str, Any]) -> str:
        m = metrics
        return (f"{m['n_files']} files: accuracy {m['accuracy']:.4f}  UAR {m['uar']:.4f}  macro-F1 "
                f"{m['macro_f1']:.4f}  log-loss {m['log_loss']:.4f}")


#: How a summary names the kept epoch, by ``select_epoch``.
_KEPT = {"best": "best", "last": "last", "inner": "inner-best"}


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and np.isnan(v)) and str(v) != ""

"""The task of a run: what every stage asks instead of branching on single- or multi-label.

Resolved once from the config and the labels (:func:`resolve_task`), saved with the run (``config.json``:
``train.task``) and rebuilt from there (:meth:`Task.from_config`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from ..audio import has_tags
from ..config import TaskConfig, TrainConfig
from ..exceptions import ParameterError
from ._pooling import aggregate_segments

__all__ = ["Task", "ReportSection", "resolve_task", "task_kind"]


@dataclass(frozen=True)
class ReportSection:
    """One section of an evaluation report, as a task lays it out (:func:`specimg.predict.write_report` draws
    the figures it names and writes the section as Markdown or HTML)."""

    title: str
    table: Optional[pd.DataFrame] = None
    figures: Tuple[Tuple[str, str], ...] = ()  # (file name in the report folder, alt text)
    lines: Tuple[str, ...] = ()


def task_kind(files: pd.DataFrame, config: Union[TaskConfig, TrainConfig, None] = None) -> str:
    """``'multi-label'`` or ``'single-label'``: the config's kind, or (``'auto'``) what the file table holds.

    Raises
    ------
    ParameterError
        ``kind='single-label'`` for a table whose files hold tag sets.

    Examples
    --------
    >>> task_kind(pd.DataFrame({"path": ["a.wav"], "labels": ['["x", "y"]']}))
    'multi-label'
    >>> task_kind(pd.DataFrame({"path": ["a.wav"], "label": ["x"]}), TaskConfig(kind="multi-label"))
    'multi-label'
    """
    cfg = config.task if isinstance(config, TrainConfig) else (config or TaskConfig())
    tagged = has_tags(files)
    if cfg.kind == "auto":
        return "multi-label" if tagged else "single-label"
    if cfg.kind == "single-label" and tagged:
        raise ParameterError("task kind 'single-label' (--task single-label) asks for one label per file, but the "
                             "input holds tag sets ('labels' / multi-hot columns / events). Drop the option, or give "
                             "a table with one 'label' per file.")
    return cfg.kind


def resolve_task(files: pd.DataFrame, config: Union[TaskConfig, TrainConfig, None] = None) -> "Task":
    """The task of a run on ``files`` (a file table) with ``config``'s task options, every option filled in.

    Examples
    --------
    >>> t = resolve_task(pd.DataFrame({"path": ["a.wav"], "label": ["x"]}))
    >>> t.kind, t.activation, t.metric
    ('single-label', 'softmax', 'accuracy')
    """
    cfg = config.task if isinstance(config, TrainConfig) else (config or TaskConfig())
    return Task.for_kind(task_kind(files, cfg), cfg)


class Task(abc.ABC):
    """What a run learns and how each stage handles it (see the module's docstring).

    Build one with :func:`resolve_task` (from a file table), :meth:`for_kind` or :meth:`from_config` (a
    resolved config, as a run stores it). ``config`` is the resolved :class:`~specimg.config.TaskConfig`.
    """

    #: ``'single-label'`` or ``'multi-label'``.
    kind: ClassVar[str]
    #: The output activation: ``'softmax'`` (rows sum to 1) or ``'sigmoid'`` (a score per class).
    activation: ClassVar[str]
    #: The file table column of the truth: ``'label'`` or ``'labels'``.
    truth_column: ClassVar[str]
    #: Whether pooled file scores are renormalised (single-label probabilities).
    normalize_pooled: ClassVar[bool]
    #: The per-fold scores of ``fold.json`` and ``metrics.json``.
    score_keys: ClassVar[Tuple[str, ...]]

    _KINDS: ClassVar[Dict[str, type]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Task._KINDS[cls.kind] = cls

    def __init__(self, config: Optional[TaskConfig] = None) -> None:
        self.config = (config or TaskConfig()).resolve(self.kind)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    def __eq__(self, other: Any) -> bool:
        return type(other) is type(self) and other.config == self.config

    @classmethod
    def for_kind(cls, kind: str, config: Optional[TaskConfig] = None) -> "Task":
        if kind not in Task._KINDS:
            raise ParameterError(f"Unknown task {kind!r}; the tasks are {sorted(Task._KINDS)}.")
        return Task._KINDS[kind](config)

    @classmethod
    def from_config(cls, config: Union[TrainConfig, TaskConfig, Mapping[str, Any]]) -> "Task":
        """The task of a resolved config (what a run stores in ``config.json``)."""
        if isinstance(config, TrainConfig):
            config = config.task
        elif isinstance(config, Mapping):
            config = TaskConfig.from_dict(dict(config))
        if not config.resolved:
            raise ParameterError("Task.from_config needs a resolved TaskConfig (kind 'single-label' or "
                                 "'multi-label'); resolve one from the input with resolve_task(files, config).")
        return cls.for_kind(config.kind, config)

    @property
    def metric(self) -> str:
        """The validation metric that picks the kept epoch."""
        return str(self.config.metric)

    @property
    def pooling(self) -> str:
        """How a file's window scores pool into its scores (``'mean'`` / ``'max'``)."""
        return str(self.config.pooling)

    def to_dict(self) -> dict:
        return self.config.to_dict()

    # ------------------------------------------------------------------ labels and folds
    @abc.abstractmethod
    def check_input(self, table: pd.DataFrame, *, n_splits: int, group_column: Optional[str], seed: int) -> None:
        """Fail now, before any audio work, on what the fold plan would refuse (a missing group column...)."""

    def prepare_files(self, files: pd.DataFrame, table: Optional[pd.DataFrame] = None) -> pd.DataFrame:
        """The training file table (a cache's ``files``), given the input ``table`` it was rendered from."""
        return files

    @abc.abstractmethod
    def targets(self, files: pd.DataFrame, segments: pd.DataFrame, classes: Sequence[str], *, offset: float = 0.0,
                window_seconds: Optional[float] = None) -> Tuple[List[str], np.ndarray, Optional[np.ndarray]]:
        """``(classes, window targets, scoring unit of every window or None for the file)``.

        Single-label targets are class indices ``(n_windows,)`` (``-1`` unlabelled); multi-label ones multi-hot
        rows ``(n_windows, n_classes)``. ``classes`` is what the input's image cache lists (single-label).
        """

    @abc.abstractmethod
    def folds(self, files: pd.DataFrame, classes: Sequence[str], *, n_splits: int, group_column: Optional[str],
              seed: int, warn: bool = True) -> np.ndarray:
        """The fold of every file (``-1`` for pseudo-labelled files, which train every fold)."""

    def training_rows(self, rows: np.ndarray, targets: np.ndarray, *, seed: int) -> np.ndarray:
        """The windows a fold trains on, of its training ``rows`` (all of them unless the task samples)."""
        return rows

    def file_truth(self, targets: np.ndarray, window_file_row: np.ndarray, n_files: int,
                   classes: Sequence[str]) -> Optional[List[str]]:
        """The truth column of ``folds.csv`` when it is not the input's ``label`` (multi-label: the tags)."""
        return None

    # ------------------------------------------------------------------ fitting
    @abc.abstractmethod
    def check_targets(self, train_data: Any, val_data: Any, num_classes: Optional[int], model: Any) -> int:
        """Check a fit's training / validation targets; returns the number of classes."""

    @abc.abstractmethod
    def loss(self, targets: np.ndarray, num_classes: int) -> Any:
        """The training loss (a ``torch.nn.Module`` on logits ``(B, C)`` and the targets of a batch)."""

    @abc.abstractmethod
    def mixup_loss(self, criterion: Any, logits: Any, y: Any, perm: Any, lam: float) -> Any:
        """The loss of a mixup batch ``lam * x + (1 - lam) * x[perm]``."""

    @abc.abstractmethod
    def validation(self, probs: np.ndarray, targets: np.ndarray, ids: np.ndarray) -> Dict[str, float]:
        """``val_loss`` and the ``val_<metric>`` scores of a validation pass (windows pooled per ``ids``)."""

    # ------------------------------------------------------------------ outputs
    def pool(self, probs: Any, ids: Any, method: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
        """``(sorted unique ids, pooled scores)``: windows into files by :attr:`pooling` (or ``method``)."""
        return aggregate_segments(probs, ids, method=method or self.pooling,  # type: ignore[arg-type]
                                  normalize=self.normalize_pooled)

    @abc.abstractmethod
    def fold_tables(self, k: int, plan: Any, segments: pd.DataFrame, val_rows: np.ndarray,
                    probs: np.ndarray) -> Tuple[pd.DataFrame, pd.DataFrame]:
        """A fold's out-of-fold window table and file table (``plan``: the run's files, classes, windows)."""

    @abc.abstractmethod
    def fold_scores(self, segments: pd.DataFrame, files: pd.DataFrame, classes: Sequence[str]) -> Dict[str, Any]:
        """The scores of a fold's out-of-fold tables (the keys of :attr:`score_keys`)."""

    def run_metrics(self, done: List[int], per_fold: Dict[str, Any], oof_files: pd.DataFrame,
                    oof_segments: pd.DataFrame, classes: Sequence[str], files: pd.DataFrame,
                    config: TrainConfig, *, level: str = "file") -> Dict[str, Any]:
        """``metrics.json`` of a run: per fold, mean / std over folds, pooled out-of-fold scores.

        ``level``: what the epoch was chosen on, ``'file'`` or ``'window'`` (annotated recordings).
        """
        out: Dict[str, Any] = {"task": self.kind, "metric": self.metric, **self._metrics_facts(level),
                               "n_splits": config.n_splits, "folds_done": done, "folds": per_fold,
                               "group_column": config.group_column, "select_epoch": config.schedule.select_epoch}
        if done:
            mean, std = {}, {}
            for key in self.score_keys:
                vals = np.array([per_fold[str(k)][key] for k in done if per_fold[str(k)].get(key) is not None], float)
                mean[key] = float(vals.mean()) if len(vals) else None
                std[key] = float(vals.std()) if len(vals) else None
            out["mean"], out["std"] = mean, std
            out["oof"] = self.fold_scores(oof_segments, oof_files, classes)
        return out

    def _metrics_facts(self, level: str) -> Dict[str, Any]:
        """What ``metrics.json`` records after the metric (multi-label: the level and the pooling)."""
        return {}

    def fit_decision(self, oof_files: pd.DataFrame, oof_segments: Optional[pd.DataFrame],
                     classes: Sequence[str]) -> Optional[Dict[str, Any]]:
        """What the decision rule learns from the out-of-fold scores (``thresholds.json``), or None (argmax)."""
        return None

    @abc.abstractmethod
    def decide(self, scores: np.ndarray, classes: Sequence[str], decision: Optional[Mapping[str, Any]] = None,
               level: str = "file") -> List[str]:
        """The ``prediction`` column of pooled ``scores`` (``decision``: what :meth:`fit_decision` learnt)."""

    def prediction_frame(self, paths: Sequence[Any], scores: np.ndarray, classes: Sequence[str], *,
                         truth: Optional[Sequence[Any]] = None, folds: Any = None,
                         decision: Optional[Mapping[str, Any]] = None) -> pd.DataFrame:
        """A file-level prediction table: ``path, [<truth column>], [fold], prediction, prob_<class>...``."""
        out = pd.DataFrame({"path": list(paths)})
        if truth is not None:
            out[self.truth_column] = truth
        if folds is not None:
            out["fold"] = folds
        out["prediction"] = self.decide(scores, classes, decision)
        out[[f"prob_{c}" for c in classes]] = scores
        return out

    @abc.abstractmethod
    def summary(self, run_dir: Any, folds: List[int], metrics: Mapping[str, Any]) -> str:
        """The lines ``specimg train`` prints at the end."""

    # ------------------------------------------------------------------ evaluation and its report
    #: Whether a report shows example images of right and wrong files.
    example_images: ClassVar[bool] = False
    #: The two scores a table of results shows (an experiment's report), with how it names them.
    headline_scores: ClassVar[Tuple[Tuple[str, str], ...]] = ()

    @abc.abstractmethod
    def table_truth(self, table: pd.DataFrame) -> List[Any]:
        """The truth of every row of an input table (a label, or a list of tags; None where unlabelled)."""

    @abc.abstractmethod
    def truth_of(self, values: Sequence[Any], classes: Sequence[str],
                 paths: Optional[Sequence[str]] = None, where: str = "the table") -> np.ndarray:
        """The truth array of a table's truth values (labels as str, or multi-hot rows of tag sets).

        Raises
        ------
        DataError
            A file without a truth, or a truth the classes do not hold (naming a file of ``paths``).
        """

    @abc.abstractmethod
    def input_truth(self, table: pd.DataFrame) -> Optional[List[str]]:
        """The truth column a prediction of ``table``'s files carries (text; None when it has no truth)."""

    #: Whether a prediction's window table carries the windows' truth (:meth:`window_truth`).
    window_truth_column: ClassVar[bool] = False

    def window_truth(self, table: pd.DataFrame, i: int, bounds: np.ndarray, classes: Sequence[str], *,
                     offset: float = 0.0) -> Optional[List[str]]:
        """The truth of the windows ``bounds`` of row ``i`` of ``table`` (text; None: windows carry none)."""
        return None

    @abc.abstractmethod
    def evaluation_metrics(self, truth: np.ndarray, scores: np.ndarray, classes: Sequence[str],
                           decision: Optional[Mapping[str, Any]] = None, level: str = "file") -> Dict[str, Any]:
        """Every score of an evaluation (``metrics.json``)."""

    @abc.abstractmethod
    def headline(self, metrics: Mapping[str, Any]) -> List[Tuple[str, Any]]:
        """The rows of a report's metric table: (name, value)."""

    @abc.abstractmethod
    def per_class_table(self, metrics: Mapping[str, Any]) -> pd.DataFrame:
        """``per_class.csv`` of a report."""

    @abc.abstractmethod
    def report_sections(self, metrics: Mapping[str, Any]) -> List["ReportSection"]:
        """The sections of a report after its metric table (figures named by file)."""

    def report_tables(self, metrics: Mapping[str, Any]) -> Dict[str, pd.DataFrame]:
        """More CSV files of a report, by name (``confusion.csv``...); ``to_csv`` keeps their index."""
        return {}

    @abc.abstractmethod
    def evaluation_line(self, metrics: Mapping[str, Any]) -> str:
        """The line ``specimg evaluate`` prints."""

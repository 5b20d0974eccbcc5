"""The task of a run, beside the pipeline: single-label or multi-label, asked by every stage.

:class:`SingleLabel` and :class:`MultiLabel` own the labels' encoding, the folds, the loss, the validation
metric, the pooling of windows into files, the decision rule and the run's tables and metrics.
"""

from ._base import ReportSection as ReportSection
from ._base import Task as Task
from ._base import resolve_task as resolve_task
from ._base import task_kind as task_kind
from ._losses import AsymmetricLoss as AsymmetricLoss
from ._losses import BCEWithLogits as BCEWithLogits
from ._losses import FocalBCE as FocalBCE
from ._losses import class_weights as class_weights
from ._losses import positive_weights as positive_weights
from ._multi import MultiLabel as MultiLabel
from ._pooling import aggregate_segments as aggregate_segments
from ._pooling import flip_tta_average as flip_tta_average
from ._single import SingleLabel as SingleLabel

__all__ = ["Task", "ReportSection", "SingleLabel", "MultiLabel", "resolve_task", "task_kind", "aggregate_segments",
           "flip_tta_average", "class_weights", "positive_weights", "BCEWithLogits", "FocalBCE", "AsymmetricLoss"]

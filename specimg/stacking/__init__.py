"""Stacking: combine the out-of-fold predictions of several runs.

:func:`align_runs` turns several runs' file-level prediction tables into one
array ``X`` of shape ``(n_files, n_models, n_classes)``; the stackers
(:class:`CNNStacker`, :class:`LGBMStacker`) and :class:`WeightedBlend` are
scikit-learn estimators trained on it; :func:`cross_val_stack` scores them
honestly with an inner cross-validation; :func:`select_pseudo_labels` and
:func:`pseudo_training_table` feed confident test predictions back to training.
"""

from ._align import align_runs as align_runs
from ._align import cross_val_stack as cross_val_stack
from ._blend import WeightedBlend as WeightedBlend
from ._cnn import CNNStacker as CNNStacker
from ._lgbm import LGBMStacker as LGBMStacker
from ._pseudo import pseudo_training_table as pseudo_training_table
from ._pseudo import select_pseudo_labels as select_pseudo_labels

__all__ = [
    "align_runs",
    "cross_val_stack",
    "CNNStacker",
    "LGBMStacker",
    "WeightedBlend",
    "select_pseudo_labels",
    "pseudo_training_table",
]

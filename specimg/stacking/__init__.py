"""Stacking: combine the out-of-fold predictions of several runs (:func:`align_runs`' array ``X`` of shape
``(n_files, n_models, n_classes)``, scikit-learn estimators on it, :func:`stack_runs` from run folders), and feed
confident test predictions back to training as pseudo-labels.
"""

from ._align import align_runs as align_runs
from ._align import cross_val_stack as cross_val_stack
from ._blend import WeightedBlend as WeightedBlend
from ._cnn import CNNStacker as CNNStacker
from ._compare import CANDIDATES as CANDIDATES
from ._compare import SEED_BLEND as SEED_BLEND
from ._compare import STACK_METHODS as STACK_METHODS
from ._compare import StackComparison as StackComparison
from ._compare import compare_stackers as compare_stackers
from ._compare import make_stacker as make_stacker
from ._lgbm import LGBMStacker as LGBMStacker
from ._plot import plot_model_weights as plot_model_weights
from ._pseudo import pseudo_label_table as pseudo_label_table
from ._pseudo import pseudo_training_table as pseudo_training_table
from ._pseudo import select_pseudo_labels as select_pseudo_labels
from ._classwise import CLASSWISE_METHODS as CLASSWISE_METHODS
from ._classwise import MultiLabelStacker as MultiLabelStacker
from ._result import StackResult as StackResult
from ._runs import stack_runs as stack_runs

__all__ = [
    "align_runs",
    "cross_val_stack",
    "compare_stackers",
    "StackComparison",
    "stack_runs",
    "StackResult",
    "make_stacker",
    "CNNStacker",
    "LGBMStacker",
    "WeightedBlend",
    "plot_model_weights",
    "select_pseudo_labels",
    "pseudo_training_table",
    "pseudo_label_table",
    "SEED_BLEND",
    "CANDIDATES",
    "STACK_METHODS",
    "MultiLabelStacker",
    "CLASSWISE_METHODS",
]

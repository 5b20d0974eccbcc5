"""Training: the Trainer of one split, callbacks, schedules, losses and k-fold cross-validation."""

from ._anchor import fit_anchor as fit_anchor
from ._anchor import mfcc_statistics as mfcc_statistics
from ._callbacks import Callback as Callback
from ._checkpoint import atomic_save as atomic_save
from ._checkpoint import load_trained as load_trained
from ._checkpoint import read_checkpoint as read_checkpoint
from ._cv import CVResult as CVResult
from ._cv import train_cv as train_cv
from ._distributed import barrier as barrier
from ._distributed import broadcast_object as broadcast_object
from ._distributed import init_distributed as init_distributed
from ._distributed import is_main_process as is_main_process
from ._run import Run as Run
from ._schedule import WarmupSchedule as WarmupSchedule
from ._schedule import build_optimizer as build_optimizer
from ._schedule import build_scheduler as build_scheduler
from ._trainer import FitResult as FitResult
from ._trainer import Trainer as Trainer
from ._trainer import resolve_device as resolve_device

__all__ = [
    "Trainer",
    "FitResult",
    "Callback",
    "train_cv",
    "CVResult",
    "fit_anchor",
    "mfcc_statistics",
    "Run",
    "load_trained",
    "read_checkpoint",
    "atomic_save",
    "build_optimizer",
    "build_scheduler",
    "WarmupSchedule",
    "resolve_device",
    "init_distributed",
    "is_main_process",
    "barrier",
    "broadcast_object",
]

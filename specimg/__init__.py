"""specimg: audio classification with spectrogram images and ImageNet backbones.

The data flows one way, one sub-package per stage::

    audio ─► segments ─► spectrogram images ─► folds ─► backbone ─► window probs ─► file probs ─► stack
    specimg.audio        specimg.spectrogram   .data    .models/.training          .predict       .stacking

The public names below are re-exported explicitly and imported on first use,
so ``import specimg`` (and the ``specimg render`` command) does not pay for
torch, timm or LightGBM until they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict, List

__version__ = "0.1.0"

#: public name -> the sub-module that defines it
_EXPORTS: Dict[str, str] = {
    # exceptions
    "SpecimgError": "exceptions",
    "ParameterError": "exceptions",
    "AudioError": "exceptions",
    "DataError": "exceptions",
    "NotFittedError": "exceptions",
    "WeightsError": "exceptions",
    "TrainingError": "exceptions",
    # config
    "AudioConfig": "config",
    "SegmentConfig": "config",
    "SpectrogramConfig": "config",
    "RenderConfig": "config",
    "TrainConfig": "config",
    # audio
    "load_audio": "audio",
    "pad_audio": "audio",
    "segment_audio": "audio",
    "segment_bounds": "audio",
    "read_table": "audio",
    # spectrogram
    "render_file": "spectrogram",
    "render_signal": "spectrogram",
    "signal_windows": "spectrogram",
    "render_dataset": "spectrogram",
    "ImageCache": "spectrogram",
    "SpectrogramFrontend": "spectrogram",
    # data
    "SegmentDataset": "data",
    "file_folds": "data",
    "spectrogram_transforms": "data",
    # models
    "create_backbone": "models",
    "register_backbone": "models",
    "list_backbones": "models",
    "backbone_data_config": "models",
    "offline_weights_available": "models",
    # training
    "Trainer": "training",
    "Callback": "training",
    "train_cv": "training",
    "load_trained": "training",
    # predict
    "Predictor": "predict",
    "aggregate_segments": "predict",
    "classification_metrics": "predict",
    "uar": "predict",
    "evaluate_predictions": "predict",
    "write_report": "predict",
    "export_run": "predict",
    "predictions_frame": "predict",
    "read_predictions": "predict",
    # stacking
    "align_runs": "stacking",
    "cross_val_stack": "stacking",
    "CNNStacker": "stacking",
    "LGBMStacker": "stacking",
    "WeightedBlend": "stacking",
    "select_pseudo_labels": "stacking",
    "pseudo_training_table": "stacking",
    # experiment
    "load_recipe": "experiment",
    "run_experiment": "experiment",
    "stack_runs": "experiment",
    # the default dataset
    "fsdd_path": "datasets",
}

__all__: List[str] = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'specimg' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # static type checkers and IDEs see the real names
    from .audio import load_audio, pad_audio, read_table, segment_audio, segment_bounds
    from .config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig, TrainConfig
    from .data import SegmentDataset, file_folds, spectrogram_transforms
    from .exceptions import (AudioError, DataError, NotFittedError, ParameterError, SpecimgError, TrainingError,
                             WeightsError)
    from .models import (backbone_data_config, create_backbone, list_backbones, offline_weights_available,
                         register_backbone)
    from .predict import (Predictor, aggregate_segments, classification_metrics, evaluate_predictions, export_run,
                          predictions_frame, read_predictions, uar, write_report)
    from .spectrogram import ImageCache, SpectrogramFrontend, render_dataset, render_file, render_signal
    from .stacking import (CNNStacker, LGBMStacker, WeightedBlend, align_runs, cross_val_stack,
                           pseudo_training_table, select_pseudo_labels)
    from .datasets import fsdd_path
    from .experiment import load_recipe, run_experiment, stack_runs
    from .training import Callback, Trainer, load_trained, train_cv

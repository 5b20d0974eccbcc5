"""Predictions: fold ensembles with flip TTA, window -> file aggregation, evaluation, reports, export.

The metrics are :mod:`specimg.scoring`'s; how windows pool and which scores apply is the run's task's
(:mod:`specimg.tasks`)."""

from ._detect import detect as detect
from ._detect import evaluate_detections as evaluate_detections
from ._detect import match_detections as match_detections
from ._detect import to_raven as to_raven
from ._detect import write_detections as write_detections
from ._detect import write_raven as write_raven
from ._embed import embed as embed
from ._embed import probe as probe
from ._evaluate import evaluate_predictions as evaluate_predictions
from ._evaluate import report_run as report_run
from ._export import ExportedEnsemble as ExportedEnsemble
from ._export import export_run as export_run
from ._predictor import PredictionResult as PredictionResult
from ._predictor import Predictor as Predictor
from .aggregate import PROB_PREFIX as PROB_PREFIX
from .aggregate import aggregate_segments as aggregate_segments
from .aggregate import flip_tta_average as flip_tta_average
from .aggregate import predictions_frame as predictions_frame
from .aggregate import read_predictions as read_predictions
from .report import plot_confusion as plot_confusion
from .report import plot_pr_curves as plot_pr_curves
from .report import plot_recall as plot_recall
from .report import write_report as write_report

__all__ = [
    "Predictor",
    "PredictionResult",
    "evaluate_predictions",
    "report_run",
    "export_run",
    "ExportedEnsemble",
    "aggregate_segments",
    "flip_tta_average",
    "predictions_frame",
    "read_predictions",
    "PROB_PREFIX",
    "write_report",
    "plot_confusion",
    "plot_recall",
    "detect",
    "match_detections",
    "to_raven",
    "write_raven",
    "write_detections",
    "evaluate_detections",
    "plot_pr_curves",
    "embed",
    "probe",
]

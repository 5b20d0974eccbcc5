"""What stacking returns: :class:`StackResult`, the method's out-of-fold (and test) predictions and its scores."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import pandas as pd

from .._io import PathLike, atomic_write_csv, atomic_write_text
from ._compare import StackComparison

__all__ = ["StackResult"]


@dataclass
class StackResult:
    """What :func:`stack_runs` returns.

    Attributes
    ----------
    method : str
    names : list of str
        The members (runs), in input order.
    classes : list of str
    oof : pd.DataFrame
        Honest out-of-fold predictions of the method: ``path, label, fold,
        prediction, prob_<class>...``; a file's row comes from stackers fitted
        on the other folds. ``fold`` is the base runs' fold, so the table can
        itself be stacked or blended.
    metrics : dict
        ``accuracy``/``uar`` of every member (``models``), of their mean
        (``mean``) and of the method (``stack``); every candidate with its
        per-fold scores (``candidates``); ``auto``'s choice per fold and why
        (``selection``); the blend ``weights`` and per-class ``model_weights``
        when the method has them; the same scores on a labelled test set (``test``).
    test : pd.DataFrame or None
        Test predictions: the mean of the fold stackers' predictions.
    comparison : StackComparison
        Every candidate's out-of-fold (and test) probabilities and scores.
    estimators : list
        The method's fitted stackers, one per outer fold (empty for the mean,
        a fixed blend, a model alone).
    decision : dict or None
        What the task's decision rule learnt from the stacked out-of-fold
        scores (multi-label: per-class thresholds, ``thresholds.json``); the
        ``prediction`` columns use it.
    """

    method: str
    names: List[str]
    classes: List[str]
    oof: pd.DataFrame
    metrics: Dict[str, Any]
    test: Optional[pd.DataFrame] = None
    comparison: Optional[StackComparison] = field(default=None, repr=False)
    estimators: List[Any] = field(default_factory=list, repr=False)
    decision: Optional[Dict[str, Any]] = None

    def write(self, out_dir: PathLike) -> Path:
        """Write the results atomically into ``out_dir``.

        ``oof_files.csv``, ``metrics.json``, ``candidates.csv`` (every
        candidate's score on every outer fold), with a test set
        ``test_files.csv``, when the method weighs the models
        ``model_weights.csv`` and ``model_weights.png`` (the heat map), and
        the decision rule's ``thresholds.json`` (multi-label).
        """
        from ._plot import plot_model_weights

        out = Path(out_dir)
        atomic_write_csv(self.oof, out / "oof_files.csv")
        if self.test is not None:
            atomic_write_csv(self.test, out / "test_files.csv")
        if self.comparison is not None:
            atomic_write_csv(self.comparison.scores, out / "candidates.csv")
        weights = self.metrics.get("model_weights")
        if weights:
            frame = pd.DataFrame(weights).T.reindex(index=self.names, columns=self.classes)
            atomic_write_csv(frame.rename_axis("model").reset_index(), out / "model_weights.csv")
            n_folds = len(self.comparison.fold_labels) if self.comparison is not None else self.metrics["outer_folds"]
            plot_model_weights(frame.to_numpy(), self.names, self.classes, path=out / "model_weights.png",
                               title=f"{self.method}: per-class model weights (mean of the {n_folds} fold stackers)")
        if self.decision is not None:
            atomic_write_text(out / "thresholds.json", json.dumps(self.decision, indent=2) + "\n")
        atomic_write_text(out / "metrics.json", json.dumps(self.metrics, indent=2) + "\n")
        return out

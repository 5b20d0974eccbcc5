"""Hooks into the training loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, List

import torch

if TYPE_CHECKING:  # pragma: no cover
    from ._trainer import FitResult, Trainer

__all__ = ["Callback"]


class Callback:
    """Base class of training callbacks: every hook does nothing.

    Subclass it and override the hooks you need; the trainer passes itself,
    so a hook can read ``trainer.model``, ``trainer.optimizer``,
    ``trainer.epoch``, ``trainer.global_step``, ``trainer.history`` and
    ``trainer.best_score``, and stop training after the current epoch by
    setting ``trainer.stop_training = True``. An exception raised by a hook
    stops training; the run then resumes from the last finished epoch.

    Examples
    --------
    >>> class PrintLoss(Callback):
    ...     def on_epoch_end(self, trainer, epoch, logs):
    ...         print(epoch, round(logs["train_loss"], 3))
    """

    def on_train_start(self, trainer: "Trainer") -> None:
        """Called once before the first epoch (also when resuming)."""

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None:
        """Called before each epoch; ``epoch`` counts from 1."""

    def on_batch_end(self, trainer: "Trainer", batch: int, loss: torch.Tensor) -> None:
        """Called after each optimizer step with the batch index and its (detached) loss."""

    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: Dict[str, Any]) -> None:
        """Called after each epoch, once its checkpoint is saved, with the row of ``log.csv``."""

    def on_train_end(self, trainer: "Trainer", result: "FitResult") -> None:
        """Called once at the end, with the best weights loaded into ``trainer.model``."""


class _CallbackList:
    def __init__(self, callbacks: Iterable[Callback]) -> None:
        self.callbacks: List[Callback] = list(callbacks)

    def __call__(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

"""Optimizers and the warm-up + cosine / step learning-rate schedule."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, Optional

import torch
from torch import nn

from ..exceptions import ParameterError

if TYPE_CHECKING:  # pragma: no cover
    from ..config import OptimConfig

__all__ = ["WarmupSchedule", "build_scheduler", "build_optimizer"]


class WarmupSchedule:
    """Learning-rate multiplier per optimizer step: linear warm-up, then cosine or step decay.

    A picklable callable for :class:`torch.optim.lr_scheduler.LambdaLR`
    (its state travels in the scheduler's ``state_dict``).

    Parameters
    ----------
    total_steps : int
        Optimizer steps of the whole run (epochs x steps per epoch).
    warmup_steps : int
        Steps of linear warm-up from ``1 / warmup_steps`` to 1.
    schedule : {'cosine', 'step'}
        Cosine decay from 1 to 0 over the remaining steps, or multiply by
        ``gamma`` every ``step_size_steps`` steps after the warm-up.
    step_size_steps : int
        Steps between two decays of the step schedule.
    gamma : float
        Decay factor of the step schedule.

    Examples
    --------
    >>> f = WarmupSchedule(total_steps=10, warmup_steps=2)
    >>> [round(f(s), 3) for s in range(10)]
    [0.5, 1.0, 1.0, 0.962, 0.854, 0.691, 0.5, 0.309, 0.146, 0.038]
    """

    def __init__(self, *, total_steps: int, warmup_steps: int = 0, schedule: Literal["cosine", "step"] = "cosine",
                 step_size_steps: int = 1, gamma: float = 0.1) -> None:
        if total_steps < 1 or warmup_steps < 0 or step_size_steps < 1:
            raise ParameterError(f"WarmupSchedule needs total_steps >= 1, warmup_steps >= 0 and step_size_steps >= 1; "
                                 f"got {total_steps}, {warmup_steps}, {step_size_steps}.")
        if schedule not in ("cosine", "step"):
            raise ParameterError(f"The 'schedule' parameter must be 'cosine' or 'step'. Got {schedule!r}.")
        self.total_steps = int(total_steps)
        self.warmup_steps = int(min(warmup_steps, total_steps))
        self.schedule = schedule
        self.step_size_steps = int(step_size_steps)
        self.gamma = float(gamma)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        after = step - self.warmup_steps
        if self.schedule == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(after, span) / span))
        return self.gamma ** (after // self.step_size_steps)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: float = 1.0,
    schedule: Literal["cosine", "step"] = "cosine",
    step_size: Optional[int] = None,
    step_gamma: float = 0.1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step :class:`~torch.optim.lr_scheduler.LambdaLR`: warm-up, then cosine or step decay.

    Call ``scheduler.step()`` after every ``optimizer.step()``.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
    steps_per_epoch : int
        Batches per epoch.
    epochs : int
        Epochs of the run.
    warmup_epochs : float
        Warm-up length in epochs (rounded to whole steps).
    schedule : {'cosine', 'step'}
    step_size : int or None
        Epochs between decays of the step schedule (``None``: a third of
        ``epochs``, at least 1).
    step_gamma : float
        Decay factor of the step schedule.

    Returns
    -------
    scheduler : torch.optim.lr_scheduler.LambdaLR
    """
    if steps_per_epoch < 1:
        raise ParameterError(f"build_scheduler needs steps_per_epoch >= 1; got {steps_per_epoch}. The training set "
                             "is empty or smaller than one batch.")
    size = step_size if step_size is not None else max(1, epochs // 3)
    fn = WarmupSchedule(total_steps=epochs * steps_per_epoch, warmup_steps=int(round(warmup_epochs * steps_per_epoch)),
                        schedule=schedule, step_size_steps=size * steps_per_epoch, gamma=step_gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def build_optimizer(model: nn.Module, config: "OptimConfig") -> torch.optim.Optimizer:
    """SGD with momentum or AdamW (timm's factory: no weight decay on biases and norms).

    Parameters
    ----------
    model : nn.Module
    config : OptimConfig
        Uses ``optimizer``, ``lr``, ``momentum`` and ``weight_decay`` (``TrainConfig.optim``).
    """
    from timm.optim import create_optimizer_v2

    if config.optimizer == "sgd":  # timm's 'momentum' is plain (non-Nesterov) SGD with momentum
        return create_optimizer_v2(model, opt="momentum", lr=config.lr, weight_decay=config.weight_decay,
                                   momentum=config.momentum)
    return create_optimizer_v2(model, opt="adamw", lr=config.lr, weight_decay=config.weight_decay)

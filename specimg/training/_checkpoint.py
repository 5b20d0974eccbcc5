"""Checkpoints: atomic writes and rebuilding a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple, Union

import torch
from torch import nn

from .._io import PathLike, atomic_write
from ..exceptions import DataError

__all__ = ["atomic_save", "load_trained", "CHECKPOINT_FORMAT"]

#: ``format`` key of the checkpoints this package writes.
CHECKPOINT_FORMAT = "specimg.checkpoint"


def atomic_save(obj: Any, path: PathLike) -> None:
    """``torch.save`` atomically (:func:`specimg._io.atomic_write`): a crash mid-write leaves the previous file."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def read_checkpoint(path: PathLike, *, map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Load a checkpoint dict written by the trainer (``weights_only``: no code is executed)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Checkpoint {str(path)!r} does not exist. Train a model first (`specimg train`).")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise DataError(f"Cannot read checkpoint {str(path)!r}: {exc}. Delete it and train again.") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{str(path)!r} is not a specimg checkpoint (no format={CHECKPOINT_FORMAT!r} key).")
    return ckpt


def load_trained(path: PathLike, *, device: Union[str, torch.device] = "cpu") -> Tuple[nn.Module, Dict[str, Any]]:
    """Rebuild a trained model from ``RUN/fold_i/best.pt``.

    The backbone is created by name with :func:`specimg.models.create_backbone`
    (``weights="none"``) and the trained weights are loaded into it; a
    custom backbone must be registered under the same name first.

    Parameters
    ----------
    path : path
        A ``best.pt`` (or ``last.pt``) written by :class:`Trainer`.
    device : str or torch.device
        Where to put the model.

    Returns
    -------
    model : nn.Module
        In eval mode.
    meta : dict
        Everything else in the checkpoint: ``backbone``, ``classes``,
        ``num_classes``, ``input_size`` (3, H, W), ``mean``, ``std``,
        ``train_config``, ``render_config``, ``fold``, ``epoch``, ``score``...
    """
    from ..models import create_backbone

    ckpt = read_checkpoint(path)
    state = ckpt.pop("model")
    model = create_backbone(ckpt["backbone"], num_classes=int(ckpt["num_classes"]), weights="none",
                            drop_rate=ckpt.get("drop_rate"), **dict(ckpt.get("backbone_kwargs") or {}))
    model.load_state_dict(state)
    model.to(device).eval()
    return model, ckpt

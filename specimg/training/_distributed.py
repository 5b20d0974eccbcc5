"""Data-parallel training under ``torchrun``: process-group set-up (NCCL on CUDA, gloo on the CPU) and the few
collectives the trainer needs; every helper is a no-op in a single process.
"""

from __future__ import annotations

import atexit
import os
from typing import Any, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist

from ..exceptions import ParameterError

__all__ = ["init_distributed", "dist_info", "is_main_process", "barrier", "all_gather_objects", "all_sum",
           "any_true", "broadcast_object"]


def _env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ParameterError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer. Launch with torchrun, "
                             "which sets it.") from None


def init_distributed(backend: Optional[str] = None) -> bool:
    """Join the process group that ``torchrun`` set up, once.

    Parameters
    ----------
    backend : {'nccl', 'gloo'} or None
        ``None``: NCCL when CUDA is available, gloo otherwise (the
        ``SPECIMG_DIST_BACKEND`` environment variable overrides it).

    Returns
    -------
    started : bool
        Whether this call created the process group (``False`` in a single
        process, or when it already exists).
    """
    if _env_world_size() <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    backend = backend or os.environ.get("SPECIMG_DIST_BACKEND") or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend not in ("nccl", "gloo"):
        raise ParameterError(f"The distributed backend must be 'nccl' or 'gloo'. Got {backend!r} "
                             "(SPECIMG_DIST_BACKEND).")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    atexit.register(_destroy)
    return True


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def dist_info() -> Tuple[int, int, int]:
    """``(rank, local_rank, world_size)``; ``(0, 0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_world_size()
    return 0, 0, 1


def is_main_process() -> bool:
    """Rank 0 (or a single process): the one that writes files and prints."""
    return dist_info()[0] == 0


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if dist_info()[2] > 1:
        dist.barrier()


def all_gather_objects(obj: Any) -> List[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` in a single process)."""
    world = dist_info()[2]
    if world == 1:
        return [obj]
    out: List[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (``obj`` itself in a single process)."""
    if dist_info()[2] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over processes (in place, returned)."""
    if dist_info()[2] > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_true(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is true on any process."""
    if dist_info()[2] == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def shard_rows(n: int) -> np.ndarray:
    """This process's contiguous share of ``range(n)`` (all of it in a single process)."""
    rank, _, world = dist_info()
    return np.array_split(np.arange(n, dtype=np.int64), world)[rank]

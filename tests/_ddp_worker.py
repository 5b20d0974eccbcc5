"""One run of specimg's Trainer for the gradient-synchronisation test (tests/test_distributed.py).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/_ddp_worker.py OUT   # 2 gloo processes
    python tests/_ddp_worker.py OUT                                                             # 1 process

or :func:`run` in-process (one process). Full-batch training (16 images, ``batch_size=16``: one process takes all 16 per step, each of two takes 8), no
BatchNorm, no dropout, no augmentation, no class weights: every optimizer step then sees the same global batch
in either case, so with gradients averaged by DDP the weights must agree. Each process saves its weights to
``OUT/{variant}_rank{RANK}.pt``. Two variants are trained one after the other in the same processes: ``sync``
(as specimg trains) and ``nosync``, where every forward pass runs under DDP's ``no_sync()``, so that each rank
steps on its own half of the batch: the control that the test must catch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

N_ITEMS, STEPS = 16, 6


class Net(nn.Module):
    """Two convolutions and a linear head: no BatchNorm (whose statistics are per process), no dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(8, 2)

    def forward(self, x):  # x: (B, 3, 16, 16)
        return self.fc(self.features(x).flatten(1))  # (B, 2)


def data():
    """16 random 16x16 images; class 1 is brighter."""
    rng = np.random.default_rng(0)
    targets = np.arange(N_ITEMS) % 2
    images = rng.integers(0, 160, size=(N_ITEMS, 16, 16, 3)).astype(np.uint8) + (60 * targets)[:, None, None, None]
    return images.astype(np.uint8), targets


class _GradientSyncDisabled:
    """Within this context every DistributedDataParallel forward pass runs under ``no_sync()``."""

    def __enter__(self) -> None:
        from torch.nn.parallel import DistributedDataParallel

        self.forward = forward = DistributedDataParallel.forward

        def forward_without_sync(ddp, *args, **kwargs):
            with ddp.no_sync():  # the backward of this output does not all-reduce the gradients
                return forward(ddp, *args, **kwargs)

        DistributedDataParallel.forward = forward_without_sync

    def __exit__(self, *exc) -> None:
        from torch.nn.parallel import DistributedDataParallel

        DistributedDataParallel.forward = self.forward


def run(out: Path, variant: str = "sync") -> dict:
    """Train :class:`Net` for :data:`STEPS` full-batch steps; save and return its weights."""
    import contextlib

    from specimg.config import TrainConfig
    from specimg.data import SegmentDataset
    from specimg.training import Trainer, init_distributed

    init_distributed("gloo")  # a no-op in one process, or when the group exists
    images, targets = data()
    ds = SegmentDataset(images, targets, num_classes=2, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    torch.manual_seed(0)
    model = Net()
    config = TrainConfig().with_options(epochs=STEPS, batch_size=N_ITEMS, optimizer="sgd", lr=0.2, momentum=0.9, weight_decay=0.0,
                         warmup_epochs=0, class_weights="none", hflip=0.0, tta="none", device="cpu", num_workers=0,
                         amp="off", channels_last=False, seed=0)
    with _GradientSyncDisabled() if variant == "nosync" else contextlib.nullcontext():
        Trainer(config, progress=False).fit(model, ds)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out.mkdir(parents=True, exist_ok=True)
    torch.save(state, out / f"{variant}_rank{os.environ.get('RANK', '0')}.pt")
    return state


if __name__ == "__main__":
    torch.set_num_threads(1)
    for variant in sys.argv[2:] or ["sync", "nosync"]:
        run(Path(sys.argv[1]), variant)

"""Train your own network: register an ``nn.Module`` by name and pass it options.

``@register_backbone("my_net")`` makes ``"my_net"`` a backbone name like any
timm model; ``TrainConfig(drop_rate=..., backbone_kwargs={...})`` reaches its
constructor, exactly as timm kwargs (``drop_rate``, ``drop_path_rate``...)
reach ``timm.create_model``. The example trains it on a small synthetic image
cache (a bright band whose height is the class), so it runs in seconds on a
CPU without audio:

    python examples/custom_backbone.py --out runs/custom
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from torch import nn

from specimg.config import TrainConfig
from specimg.models import register_backbone
from specimg.spectrogram import ImageCache
from specimg.training import load_trained, train_cv


@register_backbone("my_net")
class MyNet(nn.Module):
    """Two convolutions, a 4x4 pooled map (keeps where in frequency things are), dropout, a linear head."""

    def __init__(self, num_classes: int, width: int = 16, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.AdaptiveAvgPool2d((4, 4)),
        )
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(width * 16, num_classes)

    def forward(self, x):  # x: (B, 3, H, W)
        z = self.features(x).flatten(1)  # (B, width * 16)
        return self.head(self.drop(z))  # (B, num_classes)


def synthetic_cache(root: str, *, n_classes: int = 3, files_per_class: int = 8, size: int = 48) -> ImageCache:
    """Two windows per file; class c has a bright band at height c."""
    rng = np.random.default_rng(0)
    images, segments, files = [], [], []
    for fid in range(n_classes * files_per_class):
        c = fid % n_classes
        files.append({"file_id": fid, "path": f"file_{fid:03d}.wav", "label": f"band{c}"})
        for s in range(2):
            im = rng.integers(0, 80, (size, size, 3)).astype(np.uint8)
            top = size - 10 - c * (size // n_classes)
            im[top:top + 5] = 220
            images.append(im)
            segments.append({"file_id": fid, "segment": s, "start": float(s), "end": s + 1.0})
    return ImageCache.from_arrays(root, np.stack(images), pd.DataFrame(segments), pd.DataFrame(files))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/custom")
    args = ap.parse_args()

    cache = synthetic_cache(f"{args.out}/cache")
    config = TrainConfig().with_options(
        backbone="my_net",
        weights="none",  # a registered class has no pretrained source; weights=PATH would load a checkpoint
        drop_rate=0.2,  # -> MyNet(drop_rate=0.2)
        backbone_kwargs={"width": 8},  # -> MyNet(width=8)
        optimizer="adamw",
        lr=3e-3,
        epochs=4,
        batch_size=8,
        n_splits=3,
        device="cpu",
    )
    result = train_cv(cache, f"{args.out}/run", config)

    model, meta = load_trained(result.run_dir / "fold_0" / "best.pt")  # rebuilt by name: "my_net"
    print(f"\nreloaded {type(model).__name__} (width {model.head.in_features // 16}, dropout {model.drop.p}) "
          f"for classes {meta['classes']}")


if __name__ == "__main__":
    main()

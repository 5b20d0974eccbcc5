"""The demo's CPU training step: where its time goes, and what bf16, memory layout and a shorter Lite0 do to it.

One process, ``--threads`` torch threads (2: the demo's), batches of 32 images of
64x64, 10 classes, SGD with momentum, cross-entropy. Sides, each its own model
from the same seed, timed in blocks of ``--steps`` steps that alternate (ABCD,
DCBA, ...) ``--repeats`` times after two untimed warm-up steps each:

- ``demo``: ``tf_efficientnet_lite0`` with the offline ImageNet weights, channels-last, float32, as
  ``train_cv`` runs it on the CPU;
- ``bf16``: the same under ``torch.autocast('cpu', dtype=torch.bfloat16)``;
- ``nchw``: the same without channels-last;
- ``lite0_5stages``: Lite0 cut after its fifth stage (``benchmarks/fsdd_variants.py``);
- ``compiled`` (with ``--compile``): a ``torch.compile`` copy of ``demo`` (inductor, default mode), its
  compilation (its first two steps) timed apart.

Printed: each side's median ms per step and images/s and its speed against
``demo`` (> 1 is faster), then, with ``--layers``, the forward and backward
times of Lite0's depthwise convolutions at their 64x64-input shapes (the
backward is mostly their weight gradient).

Run: ``.venv/bin/python benchmarks/cpu_step.py [--layers] [--compile]`` (about 2 minutes on 2 cores;
``--compile`` adds the compilation, which it prints: 83 s with inductor's on-disk cache cold, under
``TORCHINDUCTOR_CACHE_DIR=$(mktemp -d)`` on 2026-12-06, 8 s when warm).
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Callable, Dict, List

import numpy as np
import torch
from torch import nn

from fsdd_variants import lite0_5stages  # benchmarks/ is the script's folder, so first on sys.path
from specimg.models import create_backbone


def _sides() -> Dict[str, Callable[[], nn.Module]]:
    return {
        "demo": lambda: create_backbone("tf_efficientnet_lite0", num_classes=10),
        "bf16": lambda: create_backbone("tf_efficientnet_lite0", num_classes=10),
        "nchw": lambda: create_backbone("tf_efficientnet_lite0", num_classes=10),
        "lite0_5stages": lambda: lite0_5stages(num_classes=10, pretrained=True),
    }


def steps(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))
    loss_fn = nn.CrossEntropyLoss()
    state = {}
    for name, build in _sides().items():
        model = build()
        cl = name != "nchw"
        if cl:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        state[name] = (model, opt, x.contiguous(memory_format=torch.channels_last) if cl else x, name == "bf16")
    if args.compile:  # the demo's weights, compiled
        twin = copy.deepcopy(state["demo"][0])
        opt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        state["compiled"] = (torch.compile(twin), opt, state["demo"][2], False)

    def step(name: str) -> None:
        model, opt, xb, bf16 = state[name]
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(xb), y)
        loss.backward()
        opt.step()

    names = list(state)
    warm_up_s = {}
    for name in names:  # two untimed steps each; for the compiled side they are the compilation
        t = time.perf_counter()
        step(name)
        step(name)
        warm_up_s[name] = time.perf_counter() - t
    times: Dict[str, List[float]] = {n: [] for n in names}
    for r in range(args.repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            for _ in range(args.steps):
                step(name)
            times[name].append((time.perf_counter() - t) / args.steps)
    med = {n: float(np.median(v)) for n, v in times.items()}
    print(f"batch {args.batch} x {args.size}x{args.size}, {args.threads} threads, {args.repeats} alternated blocks "
          f"of {args.steps} steps (median ms per step; speed against demo, > 1 is faster)")
    if args.compile:
        print(f"  compilation (the compiled side's first two steps): {warm_up_s['compiled']:.0f} s")
    for n in names:
        print(f"  {n:<14} {med[n] * 1e3:7.1f} ms/step  {args.batch / med[n]:6.1f} img/s  "
              f"x{med['demo'] / med[n]:.2f}   blocks: {' '.join(f'{s * 1e3:.0f}' for s in times[n])}")


def layers(args: argparse.Namespace) -> None:
    """Forward and backward (input and weight gradients) of Lite0's depthwise convolutions, channels-last."""
    print("Lite0's depthwise convolutions at a 64x64 input, batch 32 (median of 20 calls, ms):")
    for c, hw, k in [(1152, 2, 5), (672, 4, 5), (480, 4, 5), (240, 8, 5), (144, 16, 3), (96, 33, 3)]:
        conv = nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False).to(memory_format=torch.channels_last)
        xin = torch.randn(args.batch, c, hw, hw).contiguous(memory_format=torch.channels_last).requires_grad_(True)
        fwd = _median_ms(lambda: conv(xin))
        both = _median_ms(lambda: conv(xin).sum().backward())
        print(f"  {c:>5} channels {hw:>2}x{hw:<2} {k}x{k}: forward {fwd:6.2f}  backward {both - fwd:6.2f}  "
              f"(backward / forward {max(both - fwd, 0) / fwd:5.1f}x)")


def _median_ms(fn: Callable[[], object], n: int = 20) -> float:
    for _ in range(3):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="training steps per timed block")
    ap.add_argument("--repeats", type=int, default=5, help="timed blocks per side (alternated)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--layers", action="store_true", help="also time the depthwise convolutions one by one")
    ap.add_argument("--compile", action="store_true", help="also time a torch.compile copy of the demo model")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    steps(args)
    if args.layers:
        layers(args)


if __name__ == "__main__":
    main()

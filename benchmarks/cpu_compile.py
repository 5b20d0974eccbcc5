"""``torch.compile`` on the CPU: does it speed up the demo's training step?

One process, ``--threads`` torch threads (2: the demo's), the demo's model and
batch: ``tf_efficientnet_lite0`` (10 classes, channels-last, as ``train_cv``
runs it), batches of 32 images of 64x64, SGD with momentum, cross-entropy. The
eager model and a ``torch.compile`` copy of it (inductor, default mode) start
from the same weights; after the compiled one's first steps (the compilation,
timed apart), blocks of ``--steps`` training steps alternate between the two,
``--repeats`` times each, and the median step times are compared in this run.

Printed: the compilation time, each side's median ms per step and images/s,
and the speed-up of the compiled model over the eager one (> 1 is faster).

Run: ``.venv/bin/python benchmarks/cpu_compile.py`` (about 4 minutes on 2 cores,
most of it the compilation when inductor's on-disk cache is cold). Runs here
(2026-12-01, 2 cores): the first compilation took 150 s (a scratch run with the
same model and batch: eager 324-339 ms per step, compiled 335 ms); this script
right after it, with the cache warm, compiled in 7 s and measured eager 314.8
ms per step (101.7 img/s) against compiled 298.0 ms (107.4 img/s): 1.056x,
inside the blocks' spread (eager 287-384 ms, compiled 283-321 ms). On this CPU
compiling does not buy the demo time: ``TrainConfig`` has no compile option.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import timm
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="training steps per timed block")
    ap.add_argument("--repeats", type=int, default=5, help="timed blocks per side (alternated)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    eager = timm.create_model("tf_efficientnet_lite0", num_classes=10).to(memory_format=torch.channels_last)
    twin = copy.deepcopy(eager)
    sides = {"eager": eager, "compiled": torch.compile(twin)}
    optims = {name: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
              for name, m in (("eager", eager), ("compiled", twin))}
    x = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(name: str) -> None:
        opt = optims[name]
        opt.zero_grad(set_to_none=True)
        loss_fn(sides[name](x), y).backward()
        opt.step()

    t0 = time.perf_counter()
    step("compiled")
    step("compiled")  # the first steps compile the forward and the backward graphs
    compile_s = time.perf_counter() - t0
    step("eager")
    times = {name: [] for name in sides}
    for r in range(args.repeats):
        for name in (("eager", "compiled") if r % 2 == 0 else ("compiled", "eager")):
            t = time.perf_counter()
            for _ in range(args.steps):
                step(name)
            times[name].append((time.perf_counter() - t) / args.steps)
    med = {name: float(np.median(v)) for name, v in times.items()}
    print(f"tf_efficientnet_lite0, batch {args.batch} x {args.size}x{args.size}, {args.threads} threads, "
          f"{args.repeats} alternated blocks of {args.steps} steps; compilation {compile_s:.0f} s")
    for name, v in times.items():
        print(f"  {name:<9} median {med[name] * 1e3:7.1f} ms/step  {args.batch / med[name]:6.1f} img/s   "
              f"blocks (ms/step): {' '.join(f'{s * 1e3:.0f}' for s in v)}")
    print(f"  speed-up of the compiled model over eager: {med['eager'] / med['compiled']:.3f}x")


if __name__ == "__main__":
    main()

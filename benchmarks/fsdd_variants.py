"""FSDD training variants on the hardest held-out speaker: what the preset's choices are worth.

Trains ``tf_efficientnet_lite0`` (offline ImageNet weights) on five FSDD
speakers and scores file accuracy on the sixth (fold 5 = theo, the speaker the
issue's hand-rolled anchor scored 0.60 on), 8 epochs each, one torch thread per
variant, for:

- ``adamw_noflip``: AdamW lr 1e-3, no horizontal flip, time/freq masks;
- ``sgd_flip``: SGD lr 0.01, flip p=0.5, time/freq masks;
- ``sgd_flip_stretch``: as ``sgd_flip`` plus frequency/time stretches of 15 %
  (the preset, :func:`specimg.presets.fsdd_train_config`);
- ``noflip``: the preset without the horizontal flip (a digit played backwards is
  another sound: does the flip help speech?);
- ``zero_pad``: the preset's training on clips zero-padded to 1 s instead of looped;
- ``img96``: on 96x96 images instead of 64x64.

Every variant but ``zero_pad`` renders looped clips (the seed's ``pad_mode='tile'``),
as when the first variants were measured; the preset now zero-pads
(:func:`specimg.presets.fsdd_render_config`), so ``zero_pad`` is the preset and
``sgd_flip_stretch`` is it with looping.

Run: ``.venv/bin/python benchmarks/fsdd_variants.py [--fold 5] [--epochs 8]`` (about 5 min per variant on one core).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from specimg.presets import fsdd_render_config, fsdd_train_config
from specimg.spectrogram import render_dataset
from specimg.training import train_cv

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "datasets" / "fsdd"

VARIANTS = {
    "adamw_noflip": dict(optimizer="adamw", lr=1e-3, hflip=0.0, freq_stretch=0.0, time_stretch=0.0),
    "sgd_flip": dict(optimizer="sgd", lr=0.01, hflip=0.5, freq_stretch=0.0, time_stretch=0.0),
    "sgd_flip_stretch": dict(),  # the preset
    "noflip": dict(hflip=0.0),
    "zero_pad": dict(),
    "img96": dict(),
}
#: Variants rendered differently from the preset: (image size, pad mode).
RENDERS = {"zero_pad": (64, "zero"), "img96": (96, "tile")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fold", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "bench_out" / "variants"))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    rows = []
    for name in args.variants.split(","):
        size, pad = RENDERS.get(name, (64, "tile"))
        rcfg = fsdd_render_config(size)
        rcfg = rcfg.replace(audio=rcfg.audio.replace(pad_mode=pad))
        cache = render_dataset(FSDD / "labels.csv", out / f"cache_{size}_{pad}", rcfg, workers=2, progress=False)
        t0 = time.perf_counter()
        cfg = fsdd_train_config(epochs=args.epochs, device="cpu", **VARIANTS[name])
        res = train_cv(cache, out / name, cfg, folds=[args.fold], verbose=False)
        (speaker, row), = res.metrics["per_group"].items()
        log = pd.read_csv(out / name / f"fold_{args.fold}" / "log.csv")
        rows.append({"variant": name, "held_out": speaker, "file_accuracy": row["accuracy"],
                     "per_epoch": " ".join(f"{a:.2f}" for a in log["val_accuracy"]),
                     "seconds": round(time.perf_counter() - t0)})
        print(rows[-1], flush=True)
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()

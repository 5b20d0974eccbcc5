"""The main job on the bundled default data (FSDD): render -> summary.

``make demo`` runs this. Later stages (training, prediction, reports) are
added here as they land.

    python examples/demo_fsdd.py --data ../shared/datasets/fsdd --out demo_out
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig
from specimg.spectrogram import render_dataset

# CPU-friendly FSDD settings: 8 kHz, 1 s windows (digits last 0.14-2.3 s; short ones are looped), hop 0.5 s.
FSDD_RENDER = RenderConfig(
    audio=AudioConfig(sample_rate=8000),
    segment=SegmentConfig(seconds=1.0, hop=0.5),
    spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=64, image_size=(128, 128)),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/datasets/fsdd", help="FSDD folder (with labels.csv)")
    ap.add_argument("--out", default="demo_out")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    data, out = Path(args.data), Path(args.out)
    source = data / "labels.csv" if (data / "labels.csv").exists() else data
    t0 = time.perf_counter()
    cache = render_dataset(source, out / "cache", FSDD_RENDER, workers=args.workers)
    dt = time.perf_counter() - t0
    files = cache.files
    print(f"\nrendered {len(files)} files -> {len(cache.images)} images {cache.images.shape[1:]} in {dt:.1f} s "
          f"({cache.root})")
    print(f"classes: {', '.join(cache.classes)}; windows per file: "
          f"{files['n_segments'].value_counts().sort_index().to_dict()}")
    if "speaker" in files:
        print("files per speaker: " + ", ".join(f"{k} {v}" for k, v in files["speaker"].value_counts().items()))
    if len(cache.errors):
        print(f"{len(cache.errors)} file(s) failed: see {cache.root / 'errors.csv'}")


if __name__ == "__main__":
    main()

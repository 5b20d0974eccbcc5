"""The seed solution's render loop as a script of its own: the baseline of ``benchmarks/render.py --whole``.

For every 20 s window of every file in a CSV (``path`` relative to it): ``librosa.load(offset=, duration=)``,
``librosa.feature.melspectrogram`` (n_fft 2048, hop 512, 128 mels), ``power_to_db``, uint8, PIL's bilinear
resize to 512x512, RGB, one PNG file. Run as a whole process (``python benchmarks/seed_render.py CSV OUT --hop
10``), it pays its imports the way a user's script does; ``benchmarks/render.py`` also imports
:func:`seed_file` for its in-process comparison.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

SR, SECONDS, SIZE = 22050, 20.0, 512


def seed_file(path: str, out: str, hop: float) -> int:
    """The seed's way for one file: each window loaded, transformed and saved as a PNG on its own."""
    import librosa
    from PIL import Image

    duration = librosa.get_duration(path=path)
    start, n = 0.0, 0
    while start + SECONDS <= duration + 1e-6:
        y, _ = librosa.load(path, sr=SR, offset=start, duration=SECONDS)
        S = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=128)
        db = librosa.power_to_db(S, ref=np.max, top_db=80.0)
        u8 = ((db + 80.0) / 80.0 * 255).astype(np.uint8)[::-1]
        img = Image.fromarray(u8).resize((SIZE, SIZE), Image.BILINEAR).convert("RGB")
        img.save(Path(out) / f"{Path(path).stem}_{int(start):04d}.png")
        n += 1
        start += hop
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--hop", type=float, default=10.0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.csv, newline="") as fh:
        paths = [str(args.csv.parent / row["path"]) for row in csv.DictReader(fh)]
    n = sum(seed_file(p, str(args.out), args.hop) for p in paths)
    print(f"{n} images")


if __name__ == "__main__":
    main()

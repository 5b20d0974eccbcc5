"""Write the reference images of tests/test_spectrogram_defaults.py::test_recipe_images_match_the_references.

    .venv/bin/python tests/data/make_reference_images.py [--fsdd FOLDER]

For each recipe model's and preset's render config (the names of ``_recipe_configs()`` in the test), the
images ``render_signal`` draws for two FSDD recordings are stored as uint8 arrays in
``tests/data/reference_images.npz``: one channel (the configs replicate it into three; the test checks that the
three are equal) and, for the 512x512 music-genre configs, the first and the last window of each file (the
looped clip's windows are alike; those two are the first start and the end-aligned one). Configs that render
the same images share one entry. ``tests/data/reference_images.json`` lists each name's resolved spectrogram
config, its entry, the full shapes, the windows kept, the tolerance and the commit the script ran at.

Float rendering (FFT, mel product, dB, resize) rounds differently on other CPUs and kernels, so the test does
not pin bytes: it allows :data:`TOLERANCE`. Re-run this script only when a change of the rendering is meant
to change the images, and say so in the commit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FILES = ("recordings/0_george_0.wav", "recordings/7_theo_3.wav")
#: Windows kept of configs with more than this many pixels per image (first and last).
LARGE = 256 * 256
#: What the test allows: each pixel within ``max_grey_levels`` of the reference, and at most
#: ``max_fraction`` of the pixels (at least ``min_pixels``) off at all.
TOLERANCE = {"max_grey_levels": 1, "max_fraction": 1e-4, "min_pixels": 4}


def recipe_configs() -> dict:
    """name -> RenderConfig: every model of examples/recipes/*.yaml, and the FSDD presets."""
    from specimg.experiment import load_recipe
    from specimg.presets import fsdd_render_config

    configs = {}
    for yaml in sorted((ROOT / "examples" / "recipes").glob("*.yaml")):
        recipe = load_recipe(yaml)
        for m in recipe.models:
            configs[f"{yaml.stem}/{m.name}"] = recipe.render_config(m)
    for size in (64, 96):
        for pad in ("zero", "tile"):
            configs[f"presets/fsdd_render_config({size},{pad})"] = fsdd_render_config(size, pad)
    return configs


def render(cfg, fsdd: Path) -> list:
    """The images of :data:`FILES` under ``cfg``: uint8 (n_windows, H, W, 3) each."""
    from specimg.audio import load_audio
    from specimg.spectrogram import render_signal

    out = []
    for f in FILES:
        y = load_audio(fsdd / f, sr=cfg.audio.sample_rate, offset=cfg.audio.offset, duration=cfg.audio.duration)
        out.append(render_signal(y, config=cfg)[0])
    return out


def kept_windows(n_windows: int, pixels: int) -> list:
    return [0, n_windows - 1] if pixels > LARGE and n_windows > 2 else list(range(n_windows))


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "specimg"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (with uncommitted changes under specimg/)" if dirty else "")


def main(argv=None) -> int:
    from specimg.datasets import fsdd_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fsdd", type=Path, default=None, help="FSDD folder (default: specimg.datasets.fsdd_path())")
    args = parser.parse_args(argv)
    fsdd = fsdd_path(args.fsdd)
    arrays, entries = {}, {}
    for name, cfg in recipe_configs().items():
        key = cfg.hash()
        images = render(cfg, fsdd)
        shapes = [list(im.shape) for im in images]
        windows = [kept_windows(im.shape[0], im.shape[1] * im.shape[2]) for im in images]
        if key not in arrays:
            for i, (im, keep) in enumerate(zip(images, windows)):
                assert cfg.spectrogram.channels == "delta" or (im == im[..., :1]).all(), name
                planes = im[keep] if cfg.spectrogram.channels == "delta" else im[keep][..., 0]
                arrays[f"{key}_{i}"] = np.ascontiguousarray(planes)
        entries[name] = {"spectrogram": cfg.to_dict()["spectrogram"], "entry": key, "shapes": shapes,
                         "windows": windows}
    np.savez_compressed(HERE / "reference_images.npz", **arrays)
    meta = {"_about": __doc__.splitlines()[0], "generated_by": "tests/data/make_reference_images.py",
            "commit": _commit(), "files": list(FILES), "tolerance": TOLERANCE, "configs": entries}
    (HERE / "reference_images.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{len(entries)} configs, {len(arrays)} arrays -> {HERE / 'reference_images.npz'} "
          f"({(HERE / 'reference_images.npz').stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

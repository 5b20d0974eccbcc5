"""Shared fixtures: the real FSDD data, a seeded rng, small render configs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

FSDD = Path(os.environ.get("SPECIMG_FSDD", Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fsdd"))


@pytest.fixture
def one_thread():
    """Run a test with one torch thread (tiny models are faster so on 2 shared cores)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    if not (FSDD / "labels.csv").exists():
        pytest.skip(f"FSDD not found at {FSDD} (set SPECIMG_FSDD)")
    return FSDD


@pytest.fixture(scope="session")
def fsdd_subset_csv(fsdd_dir, tmp_path_factory) -> Path:
    """A CSV of 60 FSDD files (2 takes x 10 digits x 3 speakers), paths relative to the CSV."""
    df = pd.read_csv(fsdd_dir / "labels.csv", dtype={"label": str})
    take = df["path"].str.extract(r"_(\d+)\.wav$")[0].astype(int)
    sub = df[take.isin([0, 1]) & df["speaker"].isin(["george", "jackson", "lucas"])].copy()
    sub["path"] = [str(fsdd_dir / p) for p in sub["path"]]
    out = tmp_path_factory.mktemp("fsdd") / "subset.csv"
    sub[["path", "label", "speaker"]].to_csv(out, index=False)
    return out


@pytest.fixture
def small_config():
    from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig

    return RenderConfig(
        audio=AudioConfig(sample_rate=8000),
        segment=SegmentConfig(seconds=1.0, hop=0.5),
        spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=32, image_size=(32, 48)),
    )

"""Shared fixtures: the real FSDD data, a seeded rng, small render configs, a batch of bad audio files, a tiny
registered backbone."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

#: Every skip for want of FSDD starts with this, so that the summary can count them and CI can refuse them.
FSDD_SKIP = "the FSDD tests need the dataset"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _skip_reason(report) -> str:
    return str(report.longrepr[2]) if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3 else ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (``CI=true``) a test skipped for want of FSDD fails: the data is there, so nothing may hide."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _in_ci() and FSDD_SKIP in _skip_reason(report):
        report.outcome = "failed"
        report.longrepr = f"CI=true and this test was skipped: {_skip_reason(report)}"


def pytest_terminal_summary(terminalreporter):
    """One line with the count when tests were skipped for want of FSDD (offline, no copy)."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if FSDD_SKIP in _skip_reason(r)]
    if skipped:
        terminalreporter.write_line(f"FSDD is missing: {len(skipped)} test(s) skipped ({_skip_reason(skipped[0])}). "
                                    "Point SPECIMG_FSDD (make test DATA=...) at a copy, or go online once: "
                                    "`python -m specimg.datasets` downloads it.", yellow=True, bold=True)


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
    """FSDD as :func:`specimg.datasets.fsdd_path` finds it: ``$SPECIMG_FSDD`` (``make test DATA=...``),
    ``../shared/datasets/fsdd``, the user cache, or a download of the release into it (once).

    Missing (and not downloadable), the FSDD tests are skipped with the reason, except in CI (``CI=true``),
    where the whole run stops with it: a quarter of the suite must not pass by being skipped.
    """
    from specimg.datasets import fsdd_path
    from specimg.exceptions import DataError

    try:
        return fsdd_path()
    except DataError as exc:
        msg = f"{FSDD_SKIP}: {exc}"
        if _in_ci():
            pytest.exit(f"CI=true and {msg}", returncode=1)
        pytest.skip(msg)


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


#: The bad-input batch: file name -> None for a file that must work (decoded, converted, looped), else a
#: fragment of the error that must name it. Built by :func:`make_bad_batch`.
BAD_BATCH = {
    "ok.wav": None,
    "pcm8.wav": None,
    "alaw.wav": None,
    "stereo.wav": None,
    "rate44k.wav": None,
    "mp3inside.wav": None,
    "short.wav": None,  # shorter than a window: looped
    "garbage.wav": "cannot be decoded",
    "empty.wav": "empty (0 bytes)",
    "zero_length.wav": "zero-length",
    "nan.wav": "NaN or infinite",
    "inf.wav": "NaN or infinite",
    "silent.wav": "silent",
    "missing.wav": "not found",
}


def make_bad_batch(folder: Path, fsdd_dir: Path, labels=("3", "7")) -> Path:
    """Write every kind of :data:`BAD_BATCH` file (8 kHz FSDD speech) and ``batch.csv`` (path,label) listing them."""
    import librosa
    import soundfile as sf

    sr = 8000
    folder.mkdir(parents=True, exist_ok=True)
    y, _ = sf.read(fsdd_dir / "recordings" / "3_theo_0.wav", dtype="float32")
    sf.write(folder / "ok.wav", y, sr)
    sf.write(folder / "pcm8.wav", y, sr, subtype="PCM_U8")
    sf.write(folder / "alaw.wav", y, sr, subtype="ALAW")
    sf.write(folder / "stereo.wav", np.stack([y, y * 0.5], 1), sr)
    sf.write(folder / "rate44k.wav", librosa.resample(y, orig_sr=sr, target_sr=44100), 44100)
    sf.write(folder / "mp3inside.wav", y, sr, format="MP3", subtype="MPEG_LAYER_III")
    sf.write(folder / "short.wav", y[:800], sr)
    (folder / "garbage.wav").write_bytes(b"RIFF....WAVEfmt garbage" * 20)
    (folder / "empty.wav").write_bytes(b"")
    sf.write(folder / "zero_length.wav", np.zeros(0, np.float32), sr)
    bad = y.copy()
    bad[50] = np.nan
    sf.write(folder / "nan.wav", bad, sr, subtype="FLOAT")
    bad[50] = np.inf
    sf.write(folder / "inf.wav", bad, sr, subtype="FLOAT")
    sf.write(folder / "silent.wav", np.zeros(sr, np.float32), sr)
    names = list(BAD_BATCH)
    table = pd.DataFrame({"path": names, "label": [labels[i % len(labels)] for i in range(len(names))]})
    table.to_csv(folder / "batch.csv", index=False)
    return folder / "batch.csv"


@pytest.fixture(scope="session")
def bad_batch(fsdd_dir, tmp_path_factory) -> SimpleNamespace:
    """One shared (read-only) bad-input batch: ``folder``, ``csv`` (path,label with labels 3/7 alternating),
    ``expected`` (:data:`BAD_BATCH`), ``good`` and ``bad`` (file names)."""
    folder = tmp_path_factory.mktemp("bad_batch")
    csv = make_bad_batch(folder, fsdd_dir)
    return SimpleNamespace(folder=folder, csv=csv, expected=dict(BAD_BATCH),
                           good=[n for n, e in BAD_BATCH.items() if e is None],
                           bad=[n for n, e in BAD_BATCH.items() if e is not None])


#: Name of the tiny backbone registered by the ``tiny_backbone`` fixture.
TINY_BACKBONE = "specimg_test_tiny_net"


@pytest.fixture(scope="session")
def tiny_backbone() -> str:
    """Register (once) a tiny CNN (one strided convolution, pooling, a linear head) and return its name."""
    from torch import nn

    from specimg.models import list_backbones, register_backbone

    class TinyNet(nn.Module):
        def __init__(self, num_classes: int, drop_rate: float = 0.0):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                          nn.AdaptiveAvgPool2d(1))
            self.fc = nn.Linear(8, num_classes)

        def forward(self, x):  # x: (B, 3, H, W)
            return self.fc(self.features(x).flatten(1))  # (B, num_classes)

    if not list_backbones(TINY_BACKBONE):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            register_backbone(TINY_BACKBONE, TinyNet)
    return TINY_BACKBONE

"""The classical anchor of a run: MFCC statistics + LightGBM on the run's folds (specimg.training.fit_anchor)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig
from specimg.tasks import resolve_task
from specimg.training import fit_anchor, mfcc_statistics

SR = 8000
RENDER = RenderConfig(audio=AudioConfig(sample_rate=SR, pad_mode="zero"), segment=SegmentConfig(seconds=1.0, hop=0.5),
                      spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=32, image_size=32))


def tone(freq: float, seconds: float = 0.5, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_mfcc_statistics_of_tones():
    a, b = mfcc_statistics(tone(300), SR, n_fft=256, hop_length=64), mfcc_statistics(tone(2000), SR, n_fft=256,
                                                                                       hop_length=64)
    assert a.shape == b.shape == (80,) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.abs(a[:20] - b[:20]).max() > 10  # the mean MFCCs tell two pitches apart
    # a steady tone: its MFCCs barely move, so the deltas' mean is ~0 (only the edge frames differ)
    assert np.abs(a[40:60]).max() < 0.5 * np.abs(a[:20]).max()
    short = mfcc_statistics(tone(300, seconds=0.01), SR, n_fft=256, hop_length=64)  # 80 samples < n_fft
    assert short.shape == (80,) and np.isfinite(short).all()


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """60 files: 3 classes of tones (300, 900, 2000 Hz, a random level, a little noise), 3 groups of every class."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("tones")
    rows = []
    for i in range(60):
        label, freq = [("low", 300), ("mid", 900), ("high", 2000)][i % 3]
        y = tone(freq * rng.uniform(0.95, 1.05), amp=rng.uniform(0.1, 0.5)) + rng.normal(0, 0.01, SR // 2)
        sf.write(folder / f"{label}_{i}.wav", y.astype(np.float32), SR)
        rows.append({"path": f"{label}_{i}.wav", "abspath": str(folder / f"{label}_{i}.wav"), "label": label,
                     "group": str((i // 3) % 3)})
    return pd.DataFrame(rows)


def test_the_anchor_separates_tones_on_the_given_folds(tones):
    folds = tones["group"].astype(int).to_numpy()
    task = resolve_task(tones)
    a = fit_anchor(tones, folds, task, ["high", "low", "mid"], RENDER)
    assert a["mean"]["accuracy"] == 1.0 and a["pooled"]["uar"] == 1.0 and sorted(a["folds"]) == ["0", "1", "2"]
    assert a["n_files"] == 60 and a["failed"] == {} and a["seconds"] > 0
    only = fit_anchor(tones, folds, task, ["high", "low", "mid"], RENDER, score_folds=[1])
    assert sorted(only["folds"]) == ["1"] and only["n_files"] == int((folds == 1).sum())


def test_an_unreadable_file_is_named_and_the_rest_scored(tones, tmp_path):
    bad = tmp_path / "garbage.wav"
    bad.write_bytes(b"not audio at all" * 10)
    table = pd.concat([tones, pd.DataFrame([{"path": "garbage.wav", "abspath": str(bad), "label": "low",
                                             "group": "0"}])], ignore_index=True)
    a = fit_anchor(table, table["group"].astype(int).to_numpy(), resolve_task(table), ["high", "low", "mid"], RENDER)
    assert list(a["failed"]) == ["garbage.wav"] and "decode" in a["failed"]["garbage.wav"]
    assert a["n_files"] == 60 and a["mean"]["accuracy"] == 1.0


def test_a_multi_label_anchor_scores_tag_sets(tones, tmp_path):
    """Two-tone mixtures: the anchor's per-class models find each tone (macro AP 1)."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(48):
        tags = [["low"], ["high"], ["low", "high"]][i % 3]
        y = sum(tone(300 if t == "low" else 2000, amp=rng.uniform(0.1, 0.3)) for t in tags)
        sf.write(tmp_path / f"m{i}.wav", (y + rng.normal(0, 0.01, len(y))).astype(np.float32), SR)
        rows.append({"path": f"m{i}.wav", "abspath": str(tmp_path / f"m{i}.wav"), "labels": json.dumps(tags)})
    table = pd.DataFrame(rows)
    task = resolve_task(table)
    assert task.kind == "multi-label"
    a = fit_anchor(table, (np.arange(48) // 3) % 3, task, ["high", "low"], RENDER)
    assert a["mean"]["macro_ap"] == pytest.approx(1.0) and set(a["mean"]) == {"macro_ap", "macro_roc_auc"}


def test_specimg_train_prints_the_anchor_and_keeps_it(fsdd_subset_csv, tmp_path):
    args = ["--backbone", "tf_efficientnet_lite0", "--weights", "offline", "--folds", "3", "--group-column", "speaker",
            "--epochs", "1", "--warmup-epochs", "0", "--sample-rate", "8000", "--seconds", "1", "--hop", "0.5",
            "--n-fft", "256", "--hop-length", "64", "--n-mels", "32", "--image-size", "32", "--pad-mode", "zero",
            "--quiet"]
    run = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "specimg", "train", str(fsdd_subset_csv), "--out", str(run), *args],
                         capture_output=True, text=True, check=True).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("anchor (MFCC + LightGBM): accuracy ")]
    assert len(line) == 1 and " UAR " in line[0] and "mean over the same folds; 60 files" in line[0]
    anchor = json.loads((run / "metrics.json").read_text())["anchor"]
    assert f"accuracy {anchor['mean']['accuracy']:.4f}" in line[0] and sorted(anchor["folds"]) == ["0", "1", "2"]
    assert anchor["mean"]["accuracy"] > 0.2  # 10 digits, 3 speakers held out in turn: above chance (0.1)
    skipped = tmp_path / "no_anchor"
    out = subprocess.run([sys.executable, "-m", "specimg", "train", str(fsdd_subset_csv), "--out", str(skipped),
                          *args, "--no-anchor", "--cache", str(run / "cache")],
                         capture_output=True, text=True, check=True).stdout
    assert "anchor (" not in out and "anchor" not in json.loads((skipped / "metrics.json").read_text())

"""Prediction is a long job like the others: written in parts as it goes, resumed after kill -9 to the same bytes;
a NaN output names the file and the fold model; a worker process that dies is reported with its file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig, TrainConfig
from specimg.predict import Predictor
from specimg.spectrogram import render_dataset
from specimg.training import train_cv

ROOT = Path(__file__).resolve().parents[1]
CFG = RenderConfig(audio=AudioConfig(sample_rate=8000), segment=SegmentConfig(seconds=1.0, hop=0.5),
                   spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=32, image_size=(32, 48)))


@pytest.fixture(scope="module")
def table(fsdd_dir, tmp_path_factory) -> Path:
    """200 FSDD files (takes 0-3 of 5 speakers x 10 digits), paths relative to the CSV's folder."""
    df = pd.read_csv(fsdd_dir / "labels.csv", dtype={"label": str})
    take = df["path"].str.extract(r"_(\d+)\.wav$")[0].astype(int)
    sub = df[take.isin([0, 1, 2, 3]) & (df["speaker"] != "yweweler")].copy()
    sub["path"] = [os.path.relpath(fsdd_dir / p, tmp_path_factory.getbasetemp()) for p in sub["path"]]
    out = tmp_path_factory.getbasetemp() / "predict_table.csv"
    sub[["path", "label"]].to_csv(out, index=False)
    assert len(sub) == 200
    return out


@pytest.fixture(scope="module")
def run(fsdd_subset_csv, tmp_path_factory) -> Path:
    """A run of a timm backbone (a subprocess can rebuild it by name), one epoch, 2 folds."""
    root = tmp_path_factory.mktemp("resume_run")
    cache = render_dataset(fsdd_subset_csv, root / "cache", CFG, progress=False)
    cfg = TrainConfig().with_options(backbone="test_efficientnet", weights="none", epochs=1, batch_size=16, n_splits=2, device="cpu",
                      num_workers=0, tta="flip")
    train_cv(cache, root / "run", cfg, verbose=False)
    return root / "run"


def _predict_cmd(run: Path, table: Path, out: Path, *extra: str) -> list:
    return [sys.executable, "-m", "specimg", "predict", str(run), str(table), "--out", str(out), "--device", "cpu",
            "--part-files", "10", "--segments", *extra]


#: Every `specimg predict` of these tests, the uninterrupted reference included, runs with one thread.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_kill9_then_the_same_command_resumes_to_identical_output(run, table, tmp_path):
    clean = tmp_path / "clean.csv"  # the same command uninterrupted, with the same environment (threads: ENV)
    ref = subprocess.run(_predict_cmd(run, table, clean, "--quiet"), env=ENV, capture_output=True, text=True,
                         timeout=600)
    assert ref.returncode == 0, ref.stderr
    assert not (tmp_path / "clean.csv.parts").exists()  # the parts are gone once the output is written
    out = tmp_path / "killed.csv"
    parts = tmp_path / "killed.csv.parts"
    proc = subprocess.Popen(_predict_cmd(run, table, out, "--quiet"), env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(parts.glob("part-*.json"))) < 2 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(list(parts.glob("part-*.json")))
    assert not out.exists() and 2 <= n_done < 20, f"the kill missed the run ({n_done} parts done)"
    again = subprocess.run(_predict_cmd(run, table, out), env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "of 20 part(s) already done" in again.stderr
    assert out.read_bytes() == clean.read_bytes()
    assert (tmp_path / "killed_segments.csv").read_bytes() == (tmp_path / "clean_segments.csv").read_bytes()
    assert len(pd.read_csv(out)) == 200 and not parts.exists()


def test_a_changed_prediction_does_not_reuse_parts(run, table, tmp_path):
    out = tmp_path / "p.csv"
    pred = Predictor.from_run(run, device="cpu")
    first = pred.predict(table, out=out, part_files=50, progress=False)
    (tmp_path / "p.csv.parts").mkdir()  # stale parts of another prediction
    (tmp_path / "p.csv.parts" / "part-00000.json").write_text('{"fingerprint": "another"}')
    second = Predictor.from_run(run, device="cpu", tta="none").predict(table, out=out, part_files=50,
                                                                        progress=False)
    assert len(second.files) == 200
    assert not np.allclose(first.files.filter(like="prob_").to_numpy(), second.files.filter(like="prob_").to_numpy())


class _Poisoned(nn.Module):
    """Logits of a linear probe, NaN for bright images (the white-noise file), when ``poisoned``."""

    def __init__(self, poisoned: bool, threshold: float):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3, 10)
        self.poisoned, self.threshold = poisoned, threshold

    def forward(self, x):  # (B, 3, H, W) normalised
        m = x.mean(dim=(2, 3))  # (B, 3)
        out = self.fc(m)  # (B, 10)
        if self.poisoned:
            out = out + torch.where(m[:, :1] > self.threshold, float("nan"), 0.0)
        return out


def test_nan_output_names_the_file_and_the_fold_model(fsdd_subset_csv, tmp_path):
    import soundfile as sf

    good = pd.read_csv(fsdd_subset_csv)["path"].iloc[:8].tolist()
    noise = np.random.default_rng(0).uniform(-1, 1, 8000).astype(np.float32)
    sf.write(tmp_path / "noise.wav", noise, 8000)
    pd.DataFrame({"path": good[:4] + [str(tmp_path / "noise.wav")] + good[4:]}).to_csv(tmp_path / "in.csv",
                                                                                   index=False)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    probe = Predictor([nn.Identity()], classes=[str(i) for i in range(10)], render_config=CFG, mean=mean, std=std,
                      input_size=(3, 32, 48), device="cpu", tta="none")
    brightness = {}
    for p in good + [str(tmp_path / "noise.wav")]:
        images = probe.input.prepare(p, CFG)[0]
        brightness[p] = float(((images / 255.0 - 0.5) / 0.25).mean(axis=(1, 2, 3)).max())
    speech = max(brightness[p] for p in good)
    assert brightness[str(tmp_path / "noise.wav")] > speech + 0.1
    threshold = (speech + brightness[str(tmp_path / "noise.wav")]) / 2
    pred = Predictor([_Poisoned(False, threshold), _Poisoned(True, threshold)], classes=[str(i) for i in range(10)],
                     render_config=CFG, mean=mean, std=std, input_size=(3, 32, 48), device="cpu",
                     model_names=["fold 0", "fold 3"], batch_size=4)
    res = pred.predict(tmp_path / "in.csv", progress=False, segments=True)
    assert res.files["path"].tolist() == good
    (err,) = res.errors["error"].tolist()
    assert res.errors["path"].tolist() == [str(tmp_path / "noise.wav")]
    assert err.startswith("fold 3 gave NaN/inf probabilities for it")
    assert np.isfinite(res.files.filter(like="prob_").to_numpy()).all()


def test_a_worker_that_dies_is_reported_with_its_file_and_the_rest_completes(run, fsdd_subset_csv, tmp_path,
                                                                             monkeypatch):
    from specimg.predict import _inputs

    files = pd.read_csv(fsdd_subset_csv)["path"].iloc[:10].tolist()
    victim = files[3]
    original = _inputs.RenderedInput.prepare

    def prepare(abspath, config):  # runs in the forked worker processes
        if abspath == victim:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(abspath, config)

    monkeypatch.setattr(_inputs.RenderedInput, "prepare", staticmethod(prepare))
    pd.DataFrame({"path": files}).to_csv(tmp_path / "in.csv", index=False)
    pred = Predictor.from_run(run, device="cpu")
    res = pred.predict(tmp_path / "in.csv", workers=2, progress=False)
    assert res.errors["path"].tolist() == [victim]
    assert "worker process preparing it died" in res.errors["error"].iat[0]
    assert res.files["path"].tolist() == [p for p in files if p != victim]
    monkeypatch.setattr(_inputs.RenderedInput, "prepare", staticmethod(original))
    clean = pred.predict(tmp_path / "in.csv", workers=2, progress=False)
    np.testing.assert_allclose(res.files.filter(like="prob_").to_numpy(),
                               clean.files.set_index("path").drop(victim).filter(like="prob_").to_numpy(), atol=1e-6)

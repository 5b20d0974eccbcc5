"""Prediction through the on-device front end (``Predictor(images='on-the-fly')``) against the CPU render path.

Real FSDD audio, run on the CPU (``'gpu'`` means the torch front end on the predictor's device).

Measured (CPU, torch 2.14, librosa 0.11; two random-init fold models with logits x60, so that window
probabilities spread to a mean top probability of about 0.3): on 60 FSDD clips (62 windows) the two front ends
give the same files, windows and bounds, and window probabilities differ by at most 6.3e-4 (2.6e-4 on 200
other files; the images differ by 1 in rare pixels); the tests assert 2e-3. On a 3.4 s file (ten clips back
to back, 6 windows) the front end's images before normalisation equal ``render_file``'s away from the 2 image
columns at each window edge (where the window-by-window STFT sees zero padding instead of the neighbouring
audio; differences there up to 31): interior pixels differ by 1 in 0.025 % of them (the tests assert <= 1 in
under 0.2 %). Its window probabilities differ by at most 5.8e-3; the tests assert 0.02.
"""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from torch import nn

from specimg.audio import load_audio
from specimg.cli import main
from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig, TrainConfig
from specimg.exceptions import AudioError, ParameterError
from specimg.models import register_backbone
from specimg.predict import Predictor
from specimg.spectrogram import ImageCache, render_dataset, render_file, signal_windows

SR = 8000
CFG = RenderConfig(audio=AudioConfig(sample_rate=SR), segment=SegmentConfig(seconds=1.0, hop=0.5),
                   spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=32, image_size=(32, 48)))
CLASSES = [str(d) for d in range(10)]
NET = "specimg_test_frontend_net"
#: Window probabilities of the two front ends on one-window files differ by at most this (measured 6.3e-4).
PROB_TOL = 2e-3
#: ... and on the windows of a multi-window file, whose edge columns differ (measured 5.8e-3).
EDGE_PROB_TOL = 0.02
#: Image columns at each window edge where the front end's STFT sees zero padding instead of the neighbours.
EDGE = 2

pytestmark = pytest.mark.usefixtures("one_thread")


class TinyNet(nn.Module):
    """Two strided convolutions, a 4x4 pool and a linear layer; ``gain`` sharpens the softmax."""

    def __init__(self, num_classes: int, drop_rate: float = 0.0, gain: float = 1.0):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d((4, 4)))
        self.fc = nn.Linear(8 * 16, num_classes)
        self.gain = gain

    def forward(self, x):  # x: (B, 3, H, W)
        return self.gain * self.fc(self.features(x).flatten(1))  # (B, num_classes)


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # re-registering on a second import
    register_backbone(NET, TinyNet)


def predictor(frontend: str, **kw) -> Predictor:
    torch.manual_seed(0)
    models = [TinyNet(len(CLASSES), gain=60.0).eval() for _ in range(2)]
    images = {"cpu": "cached", "gpu": "on-the-fly"}.get(frontend, frontend)  # the tests' short names
    return Predictor(models, classes=CLASSES, render_config=CFG, mean=(0.485, 0.456, 0.406),
                     std=(0.229, 0.224, 0.225), input_size=(3, 32, 48), device="cpu", images=images, **kw)


@pytest.fixture(scope="module")
def long_wav(fsdd_dir, tmp_path_factory):
    """Ten FSDD recordings of one speaker back to back: a ~4 s file of several windows."""
    names = [f"{d}_theo_0.wav" for d in range(10)]
    y = np.concatenate([load_audio(fsdd_dir / "recordings" / n, sr=SR) for n in names])
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, y, SR)
    return path


@pytest.fixture(scope="module")
def both(fsdd_subset_csv, long_wav, tmp_path_factory):
    """The same 61 files (60 FSDD clips and the long file) predicted with each front end."""
    table = pd.read_csv(fsdd_subset_csv, dtype={"label": str})
    table = pd.concat([table, pd.DataFrame({"path": [str(long_wav)], "label": ["0"]})], ignore_index=True)
    csv = tmp_path_factory.mktemp("both") / "in.csv"
    table[["path", "label"]].to_csv(csv, index=False)
    return {fe: predictor(fe).predict(csv, segments=True, progress=False) for fe in ("cpu", "gpu")}


def test_same_files_windows_and_bounds(both):
    cpu, gpu = both["cpu"], both["gpu"]
    assert cpu.errors.empty and gpu.errors.empty
    assert list(gpu.files.columns) == list(cpu.files.columns)
    assert list(gpu.segments.columns) == list(cpu.segments.columns)
    assert gpu.files["path"].tolist() == cpu.files["path"].tolist() and len(gpu.files) == 61
    key = ["path", "segment", "start", "end"]
    pd.testing.assert_frame_equal(gpu.segments[key], cpu.segments[key])
    assert (gpu.segments["path"] == gpu.files["path"].iloc[-1]).sum() >= 5  # the long file: several windows


def test_window_probabilities_agree(both):
    cols = [f"prob_{c}" for c in CLASSES]
    cpu, gpu = both["cpu"].segments[cols].to_numpy(), both["gpu"].segments[cols].to_numpy()
    assert cpu.max(1).mean() > 0.25  # the models are sharp enough for the comparison to mean something
    np.testing.assert_allclose(gpu.sum(1), 1.0, atol=1e-5)
    diff = np.abs(cpu - gpu).max(1)  # (n_windows,)
    long = (both["gpu"].segments["path"] == both["gpu"].files["path"].iloc[-1]).to_numpy()
    assert diff[~long].max() < PROB_TOL, diff[~long].max()
    assert diff[~long].max() > 0  # the two paths really are different computations
    assert diff[long].max() < EDGE_PROB_TOL, diff[long].max()
    files_c, files_g = both["cpu"].files, both["gpu"].files
    file_diff = np.abs(files_c[cols].to_numpy() - files_g[cols].to_numpy()).max(1)  # (n_files,)
    assert file_diff[:-1].max() < PROB_TOL and file_diff[-1] < EDGE_PROB_TOL
    assert (files_c["prediction"] == files_g["prediction"]).mean() >= 0.95


def test_multi_window_images_match_render_file_inside(long_wav):
    pred = predictor("gpu")
    images, bounds, _ = render_file(str(long_wav), config=CFG)  # (n_windows, 32, 48, 3) uint8
    y = load_audio(long_wav, sr=SR)
    windows, w_bounds, padded = signal_windows(y, config=CFG)
    np.testing.assert_array_equal(w_bounds, bounds)
    ref = pred.pipeline.frontend.reference(torch.from_numpy(padded)[None]).repeat(len(windows))  # (n_windows,)
    with torch.no_grad():
        got = pred.pipeline.images(torch.from_numpy(windows), ref)  # (n_windows, 3, 32, 48) in [0, 1]
    got = (got * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy().astype(int)  # (n_windows, 32, 48, 3)
    want = images.astype(int)
    assert len(want) >= 5
    diff = np.abs(got - want)  # (n_windows, 32, 48, 3)
    inner = diff[:, :, EDGE:-EDGE]
    assert inner.max() <= 1 and (inner > 0).mean() < 0.002, (inner.max(), (inner > 0).mean())
    # the first window's left edge is the file's start (the same zero padding in both paths); the other
    # windows' left edges are where the window-by-window STFT differs (measured 10-31)
    assert diff[0, :, :EDGE].max() <= 1 and diff[1:, :, :EDGE].max(axis=(1, 2, 3)).min() >= 5
    # and these images are what predict_file feeds the models
    np.testing.assert_allclose(pred.predict_file(long_wav), pred.predict_signal(y)[0], atol=1e-6)
    x = pred.pipeline(torch.from_numpy(windows), ref)
    np.testing.assert_allclose(pred.predict_signal(y)[1], pred._ensemble(x).numpy(), atol=1e-6)


def test_bad_files_reported_rest_predicted(fsdd_subset_csv, tmp_path, both):
    good = pd.read_csv(fsdd_subset_csv)["path"].iloc[:6].tolist()
    (tmp_path / "empty.wav").write_bytes(b"")
    nan = load_audio(good[0], sr=SR)
    nan[100:200] = np.nan
    sf.write(tmp_path / "nan.wav", nan, SR, subtype="FLOAT")
    paths = [good[0], str(tmp_path / "missing.wav"), good[1], good[2], str(tmp_path / "empty.wav"), good[3],
             str(tmp_path / "nan.wav"), good[4], good[5]]
    pd.DataFrame({"path": paths}).to_csv(tmp_path / "in.csv", index=False)
    pred = predictor("gpu", batch_size=4)
    for workers in (1, 2):
        res = pred.predict(tmp_path / "in.csv", workers=workers, progress=False)
        assert res.files["path"].tolist() == good
        errors = dict(zip(res.errors["path"], res.errors["error"]))
        assert list(errors) == [str(tmp_path / n) for n in ("missing.wav", "empty.wav", "nan.wav")]
        assert "file not found" in errors[str(tmp_path / "missing.wav")]
        assert "empty (0 bytes)" in errors[str(tmp_path / "empty.wav")]
        assert "100 NaN" in errors[str(tmp_path / "nan.wav")]
        # the bad files cost the good ones nothing: the same probabilities as in the clean batch
        clean = both["gpu"].files.set_index("path").loc[good].filter(like="prob_").to_numpy()
        np.testing.assert_allclose(res.files.filter(like="prob_").to_numpy(), clean, atol=1e-6)
    # the same errors table as the CPU render path
    pd.testing.assert_frame_equal(res.errors, predictor("cpu").predict(tmp_path / "in.csv", progress=False).errors)
    with pytest.raises(AudioError, match=r"missing\.wav.*stopped by --strict"):
        pred.predict(tmp_path / "in.csv", progress=False, strict=True)


def test_frontend_option_is_validated():
    with pytest.raises(ParameterError, match="The 'images' parameter of Predictor must be one of 'cached', "
                                             "'on-the-fly'. Got 'tpu'"):
        predictor("tpu")
    with pytest.raises(TypeError, match="frontend"):  # the deprecated spelling is gone (CHANGELOG, 0.2.0)
        Predictor([torch.nn.Identity()], classes=CLASSES, render_config=CFG, mean=(0.5,) * 3, std=(0.5,) * 3,
                  input_size=(3, 32, 48), device="cpu", frontend="gpu")


# ------------------------------------------------------------------ a tiny trained run and the CLI
@pytest.fixture(scope="module")
def run(fsdd_subset_csv, tmp_path_factory):
    from specimg.training import train_cv

    root = tmp_path_factory.mktemp("frontend_run")
    cache = render_dataset(fsdd_subset_csv, root / "cache", CFG, progress=False)
    cfg = TrainConfig().with_options(backbone=NET, weights="none", epochs=1, n_splits=2, batch_size=32,
                                     device="cpu", num_workers=0, image_size=(32, 48))
    train_cv(cache, root / "run", cfg, verbose=False)
    return root / "run"


def test_from_run_auto_uses_the_runs_frontend(run, tmp_path):
    assert json.loads((run / "config.json").read_text())["train"]["images"] == "cached"
    assert Predictor.from_run(run, device="cpu").images == "cached"
    assert Predictor.from_run(run, device="cpu", images="on-the-fly").pipeline is not None
    gpu_run = tmp_path / "gpu_run"
    shutil.copytree(run, gpu_run, ignore=shutil.ignore_patterns("last.pt"))
    meta = json.loads((gpu_run / "config.json").read_text())
    meta["train"]["images"] = "on-the-fly"
    (gpu_run / "config.json").write_text(json.dumps(meta))
    pred = Predictor.from_run(gpu_run, device="cpu")
    assert pred.images == "on-the-fly" and pred.pipeline is not None
    assert Predictor.from_run(gpu_run, device="cpu", images="cached").pipeline is None
    # a run folder of specimg 0.1: a flat train config that spells it train.frontend
    train = meta["train"]
    flat = {k: v for k, v in train.items() if k not in ("optim", "schedule", "augment", "task", "runtime")}
    for section in ("optim", "schedule", "augment", "runtime"):
        flat.update(train[section])
    flat.update(schedule=flat.pop("lr_schedule"), metric="accuracy", multi_label=None, multi_label_loss="bce",
                multi_label_pooling="max", multi_label_metric="macro_ap", class_weights="inverse", frontend="gpu")
    del flat["images"]
    meta["train"] = flat
    (gpu_run / "config.json").write_text(json.dumps(meta))
    assert Predictor.from_run(gpu_run, device="cpu").images == "on-the-fly"
    with pytest.raises(ParameterError, match="'images' parameter of Predictor.from_run must be one of 'auto'"):
        Predictor.from_run(run, device="cpu", images="cuda")


def test_image_cache_input_with_gpu_frontend(run):
    """A cache is predicted from its images, resized and normalised as the front end's pipeline does."""
    pred = Predictor.from_run(run, device="cpu", images="on-the-fly")
    cache = ImageCache.open(run.parent / "cache")
    from_cache = pred.predict(cache, segments=True, progress=False)
    from_audio = pred.predict(cache.files[["path"]], segments=True, progress=False)
    assert from_cache.errors.empty and from_audio.errors.empty
    cols = [f"prob_{c}" for c in pred.classes]
    a, b = (r.segments.sort_values(["path", "segment"]).reset_index(drop=True) for r in (from_cache, from_audio))
    assert len(a) == len(cache.images) >= 60 and a["path"].tolist() == b["path"].tolist()
    assert np.abs(a[cols].to_numpy() - b[cols].to_numpy()).max() < PROB_TOL


def test_cli_frontend_flag(run, fsdd_subset_csv, tmp_path, capsys):
    outs = {}
    for fe, kind in (("cpu", "cached"), ("gpu", "on-the-fly")):
        out = tmp_path / f"{fe}.csv"
        assert main(["predict", str(run), str(fsdd_subset_csv), "--out", str(out), "--quiet", "--device", "cpu",
                     "--images", kind, "--segments"]) == 0
        assert f"images={kind} on cpu" in capsys.readouterr().out
        outs[fe] = pd.read_csv(out, dtype={"label": str, "prediction": str})
        assert (tmp_path / f"{fe}_segments.csv").exists()
    assert list(outs["gpu"].columns) == list(outs["cpu"].columns)
    assert outs["gpu"]["path"].tolist() == outs["cpu"]["path"].tolist() and len(outs["gpu"]) == 60
    probs = outs["gpu"].filter(like="prob_").to_numpy()
    assert np.abs(probs - outs["cpu"].filter(like="prob_").to_numpy()).max() < PROB_TOL
    assert main(["predict", str(run), str(fsdd_subset_csv), "--out", str(tmp_path / "a.csv"), "--quiet",
                 "--device", "cpu"]) == 0
    assert "images=cached" in capsys.readouterr().out  # auto: the run was trained on cached images
    with pytest.raises(SystemExit):
        main(["predict", str(run), str(fsdd_subset_csv), "--out", str(tmp_path / "b.csv"), "--images", "tpu"])
    assert "invalid choice: 'tpu'" in capsys.readouterr().err

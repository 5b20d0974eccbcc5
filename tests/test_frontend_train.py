"""Training through the on-device front end (``TrainConfig(images='on-the-fly')``): its data, its augmentation, its
parity with the cached images, and the match between its out-of-fold predictions and ``Predictor``'s.

Real FSDD audio where behaviour on data matters, synthetic images where exact answers are known.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig, TrainConfig
from specimg.data import DeviceAugment, FrontendPipeline, WaveformDataset, WaveformSet
from specimg.data._transforms import SpectrogramStretch
from specimg.exceptions import ParameterError
from specimg.models import register_backbone
from specimg.predict import Predictor
from specimg.spectrogram import render_dataset
from specimg.training import Callback, train_cv

SR = 8000
CFG = RenderConfig(audio=AudioConfig(sample_rate=SR), segment=SegmentConfig(seconds=1.0, hop=0.5),
                   spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=32, image_size=(32, 32)))
NET = "specimg_test_device_net"

pytestmark = pytest.mark.usefixtures("one_thread")


class DeviceNet(nn.Module):
    def __init__(self, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d((4, 4)))
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(8 * 16, num_classes)

    def forward(self, x):  # (B, 3, H, W) -> (B, num_classes)
        return self.fc(self.drop(self.features(x).flatten(1)))


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    register_backbone(NET, DeviceNet)


def cfg(**kw) -> TrainConfig:
    base = dict(backbone=NET, weights="none", epochs=2, batch_size=16, lr=0.01, optimizer="adamw", n_splits=3,
                group_column="speaker", device="cpu", num_workers=0, images="on-the-fly", hflip=0.5, time_mask=0.2,
                freq_mask=0.2, freq_stretch=0.1, time_stretch=0.1, drop_rate=0.2)
    base.update(kw)
    return TrainConfig().with_options(**base)


@pytest.fixture(scope="module")
def waves(fsdd_subset_csv):
    return WaveformSet.load(fsdd_subset_csv, CFG, progress=False)


# ----------------------------------------------------------------------------- augmentation
def test_flip_and_identity():
    x = torch.rand(4, 3, 16, 24)
    assert torch.equal(DeviceAugment(hflip=1.0)(x), x.flip(-1))
    assert torch.equal(DeviceAugment(hflip=0.0)(x), x)


def test_stretch_matches_the_cached_paths_stretch():
    """A band 6 rows above the bottom moves to ~7.2 rows up with fy=1.2 in both implementations."""
    img = np.zeros((32, 40, 3), dtype=np.uint8)
    img[-8:-5] = 200  # rows 24..26 (from the top)
    img[:, 30:33] = 100  # a vertical stripe: moves right with fx > 1
    for fy, fx in ((1.2, 1.0), (0.85, 1.0), (1.0, 1.15), (1.1, 0.9)):
        ref = SpectrogramStretch(freq=0.2, time=0.2).apply(img, fy=fy, fx=fx).astype(np.float32) / 255
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
        out = DeviceAugment.stretch(x, torch.tensor([fy]), torch.tensor([fx]))[0].permute(1, 2, 0).numpy()
        # the same content in the same place: the row / column profiles' centres of mass agree within 0.5 px
        for axis in (0, 1):
            prof_ref = ref[..., 0].sum(1 - axis)
            prof_out = out[..., 0].sum(1 - axis)
            pos = np.arange(len(prof_ref))
            assert abs((pos * prof_ref).sum() / prof_ref.sum() - (pos * prof_out).sum() / prof_out.sum()) < 0.5
        assert np.abs(ref - out).mean() < 0.03, (fy, fx)
    # the bottom row stays the bottom row: a squeeze empties the top rows, not the bottom ones
    x = torch.ones(1, 1, 20, 20)
    out = DeviceAugment.stretch(x, torch.tensor([0.5]), torch.tensor([1.0]))
    assert out[0, 0, -5:].min() == 1.0 and out[0, 0, :5].max() == 0.0


def test_masks_are_full_stripes_of_bounded_size():
    aug = DeviceAugment(hflip=0.0, time_mask=0.25, freq_mask=0.25, n_masks=2)
    x = torch.ones(400, 1, 16, 32)
    out = aug(x, generator=torch.Generator().manual_seed(0))
    zero = out[:, 0] == 0  # (B, H, W)
    cols = zero.all(1)  # (B, W) columns masked over the full height
    rows = zero.all(2)  # (B, H) rows masked over the full width
    assert torch.equal(zero, cols[:, None, :] | rows[:, :, None])  # nothing but full stripes
    masked = zero.flatten(1).any(1).float().mean()
    assert 0.4 < masked < 0.6  # p = 0.5 per item
    assert cols.sum(1).max() <= 2 * 8 and rows.sum(1).max() <= 2 * 4  # n_masks x round(frac * size)
    # the same generator state gives the same batch
    again = aug(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_bad_augment_options_are_named():
    with pytest.raises(ParameterError, match="'time_mask'.*fraction"):
        DeviceAugment(time_mask=1.5)
    with pytest.raises(ParameterError, match="'hflip'.*probability"):
        DeviceAugment(hflip=-0.1)


# ----------------------------------------------------------------------------- data and parity
def test_waveform_set_plans_the_cached_windows(waves, fsdd_subset_csv, tmp_path):
    cache = render_dataset(fsdd_subset_csv, tmp_path / "cache", CFG, progress=False)
    assert waves.files["path"].tolist() == cache.files["path"].tolist()
    pd.testing.assert_frame_equal(waves.segments[["file_id", "segment", "start", "end"]], cache.segments)
    assert waves.classes == cache.classes and len(waves.references) == len(waves.files)
    # the training input before augmentation: the cached images, to the front end's +-1 rounding
    pipe = FrontendPipeline(CFG)
    w, ref = waves.windows(np.arange(len(waves.segments)))
    ours = (pipe.images(torch.from_numpy(w), torch.from_numpy(ref)) * 255).round().to(torch.uint8).numpy()
    cached = np.asarray(cache.images).transpose(0, 3, 1, 2)
    diff = np.abs(ours.astype(int) - cached.astype(int))  # (n_windows, 3, H, W)
    single = (waves.files.set_index("file_id").loc[waves.segments["file_id"], "n_segments"] == 1).to_numpy()
    assert single.sum() >= 50 and (~single).sum() >= 2
    # one-window files: the same images to the +-1 rounding
    assert diff[single].max() <= 1 and (diff[single] > 0).mean() < 0.005
    # windows of longer files: the same away from the 2 columns at each edge (the STFT there sees zeros
    # instead of the neighbouring audio)
    inner = diff[~single][..., 2:-2]
    assert inner.max() <= 1 and (inner > 0).mean() < 0.005
    ds = WaveformDataset(waves, rows=np.array([3, 5]))
    (wave, r), y = ds[1]
    assert wave.shape == (SR,) and float(r) == pytest.approx(float(ref[5]))
    assert y == waves.classes.index(waves.files["label"][waves.segments["file_id"][5]])


def test_bad_files_are_left_out_and_named(fsdd_subset_csv, tmp_path, caplog):
    table = pd.read_csv(fsdd_subset_csv)
    (tmp_path / "empty.wav").write_bytes(b"")
    table = pd.concat([table, pd.DataFrame({"path": [str(tmp_path / "missing.wav"), str(tmp_path / "empty.wav")],
                                            "label": ["1", "2"], "speaker": ["x", "x"]})], ignore_index=True)
    with caplog.at_level("WARNING", logger="specimg"):
        data = WaveformSet.load(table, CFG, progress=False)
    assert len(data.files) == len(table) - 2
    assert sorted(data.errors["path"].map(lambda p: p.rsplit("/", 1)[-1])) == ["empty.wav", "missing.wav"]
    assert "missing.wav" in caplog.text  # reported through logging (the CLI prints it)


# ----------------------------------------------------------------------------- training
def test_out_of_fold_predictions_match_the_predictor(waves, tmp_path):
    """What training predicted for its held-out files is what Predictor(images='auto' -> 'on-the-fly') predicts."""
    run = tmp_path / "run"
    res = train_cv(waves, run, cfg(), folds=[0], verbose=False)
    conf = json.loads((run / "config.json").read_text())
    assert conf["images"] == "on-the-fly" and conf["train"]["images"] == "on-the-fly"
    held = res.oof_files
    pred = Predictor.from_run(run, folds=[0], device="cpu")
    out = pred.predict(pd.DataFrame({"path": waves.files.set_index("path").loc[held["path"], "abspath"].tolist(),
                                     "label": held["label"].tolist()}), progress=False)
    probs = [c for c in held.columns if c.startswith("prob_")]
    np.testing.assert_allclose(out.files[probs].to_numpy(), held[probs].to_numpy(), atol=1e-5)


class Crash(Callback):
    def on_batch_end(self, trainer, batch, loss):
        if trainer.epoch == 1 and batch == 1:
            raise RuntimeError("simulated crash mid-epoch")


def test_resume_after_a_crash_equals_an_uninterrupted_run(waves, tmp_path):
    config = cfg(epochs=3)
    train_cv(waves, tmp_path / "a", config, folds=0, verbose=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_cv(waves, tmp_path / "b", config, folds=0, callbacks=[Crash()], verbose=False)
    train_cv(waves, tmp_path / "b", config, folds=0, verbose=False)
    for name in ("best.pt", "last.pt"):
        wa = torch.load(tmp_path / "a" / "fold_0" / name, map_location="cpu", weights_only=True)["model"]
        wb = torch.load(tmp_path / "b" / "fold_0" / name, map_location="cpu", weights_only=True)["model"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_an_image_cache_cannot_train_the_device_front_end(fsdd_subset_csv, tmp_path):
    cache = render_dataset(fsdd_subset_csv, tmp_path / "cache", CFG, progress=False)
    with pytest.raises(ParameterError, match="images are already rendered.*--images cached"):
        train_cv(cache, tmp_path / "run", cfg(), verbose=False)


def test_waveform_cache_is_written_once_reused_and_mapped(fsdd_subset_csv, waves, tmp_path, monkeypatch):
    import pickle

    import specimg.data._waveform as wmod

    root = tmp_path / "audio"
    first = WaveformSet.load(fsdd_subset_csv, CFG, progress=False, cache_dir=root)
    assert isinstance(first.signal, np.memmap) and first.root == root
    assert sorted(p.name for p in root.iterdir()) == ["config.json", "errors.csv", "files.csv", "segments.csv",
                                                      "waveforms.f32"]
    rows = np.arange(len(waves.segments))
    for a, b in zip(first.windows(rows), waves.windows(rows)):  # the same data as the in-memory load
        np.testing.assert_array_equal(a, b)
    pd.testing.assert_frame_equal(first.segments, waves.segments)
    assert first.files["path"].tolist() == waves.files["path"].tolist() and first.classes == waves.classes

    # the same table and config again: opened, nothing decoded
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(wmod, "_load_job", no_decoding)
    again = WaveformSet.load(fsdd_subset_csv, CFG, progress=False, cache_dir=root)
    np.testing.assert_array_equal(again.windows(rows)[0], waves.windows(rows)[0])
    # a DataLoader worker receives the path, not a copy of the audio
    blob = pickle.dumps(WaveformDataset(again))
    assert len(blob) < again.signal.nbytes / 10
    np.testing.assert_array_equal(pickle.loads(blob).data.windows(rows[:5])[0], waves.windows(rows[:5])[0])
    # another table is decoded again
    monkeypatch.undo()
    table = pd.read_csv(fsdd_subset_csv).iloc[:10]
    fewer = WaveformSet.load(table, CFG, progress=False, cache_dir=root)
    assert len(fewer.files) == 10


def test_train_cv_keeps_the_decoded_audio_in_the_run(waves, fsdd_subset_csv, tmp_path):
    res = train_cv(fsdd_subset_csv, tmp_path / "run", cfg(epochs=1), folds=[0], verbose=False)
    assert WaveformSet.is_complete(tmp_path / "run" / "audio") and not (tmp_path / "run" / "cache").exists()
    assert len(res.oof_files) == len(waves.files) // 3

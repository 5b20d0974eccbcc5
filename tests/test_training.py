"""Training: schedules, weights, the Trainer, resume, cross-validation, the CLI hook (specimg.training)."""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from specimg.config import RenderConfig, TrainConfig
from specimg.exceptions import DataError, ParameterError
from specimg.models import register_backbone
from specimg.spectrogram import ImageCache
from specimg.training import (
    Callback,
    WarmupSchedule,
    build_scheduler,
    load_trained,
    train_cv,
)
from specimg.tasks import class_weights
from specimg.training._cli import add_train_parser

torch.set_num_threads(1)
NET = "specimg_test_band_net"


class BandNet(nn.Module):
    """Two convolutions and a linear layer on a 4x4 pooled map: sees where a band is."""

    def __init__(self, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d((4, 4)))
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(8 * 16, num_classes)

    def forward(self, x):  # x: (B, 3, H, W)
        return self.fc(self.drop(self.features(x).flatten(1)))  # (B, num_classes)


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # re-registering on a second import
    register_backbone(NET, BandNet)


def band_cache(root, *, n_classes=3, files_per_class=6, windows=2, size=32, seed=0, labels=None):
    """Windows with a bright horizontal band whose height gives the class; 3 speakers."""
    rng = np.random.default_rng(seed)
    images, segments, files = [], [], []
    fid = 0
    for c in range(n_classes):
        for j in range(files_per_class):
            files.append({"file_id": fid, "path": f"c{c}/f{j}.wav", "label": f"class{c}", "speaker": f"s{j % 3}"})
            for s in range(windows):
                im = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
                top = size - 8 - c * (size // n_classes)
                im[top:top + 4] = 230
                images.append(im)
                segments.append({"file_id": fid, "segment": s, "start": float(s), "end": s + 1.0})
            fid += 1
    files = pd.DataFrame(files)
    if labels is not None:
        files["label"] = labels(files)
    return ImageCache.from_arrays(root, np.stack(images), pd.DataFrame(segments), files)


def cfg(**kw):
    base = dict(backbone=NET, weights="none", epochs=3, batch_size=8, lr=0.01, optimizer="adamw", n_splits=3,
                device="cpu", num_workers=0)
    base.update(kw)
    return TrainConfig().with_options(**base)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return band_cache(tmp_path_factory.mktemp("cache"))


class Crash(Callback):
    def __init__(self, epoch=None, batch=None):
        self.epoch, self.batch, self.seen = epoch, batch, 0

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == self.epoch:
            raise RuntimeError("simulated crash")

    def on_batch_end(self, trainer, batch, loss):
        self.seen += 1
        if self.batch is not None and trainer.epoch == 1 and batch == self.batch:
            raise RuntimeError("simulated crash mid-epoch")


class Count(Callback):
    def __init__(self):
        self.calls = {"on_train_start": 0, "on_epoch_start": 0, "on_batch_end": 0, "on_epoch_end": 0,
                      "on_train_end": 0}

    def __getattribute__(self, name):
        calls = object.__getattribute__(self, "calls")
        if name in calls:
            calls[name] += 1
        return object.__getattribute__(self, name)


# ----------------------------------------------------------------------------- pieces
def test_warmup_then_cosine_schedule():
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = build_scheduler(opt, steps_per_epoch=10, epochs=5, warmup_epochs=1)
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lrs = np.array(lrs)
    np.testing.assert_allclose(lrs[:10], 0.1 * np.arange(1, 11) / 10)  # linear warm-up, per step
    assert lrs[10] == pytest.approx(0.1)  # the peak
    assert (np.diff(lrs[10:]) < 0).all()  # then a cosine decay...
    assert lrs[30] == pytest.approx(0.05 * (1 + np.cos(np.pi * 20 / 40)))
    assert lrs[-1] < 0.001  # ...to ~0
    step = WarmupSchedule(total_steps=30, warmup_steps=0, schedule="step", step_size_steps=10, gamma=0.1)
    assert [step(s) for s in (0, 9, 10, 25)] == pytest.approx([1, 1, 0.1, 0.01])


def test_inverse_class_weights():
    w = class_weights(np.array([0, 0, 0, 1, 2, 2]), 4)
    np.testing.assert_allclose(w.numpy(), [6 / 12, 6 / 4, 6 / 8, 0.0])
    assert class_weights(np.array([0, 1]), 2, mode="none") is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"optimizer": "adam"}, "'optimizer'.*'sgd', 'adamw'"),
        ({"warmup_epochs": 4, "epochs": 3}, "warmup_epochs.*lower warmup_epochs"),
        ({"n_splits": 1}, "n_splits.*at least 2 folds"),
        ({"device": "gpu"}, "'device'.*'cuda:N'"),
        ({"hflip": 1.5}, "'hflip'"),
        ({"metric": "f1"}, "'metric'"),
    ],
)
def test_train_config_validation(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        TrainConfig().with_options(**kwargs)


def test_train_config_round_trip():
    c = TrainConfig(image_size=64, backbone_kwargs={"drop_path_rate": 0.1})
    assert c.image_size == (64, 64)
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


# ----------------------------------------------------------------------------- learning
def test_learns_separable_task_and_writes_the_run(cache, tmp_path):
    run = tmp_path / "run"
    res = train_cv(cache, run, cfg(epochs=4, group_column="speaker", time_mask=0.1, mixup=0.2), verbose=False)
    assert res.folds == [0, 1, 2]
    assert res.metrics["mean"]["accuracy"] == 1.0 and res.metrics["oof"]["uar"] == 1.0
    assert set(res.metrics["per_group"]) == {"s0", "s1", "s2"}
    for k in range(3):
        for name in ("best.pt", "last.pt", "log.csv", "oof_files.csv", "oof_segments.csv"):
            assert (run / f"fold_{k}" / name).is_file()
    files = pd.read_csv(run / "oof_files.csv", dtype={"label": str, "prediction": str})
    probs = [f"prob_class{c}" for c in range(3)]
    assert list(files.columns) == ["path", "label", "fold", "prediction", *probs]
    assert len(files) == 18 and files["path"].is_unique
    np.testing.assert_allclose(files[probs].sum(axis=1), 1.0, atol=1e-5)
    segs = pd.read_csv(run / "oof_segments.csv")
    assert list(segs.columns) == ["path", "segment", "start", "end", "fold", *probs] and len(segs) == 36
    conf = json.loads((run / "config.json").read_text())
    assert conf["classes"] == ["class0", "class1", "class2"] and conf["backbone"] == NET
    assert TrainConfig.from_dict(conf["train"]) == res.config and RenderConfig.from_dict(conf["render"])
    log = pd.read_csv(run / "fold_0" / "log.csv")
    assert list(log["epoch"]) == [1, 2, 3, 4] and {"train_loss", "val_loss", "val_accuracy", "val_uar"} <= set(log)
    # the checkpoint rebuilds the model (by name) and reproduces the out-of-fold predictions
    model, meta = load_trained(run / "fold_0" / "best.pt")
    assert meta["classes"] == conf["classes"] and meta["fold"] == 0
    seg0 = segs[segs["fold"] == 0].iloc[0]
    row = int(np.flatnonzero((cache.files["path"] == seg0["path"]).to_numpy())[0])
    win = np.flatnonzero((cache.segments["file_id"] == cache.files["file_id"][row]).to_numpy()
                         & (cache.segments["segment"] == seg0["segment"]).to_numpy())[0]
    img = torch.from_numpy(np.array(cache.images[win])).permute(2, 0, 1).float() / 255
    x = ((img - torch.tensor(meta["mean"])[:, None, None]) / torch.tensor(meta["std"])[:, None, None])[None]
    with torch.no_grad():
        p = 0.5 * (model(x).softmax(1) + model(x.flip(3)).softmax(1))[0].numpy()
    np.testing.assert_allclose(p, seg0[probs].to_numpy(dtype=float), atol=1e-4)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _log(run, k=0):
    return pd.read_csv(run / f"fold_{k}" / "log.csv").drop(columns="seconds")


@pytest.mark.parametrize("crash", [Crash(epoch=2), Crash(batch=1)], ids=["after-epoch", "mid-epoch"])
def test_resume_after_crash_equals_uninterrupted_run(cache, tmp_path, crash):
    config = cfg(epochs=4, optimizer="sgd", lr=0.05, hflip=0.5, time_mask=0.2, freq_mask=0.2, mixup=0.4,
                 drop_rate=0.2, n_splits=2)
    a = train_cv(cache, tmp_path / "a", config, folds=0, verbose=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_cv(cache, tmp_path / "b", config, folds=0, callbacks=[crash], verbose=False)
    assert not (tmp_path / "b" / "fold_0" / "fold.json").exists()
    b = train_cv(cache, tmp_path / "b", config, folds=0, verbose=False)
    for name in ("best.pt", "last.pt"):
        wa, wb = _weights(tmp_path / "a" / "fold_0" / name), _weights(tmp_path / "b" / "fold_0" / name)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    pd.testing.assert_frame_equal(_log(tmp_path / "a"), _log(tmp_path / "b"))
    pd.testing.assert_frame_equal(a.oof_segments, b.oof_segments)
    assert a.metrics["folds"] == b.metrics["folds"]


def test_finished_folds_are_skipped_and_partial_runs_report_their_folds(cache, tmp_path):
    run = tmp_path / "run"
    first = train_cv(cache, run, cfg(epochs=1), folds=[1], verbose=False)
    assert first.folds == [1] and set(first.oof_files["fold"]) == {1}
    assert len(pd.read_csv(run / "oof_files.csv")) == len(first.oof_files) == 6
    counter = Count()
    second = train_cv(cache, run, cfg(epochs=1), callbacks=[counter], verbose=False)
    assert counter.calls["on_train_start"] == 2  # folds 0 and 2 only
    assert second.folds == [0, 1, 2] and len(second.oof_files) == 18
    assert second.metrics["folds"]["1"] == first.metrics["folds"]["1"]
    again = Count()
    train_cv(cache, run, cfg(epochs=1, num_workers=0, device="cpu"), callbacks=[again], verbose=False)
    assert again.calls["on_train_start"] == 0
    with pytest.raises(ParameterError, match=r"another config.*epochs: 1 -> 2.*--no-resume"):
        train_cv(cache, run, cfg(epochs=2), verbose=False)
    with pytest.warns(UserWarning, match="Discarding the previous run"):
        third = train_cv(cache, run, cfg(epochs=2), folds=0, resume=False, verbose=False)
    assert third.folds == [0] and not (run / "fold_1").exists()


def test_pseudo_labelled_files_train_every_fold_and_are_never_predicted(tmp_path):
    pseudo = band_cache(tmp_path / "cache", labels=lambda f: f["label"])
    files = pseudo.files.assign(pseudo=pseudo.files["file_id"] % 6 == 0)
    pseudo = ImageCache.from_arrays(tmp_path / "cache2", np.asarray(pseudo.images), pseudo.segments, files)
    res = train_cv(pseudo, tmp_path / "run", cfg(epochs=1), verbose=False)
    assert not set(res.oof_files["path"]) & set(files["path"][files["pseudo"]])
    assert len(res.oof_files) == 15
    folds = pd.read_csv(tmp_path / "run" / "folds.csv")
    assert (folds["fold"][files["pseudo"].to_numpy()] == -1).all()


def test_loader_workers_do_not_change_the_result(cache, tmp_path):
    config = cfg(epochs=2, hflip=0.5, time_mask=0.2, mixup=0.2, n_splits=2)
    train_cv(cache, tmp_path / "w0", config, folds=0, verbose=False)
    train_cv(cache, tmp_path / "w2", config.with_options(num_workers=2), folds=0, verbose=False)
    wa, wb = _weights(tmp_path / "w0" / "fold_0" / "last.pt"), _weights(tmp_path / "w2" / "fold_0" / "last.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_callback_can_stop_training(cache, tmp_path):
    class StopAfterOne(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            trainer.stop_training = True

    res = train_cv(cache, tmp_path / "run", cfg(epochs=3), folds=0, callbacks=[StopAfterOne()], verbose=False)
    assert res.fit_results[0].epochs_run == 1


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "labels, kwargs, exc, match",
    [
        (lambda f: np.where(f["file_id"] < 2, None, f["label"]), {}, DataError, "2 of 18 file.*no label"),
        (lambda f: ["same"] * len(f), {}, DataError, "at least 2 classes"),
        (None, {"n_splits": 4, "group_column": "speaker"}, ParameterError, "only 3 values of 'speaker'"),
        (None, {"n_splits": 7}, DataError, r"fewer files than the 7 folds"),
        (None, {"group_column": "patient"}, ParameterError, r"'patient'.*Available columns"),
        (None, {"backbone": "resnet_does_not_exist"}, ParameterError, "Unknown backbone"),
    ],
)
def test_bad_input_fails_before_training(tmp_path, labels, kwargs, exc, match):
    bad = band_cache(tmp_path / "cache", labels=labels)
    counter = Count()
    with pytest.raises(exc, match=match):
        train_cv(bad, tmp_path / "run", cfg(**kwargs), callbacks=[counter], verbose=False)
    assert counter.calls["on_train_start"] == 0


def test_folds_argument_is_checked(cache, tmp_path):
    with pytest.raises(ParameterError, match=r"fold indices in \[0, 2\]"):
        train_cv(cache, tmp_path / "run", cfg(), folds=[3], verbose=False)


# ----------------------------------------------------------------------------- audio input and the CLI
def _tone_csv(root, sr=8000):
    import soundfile as sf

    rows = []
    t = np.arange(int(0.6 * sr)) / sr
    for label, freq in (("low", 300.0), ("high", 2500.0)):
        for j in range(4):
            y = 0.5 * np.sin(2 * np.pi * (freq + 40 * j) * t)
            path = f"{label}_{j}.wav"
            sf.write(root / path, y.astype(np.float32), sr)
            rows.append({"path": path, "label": label, "speaker": f"s{j % 2}"})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root / "labels.csv"


def test_cli_renders_audio_then_trains(tmp_path):
    csv = _tone_csv(tmp_path)
    parser = argparse.ArgumentParser(prog="specimg")
    add_train_parser(parser.add_subparsers(dest="command"))
    run = tmp_path / "run"
    args = parser.parse_args([
        "train", str(csv), "--out", str(run), "--backbone", NET, "--weights", "none", "--folds", "2",
        "--group-column", "speaker", "--epochs", "2", "--batch-size", "4", "--optimizer", "adamw", "--lr", "0.01",
        "--seconds", "0.5", "--hop", "0.25", "--sample-rate", "8000", "--n-fft", "256", "--hop-length", "32",
        "--n-mels", "32", "--image-size", "32",
        "--class-hop", "low=0.1", "--device", "cpu", "--workers", "1", "--fold", "0",
    ])
    assert args.func(args) == 0
    conf = json.loads((run / "config.json").read_text())
    assert conf["render"]["segment"]["class_hop"] == {"low": 0.1}
    assert conf["render"]["spectrogram"]["image_size"] == [32, 32] and conf["train"]["n_splits"] == 2
    assert sorted(pd.read_csv(run / "oof_files.csv")["fold"].unique()) == [0]
    assert (run / "cache" / "images.npy").exists()
    # the rendered cache can be the INPUT of another run; render options then make no sense
    args = parser.parse_args(["train", str(run / "cache"), "--out", str(tmp_path / "r2"), "--backbone", NET,
                              "--seconds", "2"])
    with pytest.raises(ParameterError, match="--seconds only apply to audio input"):
        args.func(args)


# ----------------------------------------------------------------------------- which epoch a fold keeps
def test_select_epoch_last_keeps_the_last_epoch_and_still_logs_validation(cache, tmp_path):
    best = train_cv(cache, tmp_path / "best", cfg(epochs=4, lr=0.05), verbose=False)
    last = train_cv(cache, tmp_path / "last", cfg(epochs=4, lr=0.05, select_epoch="last"), verbose=False)
    assert last.metrics["select_epoch"] == "last" and best.metrics["select_epoch"] == "best"
    for k in range(3):
        f = last.metrics["folds"][str(k)]
        assert f["best_epoch"] == f["epochs_run"] == 4
        log = pd.read_csv(tmp_path / "last" / f"fold_{k}" / "log.csv")
        assert log["val_accuracy"].notna().all()  # validation still logged every epoch
        # the kept weights are the last epoch's: best.pt holds the same tensors as last.pt's model
        fold = tmp_path / "last" / f"fold_{k}"
        kept, final = _weights(fold / "best.pt"), _weights(fold / "last.pt")
        assert all(torch.equal(kept[n], final[n]) for n in kept)
        # the training itself is the same as the best-epoch run's (the choice only picks weights)
        assert torch.equal(final["fc.weight"], _weights(tmp_path / "best" / f"fold_{k}" / "last.pt")["fc.weight"])
        # the out-of-fold accuracy is the last logged validation accuracy
        assert f["accuracy"] == pytest.approx(float(log["val_accuracy"].iloc[-1]))
    assert "last epoch 4/4" in last.summary()


def test_select_epoch_inner_chooses_on_the_training_folds_only(cache, tmp_path, monkeypatch):
    """Each fold holds back one group-wise inner fold of its training files to choose the epoch; the held-out
    speaker is predicted, never validated on."""
    from specimg.training import _cv

    seen = []
    fit = _cv.Trainer.fit

    def spy(self, model, train_data, val_data=None, **kw):
        speakers = lambda ds: set(cache.files.set_index("file_id").loc[np.unique(ds.file_ids), "speaker"])  # noqa
        seen.append((speakers(train_data), speakers(val_data)))
        return fit(self, model, train_data, val_data, **kw)

    monkeypatch.setattr(_cv.Trainer, "fit", spy)
    res = train_cv(cache, tmp_path / "inner", cfg(epochs=3, group_column="speaker", select_epoch="inner"),
                   verbose=False)
    assert res.metrics["select_epoch"] == "inner" and "inner-best epoch" in res.summary()
    assert len(seen) == 3
    for k, (train, choose) in enumerate(seen):
        outer = set(res.oof_files.loc[res.oof_files["fold"] == k, "path"].map(
            cache.files.set_index("path")["speaker"]))
        assert len(outer) == 1 and len(train) == len(choose) == 1  # 3 speakers: 1 trains, 1 chooses, 1 is held out
        assert not (outer & train) and not (outer & choose) and not (train & choose)
        assert res.metrics["folds"][str(k)]["n_files"] == 6  # the outer speaker is predicted whole
    assert len(res.oof_files) == 18


def test_select_epoch_options_are_checked():
    with pytest.raises(ParameterError, match="'select_epoch' parameter of TrainConfig.schedule must be one of"):
        TrainConfig(schedule={"select_epoch": "first"})
    with pytest.raises(ParameterError, match="'patience' parameter of TrainConfig.schedule must be None when "
                                             "select_epoch='last'"):
        TrainConfig(schedule={"select_epoch": "last", "patience": 2})

"""NaN-safe training: a diverged fold stops with an error naming fold, epoch and step, and is never marked done.

Also: every numeric option refuses NaN and inf, naming the option (library configs and CLI flags alike).
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
from torch import nn

from specimg.cli import main
from specimg.config import OPTION_SECTION, AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig, TrainConfig
from specimg.exceptions import ParameterError, TrainingError
from specimg.models import list_backbones, register_backbone
from specimg.spectrogram import render_dataset
from specimg.training import Run, train_cv

NAN_NET = "specimg_test_nan_after"


class NanAfter(nn.Module):
    """A tiny CNN whose logits become NaN from its ``after``-th training forward on (or in eval mode, with
    ``eval_nan``)."""

    after = 3
    eval_nan = False

    def __init__(self, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4, num_classes))
        self.calls = 0

    def forward(self, x):  # (B, 3, H, W) -> (B, num_classes)
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.after:
                out = out * float("nan")
        elif self.eval_nan:
            out = out * float("inf")
        return out


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    if not list_backbones(NAN_NET):
        register_backbone(NAN_NET, NanAfter)


@pytest.fixture(scope="module")
def cache(fsdd_subset_csv, tmp_path_factory):
    cfg = RenderConfig(audio=AudioConfig(sample_rate=8000), segment=SegmentConfig(seconds=1.0, hop=0.5),
                       spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=32, image_size=(32, 32)))
    return render_dataset(fsdd_subset_csv, tmp_path_factory.mktemp("nan") / "cache", cfg, progress=False)


def _cfg(**kw):
    base = dict(backbone=NAN_NET, weights="none", epochs=2, batch_size=8, n_splits=3, group_column="speaker",
                device="cpu", num_workers=0, lr=0.01)
    base.update(kw)
    return TrainConfig().with_options(**base)


def test_non_finite_loss_stops_the_fold_naming_fold_epoch_step(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(NanAfter, "after", 3)
    with pytest.raises(TrainingError, match=r"fold 1: the training loss is nan at step 3/\d+ at epoch 1") as info:
        train_cv(cache, tmp_path / "run", _cfg(), folds=[1], verbose=False)
    assert "--lr" in str(info.value) and "--amp off" in str(info.value) and "--grad-clip" in str(info.value)
    run = Run(tmp_path / "run")
    assert not run.fold_done(1) and run.finished_folds() == []
    assert not (run.fold_dir(1) / Run.OOF_FILES).exists()


def test_non_finite_predictions_never_make_a_fold_done(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(NanAfter, "after", 10**9)
    monkeypatch.setattr(NanAfter, "eval_nan", True)
    with pytest.raises(TrainingError, match=r"fold 0: \d+ of \d+ validation windows have non-finite probabilities "
                                            r"at epoch 1"):
        train_cv(cache, tmp_path / "run", _cfg(epochs=1), folds=[0], verbose=False)
    assert Run(tmp_path / "run").finished_folds() == []


def test_the_same_fold_trains_when_the_model_stays_finite(cache, tmp_path, monkeypatch):
    """The checks above can pass: without the NaN the fold finishes with finite out-of-fold probabilities."""
    monkeypatch.setattr(NanAfter, "after", 10**9)
    result = train_cv(cache, tmp_path / "run", _cfg(epochs=1), folds=[0], verbose=False)
    assert result.folds == [0]
    assert np.isfinite(result.oof_files.filter(like="prob_").to_numpy()).all()


@pytest.mark.parametrize("cls, name", [
    (TrainConfig, "lr"), (TrainConfig, "momentum"), (TrainConfig, "weight_decay"), (TrainConfig, "warmup_epochs"),
    (TrainConfig, "label_smoothing"), (TrainConfig, "mixup"), (TrainConfig, "grad_clip"), (TrainConfig, "hflip"),
    (TrainConfig, "time_mask"), (TrainConfig, "freq_stretch"), (TrainConfig, "drop_rate"), (TrainConfig, "step_gamma"),
    (SpectrogramConfig, "fmin"), (SpectrogramConfig, "fmax"), (SpectrogramConfig, "top_db"), (SpectrogramConfig, "power"),
    (SegmentConfig, "seconds"), (SegmentConfig, "hop"), (AudioConfig, "offset"), (AudioConfig, "duration"),
    (AudioConfig, "min_seconds"),
])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_configs_refuse_nan_and_inf_naming_the_option(cls, name, value):
    owner = cls.__name__ if cls is not TrainConfig or name not in OPTION_SECTION else \
        f"TrainConfig.{OPTION_SECTION[name]}"
    with pytest.raises(ParameterError, match=rf"The '{name}' parameter of {re.escape(owner)} must be"):
        cls().with_options(**{name: value}) if cls is TrainConfig else cls(**{name: value})


@pytest.mark.parametrize("argv", [
    ["render", "x.csv", "--out", "c", "--fmin", "nan"],
    ["render", "x.csv", "--out", "c", "--hop", "inf"],
    ["train", "x.csv", "--out", "r", "--backbone", "resnet18", "--lr", "nan"],
    ["train", "x.csv", "--out", "r", "--backbone", "resnet18", "--mixup=-inf"],
])
def test_cli_float_flags_refuse_nan_and_inf(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    flag, value = argv[-2:] if "=" not in argv[-1] else argv[-1].split("=")
    assert f"argument {flag}: '{value}' is not a finite number" in capsys.readouterr().err


def test_every_train_float_flag_is_finite_checked():
    """Every float option of `specimg train` (generated from TrainConfig) uses the finite-number type."""
    from specimg._validation import finite_float
    from specimg.cli import build_parser

    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    floats = [a for a in train._actions if a.type is float]
    assert floats == [], [a.option_strings for a in floats]
    assert sum(a.type is finite_float for a in train._actions) >= 15

"""TrainConfig.ema (a moving average of the weights) and TrainConfig.validate_last (validate the last epochs only)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from specimg.exceptions import ParameterError
from specimg.training import Trainer, train_cv

from test_training import Crash, band_cache, cfg  # noqa: F401  (registers the band net)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return band_cache(tmp_path_factory.mktemp("cache_ema"))


def _ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ema_weights_are_validated_kept_and_saved_for_resume(cache, tmp_path):
    run = tmp_path / "run"
    train_cv(cache, run, cfg(epochs=3, optimizer="sgd", lr=0.05, ema=0.9, validate_last=1, n_splits=2), folds=0,
             verbose=False)
    last, best = _ckpt(run / "fold_0" / "last.pt"), _ckpt(run / "fold_0" / "best.pt")
    assert best["epoch"] == 3
    assert _equal(best["model"], last["ema"])  # the kept weights are the average...
    assert not _equal(last["model"], last["ema"])  # ... which is not the raw model
    plain = tmp_path / "plain"
    train_cv(cache, plain, cfg(epochs=3, optimizer="sgd", lr=0.05, validate_last=1, n_splits=2), folds=0,
             verbose=False)
    raw = _ckpt(plain / "fold_0" / "last.pt")
    assert "ema" not in raw and _equal(raw["model"], last["model"])  # the average does not change the training
    assert _equal(_ckpt(plain / "fold_0" / "best.pt")["model"], raw["model"])


@pytest.mark.parametrize("crash", [Crash(epoch=2), Crash(batch=1)], ids=["after-epoch", "mid-epoch"])
def test_resume_with_ema_equals_uninterrupted_run(cache, tmp_path, crash):
    config = cfg(epochs=4, optimizer="sgd", lr=0.05, hflip=0.5, mixup=0.4, ema=0.95, n_splits=2)
    a = train_cv(cache, tmp_path / "a", config, folds=0, verbose=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_cv(cache, tmp_path / "b", config, folds=0, callbacks=[crash], verbose=False)
    b = train_cv(cache, tmp_path / "b", config, folds=0, verbose=False)
    la, lb = _ckpt(tmp_path / "a" / "fold_0" / "last.pt"), _ckpt(tmp_path / "b" / "fold_0" / "last.pt")
    assert _equal(la["ema"], lb["ema"]) and _equal(la["model"], lb["model"])
    assert _equal(_ckpt(tmp_path / "a" / "fold_0" / "best.pt")["model"],
                  _ckpt(tmp_path / "b" / "fold_0" / "best.pt")["model"])
    pd.testing.assert_frame_equal(a.oof_segments, b.oof_segments)


def test_ema_without_validation_returns_the_average(cache):
    from specimg.data import SegmentDataset
    from specimg.models import create_backbone

    ds = SegmentDataset(np.asarray(cache.images), np.repeat(np.arange(3), 12), num_classes=3)
    models = []
    for ema in (None, 0.9):
        torch.manual_seed(0)
        model = create_backbone("specimg_test_band_net", num_classes=3, weights="none")
        Trainer(cfg(epochs=2, ema=ema), progress=False).fit(model, ds)
        models.append({k: v.clone() for k, v in model.state_dict().items()})
    assert not _equal(*models)


def test_validate_last_validates_only_the_last_epochs(cache, tmp_path, monkeypatch):
    calls = []
    evaluate = Trainer.evaluate
    monkeypatch.setattr(Trainer, "evaluate", lambda self, m, d: calls.append(self.epoch) or evaluate(self, m, d))
    res = train_cv(cache, tmp_path / "run", cfg(epochs=4, validate_last=2, n_splits=2), folds=0, verbose=False)
    assert calls == [2, 3]  # 0-based epochs 3 and 4
    log = pd.read_csv(tmp_path / "run" / "fold_0" / "log.csv")
    assert log["val_accuracy"].isna().tolist() == [True, True, False, False]
    assert res.metrics["folds"]["0"]["best_epoch"] in (3, 4)
    assert not log["best"][:2].any()


@pytest.mark.parametrize("kwargs, match", [(dict(ema=1.0), "ema"), (dict(ema=-0.1), "ema"),
                                           (dict(validate_last=0), "validate_last")])
def test_bad_values_are_named(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        cfg(**kwargs)

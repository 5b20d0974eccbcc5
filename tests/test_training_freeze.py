"""TrainConfig.freeze: named modules keep their weights and BatchNorm statistics; bad names are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specimg.config import TrainConfig
from specimg.data import SegmentDataset
from specimg.exceptions import ParameterError
from specimg.models import create_backbone
from specimg.training import Trainer

from test_training import band_cache, cfg  # noqa: F401

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    cache = band_cache(tmp_path_factory.mktemp("cache_freeze"))
    return SegmentDataset(np.asarray(cache.images), np.repeat(np.arange(3), 12), num_classes=3)


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_frozen_modules_keep_weights_and_batchnorm_statistics(data):
    torch.manual_seed(0)
    model = create_backbone("tf_efficientnet_lite0", num_classes=3, weights="none")
    frozen = ["conv_stem", "bn1", "blocks.0"]
    before = {n: _state(model.get_submodule(n)) for n in frozen + ["blocks.1", "classifier"]}
    config = cfg(backbone="tf_efficientnet_lite0", epochs=2, optimizer="sgd", lr=0.05, freeze=",".join(frozen))
    Trainer(config, progress=False).fit(model, data)
    for n in frozen:  # weights, biases and running statistics all as they were
        assert _same(before[n], _state(model.get_submodule(n))), n
    assert not _same(before["blocks.1"], _state(model.get_submodule("blocks.1")))  # the rest trains ...
    bn = model.get_submodule("blocks.1").state_dict()
    assert not torch.equal(before["blocks.1"][next(k for k in bn if k.endswith("running_mean"))],
                           bn[next(k for k in bn if k.endswith("running_mean"))])  # ... and updates its BatchNorm
    assert all(p.requires_grad for p in model.classifier.parameters())


def test_unknown_module_names_the_choices(data):
    model = create_backbone("tf_efficientnet_lite0", num_classes=3, weights="none")
    with pytest.raises(ParameterError, match=r"'stem'.*named_modules.*conv_stem"):
        Trainer(cfg(backbone="tf_efficientnet_lite0", epochs=1, freeze=("stem",)), progress=False).fit(model, data)


def test_freeze_option_spellings():
    assert TrainConfig(freeze="conv_stem, bn1").freeze == ("conv_stem", "bn1")
    assert TrainConfig(freeze=["blocks.0"]).freeze == ("blocks.0",)
    assert TrainConfig.from_dict(TrainConfig(freeze="bn1").to_dict()).freeze == ("bn1",)
    for bad in ("", ",", (), [3]):
        with pytest.raises(ParameterError, match="freeze"):
            TrainConfig(freeze=bad)

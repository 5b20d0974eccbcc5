"""Tests for specimg.models: names, registry, weight sources, data config.

All on CPU with tiny timm test models (``test_resnet``, ``test_efficientnet``)
except the offline EfficientNet-Lite checks, which need the real weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from specimg.exceptions import ParameterError, WeightsError
from specimg.models import (
    backbone_data_config,
    create_backbone,
    list_backbones,
    offline_weights_available,
    register_backbone,
)
from specimg.models import _registry, _weights

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
EGYPTIAN_CAT, ESPRESSO = 285, 967
SEED_BACKBONES = ["densenet169", "densenet201", "inception_resnet_v2", "inception_v3", "resnet50", "legacy_xception"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 64, 64, generator=gen)


@pytest.fixture(scope="module")
def lite0_imagenet():
    torch.set_num_threads(1)
    return create_backbone("tf_efficientnet_lite0", num_classes=1000, weights="offline").eval()


@pytest.fixture
def registry_names():
    """Names registered by a test are removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        _registry._unregister(name)


def _square_image(image: np.ndarray, size: int, mean, std) -> torch.Tensor:
    """Center-crop to a square, resize to ``size`` and normalise -> (3, size, size) float32."""
    from skimage.transform import resize

    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top : top + side, left : left + side]
    x = resize(crop, (size, size), anti_aliasing=True).astype(np.float32)  # (size, size, 3) in [0, 1]
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(x).permute(2, 0, 1)


def _raw_offline(arch: str) -> list[torch.Tensor]:
    return list(torch.load(_weights._offline_path(arch), map_location="cpu", weights_only=True).values())


# ----------------------------------------------------------------------------- offline weights


def test_offline_weights_available_lists_the_three_lite_models():
    assert offline_weights_available() == ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"]


def test_offline_lite0_classifies_imagenet_photos(lite0_imagenet):
    from skimage import data

    cfg = backbone_data_config(lite0_imagenet)
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["std"] == (0.5, 0.5, 0.5)
    size = cfg["input_size"][1]
    x = torch.stack([_square_image(img, size, cfg["mean"], cfg["std"]) for img in (data.chelsea(), data.coffee())])
    with torch.no_grad():
        probs = lite0_imagenet(x).softmax(-1)  # (2, 1000)
    cat_top1, coffee_top1 = probs.argmax(-1).tolist()
    assert cat_top1 in IMAGENET_CATS
    assert EGYPTIAN_CAT in probs[0].topk(3).indices.tolist()
    assert coffee_top1 == ESPRESSO
    assert probs[1, ESPRESSO] > 0.5


def test_offline_fresh_classifier_keeps_features(lite0_imagenet, batch):
    model = create_backbone("tf_efficientnet_lite0", num_classes=10, weights="offline").eval()
    assert model.get_classifier().weight.shape == (10, 1280)
    with torch.no_grad():
        assert torch.equal(model.forward_features(batch), lite0_imagenet.forward_features(batch))
        assert model(batch).shape == (2, 10)


@pytest.mark.parametrize("arch", ["tf_efficientnet_lite1", "tf_efficientnet_lite2"])
def test_offline_lite1_lite2_map_every_tensor_in_order(arch):
    model = create_backbone(arch, num_classes=1000, weights="offline")
    ours = list(model.state_dict().values())
    raw = _raw_offline(arch)
    assert len(ours) == len(raw)
    assert all(torch.equal(a, b) for a, b in zip(ours, raw))


def test_auto_uses_offline_weights_for_lite0():
    model = create_backbone("tf_efficientnet_lite0", num_classes=3)  # weights="auto"
    assert torch.equal(model.conv_stem.weight, _raw_offline("tf_efficientnet_lite0")[0])


def test_offline_adapts_first_conv_to_one_channel():
    model = create_backbone("tf_efficientnet_lite0", num_classes=3, weights="offline", in_chans=1)
    rgb = _raw_offline("tf_efficientnet_lite0")[0]  # (32, 3, 3, 3)
    assert model.conv_stem.weight.shape == (32, 1, 3, 3)
    torch.testing.assert_close(model.conv_stem.weight, rgb.sum(1, keepdim=True))
    assert backbone_data_config(model)["input_size"] == (1, 224, 224)
    assert backbone_data_config(model)["mean"] == (0.5,)


def test_offline_shape_mismatch_raises(monkeypatch):
    real = _weights._read_state_dict

    def shifted(path):
        state = real(path)
        key = list(state)[7]  # a BatchNorm weight of the first block
        state[key] = torch.zeros(state[key].numel() + 1)
        return state

    monkeypatch.setattr(_weights, "_read_state_dict", shifted)
    with pytest.raises(WeightsError, match="does not line up"):
        create_backbone("tf_efficientnet_lite0", num_classes=3, weights="offline")


def test_offline_for_other_backbone_names_the_alternatives():
    with pytest.raises(WeightsError, match="tf_efficientnet_lite0"):
        create_backbone("resnet18", num_classes=3, weights="offline")


# ----------------------------------------------------------------------------- hub


def test_hub_without_network_raises_weights_error(monkeypatch):
    from timm.models import _builder

    calls = []

    def no_network(*args, **kwargs):
        calls.append(args)
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(_builder, "load_state_dict_from_hf", no_network)
    monkeypatch.setattr(_builder, "load_state_dict_from_url", no_network)
    with pytest.raises(WeightsError, match="offline") as info:
        create_backbone("test_resnet", num_classes=3, weights="hub")
    assert calls, "the download was not attempted through the mocked functions"
    assert "tf_efficientnet_lite0" in str(info.value) and "PATH" in str(info.value)


def test_auto_goes_to_hub_for_other_backbones(monkeypatch):
    from timm.models import _builder

    def no_network(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(_builder, "load_state_dict_from_hf", no_network)
    monkeypatch.setattr(_builder, "load_state_dict_from_url", no_network)
    with pytest.raises(WeightsError, match="hub weights of backbone 'test_resnet'"):
        create_backbone("test_resnet", num_classes=3)


# ----------------------------------------------------------------------------- local checkpoints


def test_checkpoint_round_trip(tmp_path, batch):
    torch.manual_seed(0)
    saved = create_backbone("test_resnet", num_classes=3, weights=None).eval()
    path = tmp_path / "resnet.pt"
    torch.save(saved.state_dict(), path)
    torch.manual_seed(1)
    fresh = create_backbone("test_resnet", num_classes=3, weights=None).eval()
    loaded = create_backbone("test_resnet", num_classes=3, weights=path).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(batch), saved(batch))
        assert torch.equal(loaded(batch), saved(batch))


def test_timm_style_checkpoint_with_module_prefix(tmp_path, batch):
    saved = create_backbone("test_resnet", num_classes=3, weights=None).eval()
    path = tmp_path / "checkpoint.pth.tar"
    state = {f"module.{k}": v for k, v in saved.state_dict().items()}
    torch.save({"epoch": 4, "arch": "test_resnet", "state_dict": state}, path)
    loaded = create_backbone("test_resnet", num_classes=3, weights=str(path)).eval()
    with torch.no_grad():
        assert torch.equal(loaded(batch), saved(batch))


def test_checkpoint_with_other_class_count_drops_classifier(tmp_path, batch):
    saved = create_backbone("test_resnet", num_classes=5, weights=None).eval()
    path = tmp_path / "five.pt"
    torch.save(saved.state_dict(), path)
    with pytest.warns(UserWarning, match="5 classes.*3 classes.*re-initialised"):
        loaded = create_backbone("test_resnet", num_classes=3, weights=path).eval()
    assert loaded.get_classifier().weight.shape[0] == 3
    with torch.no_grad():
        assert torch.equal(loaded.forward_features(batch), saved.forward_features(batch))


def test_rgb_checkpoint_adapts_to_one_channel(tmp_path):
    saved = create_backbone("test_resnet", num_classes=3, weights=None)
    path = tmp_path / "rgb.pt"
    torch.save(saved.state_dict(), path)
    loaded = create_backbone("test_resnet", num_classes=3, weights=path, in_chans=1)
    conv = loaded.pretrained_cfg["first_conv"] + ".weight"
    torch.testing.assert_close(loaded.state_dict()[conv], saved.state_dict()[conv].sum(1, keepdim=True))


def test_mismatched_checkpoint_raises(tmp_path):
    other = create_backbone("test_efficientnet", num_classes=3, weights=None)
    path = tmp_path / "effnet.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(WeightsError, match=r"does not fit backbone 'test_resnet'.*missing.*unexpected"):
        create_backbone("test_resnet", num_classes=3, weights=path)


@pytest.mark.parametrize(
    "content, match",
    [
        ({"epoch": torch.tensor(3)}, "does not fit.*1 unexpected"),  # tensors, but not this model's
        ({"note": "hello"}, "not a state dict"),
        ([1, 2, 3], "not a state dict"),
    ],
)
def test_bad_checkpoint_files_raise(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    torch.save(content, path)
    with pytest.raises(WeightsError, match=match):
        create_backbone("test_resnet", num_classes=3, weights=path)


def test_missing_checkpoint_file_raises(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        create_backbone("test_resnet", num_classes=3, weights=tmp_path / "nope.pt")


# ----------------------------------------------------------------------------- registry and modules


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int, width: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):  # x: (B, 3, H, W)
        return self.fc(self.conv(x).mean((2, 3)))  # (B, num_classes)


def test_register_class(registry_names, batch):
    registry_names.append("specimg_test_tiny")
    assert register_backbone("specimg_test_tiny")(TinyCNN) is TinyCNN
    model = create_backbone("specimg_test_tiny", num_classes=4, width=6, drop_rate=None)
    assert isinstance(model, TinyCNN) and model.conv.out_channels == 6
    assert model(batch).shape == (2, 4)
    assert "specimg_test_tiny" in list_backbones("specimg_test_*")
    cfg = backbone_data_config(model)
    assert cfg["input_size"] == (3, 224, 224)
    assert cfg["mean"] == pytest.approx((0.485, 0.456, 0.406))
    with pytest.raises(WeightsError, match="no pretrained source"):
        create_backbone("specimg_test_tiny", num_classes=4, weights="hub")


def test_register_factory_gets_pretrained_flag(registry_names):
    registry_names.append("specimg_test_factory")
    seen = []

    def factory(*, num_classes, pretrained, **kwargs):
        seen.append((num_classes, pretrained, kwargs))
        return TinyCNN(num_classes)

    assert register_backbone("specimg_test_factory", factory) is factory
    create_backbone("specimg_test_factory", num_classes=3)
    create_backbone("specimg_test_factory", num_classes=3, weights=None, in_chans=1, drop_rate=0.2)
    assert seen == [(3, True, {}), (3, False, {"in_chans": 1, "drop_rate": 0.2})]


def test_register_overwrite_warns(registry_names):
    registry_names.append("specimg_test_twice")
    register_backbone("specimg_test_twice", TinyCNN)
    with pytest.warns(UserWarning, match="already registered"):
        register_backbone("specimg_test_twice", lambda **kw: TinyCNN(kw["num_classes"]))
    assert not _registry._get_entry("specimg_test_twice").is_class


@pytest.mark.parametrize("bad", [nn.Linear(2, 2), 3, int])
def test_register_rejects_non_builders(bad):
    with pytest.raises(ParameterError, match="nn.Module subclass or a factory"):
        register_backbone("specimg_test_bad", bad)


def test_module_instance_is_used_and_classifier_reset(batch):
    instance = create_backbone("test_resnet", num_classes=7, weights=None)
    model = create_backbone(instance, num_classes=3)
    assert model is instance
    assert model.get_classifier().out_features == 3 and model(batch).shape == (2, 3)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    assert create_backbone(plain, num_classes=3) is plain
    assert backbone_data_config(plain)["input_size"] == (3, 224, 224)
    with pytest.raises(WeightsError, match="needs a backbone name"):
        create_backbone(plain, num_classes=3, weights="hub")
    with pytest.raises(ParameterError, match="drop_rate"):
        create_backbone(plain, num_classes=3, drop_rate=0.1)


# ----------------------------------------------------------------------------- names and parameters


def test_seed_backbones_build_with_their_data_config():
    with torch.device("meta"):  # no memory, no init cost: only the architecture and its config
        models = {name: create_backbone(name, num_classes=4, weights=None) for name in SEED_BACKBONES}
    for name, model in models.items():
        assert model.get_classifier().out_features == 4, name
        expected = 299 if "ception" in name else 224
        assert backbone_data_config(model)["input_size"] == (3, expected, expected), name


def test_unknown_name_suggests_close_names():
    with pytest.raises(ParameterError, match="Unknown backbone 'resnet5'.*'resnet50'"):
        create_backbone("resnet5", num_classes=3, weights=None)


def test_unknown_pretrained_tag():
    with pytest.raises(ParameterError, match="unknown pretrained tag.*resnet50.a1_in1k"):
        create_backbone("resnet50.no_such_tag", num_classes=3, weights=None)


@pytest.mark.parametrize("num_classes", [1, 0, -3, 2.0, "10", True, None])
def test_bad_num_classes(num_classes):
    with pytest.raises(ParameterError, match="'num_classes' parameter of create_backbone must be an int >= 2"):
        create_backbone("test_resnet", num_classes=num_classes, weights=None)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(weights=True), "weights='hub'"),
        (dict(weights="hubb"), "Did you mean 'hub'"),
        (dict(weights=3), "'weights' parameter"),
        (dict(in_chans=0), "'in_chans'"),
        (dict(drop_rate=1.5), "'drop_rate'"),
        (dict(weights=None, no_such_option=1), "cannot build 'test_resnet'"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        create_backbone("test_resnet", num_classes=3, **kwargs)


def test_none_kwargs_are_dropped(batch):
    model = create_backbone("test_resnet", num_classes=3, weights="none", no_such_option=None, drop_rate=None)
    assert model(batch).shape == (2, 3)


def test_list_backbones_includes_timm_and_pattern():
    names = list_backbones()
    assert set(SEED_BACKBONES) <= set(names)
    assert list_backbones("tf_efficientnet_lite*")[:3] == offline_weights_available()


# ----------------------------------------------------------------------------- data config


def test_data_config_inception_and_image_size():
    model = create_backbone("inception_v3", num_classes=5, weights=None)
    cfg = backbone_data_config(model)
    assert cfg["input_size"] == (3, 299, 299)
    assert cfg["mean"] == (0.5, 0.5, 0.5)
    assert backbone_data_config(model, image_size=128)["input_size"] == (3, 128, 128)
    assert backbone_data_config(model, image_size=(128, 313))["input_size"] == (3, 128, 313)


@pytest.mark.parametrize("image_size", [0, (128,), (128, -1), 12.5, "224"])
def test_data_config_bad_image_size(image_size):
    with pytest.raises(ParameterError, match="'image_size'"):
        backbone_data_config(nn.Linear(2, 2), image_size=image_size)


# ----------------------------------------------------------------------------- timm's spelling
def test_pretrained_true_as_timm_users_type_it():
    """create_backbone(name, pretrained=True) works as timm.create_model does: the offline ImageNet weights
    where they exist (here Lite0's), an ImageNet head of 1000 classes by default."""
    import torch

    from specimg.models import create_backbone

    model = create_backbone("tf_efficientnet_lite0", pretrained=True)
    same = create_backbone("tf_efficientnet_lite0", weights="offline", num_classes=1000)
    assert model.get_classifier().out_features == 1000
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values()))
    random = create_backbone("tf_efficientnet_lite0", pretrained=False, num_classes=3)
    assert not torch.equal(random.conv_stem.weight, model.conv_stem.weight)


def test_checkpoint_path_and_conflicting_spellings(tmp_path):
    import torch

    from specimg.exceptions import ParameterError
    from specimg.models import create_backbone

    src = create_backbone("resnet10t", weights="none", num_classes=4)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    loaded = create_backbone("resnet10t", checkpoint_path=tmp_path / "w.pt", num_classes=4)
    assert torch.equal(loaded.fc.weight, src.fc.weight)
    with pytest.raises(ParameterError, match="got weights and pretrained"):
        create_backbone("resnet10t", pretrained=True, weights="none", num_classes=4)
    with pytest.raises(ParameterError, match="got pretrained and checkpoint_path"):
        create_backbone("resnet10t", pretrained=False, checkpoint_path=tmp_path / "w.pt", num_classes=4)
    with pytest.raises(ParameterError, match="'pretrained' parameter of create_backbone must be True or False"):
        create_backbone("resnet10t", pretrained="yes", num_classes=4)

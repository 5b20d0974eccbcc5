"""The shipped recipes say what the seed solutions did: every setting a recipe attributes to its seed is checked here,
and the recipe excerpts on the docs page are the recipe files' own values."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from specimg.experiment import load_recipe
from specimg.stacking import SEED_BLEND
from specimg.tasks import class_weights

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "examples" / "recipes"

#: The six ImageNet CNNs of the music-genre solution, by the names the recipe gives them, and their timm names.
SEED_BACKBONES = {"densenet169": "densenet169", "densenet201": "densenet201",
                  "inception_resnet_v2": "inception_resnet_v2", "inception_v3": "inception_v3",
                  "resnet50": "resnet50", "xception": "legacy_xception"}


@pytest.fixture(scope="module")
def music():
    return load_recipe(RECIPES / "music_genre.yaml")


@pytest.fixture(scope="module")
def voice():
    return load_recipe(RECIPES / "voice_pathology.yaml")


def test_music_genre_windows_hops_and_images(music):
    for m in music.models:  # one render config shared by all six models
        rc = music.render_config(m.name)
        assert rc.audio.sample_rate == 22050 and rc.audio.min_seconds == 120 and rc.audio.pad_mode == "tile"
        assert rc.segment.seconds == 20.0  # 20 s windows
        assert rc.segment.hop == 10.0  # every 10 s ...
        assert rc.segment.class_hop and set(rc.segment.class_hop.values()) == {5.0}  # ... every 5 s for rare classes
        assert rc.spectrogram.feature == "mel" and rc.spectrogram.image_size == (512, 512)
    assert len({music.render_config(m.name).hash() for m in music.models}) == 1


def test_music_genre_six_backbones_warmup_flip_folds(music):
    assert {m.name: m.backbone for m in music.models} == SEED_BACKBONES
    for m in music.models:
        tc = music.train_config(m.name)
        assert tc.schedule.warmup_epochs == 1  # one warm-up epoch
        assert tc.augment.hflip > 0 and tc.tta == "flip"  # flipped training images and flip test-time augmentation
        assert tc.weights == "hub"  # ImageNet weights
        assert tc.n_splits == 5 and tc.group_column is None  # 5 folds, grouped by file
    assert music.folds == 5 and music.data.group_column is None


def test_music_genre_blend_and_pseudo_labels(music):
    st = music.stacking
    assert set(st.methods) == {"cnn", "cnn-skip", "lgbm"}
    assert st.blend == {"cnn": 0.45, "cnn-skip": 0.45, "lgbm": 0.1} == SEED_BLEND  # 0.45 to each CNN stacker
    members, weights = st.blend_members()
    assert dict(zip(members, weights)) == SEED_BLEND
    ps = music.pseudo
    assert ps.enabled and ps.threshold == 0.85 and ps.source == "blend" and ps.rounds == 1


def test_music_genre_quick_runs_the_same_stacking(music):
    quick = load_recipe(RECIPES / "music_genre_quick.yaml")
    assert quick.stacking.blend == music.stacking.blend and set(quick.stacking.methods) == set(music.stacking.methods)
    assert quick.pseudo.enabled and quick.pseudo.threshold == 0.85


def test_voice_pathology_mfcc_sizes_and_analysis(voice):
    assert [voice.render_config(m.name).spectrogram.n_mfcc for m in voice.models] == [13, 17, 21, 30, 50]
    for m in voice.models:
        rc = voice.render_config(m.name)
        assert rc.spectrogram.feature == "mfcc"
        assert rc.audio.sample_rate == 44100  # 44.1 kHz
        assert rc.audio.offset == 0.0 and rc.audio.duration == 1.0  # the first 1 s ...
        assert rc.segment.seconds == 1.0 and rc.segment.hop == 1.0  # ... is the one window
        assert rc.spectrogram.n_fft == round(0.016 * 44100)  # 16 ms: 706 samples
        assert rc.spectrogram.hop_length == round(0.008 * 44100)  # 8 ms: 353 samples


def test_voice_pathology_training(voice):
    for m in voice.models:
        tc = voice.train_config(m.name)
        assert (tc.optim.optimizer, tc.optim.lr, tc.optim.weight_decay, tc.schedule.warmup_epochs) == \
            ("sgd", 0.01, 1e-4, 1)
        assert tc.task.metric == "uar" and tc.task.class_weights == "inverse"
        assert tc.group_column == "patient"
    # 'inverse' class weights are 1 / count (times a constant): the rarer class counts as much as the common one
    targets = np.array([0] * 30 + [1] * 10)
    w = class_weights(targets, 2, mode=voice.train_config("mfcc13").task.class_weights).numpy()
    counts = np.bincount(targets)
    np.testing.assert_allclose(w * counts, (w * counts)[0])
    # the seed's ensemble: the average of the five MFCC models
    members, weights = voice.stacking.blend_members()
    assert members == [m.name for m in voice.models] and len(set(weights)) == 1


def _is_excerpt(doc, recipe, where=""):
    """Every value the docs show is the recipe's (lists: the docs may show the first items only)."""
    if isinstance(doc, dict):
        assert isinstance(recipe, dict), where
        for k, v in doc.items():
            assert k in recipe, f"{where}.{k} is on the docs page but not in the recipe"
            _is_excerpt(v, recipe[k], f"{where}.{k}")
    elif isinstance(doc, list):
        assert isinstance(recipe, list) and recipe[:len(doc)] == doc, where
    else:
        assert doc == recipe, f"{where}: the docs say {doc!r}, the recipe {recipe!r}"


@pytest.mark.parametrize("index, recipe", [(0, "music_genre.yaml"), (1, "voice_pathology.yaml")])
def test_docs_recipe_excerpts_match_the_files(index, recipe):
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "recipes.md").read_text(encoding="utf-8"), re.S)
    doc = yaml.safe_load(blocks[index])
    _is_excerpt(doc, yaml.safe_load((RECIPES / recipe).read_text(encoding="utf-8")), recipe)

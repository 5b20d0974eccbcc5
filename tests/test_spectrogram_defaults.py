"""STFT defaults that scale with the sample rate; recipes' images unchanged; the float32 STFT against librosa's."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import librosa
import numpy as np
import pytest

from specimg.audio import load_audio
from specimg.config import (AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig, default_hop_length,
                            default_n_fft, mel_bands_that_fit)
from specimg.exceptions import ParameterError
from specimg.spectrogram import ImageCache, feature_matrix, render_signal

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the defaults
@pytest.mark.parametrize("sr, n_fft, hop, n_mels", [
    (44100, 2048, 512, 128),  # librosa's defaults, where they come from
    (22050, 1024, 256, 128),
    (16000, 512, 186, 128),
    (8000, 256, 93, 128),
    (2000, 64, 23, 62),  # a 64-point STFT has 33 bins: at most 62 mel bands with a bin each
])
def test_defaults_in_samples_at_the_rate(sr, n_fft, hop, n_mels):
    cfg = RenderConfig(audio=AudioConfig(sample_rate=sr)).spectrogram
    assert (cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.win_length, cfg.fmax) == (n_fft, hop, n_mels, None, None)
    assert n_fft * 44100 <= 2048 * sr < 2 * n_fft * 44100  # the largest power of two within 46.4 ms
    assert abs(hop / sr - 512 / 44100) <= 0.5 / sr  # 11.6 ms, rounded to a sample
    assert (default_n_fft(sr), default_hop_length(sr)) == (n_fft, hop)


def test_explicit_samples_and_durations_are_kept():
    cfg = RenderConfig(audio=AudioConfig(sample_rate=8000),
                       spectrogram=SpectrogramConfig(n_fft=2048, hop_length=512, n_mels=40)).spectrogram
    assert (cfg.n_fft, cfg.hop_length, cfg.n_mels) == (2048, 512, 40)
    ms = RenderConfig(audio=AudioConfig(sample_rate=44100),
                      spectrogram=SpectrogramConfig(n_fft="16ms", hop_length="8ms", win_length="10ms")).spectrogram
    assert (ms.n_fft, ms.hop_length, ms.win_length) == (706, 353, 441)
    assert SpectrogramConfig.from_ms(44100, n_fft_ms=16, hop_ms=8) == SpectrogramConfig(n_fft=706, hop_length=353)


def test_a_config_resolves_again_at_a_new_rate_unless_it_was_given_in_samples():
    cfg = RenderConfig()
    assert cfg.spectrogram.n_fft == 1024
    at8k = cfg.replace(audio=AudioConfig(sample_rate=8000))
    assert (at8k.spectrogram.n_fft, at8k.spectrogram.hop_length) == (256, 93)
    fixed = RenderConfig(spectrogram=SpectrogramConfig(n_fft=2048)).replace(audio=AudioConfig(sample_rate=8000))
    assert (fixed.spectrogram.n_fft, fixed.spectrogram.hop_length) == (2048, 93)
    stored = RenderConfig.from_dict(at8k.to_dict())  # what a cache's config.json gives back: samples
    assert stored == at8k and stored.to_dict()["spectrogram"]["n_fft"] == 256
    assert stored.replace(audio=AudioConfig(sample_rate=16000)).spectrogram.n_fft == 256


@pytest.mark.parametrize("kw, match", [
    ({"n_fft": "16 samples"}, r"'n_fft' parameter of SpectrogramConfig must be an int >= 1 \(samples\), a duration"),
    ({"hop_length": 0}, "'hop_length' parameter"),
    ({"n_fft": True}, "'n_fft' parameter"),
    ({"win_length": "-3ms"}, "'win_length' parameter"),
    ({"n_mels": 0}, "'n_mels' parameter"),
    ({"n_fft": 256, "win_length": 512}, r"'win_length' parameter of SpectrogramConfig must be None or an int in "
                                        r"\[1, n_fft=256\]"),
])
def test_bad_stft_lengths(kw, match):
    with pytest.raises(ParameterError, match=match):
        RenderConfig(audio=AudioConfig(sample_rate=8000), spectrogram=SpectrogramConfig(**kw))


def test_a_duration_too_short_for_the_rate_names_the_fix():
    with pytest.raises(ParameterError, match="'hop_length'.*At 1000 Hz it is 0 samples; give a longer duration"):
        RenderConfig(audio=AudioConfig(sample_rate=1000), spectrogram=SpectrogramConfig(hop_length="0.2ms"))


def test_mfcc_count_is_checked_against_the_chosen_bands():
    with pytest.raises(ParameterError, match="'n_mfcc'.*<= n_mels=62"):
        RenderConfig(audio=AudioConfig(sample_rate=2000), spectrogram=SpectrogramConfig(feature="mfcc", n_mfcc=64))


@pytest.mark.parametrize("sr", [1000, 2000, 4000, 8000, 11025, 44100])
@pytest.mark.parametrize("n_fft", [32, 64, 256, 1024])
@pytest.mark.parametrize("fmin, fmax", [(0.0, None), (300.0, None), (50.0, 450.0)])
def test_mel_bands_that_fit_is_librosas_empty_filter_test(sr, n_fft, fmin, fmax):
    n = mel_bands_that_fit(sr, n_fft, fmin=fmin, fmax=fmax)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns about the empty filters of n + 1
        fit = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=max(n, 1), fmin=fmin, fmax=fmax)
        over = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n + 1, fmin=fmin, fmax=fmax)
    assert n == 0 or (fit.max(axis=1) > 0).all()
    assert n == 128 or not (over.max(axis=1) > 0).all()
    if n == 0:  # the default cannot choose: the config says why
        with pytest.raises(ParameterError, match="No band between fmin=.*raise n_fft or widen"):
            SpectrogramConfig(fmin=fmin, fmax=fmax, n_fft=n_fft).resolve(sr)


@pytest.mark.parametrize("sr", [2000, 8000])
def test_low_rates_give_a_sensible_image_without_flags(sr, fsdd_dir):
    """A spoken digit at 2 kHz or 8 kHz: every mel row carries signal, the top row is Nyquist, time is ~11.6 ms."""
    cfg = RenderConfig(audio=AudioConfig(sample_rate=sr), segment=SegmentConfig(seconds=1.0, hop=1.0),
                       spectrogram=SpectrogramConfig(image_size=(64, 64)))
    y = load_audio(fsdd_dir / "recordings" / "3_theo_0.wav", sr=sr)
    F = feature_matrix(y, sr=sr, config=cfg.spectrogram)
    assert F.shape == (cfg.spectrogram.n_mels, 1 + len(y) // cfg.spectrogram.hop_length)
    assert (F.max(axis=1) > 0.2).all()  # no empty (black) band
    tone = np.sin(2 * np.pi * 0.45 * sr * np.arange(sr) / sr).astype(np.float32)
    assert int(np.argmax(feature_matrix(tone, sr=sr, config=cfg.spectrogram).mean(axis=1))) >= \
        cfg.spectrogram.n_mels - 8  # 0.45 x the rate lands near the top: fmax is Nyquist
    images, _ = render_signal(y, config=cfg)
    assert images.shape[1:] == (64, 64, 3) and images.std() > 20


def test_cli_defaults_at_8khz(fsdd_dir, tmp_path):
    from specimg.cli import main

    src = fsdd_dir / "recordings" / "5_lucas_1.wav"
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / src.name).write_bytes(src.read_bytes())
    assert main(["render", str(tmp_path / "a"), "--out", str(tmp_path / "c"), "--sample-rate", "8000",
                 "--seconds", "1", "--hop", "1", "--image-size", "32", "--quiet"]) == 0
    spec = ImageCache.open(tmp_path / "c").config.spectrogram
    assert (spec.n_fft, spec.hop_length, spec.n_mels) == (256, 93, 128)
    meta = json.loads((tmp_path / "c" / "config.json").read_text())["render"]["spectrogram"]
    assert (meta["n_fft"], meta["hop_length"], meta["n_mels"]) == (256, 93, 128)  # samples, re-runnable as is


# ------------------------------------------------------------------ the recipes' images
# Stored images (tests/data/make_reference_images.py writes them), compared within a stated tolerance: float
# rendering rounds differently on other CPUs and kernels, so bytes are not pinned. `make test` runs these tests
# again with numpy, OpenBLAS and torch on their plainest kernels (the Makefile's PLAIN_KERNELS).
REFERENCES = json.loads((ROOT / "tests" / "data" / "reference_images.json").read_text())
sys.path.insert(0, str(ROOT / "tests" / "data"))
from make_reference_images import recipe_configs, render  # noqa: E402


def close_images(got: np.ndarray, want: np.ndarray, tolerance: dict) -> str:
    """'' when ``got`` is within ``tolerance`` of ``want`` (uint8 arrays of one shape), else what is off."""
    if got.shape != want.shape:
        return f"shape {got.shape} != {want.shape}"
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    off, allowed = int(np.count_nonzero(diff)), max(tolerance["min_pixels"], int(tolerance["max_fraction"] * diff.size))
    if diff.max() > tolerance["max_grey_levels"] or off > allowed:
        return (f"{off} of {diff.size} pixels differ (at most {allowed} may), by up to {int(diff.max())} grey "
                f"level(s) (at most {tolerance['max_grey_levels']})")
    return ""


def test_every_recipe_and_preset_has_references():
    names = set(recipe_configs())
    assert names == set(REFERENCES["configs"]), (
        f"reference images missing for {sorted(names - set(REFERENCES['configs']))} (or stale: "
        f"{sorted(set(REFERENCES['configs']) - names)}): run tests/data/make_reference_images.py")


@pytest.mark.parametrize("name", sorted(REFERENCES["configs"]))
def test_recipe_images_match_the_references(name, fsdd_dir):
    """Each recipe resolves to the spectrogram config it had, and draws its reference images within the
    tolerance: each pixel at most 1 grey level off, on at most 0.01 % of the pixels (at least 4 allowed)."""
    cfg = recipe_configs()[name]
    want = REFERENCES["configs"][name]
    assert cfg.to_dict()["spectrogram"] == want["spectrogram"]  # ints and strings: exact
    stored = np.load(ROOT / "tests" / "data" / "reference_images.npz")
    for i, images in enumerate(render(cfg, fsdd_dir)):
        assert list(images.shape) == want["shapes"][i]
        if cfg.spectrogram.channels == "replicate":
            assert (images == images[..., :1]).all()
            images = images[..., 0]
        problem = close_images(images[want["windows"][i]], stored[f"{want['entry']}_{i}"], REFERENCES["tolerance"])
        assert not problem, f"{name}, {REFERENCES['files'][i]}: {problem}"


def test_the_image_tolerance_can_fail(rng):
    want = rng.integers(0, 256, size=(2, 100, 100), dtype=np.uint8)
    tol = REFERENCES["tolerance"]
    assert close_images(want, want, tol) == ""
    one_level = want.copy()
    one_level.flat[:2] ^= 1  # two pixels one grey level off: within
    assert close_images(one_level, want, tol) == ""
    two_levels = want.astype(np.int16)
    two_levels.flat[0] = (two_levels.flat[0] + 2) % 256
    assert "by up to" in close_images(two_levels.astype(np.uint8), want, tol)
    many = want.copy()
    many.flat[:10] ^= 1  # 10 of 20,000 pixels (0.05 %)
    assert "10 of 20000 pixels differ (at most 4 may)" in close_images(many, want, tol)
    assert "shape" in close_images(want[:1], want, tol)


# ------------------------------------------------------------------ the float32 STFT
@pytest.mark.parametrize("sr, n_fft, hop, win, power", [(22050, 2048, 512, None, 2.0), (8000, 256, 93, None, 2.0),
                                                       (44100, 706, 353, 500, 1.0), (8000, 255, 64, None, 2.0)])
def test_mel_spectrogram_equals_librosas(sr, n_fft, hop, win, power, fsdd_dir):
    from specimg.spectrogram._image import mel_power

    y = np.tile(load_audio(fsdd_dir / "recordings" / "8_nicolas_2.wav", sr=sr), 3)
    spec = SpectrogramConfig(n_fft=n_fft, hop_length=hop, win_length=win, n_mels=40, power=power).resolve(sr)
    ours = mel_power(y, sr=sr, config=spec)
    ref = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop, win_length=win, n_mels=40,
                                         power=power, pad_mode="constant") ** (2.0 / power)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=2e-3, atol=1e-6 * ref.max())
    db = librosa.power_to_db(ours, ref=np.max, top_db=80.0) - librosa.power_to_db(ref, ref=np.max, top_db=80.0)
    assert np.abs(db).max() < 0.02  # dB; a grey level is 80 / 255 = 0.31 dB


def test_the_front_end_resolves_a_bare_spectrogram_config_at_its_rate():
    torch = pytest.importorskip("torch")
    from specimg.spectrogram import SpectrogramFrontend

    fe = SpectrogramFrontend(SpectrogramConfig(image_size=(32, 32)), sample_rate=8000)
    assert (fe.config.n_fft, fe.config.hop_length, fe.config.n_mels) == (256, 93, 128)
    assert tuple(fe(torch.zeros(2, 8000) + 0.01 * torch.randn(2, 8000)).shape) == (2, 3, 32, 32)

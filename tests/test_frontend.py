"""The on-device front end: parity with the cached render path on real FSDD audio and tones, shapes, bad input.

Measured parity (CPU, torch 2.14, librosa 0.11; uint8 units, 120 FSDD files of one 1 s window at 8 kHz):
mel 128x128, mel 32x48, mel+delta, MFCC and MFCC+delta images differ from ``render_signal``'s in at most
0.02 % of the pixels, by 1 (mean |diff| <= 0.0002). The tests assert mean < 0.01, at most 0.5 % of the
pixels differing and max <= 2.

On multi-window files the front end sees one window at a time. With the file's ``ref`` passed and the
window cut at the frame the cached path uses, the images agree exactly away from the 2-3 image columns at
each window edge (where the cached STFT sees the neighbouring audio and the front end's sees zero padding):
measured mean 0.15, interior mean 0.000. Windows cut at their start sample (hop 0.5 s = 62.5 frames, the
worst half-frame offset) measured mean 2.2 / 99th percentile 20 with ``ref``, 12.4 / 44 without it.
"""

from __future__ import annotations

import librosa
import numpy as np
import pandas as pd
import pytest
import torch

from specimg.audio import load_audio, pad_audio
from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig
from specimg.exceptions import ParameterError
from specimg.spectrogram import render_signal
from specimg.spectrogram._frontend import SpectrogramFrontend

SR = 8000


pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one thread is faster on 2 cores


def render_config(seconds=1.0, **spec) -> RenderConfig:
    kw = dict(n_fft=256, hop_length=64, n_mels=64, image_size=(128, 128))
    kw.update(spec)
    return RenderConfig(audio=AudioConfig(sample_rate=SR), segment=SegmentConfig(seconds=seconds, hop=seconds / 2),
                        spectrogram=SpectrogramConfig(**kw))


def tone(freq, seconds=1.0, sr=SR, amp=0.5):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def cpu_images(windows: np.ndarray, cfg: RenderConfig) -> np.ndarray:
    """render_signal of single-window signals, as (n, 3, H, W) uint8."""
    out = []
    for y in windows:
        images, _ = render_signal(y, config=cfg)
        assert len(images) == 1
        out.append(images[0])
    return np.stack(out).transpose(0, 3, 1, 2)


def frontend_images(windows: np.ndarray, cfg: RenderConfig, **kw) -> np.ndarray:
    with torch.no_grad():
        return SpectrogramFrontend(cfg, output="uint8")(torch.from_numpy(windows), **kw).numpy()


@pytest.fixture(scope="module")
def fsdd_windows(fsdd_dir) -> np.ndarray:
    """40 FSDD recordings (all speakers and digits), tiled (or cut) to one 1 s window: (40, 8000) float32."""
    table = pd.read_csv(fsdd_dir / "labels.csv").sample(40, random_state=0)
    return np.stack([pad_audio(load_audio(fsdd_dir / p, sr=SR), length=SR, mode="tile")[:SR] for p in table["path"]])


# ------------------------------------------------------------------ parity with the cached path
@pytest.mark.parametrize("spec", [
    dict(),                                                  # 64 mels x 125 frames -> 128x128 (upscale)
    dict(n_mels=32, image_size=(32, 48)),                    # downscale in time (anti-aliased)
    dict(channels="delta"),
    dict(feature="mfcc", n_mfcc=20),
    dict(feature="mfcc", n_mfcc=13, channels="delta"),
    dict(power=1.0, win_length=200, fmin=50.0, fmax=3500.0, top_db=60.0),
], ids=["mel", "mel-down", "mel-delta", "mfcc", "mfcc-delta", "options"])
def test_parity_with_render_signal_on_fsdd(fsdd_windows, spec):
    """Single-window files, where the file max is the window max: the images agree to +-1 in rare pixels."""
    cfg = render_config(**spec)
    want = cpu_images(fsdd_windows, cfg).astype(np.int16)
    got = frontend_images(fsdd_windows, cfg).astype(np.int16)
    assert got.shape == want.shape
    diff = np.abs(got - want)
    assert diff.mean() < 0.01, diff.mean()
    assert (diff > 0).mean() < 0.005, (diff > 0).mean()
    assert diff.max() <= 2, diff.max()


@pytest.mark.filterwarnings("ignore:n_fft=256 is too large")  # librosa, on the 2- and 3-frame windows
@pytest.mark.parametrize("seconds", [0.05, 0.1, 0.016, 0.008])
def test_delta_parity_on_short_windows(seconds):
    """Windows of 7, 13, 3 and 2 frames: delta widths 7, 9, 3 and none (zero delta planes)."""
    rng = np.random.default_rng(0)
    cfg = render_config(seconds, n_mels=16, image_size=(16, 8), channels="delta")
    n = int(round(seconds * SR))
    windows = np.stack([tone(f, seconds) + 0.05 * rng.standard_normal(n).astype(np.float32)
                        for f in (300.0, 900.0, 2100.0)])
    diff = np.abs(frontend_images(windows, cfg).astype(int) - cpu_images(windows, cfg).astype(int))
    assert diff.max() <= 1


def test_multi_window_file_with_file_reference(fsdd_dir):
    """A 4.3 s file of FSDD speech cut into 1 s windows (hop 0.5 s): with ``ref`` the file's max and the
    window cut where the cached path slices its frames, only the columns at the window edges differ."""
    table = pd.read_csv(fsdd_dir / "labels.csv").sample(12, random_state=1)
    y = np.concatenate([load_audio(fsdd_dir / p, sr=SR) for p in table["path"]])[: int(4.3 * SR)]
    cfg = render_config()
    hop = cfg.spectrogram.hop_length
    want, bounds = render_signal(y, config=cfg)
    want = want.transpose(0, 3, 1, 2).astype(int)
    frontend = SpectrogramFrontend(cfg, output="uint8")
    n = frontend.n_samples
    with torch.no_grad():
        ref = frontend.reference(torch.from_numpy(y)[None])  # (1,)
    starts = np.round(bounds[:, 0] * SR).astype(int)
    # The frames render_signal slices start at round(start / hop) (the last window may reach past the end).
    aligned = np.round(starts / hop).astype(int) * hop
    padded = np.concatenate([y, np.zeros(n, np.float32)])
    with torch.no_grad():
        got = frontend(torch.from_numpy(np.stack([padded[s:s + n] for s in aligned])),
                       ref=ref.expand(len(aligned))).numpy().astype(int)
    diff = np.abs(got - want)
    edge = 4  # image columns; the STFT's zero padding reaches 2 frames (n_fft / 2 / hop) into the window
    assert diff[..., edge:-edge].max() <= 1
    assert diff[..., edge:-edge].mean() < 0.01
    assert diff.mean() < 0.5, diff.mean()
    # Cut at the start sample (half a frame off here, the worst case) the images still agree roughly, and
    # the file reference matters: without it every window is scaled to its own max.
    natural = torch.from_numpy(np.stack([y[s:s + n] for s in starts]))
    with torch.no_grad():
        with_ref = np.abs(frontend(natural, ref=ref.expand(len(starts))).numpy().astype(int) - want).mean()
        without = np.abs(frontend(natural).numpy().astype(int) - want).mean()
    assert with_ref < 3.5, with_ref
    assert with_ref < without / 2, (with_ref, without)


def test_reference_equals_librosa_file_max(fsdd_windows):
    cfg = render_config()
    y = fsdd_windows[0]
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=256, hop_length=64, n_mels=64)
    with torch.no_grad():
        ref = SpectrogramFrontend(cfg).reference(torch.from_numpy(fsdd_windows[:2]))
    assert ref.shape == (2,)
    np.testing.assert_allclose(float(ref[0]), float(mel.max()), rtol=1e-4)


def test_reference_of_a_long_signal_is_computed_in_pieces_with_the_same_result(fsdd_windows, monkeypatch):
    """An hour of audio would be a 1.3 GB STFT at once: the reference takes it a bounded piece at a time."""
    import specimg.spectrogram._frontend as fe_mod

    cfg = render_config()
    y = torch.from_numpy(np.concatenate(fsdd_windows[:30]))[None]  # (1, 240000): 30 s of real speech
    whole = SpectrogramFrontend(cfg).reference(y)
    monkeypatch.setattr(fe_mod, "_REF_STFT_BYTES", 8 * 129 * 97)  # 97 frames per piece: 39 pieces
    pieces = SpectrogramFrontend(cfg).reference(y)
    assert torch.equal(whole, pieces)
    mel = librosa.feature.melspectrogram(y=y[0].numpy(), sr=SR, n_fft=256, hop_length=64, n_mels=64)
    np.testing.assert_allclose(float(pieces[0]), float(mel.max()), rtol=1e-4)


@pytest.mark.parametrize("freq", [500.0, 1000.0, 2500.0])
@pytest.mark.parametrize("spec", [dict(hop_length=125, n_mels=32, image_size=(32, 64)), dict()],
                         ids=["no-resize", "resized"])
def test_pure_tone_peaks_in_the_same_row(freq, spec):
    cfg = render_config(**spec)
    y = tone(freq)[None]
    want = cpu_images(y, cfg)[0, 0].astype(float)
    got = frontend_images(y, cfg)[0, 0].astype(float)
    row = int(np.argmax(got.mean(axis=1)))
    assert row == int(np.argmax(want.mean(axis=1)))
    assert got.max() == want.max()
    if spec:  # no resize: the row is the tone's mel band, counted from the bottom
        centers = librosa.mel_frequencies(n_mels=34, fmin=0.0, fmax=SR / 2)[1:-1]
        assert got.shape[0] - 1 - row == int(np.argmin(np.abs(centers - freq)))


# ------------------------------------------------------------------ shapes, batches, inputs
@pytest.mark.parametrize("output,dtype", [("float", torch.float32), ("uint8", torch.uint8)])
@pytest.mark.parametrize("channels", ["replicate", "delta"])
def test_shapes_and_dtype(rng, output, dtype, channels):
    cfg = render_config(image_size=(40, 56), channels=channels)
    frontend = SpectrogramFrontend(cfg, output=output)
    x = torch.from_numpy(rng.standard_normal((3, SR)).astype(np.float32))
    with torch.no_grad():
        images = frontend(x)
    assert images.shape == (3, 3, 40, 56) and images.dtype == dtype and images.is_contiguous()
    assert images.device == x.device
    if output == "float":
        assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
        # The float images are the uint8 images / 255.
        u8 = SpectrogramFrontend(cfg, output="uint8")(x)
        torch.testing.assert_close(images, u8.float() / 255.0, rtol=0, atol=1e-6)
    if channels == "replicate":
        assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    else:
        assert not torch.equal(images[:, 0], images[:, 1])
    assert frontend.state_dict() == {}  # buffers are rebuilt from the config, never checkpointed


def test_batch_items_are_independent(rng):
    frontend = SpectrogramFrontend(render_config(feature="mfcc", channels="delta"))
    x = torch.from_numpy(rng.standard_normal((5, SR)).astype(np.float32))
    x[2] *= 100.0  # a loud item must not change the others (per-item max and min-max)
    batch = frontend(x)
    for i in range(5):
        assert torch.equal(batch[i:i + 1], frontend(x[i:i + 1]))


def test_layout_and_dtype_agnostic_input(rng):
    frontend = SpectrogramFrontend(render_config(), output="uint8")
    x = torch.from_numpy(rng.standard_normal((4, SR)).astype(np.float32))
    want = frontend(x)
    strided = torch.from_numpy(rng.standard_normal((SR, 4)).astype(np.float32)).T  # non-contiguous view
    strided.copy_(x)
    assert not strided.is_contiguous()
    assert torch.equal(frontend(strided), want)
    assert torch.equal(frontend(x.double()), want)
    with torch.no_grad():
        assert torch.equal(frontend(x), want)
    assert torch.equal(frontend(x, ref=frontend.reference(x)), want)  # a window is its own file
    assert not frontend(x.clone().requires_grad_()).requires_grad  # forward runs under no_grad


def test_spectrogram_config_takes_any_length(rng):
    frontend = SpectrogramFrontend(SpectrogramConfig(n_fft=256, hop_length=64, n_mels=32, image_size=(32, 32)),
                                   sample_rate=SR)
    assert frontend.n_samples is None
    for n in (1000, 4321):
        assert frontend(torch.from_numpy(rng.standard_normal((2, n)).astype(np.float32))).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("make,match", [
    (lambda f: f(torch.zeros(SR)), r"2-D \(batch, n_samples\).*unsqueeze\(0\)"),
    (lambda f: f(torch.zeros(2, 1, SR)), r"2-D.*squeeze\(1\)"),
    (lambda f: f(torch.zeros(2, SR - 1)), r"n_samples=8000.*Got 7999.*Cut the audio"),
    (lambda f: f(torch.zeros(2, SR, dtype=torch.int16)), r"floating tensor.*int16"),
    (lambda f: f(np.zeros((2, SR), np.float32)), r"torch.Tensor.*ndarray"),
    (lambda f: f(torch.zeros(0, SR)), r"non-empty"),
    (lambda f: f(torch.zeros(2, SR), ref=torch.ones(3)), r"'ref'.*\(batch,\)=\(2,\).*Got shape \(3,\)"),
    (lambda f: f.reference(torch.zeros(SR)), r"'waveforms'.*2-D"),
])
def test_bad_input(make, match):
    with pytest.raises(ParameterError, match=match):
        make(SpectrogramFrontend(render_config()))


@pytest.mark.parametrize("make,match", [
    (lambda: SpectrogramFrontend(SpectrogramConfig()), r"'sample_rate'.*SpectrogramConfig.*Got None"),
    (lambda: SpectrogramFrontend(render_config(), sample_rate=16000), r"config.audio.sample_rate=8000.*16000"),
    (lambda: SpectrogramFrontend({"n_fft": 256}), r"RenderConfig or a SpectrogramConfig.*dict"),
    (lambda: SpectrogramFrontend(render_config(), output="png"), r"'output'.*'float' or 'uint8'.*'png'"),
])
def test_bad_construction(make, match):
    with pytest.raises(ParameterError, match=match):
        make()

"""The window, mel filterbank, dB scale, DCT and resampler that rendering writes out are librosa's.

specimg renders without importing librosa (its modules import scipy.signal and numba, most of a short render's
start-up); these tests hold each piece to the librosa call it stands for, on the settings the recipes and
presets use and on odd ones.
"""

import librosa
import numpy as np
import pytest
import scipy.fft

from specimg.audio._load import resample
from specimg.spectrogram._config import hz_to_mel, mel_to_hz
from specimg.spectrogram._image import _hann, _power_to_db, mel_filters

SETTINGS = [  # sr, n_fft, n_mels, fmin, fmax
    (22050, 2048, 128, 0.0, None),  # the music recipe
    (44100, 706, 64, 0.0, None),  # the voice recipe's 16 ms at 44.1 kHz
    (8000, 256, 64, 0.0, None),  # the FSDD presets
    (16000, 512, 40, 50.0, 7600.0),
    (2000, 64, 62, 0.0, None),  # the most bands that fit at 2 kHz (mel_bands_that_fit)
]


@pytest.mark.parametrize("sr, n_fft, n_mels, fmin, fmax", SETTINGS)
def test_mel_filters_are_librosas(sr, n_fft, n_mels, fmin, fmax):
    ours = mel_filters(sr, n_fft, n_mels, fmin, fmax)
    theirs = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape == (n_mels, 1 + n_fft // 2)
    # the same float64 operations cast to float32 once: equal up to a float32 rounding step of the largest weight
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2 * np.finfo(np.float32).eps * float(theirs.max()))
    assert np.array_equal(ours > 0, theirs > 0)  # the same support: no band loses or gains a bin


def test_mel_scale_is_slaneys():
    hz = np.array([0.0, 200.0, 999.9, 1000.0, 1000.1, 4000.0, 11025.0, 22050.0])
    np.testing.assert_allclose(hz_to_mel(hz), librosa.hz_to_mel(hz), rtol=1e-12, atol=0)
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)), hz, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(mel_to_hz(np.linspace(0, 40, 81)), librosa.mel_to_hz(np.linspace(0, 40, 81)),
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("n_fft, win_length", [(2048, None), (256, None), (706, 600), (512, 401)])
def test_hann_is_librosas(n_fft, win_length):
    theirs = librosa.util.pad_center(librosa.filters.get_window("hann", win_length or n_fft, fftbins=True),
                                     size=n_fft)
    np.testing.assert_allclose(_hann(n_fft, win_length), theirs, rtol=0, atol=1e-15)


def test_power_to_db_is_librosas():
    rng = np.random.default_rng(0)
    power = (rng.random((64, 200)) ** 6 * 1e3).astype(np.float32)
    power[:5, :5] = 0.0  # silence: the 1e-10 floor
    for top_db in (80.0, 40.0):
        theirs = librosa.power_to_db(power, ref=np.max, top_db=top_db)
        ours = _power_to_db(power, top_db=top_db)
        assert ours.dtype == theirs.dtype == np.float32
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)  # dB; float32 log10 of the same values


def test_mfcc_dct_is_librosas():
    db = _power_to_db((np.random.default_rng(1).random((40, 50)) + 1e-3).astype(np.float32), top_db=80.0)
    ours = scipy.fft.dct(db, axis=0, type=2, norm="ortho")[:13]
    np.testing.assert_allclose(ours, librosa.feature.mfcc(S=db, n_mfcc=13), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("orig, target, n", [(44100, 22050, 44100), (8000, 22050, 7999), (16000, 8000, 1234),
                                             (48000, 44100, 1)])
def test_resample_is_librosas(orig, target, n):
    y = np.sin(2 * np.pi * 440 * np.arange(n) / orig).astype(np.float32)
    theirs = librosa.resample(y, orig_sr=orig, target_sr=target, res_type="soxr_hq")
    ours = resample(y, orig, target)
    assert ours.dtype == theirs.dtype == np.float32 and len(ours) == len(theirs)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-7)  # the same soxr call: equal up to float32 noise


def test_rendering_does_not_import_librosa(tmp_path):
    import subprocess
    import sys

    import soundfile as sf

    sf.write(tmp_path / "tone.wav", np.sin(np.arange(44100) / 7.0).astype(np.float32), 44100)  # resampled
    code = ("import sys; from specimg.spectrogram import render_file; from specimg.config import RenderConfig; "
            f"images = render_file({str(tmp_path / 'tone.wav')!r}, config=RenderConfig())[0]; "
            "print(images.shape, sorted(m for m in ('librosa', 'numba', 'scipy.signal') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]"), out


"""Truncated and degenerate audio: real FSDD files cut at many byte offsets, in every container that states a
length; audio shorter than one STFT frame; constant (DC) signals.

A cut file is an AudioError naming the file, what its header announces and what it holds; with
``allow_truncated`` (``--allow-truncated``) what is there is kept, bit for bit, and a warning names the file.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from specimg.audio import load_audio, pad_audio
from specimg.audio._container import inspect_container
from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig
from specimg.exceptions import AudioError, ParameterError

#: FSDD's longest clip: 2.2828 s, 18262 samples of 16-bit PCM at 8 kHz, a 44-byte header.
LONG = "recordings/9_theo_16.wav"
HEADER = 44


@pytest.fixture(scope="module")
def long_wav(fsdd_dir) -> tuple:
    path = fsdd_dir / LONG
    y, sr = sf.read(path, dtype="float32")
    assert (sr, len(y), path.stat().st_size) == (8000, 18262, HEADER + 2 * 18262)
    return path.read_bytes(), y


def _cut(tmp_path: Path, data: bytes, n: int, name: str = "cut.wav") -> Path:
    p = tmp_path / name
    p.write_bytes(data[:n])
    return p


# offsets inside the RIFF/fmt header, at its end (no sample), mid-sample (odd), at sample boundaries (even),
# one byte short of the end
HEADER_CUTS = [13, 20, 24, 36, 40, 43]
DATA_CUTS = [HEADER, HEADER + 1, HEADER + 2, 101, 200, 201, 4096, 4097, 18306, 36567]


@pytest.mark.parametrize("n", HEADER_CUTS + DATA_CUTS)
def test_fsdd_wav_cut_anywhere_is_an_error_naming_the_file(long_wav, tmp_path, n):
    data, _ = long_wav
    p = _cut(tmp_path, data, n)
    with pytest.raises(AudioError, match="truncated") as err:
        load_audio(p, sr=8000)
    msg = str(err.value)
    assert msg.startswith(str(p)) and "header says" in msg and "file holds" in msg
    if n >= HEADER:  # the data chunk's header is there: the announced length is known
        held = (n - HEADER) // 2
        assert "header says 2.283 s (18262 samples at 8000 Hz), file holds " in msg
        assert f"({held} samples at 8000 Hz)" in msg
    else:
        assert "header says 36568 bytes, file holds" in msg and "cut inside its header" in msg
    if n <= HEADER + 1:  # nothing to keep
        assert "nothing to decode" in msg


@pytest.mark.parametrize("n", DATA_CUTS)
def test_allow_truncated_keeps_exactly_what_is_there(long_wav, tmp_path, n, caplog):
    data, y = long_wav
    p = _cut(tmp_path, data, n)
    held = (n - HEADER) // 2
    if held == 0:
        with pytest.raises(AudioError, match="nothing to decode"):
            load_audio(p, sr=8000, allow_truncated=True)
        return
    with caplog.at_level(logging.WARNING, logger="specimg.audio"):
        out = load_audio(p, sr=8000, allow_truncated=True)
    np.testing.assert_array_equal(out, y[:held])  # the samples that are there, bit for bit
    assert any(str(p) in r.getMessage() and "truncated" in r.getMessage() and "kept" in r.getMessage()
               for r in caplog.records)


def test_the_issue_example_120_s_announced_200_bytes_held(long_wav, tmp_path):
    """An interrupted download: a 120 s WAV at 22.05 kHz whose first 200 bytes arrived."""
    _, y = long_wav
    full = tmp_path / "song.wav"
    sf.write(full, np.resize(y, 120 * 22050), 22050, subtype="PCM_16")
    with pytest.raises(AudioError, match=re.escape(
            "song.wav: header says 120.0 s (2646000 samples at 22050 Hz), file holds 0.004 s (78 samples at "
            "22050 Hz): truncated, re-download or re-export it")):
        load_audio(_cut(tmp_path, full.read_bytes(), 200, "song.wav"), sr=22050)


@pytest.mark.parametrize("fmt, subtype, ext, exact", [
    ("WAV", "FLOAT", "wav", True), ("WAV", "ALAW", "wav", True), ("AIFF", "PCM_16", "aiff", True),
    ("AU", "PCM_16", "au", True), ("FLAC", "PCM_16", "flac", True), ("OGG", "VORBIS", "ogg", False),
])
def test_every_container_that_states_a_length(long_wav, tmp_path, fmt, subtype, ext, exact):
    _, y = long_wav
    y = np.tile(y, 4)  # 9.1 s: several Ogg pages, several FLAC blocks
    full = tmp_path / f"full.{ext}"
    sf.write(full, y, 8000, format=fmt, subtype=subtype)
    whole = load_audio(full, sr=8000)  # the uncut file: no complaint
    assert len(whole) == len(y) and inspect_container(full) is None
    data = full.read_bytes()
    for n in (len(data) // 2, len(data) * 3 // 4, len(data) - 1):
        p = _cut(tmp_path, data, n, f"cut.{ext}")
        with pytest.raises(AudioError, match="truncated") as err:
            load_audio(p, sr=8000)
        assert str(p) in str(err.value) and "header says" in str(err.value)
        kept = load_audio(p, sr=8000, allow_truncated=True)
        assert 0 < len(kept) < len(y)
        if exact:  # lossless: the kept part is the start of the file
            np.testing.assert_array_equal(kept, whole[:len(kept)])
        else:
            assert np.corrcoef(kept, whole[:len(kept)])[0, 1] > 0.99
    for n in (8, 20):  # cut inside the header: never decodable
        p = _cut(tmp_path, data, n, f"cut.{ext}")
        with pytest.raises(AudioError):
            load_audio(p, sr=8000, allow_truncated=True)


def test_no_fsdd_file_is_reported_truncated(fsdd_dir):
    """No false alarm on the 3000 real files (headers only: about 0.1 s)."""
    flagged = [p.name for p in sorted((fsdd_dir / "recordings").glob("*.wav")) if inspect_container(p)]
    assert len(list((fsdd_dir / "recordings").glob("*.wav"))) == 3000 and flagged == []


def test_malformed_is_not_called_truncated(tmp_path):
    p = tmp_path / "garbage.wav"
    p.write_bytes(b"RIFF....WAVEfmt garbage" * 20)
    with pytest.raises(AudioError, match="cannot be decoded"):
        load_audio(p, sr=8000)


# ------------------------------------------------------------------ shorter than one STFT frame
def test_shorter_than_one_stft_frame_is_an_error_never_a_tiled_window():
    from specimg.spectrogram import render_signal

    cfg = RenderConfig(audio=AudioConfig(sample_rate=8000), segment=SegmentConfig(seconds=1.0, hop=0.5),
                       spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=32, image_size=(32, 32)))
    rng = np.random.default_rng(0)
    with pytest.raises(AudioError, match=r"x\.wav: holds 0\.025 s \(200 samples at 8000 Hz\), less than one STFT "
                                         r"frame \(0\.032 s \(256 samples at 8000 Hz\), n_fft\)"):
        render_signal(rng.standard_normal(200).astype(np.float32), config=cfg, path="x.wav")
    with pytest.raises(AudioError, match="less than one STFT frame"):
        render_signal(rng.standard_normal(255).astype(np.float32), config=cfg, path="x.wav")
    images, bounds = render_signal(rng.standard_normal(256).astype(np.float32), config=cfg)  # one frame: fine
    assert images.shape == (1, 32, 32, 3)
    for mode in ("zero", "none"):
        with pytest.raises(AudioError, match="less than one STFT frame"):
            render_signal(np.ones(10, np.float32), config=cfg.replace(audio=AudioConfig(sample_rate=8000,
                                                                                        pad_mode=mode)))


def test_pad_audio_minimum():
    assert len(pad_audio(np.ones(4), length=10, min_samples=4)) == 10
    with pytest.raises(AudioError, match="holds 3 samples, less than one STFT frame"):
        pad_audio(np.ones(3), length=10, min_samples=4)
    with pytest.raises(ParameterError, match="'min_samples' parameter of pad_audio"):
        pad_audio(np.ones(3), length=10, min_samples=0)


# ------------------------------------------------------------------ constant (DC) signals
@pytest.mark.parametrize("value, subtype, match", [
    (0.0, "PCM_16", "is silent"), (0.5, "PCM_16", "is constant"), (-0.25, "FLOAT", "is constant"),
])
def test_constant_signals(tmp_path, value, subtype, match):
    p = tmp_path / "dc.wav"
    sf.write(p, np.full(8000, value, np.float32), 8000, subtype=subtype)
    with pytest.raises(AudioError, match=match):
        load_audio(p, sr=8000)
    with pytest.raises(AudioError, match=match):  # resampling does not hide it (soxr rings at the edges)
        load_audio(p, sr=22050)
    assert len(load_audio(p, sr=8000, allow_silent=True)) == 8000


def test_dc_offset_under_real_speech_is_fine(long_wav, tmp_path):
    _, y = long_wav
    p = tmp_path / "offset.wav"
    sf.write(p, y * 0.5 + 0.3, 8000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(p, sr=8000), y * 0.5 + 0.3, atol=1e-7)


def test_audio_config_option_is_validated():
    assert AudioConfig().allow_truncated is False
    assert AudioConfig(allow_truncated=True).to_dict()["allow_truncated"] is True
    with pytest.raises(ParameterError, match="'allow_truncated' parameter of AudioConfig"):
        AudioConfig(allow_truncated="yes")


# ------------------------------------------------------------------ a batch: errors.csv, or warnings
@pytest.fixture(scope="module")
def cut_batch(fsdd_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cut_batch")
    rows = []
    for name in ("0_george_0.wav", "3_theo_0.wav", "7_lucas_1.wav"):
        (folder / name).write_bytes((fsdd_dir / "recordings" / name).read_bytes())
        rows.append((name, name[0]))
    data = (fsdd_dir / LONG).read_bytes()
    for name, n in (("half.wav", len(data) // 2), ("200bytes.wav", 200), ("header.wav", 30)):
        (folder / name).write_bytes(data[:n])
        rows.append((name, "9"))
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(folder / "batch.csv", index=False)
    return folder / "batch.csv"


RENDER = ["--sample-rate", "8000", "--seconds", "1", "--hop", "0.5", "--n-fft", "256", "--hop-length", "64",
          "--n-mels", "32", "--image-size", "32", "--quiet", "--workers", "2"]


def _render(csv: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "specimg", "render", str(csv), "--out", str(out), *RENDER, *extra],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_render_lists_truncated_files_in_errors_and_renders_the_rest(cut_batch, tmp_path):
    _render(cut_batch, tmp_path / "cache")
    errors = pd.read_csv(tmp_path / "cache" / "errors.csv")
    got = dict(zip(errors["path"], errors["error"]))
    assert sorted(got) == ["200bytes.wav", "half.wav", "header.wav"]
    assert "header says 2.283 s (18262 samples at 8000 Hz), file holds 1.140 s (9120 samples at 8000 Hz)" in got["half.wav"]
    assert "truncated, re-download or re-export it" in got["200bytes.wav"]
    assert "cut inside its header" in got["header.wav"]
    files = pd.read_csv(tmp_path / "cache" / "files.csv")
    assert sorted(files["path"]) == ["0_george_0.wav", "3_theo_0.wav", "7_lucas_1.wav"]


def test_render_allow_truncated_keeps_them_with_a_warning(cut_batch, tmp_path):
    proc = _render(cut_batch, tmp_path / "cache", "--allow-truncated")
    assert re.search(r"half\.wav: header says 2\.283 s .*truncated.*kept the 1\.140 s", proc.stderr), proc.stderr
    files = pd.read_csv(tmp_path / "cache" / "files.csv")
    assert "half.wav" in set(files["path"])
    assert float(files.set_index("path").loc["half.wav", "duration"]) == pytest.approx(9120 / 8000)
    errors = pd.read_csv(tmp_path / "cache" / "errors.csv")
    got = dict(zip(errors["path"], errors["error"]))
    # 78 samples are kept but are less than one STFT frame: still an error, never looped to a window
    assert sorted(got) == ["200bytes.wav", "header.wav"] and "less than one STFT frame" in got["200bytes.wav"]

"""Audio loading, padding and segmentation: exact answers on synthetic signals, every format libsndfile reads."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from specimg.audio import audio_duration, load_audio, pad_audio, read_table, segment_audio, segment_bounds, sort_labels
from specimg.exceptions import AudioError, DataError, ParameterError

SR = 8000


def tone(freq=440.0, seconds=0.5, sr=SR, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ------------------------------------------------------------------ segmentation
@pytest.mark.parametrize("hop, expected", [(10, 11), (5, 21)])
def test_120s_file_window_counts(hop, expected):
    b = segment_bounds(120 * SR, sr=SR, seconds=20, hop=hop)
    assert len(b) == expected
    assert b[0, 0] == 0 and b[-1, 1] == 120 * SR
    assert np.all(b[:, 1] - b[:, 0] == 20 * SR)


def test_tail_policy_keeps_the_end():
    b = segment_bounds(25 * SR, sr=SR, seconds=20, hop=10)
    np.testing.assert_array_equal(b // SR, [[0, 20], [5, 25]])
    assert len(segment_bounds(25 * SR, sr=SR, seconds=20, hop=10, last="drop")) == 1
    # exact fit: no extra window
    assert len(segment_bounds(30 * SR, sr=SR, seconds=20, hop=10)) == 2


def test_segment_audio_values():
    w = segment_audio(np.arange(10.0), sr=1, seconds=4, hop=3)
    np.testing.assert_array_equal(w, [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]])


def test_segment_too_short_and_bad_options():
    with pytest.raises(ParameterError, match="shorter than one window"):
        segment_bounds(SR // 2, sr=SR, seconds=1, hop=1)
    with pytest.raises(ParameterError, match="hop > 0"):
        segment_bounds(SR, sr=SR, seconds=1, hop=-1)


# ------------------------------------------------------------------ padding
def test_pad_tile_zero_none():
    y = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(pad_audio(y, length=7), [1, 2, 3, 1, 2, 3, 1])
    np.testing.assert_array_equal(pad_audio(y, length=5, mode="zero"), [1, 2, 3, 0, 0])
    assert len(pad_audio(y, length=5, mode="none")) == 3
    assert len(pad_audio(y, length=2)) == 3  # never shortens


# ------------------------------------------------------------------ formats
FORMATS = [
    ("pcm16.wav", "WAV", "PCM_16"),
    ("pcm8.wav", "WAV", "PCM_U8"),
    ("pcm24.wav", "WAV", "PCM_24"),
    ("pcm32.wav", "WAV", "PCM_32"),
    ("float.wav", "WAV", "FLOAT"),
    ("alaw.wav", "WAV", "ALAW"),
    ("ulaw.wav", "WAV", "ULAW"),
    ("x.flac", "FLAC", "PCM_16"),
    ("x.ogg", "OGG", "VORBIS"),
    ("mp3_inside.wav", "MP3", "MPEG_LAYER_III"),
]


@pytest.mark.parametrize("name, fmt, subtype", FORMATS)
def test_load_every_format(tmp_path, name, fmt, subtype):
    y = tone(440, 1.0)
    path = tmp_path / name
    sf.write(path, y, SR, format=fmt, subtype=subtype)
    out = load_audio(path, sr=SR)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - len(y)) < 0.1 * SR  # codecs may add priming samples
    # the tone survives: its spectrum peaks at 440 Hz
    spec = np.abs(np.fft.rfft(out[:SR // 2]))
    assert abs(np.argmax(spec) * SR / (SR // 2) - 440) <= 4


def test_stereo_to_mono_and_resample(tmp_path):
    left, right = tone(440, 1.0, sr=44100), tone(440, 1.0, sr=44100) * 0.0
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), 44100)
    y = load_audio(tmp_path / "st.wav", sr=SR)
    assert abs(len(y) - SR) <= 1
    assert np.max(np.abs(y)) == pytest.approx(0.25, abs=0.02)  # mean of the two channels
    assert audio_duration(tmp_path / "st.wav") == pytest.approx(1.0)


def test_offset_and_duration(tmp_path):
    y = np.concatenate([np.zeros(SR, np.float32) + 0.1, np.zeros(SR, np.float32) + 0.2])
    sf.write(tmp_path / "a.wav", y, SR, subtype="FLOAT")
    out = load_audio(tmp_path / "a.wav", sr=SR, offset=1.0, duration=0.5, allow_silent=True)  # constant pieces
    assert len(out) == SR // 2 and np.allclose(out, 0.2)


# ------------------------------------------------------------------ bad input
def _bad(tmp_path, kind):
    p = tmp_path / f"{kind}.wav"
    if kind == "missing":
        return p
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "garbage":
        p.write_bytes(b"this is not audio at all" * 10)
    elif kind == "zero_length":
        sf.write(p, np.zeros(0, np.float32), SR)
    elif kind == "nan":
        y = tone()
        y[100] = np.nan
        sf.write(p, y, SR, subtype="FLOAT")
    elif kind == "inf":
        y = tone()
        y[5] = np.inf
        sf.write(p, y, SR, subtype="FLOAT")
    elif kind == "silent":
        sf.write(p, np.zeros(SR, np.float32), SR)
    return p


@pytest.mark.parametrize("kind, message", [
    ("missing", "file not found"),
    ("empty", r"empty \(0 bytes\)"),
    ("garbage", "cannot be decoded"),
    ("zero_length", "zero-length"),
    ("nan", "NaN or infinite"),
    ("inf", "NaN or infinite"),
    ("silent", "silent"),
])
def test_bad_audio_messages_name_the_file(tmp_path, kind, message):
    p = _bad(tmp_path, kind)
    with pytest.raises(AudioError, match=message) as info:
        load_audio(p, sr=SR)
    assert str(p) in str(info.value)


def test_silent_allowed_on_request(tmp_path):
    p = _bad(tmp_path, "silent")
    assert not np.any(load_audio(p, sr=SR, allow_silent=True))


def test_bad_load_options(tmp_path):
    p = tmp_path / "ok.wav"
    sf.write(p, tone(), SR)
    with pytest.raises(ParameterError, match="'sr'"):
        load_audio(p, sr=0)
    with pytest.raises(ParameterError, match="'offset'"):
        load_audio(p, sr=SR, offset=-1)


# ------------------------------------------------------------------ tables
def test_read_csv_relative_paths_and_labels(fsdd_dir):
    t = read_table(fsdd_dir / "labels.csv")
    assert len(t) == 3000
    assert set(t["label"]) == {str(i) for i in range(10)}
    assert t["abspath"].iloc[0].startswith(str(fsdd_dir))
    assert t["group"].iloc[0] == t["path"].iloc[0]  # no group column: the file is its own group
    assert "speaker" in t.columns


def test_read_folder_tree_and_plain_folder(tmp_path):
    for label in ("cat", "dog"):
        (tmp_path / "tree" / label).mkdir(parents=True)
        sf.write(tmp_path / "tree" / label / "a.wav", tone(), SR)
    sf.write(tmp_path / "tree" / "cat" / "b.flac", tone(), SR)
    t = read_table(tmp_path / "tree")
    assert sorted(t["label"]) == ["cat", "cat", "dog"]
    (tmp_path / "plain").mkdir()
    sf.write(tmp_path / "plain" / "x.wav", tone(), SR)
    assert read_table(tmp_path / "plain")["label"].tolist() == [None]


def test_table_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "nopath.csv").write_text("file,label\na.wav,1\n")
    with pytest.raises(DataError, match="no 'path' column"):
        read_table(tmp_path / "nopath.csv")
    (tmp_path / "dup.csv").write_text("path,label\na.wav,1\na.wav,2\n")
    with pytest.raises(DataError, match="twice"):
        read_table(tmp_path / "dup.csv")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        read_table(tmp_path / "emptydir")


def test_sort_labels_numeric_aware():
    assert sort_labels(["10", "2", "1", "b", "a"]) == ["1", "2", "10", "a", "b"]


# ------------------------------------------------------------------ 16-bit PCM read as int16
def test_pcm16_loads_the_values_libsndfile_gives(fsdd_dir, tmp_path):
    """16-bit PCM is read as int16 and scaled by 1 / 32768 (faster): the same float32 array libsndfile's own
    float conversion gives, on real recordings and on the extreme sample values, with an offset and duration."""
    paths = sorted((fsdd_dir / "recordings").glob("*.wav"))[::300]
    assert len(paths) >= 10 and all(sf.info(p).subtype == "PCM_16" for p in paths)
    for p in paths:
        np.testing.assert_array_equal(load_audio(p, sr=8000), sf.read(p, dtype="float32")[0])
    extremes = np.array([-32768, -32767, -1, 0, 1, 32766, 32767] * 400, dtype=np.int16)
    stereo = np.stack([extremes, extremes[::-1]], axis=1)
    sf.write(tmp_path / "x.wav", stereo, SR, subtype="PCM_16")
    expected = sf.read(tmp_path / "x.wav", dtype="float32", always_2d=True)[0]
    assert expected.min() == -1.0 and expected.max() == np.float32(32767 / 32768)
    np.testing.assert_array_equal(load_audio(tmp_path / "x.wav", sr=SR), expected.mean(axis=1))
    part = load_audio(tmp_path / "x.wav", sr=SR, offset=0.05, duration=0.1)
    np.testing.assert_array_equal(part, expected[400:1200].mean(axis=1))

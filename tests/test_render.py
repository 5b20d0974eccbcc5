"""Spectrogram images and the image cache: exact answers on tones, real FSDD audio, bad input, resume."""

from __future__ import annotations

import json

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import specimg.spectrogram._render as cache_mod
from specimg.cli import main
from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig
from specimg.exceptions import AudioError, DataError, ParameterError
from specimg.spectrogram import ImageCache, render_dataset, render_signal

SR = 8000


def tone(freq, seconds=1.0, sr=SR, amp=0.5):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def exact_config(**spec):
    """No resize: 32 mel rows x 64 frames per 1 s window."""
    kw = dict(n_fft=256, hop_length=125, n_mels=32, image_size=(32, 64))
    kw.update(spec)
    return RenderConfig(audio=AudioConfig(sample_rate=SR), segment=SegmentConfig(seconds=1.0, hop=0.5),
                        spectrogram=SpectrogramConfig(**kw))


# ------------------------------------------------------------------ images from tones
@pytest.mark.parametrize("freq", [500.0, 1000.0, 2500.0])
def test_pure_tone_lands_in_its_mel_row(freq):
    cfg = exact_config()
    images, bounds = render_signal(tone(freq), config=cfg)
    assert images.shape == (1, 32, 64, 3) and images.dtype == np.uint8
    centers = librosa.mel_frequencies(n_mels=34, fmin=0.0, fmax=SR / 2)[1:-1]
    expected_row = int(np.argmin(np.abs(centers - freq)))
    energy = images[0, :, :, 0].astype(float).mean(axis=1)[::-1]  # bottom row = mel bin 0
    assert int(np.argmax(energy)) == expected_row
    assert images[0].max() == 255  # the loudest bin maps to white
    np.testing.assert_array_equal(images[0, :, :, 0], images[0, :, :, 1])  # replicated channels


def test_low_frequencies_at_the_bottom():
    images, _ = render_signal(tone(200.0), config=exact_config())
    rows = images[0, :, :, 0].astype(float).mean(axis=1)
    assert rows[-8:].mean() > rows[:8].mean() + 50


def test_delta_channels_differ():
    y = np.concatenate([tone(500, 0.5), tone(2000, 0.5)])
    images, _ = render_signal(y, config=exact_config(channels="delta"))
    assert not np.array_equal(images[0, ..., 0], images[0, ..., 1])
    assert not np.array_equal(images[0, ..., 1], images[0, ..., 2])


def test_windows_are_slices_of_one_file_spectrogram(monkeypatch):
    import specimg.spectrogram._image as image_mod

    calls = []
    real = image_mod.feature_matrix
    monkeypatch.setattr(image_mod, "feature_matrix", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = exact_config()
    y = np.concatenate([tone(300, 1.0), tone(900, 1.0), tone(2700, 1.0)])
    images, bounds = render_signal(y, config=cfg)
    assert len(calls) == 1  # computed once, sliced 5 times
    np.testing.assert_allclose(bounds, [[0, 1], [0.5, 1.5], [1, 2], [1.5, 2.5], [2, 3]])
    F = real(y, sr=SR, config=cfg.spectrogram)
    u8 = np.rint(F[:, 64:128][::-1] * 255).astype(np.uint8)  # window 2 starts at frame 1 s * 8000 / 125
    np.testing.assert_array_equal(images[2, :, :, 0], u8)


def test_short_file_is_looped_to_one_window():
    y = tone(440, 0.3)
    images, bounds = render_signal(y, config=exact_config())
    assert len(images) == 1 and bounds[0, 1] == pytest.approx(1.0)
    cfg = exact_config().replace(audio=AudioConfig(sample_rate=SR, min_seconds=2.0))
    assert len(render_signal(y, config=cfg)[0]) == 3  # 2 s at hop 0.5 s


def test_class_dependent_hop():
    cfg = exact_config().replace(segment=SegmentConfig(seconds=1.0, hop=1.0, class_hop={"rare": 0.5}))
    y = tone(440, 3.0)
    assert len(render_signal(y, config=cfg, label="common")[0]) == 3
    assert len(render_signal(y, config=cfg, label="rare")[0]) == 5


def test_voice_pathology_mfcc_settings(tmp_path):
    cfg = RenderConfig(
        audio=AudioConfig(sample_rate=44100, duration=1.0),
        segment=SegmentConfig(seconds=1.0, hop=1.0),
        spectrogram=SpectrogramConfig.from_ms(44100, n_fft_ms=16, hop_ms=8, feature="mfcc", n_mfcc=13,
                                              image_size=(13, 125)),  # 13 coefficients x 1 s / 8 ms: no resize
    )
    assert (cfg.spectrogram.n_fft, cfg.spectrogram.hop_length) == (706, 353)
    sf.write(tmp_path / "v.wav", np.concatenate([tone(150, 2.0, sr=22050), tone(300, 1.0, sr=22050)]), 22050)
    from specimg.spectrogram import render_file

    images, bounds, duration = render_file(tmp_path / "v.wav", config=cfg)
    assert images.shape == (1, 13, 125, 3) and duration == pytest.approx(1.0)  # only the first 1 s is read
    assert images.min() == 0 and images.max() == 255  # per-window min-max scaling of MFCCs


# ------------------------------------------------------------------ the cache on real audio
def test_render_fsdd_subset(fsdd_subset_csv, small_config, tmp_path):
    cache = render_dataset(fsdd_subset_csv, tmp_path / "c", small_config, progress=False)
    assert len(cache.files) == 60 and cache.classes == [str(i) for i in range(10)]
    assert cache.images.shape[1:] == (32, 48, 3)
    assert len(cache.segments) == cache.files["n_segments"].sum() == len(cache.images)
    assert "speaker" in cache.files.columns
    assert cache.errors.empty
    # every file's windows cover its (looped) length and images are not blank
    assert (np.asarray(cache.images).reshape(len(cache.images), -1).std(axis=1) > 5).all()
    again = ImageCache.open(tmp_path / "c")
    np.testing.assert_array_equal(again.images, cache.images)
    meta = json.loads((tmp_path / "c" / "config.json").read_text())
    assert meta["hash"] == small_config.hash() and meta["complete"] is True


def test_rerun_renders_nothing_and_new_files_only(fsdd_subset_csv, small_config, tmp_path, monkeypatch):
    table = pd.read_csv(fsdd_subset_csv, dtype=str)
    first = tmp_path / "first.csv"
    table.iloc[:10].to_csv(first, index=False)
    render_dataset(first, tmp_path / "c", small_config, progress=False)
    calls = []
    real = cache_mod._render_job
    monkeypatch.setattr(cache_mod, "_render_job", lambda *a: calls.append(a[1]) or real(*a))
    render_dataset(first, tmp_path / "c", small_config, progress=False)
    assert calls == []
    more = tmp_path / "more.csv"
    table.iloc[:12].to_csv(more, index=False)
    cache = render_dataset(more, tmp_path / "c", small_config, progress=False)
    assert calls == list(table["path"].iloc[10:12]) and len(cache.files) == 12
    fresh = render_dataset(more, tmp_path / "fresh", small_config, progress=False)
    np.testing.assert_array_equal(cache.images, fresh.images)


def test_resume_after_kill_equals_uninterrupted(fsdd_subset_csv, small_config, tmp_path, monkeypatch):
    full = render_dataset(fsdd_subset_csv, tmp_path / "full", small_config, progress=False)
    real = cache_mod.render_planes
    n = []

    def dies(*a, **k):
        n.append(1)
        if len(n) == 7:
            raise KeyboardInterrupt  # the process is killed mid-batch
        return real(*a, **k)

    monkeypatch.setattr(cache_mod, "render_planes", dies)
    with pytest.raises(KeyboardInterrupt):
        render_dataset(fsdd_subset_csv, tmp_path / "r", small_config, progress=False)
    assert not (tmp_path / "r" / "images.npy").exists() and not (tmp_path / "r" / "config.json").exists()
    (journal,) = (tmp_path / "r").glob(".partial-*/done.jsonl")
    done = [json.loads(line) for line in journal.read_text().splitlines()]
    assert len(done) == 6 and not list((tmp_path / "r").glob(".partial-*/*.tmp"))
    # the six finished files wrote straight into their rows of the preallocated images: no shard of their own
    assert all(r["row"] is not None for r in done)
    assert [p.name for p in (tmp_path / "r").glob(".partial-*/*.npy")] == ["images.npy"]
    monkeypatch.setattr(cache_mod, "render_planes", real)
    calls, real_job = [], cache_mod._render_job
    monkeypatch.setattr(cache_mod, "_render_job", lambda *a: calls.append(a[1]) or real_job(*a))
    resumed = render_dataset(fsdd_subset_csv, tmp_path / "r", small_config, progress=False)
    assert len(calls) == 60 - 6  # only the files not finished before the kill
    np.testing.assert_array_equal(resumed.images, full.images)
    pd.testing.assert_frame_equal(resumed.segments, full.segments)
    pd.testing.assert_frame_equal(resumed.files, full.files)
    assert not list((tmp_path / "r").glob(".partial-*"))


def test_parallel_workers_match_serial(fsdd_subset_csv, small_config, tmp_path):
    table = pd.read_csv(fsdd_subset_csv, dtype=str).iloc[:8]
    one = render_dataset(table, tmp_path / "one", small_config, progress=False)
    two = render_dataset(table, tmp_path / "two", small_config, workers=2, progress=False)
    np.testing.assert_array_equal(one.images, two.images)


# ------------------------------------------------------------------ bad input in a batch
def _batch(tmp_path):
    d = tmp_path / "audio"
    d.mkdir()
    sf.write(d / "good1.wav", tone(440), SR)
    sf.write(d / "good2.flac", tone(880, 2.0), SR)
    (d / "empty.wav").write_bytes(b"")
    (d / "garbage.wav").write_bytes(b"not audio" * 50)
    sf.write(d / "silent.wav", np.zeros(SR, np.float32), SR)
    nan = tone(440)
    nan[10] = np.nan
    sf.write(d / "nan.wav", nan, SR, subtype="FLOAT")
    rows = ["good1.wav", "empty.wav", "garbage.wav", "missing.wav", "silent.wav", "nan.wav", "good2.flac"]
    pd.DataFrame({"path": [f"audio/{r}" for r in rows], "label": ["a", "b", "a", "b", "a", "b", "b"]}).to_csv(
        tmp_path / "in.csv", index=False)
    return tmp_path / "in.csv"


def test_bad_files_are_listed_and_the_rest_rendered(tmp_path, small_config, caplog):
    csv = _batch(tmp_path)
    with caplog.at_level("WARNING", logger="specimg"):
        cache = render_dataset(csv, tmp_path / "c", small_config, progress=False)
    assert cache.files["path"].tolist() == ["audio/good1.wav", "audio/good2.flac"]
    errors = pd.read_csv(tmp_path / "c" / "errors.csv").set_index("path")["error"]
    assert errors["audio/empty.wav"].startswith("file is empty")
    assert "cannot be decoded" in errors["audio/garbage.wav"]
    assert "not found" in errors["audio/missing.wav"]
    assert "silent" in errors["audio/silent.wav"]
    assert "NaN" in errors["audio/nan.wav"]
    assert "5 file(s) could not be rendered" in caplog.text  # through logging (the CLI prints it)


def test_strict_stops_at_first_bad_file(tmp_path, small_config):
    csv = _batch(tmp_path)
    with pytest.raises(AudioError, match="empty.wav: file is empty.*--strict"):
        render_dataset(csv, tmp_path / "c", small_config, strict=True, progress=False)


def test_all_bad_is_an_error(tmp_path, small_config):
    (tmp_path / "x.wav").write_bytes(b"")
    pd.DataFrame({"path": ["x.wav"]}).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(DataError, match="No file could be rendered"):
        render_dataset(tmp_path / "in.csv", tmp_path / "c", small_config, progress=False)


def test_bad_options_fail_before_work(tmp_path, small_config):
    csv = _batch(tmp_path)
    with pytest.raises(ParameterError, match=r"--class-hop names label\(s\) \['zebra'\].*Known labels: a, b"):
        render_dataset(csv, tmp_path / "c",
                       small_config.replace(segment=SegmentConfig(seconds=1, hop=0.5, class_hop={"zebra": 1})))
    no_pad = small_config.replace(audio=AudioConfig(sample_rate=SR, pad_mode="none"),
                                  segment=SegmentConfig(seconds=5.0, hop=1.0))
    with pytest.raises(ParameterError, match="longer than every file.*pad_mode='tile'"):
        render_dataset(csv, tmp_path / "c", no_pad)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
    with pytest.raises(ParameterError, match="workers"):
        render_dataset(csv, tmp_path / "c", small_config, workers=0)


def test_changed_config_is_never_silently_reused(tmp_path, small_config):
    table = pd.DataFrame({"path": ["a.wav"], "label": ["x"]})
    sf.write(tmp_path / "a.wav", tone(440), SR)
    table["path"] = [str(tmp_path / "a.wav")]
    render_dataset(table, tmp_path / "c", small_config, progress=False)
    other = small_config.replace(spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=16,
                                                               image_size=(32, 48)))
    with pytest.raises(ParameterError, match="spectrogram.n_mels: 32 -> 16.*--overwrite"):
        render_dataset(table, tmp_path / "c", other, progress=False)
    cache = render_dataset(table, tmp_path / "c", other, overwrite=True, progress=False)
    assert cache.config.spectrogram.n_mels == 16


def test_open_errors(tmp_path):
    with pytest.raises(DataError, match="not a specimg image cache"):
        ImageCache.open(tmp_path)


# ------------------------------------------------------------------ CLI
def test_cli_render_csv_and_class_tree(fsdd_dir, tmp_path, capsys):
    tree = tmp_path / "tree"
    for digit in ("3", "7"):
        (tree / digit).mkdir(parents=True)
        for take in range(2):
            src = fsdd_dir / "recordings" / f"{digit}_theo_{take}.wav"
            (tree / digit / src.name).write_bytes(src.read_bytes())
    common = ["--sample-rate", "8000", "--seconds", "1", "--hop", "0.5", "--n-fft", "32ms", "--hop-length", "8ms",
              "--n-mels", "32", "--image-size", "32x48", "--quiet"]
    assert main(["render", str(tree), "--out", str(tmp_path / "c1"), "--png", *common]) == 0
    out = capsys.readouterr().out
    assert "rendered 4 file(s): " in out and "3 (2 files), 7 (2 files)" in out
    assert len(list((tmp_path / "c1" / "png" / "7").glob("*.png"))) == 2
    # the same command again renders nothing and says so; a new file is the only one rendered
    assert main(["render", str(tree), "--out", str(tmp_path / "c1"), "--png", *common]) == 0
    assert f"nothing to render: {tmp_path / 'c1'} already holds these 4 file(s), 4 image(s) of 32x48x3" in capsys.readouterr().out
    src = fsdd_dir / "recordings" / "7_theo_2.wav"
    (tree / "7" / src.name).write_bytes(src.read_bytes())
    assert main(["render", str(tree), "--out", str(tmp_path / "c1"), "--png", *common]) == 0
    out = capsys.readouterr().out
    assert "rendered 1 file(s) and reused 4 from the cache: 5 image(s)" in out and "7 (3 files)" in out
    assert ImageCache.open(tmp_path / "c1").reused_files == 0  # opened, not rendered by a call
    pd.DataFrame({"path": [f"tree/3/3_theo_{t}.wav" for t in range(2)], "label": ["3", "3"],
                  "group": ["theo", "theo"]}).to_csv(tmp_path / "in.csv", index=False)
    assert main(["render", str(tmp_path / "in.csv"), "--out", str(tmp_path / "c2"), *common]) == 0
    c2 = ImageCache.open(tmp_path / "c2")
    assert c2.files["group"].tolist() == ["theo", "theo"]
    assert c2.config.spectrogram.n_fft == 256 and c2.config.spectrogram.hop_length == 64


def test_cli_bad_option_exit_code(tmp_path, capsys):
    assert main(["render", str(tmp_path / "none.csv"), "--out", str(tmp_path / "c")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["render", str(tmp_path), "--out", str(tmp_path / "c"), "--class-hop", "oops"]) == 2
    assert "LABEL=SECONDS" in capsys.readouterr().err


# ------------------------------------------------------------------ two renders of one folder at once
_RENDER_CHILD = r"""
import hashlib, os, sys
from pathlib import Path
from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig
from specimg.spectrogram import render_dataset
cfg = RenderConfig(audio=AudioConfig(sample_rate=8000), segment=SegmentConfig(seconds=1.0, hop=0.5),
                   spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=32, image_size=(32, 48)))
Path(sys.argv[3]).touch()  # about to ask for the folder
cache = render_dataset(sys.argv[1], sys.argv[2], cfg, workers=2, progress=False)
images = Path(sys.argv[2]) / "images.npy"
print(len(cache.images), os.stat(images).st_ino, hashlib.sha256(images.read_bytes()).hexdigest())
"""


def test_renders_of_one_folder_wait_for_each_other_and_the_second_reuses_the_first(fsdd_subset_csv, tmp_path):
    """Two commands started side by side on one cache folder (two folds of one dataset, say): while one
    renders, the other waits on the folder's lock, then finds the finished cache and reuses it."""
    import subprocess
    import sys
    import time

    root = tmp_path / "cache"
    root.mkdir()
    children = []
    with cache_mod._folder_lock(root):  # held here: both children must wait for it
        for k in range(2):
            children.append(subprocess.Popen(
                [sys.executable, "-c", _RENDER_CHILD, str(fsdd_subset_csv), str(root), str(tmp_path / f"go{k}")],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"go{k}").exists() for k in range(2)) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        assert all(c.poll() is None for c in children)  # both blocked on the lock
        assert not (root / "images.npy").exists()
    outs = [c.communicate(timeout=300) for c in children]
    assert all(c.returncode == 0 for c in children), [o[1][-2000:] for o in outs]
    (n1, ino1, sha1), (n2, ino2, sha2) = [o[0].split() for o in outs]
    assert int(n1) == int(n2) > 0 and sha1 == sha2
    assert ino1 == ino2  # the second found the first's images.npy and left it as it was: rendered once
    assert sorted(p.name for p in root.iterdir()) == sorted(ImageCache.LAYOUT_FILES)  # no lock file left

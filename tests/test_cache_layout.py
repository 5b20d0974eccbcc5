"""The image cache's folder: one stored plane per image, old caches, rows written in place, select / concat."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import specimg.spectrogram._render as cache_mod
from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig
from specimg.data import SegmentDataset
from specimg.exceptions import DataError
from specimg.spectrogram import ImageCache, render_dataset, render_file

SR = 8000


@pytest.fixture(scope="module")
def rendered(fsdd_subset_csv, tmp_path_factory):
    """12 FSDD files rendered with the small config (one plane per image)."""
    cfg = RenderConfig(audio=AudioConfig(sample_rate=SR), segment=SegmentConfig(seconds=1.0, hop=0.5),
                       spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=32, image_size=(32, 48)))
    table = pd.read_csv(fsdd_subset_csv, dtype=str).iloc[:12]
    return render_dataset(table, tmp_path_factory.mktemp("c") / "c", cfg, progress=False), table, cfg


# ------------------------------------------------------------------ one plane stored, three channels read
def test_replicated_channels_are_stored_once_and_read_as_three(rendered):
    cache, table, cfg = rendered
    stored = np.load(cache.root / "images.npy", mmap_mode="r")
    assert stored.shape == (len(cache.segments), 32, 48) and cache.images.planes == 1  # a third of the bytes
    assert json.loads((cache.root / "config.json").read_text())["stored_planes"] == 1
    images = np.asarray(cache.images)
    assert images.shape == cache.images.shape == (len(stored), 32, 48, 3) and images.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(images[..., c], stored)
    # what render_file gives for the first file is what the cache holds for it
    want, _, _ = render_file(table["path"].iloc[0], config=cfg)
    np.testing.assert_array_equal(cache.images[: len(want)], want)


def test_image_array_indexing(rendered):
    cache = rendered[0]
    images, full = cache.images, np.asarray(rendered[0].images)
    n = len(images)
    np.testing.assert_array_equal(images[3], full[3])
    np.testing.assert_array_equal(images[-1], full[-1])
    np.testing.assert_array_equal(images[2:7], full[2:7])
    np.testing.assert_array_equal(images[[5, 1, 5]], full[[5, 1, 5]])
    mask = np.arange(n) % 3 == 0
    np.testing.assert_array_equal(images[mask], full[mask])
    np.testing.assert_array_equal(images[4, :, :, 1], full[4, :, :, 1])
    assert sum(1 for _ in images) == n
    with pytest.raises(IndexError, match="out of bounds"):
        images[n]
    with pytest.raises(IndexError, match="boolean mask"):
        images[np.ones(n + 1, bool)]


def test_image_array_pickles_as_its_file_name(rendered):
    images = rendered[0].images
    blob = pickle.dumps(images)
    assert len(blob) < 2000 < images.stored.nbytes  # the file's name, not its pixels
    np.testing.assert_array_equal(pickle.loads(blob)[:], images[:])


def test_segment_dataset_and_loader_workers_read_three_channels(rendered):
    import torch

    cache = rendered[0]
    ds = SegmentDataset(cache.images, normalize=False)
    x, _ = ds[2]
    assert x.shape == (3, 32, 48) and x.dtype == torch.uint8
    np.testing.assert_array_equal(x.permute(1, 2, 0).numpy(), np.asarray(cache.images[2]))
    loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2)
    batches = torch.cat([b for b, _ in loader])
    np.testing.assert_array_equal(batches.permute(0, 2, 3, 1).numpy(), np.asarray(cache.images))


def test_delta_channels_are_stored_as_three(fsdd_subset_csv, tmp_path, rendered):
    cfg = rendered[2].replace(spectrogram=rendered[2].spectrogram.replace(channels="delta"))
    table = pd.read_csv(fsdd_subset_csv, dtype=str).iloc[:3]
    cache = render_dataset(table, tmp_path / "d", cfg, progress=False)
    assert np.load(tmp_path / "d" / "images.npy", mmap_mode="r").ndim == 4 and cache.images.planes == 3
    want, _, _ = render_file(table["path"].iloc[0], config=cfg)
    np.testing.assert_array_equal(cache.images[: len(want)], want)
    assert not np.array_equal(want[..., 0], want[..., 1])


def _as_old_layout(cache: ImageCache, root):
    """The same cache as the previous version wrote it: (n, H, W, 3) images.npy, no 'layout' in config.json."""
    root.mkdir()
    np.save(root / "images.npy", np.asarray(cache.images))
    for name in ("segments.csv", "files.csv", "errors.csv"):
        (root / name).write_bytes((cache.root / name).read_bytes())
    meta = json.loads((cache.root / "config.json").read_text())
    meta.pop("layout"), meta.pop("stored_planes")
    meta["image_shape"] = list(cache.images.shape[1:])
    (root / "config.json").write_text(json.dumps(meta))
    return root


def test_caches_of_the_previous_layout_open_and_grow(rendered, tmp_path, monkeypatch):
    cache, table, cfg = rendered
    old_root = _as_old_layout(cache, tmp_path / "old")
    old = ImageCache.open(old_root)
    assert old.images.planes == 3 and old.images.shape == cache.images.shape
    np.testing.assert_array_equal(old.images, cache.images)
    ds = SegmentDataset(old.images, normalize=False)
    np.testing.assert_array_equal(ds[5][0].permute(1, 2, 0).numpy(), cache.images[5])
    # adding files to an old cache renders only the new ones and rewrites it in the one-plane layout
    calls, real = [], cache_mod._render_job
    monkeypatch.setattr(cache_mod, "_render_job", lambda *a: calls.append(a[1]) or real(*a))
    grown = render_dataset(pd.concat([table, _two_more(table, tmp_path)]), old_root, cfg, progress=False)
    assert len(calls) == 2 and grown.images.planes == 1 and len(grown.files) == len(table) + 2
    np.testing.assert_array_equal(grown.images[: len(cache.images)], cache.images)


def _two_more(table: pd.DataFrame, tmp_path) -> pd.DataFrame:
    rows = []
    for i, f in enumerate((440.0, 880.0)):
        t = np.arange(int(1.5 * SR)) / SR
        path = tmp_path / f"tone{i}.wav"
        sf.write(path, (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32), SR)
        rows.append({"path": str(path), "label": table["label"].iloc[0], "speaker": "tone"})
    return pd.DataFrame(rows)


def test_a_cache_of_an_unknown_layout_is_refused_with_the_fix(rendered, tmp_path):
    root = _as_old_layout(rendered[0], tmp_path / "future")
    meta = json.loads((root / "config.json").read_text())
    (root / "config.json").write_text(json.dumps({**meta, "layout": 99}))
    with pytest.raises(DataError, match="layout 99.*--overwrite"):
        ImageCache.open(root)


def test_is_complete(rendered, tmp_path):
    assert ImageCache.is_complete(rendered[0].root)
    assert not ImageCache.is_complete(tmp_path)
    root = _as_old_layout(rendered[0], tmp_path / "x")
    assert ImageCache.is_complete(root)
    (root / "images.npy").unlink()
    assert not ImageCache.is_complete(root)  # a config.json alone is not a cache
    root = _as_old_layout(rendered[0], tmp_path / "y")
    meta = json.loads((root / "config.json").read_text())
    (root / "config.json").write_text(json.dumps({**meta, "complete": False}))
    assert not ImageCache.is_complete(root)
    (root / "config.json").write_text("{not json")
    assert not ImageCache.is_complete(root)


# ------------------------------------------------------------------ rows written in place
def test_workers_write_their_rows_in_place_and_no_copy_is_made(rendered, tmp_path, monkeypatch):
    table, cfg = rendered[1], rendered[2]
    writes = []
    real = cache_mod._write_npy
    monkeypatch.setattr(cache_mod, "_write_npy", lambda *a: writes.append(a[0]) or real(*a))
    two = render_dataset(table, tmp_path / "two", cfg, workers=2, progress=False)
    assert writes == []  # the partial images.npy the workers filled became the cache's
    np.testing.assert_array_equal(two.images, rendered[0].images)
    pd.testing.assert_frame_equal(two.segments, rendered[0].segments)


def test_a_file_longer_than_its_header_says_gets_a_shard_and_the_same_cache(rendered, tmp_path, monkeypatch):
    table, cfg = rendered[1], rendered[2]
    real = cache_mod.expected_windows
    lie = table["path"].iloc[4]
    monkeypatch.setattr(cache_mod, "expected_windows",
                        lambda p, c, l: real(p, c, l) + 1 if str(p) == lie else real(p, c, l))
    cache = render_dataset(table, tmp_path / "c", cfg, progress=False)
    np.testing.assert_array_equal(cache.images, rendered[0].images)
    pd.testing.assert_frame_equal(cache.files, rendered[0].files)
    monkeypatch.setattr(cache_mod, "expected_windows", lambda p, c, l: -1)  # no header says anything
    cache = render_dataset(table, tmp_path / "d", cfg, progress=False)
    np.testing.assert_array_equal(cache.images, rendered[0].images)


def test_expected_windows_match_the_render(rendered, fsdd_dir, tmp_path):
    cfg = rendered[2]
    for p in rendered[1]["path"]:
        assert cache_mod.expected_windows(p, cfg, None) == len(render_file(p, config=cfg)[0])
    # a file at another rate is resampled (ceil(n * rate / sr) samples), an offset and a duration are kept
    y = np.random.default_rng(0).standard_normal(int(3.3 * 44100)).astype(np.float32) * 0.1
    sf.write(tmp_path / "a.wav", y, 44100)
    for audio in (AudioConfig(sample_rate=SR), AudioConfig(sample_rate=SR, offset=0.7, duration=2.1),
                  AudioConfig(sample_rate=SR, min_seconds=5.0), AudioConfig(sample_rate=22050, pad_mode="none")):
        c = cfg.replace(audio=audio, segment=SegmentConfig(seconds=1.0, hop=0.3))
        assert cache_mod.expected_windows(tmp_path / "a.wav", c, None) == len(render_file(tmp_path / "a.wav",
                                                                                           config=c)[0])
    assert cache_mod.expected_windows(tmp_path / "missing.wav", cfg, None) == -1


def test_png_copies_are_grayscale_images_of_the_cache(rendered, tmp_path):
    from PIL import Image

    table, cfg = rendered[1].iloc[:2], rendered[2]
    cache = render_dataset(table, tmp_path / "p", cfg, png=True, progress=False)
    pngs = sorted((tmp_path / "p" / "png").rglob("*.png"))
    assert len(pngs) == len(cache.images)
    first = Image.open(pngs[0])
    assert first.mode == "L" and first.size == (48, 32)
    np.testing.assert_array_equal(np.asarray(first), cache.images[0][..., 0])


# ------------------------------------------------------------------ select / concat / save
def test_select_by_ids_or_mask(rendered):
    cache = rendered[0]
    ids = cache.files["file_id"].to_numpy()[[1, 4, 7]]
    sub = cache.select(ids)
    assert sub.root is None and sub.files["file_id"].tolist() == ids.tolist() and sub.classes == cache.classes
    rows = np.flatnonzero(cache.segments["file_id"].isin(ids))
    assert len(sub) == len(rows) == len(sub.segments)
    np.testing.assert_array_equal(sub.images, np.asarray(cache.images)[rows])
    same = cache.select(cache.files["file_id"].isin(ids).to_numpy())
    np.testing.assert_array_equal(same.images, sub.images)
    pd.testing.assert_frame_equal(same.segments, sub.segments)
    with pytest.raises(DataError, match=r"file id\(s\) \[999\] are not in the cache"):
        cache.select([1, 999])
    with pytest.raises(DataError, match="one entry per file"):
        cache.select(np.ones(3, bool))


def test_select_then_concat_round_trips(rendered, tmp_path):
    cache = rendered[0]
    ids = cache.files["file_id"].to_numpy()
    a, b = cache.select(ids[:5]), cache.select(ids[5:])
    again = a.concat(b, out=tmp_path / "again")
    assert again.root == tmp_path / "again" and ImageCache.is_complete(again.root)
    np.testing.assert_array_equal(again.images, cache.images)
    pd.testing.assert_frame_equal(again.segments, cache.segments)
    pd.testing.assert_frame_equal(again.files, cache.files)
    assert again.classes == cache.classes and again.images.planes == 1
    saved = a.save(tmp_path / "a")
    np.testing.assert_array_equal(saved.images, a.images)
    pd.testing.assert_frame_equal(saved.files, a.files)


def test_concat_shifts_file_ids_and_relabels(rendered, tmp_path):
    """The pseudo-label round: the training cache plus some test files with new labels and a 'pseudo' flag."""
    cache = rendered[0]
    test = cache.select(cache.files["file_id"].to_numpy()[[2, 5, 9]])
    test.files = test.files.assign(label="new", pseudo=True)
    merged = cache.concat(test, out=tmp_path / "m")
    n_files = len(cache.files)
    assert merged.files["file_id"].tolist() == list(range(n_files)) + [n_files, n_files + 1, n_files + 2]
    assert merged.files["label"].tolist()[-3:] == ["new"] * 3 and "new" in merged.classes
    assert merged.files["pseudo"].tolist()[-3:] == [True] * 3
    assert len(merged.images) == len(cache.images) + len(test.images)
    np.testing.assert_array_equal(merged.images[len(cache.images):], test.images)
    np.testing.assert_array_equal(merged.images[:len(cache.images)], cache.images)
    pd.testing.assert_frame_equal(merged.segments.iloc[:len(cache.segments)], cache.segments)
    tail = merged.segments.iloc[len(cache.segments):]
    assert tail["file_id"].tolist() == [n_files + i for i, n in enumerate(test.files["n_segments"]) for _ in range(n)]
    assert (merged.files["n_segments"] == merged.segments.groupby("file_id").size().to_numpy()).all()


def test_concat_refuses_caches_of_another_config(rendered, tmp_path):
    cache = rendered[0]
    other = ImageCache(None, cache.config.replace(spectrogram=cache.config.spectrogram.replace(n_mels=16)),
                       cache.images, cache.segments, cache.files, cache.classes)
    with pytest.raises(DataError, match="different configs.*n_mels: 32 -> 16"):
        cache.concat(other, out=tmp_path / "x")


def test_from_arrays_keeps_three_channels_only_when_they_differ(tmp_path, rng):
    planes = rng.integers(0, 256, (4, 16, 20), dtype=np.uint8)
    same = np.repeat(planes[..., None], 3, axis=-1)
    segs = pd.DataFrame({"file_id": [0, 0, 1, 1], "segment": [0, 1, 0, 1]})
    files = pd.DataFrame({"file_id": [0, 1], "path": ["a", "b"], "label": ["x", "y"]})
    one = ImageCache.from_arrays(tmp_path / "one", same, segs, files)
    assert one.images.planes == 1 and np.load(tmp_path / "one" / "images.npy").shape == (4, 16, 20)
    np.testing.assert_array_equal(one.images, same)
    differ = same.copy()
    differ[2, 3, 4, 1] ^= 1
    three = ImageCache.from_arrays(tmp_path / "three", differ, segs, files)
    assert three.images.planes == 3
    np.testing.assert_array_equal(three.images, differ)


def test_clear_removes_the_cache_files_only(rendered, tmp_path):
    root = _as_old_layout(rendered[0], tmp_path / "c")
    (root / "notes.txt").write_text("mine")
    (root / "png").mkdir()
    ImageCache.clear(root)
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]


def test_the_layout_names_are_the_files_written(rendered):
    root = rendered[0].root
    assert sorted(p.name for p in root.iterdir()) == sorted(ImageCache.LAYOUT_FILES)
    assert (root / ImageCache.IMAGES_FILE).is_file() and (root / ImageCache.ERRORS_FILE).is_file()


def test_a_full_disk_is_a_clear_error_before_any_work(rendered, tmp_path, monkeypatch):
    import errno
    import os

    def full(fd, offset, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    calls, real = [], cache_mod._render_job
    monkeypatch.setattr(cache_mod, "_render_job", lambda *a: calls.append(a[1]) or real(*a))
    with pytest.raises(DataError, match=r"Not enough disk space for the image cache.*MiB.*another --out"):
        render_dataset(rendered[1], tmp_path / "c", rendered[2], progress=False)
    assert calls == [] and not (tmp_path / "c" / "config.json").exists()


def test_a_record_cut_by_a_kill_is_not_a_record(rendered, tmp_path, monkeypatch):
    table, cfg = rendered[1], rendered[2]
    real, n = cache_mod.render_planes, []

    def dies(*a, **k):
        n.append(1)
        if len(n) == 5:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(cache_mod, "render_planes", dies)
    with pytest.raises(KeyboardInterrupt):
        render_dataset(table, tmp_path / "c", cfg, progress=False)
    (journal,) = (tmp_path / "c").glob(".partial-*/done.jsonl")
    assert len(journal.read_text().splitlines()) == 4
    with open(journal, "a") as fh:  # the kill came in the middle of the fifth line
        fh.write('{"path": "%s", "label": "x", "bou' % table["path"].iloc[4])
    monkeypatch.setattr(cache_mod, "render_planes", real)
    calls, real_job = [], cache_mod._render_job
    monkeypatch.setattr(cache_mod, "_render_job", lambda *a: calls.append(a[1]) or real_job(*a))
    cache = render_dataset(table, tmp_path / "c", cfg, progress=False)
    assert calls == list(table["path"].iloc[4:])
    np.testing.assert_array_equal(cache.images, rendered[0].images)
    pd.testing.assert_frame_equal(cache.files, rendered[0].files)

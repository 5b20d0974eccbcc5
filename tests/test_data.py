"""Datasets, transforms and file-grouped folds (specimg.data)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from specimg.data import IMAGENET_MEAN, IMAGENET_STD, SegmentDataset, file_folds, spectrogram_transforms
from specimg.exceptions import DataError, ParameterError


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _files(n_per_class=6, classes=("a", "b", "c"), speakers=3):
    rows = []
    for c in classes:
        for j in range(n_per_class):
            rows.append({"path": f"{c}/{j}.wav", "label": c, "speaker": f"s{j % speakers}"})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- folds
def test_folds_keep_files_and_groups_together():
    files = _files(n_per_class=6, speakers=6)
    folds = file_folds(files, n_splits=3, group_column="speaker", seed=1)
    assert folds.shape == (len(files),) and set(folds) == {0, 1, 2}
    for _, g in files.groupby("speaker"):  # a speaker is never in two folds
        assert len(set(folds[g.index])) == 1
    for k in range(3):  # stratified: every class is validated in every fold
        assert set(files["label"][folds == k]) == {"a", "b", "c"}
    np.testing.assert_array_equal(folds, file_folds(files, n_splits=3, group_column="speaker", seed=1))


def test_folds_by_file_are_balanced():
    files = _files(n_per_class=5)
    folds = file_folds(files, n_splits=5, seed=0)
    assert np.bincount(folds).tolist() == [3] * 5
    assert set(file_folds(files, n_splits=5, stratify=False)) == set(range(5))


def test_pseudo_rows_are_never_validated():
    files = _files(n_per_class=4)
    files["pseudo"] = [i % 3 == 0 for i in range(len(files))]
    folds = file_folds(files, n_splits=2, seed=0)
    assert (folds[files["pseudo"].to_numpy()] == -1).all()
    assert (folds[~files["pseudo"].to_numpy()] >= 0).all()
    # strings from a CSV count too
    files["pseudo"] = np.where(files["pseudo"], "True", "False")
    assert (file_folds(files, n_splits=2)[files["pseudo"] == "True"] == -1).all()


@pytest.mark.parametrize(
    "make, kwargs, exc, match",
    [
        (lambda f: f.assign(label="a"), {"n_splits": 2}, DataError, "at least 2 classes"),
        (lambda f: f.iloc[[0, 1, 2, 6, 7, 8, 12]], {"n_splits": 3}, DataError, r"'c' \(1 file\).*fewer files"),
        (lambda f: f, {"n_splits": 4, "group_column": "speaker"}, ParameterError, "only 3 values of 'speaker'"),
        (lambda f: f, {"n_splits": 2, "group_column": "patient"}, ParameterError,
         r"'patient'.*Available columns: \['path', 'label', 'speaker'\]"),
        (lambda f: f.assign(label=[None] + list(f["label"][1:])), {"n_splits": 2}, DataError, "have no label"),
        (lambda f: f, {"n_splits": 1}, ParameterError, "n_splits"),
    ],
)
def test_fold_errors(make, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        file_folds(make(_files()), **kwargs)


# ----------------------------------------------------------------------------- dataset
def test_dataset_shapes_and_normalisation():
    images = np.zeros((5, 16, 24, 3), dtype=np.uint8)
    images[..., 0], images[..., 1], images[..., 2] = 0, 128, 255
    ds = SegmentDataset(images, np.arange(5) % 2, rows=np.array([1, 4]), file_ids=np.arange(5) // 2)
    assert len(ds) == 2 and ds.targets.tolist() == [1, 0] and ds.file_ids.tolist() == [0, 2]
    x, y = ds[1]
    assert x.shape == (3, 16, 24) and x.dtype == torch.float32 and y == 0
    expect = [(v / 255 - m) / s for v, m, s in zip((0, 128, 255), IMAGENET_MEAN, IMAGENET_STD)]
    np.testing.assert_allclose(x.mean((1, 2)).numpy(), expect, rtol=1e-5)
    x2, _ = SegmentDataset(images, mean=(0.5,) * 3, std=(0.5,) * 3)[0]
    np.testing.assert_allclose(x2[2].numpy(), 1.0)  # 255 -> (1 - 0.5) / 0.5


def test_dataset_flip_resize_and_mask(rng):
    images = rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    plain = SegmentDataset(images)
    flipped = SegmentDataset(images, transform=spectrogram_transforms(train=True, hflip=1.0))
    torch.testing.assert_close(flipped[2][0], plain[2][0].flip(2))  # time reversed
    resized = SegmentDataset(images, transform=spectrogram_transforms(train=False, image_size=(16, 24),
                                                                      cache_size=(32, 32)))
    assert resized[0][0].shape == (3, 16, 24)
    assert spectrogram_transforms(train=False, image_size=(32, 32), cache_size=(32, 32)) is None

    bright = np.full((1, 32, 32, 3), 200, dtype=np.uint8)
    tf = spectrogram_transforms(train=True, hflip=0.0, time_mask=0.2, cache_size=(32, 32))
    ds = SegmentDataset(bright, transform=tf, mean=(0, 0, 0), std=(1, 1, 1))
    masked = 0
    for epoch in range(20):
        ds.set_epoch(epoch)
        x = ds[0][0]
        zero_cols = (x == 0).all(dim=(0, 1))  # (W,) columns masked over the full height
        assert int((x == 0).sum()) == 3 * 32 * int(zero_cols.sum())  # nothing else is masked
        assert zero_cols.sum() <= 2 * round(0.2 * 32)  # at most n_masks stripes of the largest width
        masked += bool(zero_cols.any())
    assert 3 <= masked <= 17  # the mask fires with p=0.5


def test_augmentation_is_seeded_per_epoch_and_row(rng):
    images = rng.integers(0, 255, (8, 16, 16, 3), dtype=np.uint8)
    tf = spectrogram_transforms(train=True, hflip=0.5, time_mask=0.3, freq_mask=0.3, cache_size=(16, 16))
    a = SegmentDataset(images, transform=tf, seed=3)
    b = SegmentDataset(images, transform=tf, seed=3)
    batch = lambda ds: torch.stack([ds[i][0] for i in range(len(ds))])  # noqa: E731
    torch.testing.assert_close(batch(a), batch(b))
    # order does not matter: item 5 alone equals item 5 in the batch
    torch.testing.assert_close(b[5][0], batch(a)[5])
    a.set_epoch(1)
    assert not torch.equal(batch(a), batch(b))


def test_memmap_reopened_in_workers(tmp_path, rng):
    images = rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    mm = np.load(tmp_path / "images.npy", mmap_mode="r")
    ds = SegmentDataset(mm, np.arange(6) % 2)
    state = pickle.dumps(ds)
    assert len(state) < images.nbytes  # the pixels do not travel (spawned workers map the file)
    clone = pickle.loads(state)
    torch.testing.assert_close(clone[4][0], ds[4][0])
    serial = torch.cat([x for x, _ in DataLoader(ds, batch_size=3)])
    parallel = torch.cat([x for x, _ in DataLoader(ds, batch_size=3, num_workers=1)])
    torch.testing.assert_close(serial, parallel)


def test_dataset_rejects_bad_images():
    with pytest.raises(DataError, match=r"shape \(n, H, W, 3\) and dtype uint8"):
        SegmentDataset(np.zeros((2, 8, 8), dtype=np.uint8))
    with pytest.raises(ParameterError, match="hflip"):
        spectrogram_transforms(train=True, hflip=2.0)


def test_spectrogram_stretch_is_anchored_at_the_lowest_frequency():
    from specimg.data._transforms import SpectrogramStretch

    img = np.zeros((40, 30, 3), np.uint8)
    img[-1] = 255  # 0 Hz: the bottom row
    img[-11] = 100  # a partial 10 rows above it
    t = SpectrogramStretch(freq=0.5, time=0.0)
    up = t.apply(img, fy=1.5)
    assert up.shape == img.shape and up[-1, 0, 0] > 200  # 0 Hz stays at the bottom
    rows = np.flatnonzero(up[:, 0, 0] >= 60)
    assert abs((39 - rows[rows < 35]).mean() - 15) <= 1.0  # the partial moved up by 1.5x
    down = t.apply(img, fy=0.5)
    assert down[:20].max() == 0  # the top is filled with silence
    wide = SpectrogramStretch(freq=0.0, time=0.5).apply(img, fx=0.5)
    assert wide[:, 15:].max() == 0 and wide[-1, :15].min() > 200


def test_pseudo_rows_of_a_validation_speaker_stay_out_of_its_training_split():
    from specimg.data import file_folds, pseudo_leaks

    files = pd.DataFrame({
        "path": [f"f{i}.wav" for i in range(16)],
        "label": ["a", "b"] * 8,
        "speaker": ["s0", "s0", "s1", "s1", "s2", "s2", "s3", "s3"] * 2,
        "pseudo": [False] * 12 + [True] * 4,
    })
    folds = file_folds(files, n_splits=2, group_column="speaker", seed=0)
    assert (folds[12:] == -1).all()
    for k in range(2):
        leaks = pseudo_leaks(files, folds, k, "speaker")
        val_speakers = set(files["speaker"][folds == k])
        expected = files["pseudo"].to_numpy() & files["speaker"].isin(val_speakers).to_numpy()
        np.testing.assert_array_equal(leaks, expected)
        assert leaks.any() and not leaks[:12].any()
    assert not pseudo_leaks(files, folds, 0, None).any()  # grouped by file: a pseudo file is never validated

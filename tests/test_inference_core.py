"""One inference core: what training validates is what Predictor predicts is what the exported graph computes.

A run is trained on real FSDD (3 speakers, speaker folds) with a backbone whose cached images are resized
on the way in (32x48 cache -> 40x40 model input), flip TTA on. For each fold, the out-of-fold window and file
probabilities written by ``train_cv`` (the trainer's validation pass) must equal ``Predictor`` with that
fold's model on the same audio, and the exported ONNX graph of that fold on the same images, to 1e-5.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from specimg.config import TrainConfig
from specimg.data import PixelNormalize, spectrogram_transforms
from specimg.models import Ensemble
from specimg.predict import Predictor, export_run
from specimg.spectrogram import render_dataset
from specimg.training import train_cv


@pytest.fixture(scope="module")
def trained(fsdd_subset_csv, tiny_backbone, tmp_path_factory):
    from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig

    small_config = RenderConfig(audio=AudioConfig(sample_rate=8000), segment=SegmentConfig(seconds=1.0, hop=0.5),
                                spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=32,
                                                              image_size=(32, 48)))
    root = tmp_path_factory.mktemp("core")
    cache = render_dataset(fsdd_subset_csv, root / "cache", small_config, progress=False)
    cfg = TrainConfig().with_options(backbone=tiny_backbone, weights="none", epochs=2, batch_size=16, n_splits=3,
                      group_column="speaker", device="cpu", image_size=(40, 40), tta="flip", hflip=0.5,
                      time_mask=0.1)
    result = train_cv(cache, root / "run", cfg, verbose=False)
    return cache, result, root


def test_ensemble_is_normalise_flip_softmax_mean():
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 6, 5)) for _ in range(2)]
    x = torch.randint(0, 256, (7, 3, 4, 6), dtype=torch.uint8)
    norm = PixelNormalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    mean = torch.tensor([0.5, 0.4, 0.3]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).reshape(1, 3, 1, 1)
    z = (x.float() / 255 - mean) / std
    by_hand = sum(0.5 * (n(z).softmax(1) + n(z.flip(3)).softmax(1)) for n in nets) / 2
    got = Ensemble(nets, normalize=norm, tta="flip")(x)
    torch.testing.assert_close(got, by_hand, atol=1e-6, rtol=0)
    sig = Ensemble(nets, normalize=norm, tta="none", activation="sigmoid")(x)
    torch.testing.assert_close(sig, sum(n(z).sigmoid() for n in nets) / 2, atol=1e-6, rtol=0)
    assert not torch.allclose(sig.sum(1), torch.ones(7))  # independent tags, not a distribution


def test_oof_equals_predictor_equals_onnx(trained, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    cache, result, root = trained
    run = result.run_dir
    classes = result.classes
    cols = [f"prob_{c}" for c in classes]
    oof_files, oof_seg = result.oof_files, result.oof_segments
    assert len(oof_files) == len(cache.files) and oof_files[cols].notna().all().all()
    resize = spectrogram_transforms(train=False, image_size=(40, 40), cache_size=(32, 48))
    files = cache.files.set_index("path")
    seg = cache.segments.assign(path=cache.segments["file_id"].map(dict(zip(cache.files["file_id"],
                                                                             cache.files["path"]))))
    for k in range(3):
        fold_files = oof_files[oof_files["fold"] == k]
        assert len(fold_files) > 0
        # Predictor with fold k's model on the audio of fold k's files (rendered again, not read from the cache)
        pred = Predictor.from_run(run, folds=[k], device="cpu", tta="flip")
        table = pd.DataFrame({"path": files.loc[fold_files["path"], "abspath"].to_numpy(),
                              "label": fold_files["label"].to_numpy()})
        got = pred.predict(table, progress=False, segments=True)
        np.testing.assert_allclose(got.files[cols].to_numpy(), fold_files[cols].to_numpy(), atol=1e-5, rtol=0)
        # the exported graph of fold k on the cached windows of those files, resized as in training
        (onnx_path,) = export_run(run, tmp_path / f"fold{k}.onnx", folds=[k], tta=True)
        rows = np.flatnonzero(seg["path"].isin(fold_files["path"]).to_numpy())
        images = np.stack([resize(image=np.asarray(cache.images[r]))["image"] for r in rows])
        x = images.transpose(0, 3, 1, 2).astype(np.float32)
        onnx_probs = ort.InferenceSession(str(onnx_path)).run(None, {"images": x})[0]
        oof_k = oof_seg[oof_seg["fold"] == k]
        key = list(zip(seg["path"].to_numpy()[rows], seg["segment"].to_numpy()[rows]))
        want = oof_k.set_index(["path", "segment"]).loc[key, cols].to_numpy()
        np.testing.assert_allclose(onnx_probs, want, atol=1e-5, rtol=0)
        # and Predictor's window probabilities are the same windows
        got_seg = got.segments.set_index(["path", "segment"])
        abs_to_rel = dict(zip(files["abspath"], files.index))
        got_seg.index = pd.MultiIndex.from_tuples([(abs_to_rel.get(p, p), s) for p, s in got_seg.index])
        np.testing.assert_allclose(got_seg.loc[key, cols].to_numpy(), want, atol=1e-5, rtol=0)


def test_core_differs_without_tta(trained):
    """The check above can fail: the same run predicted without flip TTA gives other probabilities."""
    cache, result, _ = trained
    cols = [f"prob_{c}" for c in result.classes]
    fold0 = result.oof_files[result.oof_files["fold"] == 0]
    files = cache.files.set_index("path")
    table = pd.DataFrame({"path": files.loc[fold0["path"], "abspath"].to_numpy()})
    got = Predictor.from_run(result.run_dir, folds=[0], device="cpu", tta="none").predict(table, progress=False)
    assert np.abs(got.files[cols].to_numpy() - fold0[cols].to_numpy()).max() > 1e-4

"""Prediction: flip TTA and aggregation against hand-computed answers, real-audio runs, evaluate, export parity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from torch import nn

from specimg.cli import main
from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig, TrainConfig
from specimg.exceptions import DataError, ParameterError
from specimg.predict import Predictor, evaluate_predictions, export_run
from specimg.training import Run
from specimg.spectrogram import render_dataset

SR = 8000
CFG = RenderConfig(audio=AudioConfig(sample_rate=SR), segment=SegmentConfig(seconds=1.0, hop=0.5),
                   spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=32, image_size=(32, 48)))


class HalfMeans(nn.Module):
    """Logits = (mean of the left half, mean of the right half): a flip swaps them."""

    def forward(self, x):  # (B, 3, H, W)
        w = x.shape[3] // 2
        return torch.stack([x[..., :w].mean((1, 2, 3)), x[..., w:].mean((1, 2, 3))], 1)  # (B, 2)


def _predictor(tta, aggregate="mean"):
    return Predictor([HalfMeans()], classes=["left", "right"], render_config=CFG, mean=(0, 0, 0), std=(1, 1, 1),
                     input_size=(3, 32, 48), device="cpu", tta=tta, aggregate=aggregate)


def _images():
    im = np.zeros((2, 32, 48, 3), np.uint8)
    im[0, :, :24] = 255  # bright left half
    im[1, :, 24:] = 51  # dim right half
    return im


def test_flip_tta_against_hand_computed():
    im = _images()
    # without TTA: softmax([1, 0]) and softmax([0, 0.2]) (pixels / 255 with mean 0, std 1)
    p = _predictor("none").predict_images(im)
    e = np.exp
    np.testing.assert_allclose(p[0], [e(1) / (e(1) + 1), 1 / (e(1) + 1)], rtol=1e-5)
    np.testing.assert_allclose(p[1], [1 / (1 + e(0.2)), e(0.2) / (1 + e(0.2))], rtol=1e-5)
    # with flip TTA: the flip swaps the halves, so the average is exactly [0.5, 0.5]
    np.testing.assert_allclose(_predictor("flip").predict_images(im), 0.5, rtol=1e-6)


def test_file_aggregation_mean_max_gmean():
    im = _images()
    wp = _predictor("none").predict_images(im)
    mean = _predictor("none", "mean")._pool(wp)
    np.testing.assert_allclose(mean, wp.mean(0), rtol=1e-6)
    mx = _predictor("none", "max")._pool(wp)
    np.testing.assert_allclose(mx, wp.max(0) / wp.max(0).sum(), rtol=1e-6)
    g = np.exp(np.log(wp).mean(0))
    np.testing.assert_allclose(_predictor("none", "gmean")._pool(wp), g / g.sum(), rtol=1e-5)


def test_predictor_bad_options():
    with pytest.raises(ParameterError, match="'tta'"):
        _predictor("rotate")
    with pytest.raises(ParameterError, match="'aggregate'"):
        _predictor("flip", "median")


# ------------------------------------------------------------------ a small trained run on real FSDD audio
@pytest.fixture(scope="module")
def run(fsdd_subset_csv, tmp_path_factory):
    from specimg.training import train_cv

    root = tmp_path_factory.mktemp("run")
    cache = render_dataset(fsdd_subset_csv, root / "cache", CFG, progress=False)
    cfg = TrainConfig().with_options(backbone="test_resnet", weights="none", epochs=1, n_splits=3, group_column="speaker",
                      batch_size=32, device="cpu", image_size=(32, 48))
    train_cv(cache, root / "run", cfg, verbose=False)
    return root / "run"


def test_predict_audio_equals_predict_cache(run, fsdd_subset_csv):
    pred = Predictor.from_run(run, device="cpu")
    assert len(pred.models) == 3
    from_audio = pred.predict(fsdd_subset_csv, progress=False, segments=True)
    from_cache = pred.predict(run.parent / "cache", progress=False)
    assert len(from_audio.files) == 60 and from_audio.errors.empty
    cols = [f"prob_{c}" for c in pred.classes]
    np.testing.assert_allclose(from_audio.files[cols].to_numpy(), from_cache.files[cols].to_numpy(), atol=1e-6)
    np.testing.assert_allclose(from_audio.files[cols].sum(axis=1), 1.0, atol=1e-5)
    # the file answer is the mean of its windows
    seg = from_audio.segments
    first = from_audio.files["path"].iloc[0]
    np.testing.assert_allclose(seg[seg["path"] == first][cols].mean().to_numpy(),
                               from_audio.files[cols].iloc[0].to_numpy(), atol=1e-6)


def test_other_rate_long_and_bad_files(run, fsdd_dir, tmp_path):
    import librosa

    y, _ = sf.read(fsdd_dir / "recordings" / "3_theo_0.wav", dtype="float32")
    sf.write(tmp_path / "hi_rate.wav", librosa.resample(y, orig_sr=8000, target_sr=44100), 44100)
    long = np.concatenate([y] * 10)  # several seconds: covered to the end
    sf.write(tmp_path / "long.wav", long, 8000)
    (tmp_path / "broken.wav").write_bytes(b"nope" * 20)
    pd.DataFrame({"path": ["hi_rate.wav", "long.wav", "broken.wav"]}).to_csv(tmp_path / "in.csv", index=False)
    pred = Predictor.from_run(run, device="cpu")
    res = pred.predict(tmp_path / "in.csv", segments=True, progress=False)
    assert res.files["path"].tolist() == ["hi_rate.wav", "long.wav"]
    assert res.errors["path"].tolist() == ["broken.wav"] and "cannot be decoded" in res.errors["error"].iloc[0]
    ends = res.segments[res.segments["path"] == "long.wav"]["end"]
    assert ends.max() == pytest.approx(len(long) / 8000, abs=1e-3)
    orig = pred.predict_file(fsdd_dir / "recordings" / "3_theo_0.wav")
    assert np.abs(res.files.filter(like="prob_").iloc[0].to_numpy() - orig).max() < 0.05


def test_cli_predict_evaluate_report(run, fsdd_subset_csv, tmp_path, capsys):
    out = tmp_path / "p.csv"
    assert main(["predict", str(run), str(fsdd_subset_csv), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    df = pd.read_csv(out)
    assert list(df.columns[:3]) == ["path", "label", "prediction"] and len(df) == 60
    assert main(["evaluate", str(out), "--report", str(tmp_path / "rep"), "--run", str(run), "--labels",
                 str(fsdd_subset_csv)]) == 0
    assert "60 files: accuracy" in capsys.readouterr().out
    for name in ("report.md", "confusion.png", "confusion.csv", "metrics.json", "recall.png"):
        assert (tmp_path / "rep" / name).exists()
    assert list((tmp_path / "rep" / "examples").glob("*.png"))


def test_evaluate_bad_input(run, tmp_path):
    preds = pd.read_csv(run / "oof_files.csv", dtype={"label": str, "prediction": str})
    wrong = preds.copy()
    wrong.loc[0, "label"] = "eleven"
    with pytest.raises(DataError, match=r"class\(es\) \['eleven'\] that the model never saw"):
        evaluate_predictions(wrong)
    labels = preds[["path", "label"]].iloc[1:]
    labels.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DataError, match="not in the labels"):
        evaluate_predictions(preds, labels=tmp_path / "labels.csv")
    with pytest.raises(DataError, match="pass --labels"):
        evaluate_predictions(preds.drop(columns=["label"]))


def test_incomplete_run_folder(run, tmp_path):
    with pytest.raises(DataError, match="not a specimg run folder"):
        Run.open(tmp_path).load_models()
    (tmp_path / "config.json").write_text((run / "config.json").read_text())
    with pytest.raises(DataError, match="no trained fold"):
        Run.open(tmp_path).load_models()
    with pytest.raises(DataError, match=r"no finished fold\(s\) \[7\]"):
        Run.open(run).load_models(folds=[7])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_parity(run, tmp_path, fmt):
    pred = Predictor.from_run(run, device="cpu")
    images = np.random.default_rng(0).integers(0, 256, size=(5, 32, 48, 3), dtype=np.uint8)
    expected = pred.predict_images(images)
    target = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt")
    (path,) = export_run(run, target, format=fmt)
    x = images.transpose(0, 3, 1, 2).astype(np.float32)
    if fmt == "onnx":
        import onnxruntime as ort

        got = ort.InferenceSession(str(path)).run(None, {"images": x})[0]
    else:
        with torch.no_grad():
            got = torch.jit.load(str(path))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    per_fold = export_run(run, tmp_path / "f.onnx", per_fold=True)
    assert [p.name for p in per_fold] == ["f_fold0.onnx", "f_fold1.onnx", "f_fold2.onnx"]

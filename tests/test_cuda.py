"""CUDA: mixed precision, resume, channels-last, the predictor's bf16, the device front end, export, torchrun.

Every test here is marked ``cuda`` (``pytest -m cuda``) and needs a CUDA GPU: without one it is skipped,
with the reason. ``SPECIMG_CUDA_TESTS_ON_CPU=1`` runs the same bodies on the CPU instead, with mixed
precision off (what ``amp`` means there), so that the bodies are known to run before a GPU session spends
its device time on them; on the CPU the precision checks compare float32 with float32. ``benchmarks/cuda_check.py``
runs this file on the device machine (see docs/gpu.md).

The CUDA tolerances below were chosen before any GPU run, from bf16's 8-bit mantissa (about 3 significant
digits, so relative differences of 1e-3 to 1e-2 after a few layers); every test prints what it measured
(``pytest -rA`` shows it, and the device report keeps it), so that they can be restated with measured figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Dict, List

# cuBLAS is deterministic only with a fixed workspace, which must be chosen before cuBLAS starts
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from specimg import Predictor, TrainConfig, export_run, train_cv  # noqa: E402
from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig  # noqa: E402
from specimg.models import register_backbone  # noqa: E402
from specimg.spectrogram import ImageCache  # noqa: E402
from specimg.training import Callback  # noqa: E402

ON_GPU = torch.cuda.is_available()
ON_CPU_INSTEAD = not ON_GPU and os.environ.get("SPECIMG_CUDA_TESTS_ON_CPU") == "1"
DEVICE = "cuda" if ON_GPU else "cpu"
#: bf16 where the GPU has it (an H200 does), as the trainer's and the predictor's 'auto' choose
AUTO_DTYPE = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if ON_GPU else torch.float32
#: Predictor autocasts to bf16 where the GPU has it, else runs in float32
PREDICT_DTYPE = torch.bfloat16 if ON_GPU and torch.cuda.is_bf16_supported() else torch.float32

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not (ON_GPU or ON_CPU_INSTEAD),
                       reason="needs a CUDA GPU (torch.cuda.is_available() is False); "
                              "SPECIMG_CUDA_TESTS_ON_CPU=1 runs the same bodies on the CPU with amp off"),
]

#: Window probabilities of the predictor in bf16 (CUDA) and in float32 (the CPU) differ by at most this.
BF16_PROB_TOL = 0.03
#: Losses of one epoch with channels-last on and off, relative: bf16 on CUDA (other kernels, other rounding) /
#: float32 on the CPU (measured there: under 1e-5).
LAYOUT_LOSS_RTOL = 0.03 if ON_GPU else 1e-4
#: Out-of-fold probabilities of a run vs Predictor on the same device, whose batches differ in size (other
#: kernels): bf16 on CUDA / float32 on the CPU (measured there with resnet10t: at most 1.1e-5).
SAME_DEVICE_PROB_TOL = 0.02 if ON_GPU else 1e-4
#: Exported graph (float32, CPU) vs PyTorch in float32 on the CPU: the CPU suite's tolerance.
EXPORT_TOL = 1e-5

SR = 8000
CFG = RenderConfig(audio=AudioConfig(sample_rate=SR), segment=SegmentConfig(seconds=1.0, hop=0.5),
                   spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=32, image_size=(32, 32)))
DET_NET = "specimg_cuda_test_det_net"


def amp(mode: str) -> str:
    """The ``amp`` option of a test run: as asked on CUDA, ``'off'`` on the CPU (where mixed precision is off)."""
    return mode if ON_GPU else "off"


def expected_dtype(mode: str) -> torch.dtype:
    if not ON_GPU:
        return torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "auto": AUTO_DTYPE, "off": torch.float32}[mode]


class DetNet(nn.Module):
    """Convolutions, BatchNorm, a spatial mean, dropout and a linear head: only ops that CUDA can run
    deterministically (no adaptive pooling, whose CUDA backward uses atomics), so that two runs can be
    compared bit for bit."""

    def __init__(self, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):  # x: (B, 3, H, W)
        return self.fc(self.drop(self.features(x).mean((2, 3))))  # (B, num_classes)


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # re-registering on a second import
    register_backbone(DET_NET, DetNet)


def band_cache(root: Path, *, n_classes: int = 3, files_per_class: int = 8, windows: int = 2, size: int = 32,
               seed: int = 0) -> ImageCache:
    """Windows with a bright horizontal band whose height gives the class (as in test_training.py)."""
    rng = np.random.default_rng(seed)
    images, segments, files = [], [], []
    fid = 0
    for c in range(n_classes):
        for j in range(files_per_class):
            files.append({"file_id": fid, "path": f"c{c}/f{j}.wav", "label": f"class{c}", "speaker": f"s{j % 4}"})
            for s in range(windows):
                im = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
                top = size - 8 - c * (size // n_classes)
                im[top:top + 4] = 230
                images.append(im)
                segments.append({"file_id": fid, "segment": s, "start": float(s), "end": s + 1.0})
            fid += 1
    return ImageCache.from_arrays(root, np.stack(images), pd.DataFrame(segments), pd.DataFrame(files))


def cfg(**kw) -> TrainConfig:
    base = dict(backbone="resnet10t", weights="none", epochs=3, batch_size=8, lr=3e-3, optimizer="adamw",
                n_splits=2, group_column="speaker", device=DEVICE, num_workers=0, amp=amp("auto"))
    base.update(kw)
    return TrainConfig().with_options(**base)


class Probe(Callback):
    """Records, for every training forward of the first convolution, its input layout and output dtype."""

    def __init__(self) -> None:
        self.channels_last: List[bool] = []
        self.dtypes: List[torch.dtype] = []

    def on_train_start(self, trainer) -> None:
        conv = next(m for m in trainer.model.modules() if isinstance(m, nn.Conv2d))

        def hook(module, inputs, output):
            if module.training:
                self.channels_last.append(inputs[0].is_contiguous(memory_format=torch.channels_last))
                self.dtypes.append(output.dtype)

        conv.register_forward_hook(hook)


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def band(tmp_path_factory) -> ImageCache:
    return band_cache(tmp_path_factory.mktemp("band"))


@pytest.fixture
def deterministic():
    """Deterministic CUDA kernels (cuDNN and the ops that have a choice) for the duration of a test."""
    old = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
           torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)  # an op without a deterministic kernel warns, naming it
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.use_deterministic_algorithms(old[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old[1], old[2]


# ----------------------------------------------------------------------------- training in mixed precision
@pytest.mark.parametrize("mode", ["bf16", "fp16"])
def test_amp_training_steps(band, tmp_path, mode):
    """A few steps of a timm backbone in bf16, and in fp16 with the GradScaler: the convolutions run in that
    dtype, the loss is finite and falls, and ``last.pt`` holds the scaler's state exactly when fp16 uses it."""
    probe = Probe()
    res = train_cv(band, tmp_path / "run", cfg(amp=amp(mode), epochs=4, num_workers=2), folds=[0],
                   callbacks=[probe], verbose=False)
    log = pd.read_csv(tmp_path / "run" / "fold_0" / "log.csv")
    print(f"{mode} on {DEVICE}: conv dtypes {sorted(set(map(str, probe.dtypes)))}, train_loss "
          f"{log['train_loss'].round(4).tolist()}, val_accuracy {log['val_accuracy'].tolist()}")
    assert probe.dtypes and set(probe.dtypes) == {expected_dtype(mode)}
    assert np.isfinite(log["train_loss"]).all() and np.isfinite(log["val_loss"]).all()
    assert log["train_loss"].iloc[-1] < log["train_loss"].iloc[0]
    assert len(res.oof_files) == 12 and np.isfinite(res.oof_files.filter(like="prob_").to_numpy()).all()
    scaler = _state(tmp_path / "run" / "fold_0" / "last.pt")["scaler"]
    if ON_GPU and mode == "fp16":
        assert np.isfinite(scaler["scale"]) and scaler["scale"] > 0, scaler
        assert scaler["_growth_tracker"] >= 0
    else:  # bf16 (and float32) need no loss scaling: the scaler is off and saves nothing
        assert scaler == {}


class Crash(Callback):
    def on_batch_end(self, trainer, batch, loss):
        if trainer.epoch == 1 and batch == 1:
            raise RuntimeError("simulated crash mid-epoch")


@pytest.mark.parametrize("mode", ["fp16", "bf16"])
def test_resume_after_a_crash_equals_an_uninterrupted_run(band, tmp_path, mode, deterministic):
    """Crash in the middle of epoch 2, run again: the same weights, optimizer and scaler state bit for bit as a
    run never interrupted (deterministic kernels; dropout draws from the CUDA generator, whose state
    ``last.pt`` keeps), and the same out-of-fold predictions."""
    config = cfg(backbone=DET_NET, amp=amp(mode), epochs=3, drop_rate=0.3, num_workers=2, hflip=0.5,
                 time_mask=0.2, lr=0.01)
    a, b = tmp_path / "a", tmp_path / "b"
    train_cv(band, a, config, folds=0, verbose=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_cv(band, b, config, folds=0, callbacks=[Crash()], verbose=False)
    assert _state(b / "fold_0" / "last.pt")["epoch"] == 1  # the crash left epoch 1's checkpoint
    train_cv(band, b, config, folds=0, verbose=False)
    for name in ("best.pt", "last.pt"):
        wa, wb = _state(a / "fold_0" / name)["model"], _state(b / "fold_0" / name)["model"]
        worst = max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)
        print(f"{mode} on {DEVICE}, {name}: largest weight difference {worst:g}")
        assert all(torch.equal(wa[k], wb[k]) for k in wa), (name, worst)
    la, lb = _state(a / "fold_0" / "last.pt"), _state(b / "fold_0" / "last.pt")
    assert la["scaler"] == lb["scaler"]
    if ON_GPU and mode == "fp16":
        assert "scale" in la["scaler"]
    for sa, sb in zip(la["optimizer"]["state"].values(), lb["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert (a / "oof_files.csv").read_text() == (b / "oof_files.csv").read_text()


def test_channels_last_on_and_off_give_the_same_loss(band, tmp_path):
    """One epoch of the same run with channels-last on and off (default amp): the batches reach the model in
    that layout, and the training and validation losses agree to LAYOUT_LOSS_RTOL (one epoch: three steps, so
    that rounding differences have not yet been amplified by the training itself)."""
    logs, probes = {}, {}
    for cl in (True, False):
        probes[cl] = Probe()
        train_cv(band, tmp_path / f"cl{cl}", cfg(channels_last=cl, epochs=1), folds=[0], callbacks=[probes[cl]],
                 verbose=False)
        logs[cl] = pd.read_csv(tmp_path / f"cl{cl}" / "fold_0" / "log.csv")
    assert set(probes[True].channels_last) == {True} and set(probes[False].channels_last) == {False}
    for col in ("train_loss", "val_loss"):
        on, off = logs[True][col].to_numpy(), logs[False][col].to_numpy()
        print(f"{col} on {DEVICE}: channels-last {on.round(5).tolist()}, contiguous {off.round(5).tolist()}, "
              f"largest relative difference {float(np.max(np.abs(on - off) / np.abs(off))):.2e}")
        np.testing.assert_allclose(on, off, rtol=LAYOUT_LOSS_RTOL)


# ----------------------------------------------------------------------------- a run trained on the device
@pytest.fixture(scope="module")
def device_run(band, tmp_path_factory) -> Path:
    """Two folds of resnet10t trained on DEVICE (default amp), confident enough for probability comparisons."""
    run = tmp_path_factory.mktemp("device_run") / "run"
    train_cv(band, run, cfg(epochs=6, lr=5e-3), verbose=False)
    return run


def _band_images(band: ImageCache, n: int = 32) -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.asarray(band.images)[rng.permutation(len(band.images))[:n]]


def test_predictor_bf16_matches_float32(device_run, band):
    """Predictor on the device (bf16 autocast on CUDA) against the same run on the CPU in float32: window
    probabilities within BF16_PROB_TOL."""
    on_device = Predictor.from_run(device_run, device=DEVICE)
    on_cpu = Predictor.from_run(device_run, device="cpu")
    dtypes: List[torch.dtype] = []
    conv = next(m for m in on_device.models[0].modules() if isinstance(m, nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    images = _band_images(band)
    p_dev, p_cpu = on_device.predict_images(images), on_cpu.predict_images(images)
    diff = np.abs(p_dev - p_cpu)
    print(f"predictor on {DEVICE} ({sorted(set(map(str, dtypes)))}) vs float32 on the CPU: largest probability "
          f"difference {diff.max():.2e}, mean {diff.mean():.2e}; mean top probability {p_cpu.max(1).mean():.3f}")
    assert set(dtypes) == {PREDICT_DTYPE}
    assert p_cpu.max(1).mean() > 0.5  # confident enough for the comparison to mean something
    np.testing.assert_allclose(p_dev.sum(1), 1.0, atol=1e-5)
    assert diff.max() < BF16_PROB_TOL
    assert (p_dev.argmax(1) == p_cpu.argmax(1)).mean() >= 0.9


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_of_a_device_trained_run_equals_pytorch(device_run, band, tmp_path, fmt):
    """The exported fold ensemble of the run trained on the device equals PyTorch in float32 (the CPU suite's
    tolerance), and the predictor on the device to BF16_PROB_TOL."""
    images = _band_images(band, 8)
    expected = Predictor.from_run(device_run, device="cpu").predict_images(images)
    (path,) = export_run(device_run, tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt"), format=fmt)
    x = images.transpose(0, 3, 1, 2).astype(np.float32)  # (B, 3, H, W) pixels in [0, 255]
    if fmt == "onnx":
        import onnxruntime as ort

        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    else:
        with torch.no_grad():
            got = torch.jit.load(str(path))(torch.from_numpy(x)).numpy()
    on_device = Predictor.from_run(device_run, device=DEVICE).predict_images(images)
    print(f"{fmt}: largest difference to PyTorch float32 {np.abs(got - expected).max():.2e}, to the predictor on "
          f"{DEVICE} {np.abs(got - on_device).max():.2e}")
    np.testing.assert_allclose(got, expected, atol=EXPORT_TOL)
    assert np.abs(got - on_device).max() < BF16_PROB_TOL


# ----------------------------------------------------------------------------- the device front end
@pytest.fixture(scope="module")
def waves(fsdd_subset_csv):
    from specimg.data import WaveformSet

    return WaveformSet.load(fsdd_subset_csv, CFG, progress=False)


def test_device_frontend_equals_the_image_cache(waves, fsdd_subset_csv, tmp_path):
    """FrontendPipeline on the device against the CPU image cache of the same 60 FSDD files, to the tolerance of
    test_frontend_train.py: +-1 in under 0.5 % of the pixels (one-window files; away from the 2 edge columns of
    the windows of longer files)."""
    from specimg.data import FrontendPipeline
    from specimg.spectrogram import render_dataset

    cache = render_dataset(fsdd_subset_csv, tmp_path / "cache", CFG, progress=False)
    pipe = FrontendPipeline(CFG).to(DEVICE)
    w, ref = waves.windows(np.arange(len(waves.segments)))
    with torch.no_grad():
        img = pipe.images(torch.from_numpy(w).to(DEVICE), torch.from_numpy(ref).to(DEVICE))  # (n, 3, H, W)
    assert img.device.type == DEVICE
    ours = (img * 255).round().to(torch.uint8).cpu().numpy()
    diff = np.abs(ours.astype(int) - np.asarray(cache.images).transpose(0, 3, 1, 2).astype(int))
    single = (waves.files.set_index("file_id").loc[waves.segments["file_id"], "n_segments"] == 1).to_numpy()
    inner = diff[~single][..., 2:-2]
    print(f"front end on {DEVICE} vs the cache: one-window files max {diff[single].max()}, "
          f"{(diff[single] > 0).mean():.2e} of pixels differ; longer files inside max {inner.max()}, "
          f"{(inner > 0).mean():.2e}")
    assert single.sum() >= 50 and (~single).sum() >= 2
    assert diff[single].max() <= 1 and (diff[single] > 0).mean() < 0.005
    assert inner.max() <= 1 and (inner > 0).mean() < 0.005


def test_training_through_the_device_frontend(fsdd_subset_csv, waves, tmp_path):
    """train_cv through the device front end (waveform batches pinned, images made and augmented on the
    device): it trains, writes no image, and its out-of-fold predictions are what Predictor predicts on the
    device."""
    config = cfg(images="on-the-fly", epochs=2, batch_size=16, n_splits=3, num_workers=2, hflip=0.5, time_mask=0.2,
                 freq_mask=0.2, freq_stretch=0.1, time_stretch=0.1)
    res = train_cv(fsdd_subset_csv, tmp_path / "run", config, render_config=CFG, folds=[0], verbose=False)
    assert not (tmp_path / "run" / "cache").exists()
    log = pd.read_csv(tmp_path / "run" / "fold_0" / "log.csv")
    assert np.isfinite(log["train_loss"]).all()
    held = res.oof_files
    assert len(held) == 20
    pred = Predictor.from_run(tmp_path / "run", folds=[0], device=DEVICE)
    paths = waves.files.set_index("path").loc[held["path"], "abspath"].tolist()
    out = pred.predict(pd.DataFrame({"path": paths, "label": held["label"].tolist()}), progress=False)
    probs = [c for c in held.columns if c.startswith("prob_")]
    diff = np.abs(out.files[probs].to_numpy() - held[probs].to_numpy())
    print(f"out-of-fold vs Predictor on {DEVICE} (device front end): largest difference {diff.max():.2e}")
    assert diff.max() < SAME_DEVICE_PROB_TOL


# ----------------------------------------------------------------------------- torchrun
@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    """36 noisy tones at 3 pitches (one class each), 4 'speakers' (as in test_distributed.py)."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    rows: List[Dict[str, str]] = []
    t = np.arange(int(0.8 * SR)) / SR
    for c, f0 in enumerate((300.0, 900.0, 2000.0)):
        for j in range(12):
            f = f0 * (1 + 0.05 * rng.standard_normal())
            y = 0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(len(t))
            sf.write(root / f"c{c}_{j}.wav", y.astype(np.float32), SR)
            rows.append({"path": f"c{c}_{j}.wav", "label": f"tone{c}", "speaker": f"s{j % 4}"})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root / "labels.csv"


TRAIN_ARGS = ["--backbone", "resnet10t", "--weights", "none", "--folds", "2", "--fold", "0", "--group-column",
              "speaker", "--epochs", "5", "--batch-size", "8", "--optimizer", "adamw", "--lr", "0.003", "--hflip", "0",
              "--seconds", "0.5", "--hop", "0.25", "--sample-rate", "8000", "--n-fft", "256", "--hop-length", "32",
              "--n-mels", "32", "--image-size", "32", "--device", DEVICE, "--workers", "1", "--quiet"]

#: Under torchrun, with one process specimg creates no process group (there is nothing to reduce); this script
#: creates one itself (NCCL on CUDA), checks a collective and trains through train_cv inside it.
NCCL_SCRIPT = """
import json, sys
import torch, torch.distributed as dist
from specimg import TrainConfig, train_cv
from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig

device = sys.argv[3]
dist.init_process_group("nccl" if device == "cuda" else "gloo")
t = torch.full((1,), 2.0, device=device)
dist.all_reduce(t)
render = RenderConfig(audio=AudioConfig(sample_rate=8000), segment=SegmentConfig(seconds=0.5, hop=0.25),
                      spectrogram=SpectrogramConfig(n_fft=256, hop_length=32, n_mels=32, image_size=(32, 32)))
cfg = TrainConfig(backbone="resnet10t", weights="none", n_splits=2, group_column="speaker").with_options(
    epochs=5, batch_size=8, optimizer="adamw", lr=0.003, hflip=0.0, device=device, num_workers=1)
res = train_cv(sys.argv[1], sys.argv[2], cfg, render_config=render, folds=[0], verbose=False)
print(json.dumps({"backend": dist.get_backend(), "world": dist.get_world_size(), "all_reduce": t.item(),
                  "accuracy": res.metrics["oof"]["accuracy"]}))
dist.destroy_process_group()
"""


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def test_torchrun_one_process_trains(tones, tmp_path):
    """``torchrun --standalone --nproc_per_node 1 -m specimg train ... --device cuda`` trains and learns the
    tones; a script that joins an NCCL process group itself trains through train_cv inside it."""
    _torchrun("-m", "specimg", "train", str(tones), "--out", str(tmp_path / "cli"), *TRAIN_ARGS)
    files = pd.read_csv(tmp_path / "cli" / "oof_files.csv")
    acc = float((files["label"] == files["prediction"]).mean())
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["train"]["runtime"]["device"] == DEVICE
    script = tmp_path / "nccl_train.py"
    script.write_text(NCCL_SCRIPT)
    proc = _torchrun(str(script), str(tones), str(tmp_path / "script"), DEVICE)
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"torchrun on {DEVICE}: CLI out-of-fold accuracy {acc:.3f}; script in a process group {info}")
    assert len(files) == 18 and acc >= 0.9
    assert info["backend"] == ("nccl" if ON_GPU else "gloo") and info["world"] == 1 and info["all_reduce"] == 2.0
    assert info["accuracy"] >= 0.9

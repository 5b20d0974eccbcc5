"""The CUDA check: the CUDA tests, the seed's six backbones' throughput at 512x512, one FSDD run, on one GPU.

One command for the device machine (docs/gpu.md gives the exact ``run`` call and how to prepare it with
``benchmarks/cuda_wheels.sh``). It runs three steps, the most important first, each in its own process with
its own time limit (taken from ``--budget``, so that a hang in one step costs the others nothing), and
rewrites its report after every step, so a run cut short still returns what it finished:

1. ``pytest -m cuda tests/test_cuda.py`` (mixed precision, resume, channels-last, the predictor's bf16, the
   device front end, export, torchrun): ``pytest.txt``, its summary and measured differences in the report.
2. Throughput of densenet169, densenet201, inception_resnet_v2, inception_v3, resnet50 and xception at
   512x512x3 from a random init (``throughput.json``): training images/s through specimg's pipeline
   (``train_cv`` on an image cache of FSDD images: SegmentDataset, the preset's albumentations, DataLoader
   workers, pinned memory, Trainer with bf16 autocast and channels-last) against a bare timm loop on the same
   cached images (index the memmap, normalise on the GPU, forward, backward, SGD), the same with the device
   front end (waveform batches made into images on the GPU) instead of the cache, prediction with and without
   flip TTA, and the peak GPU memory of each. The three training paths and the two prediction modes are
   alternated over ``--rounds`` rounds; each figure is the median over the rounds of the rate of the steps
   after ``--warm-steps`` (the loader start and the first kernels excluded; the seconds from the start of the
   epoch to the end of those first steps are reported apart, "first steps s").
3. One end-to-end ``specimg train`` on FSDD: 6 speaker folds, 224x224, ``tf_efficientnet_lite0`` with its
   offline ImageNet weights, the FSDD preset's recipe (8 epochs): leave-one-speaker-out accuracy and wall time.

Files under ``--out`` (``$OUT`` on the device machine; at most 8 come back): ``cuda_check.txt`` (the report,
committed as ``benchmarks/results/cuda-<date>.txt``), ``env.json``, ``pytest.txt``, ``throughput.json``,
``throughput.txt``, ``e2e.txt`` and ``e2e_metrics.json``.

``--quick`` runs the same code paths on the CPU in a few minutes at most: the test step (its tests skip without a
GPU), one tiny backbone (resnet10t) at 32x32 with batches of 8, and one fold of the FSDD run on 60 files for one
epoch at 32x32.

    python benchmarks/cuda_check.py --quick                     # here: a smoke run on the CPU
    python3 benchmarks/cuda_check.py --fsdd /tmp/fsdd --out $OUT  # the device machine (see docs/gpu.md)
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import gc
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
SEED_BACKBONES = ("resnet50", "inception_v3", "xception", "densenet169", "densenet201", "inception_resnet_v2")
#: The FSDD preset's recipe on the command line (specimg.presets.fsdd_render_config / fsdd_train_config).
E2E_RECIPE = ["--backbone", "tf_efficientnet_lite0", "--weights", "offline", "--folds", "6", "--group-column",
              "speaker", "--batch-size", "32", "--optimizer", "sgd", "--lr", "0.01", "--hflip", "0.5", "--time-mask",
              "0.1", "--freq-mask", "0.1", "--freq-stretch", "0.15", "--time-stretch", "0.15", "--tta", "flip",
              "--sample-rate", "8000", "--seconds", "1", "--hop", "0.5", "--pad-mode", "zero", "--n-fft", "256",
              "--hop-length", "64", "--n-mels", "64"]
#: What the same recipe gives on the CPU at 64x64 (specimg.presets.fsdd_render_config's docstring, and the
#: demo's --epochs help), for the report's comparison.
CPU_REFERENCE = ("CPU reference (documented, not re-measured here): the same recipe at 64x64, 8 epochs, "
                 "leave-one-speaker-out mean file accuracy 0.797 (specimg/presets.py: benchmarks/fsdd_variants.py); "
                 "`make demo` trained its 6 folds in 966 s on 2 CPU cores (its 'trained 6 folds in ... s' line; "
                 "docs/getting-started.md)")


# ----------------------------------------------------------------------------- small helpers
def source_hash() -> str:
    """sha1 of the library, this script and the CUDA tests: names the code a report was made with (the device
    machine gets the working tree without .git)."""
    h = hashlib.sha1()
    files = sorted([*ROOT.glob("specimg/**/*.py"), ROOT / "tests" / "test_cuda.py", Path(__file__).resolve()])
    for p in files:
        h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def git_head() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown (no git repository here)"
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git here)"


def atomic_write(path: Path, text: str) -> None:
    from specimg._io import atomic_write_text

    atomic_write_text(path, text)


def fsdd_table(fsdd: Path, *, takes: Optional[int] = None, n_files: Optional[int] = None, seed: int = 0):
    """FSDD's labels.csv with absolute paths: ``takes`` per digit and speaker, or ``n_files`` drawn at random."""
    import pandas as pd

    table = pd.read_csv(fsdd / "labels.csv", dtype={"label": str})
    if takes is not None:
        take = table["path"].str.extract(r"_(\d+)\.wav$")[0].astype(int)
        table = table[take < takes]
    if n_files is not None:
        table = table.sample(n=min(n_files, len(table)), random_state=seed).sort_index()
    table = table.copy()
    table["path"] = [str((fsdd / p).resolve()) for p in table["path"]]
    return table.reset_index(drop=True)


def environment() -> Dict[str, Any]:
    """Versions and the GPU, for the report's head."""
    import importlib

    import torch

    env: Dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                           "cpus": os.cpu_count(), "torch": torch.__version__, "cuda": torch.version.cuda,
                           "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
                           "gpu": None}
    for name in ("timm", "numpy", "pandas", "librosa", "albumentations", "soundfile", "onnxruntime", "sklearn"):
        try:
            env[name] = importlib.import_module(name).__version__
        except Exception as exc:  # noqa: BLE001 - a missing package is what the report must say
            env[name] = f"missing ({type(exc).__name__}: {exc})"
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                      "capability": f"{p.major}.{p.minor}", "bf16": torch.cuda.is_bf16_supported(),
                      "count": torch.cuda.device_count()}
    return env


# ----------------------------------------------------------------------------- throughput (step 2)
class _Enough(Exception):
    """Raised by the step clock once the timed steps are done: ends a run before validation and checkpoints."""


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _step_clock(device: str, warm: int, steps: int):
    """A Callback timing training steps ``warm+1 .. steps`` (synchronised at both ends), then stopping the run."""
    from specimg.training import Callback

    class StepClock(Callback):
        def __init__(self) -> None:
            self.start = self.t0 = self.t1 = 0.0

        def on_epoch_start(self, trainer, epoch):
            self.start = time.perf_counter()

        def on_batch_end(self, trainer, batch, loss):
            if batch + 1 == warm:
                _sync(device)
                self.t0 = time.perf_counter()
            elif batch + 1 == steps:
                _sync(device)
                self.t1 = time.perf_counter()
                raise _Enough

    return StepClock()


def _register_copy(name: str, template) -> str:
    """Register a backbone that hands train_cv a fresh copy of ``template`` (a timm model built once): the
    same random init for every run, without paying timm's construction each time."""
    import warnings

    from specimg.models import register_backbone

    n_classes = template.num_classes

    def factory(*, num_classes: int, pretrained: bool = False, **kwargs):
        model = copy.deepcopy(template)
        if num_classes != n_classes:
            model.reset_classifier(num_classes)
        return model

    key = f"cuda_check_{name}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        register_backbone(key, factory)
    return key


def specimg_run(source, work: Path, config, *, device: str, warm: int, steps: int, **kw) -> Dict[str, float]:
    """One train_cv fold through ``steps`` steps: images/s of the steps after ``warm``, start-up s, peak GiB."""
    import torch

    from specimg import train_cv

    clock = _step_clock(device, warm, steps)
    run = work / f"run_{time.monotonic_ns()}"
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    try:
        train_cv(source, run, config, folds=[0], callbacks=[clock], verbose=False, **kw)
        raise RuntimeError(f"the fold ended before {steps} steps: give the throughput more files")
    except _Enough:
        pass
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    gc.collect()
    return {"rate": (steps - warm) * config.optim.batch_size / (clock.t1 - clock.t0), "startup_s": clock.t0 - clock.start,
            "peak_gib": peak}


def bare_run(template, cache, rows, *, device: str, batch: int, warm: int, steps: int, mean, std
             ) -> Dict[str, float]:
    """A bare timm loop on the same cached images: memmap rows -> GPU -> normalise -> forward/backward -> SGD, with
    the precision and memory layout the Trainer uses (bf16 autocast, channels-last on CUDA)."""
    import numpy as np
    import torch

    from specimg.data import cache_targets

    cuda = device.startswith("cuda")
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else None
    model = copy.deepcopy(template).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
    s = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
    _, targets = cache_targets(cache)
    order = np.random.default_rng(0).permutation(rows)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = t0 = time.perf_counter()
    for i in range(steps):
        idx = np.sort(order[i * batch:(i + 1) * batch])
        x = torch.from_numpy(cache.images[idx]).to(device, non_blocking=True)  # (B, H, W, 3) uint8
        x = ((x.permute(0, 3, 1, 2).float() - m) / s).contiguous(memory_format=torch.channels_last)  # (B, 3, H, W)
        y = torch.from_numpy(targets[idx]).to(device, non_blocking=True)
        with torch.autocast(device.split(":")[0], dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if i + 1 == warm:
            _sync(device)
            t0 = time.perf_counter()
    _sync(device)
    t1 = time.perf_counter()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    del model, opt
    gc.collect()
    return {"rate": (steps - warm) * batch / (t1 - t0), "startup_s": t0 - start, "peak_gib": peak}


def predict_rates(template, cache, *, device: str, batch: int, n_images: int, rounds: int, mean, std
                  ) -> Dict[str, float]:
    """Predictor.predict_images images/s without and with flip TTA, alternated, medians (after one warm-up)."""
    import numpy as np

    from specimg import Predictor

    images = np.asarray(cache.images[:n_images])
    h, w = images.shape[1:3]
    preds = {tta: Predictor([copy.deepcopy(template).eval()], classes=cache.classes, render_config=cache.config,
                            mean=mean, std=std, input_size=(3, h, w), device=device, tta=tta, batch_size=batch)
             for tta in ("none", "flip")}
    times: Dict[str, List[float]] = {"none": [], "flip": []}
    for r in range(rounds + 1):
        for tta in (("none", "flip") if r % 2 == 0 else ("flip", "none")):
            t0 = time.perf_counter()
            preds[tta].predict_images(images)  # returns numpy: the GPU work is done
            if r:  # round 0 warms up
                times[tta].append(time.perf_counter() - t0)
    del preds
    gc.collect()
    none, flip = (float(np.median(times[k])) for k in ("none", "flip"))
    return {"predict_none": len(images) / none, "predict_flip": len(images) / flip, "flip_cost": flip / none}


def bench_backbone(name: str, cache, csv: Path, work: Path, args) -> Dict[str, Any]:
    """The three training paths alternated over ``args.rounds`` rounds, then prediction."""
    import numpy as np
    import torch

    from specimg.models import backbone_data_config, create_backbone
    from specimg.presets import fsdd_train_config

    torch.manual_seed(0)
    template = create_backbone(name, num_classes=len(cache.classes), weights="none")
    key = _register_copy(name, template)
    data_cfg = backbone_data_config(template, image_size=tuple(cache.images.shape[1:3]))
    mean, std = data_cfg["mean"], data_cfg["std"]
    config = fsdd_train_config(backbone=key, weights="none", epochs=1, batch_size=args.batch_size, n_splits=2,
                               group_column=None, device=args.device, seed=0)
    fly = config.replace(images="on-the-fly")
    rows = np.arange(len(cache.images))
    kw = dict(device=args.device, warm=args.warm_steps, steps=args.steps)
    paths = {
        "specimg": lambda: specimg_run(cache, work, config, **kw),
        "bare": lambda: bare_run(template, cache, rows, batch=args.batch_size, mean=mean, std=std, **kw),
        "on_the_fly": lambda: specimg_run(csv, work, fly, render_config=cache.config, cache_dir=work / "audio", **kw),
    }
    # no warm-up run: each run's first steps are untimed, and a slower first run is outvoted by the median
    runs: Dict[str, List[Dict[str, float]]] = {k: [] for k in paths}
    order = list(paths)
    for r in range(args.rounds):
        for k in (order if r % 2 == 0 else order[::-1]):
            runs[k].append(paths[k]())
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    med = {k: float(np.median([x["rate"] for x in v])) for k, v in runs.items()}
    row: Dict[str, Any] = {
        "backbone": name, "params_m": round(sum(p.numel() for p in template.parameters()) / 1e6, 1),
        "image": list(cache.images.shape[1:]), "batch": args.batch_size, "timed_steps": args.steps - args.warm_steps,
        "specimg_img_s": med["specimg"], "bare_img_s": med["bare"], "ratio": med["specimg"] / med["bare"],
        "on_the_fly_img_s": med["on_the_fly"], "on_the_fly_vs_cache": med["on_the_fly"] / med["specimg"],
        "rates": {k: [round(x["rate"], 1) for x in v] for k, v in runs.items()},
        "startup_s": {k: round(float(np.median([x["startup_s"] for x in v])), 2) for k, v in runs.items()},
        "peak_gib": {k: round(max(x["peak_gib"] for x in v), 2) for k, v in runs.items()},
    }
    row.update(predict_rates(template, cache, device=args.device, batch=args.batch_size, n_images=args.predict_images,
                             rounds=args.rounds, mean=mean, std=std))
    return row


TABLE_HEAD = ("| backbone | params (M) | specimg img/s | bare timm img/s | ratio (>= 0.95) | on-the-fly img/s | "
              "on-the-fly / cache | predict img/s (no TTA) | flip TTA cost (<= 2.1x) | peak GiB specimg / bare / "
              "on-the-fly | first steps s specimg / bare |\n"
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")


def table_row(r: Dict[str, Any]) -> str:
    if "error" in r:
        return f"| {r['backbone']} | failed: {r['error']} |"
    peak = " / ".join("-" if v != v else f"{v:.1f}" for v in (r["peak_gib"][k] for k in ("specimg", "bare",
                                                                                        "on_the_fly")))
    return (f"| {r['backbone']} | {r['params_m']} | {r['specimg_img_s']:.0f} | {r['bare_img_s']:.0f} | "
            f"{r['ratio']:.3f} | {r['on_the_fly_img_s']:.0f} | {r['on_the_fly_vs_cache']:.2f} | "
            f"{r['predict_none']:.0f} | {r['flip_cost']:.2f}x | {peak} | {r['startup_s']['specimg']:.2f} / "
            f"{r['startup_s']['bare']:.2f} |")


def throughput_main(args) -> int:
    """Step 2 (its own process): render the cache, then one backbone after another; results written as they come."""
    import torch

    from specimg import render_dataset
    from specimg.presets import fsdd_render_config

    work = Path(args.work) / "throughput"
    work.mkdir(parents=True, exist_ok=True)
    n_files = (2 * args.steps + 1) * args.batch_size  # fold 0 of 2 trains on about half of them
    table = fsdd_table(Path(args.fsdd), n_files=n_files)
    csv = work / "files.csv"
    table[["path", "label", "speaker"]].to_csv(csv, index=False)
    t0 = time.perf_counter()
    cache = render_dataset(csv, work / f"cache_{args.image_size}", fsdd_render_config(args.image_size),
                           workers=min(16, os.cpu_count() or 1), progress=False)
    print(f"cache: {len(cache.images)} images {cache.images.shape[1:]} rendered in {time.perf_counter() - t0:.1f} s; "
          f"device {args.device}, batch {args.batch_size}, {args.rounds} rounds of {args.steps} steps "
          f"({args.steps - args.warm_steps} timed)", flush=True)
    print(TABLE_HEAD, flush=True)
    out = Path(args.out) / "throughput.json"
    rows: List[Dict[str, Any]] = []
    for name in args.backbones.split(","):
        t0 = time.perf_counter()
        try:
            row = bench_backbone(name, cache, csv, work, args)
        except Exception as exc:  # noqa: BLE001 - one backbone failing (out of memory...) must not cost the rest
            row = {"backbone": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        atomic_write(out, json.dumps({"device": args.device, "rows": rows}, indent=2))
        print(table_row(row), flush=True)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return 0 if all("error" not in r for r in rows) else 1


# ----------------------------------------------------------------------------- the steps
def run_step(cmd: Sequence[str], log: Path, timeout: float, env: Dict[str, str]) -> Tuple[Any, float]:
    """Run one step in its own process group; kill the group at ``timeout``. Returns (exit code or 'timeout', s)."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(list(cmd), stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)
        try:
            rc: Any = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = "timeout"
    return rc, time.perf_counter() - t0


def pytest_summary(log: Path) -> str:
    """What the tests printed (their measured differences), the short summary and the last line."""
    lines = log.read_text(errors="replace").splitlines()
    keep: List[str] = []
    section = None
    for line in lines:
        if line.startswith("=") and line.endswith("="):
            section = line.strip("= ")
            continue
        if section == "PASSES" and line and not line.startswith(("_", "-")):
            keep.append("  " + line)
        elif section == "short test summary info":
            keep.append("  " + line)
    last = f"  {lines[-1] if lines else '(no output)'}"
    return "\n".join(keep if keep and keep[-1] == last else keep + [last])


def e2e_summary(run: Path, seconds: float, rc: Any) -> Tuple[str, Dict[str, Any]]:
    path = run / "metrics.json"
    if not path.exists():
        return f"  no metrics.json (exit {rc} after {seconds:.0f} s): see e2e.txt", {}
    m = json.loads(path.read_text())
    per = m.get("per_group", {})
    lines = [f"  {len(m.get('folds_done', per))}/{m.get('n_splits', '?')} folds, wall {seconds:.0f} s (exit {rc}): leave-one-speaker-out "
             f"file accuracy {m['mean']['accuracy']:.3f} +- {m['std']['accuracy']:.3f} (mean +- std over folds), "
             f"UAR {m['mean']['uar']:.3f}",
             "  per held-out speaker: " + ", ".join(f"{g} {v['accuracy']:.3f}" for g, v in per.items())]
    return "\n".join(lines), m


class Report:
    """``cuda_check.txt``, rewritten whole after every step."""

    def __init__(self, path: Path, head: str) -> None:
        self.path, self.parts = path, [head]
        self.write()

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.write()

    def write(self) -> None:
        atomic_write(self.path, "\n\n".join(self.parts) + "\n")


def main_steps(args) -> int:
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.budget
    env = {**os.environ, "SPECIMG_FSDD": str(Path(args.fsdd).resolve()), "NO_ALBUMENTATIONS_UPDATE": "1",
           "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    info = environment()
    atomic_write(out / "env.json", json.dumps(info, indent=2))
    gpu = info["gpu"]
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = Report(out / "cuda_check.txt", "\n".join([
        f"# specimg CUDA check, {when}{' (--quick, on the CPU)' if args.quick else ''}",
        f"code: git {git_head()}, source hash {source_hash()} (python benchmarks/cuda_check.py --source-hash)",
        f"device: {gpu['name'] + ', ' + str(gpu['memory_gib']) + ' GiB, sm ' + gpu['capability'] if gpu else 'no GPU'}"
        f"; {info['cpus']} CPUs; python {info['python']}, torch {info['torch']} (CUDA {info['cuda']}, cuDNN "
        f"{info['cudnn']}), timm {info['timm']}, numpy {info['numpy']}, pandas {info['pandas']}, librosa "
        f"{info['librosa']}, albumentations {info['albumentations']}, onnxruntime {info['onnxruntime']}",
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}"]))
    steps = args.steps_to_run.split(",")
    py = sys.executable
    me = str(Path(__file__).resolve())

    def left(reserve: float) -> float:
        return deadline - time.monotonic() - reserve

    if "tests" in steps:
        rc, sec = run_step([py, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-rA", "-q", "-p",
                            "no:cacheprovider"], out / "pytest.txt", min(args.tests_limit, left(260)), env)
        report.add(f"## 1. pytest -m cuda tests/test_cuda.py: exit {rc}, {sec:.0f} s (pytest.txt)\n"
                   + pytest_summary(out / "pytest.txt"))
    if "throughput" in steps:
        cmd = [py, me, "--worker", "throughput", "--out", str(out), "--work", str(work), "--fsdd", args.fsdd,
               "--device", args.device, "--backbones", args.backbones, "--image-size", str(args.image_size),
               "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warm-steps", str(args.warm_steps),
               "--rounds", str(args.rounds), "--predict-images", str(args.predict_images)]
        rc, sec = run_step(cmd, out / "throughput.txt", min(args.throughput_limit, left(140)), env)
        body = (out / "throughput.txt").read_text(errors="replace").strip()
        report.add(f"## 2. training and prediction throughput, random init: exit {rc}, {sec:.0f} s (throughput.json)\n"
                   "specimg = train_cv on the image cache (the preset's augmentation, DataLoader workers, pinned "
                   "memory, bf16 autocast, channels-last); bare = a timm loop on the same memmapped images; "
                   "on-the-fly = train_cv through the device front end; medians over the rounds\n" + body)
    if "e2e" in steps:
        run = work / "e2e_run"
        shutil.rmtree(run, ignore_errors=True)  # a fresh run: its wall time and its folds are this call's
        if args.quick:
            csv = work / "e2e_files.csv"
            fsdd_table(Path(args.fsdd), takes=1)[["path", "label", "speaker"]].to_csv(csv, index=False)
            extra = ["--folds", "2", "--fold", "0", "--epochs", "1", "--image-size", "32", "--device", args.device]
        else:
            csv = Path(args.fsdd) / "labels.csv"
            extra = ["--epochs", "8", "--image-size", "224", "--device", args.device]
        cmd = [py, "-m", "specimg", "train", str(csv), "--out", str(run), "--no-resume", "--quiet", *E2E_RECIPE,
               *extra]
        rc, sec = run_step(cmd, out / "e2e.txt", left(5), env)
        text, metrics = e2e_summary(run, sec, rc)
        if metrics:
            atomic_write(out / "e2e_metrics.json", json.dumps(metrics, indent=2))
        report.add(f"## 3. end to end: specimg train {csv.name} ({'60 files' if args.quick else 'all of FSDD'}), "
                   f"{' '.join(E2E_RECIPE + extra)}\n{text}\n  {CPU_REFERENCE}")
    print(report.path.read_text())
    return 0


def parse_args(argv: Optional[Sequence[str]] = None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the same code paths on the CPU, tiny, in about a minute")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "bench_out" / "cuda_check" / "out"),
                    help="where the report and the logs go (default $OUT, else bench_out/cuda_check/out)")
    ap.add_argument("--work", default=None, help="scratch folder (caches, runs); default /tmp/specimg_cuda_check")
    ap.add_argument("--fsdd", default=os.environ.get("SPECIMG_FSDD") or str(ROOT.parent / "shared" / "datasets" / "fsdd"))
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for all steps together (default 450)")
    ap.add_argument("--steps-to-run", default="tests,throughput,e2e", help="comma-separated subset of the steps")
    ap.add_argument("--tests-limit", type=float, default=120.0, help="seconds at most for step 1 (default 120)")
    ap.add_argument("--throughput-limit", type=float, default=200.0, help="seconds at most for step 2 (default 200)")
    ap.add_argument("--device", default=None, help="default cuda (cpu with --quick)")
    ap.add_argument("--backbones", default=None, help="comma-separated (default: the seed's six)")
    ap.add_argument("--image-size", type=int, default=None, help="default 512 (32 with --quick)")
    ap.add_argument("--batch-size", type=int, default=None, help="default 64 (8 with --quick)")
    ap.add_argument("--steps", type=int, default=None, help="training steps per run (default 5, 4 with --quick)")
    ap.add_argument("--warm-steps", type=int, default=None, help="untimed steps at the start of each run (default 2)")
    ap.add_argument("--rounds", type=int, default=None, help="alternated timed rounds "
                    "(default 3, 1 with --quick)")
    ap.add_argument("--predict-images", type=int, default=None, help="images per prediction timing (default 128)")
    ap.add_argument("--worker", choices=("throughput",), help=argparse.SUPPRESS)
    ap.add_argument("--source-hash", action="store_true", help="print the source hash the report names, and exit")
    args = ap.parse_args(argv)
    q = args.quick
    defaults = dict(device="cpu" if q else "cuda", backbones="resnet10t" if q else ",".join(SEED_BACKBONES),
                    image_size=32 if q else 512, batch_size=8 if q else 64, steps=4 if q else 5,
                    warm_steps=1 if q else 2, predict_images=32 if q else 128, rounds=1 if q else 3,
                    work=str(ROOT / "bench_out" / "cuda_check" / "work") if q else "/tmp/specimg_cuda_check")
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.warm_steps < 1 or args.steps <= args.warm_steps:
        ap.error(f"--steps ({args.steps}) must exceed --warm-steps ({args.warm_steps}), which must be >= 1")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.source_hash:
        print(source_hash())
        return 0
    if args.worker == "throughput":
        return throughput_main(args)
    return main_steps(args)


if __name__ == "__main__":
    sys.exit(main())

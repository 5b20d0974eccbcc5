"""specimg side by side with OpenSoundscape (the library its users would otherwise pick), and an MFCC anchor.

What it measures: three ways to classify the spoken digits of FSDD (free-spoken-digit-dataset, 3,000 8 kHz
WAV files, 6 speakers), each trained on the same 2,000 files and scored on the same 1,000 files of two
held-out speakers, in one process tree on this machine:

- ``specimg``: :func:`specimg.train_cv` with the FSDD presets (``fsdd_train_config(epochs=E, n_splits=3,
  select_epoch="last", validate_last=1)``: EfficientNet-Lite0 (``tf_efficientnet_lite0``) with the
  offline ImageNet weights, SGD 0.01, flip + masks + stretches, flip TTA; ``fsdd_render_config()``: 8 kHz,
  1 s windows at a 0.5 s hop, 64-band mel, 64x64 images, short clips zero-padded), ``folds=[0]``;
  the file scores come from the run's ``oof_files.csv``. Its time includes rendering the images.
- ``opensoundscape``: OpenSoundscape's ``CNN`` (0.13.2) trained the way its README and docstrings show
  (``CNN(architecture, classes, sample_duration, sample_rate, single_target=True)``, ``model.train(train_df,
  steps=..., batch_size=...)``, ``model.predict(files, activation_layer="softmax")``) with its default
  ``SpectrogramPreprocessor`` (linear-frequency dB spectrogram, 512-sample windows, 50 % overlap, its
  default augmentations) at 64x64 and 3 channels, 1 s samples (shorter files extended with silence at
  the end, OpenSoundscape's own default), the same ``tf_efficientnet_lite0`` network and the same offline
  ImageNet weights (built by ``specimg.models.create_backbone(..., weights="offline")`` here and loaded
  into ``timm.create_model`` there), its default AdamW (lr 1e-3, weight decay 5e-4) with its default
  cosine schedule and 5 % warm-up spread over the run's steps, batches of 32, E epochs' worth of steps
  (one epoch = one pass over its 1 s training clips), the last step's weights (no validation set, no
  reload of a "best" step), clip scores averaged per file. It runs in its own virtual environment
  (``.venv-peers``: OpenSoundscape is never a dependency of specimg) as a subprocess that runs
  ``_oss_side`` of this file; the subprocess's start and imports are reported but not counted.
- ``opensoundscape_noaug``: the same, with every augmentation action of its pipeline bypassed
  (``action.bypass = True``, as its docs show), so that training sees the images prediction sees. With its
  default augmentations on these short clips (0.4 s on average, extended with silence to 1 s) its training
  loss stays near ln 10 = 2.30 (2.20 running average after 448 of 512 steps in peers-2026-12-07.txt's run;
  ``oss_stdout.txt`` in the work folder has the trace): its added noise and time shifts swamp a short digit.
  Without them it fits its training clips (running loss 0.055) and this row shows what its CNN then reaches.
- ``anchor``: MFCC statistics + LightGBM, :func:`specimg.training.fit_anchor` (training files fold -1,
  held-out files fold 0, 2 worker processes); its time covers feature extraction, fit and prediction.

Held-out speakers: fold 0 of ``specimg.data.file_folds(table, n_splits=3, group_column="speaker", seed=0)``
(scikit-learn ``StratifiedGroupKFold(n_splits=3, shuffle=True, random_state=0)`` by speaker, stratified on
the label): nicolas and yweweler. Printed per side: file accuracy, UAR (mean per-class recall), training,
prediction and total wall seconds and the total's ratio to specimg's; the sides alternate their order from
round to round (``--rounds``), and with several rounds the medians are printed. Both CNN sides run
``torch.set_num_threads(--threads)`` (default 2).

Re-run: ``make bench-peers`` (creates ``.venv-peers`` with OpenSoundscape first, once), or
``.venv/bin/python benchmarks/peers.py [--epochs E] [--rounds N] [--quick] [--out FILE]``
(``--quick``: a smoke run, 120 files and 1 epoch, about 1 minute). The full run (E=8, one round) took
about 9 minutes on 2 CPU cores (516 s of sides) (several times longer while other jobs load the cores);
``benchmarks/results/peers-2026-12-07.txt`` is its report. ``--oss-bypass augmentations`` and ``--oss-sgd``
are diagnostics: OpenSoundscape without its augmentations, or with specimg's SGD.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "datasets" / "fsdd"
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
BACKBONE = "tf_efficientnet_lite0"
SIDES = ("specimg", "opensoundscape", "opensoundscape_noaug", "anchor")
#: OpenSoundscape's second row: its pipeline with every augmentation bypassed (as its docs show how)
NOAUG = "opensoundscape_noaug"
#: OpenSoundscape's settings (batch as specimg's preset; the rest are its defaults or follow from the data)
OSS_BATCH = 32
OSS_WORKERS = 0  # DataLoader workers (--oss-workers); 0 = in the training process, its default
SAMPLE_SECONDS = 1.0
SAMPLE_RATE = 8000
IMAGE = 64


# ----------------------------------------------------------------------------- data
def _table(fsdd: Path, quick: bool) -> pd.DataFrame:
    """The FSDD table (``path`` absolute, ``label`` str) with ``fold``: 0 held out, 1 training."""
    from specimg.data import file_folds

    table = pd.read_csv(fsdd / "labels.csv", dtype={"label": str, "speaker": str})
    if quick:  # 2 files per speaker and digit: the same speakers fall in fold 0 (checked below)
        table = table.sample(frac=1.0, random_state=0).groupby(["speaker", "label"]).head(2).sort_index()
    table = table.reset_index(drop=True)
    table["path"] = [str((fsdd / p).resolve()) for p in table["path"]]
    folds = file_folds(table, n_splits=3, group_column="speaker", seed=0)
    table["fold"] = np.where(folds == 0, 0, 1)
    return table


def _scores(truth: List[str], pred: List[str]) -> Dict[str, float]:
    t, p = np.asarray(truth, dtype=object), np.asarray(pred, dtype=object)
    recalls = [float(np.mean(p[t == c] == c)) for c in sorted(set(t.tolist()))]
    return {"accuracy": float(np.mean(t == p)), "uar": float(np.mean(recalls))}


# ----------------------------------------------------------------------------- the specimg side
def _run_specimg(csv: Path, table: pd.DataFrame, work: Path, epochs: int) -> Dict[str, Any]:
    from specimg.presets import fsdd_render_config, fsdd_train_config
    from specimg.training import Callback, train_cv

    config = fsdd_train_config(epochs=epochs, n_splits=3, select_epoch="last", validate_last=1)
    marks: Dict[str, float] = {}

    class _Mark(Callback):
        def on_train_start(self, trainer: Any) -> None:
            marks.setdefault("fit_start", time.perf_counter())

        def on_train_end(self, trainer: Any, result: Any) -> None:
            marks["fit_end"] = time.perf_counter()

    run_dir = work / "specimg_run"
    t0 = time.perf_counter()
    train_cv(str(csv), run_dir, config, render_config=fsdd_render_config(), folds=[0], callbacks=[_Mark()],
             resume=False, verbose=False, anchor=False)  # the anchor is timed as its own row
    t1 = time.perf_counter()
    oof = pd.read_csv(run_dir / "oof_files.csv", dtype={"label": str, "prediction": str})
    held = table[table["fold"] == 0]
    if sorted(oof["path"].map(lambda p: str(Path(p).resolve()))) != sorted(held["path"]) or set(oof["fold"]) != {0}:
        raise SystemExit("specimg's fold 0 is not the held-out set of this benchmark: its folds differ.")
    log = pd.read_csv(run_dir / "fold_0" / "log.csv")
    return {**_scores(oof["label"].tolist(), oof["prediction"].tolist()),
            "train_s": marks["fit_end"] - t0, "predict_s": t1 - marks["fit_end"], "total_s": t1 - t0,
            "render_s": marks["fit_start"] - t0, "epochs_run": int(len(log)),
            "log_columns": list(log.columns), "n_held": int(len(oof))}


# ----------------------------------------------------------------------------- the OpenSoundscape side
def _oss_weights(work: Path, n_classes: int) -> Path:
    """specimg's model at its start (offline ImageNet weights, fresh 10-class head) as a state dict."""
    import torch

    from specimg.models import create_backbone

    torch.manual_seed(0)
    model = create_backbone(BACKBONE, num_classes=n_classes, weights="offline")
    path = work / f"{BACKBONE}_offline_init.pt"
    torch.save(model.state_dict(), path)
    return path


def _run_oss(table: pd.DataFrame, work: Path, epochs: int, threads: int, weights: Path,
             python: Path, workers: int, bypass: List[str], sgd: bool) -> Dict[str, Any]:
    job = {"train": str(work / "oss_train.csv"), "held": str(work / "oss_held.csv"), "weights": str(weights),
           "epochs": epochs, "threads": threads, "classes": sorted(table["label"].unique().tolist()),
           "out": str(work / "oss_out"), "batch_size": OSS_BATCH, "num_workers": workers,
           "bypass": bypass, "sgd": sgd}
    table[table["fold"] == 1][["path", "label"]].to_csv(job["train"], index=False)
    table[table["fold"] == 0][["path", "label"]].to_csv(job["held"], index=False)
    job_file = work / "oss_job.json"
    job_file.write_text(json.dumps(job, indent=1))
    if not python.exists():
        return {"error": f"{python} not found: run `make bench-peers` (it creates .venv-peers with "
                         "opensoundscape==0.13.2)."}
    t0 = time.perf_counter()
    proc = subprocess.run([str(python), str(Path(__file__).resolve()), "--side", "oss", "--job", str(job_file)],
                          cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (work / "oss_stdout.txt").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return {"error": f"the OpenSoundscape subprocess exited with {proc.returncode}:\n{tail}"}
    res = json.loads((Path(job["out"]) / "result.json").read_text())
    per_file = pd.read_csv(Path(job["out"]) / "file_scores.csv")
    held = table[table["fold"] == 0].set_index("path")
    if sorted(per_file["file"]) != sorted(held.index) or per_file[job["classes"]].isna().any().any():
        raise SystemExit("OpenSoundscape did not score every held-out file once (see oss_stdout.txt).")
    pred = [job["classes"][i] for i in per_file[job["classes"]].to_numpy().argmax(axis=1)]
    truth = held.loc[per_file["file"], "label"].tolist()
    return {**_scores(truth, pred), **res, "subprocess_s": wall, "n_held": int(len(per_file))}


def _describe(params: Dict[str, Any]) -> str:
    """``{"class": AdamW, "kwargs": {"lr": 0.001}}`` -> ``'AdamW(lr=0.001)'``."""
    kwargs = ", ".join(f"{k}={v}" for k, v in params["kwargs"].items())
    return f"{params['class'].__name__}({kwargs})"


def _oss_side(job_file: Path) -> None:
    """Runs in .venv-peers: train and predict with OpenSoundscape as its docs show."""
    t_import = time.perf_counter()
    import soundfile
    import timm
    import torch
    import torchaudio

    import opensoundscape
    from opensoundscape import CNN

    imports_s = time.perf_counter() - t_import
    job = json.loads(Path(job_file).read_text())
    torch.set_num_threads(int(job["threads"]))
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    classes = list(job["classes"])
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    train = pd.read_csv(job["train"], dtype={"label": str})
    held = pd.read_csv(job["held"], dtype={"label": str})
    # labels as OpenSoundscape takes them: one row per file (index `file`), one 0/1 column per class
    train_df = pd.DataFrame(0, index=pd.Index(train["path"], name="file"), columns=classes)
    for c in classes:
        train_df[c] = (train["label"] == c).astype(int).to_numpy()

    t0 = time.perf_counter()
    network = timm.create_model(BACKBONE, num_classes=len(classes))
    network.load_state_dict(torch.load(job["weights"], map_location="cpu", weights_only=True))
    model = CNN(architecture=network, classes=classes, sample_duration=SAMPLE_SECONDS, sample_rate=SAMPLE_RATE,
                single_target=True, height=IMAGE, width=IMAGE, channels=3, device="cpu")
    # one epoch = one pass over the training clips: 1 s clips without overlap, the last one extended
    # (OpenSoundscape's training clips: clip_overlap=0, final_clip="extend"), i.e. ceil(duration) per file
    n_clips = int(sum(max(1, math.ceil(soundfile.info(p).duration / SAMPLE_SECONDS - 1e-9)) for p in train["path"]))
    steps_per_epoch = math.ceil(n_clips / int(job["batch_size"]))
    steps = steps_per_epoch * int(job["epochs"])
    model.lr_scheduler_params["kwargs"]["max_steps"] = steps  # the default schedule spans 1,000 steps
    if job.get("sgd"):  # --oss-sgd: specimg's optimizer instead of OpenSoundscape's default AdamW
        model.optimizer_params = {"class": torch.optim.SGD, "classifier_lr": None,
                                  "kwargs": {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}}
    for name in job.get("bypass", []):  # --oss-bypass: augmentations switched off, as its docs show
        if name == "augmentations":
            for action in model.preprocessor.pipeline:
                if getattr(action, "is_augmentation", False):
                    action.bypass = True
        else:
            model.preprocessor.pipeline[name].bypass = True
    model.verbose = 1
    model.train(train_df, None, steps=steps, batch_size=int(job["batch_size"]), num_workers=int(job["num_workers"]),
                save_path=str(out), log_interval=steps_per_epoch, validation_interval=steps + 1,
                invalid_samples_log=str(out / "invalid_training_samples.log"), progress_bar=False,
                reload_best_at_end=False)
    t1 = time.perf_counter()
    scores = model.predict(held["path"].tolist(), batch_size=int(job["batch_size"]),
                           num_workers=int(job["num_workers"]), activation_layer="softmax", progress_bar=False)
    per_file = scores.groupby(level="file", sort=False).mean()  # a file's score: the mean of its clips'
    t2 = time.perf_counter()
    per_file.reset_index().to_csv(out / "file_scores.csv", index=False)
    result = {"train_s": t1 - t0, "predict_s": t2 - t1, "total_s": t2 - t0, "imports_s": imports_s,
              "n_train_clips": n_clips, "n_held_clips": int(len(scores)), "steps": steps,
              "steps_per_epoch": steps_per_epoch, "optimizer": _describe(model.optimizer_params),
              "scheduler": _describe(model.lr_scheduler_params), "pipeline": list(model.preprocessor.pipeline.index),
              "bypassed": [k for k, a in model.preprocessor.pipeline.items() if getattr(a, "bypass", False)],
              "versions": {"opensoundscape": opensoundscape.__version__, "torch": torch.__version__,
                           "torchaudio": torchaudio.__version__, "timm": timm.__version__,
                           "python": platform.python_version()},
              "threads": torch.get_num_threads()}
    (out / "result.json").write_text(json.dumps(result, indent=1))


# ----------------------------------------------------------------------------- the anchor
def _run_anchor(table: pd.DataFrame) -> Dict[str, Any]:
    from specimg.presets import fsdd_render_config
    from specimg.tasks import resolve_task
    from specimg.training import fit_anchor

    files = table.assign(abspath=table["path"], label=table["label"].astype(str))
    folds = np.where(table["fold"].to_numpy() == 0, 0, -1)  # -1: trains every fold; only fold 0 is scored
    task = resolve_task(files)
    classes = sorted(files["label"].unique().tolist())
    t0 = time.perf_counter()
    out = fit_anchor(files, folds, task, classes, fsdd_render_config(), seed=0, workers=2)
    t1 = time.perf_counter()
    return {"accuracy": out["pooled"]["accuracy"], "uar": out["pooled"]["uar"], "train_s": None, "predict_s": None,
            "total_s": t1 - t0, "own_seconds": out["seconds"], "n_held": out["n_files"],
            "failed": len(out.get("failed") or {})}


# ----------------------------------------------------------------------------- report
def _fmt(v: Optional[float], digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _median(rows: List[Dict[str, Any]], key: str) -> Optional[float]:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.median(vals)) if vals else None


def _report(args: argparse.Namespace, table: pd.DataFrame, results: Dict[str, List[Dict[str, Any]]],
            orders: List[List[str]], command: str) -> str:
    import sklearn
    import torch

    import specimg

    held, train = table[table["fold"] == 0], table[table["fold"] == 1]
    oss = next((r for r in results["opensoundscape"] + results[NOAUG] if "error" not in r), None)
    noaug = next((r for r in results[NOAUG] if "error" not in r), None)
    lines = [
        "specimg vs OpenSoundscape vs an MFCC + LightGBM anchor on FSDD, speakers held out (benchmarks/peers.py)",
        "",
        f"command:   {command}",
        f"date:      {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"machine:   {platform.machine()}, {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), no GPU, "
        f"shared (other processes ran alongside); torch.set_num_threads({args.threads}) on both CNN sides",
        f"data:      {args.fsdd} ({len(table)} files{', --quick subset' if args.quick else ''}): "
        f"{len(train)} training files ({', '.join(sorted(train['speaker'].unique()))}), {len(held)} held out "
        f"({', '.join(sorted(held['speaker'].unique()))}) = fold 0 of specimg.data.file_folds(n_splits=3, "
        "group_column='speaker', seed=0); the same files for every side",
        f"epochs:    {args.epochs}   rounds: {args.rounds}   order: "
        + "; ".join(f"round {i + 1}: {', '.join(o)}" for i, o in enumerate(orders)),
        f"versions:  specimg {specimg.__version__} (torch {torch.__version__}, python {platform.python_version()}, "
        f"scikit-learn {sklearn.__version__})"
        + (f"; opensoundscape {oss['versions']['opensoundscape']} (torch {oss['versions']['torch']}, torchaudio "
           f"{oss['versions']['torchaudio']}, timm {oss['versions']['timm']}, python {oss['versions']['python']}, "
           "in .venv-peers)" if oss else ""),
        "",
        ("medians over the rounds; " if args.rounds > 1 else "")
        + "accuracy and UAR on the held-out files; seconds are wall seconds",
        f"{'side':<22}{'accuracy':>9}{'UAR':>8}{'train_s':>9}{'predict_s':>10}{'total_s':>9}{'x specimg':>10}",
    ]
    base = _median(results["specimg"], "total_s")
    for side in SIDES:
        rows = [r for r in results[side] if "error" not in r]
        if not results[side]:
            continue
        if not rows:
            lines.append(f"{side:<22}{'failed (see below)':>44}")
            continue
        total = _median(rows, "total_s")
        ratio = f"{total / base:.2f}" if base and total else "-"
        lines.append(f"{side:<22}{_median(rows, 'accuracy'):>9.4f}{_median(rows, 'uar'):>8.4f}"
                     f"{_fmt(_median(rows, 'train_s')):>9}{_fmt(_median(rows, 'predict_s')):>10}"
                     f"{_fmt(total):>9}{ratio:>10}")
    if args.rounds > 1:
        lines += ["", "per round (accuracy, total_s):"]
        for side in (s for s in SIDES if results[s]):
            lines.append(f"  {side:<16}" + "  ".join(f"{r['accuracy']:.4f} {r['total_s']:.1f}s" if "error" not in r
                                                      else "failed" for r in results[side]))
    sp = [r for r in results["specimg"] if "error" not in r]
    an = [r for r in results["anchor"] if "error" not in r]
    lines += ["", "how each side ran:"]
    if sp:
        lines.append(f"  specimg: train_cv(..., folds=[0]) with fsdd_train_config(epochs={args.epochs}, n_splits=3, "
                     "select_epoch='last', validate_last=1) and fsdd_render_config(): tf_efficientnet_lite0, offline "
                     "ImageNet weights, 64x64 mel images of 1 s windows at a 0.5 s hop (zero-padded), SGD lr 0.01, "
                     "batches of 32, flip + masks + stretches, flip TTA. train_s runs from the call to the end of "
                     f"training: rendering the images ({_fmt(_median(sp, 'render_s'))} s), building the model, "
                     "the epochs and the last epoch's validation pass over the held-out files (validate_last=1); "
                     "predict_s is the held-out prediction after it and writing the run's tables.")
    if oss:
        lines.append(
            f"  opensoundscape: CNN(architecture=timm tf_efficientnet_lite0 with the same offline ImageNet weights, "
            f"sample_duration={SAMPLE_SECONDS}, sample_rate={SAMPLE_RATE}, single_target=True, height={IMAGE}, "
            f"width={IMAGE}, channels=3) with its default SpectrogramPreprocessor (linear dB spectrogram, "
            "512-sample windows, 50 % overlap, bandpass 0-4 kHz, its default augmentations; short files extended "
            f"with silence at the end); train(steps={oss['steps']} = {args.epochs} x {oss['steps_per_epoch']} "
            f"batches of {OSS_BATCH} over its {oss['n_train_clips']} 1 s training clips, num_workers={args.oss_workers}, "
            "no validation set, the last step kept), its default optimizer "
            f"{oss['optimizer']} and scheduler {oss['scheduler']} (max_steps set to the run's steps); "
            f"predict(batch_size={OSS_BATCH}, num_workers={args.oss_workers}, activation_layer='softmax') on {oss['n_held_clips']} held-out clips, "
            "clip scores averaged per file, argmax. train_s includes building the model; the subprocess's start "
            f"and imports ({_fmt(_median(results['opensoundscape'], 'imports_s'))} s of imports, "
            f"{_fmt(_median(results['opensoundscape'], 'subprocess_s'))} s subprocess wall) are not counted. "
            "No flip TTA (OpenSoundscape has none)."
            + (f" Diagnostic changes: bypassed {args.oss_bypass}." if args.oss_bypass else "")
            + (" Diagnostic change: SGD(lr=0.01, momentum=0.9, weight_decay=1e-4) instead of its AdamW."
               if args.oss_sgd else ""))
    if noaug:
        lines.append(f"  {NOAUG}: the same, with every augmentation of its pipeline bypassed the way its docs show "
                     "(`action.bypass = True` for each action with `is_augmentation`: "
                     f"{', '.join(noaug['bypassed'])}); training and prediction then see the same images.")
    if an:
        lines.append("  anchor: specimg.training.fit_anchor (80 MFCC statistics per file + LightGBM, balanced "
                     "classes; training files fold -1, held-out files fold 0, workers=2): feature extraction of "
                     "every file, fit and prediction in one call, so only its total is timed"
                     + (f"; {an[0]['failed']} file(s) unreadable" if an[0].get("failed") else "") + ".")
    errors = [r["error"] for side in SIDES for r in results[side] if "error" in r]
    if errors:
        lines += ["", "errors:"] + ["  " + e.replace("\n", "\n  ") for e in dict.fromkeys(errors)]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="epochs of both CNNs (default 8; --quick: 1)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds, the sides' order rotated each round")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of both CNN sides")
    ap.add_argument("--quick", action="store_true", help="smoke run: 120 files (80 training), 1 epoch")
    ap.add_argument("--fsdd", type=Path, default=FSDD, help="FSDD folder with labels.csv")
    ap.add_argument("--peers-python", type=Path, default=PEERS_PYTHON, help="python of .venv-peers")
    ap.add_argument("--oss-workers", type=int, default=OSS_WORKERS, help="OpenSoundscape's DataLoader workers")
    ap.add_argument("--oss-bypass", default="", help="diagnostic: OpenSoundscape pipeline actions to bypass "
                    "(comma-separated names, or 'augmentations' for all of them); default none")
    ap.add_argument("--oss-sgd", action="store_true", help="diagnostic: specimg's SGD (lr 0.01) for OpenSoundscape")
    ap.add_argument("--sides", default=",".join(SIDES), help="comma-separated subset of " + ",".join(SIDES))
    ap.add_argument("--out", type=Path, default=None, help="also write the report here")
    ap.add_argument("--side", choices=["oss"], help=argparse.SUPPRESS)  # internal: the OpenSoundscape subprocess
    ap.add_argument("--job", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side == "oss":
        _oss_side(args.job)
        return
    args.peers_python = args.peers_python.absolute()  # the subprocess runs in the work folder; absolute(), not
    # resolve(): the venv's python is a link to the base interpreter, and resolving it would leave the venv
    if args.epochs is None:
        args.epochs = 1 if args.quick else 8
    command = shlex.join([os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT))
                          else sys.executable, os.path.relpath(__file__, ROOT) if __file__.startswith(str(ROOT))
                          else __file__, *sys.argv[1:]])
    import torch

    torch.set_num_threads(args.threads)
    sides = [s for s in SIDES if s in args.sides.split(",")]
    work = Path(tempfile.mkdtemp(prefix="specimg_peers_"))
    table = _table(args.fsdd, args.quick)
    held_speakers = sorted(table.loc[table["fold"] == 0, "speaker"].unique())
    if args.quick and held_speakers != sorted(_table(args.fsdd, False).query("fold == 0")["speaker"].unique()):
        raise SystemExit(f"the --quick subset holds out {held_speakers}, not the full run's speakers")
    csv = work / "fsdd.csv"
    table[["path", "label", "speaker"]].to_csv(csv, index=False)
    weights = (_oss_weights(work, table["label"].nunique())
               if {"opensoundscape", NOAUG} & set(sides) else None)
    results: Dict[str, List[Dict[str, Any]]] = {s: [] for s in SIDES}
    orders = []
    for r in range(args.rounds):
        order = sides[r % len(sides):] + sides[:r % len(sides)]
        orders.append(order)
        for side in order:
            t0 = time.perf_counter()
            rdir = work / f"round{r}_{side}"
            rdir.mkdir()
            if side == "specimg":
                res = _run_specimg(csv, table, rdir, args.epochs)
            elif side in ("opensoundscape", NOAUG):
                bypass = ["augmentations"] if side == NOAUG else [b for b in args.oss_bypass.split(",") if b]
                res = _run_oss(table, rdir, args.epochs, args.threads, weights, args.peers_python, args.oss_workers,
                               bypass, args.oss_sgd)
            else:
                res = _run_anchor(table)
            results[side].append(res)
            what = res["error"].splitlines()[0] if "error" in res else f"accuracy {res['accuracy']:.4f}"
            print(f"[round {r + 1}] {side}: {what}, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    report = _report(args, table, results, orders, command)
    print(report, end="")
    print(f"(work files: {work})", file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)


if __name__ == "__main__":
    main()

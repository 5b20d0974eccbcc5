"""kill -9 in the middle of a long job, then the same command again: the result equals an uninterrupted run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from specimg.spectrogram import ImageCache

RENDER_OPTS = ["--sample-rate", "8000", "--seconds", "1", "--hop", "0.5", "--n-fft", "256", "--hop-length", "64",
               "--n-mels", "32", "--image-size", "32x48", "--quiet"]


def _run_and_kill(cmd, ready, timeout=120.0):
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` is true; return whether it was killed mid-run."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < timeout:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    proc.wait()
    return False


def _rendered(out: Path) -> int:
    """Files a render in progress has recorded as finished: a line each in ``.partial-*/done.jsonl``."""
    return sum(len(p.read_text().splitlines()) for p in out.glob(".partial-*/done.jsonl"))


def test_kill9_render_then_resume(fsdd_subset_csv, tmp_path):
    cli = [sys.executable, "-m", "specimg", "render", str(fsdd_subset_csv)]
    out = tmp_path / "killed"
    killed = _run_and_kill(cli + ["--out", str(out), *RENDER_OPTS],
                           lambda: _rendered(out) >= 10)
    assert killed, "the render finished before it could be killed"
    assert not (out / "config.json").exists()  # no finished-looking cache after a kill
    done_before = _rendered(out)
    subprocess.run(cli + ["--out", str(out), *RENDER_OPTS], check=True, capture_output=True)
    subprocess.run(cli + ["--out", str(tmp_path / "clean"), *RENDER_OPTS], check=True, capture_output=True)
    a, b = ImageCache.open(out), ImageCache.open(tmp_path / "clean")
    assert done_before >= 10 and len(a.files) == 60
    np.testing.assert_array_equal(a.images, b.images)
    pd.testing.assert_frame_equal(a.segments, b.segments)
    pd.testing.assert_frame_equal(a.files, b.files)


# ----------------------------------------------------------------------------- train and experiment
#: A tiny backbone for the subprocesses: a ``python -m specimg`` process cannot see a backbone registered in this
#: test module, so ``kill_net.py`` registers it and a ``sitecustomize.py`` beside it (on PYTHONPATH) imports it at
#: interpreter start. The in-process reference runs load the same file.
KILL_NET = "specimg_test_kill_net"
KILL_NET_SOURCE = f'''"""A tiny backbone registered as {KILL_NET!r} (written by tests/test_kill_resume.py)."""
import warnings

from torch import nn

from specimg.models import list_backbones, register_backbone


class KillNet(nn.Module):
    def __init__(self, num_classes, drop_rate=0.0):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):  # x: (B, 3, H, W)
        return self.fc(self.features(x).flatten(1))  # (B, num_classes)


if not list_backbones({KILL_NET!r}):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        register_backbone({KILL_NET!r}, KillNet)
'''


@pytest.fixture(scope="module")
def kill_env(tmp_path_factory):
    """The environment of ``python -m specimg`` subprocesses that know the kill net (registered in this process
    too), with one thread per process."""
    import importlib.util

    folder = tmp_path_factory.mktemp("kill_net")
    (folder / "kill_net.py").write_text(KILL_NET_SOURCE)
    (folder / "sitecustomize.py").write_text("import kill_net  # noqa: F401\n")
    spec = importlib.util.spec_from_file_location("kill_net", folder / "kill_net.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(folder), str(Path(__file__).resolve().parents[1]),
                                           os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return env


def _run_and_kill_env(cmd, ready, env, timeout=240.0):
    """Like :func:`_run_and_kill` with an environment; also returns the stderr of the process (kept in a file: a
    full pipe would stall a chatty process before it gets where it should be killed)."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, env=env)
        t0 = time.monotonic()
        killed = False
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            if ready():
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.01)
        proc.wait()
        log.seek(0)
        return killed, log.read().decode(errors="replace")


def _same_checkpoint(a, b):
    import torch

    sa, sb = torch.load(a, map_location="cpu", weights_only=False), torch.load(b, map_location="cpu",
                                                                               weights_only=False)
    assert sa["epoch"] == sb["epoch"] and sa["score"] == sb["score"], (a, sa["epoch"], sb["epoch"])
    assert sa["model"].keys() == sb["model"].keys()
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), (a, k)


TRAIN_OPTS = ["--backbone", KILL_NET, "--weights", "none", "--epochs", "30", "--folds", "2", "--batch-size", "16",
              "--optimizer", "adamw", "--lr", "0.01", "--device", "cpu", "--workers", "0", "--seed", "3"]


def test_kill9_train_then_resume(fsdd_subset_csv, kill_env, tmp_path, capsys, one_thread):
    """kill -9 once fold 0 has finished an epoch, run the same command again: it continues from ``last.pt`` and
    ends with the same weights and scores as a run that was never interrupted."""
    import torch

    from specimg.cli import main

    cache = tmp_path / "cache"
    assert main(["render", str(fsdd_subset_csv), "--out", str(cache), *RENDER_OPTS]) == 0
    cli = [sys.executable, "-m", "specimg", "train", str(cache)]
    run = tmp_path / "killed"
    killed, err = _run_and_kill_env(cli + ["--out", str(run), *TRAIN_OPTS],
                                    lambda: (run / "fold_0" / "last.pt").exists(), kill_env)
    assert killed, f"the training finished (or failed) before it could be killed:\n{err}"
    assert not (run / "fold_1" / "fold.json").exists()  # killed mid-run
    assert not (run / "fold_0" / "fold.json").exists(), "fold 0 finished before the kill: use more epochs"
    saved = int(torch.load(run / "fold_0" / "last.pt", map_location="cpu", weights_only=True)["epoch"])
    capsys.readouterr()
    assert main(cli[3:] + ["--out", str(run), *TRAIN_OPTS]) == 0  # the same command again (in-process: faster)
    # it continued from last.pt: the first epoch fold 0 ran again is the one after the saved one
    redone = [int(e) for e in re.findall(r"fold 0 epoch (\d+)/30:", capsys.readouterr().err)]
    assert 1 <= saved < 30 and redone[0] == saved + 1 and redone[-1] == 30, (saved, redone)
    assert main(["train", str(cache), "--out", str(tmp_path / "clean"), *TRAIN_OPTS]) == 0
    clean = tmp_path / "clean"
    for k in (0, 1):
        _same_checkpoint(run / f"fold_{k}" / "best.pt", clean / f"fold_{k}" / "best.pt")
    for name in ("oof_files.csv", "oof_segments.csv", "folds.csv"):
        assert (run / name).read_text() == (clean / name).read_text(), name
    assert json.loads((run / "metrics.json").read_text()) == json.loads((clean / "metrics.json").read_text())


def test_kill9_experiment_then_resume(fsdd_subset_csv, kill_env, tmp_path, capsys, one_thread):
    """kill -9 once the first step of an experiment is recorded, run the same command again: the finished steps
    are skipped and every output equals that of an experiment that was never interrupted."""
    import yaml

    from specimg.cli import main

    recipe = {
        "name": "kill",
        "data": {"train": str(fsdd_subset_csv), "test_filter": {"path": r"_1\.wav$"}, "group_column": "speaker"},
        "render": {"sample_rate": 8000, "seconds": 1.0, "hop": 0.5, "n_fft": 256, "hop_length": 64, "n_mels": 32,
                   "image_size": [32, 48]},
        "train": {"weights": "none", "schedule": {"epochs": 6}, "optim": {"batch_size": 16, "optimizer": "adamw",
                                                                        "lr": 0.01},
                  "runtime": {"device": "cpu", "num_workers": 0}},
        "folds": 3,
        "models": [{"name": "a", "backbone": KILL_NET}, {"name": "b", "backbone": KILL_NET,
                                                              "train": {"optim": {"lr": 0.003}}}],
        "stacking": {"methods": ["mean", "lgbm"], "blend": "equal",
                     "lgbm": {"n_estimators": 10, "min_child_samples": 3}},
    }
    path = tmp_path / "kill.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "killed"
    argv = ["experiment", str(path), "--out", str(out)]
    killed, err = _run_and_kill_env([sys.executable, "-m", "specimg", *argv, "--quiet"],
                                    lambda: any((out / "steps").glob("*.json")), kill_env)
    assert killed, f"the experiment finished (or failed) before it could be killed:\n{err}"
    finished = {json.loads(p.read_text())["step"] for p in (out / "steps").glob("*.json")}
    assert finished and not (out / "report.md").exists()
    capsys.readouterr()
    assert main(argv) == 0  # the same command again (in-process: faster)
    log = capsys.readouterr().err
    skipped = set(re.findall(r"^\[skip\] (\S+)", log, flags=re.M))
    ran = set(re.findall(r"^\[run \] (\S+)", log, flags=re.M))
    assert finished <= skipped and not finished & ran, (finished, skipped, ran)
    assert "round1/train/a" in ran and "report" in ran

    clean = tmp_path / "clean"
    assert main(["experiment", str(path), "--out", str(clean), "--quiet"]) == 0
    # every table and report: data, caches, models' out-of-fold and test predictions, stackers, blend, report
    outputs = sorted(p.relative_to(clean) for p in clean.rglob("*") if p.suffix in (".csv", ".md")
                     and not p.parent.name.startswith("fold_"))
    names = {p.as_posix() for p in outputs}
    must = {f"models/{m}/{t}" for m in ("a", "b") for t in ("oof_files.csv", "oof_segments.csv", "folds.csv",
                                                             "test_files.csv")}
    must |= {f"stack/{s}/{t}" for s in ("mean", "lgbm", "blend") for t in ("oof_files.csv", "test_files.csv")}
    must |= {"report.md", "report.csv", "report/report.md", "report/test/report.md"}
    assert must <= names, sorted(must - names)
    assert len(outputs) >= 32
    for rel in outputs:
        assert (out / rel).read_text() == (clean / rel).read_text(), rel
    for model in ("a", "b"):
        for k in range(3):
            _same_checkpoint(out / "models" / model / f"fold_{k}" / "best.pt",
                             clean / "models" / model / f"fold_{k}" / "best.pt")

"""Experiments at full scale: a recipe model trained on images made on the fly (no image cache), and
`torchrun -m specimg experiment` (training data-parallel, rank 0 alone renders, stacks, pseudo-labels, reports),
killed with -9 and resumed to the same results as an uninterrupted run.

Synthetic tones (3 pitches, 4 'speakers'; the same as tests/test_distributed.py) keep each run to seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import warnings

import numpy as np
import pandas as pd
import pytest
import yaml
from torch import nn

from specimg.experiment import run_experiment
from specimg.models import list_backbones, register_backbone
from specimg.training import Run

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
PITCH_NET = "specimg_test_pitch_net"


class PitchNet(nn.Module):
    """A tiny CNN that keeps coarse frequency (rows) through its pooling, enough to tell three pitches apart."""

    def __init__(self, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((8, 1)))
        self.fc = nn.Linear(8 * 8, num_classes)

    def forward(self, x):  # (B, 3, H, W) -> (B, num_classes)
        return self.fc(self.features(x).flatten(1))


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    if not list_backbones(PITCH_NET):
        register_backbone(PITCH_NET, PitchNet)


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    """48 noisy tones at 3 pitches (one class each), 4 'speakers'; take 3 of each speaker is the test set."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("exp_tones")
    rng = np.random.default_rng(0)
    sr, rows = 8000, []
    t = np.arange(int(0.8 * sr)) / sr
    for c, f0 in enumerate((300.0, 900.0, 2000.0)):
        for j in range(16):
            f = f0 * (1 + 0.05 * rng.standard_normal())
            y = 0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(len(t))
            sf.write(root / f"c{c}_{j}_t{j // 4}.wav", y.astype(np.float32), sr)
            rows.append({"path": f"c{c}_{j}_t{j // 4}.wav", "label": f"tone{c}", "speaker": f"s{j % 4}"})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root / "labels.csv"


def recipe(csv: Path, *, pseudo: bool = False, backbone: str = "resnet10t") -> dict:
    return {
        "name": "scale",
        "data": {"train": str(csv), "test_filter": {"path": r"_t3\.wav$"}, "group_column": "speaker"},
        "render": {"sample_rate": 8000, "seconds": 0.5, "hop": 0.25, "n_fft": 256, "hop_length": 32, "n_mels": 32,
                   "image_size": [32, 32]},
        "train": {"weights": "none", "schedule": {"epochs": 4, "warmup_epochs": 0},
                  "optim": {"batch_size": 8, "optimizer": "adamw", "lr": 0.01}, "augment": {"hflip": 0.0},
                  "runtime": {"device": "cpu", "num_workers": 0}},
        "folds": 2,
        "models": [{"name": "cached", "backbone": backbone},
                   {"name": "fly", "backbone": backbone, "train": {"images": "on-the-fly"}}],
        "stacking": {"methods": ["mean", "lgbm"], "blend": "equal",
                     "lgbm": {"n_estimators": 10, "min_child_samples": 2}},
        "pseudo": {"enabled": pseudo, "threshold": 0.34, "rounds": 1},
    }


def test_a_model_trained_on_the_fly_skips_the_render_and_joins_the_stack(tones, tmp_path, one_thread):
    out = tmp_path / "exp"
    res = run_experiment(recipe(tones, pseudo=True, backbone=PITCH_NET), out, verbose=False)
    caches = sorted(p.name for p in (out / "caches").iterdir())
    assert len(caches) == 1  # the cached model's render only; the on-the-fly model rendered nothing
    renders = [k for k in res.steps if k.startswith("render/")]
    assert renders == [f"render/{caches[0]}/train", f"render/{caches[0]}/test"]
    fly = Run.open(out / "models" / "fly")
    assert fly.images == "on-the-fly" and fly.train_config.images == "on-the-fly"
    assert not (out / "models" / "fly" / "cache").exists() and not any((out / "models" / "fly").glob("**/*.npy"))
    assert (out / "waves").is_dir()  # its decoded audio
    for name in ("cached", "fly"):
        run = Run.open(out / "models" / name)
        assert len(run.oof_files) == 36 and len(run.test_files) == 12
    rows = res.table.set_index(["round", "name"])
    assert {(1, "cached"), (1, "fly"), (1, "blend"), (2, "fly"), (2, "blend")} <= set(rows.index)
    assert rows.loc[(1, "fly"), "oof_accuracy"] > 0.5
    # round 2: the on-the-fly model trained on the round's table, pseudo-labelled files never validated
    folds2 = Run.open(out / "round2" / "models" / "fly").folds
    picked = pd.read_csv(out / "round2" / "pseudo_labels.csv")
    assert len(picked) > 0 and (folds2["fold"] == -1).sum() == len(picked)
    again = run_experiment(recipe(tones, pseudo=True, backbone=PITCH_NET), out, verbose=False)
    assert all(v == "skipped" for v in again.steps.values())


def _command(recipe_file: Path, out: Path) -> list:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "specimg",
            "experiment", str(recipe_file), "--out", str(out), "--quiet"]


def _tables(out: Path) -> dict:
    # every table but the per-epoch logs (their 'seconds' column is a timing)
    names = [p for p in sorted(out.glob("**/*.csv")) if "steps" not in p.parts and "caches" not in p.parts
             and "waves" not in p.parts and p.name != "log.csv"]
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in names}


def test_torchrun_experiment_killed_and_resumed_equals_an_uninterrupted_run(tones, tmp_path):
    recipe_file = tmp_path / "scale.yaml"
    rec = recipe(tones)
    rec["train"]["schedule"]["epochs"] = 2
    recipe_file.write_text(yaml.safe_dump(rec))
    clean = tmp_path / "clean"
    proc = subprocess.run(_command(recipe_file, clean), env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "report:" in proc.stdout and proc.stdout.count("report:") == 1  # rank 0 alone reports
    records = sorted(p.name for p in (clean / "steps").iterdir())
    assert "round1__train__fly.json" in records and "report.json" in records
    assert len(Run.open(clean / "models" / "fly").finished_folds()) == 2

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(recipe_file, killed), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    target = killed / "models" / "fly" / "fold_0" / "last.pt"  # mid-training of the second model
    while time.time() < deadline and not target.exists() and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers
    proc.wait()
    assert target.exists() and not (killed / "report.md").exists(), "the kill missed the training"
    proc = subprocess.run(_command(recipe_file, killed), env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "skipped" in proc.stdout
    want, got = _tables(clean), _tables(killed)
    assert set(got) == set(want) and len(want) >= 10
    assert [k for k in want if got[k] != want[k]] == []

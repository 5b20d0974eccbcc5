"""Recipes and the experiment runner (specimg.experiment): validation, an end-to-end run on real FSDD audio,
resumption, the pseudo-label guard, and the shipped recipes."""

from __future__ import annotations

import argparse
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from specimg.exceptions import ParameterError
from specimg.experiment import load_recipe, run_experiment
from specimg.experiment._cli import add_experiment_parser
from specimg.models import register_backbone
from specimg.predict.aggregate import read_predictions

NET = "specimg_test_experiment_net"
RECIPES = Path(__file__).resolve().parents[1] / "examples" / "recipes"


class TinyNet(nn.Module):
    """Two strided convolutions, global pooling, a linear head."""

    def __init__(self, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):  # x: (B, 3, H, W)
        return self.fc(self.features(x).flatten(1))  # (B, num_classes)


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    register_backbone(NET, TinyNet)


pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one thread is faster on 2 cores


@pytest.fixture(scope="module")
def fsdd90(fsdd_dir, tmp_path_factory) -> Path:
    """90 FSDD files: takes 0-2 of every digit by 3 speakers (absolute paths); take 2 becomes the test set."""
    df = pd.read_csv(fsdd_dir / "labels.csv", dtype={"label": str})
    take = df["path"].str.extract(r"_(\d+)\.wav$")[0].astype(int)
    sub = df[take.isin([0, 1, 2]) & df["speaker"].isin(["george", "jackson", "lucas"])].copy()
    sub["path"] = [str(fsdd_dir / p) for p in sub["path"]]
    out = tmp_path_factory.mktemp("fsdd90") / "fsdd90.csv"
    sub[["path", "label", "speaker"]].to_csv(out, index=False)
    return out


def tiny_recipe(csv: Path) -> dict:
    return {
        "name": "tiny",
        "data": {"train": str(csv), "test_filter": {"path": r"_2\.wav$"}, "group_column": "speaker"},
        "render": {"sample_rate": 8000, "seconds": 1.0, "hop": 0.5, "n_fft": "32ms", "hop_length": 64,
                   "n_mels": 32, "image_size": [32, 48]},
        "train": {"weights": "none", "schedule": {"epochs": 1, "warmup_epochs": 0},
                  "optim": {"batch_size": 8, "optimizer": "adamw", "lr": 0.01},
                  "runtime": {"device": "cpu", "num_workers": 0}},
        "folds": 3,
        "models": [{"name": "tiny_mel", "backbone": NET},
                   {"name": "tiny_mfcc", "backbone": NET, "render": {"feature": "mfcc", "n_mfcc": 13}}],
        "stacking": {"methods": ["mean", "cnn", "lgbm"], "blend": {"cnn": 0.5, "lgbm": 0.5},
                     "cnn": {"epochs": 5}, "lgbm": {"n_estimators": 20, "min_child_samples": 3}},
        "pseudo": {"enabled": True, "threshold": 0.11, "rounds": 1},
    }


@pytest.fixture(scope="module")
def experiment(fsdd90, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("exp") / "tiny"
    result = run_experiment(tiny_recipe(fsdd90), out, verbose=False)
    return result


# ----------------------------------------------------------------------------- end to end
def test_end_to_end_outputs(experiment):
    out = experiment.out_dir
    t = experiment.table
    names = ["tiny_mel", "tiny_mfcc", "mean of models", "cnn", "lgbm", "blend"]
    assert t.query("round == 1")["name"].tolist() == names
    assert t.query("round == 2")["name"].tolist() == names
    assert t["oof_accuracy"].between(0, 1).all() and t["test_uar"].between(0, 1).all()
    assert t.query("round == 1")["n_files"].eq(60).all()
    # one cache per distinct render config, each with a training and a test cache
    caches = sorted(p.name for p in (out / "caches").iterdir())
    assert len(caches) == 2
    for h in caches:
        assert (out / "caches" / h / "train" / "images.npy").is_file()
        assert (out / "caches" / h / "test" / "images.npy").is_file()
    for name in ("tiny_mel", "tiny_mfcc"):
        frame, classes, probs = read_predictions(out / "models" / name / "test_files.csv")
        assert len(frame) == 30 and classes == [str(d) for d in range(10)]
        assert frame["path"].str.endswith("_2.wav").all() and frame["label"].notna().all()
    for method in ("mean", "cnn", "lgbm", "blend"):
        frame, classes, probs = read_predictions(out / "stack" / method / "oof_files.csv")
        assert list(frame.columns[:4]) == ["path", "label", "fold", "prediction"] and len(frame) == 60
        assert (out / "stack" / method / "test_files.csv").is_file()
    report = (out / "report.md").read_text()
    assert "| blend | blend |" in report and "Round 2 (with pseudo-labels)" in report
    assert (out / "report" / "confusion.png").is_file() and (out / "report" / "test" / "report.md").is_file()
    assert pd.read_csv(out / "report.csv").shape[0] == len(t)
    assert set(experiment.steps.values()) == {"ran"}
    assert experiment.final == "round2/blend"


def test_pseudo_rows_are_never_validated(experiment):
    out = experiment.out_dir
    picked = pd.read_csv(out / "round2" / "pseudo_labels.csv")
    assert len(picked) > 0 and picked["confidence"].min() >= 0.11
    table = pd.read_csv(out / "round2" / "train.csv")
    assert table["pseudo"].sum() == len(picked) and (~table["pseudo"]).sum() == 60
    # the merged caches keep the pseudo rows' speakers; they share speakers with training, and the report says so
    for files_csv in (out / "round2" / "caches").glob("*/train/files.csv"):
        files = pd.read_csv(files_csv)
        assert files["pseudo"].sum() == len(picked) and files["speaker"].notna().all()
    assert "**Caveat**: the test set shares 3 `speaker` value(s)" in (out / "report.md").read_text()
    for name in ("tiny_mel", "tiny_mfcc"):
        run = out / "round2" / "models" / name
        folds = pd.read_csv(run / "folds.csv")
        is_test = folds["path"].str.endswith("_2.wav")
        assert is_test.sum() == len(picked)
        assert (folds.loc[is_test, "fold"] == -1).all() and (folds.loc[~is_test, "fold"] >= 0).all()
        oof2 = pd.read_csv(run / "oof_files.csv")
        oof1 = pd.read_csv(out / "models" / name / "oof_files.csv")
        assert sorted(oof2["path"]) == sorted(oof1["path"])  # the same 60 labelled files, no pseudo row
        # and the folds of the labelled files did not move
        np.testing.assert_array_equal(oof2.set_index("path").loc[oof1["path"], "fold"].to_numpy(),
                                      oof1["fold"].to_numpy())


def test_rerun_skips_every_step(experiment, fsdd90, monkeypatch, capsys):
    import specimg.experiment._runner as runner
    import specimg.predict
    import specimg.spectrogram
    import specimg.training

    def boom(*args, **kwargs):
        raise AssertionError("a step ran again although its inputs did not change")

    monkeypatch.setattr(specimg.training, "train_cv", boom)
    monkeypatch.setattr(specimg.spectrogram, "render_dataset", boom)
    monkeypatch.setattr(specimg.spectrogram.ImageCache, "from_arrays", boom)
    monkeypatch.setattr(specimg.predict.Predictor, "predict", boom)
    monkeypatch.setattr(runner, "stack_runs", boom)
    before = {p: p.stat().st_mtime_ns for p in experiment.out_dir.glob("**/*.csv")}
    result = run_experiment(tiny_recipe(fsdd90), experiment.out_dir, verbose=False)
    assert set(result.steps) == set(experiment.steps) and set(result.steps.values()) == {"skipped"}
    pd.testing.assert_frame_equal(result.table, experiment.table)
    assert {p: p.stat().st_mtime_ns for p in experiment.out_dir.glob("**/*.csv")} == before

    # the same through the CLI, from a YAML recipe
    recipe_file = experiment.out_dir.parent / "tiny.yaml"
    recipe_file.write_text(yaml.safe_dump(tiny_recipe(fsdd90)))
    parser = argparse.ArgumentParser(prog="specimg")
    add_experiment_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["experiment", str(recipe_file), "--out", str(experiment.out_dir), "--quiet"])
    assert args.func(args) == 0
    assert f"{len(experiment.steps)} step(s): 0 ran, {len(experiment.steps)} skipped" in capsys.readouterr().out


def test_changed_model_retrains_only_that_model(experiment, fsdd90, tmp_path, monkeypatch):
    import specimg.training

    out = tmp_path / "copy"
    shutil.copytree(experiment.out_dir, out)
    trained = []
    original = specimg.training.train_cv

    def counting(source, out_dir, config, **kwargs):
        trained.append(Path(out_dir).relative_to(out).as_posix())
        return original(source, out_dir, config, **kwargs)

    monkeypatch.setattr(specimg.training, "train_cv", counting)
    recipe = tiny_recipe(fsdd90)
    recipe["models"][1]["train"] = {"optim": {"lr": 0.02}}
    recipe["pseudo"] = {"enabled": False}
    with pytest.warns(UserWarning, match=r"Discarding the previous run .*tiny_mfcc.*train.optim.lr: 0.01 -> 0.02"):
        result = run_experiment(recipe, out, verbose=False)
    assert trained == ["models/tiny_mfcc"]
    s = result.steps
    assert s["round1/train/tiny_mel"] == "skipped" and s["round1/predict/tiny_mel"] == "skipped"
    assert s["round1/train/tiny_mfcc"] == "ran" and s["round1/predict/tiny_mfcc"] == "ran"
    assert all(v == "skipped" for k, v in s.items() if k.startswith("render/"))
    assert s["round1/stack/cnn"] == "ran" and s["round1/stack/blend"] == "ran"
    assert not any(k.startswith("round2/") for k in s)
    assert result.table["round"].unique().tolist() == [1]


# ----------------------------------------------------------------------------- validation
def _base(tmp_path) -> dict:
    csv = tmp_path / "train.csv"
    csv.write_text("path,label\na.wav,x\n")
    return tiny_recipe(csv)


@pytest.mark.parametrize("edit, match", [
    (lambda r: r.update(modles=r.pop("models")),
     r"Unknown key 'modles' in the recipe's top level.*Did you mean 'models'"),
    (lambda r: r["models"][0].update(trian={}), r"Unknown key 'trian' in models\[0\].*Did you mean 'train'"),
    (lambda r: r["train"]["schedule"].update(epoch=3),
     r"Unknown key 'epoch' in the 'train.schedule' section.*Did you mean 'epochs'"),
    (lambda r: r["render"].update(n_mfc=13), r"Unknown key 'n_mfc'.*Did you mean 'n_mfcc'"),
    (lambda r: r["stacking"].update(method=["cnn"]), r"Unknown key 'method'.*Did you mean 'methods'"),
    (lambda r: r["stacking"].update(methods=["cnn", "lgmb"]), r"'lgmb', which is not a stacker.*Did you mean 'lgbm'"),
    (lambda r: r["stacking"].update(blend={"cnn": 0.5, "xgb": 0.5}), r"names 'xgb', which is neither a stacker"),
    (lambda r: r["models"][1].update(train={"seed": 3}),
     r"'seed' is not allowed in models\[1\].train.*top-level 'seed'"),
    (lambda r: r["models"][0].update(epochs=3), r"'epochs' is not allowed in models\[0\].*under models\[0\].train"),
    (lambda r: r["models"][1]["render"].update(n_mfcc=50),
     r"In models\[1\] \(tiny_mfcc\).render.*'n_mfcc' parameter of SpectrogramConfig must be <= n_mels=32"),
    (lambda r: r["render"].update(n_fft="16 samples"), r"n_fft.*must be samples.*or milliseconds"),
    (lambda r: r["models"].append({"name": "tiny_mel", "backbone": NET}), r"repeats 'tiny_mel'"),
    (lambda r: r["models"][0].update(name="my model"), r"models\[0\].name.*must be a folder name"),
    (lambda r: r["data"].pop("test_filter"), r"pseudo.enabled is true.*no test set"),
    (lambda r: r.update(folds=1), r"'folds'.*must be an int >= 2"),
    (lambda r: r["pseudo"].update(threshold=0), r"pseudo.threshold.*\(0, 1\]"),
    (lambda r: r["data"].update(test_filter={"path": "(["}), r"data.test_filter.path.*not a valid regular expression"),
])
def test_bad_recipes_name_the_key_and_the_fix(tmp_path, edit, match):
    recipe = _base(tmp_path)
    edit(recipe)
    with pytest.raises(ParameterError, match=match):
        load_recipe(recipe)


def test_yaml_recipe_with_unknown_key_names_the_file(tmp_path):
    recipe = _base(tmp_path)
    recipe["stacking"]["blnd"] = recipe["stacking"].pop("blend")
    f = tmp_path / "r.yaml"
    f.write_text(yaml.safe_dump(recipe))
    with pytest.raises(ParameterError, match=r"Unknown key 'blnd' in the 'stacking' section \(.*r.yaml\). Did you mean "
                                             r"'blend'"):
        load_recipe(f)
    f.write_text("data: [unclosed\n")
    with pytest.raises(ParameterError, match="not valid YAML"):
        load_recipe(f)


def test_render_overrides_merge_and_milliseconds(tmp_path):
    recipe = load_recipe(_base(tmp_path))
    mel, mfcc = recipe.render_config("tiny_mel"), recipe.render_config("tiny_mfcc")
    assert mel.spectrogram.n_fft == 256 and mel.spectrogram.feature == "mel"  # 32 ms at 8 kHz
    assert mfcc.spectrogram.feature == "mfcc" and mfcc.spectrogram.n_mfcc == 13 and mfcc.spectrogram.n_mels == 32
    assert mel.hash() != mfcc.hash()
    cfg = recipe.train_config("tiny_mfcc")
    assert (cfg.n_splits, cfg.group_column, cfg.backbone, cfg.weights) == (3, "speaker", NET, "none")


def test_shipped_recipes(fsdd_dir):
    music = load_recipe(RECIPES / "music_genre.yaml")
    assert [m.backbone for m in music.models] == ["densenet169", "densenet201", "inception_resnet_v2",
                                                  "inception_v3", "resnet50", "legacy_xception"]
    rc = music.render_config("resnet50")
    assert (rc.audio.sample_rate, rc.segment.seconds, rc.segment.hop, rc.audio.min_seconds) == (22050, 20, 10, 120)
    assert set(rc.segment.class_hop.values()) == {5.0} and rc.spectrogram.image_size == (512, 512)
    assert music.stacking.blend == {"cnn": 0.45, "cnn-skip": 0.45, "lgbm": 0.1}
    assert music.pseudo.enabled and music.pseudo.threshold == 0.85
    assert {music.train_config(m).weights for m in music.models} == {"hub"}
    voice = load_recipe(RECIPES / "voice_pathology.yaml")
    assert [voice.render_config(m).spectrogram.n_mfcc for m in voice.models] == [13, 17, 21, 30, 50]
    vr, vt = voice.render_config("mfcc13"), voice.train_config("mfcc13")
    assert (vr.audio.sample_rate, vr.audio.duration, vr.spectrogram.n_fft, vr.spectrogram.hop_length) == \
        (44100, 1.0, 706, 353)
    assert (vt.optim.optimizer, vt.optim.lr, vt.optim.weight_decay, vt.task.class_weights, vt.task.metric) == \
        ("sgd", 0.01, 1e-4, "inverse", "uar")
    for name in ("music_genre_quick", "voice_pathology_quick"):
        quick = load_recipe(RECIPES / f"{name}.yaml")
        assert Path(quick.data.train).resolve() == (fsdd_dir / "labels.csv").resolve()
        assert quick.data.group_column == "speaker" and quick.folds == 3


def test_no_confident_test_file_skips_the_pseudo_round(experiment, fsdd90, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(experiment.out_dir, out)
    recipe = tiny_recipe(fsdd90)
    recipe["pseudo"]["threshold"] = 1.0  # no blended probability of these tiny models reaches 1
    result = run_experiment(recipe, out, verbose=False)
    assert result.steps["round2/pseudo-labels"] == "ran"
    assert not any(k.startswith("round2/") and k != "round2/pseudo-labels" for k in result.steps)
    assert all(v == "skipped" for k, v in result.steps.items() if k.startswith(("render/", "round1/")))
    assert result.table["round"].unique().tolist() == [1] and result.final == "round1/blend"
    assert "round 2 was not run" in result.report.read_text()

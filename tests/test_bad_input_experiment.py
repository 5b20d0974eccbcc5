"""The bad-input sweep for ``specimg experiment`` / :func:`run_experiment`.

Bad audio files in the recipe's data are left out (and listed in the report)
while the experiment runs to its end; a recipe with an unknown key, a missing
data path, an unknown model or a nonsense value fails before any work with a
message that names the key (and the recipe file) and the fix.
"""

from __future__ import annotations

import copy
import re
import shutil

import pandas as pd
import pytest
import yaml

from _cli import cli

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN_BAD = ["garbage.wav", "missing.wav", "silent.wav", "nan.wav"]
TRAIN_ODD = ["mp3inside.wav", "stereo.wav", "pcm8.wav"]  # odd but usable


@pytest.fixture(scope="module")
def data_dir(fsdd_dir, bad_batch, tmp_path_factory):
    """data.csv: 12 FSDD files (digits 3 and 7, 2 speakers, takes 0-2; take 2 is the test set) plus bad and odd
    files of the bad batch in the training and the test part."""
    root = tmp_path_factory.mktemp("bad_experiment")
    df = pd.read_csv(fsdd_dir / "labels.csv", dtype={"label": str})
    take = df["path"].str.extract(r"_(\d+)\.wav$")[0].astype(int)
    sub = df[take.isin([0, 1, 2]) & df["speaker"].isin(["george", "jackson"]) & df["label"].isin(["3", "7"])].copy()
    sub["path"] = [str(fsdd_dir / p) for p in sub["path"]]
    rows = [sub[["path", "label", "speaker"]]]
    for i, name in enumerate(TRAIN_BAD + TRAIN_ODD):
        if (bad_batch.folder / name).exists():
            shutil.copy(bad_batch.folder / name, root / name)
        rows.append(pd.DataFrame({"path": [str(root / name)], "label": ["37"[i % 2]],
                                  "speaker": ["george" if i % 2 else "jackson"]}))
    for name in ("garbage.wav", "mp3inside.wav"):  # test-set copies (take 2)
        shutil.copy(bad_batch.folder / name, root / name.replace(".wav", "_2.wav"))
        rows.append(pd.DataFrame({"path": [str(root / name.replace(".wav", "_2.wav"))], "label": ["3"],
                                  "speaker": ["george"]}))
    pd.concat(rows, ignore_index=True).to_csv(root / "data.csv", index=False)
    return root


def recipe(backbone):
    return {
        "name": "bad-input",
        "data": {"train": "data.csv", "test_filter": {"path": r"_2\.wav$"}, "group_column": "speaker"},
        "render": {"sample_rate": 8000, "seconds": 1.0, "hop": 0.5, "n_fft": 256, "hop_length": 64, "n_mels": 32,
                   "image_size": [32, 32]},
        "train": {"weights": "none", "schedule": {"epochs": 1, "warmup_epochs": 0}, "optim": {"batch_size": 8},
                  "runtime": {"device": "cpu", "num_workers": 0}},
        "folds": 2,
        "models": [{"name": "a", "backbone": backbone}, {"name": "b", "backbone": backbone,
                                                                    "train": {"optim": {"lr": 0.003}}}],
        "stacking": {"methods": ["mean", "lgbm"], "blend": "equal",
                     "lgbm": {"n_estimators": 5, "min_child_samples": 2}},
    }


def write_recipe(data_dir, name, rec):
    path = data_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(rec))
    return path


def test_experiment_runs_past_bad_audio(data_dir, bad_batch, tiny_backbone, tmp_path, capsys):
    path = write_recipe(data_dir, "good", recipe(tiny_backbone))
    out = tmp_path / "exp"
    rc, stdout, err = cli(["experiment", path, "--out", out, "--quiet"], capsys)
    assert rc == 0, err
    assert "10 step(s): 10 ran, 0 skipped" in stdout
    (cache,) = (out / "caches").iterdir()
    train_errors = pd.read_csv(cache / "train" / "errors.csv").set_index("path")["error"]
    assert sorted(p.split("/")[-1] for p in train_errors.index) == sorted(TRAIN_BAD)
    for p, e in train_errors.items():
        assert bad_batch.expected[p.split("/")[-1]] in e
    test_errors = pd.read_csv(cache / "test" / "errors.csv")
    assert test_errors["path"].str.endswith("garbage_2.wav").tolist() == [True]
    for model in ("a", "b"):
        oof = pd.read_csv(out / "models" / model / "oof_files.csv")
        names = {p.split("/")[-1] for p in oof["path"]}
        assert len(oof) == 8 + len(TRAIN_ODD)  # 8 FSDD files (takes 0-1) and the odd but usable ones
        assert set(TRAIN_ODD) <= names and not names & set(TRAIN_BAD)
        test = pd.read_csv(out / "models" / model / "test_files.csv")
        assert len(test) == 5 and test["path"].str.endswith("_2.wav").all()  # 4 FSDD files (take 2) + the MP3
        assert test["path"].str.endswith("mp3inside_2.wav").sum() == 1
    report = (out / "report.md").read_text()
    assert "4 training file(s) could not be rendered and were left out" in report
    assert "1 test file(s) could not be rendered and were left out" in report and "garbage_2.wav" in report
    assert "| blend | blend |" in report


def _set(rec, keys, value):
    node = rec
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value


#: case -> (change to the recipe, patterns of the error, whether OUT may exist (data-dependent checks))
RECIPES = {
    "unknown_top_key": (lambda r: r.update(epochs=3),
                        [r"Unknown key 'epochs' in the recipe's top level \(.*unknown_top_key\.yaml\)",
                         r"Valid keys: name, data, render, train, models"], False),
    "unknown_train_key": (lambda r: r["train"]["schedule"].update(epocs=3),
                          [r"Unknown key 'epocs' in the 'train.schedule' section", r"Did you mean 'epochs'\?"],
                          False),
    "misspelt_flat_train_key": (lambda r: r["train"].update(epocs=3),
                                [r"Unknown key 'epocs' in the 'train' section",
                                 r"Did you mean 'epochs' \(in 'train.schedule'\)\?"], False),
    "train_key_in_the_wrong_section": (lambda r: r["train"].update(epochs=3),
                                       [r"Unknown key 'epochs' in the 'train' section.*: it belongs in "
                                        r"'train.schedule' \(train.schedule: \{epochs: ...\}\)"], False),
    "unknown_render_key": (lambda r: r["render"].update(nmels=3),
                           [r"Unknown key 'nmels' in the 'render' section", r"Did you mean 'n_mels'\?"], False),
    "train_option_elsewhere": (lambda r: r["train"].update(n_splits=3),
                               [r"The key 'n_splits' is not allowed in the 'train' section",
                                r"Set the number of folds once, with the top-level 'folds' key"], False),
    "removed_frontend_key": (lambda r: r["train"].update(frontend="gpu"),
                             [r"Unknown key 'frontend' in the 'train' section"], False),
    "bad_images_value": (lambda r: r["train"].update(images="gpu-ish"),
                         [r"'images' parameter of TrainConfig must be one of 'cached', 'on-the-fly'"], False),
    "missing_train_data": (lambda r: _set(r, ["data", "train"], "nope.csv"),
                           [r"data\.train \(.*missing_train_data\.yaml\) names '.*nope\.csv', which does not exist",
                            r"Fix the path \(a relative path is relative to the recipe's folder\)"], False),
    "missing_test_data": (lambda r: r["data"].update(test="nope_test", test_filter=None),
                          [r"data\.test .* names '.*nope_test', which does not exist", r"Fix the path"], False),
    "no_data_section": (lambda r: r.pop("data"), [r"needs a 'data' section"], False),
    "unknown_backbone": (lambda r: _set(r, ["models", 1, "backbone"], "resnet_nonexistent"),
                         [r"models\[1\]\.backbone \(.*\) of model 'b': Unknown backbone 'resnet_nonexistent'",
                          r"register_backbone"], False),
    "bad_model_name": (lambda r: _set(r, ["models", 0, "name"], "a b/c"),
                       [r"models\[0\]\.name .* must be a folder name of letters, digits", r"Got 'a b/c'"], False),
    "repeated_model_name": (lambda r: _set(r, ["models", 1, "name"], "a"),
                            [r"models\[1\]\.name .* repeats 'a'", r"every model needs its own name"], False),
    "model_without_backbone": (lambda r: r["models"][0].pop("backbone"),
                               [r"models\[0\] .* needs a 'backbone' key", r"a timm model name such as"], False),
    "no_models": (lambda r: r.update(models=[]), [r"'models' .* must be a non-empty list"], False),
    "epochs_0": (lambda r: _set(r, ["train", "schedule", "epochs"], 0),
                 [r"In models\[0\] \(a\)\.train .*: The 'epochs' parameter of TrainConfig.schedule must be an int >= 1\. "
                  r"Got 0"], False),
    "lr_text": (lambda r: _set(r, ["train", "optim", "lr"], "fast"),
                [r"'lr' parameter of TrainConfig.optim .* Got 'fast'"], False),
    "n_mels_negative": (lambda r: _set(r, ["models", 1, "render"], {"n_mels": -3}),
                        [r"In models\[1\] \(b\)\.render .*'n_mels' parameter of SpectrogramConfig must be an int "
                         r">= 1( or None)?\. Got -3"], False),
    "n_fft_text": (lambda r: _set(r, ["render", "n_fft"], "big"),
                   [r"n_fft .* must be samples \(e\.g\. 2048\) or milliseconds \(e\.g\. '16ms'\)\. Got 'big'"], False),
    "folds_1": (lambda r: r.update(folds=1), [r"top-level 'folds' .* must be an int >= 2\. Got 1"], False),
    "more_folds_than_groups": (lambda r: r.update(folds=3),
                               [r"top-level 'folds' .* is 3, but there are only 2 values of data\.group_column "
                                r"'speaker' to split", r"Set folds to at most 2"], True),
    "more_folds_than_files": (lambda r: (r.update(folds=9), r["data"].update(group_column=None)),
                              [r"top-level 'folds' .* is 9, but class\(es\) '3' \(\d+ files\), '7' \(\d+ files\) "
                               r"have fewer files than folds", r"Set folds to at most \d+"], True),
    "missing_group_column": (lambda r: _set(r, ["data", "group_column"], "patient"),
                             [r"data\.group_column 'patient' is not a column of the training input",
                              r"Fix data\.group_column, or set it to null"], True),
    "test_filter_takes_all": (lambda r: _set(r, ["data", "test_filter"], {"path": "wav"}),
                              [r"data\.test_filter .* moves \d+ of \d+ files to the test set", r"Fix the pattern"],
                              True),
    "test_filter_bad_regex": (lambda r: _set(r, ["data", "test_filter"], {"path": "(["}),
                              [r"data\.test_filter\.path .* is not a valid regular expression"], False),
    "unknown_stacker": (lambda r: _set(r, ["stacking", "methods"], ["mean", "xgb"]),
                        [r"stacking\.methods .* lists 'xgb', which is not a stacker",
                         r"Choose from mean, cnn, cnn-skip, lgbm"], False),
    "blend_unknown_member": (lambda r: _set(r, ["stacking", "blend"], {"cnn": 1, "lgbm": 1}),
                             [r"stacking\.blend .* names 'cnn', which is neither a stacker of stacking\.methods",
                              r"Add it to stacking\.methods"], False),
    "blend_one_member": (lambda r: _set(r, ["stacking", "blend"], {"lgbm": 1}),
                         [r"stacking\.blend .* has one member \('lgbm'\); a blend combines two or more",
                          r"set blend: null"], False),
    "blend_negative_weight": (lambda r: _set(r, ["stacking", "blend"], {"lgbm": -1, "a": 1}),
                              [r"stacking\.blend\.lgbm .* must be a weight >= 0\. Got -1"], False),
    "mean_of_one_model": (lambda r: r.update(models=r["models"][:1]),
                          [r"stacking\.methods .* lists 'mean', which averages the models, but the recipe has one "
                           r"model \(a\)", r"Drop 'mean', or add a model"], False),
    "inner_folds_too_many": (lambda r: _set(r, ["stacking", "folds"], 5),
                             [r"stacking\.folds .* must be <= the 2 outer folds"], False),
    "pseudo_threshold": (lambda r: r.update(pseudo={"enabled": True, "threshold": 2}),
                         [r"pseudo\.threshold .* must be a probability in \(0, 1\]"], False),
    "pseudo_without_test": (lambda r: (r.update(pseudo={"enabled": True}), r["data"].pop("test_filter")),
                            [r"pseudo\.enabled is true .* but there is no test set",
                             r"set pseudo\.enabled: false"], False),
}


@pytest.mark.parametrize("case", list(RECIPES))
def test_experiment_bad_recipes(data_dir, tiny_backbone, tmp_path, capsys, case):
    change, patterns, out_may_exist = RECIPES[case]
    rec = copy.deepcopy(recipe(tiny_backbone))
    change(rec)
    path = write_recipe(data_dir, case, rec)
    out = tmp_path / "exp"
    rc, _, err = cli(["experiment", path, "--out", out, "--quiet"], capsys)
    assert rc == 2
    for pattern in patterns:
        assert re.search(pattern, err), f"{pattern!r} not in {err!r}"
    if out_may_exist:  # found once the data is read: nothing was rendered or trained
        assert not (out / "caches").exists() and not (out / "models").exists()
    else:
        assert not out.exists()


@pytest.mark.parametrize("case, patterns", [
    ("yaml_syntax", [r"Recipe file '.*yaml_syntax\.yaml' is not valid YAML", r"line 2"]),
    ("missing_recipe", [r"Recipe file '.*missing_recipe\.yaml' does not exist",
                        r"Give the path of a YAML recipe"]),
    ("not_a_mapping", [r"The recipe \(.*not_a_mapping\.yaml\) must be a mapping of key: value"]),
    ("workers_0", [r"'workers' parameter of run_experiment must be an int >= 1\. Got 0"]),
])
def test_experiment_bad_files_and_options(data_dir, tiny_backbone, tmp_path, capsys, case, patterns):
    path = data_dir / f"{case}.yaml"
    extra = []
    if case == "yaml_syntax":
        path.write_text("name: x\n data: [\n")
    elif case == "not_a_mapping":
        path.write_text("- just\n- a list\n")
    elif case == "workers_0":
        path = write_recipe(data_dir, case, recipe(tiny_backbone))
        extra = ["--workers", "0"]
    rc, _, err = cli(["experiment", path, "--out", tmp_path / "exp", "--quiet", *extra], capsys)
    assert rc == 2
    for pattern in patterns:
        assert re.search(pattern, err), f"{pattern!r} not in {err!r}"
    assert not (tmp_path / "exp").exists()

"""The bad-input sweep for ``specimg train`` / :func:`train_cv` and ``specimg predict`` / :class:`Predictor`.

Bad audio files are skipped with an error naming them, and the rest trains or
is predicted; bad tables and nonsense options fail with a message that names
the file or option and says what to do, before a fold is trained.
"""

from __future__ import annotations

import contextlib
import io
import re

import pandas as pd
import pytest

from _cli import cli as run_cli
from specimg.cli import main
from specimg.exceptions import AudioError

pytestmark = pytest.mark.usefixtures("one_thread")

RENDER = ["--sample-rate", "8000", "--seconds", "1", "--hop", "0.5", "--n-fft", "256", "--hop-length", "64",
          "--n-mels", "32", "--image-size", "32"]


def train_opts(backbone):
    return ["--backbone", backbone, "--weights", "none", "--epochs", "1", "--folds", "2", "--batch-size", "8",
            "--device", "cpu", "--workers", "1", *RENDER]


def cli(argv, capsys):
    """Run ``specimg ARGV`` in-process: (exit status, stderr). argparse errors exit with status 2."""
    rc, _, err = run_cli(argv, capsys)
    return rc, err


def check_message(err, patterns):
    for pattern in patterns:
        assert re.search(pattern, err), f"{pattern!r} not in:\n{err}"


@pytest.fixture(scope="module")
def trained(bad_batch, tiny_backbone, tmp_path_factory):
    """``specimg train`` on the whole bad batch (7 usable files, 7 bad ones): the run folder and the stderr."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("bad_train") / "run"
    err = io.StringIO()  # capsys is per test: capture the module-wide run's stderr by hand
    with contextlib.redirect_stderr(err):
        rc = main(["train", str(bad_batch.csv), "--out", str(run), *train_opts(tiny_backbone)])
    torch.set_num_threads(n)
    assert rc == 0, err.getvalue()
    return run, err.getvalue()


# ----------------------------------------------------------------------------- train
def test_train_skips_bad_files_and_trains_the_rest(trained, bad_batch):
    run, err = trained
    errors = pd.read_csv(run / "cache" / "errors.csv").set_index("path")["error"].to_dict()
    assert sorted(errors) == sorted(bad_batch.bad)
    for name in bad_batch.bad:
        assert bad_batch.expected[name] in errors[name], (name, errors[name])
        assert name in err  # named on the terminal too
    # every usable file (8-bit, A-law, stereo, 44.1 kHz, MP3 named .wav, shorter than a window) was trained on
    # and has an out-of-fold prediction
    oof = pd.read_csv(run / "oof_files.csv", dtype=str)
    assert sorted(oof["path"]) == sorted(bad_batch.good)
    assert sorted(oof["fold"].astype(int).unique()) == [0, 1]
    assert (run / "fold_0" / "best.pt").is_file() and (run / "fold_1" / "best.pt").is_file()
    assert "7 file(s) could not be rendered" in err


def _table(bad_batch, names, labels=None, **columns):
    """A CSV table of files of the bad batch (absolute paths)."""
    t = pd.DataFrame({"path": [str(bad_batch.folder / n) for n in names]})
    t["label"] = labels if labels is not None else ["3", "7"] * (len(names) // 2) + ["3"] * (len(names) % 2)
    for k, v in columns.items():
        t[k] = v
    return t


GOOD = ["ok.wav", "pcm8.wav", "alaw.wav", "stereo.wav", "rate44k.wav", "mp3inside.wav", "short.wav"]


@pytest.mark.parametrize("case, extra, patterns", [
    ("unlabelled_row", [], [r"1 of 7 file\(s\) have no label \(e\.g\. \[.*ok\.wav'\]\)",
                            r"drop the unlabelled files from the input"]),
    ("one_class", [], [r"at least 2 classes.*all have the label '3'", r"Add files of another class"]),
    ("one_class_after_bad_files", [], [r"all have the label '3'", r"Add files of another class"]),
    ("more_folds_than_groups", ["--group-column", "speaker", "--folds", "3"],
     [r"only 2 values of 'speaker'.*n_splits=3", r"Lower n_splits \(--folds\) to at most 2"]),
    ("more_folds_than_files", ["--folds", "5"],
     [r"Class\(es\) '3' \(4 files\), '7' \(3 files\) have fewer files than the 5 folds",
      r"Lower n_splits \(--folds\) to at most 3"]),
    ("header_only", [], [r"header_only\.csv' lists no files", r"Add one row per audio file"]),
    ("no_path_column", [], [r"no_path_column\.csv' has no 'path' column", r"header must start with path,label"]),
    ("repeated_path", [], [r"repeated_path\.csv' lists 1 path\(s\) twice, e\.g\. '.*ok\.wav'",
                           r"drop the repeated rows"]),
])
def test_train_bad_tables(bad_batch, tiny_backbone, tmp_path, capsys, case, extra, patterns):
    if case == "unlabelled_row":
        t = _table(bad_batch, GOOD)
        t.loc[0, "label"] = None
    elif case == "one_class":
        t = _table(bad_batch, GOOD, labels="3")
    elif case == "one_class_after_bad_files":  # every '7' file is bad: one class is left once they are dropped
        t = _table(bad_batch, list(bad_batch.expected), labels=["3"] * 7 + ["7"] * 7)
    elif case == "more_folds_than_groups":
        t = _table(bad_batch, GOOD, speaker=["a", "b"] * 3 + ["a"])
    elif case in ("more_folds_than_files", "repeated_path"):
        t = _table(bad_batch, GOOD)
        if case == "repeated_path":
            t = pd.concat([t, t.iloc[:1]], ignore_index=True)
    elif case == "header_only":
        t = _table(bad_batch, GOOD).iloc[:0]
    elif case == "no_path_column":
        t = _table(bad_batch, GOOD).rename(columns={"path": "file"})
    csv = tmp_path / f"{case}.csv"
    t.to_csv(csv, index=False)
    run = tmp_path / "run"
    rc, err = cli(["train", csv, "--out", run, *train_opts(tiny_backbone), *extra], capsys)
    assert rc == 2
    check_message(err, patterns)
    assert not list(run.glob("fold_*/*.pt"))  # no fold was trained


@pytest.mark.parametrize("args, patterns, renders", [
    (["--epochs", "0"], [r"'epochs' parameter of TrainConfig.schedule must be an int >= 1\. Got 0"], False),
    (["--folds", "1"], [r"'n_splits' parameter of TrainConfig must be an int >= 2\. Got 1",
                        "Cross-validation needs at least 2 folds"], False),
    (["--backbone", "nonexistent"], [r"Unknown backbone 'nonexistent'", r"list_backbones\('pattern\*'\)"], False),
    (["--lr", "-1"], [r"'lr' parameter of TrainConfig.optim must be a finite number > 0\. Got -1\.0"], False),
    (["--batch-size", "0"], [r"'batch_size' parameter of TrainConfig.optim must be an int >= 1"], False),
    (["--hflip", "2"], [r"'hflip' parameter of TrainConfig.augment must be a finite number in \[0, 1\]\. Got 2\.0"], False),
    (["--image-size", "big"], [r"--image-size 'big' must be N or HxW"], False),
    (["--weights", "/nowhere/w.pt"], [r"Checkpoint '/nowhere/w\.pt' \(weights=\) not found",
                                      r"Check the path, or pass one of 'auto', 'hub', 'offline', 'none'"], False),
    (["--optimizer", "adam"], [r"argument --optimizer: invalid choice: 'adam' \(choose from 'sgd', 'adamw'\)"],
     False),
    (["--epochs", "two"], [r"argument --epochs: invalid int value: 'two'"], False),
    # the fold plan (group column, folds vs groups) is checked on the input table, before any render
    (["--group-column", "missing"], [r"group column 'missing' \(group_column\) is not in the input table",
                                     r"Add it to the input CSV or pick one of these"], False),
])
def test_train_nonsense_options(bad_batch, tiny_backbone, tmp_path, capsys, args, patterns, renders):
    run = tmp_path / "run"
    rc, err = cli(["train", bad_batch.csv, "--out", run, *train_opts(tiny_backbone), *args], capsys)
    assert rc == 2
    check_message(err, patterns)
    assert not list(run.glob("fold_*"))
    assert (run / "cache" / "images.npy").exists() == renders


def test_train_missing_input(tiny_backbone, tmp_path, capsys):
    rc, err = cli(["train", tmp_path / "nope.csv", "--out", tmp_path / "run", *train_opts(tiny_backbone)], capsys)
    assert rc == 2
    check_message(err, [r"nope\.csv' does not exist", r"Give a CSV \(path,label\[,group\]\) or a folder of audio"])


# ----------------------------------------------------------------------------- predict
def test_predict_lists_bad_files_and_predicts_the_rest(trained, bad_batch, tmp_path, capsys):
    run, _ = trained
    out = tmp_path / "pred.csv"
    rc, err = cli(["predict", run, bad_batch.csv, "--out", out, "--device", "cpu", "--quiet"], capsys)
    assert rc == 0
    files = pd.read_csv(out, dtype=str)
    assert files["path"].tolist() == bad_batch.good  # in input order
    assert set(files["prediction"]) <= {"3", "7"}
    errors = pd.read_csv(tmp_path / "pred_errors.csv").set_index("path")["error"].to_dict()
    assert sorted(errors) == sorted(bad_batch.bad)
    for name in bad_batch.bad:
        assert bad_batch.expected[name] in errors[name] and name in err


def test_predictor_api_lists_bad_files_or_stops_when_strict(trained, bad_batch):
    from specimg.predict import Predictor

    run, _ = trained
    pred = Predictor.from_run(run, device="cpu")
    res = pred.predict(bad_batch.csv, progress=False)
    assert res.files["path"].tolist() == bad_batch.good
    assert sorted(res.errors["path"]) == sorted(bad_batch.bad)
    assert res.files[["prob_3", "prob_7"]].sum(axis=1).round(5).eq(1).all()
    with pytest.raises(AudioError, match=r"garbage\.wav: cannot be decoded.*\(stopped by --strict\)"):
        pred.predict(bad_batch.csv, progress=False, strict=True)


def test_predict_labels_the_run_never_saw_are_predicted(trained, bad_batch, tmp_path, capsys):
    """Files labelled with a class the run never saw are still predicted; `evaluate` then names them."""
    run, _ = trained
    t = _table(bad_batch, GOOD, labels="9")
    t.to_csv(tmp_path / "unknown.csv", index=False)
    rc, _ = cli(["predict", run, tmp_path / "unknown.csv", "--out", tmp_path / "p.csv", "--device", "cpu",
                 "--quiet"], capsys)
    assert rc == 0 and len(pd.read_csv(tmp_path / "p.csv")) == 7
    rc, err = cli(["evaluate", tmp_path / "p.csv"], capsys)
    assert rc == 2
    check_message(err, [r"class\(es\) \['9'\] that the model never saw \(it knows 3, 7\), e\.g\. file '.*ok\.wav'",
                        r"drop these files, or fix their labels"])


def test_predict_warns_about_labels_the_run_never_saw(trained, bad_batch, tmp_path, capsys):
    run, _ = trained
    t = _table(bad_batch, GOOD, labels="9")
    t.to_csv(tmp_path / "unknown.csv", index=False)
    rc, err = cli(["predict", run, tmp_path / "unknown.csv", "--out", tmp_path / "p.csv", "--device", "cpu",
                   "--quiet"], capsys)
    assert rc == 0
    check_message(err, [r"'9'", r"3, 7"])


@pytest.mark.parametrize("args, patterns", [
    (["--tta", "sideways"], [r"argument --tta: invalid choice: 'sideways' \(choose from 'flip', 'none'\)"]),
    (["--aggregate", "median"], [r"argument --aggregate: invalid choice: 'median' \(choose from 'mean', 'max', "
                                 r"'gmean'\)"]),
    (["--batch-size", "0"], [r"'batch_size' parameter of Predictor must be an int >= 1\. Got 0"]),
    (["--workers", "0"], [r"'workers' parameter of Predictor.predict must be an int >= 1\. Got 0"]),
    (["--device", "tpu"], [r"'device' option must be 'auto', 'cpu', 'cuda' or 'cuda:N'\. Got 'tpu'"]),
    (["--folds", "9"], [r"has no finished fold\(s\) \[9\]; finished folds: \[0, 1\]"]),
    (["--folds", "x"], [r"--folds 'x'", r"0,2"]),
])
def test_predict_nonsense_options(trained, bad_batch, tmp_path, capsys, args, patterns):
    run, _ = trained
    out = tmp_path / "p.csv"
    try:
        rc, err = cli(["predict", run, bad_batch.csv, "--out", out, "--quiet", *args], capsys)
    except ValueError as exc:  # a crash, not a message
        rc, err = None, repr(exc)
    assert rc == 2
    check_message(err, patterns)
    assert not out.exists()


@pytest.mark.parametrize("case, patterns", [
    ("missing_run", [r"norun' is not a specimg run folder \(no config\.json\)", r"Train one with `specimg train`"]),
    ("not_a_run", [r"is not a specimg run folder", r"Train one with `specimg train`"]),
    ("missing_input", [r"nope\.csv' does not exist", r"Give a CSV"]),
])
def test_predict_missing_run_or_input(trained, bad_batch, tmp_path, capsys, case, patterns):
    run, _ = trained
    args = {"missing_run": [tmp_path / "norun", bad_batch.csv],
            "not_a_run": [bad_batch.folder, bad_batch.csv],
            "missing_input": [run, tmp_path / "nope.csv"]}[case]
    rc, err = cli(["predict", *args, "--out", tmp_path / "p.csv", "--quiet"], capsys)
    assert rc == 2
    check_message(err, patterns)

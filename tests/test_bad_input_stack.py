"""The bad-input sweep for ``specimg stack`` / :func:`stack_runs` / :func:`align_runs`: runs that cannot be
stacked together and nonsense options fail with a message naming the run, file or option and the fix, before
anything is written."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from _cli import cli
from specimg.exceptions import DataError, ParameterError
from specimg.stacking import stack_runs
from specimg.predict.aggregate import predictions_frame
from specimg.stacking import align_runs

PATHS = [f"f{i}.wav" for i in range(24)]
LABELS = [str(i % 3) for i in range(24)]
FOLDS = [i % 4 for i in range(24)]


def write_run(folder, *, seed, classes=("0", "1", "2"), paths=PATHS, labels=LABELS, folds=FOLDS, drop=()):
    """A run folder holding only an out-of-fold prediction table (random probabilities)."""
    probs = np.random.default_rng(seed).dirichlet(np.ones(len(classes)), len(paths))
    frame = predictions_frame(paths, probs, list(classes), labels=labels, folds=folds).drop(columns=list(drop))
    folder.mkdir(parents=True)
    frame.to_csv(folder / "oof_files.csv", index=False)
    return folder


@pytest.fixture
def runs(tmp_path):
    return write_run(tmp_path / "a", seed=0), write_run(tmp_path / "b", seed=1)


def make_other(tmp_path, case):
    """The second run of a pair that cannot be stacked with run a."""
    if case == "different_classes":
        return write_run(tmp_path / "c4", seed=2, classes=("0", "1", "2", "3"))
    if case == "disjoint_files":
        return write_run(tmp_path / "disjoint", seed=2, paths=[f"g{i}.wav" for i in range(24)])
    if case == "one_file_missing":
        return write_run(tmp_path / "short", seed=2, paths=PATHS[:-1], labels=LABELS[:-1], folds=FOLDS[:-1])
    if case == "other_labels":
        return write_run(tmp_path / "relabelled", seed=2, labels=[str((i + 1) % 3) for i in range(24)])
    if case == "other_folds":
        return write_run(tmp_path / "refolded", seed=2, folds=[(i + 1) % 4 for i in range(24)])
    if case == "no_fold_column":  # a `specimg predict` output given as a run
        return write_run(tmp_path / "predicted", seed=2, drop=("fold",)) / "oof_files.csv"
    if case == "missing_oof":  # a run folder whose training has not finished a fold
        (tmp_path / "unfinished").mkdir()
        (tmp_path / "unfinished" / "config.json").write_text("{}")
        return tmp_path / "unfinished"
    if case == "not_a_run":
        (tmp_path / "somewhere").mkdir()
        return tmp_path / "somewhere"
    if case == "missing_path":
        return tmp_path / "nowhere.csv"
    raise AssertionError(case)


@pytest.mark.parametrize("case, patterns", [
    ("different_classes", [r"classes of run 1 \(.*c4\) differ from those of run 0 \(.*a\): it has extra class '3'",
                           r"Stack only runs trained on the same label set"]),
    ("disjoint_files", [r"File 'f0\.wav' is in run 0 \(.*a\) but missing from run 1 \(.*disjoint\) \(24 files "
                        r"missing in all\)", r"re-run prediction or drop the file everywhere"]),
    ("one_file_missing", [r"File 'f23\.wav' is in run 0 .* but missing from run 1 \(.*short\)\.",
                          r"re-run prediction"]),
    ("other_labels", [r"File 'f0\.wav' has label '1' in run 1 \(.*relabelled\) but '0' in run 0",
                      r"trained on the same labels"]),
    ("other_folds", [r"File 'f0\.wav' is in fold 1 in run 1 \(.*refolded\) but in fold 0 in run 0",
                     r"share one fold split"]),
    ("no_fold_column", [r"run 1 \(.*predicted/oof_files\.csv\) has no 'fold' column",
                        r"Give test predictions with --test"]),
    ("missing_oof", [r"Run folder '.*unfinished' has no oof_files\.csv: its training has not finished a fold yet",
                     r"run the same `specimg train` command again"]),
    ("not_a_run", [r"Run folder '.*somewhere' has no oof_files\.csv: it is not a run folder",
                   r"pass the path of an out-of-fold prediction CSV"]),
    ("missing_path", [r"Prediction file '.*nowhere\.csv' does not exist", r"RUN/oof_files\.csv"]),
])
def test_stack_runs_that_do_not_fit_together(runs, tmp_path, capsys, case, patterns):
    other = make_other(tmp_path, case)
    rc, _, err = cli(["stack", runs[0], other, "--method", "mean", "--out", tmp_path / "out"], capsys)
    assert rc == 2
    for pattern in patterns:
        assert re.search(pattern, err), f"{pattern!r} not in {err!r}"
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError):  # the library raises the same error
        align_runs([runs[0], other])


@pytest.mark.parametrize("args, patterns", [
    (["--method", "blend"], [r"method='blend' \(--method\) combines several runs, but only one was given",
                             r"Give two or more runs"]),
    (["--method", "mean"], [r"method='mean' \(--method\) combines several runs, but only one was given"]),
])
def test_stack_one_run_where_two_are_needed(runs, tmp_path, capsys, args, patterns):
    rc, _, err = cli(["stack", runs[0], *args, "--out", tmp_path / "out"], capsys)
    assert rc == 2
    for pattern in patterns:
        assert re.search(pattern, err), f"{pattern!r} not in {err!r}"
    assert not (tmp_path / "out").exists()


def test_stack_one_run_can_be_recalibrated(runs, tmp_path, capsys):
    """A learning stacker on one run is a recalibration, scored honestly: allowed."""
    rc, out, _ = cli(["stack", runs[0], "--method", "lgbm", "--out", tmp_path / "out"], capsys)
    assert rc == 0 and "24 out-of-fold files, 1 models, 4 outer folds" in out
    assert len(pd.read_csv(tmp_path / "out" / "oof_files.csv")) == 24


@pytest.mark.parametrize("args, patterns", [
    (["--method", "blend", "--weights", "1,x"], [r"--weights '1,x' must be numbers separated by commas, one per RUN"]),
    (["--method", "blend", "--weights", "1"], [r"'weights' parameter of stack_runs \(--weights\) needs one weight "
                                               r"per run: 2 run\(s\) but 1 weight", r"in the order of the runs"]),
    (["--method", "blend", "--weights=-1,2"], [r"'weights' parameter of WeightedBlend must be finite, >= 0 and not "
                                               r"all 0\. Got \[-1\.0, 2\.0\]"]),
    (["--method", "blend", "--weights", "0,0"], [r"not all 0\. Got \[0\.0, 0\.0\]"]),
    (["--method", "blend", "--weights", "nan,1"], [r"must be finite.*Got \[nan, 1\.0\]"]),
    (["--method", "lgbm", "--weights", "1,1"], [r"--weights applies to --method blend only \(got --method lgbm\)"]),
    (["--method", "lgbm", "--folds", "1"], [r"inner fold count \(inner_folds / --folds\) must be an int >= 2\. "
                                            r"Got 1"]),
    (["--method", "lgbm", "--folds", "9"], [r"must be <= the 4 outer folds of the runs.*Got 9"]),
    (["--method", "xgb"], [r"argument --method: invalid choice: 'xgb' \(choose from 'auto', 'cnn', 'cnn-skip', "
                           r"'lgbm', 'blend', 'mean', 'seed-blend'\)"]),
    (["--method", "mean", "--names", "x"], [r"'names' parameter of stack_runs \(--names\) must name each of the 2 "
                                            r"runs\. Got 1 names"]),
    (["--method", "mean", "--names", "x,x"], [r"\(--names\) repeats 'x'; every run needs its own name"]),
    (["--method", "mean", "--test", "TEST_A"], [r"Give one test prediction table per run, in the same order: 2 "
                                                r"run\(s\) but 1 test table"]),
    (["SAME_RUN", "--method", "mean"], [r"Run 2 \(.*a\) is the same as run 0 \(.*a\): each run must be given "
                                        r"once\. Remove the repeat"]),
])
def test_stack_nonsense_options(runs, tmp_path, capsys, args, patterns):
    args = [runs[0] if a == "SAME_RUN" else runs[0] / "oof_files.csv" if a == "TEST_A" else a for a in args]
    rc, _, err = cli(["stack", *runs, *args, "--out", tmp_path / "out"], capsys)
    assert rc == 2
    for pattern in patterns:
        assert re.search(pattern, err), f"{pattern!r} not in {err!r}"
    assert not (tmp_path / "out").exists()


def test_stack_runs_with_the_same_folder_name_keep_apart(tmp_path):
    """Two runs called 'run' in different experiments keep separate scores (named by their parent folder)."""
    a = write_run(tmp_path / "exp1" / "run", seed=0)
    b = write_run(tmp_path / "exp2" / "run", seed=1)
    res = stack_runs([a, b], method="mean")
    assert list(res.metrics["models"]) == ["exp1/run", "exp2/run"]
    assert res.metrics["models"]["exp1/run"] != res.metrics["models"]["exp2/run"]
    with pytest.raises(ParameterError, match=r"is the same as run 0"):
        stack_runs([a, a / "oof_files.csv"], method="mean")
    json.dumps(res.metrics)  # still plain data

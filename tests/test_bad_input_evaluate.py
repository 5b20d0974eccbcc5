"""The bad-input sweep for ``specimg evaluate`` / :func:`evaluate_predictions`: every broken prediction table
or option fails with a message naming the file, column or option and the fix."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from _cli import cli
from specimg.exceptions import DataError
from specimg.predict import evaluate_predictions


def good_table():
    return pd.DataFrame({"path": ["a.wav", "b.wav", "c.wav", "d.wav"], "label": ["3", "7", "3", "7"],
                         "prediction": ["3", "7", "7", "7"], "prob_3": [0.9, 0.2, 0.4, 0.1],
                         "prob_7": [0.1, 0.8, 0.6, 0.9]})


def _set(frame, row, col, value):
    frame = frame.astype({col: object})
    frame.loc[row, col] = value
    return frame


#: case -> (write the predictions CSV at path p, patterns its error must match)
TABLES = {
    "unknown_label": (lambda p: _set(good_table(), 1, "label", "9").to_csv(p, index=False),
                      [r"class\(es\) \['9'\] that the model never saw \(it knows 3, 7\), e\.g\. file 'b\.wav'",
                       r"drop these files, or fix their labels"]),
    "missing_label": (lambda p: _set(good_table(), 1, "label", None).to_csv(p, index=False),
                      [r"1 file\(s\) of prediction file '.*missing_label\.csv' have no true label, e\.g\. 'b\.wav'",
                       r"Fill in their label, drop their rows, or pass --labels"]),
    "no_label_column": (lambda p: good_table().drop(columns="label").to_csv(p, index=False),
                        [r"no_label_column\.csv' has no 'label' column", r"pass --labels INPUT"]),
    "no_path_column": (lambda p: good_table().drop(columns="path").to_csv(p, index=False),
                       [r"no_path_column\.csv has no 'path' column", r"needs the columns path, \[label\]"]),
    "no_prob_columns": (lambda p: good_table().drop(columns=["prob_3", "prob_7"]).to_csv(p, index=False),
                        [r"no_prob_columns\.csv has no 'prob_<class>' columns", r"one probability column per class"]),
    "nan_probability": (lambda p: _set(good_table(), 2, "prob_3", np.nan).to_csv(p, index=False),
                        [r"Column 'prob_3' of .*nan_probability\.csv must hold a probability for every file, but "
                         r"file 'c\.wav' has ''", r"Predict these files again, or drop their rows"]),
    "text_probability": (lambda p: _set(good_table(), 2, "prob_3", "high").to_csv(p, index=False),
                         [r"file 'c\.wav' has 'high'", r"Predict these files again"]),
    "inf_probability": (lambda p: _set(good_table(), 2, "prob_3", np.inf).to_csv(p, index=False),
                        [r"probabilities of file 'c\.wav' must be finite and >= 0\. Got \[inf, 0\.6\]",
                         r"Predict these files again"]),
    "negative_probability": (lambda p: _set(good_table(), 0, "prob_3", -0.5).to_csv(p, index=False),
                             [r"file 'a\.wav' must be finite and >= 0"]),
    "not_summing_to_1": (lambda p: _set(good_table(), 3, "prob_3", 0.5).to_csv(p, index=False),
                         [r"probabilities of file 'd\.wav' must sum to 1", r"They sum to 1\.4"]),
    "repeated_path": (lambda p: pd.concat([good_table(), good_table().iloc[:1]]).to_csv(p, index=False),
                      [r"one row per file, but path 'a\.wav' is repeated", r"aggregate segment predictions"]),
    "empty_file": (lambda p: p.write_bytes(b""),
                   [r"empty_file\.csv' is empty \(no header, no rows\)", r"Pass a CSV written by `specimg predict`"]),
    "header_only": (lambda p: good_table().iloc[:0].to_csv(p, index=False),
                    [r"header_only\.csv' has no rows: there is nothing to evaluate", r"Predict some files first"]),
    "not_a_csv": (lambda p: p.write_bytes(bytes(range(256)) * 8),
                  [r"not_a_csv\.csv' cannot be read as CSV", r"Pass a CSV written by"]),
    "missing_file": (lambda p: None, [r"missing_file\.csv' does not exist", r"RUN/oof_files\.csv"]),
}


@pytest.mark.parametrize("case", list(TABLES))
def test_evaluate_bad_tables(tmp_path, capsys, case):
    write, patterns = TABLES[case]
    path = tmp_path / f"{case}.csv"
    write(path)
    rc, _, err = cli(["evaluate", path, "--report", tmp_path / "report"], capsys)
    assert rc == 2
    for pattern in patterns:
        assert re.search(pattern, err), f"{pattern!r} not in {err!r}"
    assert not (tmp_path / "report").exists()  # nothing half-written


def test_evaluate_api_raises_the_same_errors(tmp_path):
    with pytest.raises(DataError, match=r"the prediction frame have no true label, e\.g\. 'b\.wav'"):
        evaluate_predictions(_set(good_table(), 1, "label", None))
    with pytest.raises(DataError, match=r"The prediction frame has no rows"):
        evaluate_predictions(good_table().iloc[:0])


def test_evaluate_good_table_still_works(tmp_path, capsys):
    good_table().to_csv(tmp_path / "p.csv", index=False)
    rc, out, _ = cli(["evaluate", tmp_path / "p.csv", "--report", tmp_path / "report"], capsys)
    assert rc == 0 and "4 files: accuracy 0.7500  UAR 0.7500" in out
    assert (tmp_path / "report" / "report.md").is_file()


def _labels(tmp_path, labels, paths=("a.wav", "b.wav", "c.wav", "d.wav")):
    pd.DataFrame({"path": list(paths), "label": labels}).to_csv(tmp_path / "labels.csv", index=False)
    return tmp_path / "labels.csv"


@pytest.mark.parametrize("case, patterns", [
    ("format", [r"argument --format: invalid choice: 'pdf' \(choose from 'markdown', 'html'\)"]),
    ("labels_missing", [r"nolabels\.csv' does not exist", r"Give a CSV \(path,label\[,group\]\)"]),
    ("labels_lack_a_file", [r"1 predicted file\(s\) are not in the labels, e\.g\. 'd\.wav'",
                            r"must list the same paths"]),
    ("labels_unknown_class", [r"class\(es\) \['8'\] that the model never saw .* e\.g\. file 'd\.wav'"]),
    ("report_is_a_file", [r"report folder '.*p\.csv' \(out_dir, --report\) is an existing file, not a folder",
                          r"Give the path of a folder"]),
    ("run_missing", [r"norun", r"specimg train"]),
])
def test_evaluate_nonsense_options(tmp_path, capsys, case, patterns):
    preds = tmp_path / "p.csv"
    good_table().to_csv(preds, index=False)
    args = {
        "format": lambda: ["--format", "pdf"],
        "labels_missing": lambda: ["--labels", tmp_path / "nolabels.csv"],
        "labels_lack_a_file": lambda: ["--labels", _labels(tmp_path, ["3", "7", "3"], ("a.wav", "b.wav", "c.wav"))],
        "labels_unknown_class": lambda: ["--labels", _labels(tmp_path, ["3", "7", "3", "8"])],
        "report_is_a_file": lambda: ["--report", preds],
        "run_missing": lambda: ["--run", tmp_path / "norun"],
    }[case]()
    try:
        rc, _, err = cli(["evaluate", preds, *args], capsys)
    except OSError as exc:  # a crash, not a message
        rc, err = None, repr(exc)
    assert rc == 2
    for pattern in patterns:
        assert re.search(pattern, err), f"{pattern!r} not in {err!r}"

"""`specimg stack` and `specimg pseudo-label` on synthetic run folders (specimg.stacking._cli, specimg.experiment)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from specimg.audio import read_table
from specimg.data import file_folds, pseudo_mask
from specimg.exceptions import DataError, ParameterError
from specimg.predict.aggregate import predictions_frame, read_predictions
from specimg.stacking._cli import add_stack_parsers

CLASSES = ["a", "b", "c"]
N_FILES = 90
NOISE = (0.7, 1.4, 2.5)  # model 0 is the best, model 2 the worst


pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one thread is faster on 2 cores


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _cli(*argv):
    parser = argparse.ArgumentParser(prog="specimg")
    add_stack_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def _write_runs(root, *, signal=2.0, seed=0, n=N_FILES, test=False):
    """Three run folders with a hand-written oof_files.csv (contract format); folds 0-2 by file index."""
    rng = np.random.default_rng(seed)
    y = np.array(CLASSES)[np.arange(n) % 3]
    codes = np.arange(n) % 3
    folds = (np.arange(n) // 3) % 3
    paths = [f"audio/f{i:03d}.wav" for i in range(n)]
    runs, tests = [], []
    for m, noise in enumerate(NOISE):
        logits = signal * np.eye(3)[codes] + noise * rng.normal(size=(n, 3))
        run = root / f"model{m}"
        run.mkdir(parents=True)
        predictions_frame(paths, _softmax(logits), CLASSES, labels=y, folds=folds).to_csv(run / "oof_files.csv",
                                                                                         index=False)
        runs.append(run)
        if test:
            t_codes = np.arange(30) % 3
            t_logits = signal * np.eye(3)[t_codes] + noise * rng.normal(size=(30, 3))
            t_path = run / "test_files.csv"
            predictions_frame([f"test/t{i:02d}.wav" for i in range(30)], _softmax(t_logits), CLASSES,
                              labels=np.array(CLASSES)[t_codes]).to_csv(t_path, index=False)
            tests.append(t_path)
    return runs, tests, y, folds


@pytest.mark.parametrize("method", ["cnn", "cnn-skip", "lgbm", "blend", "mean", "seed-blend"])
def test_stack_writes_contract_outputs_for_each_method(tmp_path, method, capsys):
    runs, tests, y, folds = _write_runs(tmp_path / "runs", test=True)
    out = tmp_path / f"stack_{method}"
    # --no-compare: only the runs, their mean and the method (the full comparison is tested once, with auto)
    assert _cli("stack", *runs, "--method", method, "--out", out, "--test", *tests, "--no-compare") == 0
    frame, classes, probs = read_predictions(out / "oof_files.csv")
    assert list(frame.columns[:4]) == ["path", "label", "fold", "prediction"]
    assert classes == CLASSES
    assert frame["path"].tolist() == [f"audio/f{i:03d}.wav" for i in range(N_FILES)]
    np.testing.assert_array_equal(frame["fold"].to_numpy(), folds)  # the outer folds are kept
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["models"]) == ["model0", "model1", "model2"]
    for scores in [*m["models"].values(), m["mean"], m["stack"]]:
        assert 0.0 <= scores["uar"] <= 1.0 and 0.0 <= scores["accuracy"] <= 1.0
    assert m["models"]["model0"]["accuracy"] > m["models"]["model2"]["accuracy"]
    assert m["stack"]["accuracy"] > 0.6  # signal is strong: every method beats chance (1/3) by far
    test_frame, _, _ = read_predictions(out / "test_files.csv")
    assert "fold" not in test_frame.columns and len(test_frame) == 30
    assert "test" in m and 0.0 <= m["test"]["stack"]["accuracy"] <= 1.0
    assert method in capsys.readouterr().out


def test_mean_and_fixed_blend_are_exact(tmp_path):
    runs, _, y, _ = _write_runs(tmp_path / "runs")
    _cli("stack", *runs, "--method", "mean", "--out", tmp_path / "mean", "--no-compare")
    _, _, mean_probs = read_predictions(tmp_path / "mean" / "oof_files.csv")
    members = [read_predictions(r / "oof_files.csv")[2] for r in runs]
    np.testing.assert_allclose(mean_probs, np.mean(members, axis=0), atol=1e-9)
    m = json.loads((tmp_path / "mean" / "metrics.json").read_text())
    assert m["stack"] == m["mean"] and m["inner_folds"] is None

    _cli("stack", *runs, "--method", "blend", "--weights", "1,0,0", "--out", tmp_path / "only0", "--no-compare")
    _, _, only0 = read_predictions(tmp_path / "only0" / "oof_files.csv")
    np.testing.assert_allclose(only0, members[0], atol=1e-9)
    m = json.loads((tmp_path / "only0" / "metrics.json").read_text())
    assert m["weights"] == {"model0": 1.0, "model1": 0.0, "model2": 0.0}
    assert m["stack"] == m["models"]["model0"]


def test_fitted_blend_prefers_the_best_model(tmp_path):
    runs, _, _, _ = _write_runs(tmp_path / "runs")
    _cli("stack", *runs, "--method", "blend", "--out", tmp_path / "fit", "--names", "good,mid,bad", "--no-compare")
    m = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    w = m["weights"]
    assert sum(w.values()) == pytest.approx(1.0)
    assert w["good"] > w["bad"]
    assert m["inner_folds"] == 3  # fitted weights are scored by the inner cross-validation


def test_stacked_oof_is_honest_on_noise(tmp_path):
    """Pure-noise members: a stacker fitted in-sample looks good, its inner-CV out-of-fold score must not."""
    from specimg.stacking import LGBMStacker, align_runs

    runs, _, _, _ = _write_runs(tmp_path / "runs", signal=0.0, seed=3, n=150)
    _cli("stack", *runs, "--method", "lgbm", "--out", tmp_path / "lgbm", "--no-compare")
    m = json.loads((tmp_path / "lgbm" / "metrics.json").read_text())
    _, X, y, classes, _ = align_runs(runs)
    # LightGBM's usual settings (many leaves, small leaves, no early stopping) memorise the noise in-sample ...
    loose = LGBMStacker(classes=classes, n_estimators=200, num_leaves=15, min_child_samples=5, reg_lambda=0.0,
                        early_stopping=False, n_jobs=1)
    assert float(np.mean(loose.fit(X, y).predict(X) == y)) > 0.8
    assert m["stack"]["accuracy"] < 0.5  # ... but the out-of-fold score stays at chance (1/3)


def test_inner_folds_option(tmp_path):
    runs, _, _, _ = _write_runs(tmp_path / "runs")
    _cli("stack", *runs, "--method", "cnn", "--folds", "2", "--out", tmp_path / "cnn2", "--no-compare")
    assert json.loads((tmp_path / "cnn2" / "metrics.json").read_text())["inner_folds"] == 2
    with pytest.raises(ParameterError, match="<= the 3 outer folds"):
        _cli("stack", *runs, "--method", "cnn", "--folds", "5", "--out", tmp_path / "cnn5")


def test_stack_auto_reports_every_candidate_and_why(tmp_path, capsys):
    runs, tests, y, folds = _write_runs(tmp_path / "runs", test=True)
    out = tmp_path / "auto"
    assert _cli("stack", *runs, "--out", out, "--test", *tests, "--names", "good,mid,bad") == 0  # auto: the default
    printed = capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "auto"
    assert list(m["candidates"]) == ["good", "mid", "bad", "mean", "blend", "cnn", "cnn-skip", "lgbm", "seed-blend",
                                     "auto"]
    for name, c in m["candidates"].items():  # pooled and per-fold scores of every candidate, on the same folds
        assert list(c["folds"]) == ["0", "1", "2"] and sum(f["n_files"] for f in c["folds"].values()) == N_FILES
        assert name in printed
    assert m["stack"]["accuracy"] == m["candidates"]["auto"]["accuracy"]
    sel = m["selection"]
    assert sel["metric"] == "accuracy" and len(sel["folds"]) == 3
    assert sel["summary"].startswith("auto picked ") and "by inner cross-validation accuracy" in sel["summary"]
    for row in sel["folds"]:
        assert row["choice"] in m["candidates"] and row["reason"].startswith(row["choice"] + ": best inner-CV")
        assert f"fold {row['fold']}: {row['reason']}" in printed
    per = pd.read_csv(out / "candidates.csv", dtype={"fold": str})
    assert set(per["fold"]) == {"0", "1", "2", "all"} and len(per) == 10 * 4
    test_frame, _, _ = read_predictions(out / "test_files.csv")
    assert len(test_frame) == 30 and "mean of the fold stackers" in printed


def test_stack_draws_the_model_weights(tmp_path):
    runs, _, _, _ = _write_runs(tmp_path / "runs")
    out = tmp_path / "cnn"
    _cli("stack", *runs, "--method", "cnn", "--out", out, "--no-compare")
    png = (out / "model_weights.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    weights = pd.read_csv(out / "model_weights.csv").set_index("model")
    assert weights.index.tolist() == ["model0", "model1", "model2"] and weights.columns.tolist() == CLASSES
    np.testing.assert_allclose(weights.sum(axis=0), 1.0)  # per class, the weights of the models sum to 1
    m = json.loads((out / "metrics.json").read_text())
    assert m["model_weights"]["model0"] == pytest.approx(weights.loc["model0"].to_dict())
    assert not (tmp_path / "mean_only" / "model_weights.png").exists()
    _cli("stack", *runs, "--method", "mean", "--out", tmp_path / "mean_only", "--no-compare")
    assert not (tmp_path / "mean_only" / "model_weights.png").exists()  # the mean weighs nothing


def test_stack_bad_inputs(tmp_path):
    runs, tests, _, _ = _write_runs(tmp_path / "runs", test=True)
    with pytest.raises(ParameterError, match="--weights applies to --method blend only"):
        _cli("stack", *runs, "--method", "lgbm", "--weights", "1,1,1", "--out", tmp_path / "x")
    with pytest.raises(ParameterError, match="one weight per run: 3 run"):
        _cli("stack", *runs, "--method", "blend", "--weights", "0.5,0.5", "--out", tmp_path / "x")
    with pytest.raises(ParameterError, match="numbers separated by commas"):
        _cli("stack", *runs, "--method", "blend", "--weights", "0.5,x,1", "--out", tmp_path / "x")
    with pytest.raises(ParameterError, match="one test prediction table per run"):
        _cli("stack", *runs, "--method", "mean", "--test", *tests[:2], "--out", tmp_path / "x")
    # a run that lacks a file
    short = tmp_path / "short"
    short.mkdir()
    pd.read_csv(runs[0] / "oof_files.csv").iloc[:-1].to_csv(short / "oof_files.csv", index=False)
    with pytest.raises(DataError, match="missing from"):
        _cli("stack", runs[0], short, "--method", "mean", "--out", tmp_path / "x")
    # a run with other folds
    other = tmp_path / "other"
    other.mkdir()
    df = pd.read_csv(runs[0] / "oof_files.csv")
    df["fold"] = (df["fold"] + 1) % 3
    df.to_csv(other / "oof_files.csv", index=False)
    with pytest.raises(DataError, match="share one fold split"):
        _cli("stack", runs[0], other, "--method", "lgbm", "--out", tmp_path / "x")


# ----------------------------------------------------------------------------- pseudo-label
def _pseudo_setup(tmp_path):
    """A training CSV (6 files, with a speaker column) and test predictions of 5 files that exist on disk."""
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    train = pd.DataFrame({"path": [f"t{i}.wav" for i in range(6)], "label": ["a", "b", "c"] * 2,
                          "speaker": ["s0", "s1", "s2"] * 2})
    train.to_csv(train_dir / "train.csv", index=False)
    test_dir = tmp_path / "preds"
    (test_dir / "test").mkdir(parents=True)
    probs = np.array([[0.95, 0.03, 0.02],   # a, confident
                      [0.90, 0.05, 0.05],   # a, confident
                      [0.10, 0.86, 0.04],   # b, confident
                      [0.40, 0.30, 0.30],   # a, unsure
                      [0.05, 0.05, 0.90]])  # c, confident
    paths = [f"test/x{i}.wav" for i in range(5)]
    for p in paths:
        (test_dir / p).write_bytes(b"")
    predictions_frame(paths, probs, CLASSES).to_csv(test_dir / "test_preds.csv", index=False)
    return train_dir / "train.csv", test_dir / "test_preds.csv"


def test_pseudo_label_threshold_and_paths(tmp_path, capsys):
    train_csv, preds = _pseudo_setup(tmp_path)
    out = tmp_path / "elsewhere" / "new.csv"
    assert _cli("pseudo-label", preds, "--train", train_csv, "--out", out, "--threshold", "0.85") == 0
    table = pd.read_csv(out)
    assert table["pseudo"].tolist() == [False] * 6 + [True] * 4
    pseudo = table[table["pseudo"]]
    assert pseudo["label"].tolist() == ["a", "a", "b", "c"]
    assert pseudo["confidence"].min() >= 0.85
    assert table["speaker"].iloc[:6].tolist() == ["s0", "s1", "s2"] * 2 and pseudo["speaker"].isna().all()
    # paths are relative to NEW.csv's folder and point at the real files
    assert not any(p.startswith("/") for p in table["path"])
    resolved = read_table(out)
    assert [Path(p).resolve() for p in resolved["abspath"][6:]] == \
        [(preds.parent / f"test/x{i}.wav").resolve() for i in (0, 1, 2, 4)]
    assert [Path(p).resolve() for p in resolved["abspath"][:6]] == \
        [(train_csv.parent / f"t{i}.wav").resolve() for i in range(6)]
    # the guard: pseudo rows are never given a validation fold
    folds = file_folds(resolved, n_splits=2, group_column="speaker")
    assert pseudo_mask(resolved).tolist() == [False] * 6 + [True] * 4
    assert (folds[6:] == -1).all() and (folds[:6] >= 0).all()
    assert "4 test file(s)" in capsys.readouterr().out


def test_pseudo_label_threshold_is_strict_unless_inclusive(tmp_path, capsys):
    train_csv, preds = _pseudo_setup(tmp_path)
    _cli("pseudo-label", preds, "--train", train_csv, "--out", tmp_path / "strict.csv", "--threshold", "0.9")
    assert pd.read_csv(tmp_path / "strict.csv").query("pseudo")["confidence"].tolist() == [0.95]
    assert "confidence > 0.9" in capsys.readouterr().out
    _cli("pseudo-label", preds, "--train", train_csv, "--out", tmp_path / "incl.csv", "--threshold", "0.9",
         "--inclusive")
    assert pd.read_csv(tmp_path / "incl.csv").query("pseudo")["confidence"].tolist() == [0.95, 0.90, 0.90]
    assert "confidence >= 0.9" in capsys.readouterr().out


def test_pseudo_label_cap_per_class(tmp_path):
    train_csv, preds = _pseudo_setup(tmp_path)
    out = tmp_path / "new.csv"
    _cli("pseudo-label", preds, "--train", train_csv, "--out", out, "--threshold", "0.5", "--max-per-class", "1")
    pseudo = pd.read_csv(out).query("pseudo")
    assert sorted(pseudo["label"]) == ["a", "b", "c"]
    assert pseudo.loc[pseudo["label"] == "a", "confidence"].item() == pytest.approx(0.95)  # the most confident a


def test_pseudo_label_guards(tmp_path):
    train_csv, preds = _pseudo_setup(tmp_path)
    out = tmp_path / "new.csv"
    # out-of-fold predictions of training files are refused
    oof = pd.read_csv(preds)
    oof.insert(1, "fold", 0)
    oof.to_csv(tmp_path / "preds" / "oof.csv", index=False)
    with pytest.raises(DataError, match="out-of-fold predictions"):
        _cli("pseudo-label", tmp_path / "preds" / "oof.csv", "--train", train_csv, "--out", out)
    # a test file that is also a training file
    both = pd.read_csv(train_csv)
    both.loc[len(both)] = [str((preds.parent / "test/x0.wav").resolve()), "a", "s0"]
    both.to_csv(tmp_path / "train" / "both.csv", index=False)
    with pytest.raises(DataError, match="also a training file"):
        _cli("pseudo-label", preds, "--train", tmp_path / "train" / "both.csv", "--out", out)
    # classes the training set does not have
    other = pd.read_csv(train_csv).assign(label=["a", "b", "d"] * 2)
    other.to_csv(tmp_path / "train" / "other.csv", index=False)
    with pytest.raises(DataError, match="differ from the training labels"):
        _cli("pseudo-label", preds, "--train", tmp_path / "train" / "other.csv", "--out", out)
    # test audio that cannot be found next to the predictions
    (preds.parent / "test" / "x3.wav").unlink()
    with pytest.raises(DataError, match="--test-input"):
        _cli("pseudo-label", preds, "--train", train_csv, "--out", out)
    with pytest.raises(ParameterError, match="threshold"):
        (preds.parent / "test" / "x3.wav").write_bytes(b"")
        _cli("pseudo-label", preds, "--train", train_csv, "--out", out, "--threshold", "1.5")
    assert not out.exists()

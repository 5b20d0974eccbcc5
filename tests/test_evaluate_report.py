"""``specimg evaluate`` on the user's path: a run's table evaluated from the folder that holds runs/ and cache/
(paths resolved through the run, not the working folder), files that predict skipped (scored without them,
listed with predict's reason), and a report that is complete or absent, never half-written."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from _cli import cli
from specimg.exceptions import AudioError
from specimg.predict import evaluate_predictions, write_report

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = [f"{d}_{s}_{t}.wav" for d in (3, 7) for s in ("jackson", "theo") for t in (0, 1, 2)]
RENDER = ["--sample-rate", "8000", "--seconds", "1", "--hop", "0.5", "--n-fft", "256", "--hop-length", "64",
          "--n-mels", "32", "--image-size", "32", "--quiet"]


def _train_opts(backbone):
    return ["--backbone", backbone, "--weights", "none", "--epochs", "1", "--folds", "2", "--group-column",
            "speaker", "--batch-size", "8", "--device", "cpu", "--workers", "1"]


@pytest.fixture(scope="module")
def layout(fsdd_dir, tiny_backbone, tmp_path_factory):
    """``data/labels.csv`` (relative paths, like FSDD's) beside ``work/``, the folder a user types commands in:
    ``work/cache`` rendered from ``../data/labels.csv``, ``work/runs/cached`` trained on it and
    ``work/runs/onthefly`` trained on the audio with the on-the-fly images (no image cache)."""
    import torch

    root = tmp_path_factory.mktemp("evaluate_layout")
    (root / "data" / "recordings").mkdir(parents=True)
    rows = []
    for name in NAMES:
        shutil.copy(fsdd_dir / "recordings" / name, root / "data" / "recordings" / name)
        rows.append({"path": f"recordings/{name}", "label": name[0], "speaker": name.split("_")[1]})
    pd.DataFrame(rows).to_csv(root / "data" / "labels.csv", index=False)
    work = root / "work"
    work.mkdir()
    cwd, n = os.getcwd(), torch.get_num_threads()
    torch.set_num_threads(1)
    os.chdir(work)
    try:
        from specimg.cli import main

        assert main(["render", "../data/labels.csv", "--out", "cache", *RENDER]) == 0
        assert main(["train", "cache", "--out", "runs/cached", *_train_opts(tiny_backbone)]) == 0
        assert main(["train", "../data/labels.csv", "--out", "runs/onthefly", "--images", "on-the-fly",
                     "--cache", "wave_cache", *RENDER, *_train_opts(tiny_backbone)]) == 0
    finally:
        os.chdir(cwd)
        torch.set_num_threads(n)
    return root


@pytest.mark.parametrize("run", ["cached", "onthefly"])
def test_evaluate_a_run_from_the_folder_that_holds_it(layout, run, capsys, monkeypatch):
    """The getting-started step 3: the table's paths are relative to the training table (../data), not to
    the working folder; --run knows where that is (its image cache, or the table's folder)."""
    monkeypatch.chdir(layout / "work")
    rc, out, err = cli(["evaluate", f"runs/{run}/oof_files.csv", "--report", f"runs/{run}/report",
                        "--run", f"runs/{run}"], capsys)
    assert rc == 0, err
    assert re.match(r"12 files: accuracy \d\.\d{4}", out)
    report = layout / "work" / "runs" / run / "report"
    md = (report / "report.md").read_text()
    examples = json.loads((report / "metrics.json").read_text())["examples"]
    assert examples and all((report / e["image"]).is_file() for e in examples)
    assert "Not drawn" not in md and not list(report.parent.glob(".report.*"))


def test_audio_that_is_gone_is_listed_not_fatal(layout, tmp_path, capsys, monkeypatch):
    """The on-the-fly run renders its examples from the audio: with some files removed, the report is
    complete and names the files it could not draw."""
    data = tmp_path / "data"
    shutil.copytree(layout / "data", data)
    run = tmp_path / "work" / "runs" / "onthefly"
    shutil.copytree(layout / "work" / "runs" / "onthefly", run)
    meta = json.loads((run / "config.json").read_text())
    meta["data_root"] = str(data)
    (run / "config.json").write_text(json.dumps(meta))
    gone = sorted((data / "recordings").iterdir())[::2]
    for p in gone:
        p.unlink()
    monkeypatch.chdir(tmp_path / "work")
    rc, out, err = cli(["evaluate", "runs/onthefly/oof_files.csv", "--report", "rep", "--run", "runs/onthefly"],
                       capsys)
    assert rc == 0, err
    md = (tmp_path / "work" / "rep" / "report.md").read_text()
    not_drawn = json.loads((tmp_path / "work" / "rep" / "metrics.json").read_text())["not_drawn"]
    assert not_drawn and all("file not found" in d["reason"] for d in not_drawn)
    assert "## Not drawn" in md and all(f"`{d['path']}`" in md for d in not_drawn)
    assert {d["path"] for d in not_drawn} <= {f"recordings/{p.name}" for p in gone}


# ------------------------------------------------------------------ files that predict skipped
@pytest.fixture(scope="module")
def predicted_bad_batch(bad_batch, layout, tmp_path_factory):
    """``specimg predict`` of the bad batch with the cached run: preds.csv and preds_errors.csv."""
    from specimg.cli import main

    out = tmp_path_factory.mktemp("pred_bad") / "preds.csv"
    assert main(["predict", str(layout / "work" / "runs" / "cached"), str(bad_batch.csv), "--out", str(out),
                 "--device", "cpu", "--quiet"]) == 0
    assert out.with_name("preds_errors.csv").is_file()
    return out


def test_evaluate_scores_the_rest_and_lists_what_predict_skipped(predicted_bad_batch, bad_batch, tmp_path, capsys):
    preds = predicted_bad_batch
    errors = pd.read_csv(preds.with_name("preds_errors.csv"), dtype=str)
    assert sorted(errors["path"]) == sorted(bad_batch.bad)
    rc, out, err = cli(["evaluate", preds, "--labels", bad_batch.csv, "--report", tmp_path / "rep"], capsys)
    assert rc == 0, err
    assert out.startswith(f"{len(bad_batch.good)} files: accuracy")
    assert f"{len(bad_batch.bad)} file(s) have no prediction and are not scored" in err
    for name in bad_batch.bad:  # each with predict's own reason and the table it comes from
        assert re.search(rf"{re.escape(name)}: not predicted: .*{re.escape(bad_batch.expected[name])}.*"
                         rf"see .*preds_errors\.csv", err), name
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Not scored" in md and all(f"`{n}`" in md for n in bad_batch.bad)
    missing = json.loads((tmp_path / "rep" / "metrics.json").read_text())["missing"]
    assert sorted(m["path"] for m in missing) == sorted(bad_batch.bad)
    # without --labels, the errors table beside the predictions is listed the same way
    m = evaluate_predictions(preds)
    assert m["n_files"] == len(bad_batch.good) and sorted(m["missing"]) == sorted(bad_batch.bad)


def test_labelled_files_without_any_prediction_or_errors_table(tmp_path):
    preds = pd.DataFrame({"path": ["a.wav", "b.wav"], "label": ["x", "y"], "prediction": ["x", "x"],
                          "prob_x": [0.9, 0.6], "prob_y": [0.1, 0.4]})
    preds.to_csv(tmp_path / "p.csv", index=False)
    pd.DataFrame({"path": ["a.wav", "b.wav", "c.wav"], "label": ["x", "y", "y"]}).to_csv(tmp_path / "l.csv",
                                                                                      index=False)
    m = evaluate_predictions(tmp_path / "p.csv", labels=tmp_path / "l.csv")
    assert m["n_files"] == 2 and m["accuracy"] == 0.5
    assert m["missing"] == {"c.wav": "no prediction (not in the predictions)"}


# ------------------------------------------------------------------ never a half report
def _report(out, **kw):
    return write_report(out, ["a", "b", "a"], [[0.9, 0.1], [0.3, 0.7], [0.4, 0.6]], ["a", "b"],
                        paths=["x.wav", "y.wav", "z.wav"], **kw)


def test_a_report_that_fails_part_way_leaves_the_previous_one(tmp_path, monkeypatch):
    out = tmp_path / "rep"
    _report(out, title="first")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    import specimg.predict.report as report

    def broken(*a, **k):
        raise RuntimeError("the plot failed")

    monkeypatch.setattr(report, "plot_recall", broken)
    with pytest.raises(RuntimeError, match="the plot failed"):
        _report(out, title="second")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # untouched
    assert not list(tmp_path.glob(".rep.*"))  # the staging folder is gone
    with pytest.raises(RuntimeError):
        _report(tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()  # nothing at all rather than a half


def test_images_that_cannot_be_drawn_are_named(tmp_path):
    def images(path):
        if path == "z.wav":
            raise AudioError(path, "file not found. Check the path.")
        return np.zeros((8, 8, 3), np.uint8)

    out = _report(tmp_path / "rep", images=images)
    md = out.read_text()
    assert "## Not drawn" in md and "`z.wav`: file not found" in md
    meta = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert meta["not_drawn"] == [{"path": "z.wav", "reason": "file not found. Check the path."}]
    assert {e["path"] for e in meta["examples"]} == {"x.wav", "y.wav"}
    # a rerun replaces the examples instead of piling up old ones
    _report(tmp_path / "rep", images=lambda p: np.zeros((8, 8, 3), np.uint8), n_examples=1)
    assert len(list((tmp_path / "rep" / "examples").iterdir())) == 2

"""Multi-label tagging and annotated long recordings.

Exact answers come from data built so that they are known: FSDD clips mixing two digits by two speakers (the
labels are the two digits), and long recordings concatenating FSDD digits with silences (the annotation table
holds each digit's exact start and end). Window labels and detections are checked against those tables;
tiny models check that train / predict / evaluate / export / stack run and agree with each other.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from specimg.audio import parse_events, parse_tags, read_table
from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig, TrainConfig
from specimg.config import TaskConfig
from specimg.data import as_tag_table, sample_negatives, tag_classes, tag_folds, tag_matrix, window_targets
from specimg.exceptions import DataError, ParameterError
from specimg.predict import read_predictions
from specimg.scoring import average_precisions, fit_thresholds, tag_metrics, tag_scores
from specimg.tasks import aggregate_segments, task_kind

from _cli import cli

ROOT = Path(__file__).resolve().parents[1]

RENDER = ["--sample-rate", "8000", "--n-fft", "256", "--hop-length", "32", "--n-mels", "32", "--image-size", "32"]


def _write(path, text):
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- reading multi-label input
def test_labels_column_and_multi_hot_columns_become_tag_sets(tmp_path):
    t = read_table(_write(tmp_path / "t.csv", "path,labels,site\na.wav,dog; siren,x\nb.wav,,y\nc.wav,3,x\n"))
    assert t["label"].isna().all()
    assert [parse_tags(v) for v in t["labels"]] == [["dog", "siren"], [], ["3"]]
    assert t["labels"].iloc[2] == '["3"]'  # JSON text: digits stay strings in every CSV written after
    m = read_table(_write(tmp_path / "m.csv", "path,dog,cat,bird,speaker_id\na.wav,1,0,1,7\nb.wav,0,0,0,8\n"))
    assert [parse_tags(v) for v in m["labels"]] == [["dog", "bird"], []]
    single = read_table(_write(tmp_path / "s.csv", "path,label,x,y\na.wav,cat,0,1\n"))
    assert "labels" not in single.columns  # a label column: single-label, 0/1 columns are just columns
    assert task_kind(single) == "single-label" and task_kind(t) == "multi-label"
    forced = as_tag_table(single)
    assert task_kind(single, TaskConfig(kind="multi-label")) == "multi-label"
    assert parse_tags(forced["labels"][0]) == ["cat"]
    with pytest.raises(ParameterError, match="task kind 'single-label'.*holds tag sets"):
        task_kind(t, TaskConfig(kind="single-label"))


def test_annotation_table_becomes_one_row_per_recording(tmp_path):
    t = read_table(_write(tmp_path / "a.csv", "path,start,end,label,site,note\n"
                                              "r1.wav,2.0,2.5,7,north,a\nr1.wav,0.5,1.0,3,north,b\n"
                                              "r2.wav,,,,south,c\n"))
    assert t["path"].tolist() == ["r1.wav", "r2.wav"]
    assert parse_events(t["events"].iloc[0]) == [(0.5, 1.0, "3"), (2.0, 2.5, "7")]  # sorted by start
    assert parse_events(t["events"].iloc[1]) == [] and parse_tags(t["labels"].iloc[1]) == []  # a negative
    assert parse_tags(t["labels"].iloc[0]) == ["3", "7"]
    assert t["site"].tolist() == ["north", "south"]  # one value per recording: kept
    assert "note" not in t.columns  # varies within a recording: dropped


def test_raven_selection_table(tmp_path):
    raven = ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tSpecies\n"
             "1\tSpectrogram 1\t1\t0.5\t1.25\t0\t4000\tbird\n"
             "1\tWaveform 1\t1\t0.5\t1.25\t0\t4000\tbird\n"  # Raven lists a selection once per view
             "2\tSpectrogram 1\t1\t3\t4\t0\t4000\tfrog\n")
    sel = _write(tmp_path / "sel.txt", raven)
    t = read_table(sel, recording="rec.wav")
    assert t["path"].tolist() == ["rec.wav"] and t["abspath"].iloc[0] == str(tmp_path / "rec.wav")
    assert parse_events(t["events"].iloc[0]) == [(0.5, 1.25, "bird"), (3.0, 4.0, "frog")]
    with pytest.raises(DataError, match=r"does not name its recording.*recording= \(--recording PATH\)"):
        read_table(sel)
    named = _write(tmp_path / "named.txt", raven.replace("Species", "Call").replace("High Freq (Hz)\t",
                                                                                    "High Freq (Hz)\tBegin File\t")
                   .replace("4000\t", "4000\tx.wav\t"))
    with pytest.raises(DataError, match=r"without an annotation column.*--annotation-column COL"):
        read_table(named)
    t2 = read_table(named, annotation_column="Call")
    assert t2["path"].tolist() == ["x.wav"] and parse_tags(t2["labels"].iloc[0]) == ["bird", "frog"]
    offset = _write(tmp_path / "off.txt", "Selection\tBegin Time (s)\tEnd Time (s)\tBegin Path\tFile Offset (s)\t"
                                          "Annotation\n1\t100.0\t100.5\t/data/b.wav\t2.0\tx\n")
    assert parse_events(read_table(offset)["events"].iloc[0]) == [(2.0, 2.5, "x")]  # times within the file


@pytest.mark.parametrize("text, match", [
    ("path,label,labels\na.wav,x,y\n", r"both a 'label' column .* and a 'labels' column"),
    ("path,labels\na.wav,Dog\nb.wav,dog\n", r"spells the same tag in different ways: 'Dog' / 'dog'"),
    ("path,start,end,label\nr.wav,2.0,1.0,x\n", r"row 1 \('r.wav', label 'x'\) has start 2.0 and end 1.0; an event "
                                                r"needs 0 <= start < end"),
    ("path,start,end\nr.wav,0,1\n", r"start and end columns but no label column"),
    ("path,start,end,label,group\nr.wav,0,1,x,g1\nr.wav,1,2,y,g2\n", r"recording 'r.wav' has several 'group' values"),
    ("path,a,b\nx.wav,1,\ny.wav,0,1\n", r"multi-hot class column 'b' is empty in some rows"),
])
def test_bad_multilabel_input_is_named(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        read_table(_write(tmp_path / "bad.csv", text))


def test_unknown_tags_and_options_are_named(tmp_path):
    with pytest.raises(DataError, match=r"tag\(s\) \['owl'\] that are not among the 2 classes"):
        tag_matrix([["bird"], ["owl"]], ["bird", "frog"])
    with pytest.raises(DataError, match="is not an annotation table"):
        read_table(_write(tmp_path / "t.csv", "path,label\na.wav,x\n"), annotation_column="Species")


# --------------------------------------------------------------------------- window targets
def test_window_targets_follow_the_overlap_rules():
    files = pd.DataFrame({"file_id": [0, 1], "labels": ['["a", "b"]', '["b"]'],
                          "events": ['[[0.9, 1.4, "a"], [1.0, 3.0, "b"]]', None]})
    seg = pd.DataFrame({"file_id": [0, 0, 0, 0, 0, 1], "start": [0.0, 0.5, 1.0, 1.5, 2.0, 0.0],
                        "end": [1.0, 1.5, 2.0, 2.5, 3.0, 1.0]})
    t = window_targets(files, seg, ["a", "b"], min_seconds=0.25, min_fraction=0.5)
    # 'a' (0.5 s): overlaps 0.1, 0.5, 0.4, 0, 0 -> the fraction rule (>= 0.25 s) labels windows 1 and 2;
    # 'b' (2 s): overlaps 0, 0.5, 1, 1, 1; the last file has no events cell: its tags label its window
    assert t.tolist() == [[0, 0], [1, 1], [1, 1], [0, 1], [0, 1], [0, 1]]
    strict = window_targets(files, seg, ["a", "b"], min_seconds=0.45, min_fraction=None)
    assert strict[:, 0].tolist() == [0, 1, 0, 0, 0, 0]  # 0.4 s of 'a' is not 0.45 s
    shifted = window_targets(files, seg, ["a", "b"], min_seconds=0.25, min_fraction=0.5, offset=0.5)
    assert shifted[:5, 0].tolist() == [1, 1, 0, 0, 0]  # windows 0.5 s later in the recording
    with pytest.raises(ParameterError, match="'min_fraction' parameter of window_targets"):
        window_targets(files, seg, ["a", "b"], min_fraction=0)


def _expected_window_labels(ann: pd.DataFrame, segments: pd.DataFrame, files: pd.DataFrame, min_s: float,
                            frac: float) -> list:
    """Window labels straight from the annotation table (loops, no shared code with window_targets)."""
    path_of = dict(zip(files["file_id"], files["path"]))
    out = []
    for fid, a, b in zip(segments["file_id"], segments["start"], segments["end"]):
        tags = set()
        for _, e in ann[ann["path"] == path_of[fid]].iterrows():
            ov = min(b, e["end"]) - max(a, e["start"])
            if ov > 0 and (ov >= min_s - 1e-9 or ov >= frac * (e["end"] - e["start"]) - 1e-9):
                tags.add(str(e["label"]))
        out.append(sorted(tags))
    return out


@pytest.fixture(scope="module")
def recordings(fsdd_dir, tmp_path_factory):
    from specimg.datasets import fsdd_recordings

    root = tmp_path_factory.mktemp("long")
    csv = fsdd_recordings(root, speakers=("george", "jackson"), per_speaker=1, digits=4, gap=(0.8, 1.2),
                          fsdd=fsdd_dir, seed=3)
    return csv


def _long_config():
    return RenderConfig(audio=AudioConfig(sample_rate=8000), segment=SegmentConfig(seconds=0.5, hop=0.25),
                        spectrogram=SpectrogramConfig(n_fft=256, hop_length=32, n_mels=32, image_size=(32, 32)))


def test_window_labels_of_real_long_recordings_match_the_annotation_table(recordings, tmp_path):
    from specimg.data import WaveformSet
    from specimg.spectrogram import ImageCache, render_dataset

    ann = pd.read_csv(recordings, dtype={"label": str})
    cache = render_dataset(recordings, tmp_path / "cache", _long_config(), progress=False)
    files = ImageCache.open(tmp_path / "cache").files  # the cache keeps labels and events
    assert [parse_events(v) for v in files["events"]] == [
        [(float(r.start), float(r.end), r.label) for r in ann[ann["path"] == p].itertuples()] for p in files["path"]]
    classes = tag_classes(files)
    assert classes == sorted(set(ann["label"]), key=int)
    t = window_targets(files, cache.segments, classes, min_seconds=0.25, min_fraction=0.5)
    got = [[c for c, v in zip(classes, row) if v] for row in t]
    assert got == _expected_window_labels(ann, cache.segments, files, 0.25, 0.5)
    assert sum(map(bool, got)) >= len(ann) and sum(not g for g in got) > 10  # every digit labels a window; silences
    waves = WaveformSet.load(recordings, _long_config(), progress=False, cache_dir=tmp_path / "waves")
    assert WaveformSet.open(tmp_path / "waves").files["events"].tolist() == files["events"].tolist()
    assert waves.segments[["start", "end"]].equals(cache.segments[["start", "end"]])


def test_a_reused_cache_takes_the_new_tags(recordings, tmp_path):
    from specimg.spectrogram import render_dataset
    from specimg.tasks import MultiLabel

    render_dataset(recordings, tmp_path / "cache", _long_config(), progress=False)
    ann = pd.read_csv(recordings)
    ann["label"] = "x" + ann["label"].astype(str)
    ann.to_csv(tmp_path / "renamed.csv", index=False)
    table = read_table(tmp_path / "renamed.csv")
    (tmp_path / "recordings").symlink_to(recordings.parent / "recordings")
    cache = render_dataset(table, tmp_path / "cache", _long_config(), progress=False)  # same audio: reused
    assert not any(t.startswith("x") for ts in map(parse_tags, cache.files["labels"]) for t in ts)  # stale tags
    cache.files = MultiLabel().prepare_files(cache.files, table)
    assert all(t.startswith("x") for ts in map(parse_tags, cache.files["labels"]) for t in ts)


# --------------------------------------------------------------------------- folds and negatives
def test_multilabel_folds_keep_groups_whole_and_balance_tags():
    rng = np.random.default_rng(0)
    classes = list("abcdef")
    tags = [[c for c in classes if rng.random() < p] for p in rng.uniform(0.1, 0.5, 60)]
    files = pd.DataFrame({"path": [f"f{i}.wav" for i in range(60)], "labels": [json.dumps(t) for t in tags],
                          "site": [f"s{i // 3}" for i in range(60)]})
    grouped = tag_folds(files, classes, n_splits=4, group_column="site", seed=0)
    assert all(len(set(grouped[files["site"] == s])) == 1 for s in files["site"].unique())
    y = tag_matrix(tags, classes)

    def spread(folds):
        counts = np.array([[y[folds == k, j].sum() for k in range(5)] for j in range(len(classes))])
        return float((counts.max(1) - counts.min(1)).mean())

    per_file = tag_folds(files, classes, n_splits=5, seed=0)
    random = np.mean([spread(rng.permutation(np.arange(60) % 5)) for _ in range(50)])
    assert spread(per_file) <= 1.5 < random / 2  # iterative stratification vs random folds of the same sizes
    with pytest.raises(ParameterError, match=r"only 20 values of 'site' to split, got n_splits=21"):
        tag_folds(files, classes, n_splits=21, group_column="site")


def test_negatives_are_subsampled_by_ratio_with_a_seed():
    t = np.zeros((20, 2), np.float32)
    t[[1, 5, 9], 0] = 1
    rows = np.arange(20)
    kept = sample_negatives(rows, t, 2.0, seed=0)
    assert {1, 5, 9} <= set(kept.tolist()) and len(kept) == 3 + 6
    assert sample_negatives(rows, t, 2.0, seed=0).tolist() == kept.tolist()
    assert sample_negatives(rows, t, None, seed=0).tolist() == rows.tolist()


# --------------------------------------------------------------------------- scores
def test_pooling_without_renormalising_and_the_metrics():
    p = np.array([[0.9, 0.1], [0.2, 0.7], [0.3, 0.2]])
    ids, fmax = aggregate_segments(p, [0, 0, 1], method="max", normalize=False)
    assert fmax.tolist() == [[0.9, 0.7], [0.3, 0.2]]
    np.testing.assert_allclose(aggregate_segments(p, [0, 0, 1], method="mean", normalize=False)[1],
                               [[0.55, 0.4], [0.3, 0.2]], rtol=0, atol=1e-12)
    assert aggregate_segments(p, [0, 0, 1], method="max")[1].sum(1).round(12).tolist() == [1.0, 1.0]
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    s = np.array([[0.8, 0.3, 0.1], [0.4, 0.9, 0.2], [0.3, 0.6, 0.3], [0.5, 0.1, 0.4]])
    from sklearn.metrics import average_precision_score, f1_score

    ap = average_precisions(y, s)
    assert ap[:2].tolist() == [average_precision_score(y[:, 0], s[:, 0]), average_precision_score(y[:, 1], s[:, 1])]
    assert math.isnan(ap[2])  # no positive: left out of the macro mean
    assert tag_scores(y, s)["macro_ap"] == pytest.approx(ap[:2].mean())
    t = fit_thresholds(y, s)
    for j in range(2):  # the fitted threshold reaches the best F1 of every possible cut
        best = max(f1_score(y[:, j], s[:, j] >= c) for c in s[:, j])
        assert f1_score(y[:, j], s[:, j] >= t[j]) == pytest.approx(best)
    assert t[2] == 0.5
    m = tag_metrics(y, s, ["a", "b", "c"], thresholds=t)
    assert m["per_class"]["a"]["f1"] == pytest.approx(f1_score(y[:, 0], s[:, 0] >= t[0]))
    assert m["per_class"]["c"]["ap"] is None and m["macro_ap"] == pytest.approx(ap[:2].mean())


def test_prediction_tables_of_scores_need_not_sum_to_one(tmp_path):
    multi = pd.DataFrame({"path": ["a", "b"], "labels": ["x;y", ""], "prediction": ["x;y", ""],
                          "prob_x": [0.9, 0.2], "prob_y": [0.8, 0.1]})
    multi.to_csv(tmp_path / "m.csv", index=False)
    frame, classes, probs = read_predictions(tmp_path / "m.csv")
    assert classes == ["x", "y"] and frame["prediction"].tolist() == ["x;y", ""]
    single = multi.drop(columns="labels")
    with pytest.raises(DataError, match="must sum to 1"):
        read_predictions(single)
    assert read_predictions(single, task="multi-label")[2].shape == (2, 2)
    with pytest.raises(DataError, match=r"must lie in \[0, 1\]"):
        read_predictions(multi.assign(prob_x=[1.5, 0.1]))


# --------------------------------------------------------------------------- losses
def test_losses_and_mixup_targets():
    from specimg.config import TaskConfig
    from specimg.tasks import AsymmetricLoss, BCEWithLogits, FocalBCE, MultiLabel, positive_weights

    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(6, 3, generator=g), (torch.rand(6, 3, generator=g) > 0.5).float()
    w = torch.tensor([1.0, 2.0, 3.0])
    ref = torch.nn.BCEWithLogitsLoss(pos_weight=w)(z, y)
    assert torch.allclose(BCEWithLogits(w)(z, y), ref)
    assert torch.allclose(FocalBCE(0.0, w)(z, y), ref)
    assert torch.allclose(AsymmetricLoss(0.0, clip=0.0)(z, y), torch.nn.BCEWithLogitsLoss()(z, y), atol=1e-6)
    assert FocalBCE(2.0)(z, y) < BCEWithLogits()(z, y)  # easy terms weigh less
    assert positive_weights(np.array([[1, 0], [0, 0], [0, 0], [0, 1]]), "balanced").tolist() == [3.0, 3.0]
    assert positive_weights(np.zeros((2, 1)), "none") is None
    perm = torch.tensor([1, 0])
    yy = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    seen = []
    for mode in ("union", "mix"):  # the task mixes the targets of a mixed batch, the loss sees them
        MultiLabel(TaskConfig(kind="multi-label", mixup_targets=mode)).mixup_loss(
            lambda logits, t: seen.append(t) or t.sum(), None, yy, perm, 0.8)
    assert seen[0].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert torch.allclose(seen[1], torch.tensor([[0.8, 0.2], [0.2, 0.8]]))


# --------------------------------------------------------------------------- end to end on FSDD mixtures
@pytest.fixture(scope="module")
def mixtures(fsdd_dir, tmp_path_factory):
    from specimg.datasets import fsdd_mixtures

    root = tmp_path_factory.mktemp("mix")
    return fsdd_mixtures(root, per_pair=5, pairs=(("george", "jackson"), ("lucas", "nicolas")), fsdd=fsdd_dir,
                         seed=0)


def _train(args, capsys):
    rc, out, err = cli(["train", *args], capsys)
    assert rc == 0, err
    return out


@pytest.fixture(scope="module")
def mixture_runs(mixtures, tiny_backbone, tmp_path_factory):
    """Two multi-label runs (other learning rates, the same folds) trained with `specimg train` in-process."""
    root = tmp_path_factory.mktemp("runs")
    common = ["--backbone", tiny_backbone, "--weights", "none", "--epochs", "2", "--folds", "2", "--group-column",
              "group", "--batch-size", "8", "--device", "cpu", "--workers", "1", "--seconds", "1", "--hop", "0.5",
              "--mixup", "0.2", "--quiet", *RENDER]
    runs = []
    for i, lr in enumerate(("0.05", "0.02")):
        from specimg.cli import main

        assert main(["train", str(mixtures), "--out", str(root / f"run{i}"), "--lr", lr, "--cache",
                     str(root / "cache"), *common]) == 0
        runs.append(root / f"run{i}")
    return runs


def test_train_on_mixtures_writes_a_multilabel_run(mixtures, mixture_runs):
    from specimg.training import Run

    run = Run.open(mixture_runs[0])
    assert run.task.kind == "multi-label" and run.train_config.task.kind == "multi-label"
    truth = pd.read_csv(mixtures, dtype=str)
    oof = run.oof_files
    assert oof["labels"].tolist() == truth["labels"].tolist()  # both digits of every mixture, in table order
    folds = run.folds
    assert folds.groupby("group")["fold"].nunique().eq(1).all()  # a speaker pair never spans two folds
    scores = oof[[f"prob_{c}" for c in run.classes]].to_numpy()
    assert run.classes == sorted({d for v in truth["labels"] for d in v.split(";")}, key=int)
    assert np.abs(scores.sum(1) - 1).max() > 0.1 and ((scores > 0) & (scores < 1)).all()  # sigmoid scores
    seg = run.oof_segments
    assert set(seg["labels"]) <= set(truth["labels"])  # a clip's windows carry the clip's tags
    th = run.thresholds
    assert th["classes"] == run.classes and set(th["file"]) == set(run.classes)
    t = np.array([th["file"][c] for c in run.classes])
    expect = [";".join(c for c, s, tc in zip(run.classes, row, t) if s >= tc) for row in scores]
    assert oof["prediction"].fillna("").tolist() == expect  # the tags at or above their fitted thresholds
    m = run.metrics
    assert m["task"] == "multi-label" and m["metric"] == "macro_ap" and set(m["folds"]) == {"0", "1"}


def test_predictor_and_onnx_give_the_out_of_fold_scores(mixture_runs, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from specimg.predict import Predictor, export_run
    from specimg.spectrogram import ImageCache
    from specimg.training import Run

    run = Run.open(mixture_runs[0])
    seg = run.oof_segments
    cache = ImageCache.open(run.config["cache"])
    fold_of = dict(zip(run.folds["path"], run.folds["fold"]))
    k = 0
    pred = Predictor.from_run(run.root, folds=[k], device="cpu")
    assert pred.task.kind == "multi-label" and pred.aggregate == "max"
    rows = np.flatnonzero(cache.files.set_index("file_id").loc[cache.segments["file_id"], "path"]
                          .map(fold_of).to_numpy() == k)
    got = pred.predict_images(np.asarray(cache.images[rows]))
    want = seg[seg["fold"] == k][[f"prob_{c}" for c in run.classes]].to_numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)  # what is validated is what is predicted
    onnx = export_run(run.root, tmp_path / "m.onnx", folds=[k])[0]
    meta = json.loads((tmp_path / "m.onnx.json").read_text())
    assert meta["activation"] == "sigmoid" and meta["task"] == "multi-label"
    images = torch.from_numpy(np.asarray(cache.images[rows])).permute(0, 3, 1, 2).float().numpy()
    out = ort.InferenceSession(str(onnx)).run(None, {"images": images})[0]
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_cli_predict_evaluate_stack_on_a_multilabel_table(mixtures, mixture_runs, tmp_path, capsys):
    run0, run1 = mixture_runs
    preds = tmp_path / "preds.csv"
    rc, out, err = cli(["predict", run0, mixtures, "--out", preds, "--segments", "--device", "cpu", "--quiet"],
                       capsys)
    assert rc == 0, err
    p = pd.read_csv(preds, dtype={"labels": str, "prediction": str}, keep_default_na=False)
    truth = pd.read_csv(mixtures, dtype=str)
    assert p["labels"].tolist() == truth["labels"].tolist()
    rc, out, err = cli(["evaluate", preds, "--run", run0, "--report", tmp_path / "report"], capsys)
    assert rc == 0, err
    assert "(multi-label): macro AP" in out
    m = json.loads((tmp_path / "report" / "metrics.json").read_text())
    classes = [c[5:] for c in p.columns if c.startswith("prob_")]
    y = tag_matrix([parse_tags(v) for v in p["labels"]], classes)
    assert m["macro_ap"] == pytest.approx(tag_scores(y, p[[f"prob_{c}" for c in classes]].to_numpy())
                                          ["macro_ap"])
    assert (tmp_path / "report" / "pr_curves.png").stat().st_size > 1000
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Per class" in md and all(f"\n| {c} | " in md for c in classes)
    bad = truth.assign(labels=truth["labels"].str.replace("1", "eleven"))
    bad.to_csv(tmp_path / "bad.csv", index=False)
    rc, out, err = cli(["evaluate", preds, "--labels", tmp_path / "bad.csv"], capsys)
    assert rc == 2 and "tag(s) ['eleven'] that the model never saw" in err
    rc, out, err = cli(["stack", run0, run1, "--out", tmp_path / "stack"], capsys)
    assert rc == 0, err
    assert "multi-label models" in out and "auto (stack)" in out
    stacked = pd.read_csv(tmp_path / "stack" / "oof_files.csv", dtype={"labels": str})
    assert stacked["labels"].tolist() == truth["labels"].tolist()
    rc, out, err = cli(["stack", run0, run1, "--out", tmp_path / "stack2", "--method", "lgbm"], capsys)
    assert rc == 2 and "The runs are multi-label" in err


# --------------------------------------------------------------------------- detections on long recordings
def test_detections_of_oracle_scores_are_the_annotated_events(recordings, tmp_path):
    from specimg.predict import detect, match_detections, write_raven
    from specimg.spectrogram import render_dataset

    cache = render_dataset(recordings, tmp_path / "cache", _long_config(), progress=False)
    files, ann = cache.files, pd.read_csv(recordings, dtype={"label": str})
    classes = tag_classes(files)
    t = window_targets(files, cache.segments, classes)
    path_of = dict(zip(files["file_id"], files["path"]))
    seg = cache.segments.assign(path=cache.segments["file_id"].map(path_of))
    for j, c in enumerate(classes):
        seg[f"prob_{c}"] = t[:, j]  # an oracle: 1 where the annotation labels the window
    det = detect(seg, classes, 0.5)
    # each event, on its own: from the first window it labels to the last (the gaps keep events apart)
    expected = []
    for _, e in ann.iterrows():
        win = seg[(seg["path"] == e["path"])]
        ov = np.minimum(win["end"], e["end"]) - np.maximum(win["start"], e["start"])
        on = win[(ov > 0) & ((ov >= 0.25 - 1e-9) | (ov >= 0.5 * (e["end"] - e["start"]) - 1e-9))]
        expected.append((e["path"], float(on["start"].min()), float(on["end"].max()), e["label"]))
    got = sorted(zip(det["path"], det["start"], det["end"], det["class"]))
    assert got == sorted(expected)
    assert (det["score"] == 1.0).all()
    m = match_detections(det, ann)
    assert m["precision"] == 1.0 and m["recall"] == 1.0 and m["n_events"] == len(ann)
    raven = write_raven(det, tmp_path / "det.selections.txt", high_freq=4000)
    back = read_table(raven)  # a Raven selection table reads back as an annotation table
    events = sorted((p, a, b, c) for p, v in zip(back["path"], back["events"]) for a, b, c in parse_events(v))
    assert events == sorted((p, round(a, 6), round(b, 6), c) for p, a, b, c in got)


def test_match_detections_counts_hits_false_alarms_and_misses():
    from specimg.predict import match_detections

    ann = pd.DataFrame({"path": ["r"] * 3, "start": [0.0, 2.0, 5.0], "end": [1.0, 3.0, 6.0], "label": list("aab")})
    det = pd.DataFrame({"path": ["r"] * 4, "start": [0.5, 0.2, 4.0, 5.5], "end": [1.5, 0.8, 4.5, 7.0],
                        "class": list("aaba"), "score": [0.9, 0.8, 0.7, 0.6]})
    m = match_detections(det, ann)
    # a@0.5 hits the first 'a'; a@0.2 finds it taken (false alarm); b@4 misses; a@5.5 overlaps only 'b'
    assert (m["true_positives"], m["n_detections"], m["n_events"]) == (1, 4, 3)
    assert m["per_class"]["b"]["recall"] == 0.0 and m["per_class"]["a"]["recall"] == 0.5


def test_cli_train_predict_evaluate_stack_on_an_annotation_table(recordings, tiny_backbone, tmp_path, capsys):
    from specimg.training import Run

    run = tmp_path / "run"
    _train([str(recordings), "--out", str(run), "--backbone", tiny_backbone, "--weights", "none", "--epochs", "1",
            "--folds", "2", "--group-column", "speaker", "--batch-size", "16", "--device", "cpu", "--workers", "1",
            "--seconds", "0.5", "--hop", "0.25", "--negative-ratio", "2", "--quiet", *RENDER], capsys)
    opened = Run.open(run)
    assert opened.task.kind == "multi-label"
    cache_segments = pd.read_csv(opened.config["cache"] + "/segments.csv")
    seg = opened.oof_segments
    assert len(seg) == len(cache_segments)  # validation keeps every window (negatives are cut in training only)
    ann = pd.read_csv(recordings, dtype={"label": str})
    files = read_table(recordings)
    expected = _expected_window_labels(ann, seg.assign(file_id=seg["path"]), files.assign(file_id=files["path"]),
                                       0.25, 0.5)
    assert [parse_tags(v) for v in seg["labels"]] == expected  # the OOF window table shows each window's labels
    preds = tmp_path / "preds.csv"
    rc, out, err = cli(["predict", run, recordings, "--out", preds, "--detections", "--device", "cpu", "--quiet"],
                       capsys)
    assert rc == 0, err
    det = pd.read_csv(tmp_path / "preds_detections.csv", dtype={"class": str})
    assert list(det.columns) == ["path", "start", "end", "class", "score"]
    assert set(det["class"]) <= set(opened.classes)
    assert (tmp_path / "preds_detections.selections.txt").is_file()
    p_seg = pd.read_csv(tmp_path / "preds_segments.csv", dtype={"labels": str}, keep_default_na=False)
    assert [parse_tags(v) for v in p_seg["labels"]] == expected
    rc, out, err = cli(["evaluate", tmp_path / "preds_detections.csv", "--labels", recordings], capsys)
    assert rc == 0, err
    assert f"detections of {len(ann)} events" in out
    rc, out, err = cli(["evaluate", tmp_path / "preds_segments.csv", "--run", run], capsys)
    assert rc == 0, err
    assert f"{len(expected)} windows (multi-label)" in out
    rc, out, err = cli(["stack", run, "--out", tmp_path / "stack", "--method", "blend"], capsys)
    assert rc == 0, err
    assert "logistic (stack)" in out  # a fitted blend of multi-label runs: a logistic regression per class


def test_images_made_on_the_fly_train_and_predict_multilabel(mixtures, tiny_backbone, tmp_path):
    from specimg.predict import Predictor
    from specimg.training import Run, train_cv

    render = RenderConfig(audio=AudioConfig(sample_rate=8000), segment=SegmentConfig(seconds=1.0, hop=0.5),
                          spectrogram=SpectrogramConfig(n_fft=256, hop_length=32, n_mels=32, image_size=(32, 32)))
    cfg = TrainConfig(backbone=tiny_backbone, weights="none", n_splits=2, group_column="group", images="on-the-fly",
                      schedule={"epochs": 1}, optim={"batch_size": 8}, runtime={"device": "cpu", "num_workers": 0},
                      task={"pooling": "mean", "loss": "asymmetric", "pos_weight": "balanced"})
    res = train_cv(mixtures, tmp_path / "run", cfg, render_config=render, folds=[0], verbose=False)
    run = Run.open(res.run_dir)
    assert run.images == "on-the-fly" and run.task.kind == "multi-label"
    seg = run.oof_segments
    pred = Predictor.from_run(run.root, device="cpu")
    assert pred.images == "on-the-fly" and pred.aggregate == "mean"
    out = pred.predict(mixtures, segments=True, progress=False)
    held = out.segments[out.segments["path"].isin(seg["path"])].reset_index(drop=True)
    cols = [f"prob_{c}" for c in run.classes]
    np.testing.assert_allclose(held[cols].to_numpy(), seg[cols].to_numpy(), atol=1e-5)  # one fold, same core
    files = out.files[out.files["path"].isin(seg["path"])]
    means = seg.groupby("path", sort=False)[cols].mean().loc[files["path"]]
    np.testing.assert_allclose(files[cols].to_numpy(), means.to_numpy(), atol=1e-6)  # mean pooling per class


# --------------------------------------------------------------------------- the multi-label recipe
def test_the_multilabel_recipe_runs_through_specimg_experiment(fsdd_dir, tmp_path, capsys, monkeypatch):
    """examples/recipes/multilabel_fsdd_quick.yaml, as its comment says to run it (smaller: 6 mixtures per pair,
    one epoch): a report scored by macro AP, stacked outputs decided by thresholds fitted on their OOF scores."""
    import shutil

    from specimg.datasets import fsdd_mixtures
    from specimg.tasks import MultiLabel

    root = tmp_path / "examples" / "recipes"
    root.mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "recipes" / "multilabel_fsdd_quick.yaml", root)
    fsdd_mixtures(root / "data" / "fsdd_mixtures", per_pair=6, fsdd=fsdd_dir)
    monkeypatch.setenv("SPECIMG_MAX_EPOCHS", "1")
    monkeypatch.chdir(tmp_path)
    rc, out, err = cli(["experiment", "examples/recipes/multilabel_fsdd_quick.yaml", "--out", "runs/ml", "--quiet"],
                       capsys)
    assert rc == 0, err
    exp = tmp_path / "runs" / "ml"
    report = (exp / "report.md").read_text()
    assert "multi-label classes (10)" in report and "| kind | name | OOF macro AP | OOF macro ROC-AUC |" in report
    table = pd.read_csv(exp / "report.csv")
    assert list(table["name"]) == ["effnet_mel32", "resnet_mel32", "mean of models", "logistic", "blend"]
    assert table["oof_macro_ap"].between(0, 1).all() and table["n_files"].eq(18).all()
    final = (exp / "report" / "report.md").read_text()
    assert "macro average precision" in final and (exp / "report" / "pr_curves.png").is_file()
    for method in ("logistic", "blend"):
        stacked = exp / "stack" / method
        thresholds = json.loads((stacked / "thresholds.json").read_text())
        oof = pd.read_csv(stacked / "oof_files.csv", dtype=str, keep_default_na=False)
        classes = [c[5:] for c in oof.columns if c.startswith("prob_")]
        scores = oof[[f"prob_{c}" for c in classes]].to_numpy(dtype=float)
        assert oof["prediction"].tolist() == MultiLabel().decide(scores, classes, thresholds)
        assert set(thresholds["file"]) == set(classes) and "stacked out-of-fold" in thresholds["rule"]


def test_stack_runs_honours_every_option_on_multilabel_runs_or_refuses_it_by_name(mixture_runs):
    from specimg.stacking import stack_runs

    base = stack_runs(mixture_runs, method="auto")
    assert base.metrics["metric"] == "macro_ap" and base.decision is not None and "candidates" not in base.metrics
    # params reach the per-class stacker: a strong L2 pulls the logistic regressions' coefficients to 0
    strong = stack_runs(mixture_runs, method="logistic", params={"C": 1e-4})
    weak = stack_runs(mixture_runs, method="logistic", params={"logistic": {"C": 100.0}})
    assert max(abs(e.coef_).max() for e in strong.estimators) < min(abs(e.coef_).max() for e in weak.estimators)
    # compare scores every candidate on the same folds; metric and inner_folds are the auto choice's
    cmp = stack_runs(mixture_runs, method="auto", compare=True, metric="macro_roc_auc", inner_folds=2)
    assert set(cmp.metrics["candidates"]) == {"auto", "mean", "logistic"} and cmp.metrics["metric"] == "macro_roc_auc"
    assert cmp.metrics["inner_folds"] == 2 and all("macro_roc_auc" in c["reason"] or c["reason"].startswith("one")
                                                   for c in cmp.metrics["selection"]["folds"])
    assert stack_runs(mixture_runs, method="mean", seed=7).metrics["stack"] == base.metrics["mean"]  # no randomness
    for kwargs, match in (({"method": "cnn"}, "stack them with method 'auto', 'mean', 'blend', 'logistic'"),
                          ({"metric": "uar"}, "'metric' parameter of stack_runs.*'macro_ap' or 'macro_roc_auc'"),
                          ({"params": {"epochs": 3}}, "MultiLabelStacker's options \\(C, max_iter\\).*\\['epochs'\\]"),
                          ({"inner_folds": 5}, "inner fold count.*in \\[2, 2\\]"),
                          ({"method": "blend", "weights": [1.0]}, "one weight per run")):
        with pytest.raises(ParameterError, match=match):
            stack_runs(mixture_runs, **kwargs)

"""Segment aggregation, TTA, prediction tables, metrics and the report folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from specimg.exceptions import DataError, ParameterError
from specimg.predict.aggregate import aggregate_segments, flip_tta_average, predictions_frame, read_predictions
from specimg.scoring import classification_metrics, uar
from specimg.predict.report import write_report

# Three segments of file 5, one of file 2; two classes.
SEG = np.array(
    [
        [0.8, 0.2],
        [0.4, 0.6],
        [0.6, 0.4],
        [0.1, 0.9],
    ]
)
IDX = np.array([5, 5, 5, 2])


# ---------------------------------------------------------------- aggregation
def test_mean_is_average_of_windows():
    ids, fp = aggregate_segments(SEG, IDX, method="mean")
    assert ids.tolist() == [2, 5]
    np.testing.assert_allclose(fp, [[0.1, 0.9], [0.6, 0.4]])


def test_max_is_per_class_max_renormalised():
    _, fp = aggregate_segments(SEG, IDX, method="max")
    # file 5: max = (0.8, 0.6) -> (0.8, 0.6) / 1.4
    np.testing.assert_allclose(fp, [[0.1, 0.9], [0.8 / 1.4, 0.6 / 1.4]])


def test_gmean_is_renormalised_geometric_mean():
    p = np.array([[0.5, 0.5], [0.125, 0.875], [0.5, 0.5]])  # one file
    _, fp = aggregate_segments(p, ["a.wav"] * 3, method="gmean", eps=1e-300)
    g = np.array([(0.5 * 0.125 * 0.5) ** (1 / 3), (0.5 * 0.875 * 0.5) ** (1 / 3)])
    np.testing.assert_allclose(fp[0], g / g.sum())
    # exact: 0.5*0.125*0.5 = 2**-5 -> 2**(-5/3)
    assert fp[0, 0] < 0.5 < fp[0, 1]


def test_string_file_index_and_rows_sum_to_one():
    ids, fp = aggregate_segments(SEG, ["b", "b", "a", "a"], method="gmean")
    assert ids.tolist() == ["a", "b"]
    np.testing.assert_allclose(fp.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"method": "median"}, ParameterError, "method"),
        ({"eps": 0}, ParameterError, "eps"),
    ],
)
def test_aggregate_bad_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        aggregate_segments(SEG, IDX, **kwargs)


@pytest.mark.parametrize(
    "probs, index, match",
    [
        (SEG, IDX[:3], "file_index"),
        (SEG[0], IDX[:1], "2 dimensions"),
        (np.log(SEG), IDX, "logits"),
        (np.where(SEG > 0.7, np.nan, SEG), IDX, "finite"),
    ],
)
def test_aggregate_bad_data(probs, index, match):
    with pytest.raises(DataError, match=match):
        aggregate_segments(probs, index)


def test_flip_tta_average_exact():
    out = flip_tta_average([[0.25, 0.75], [1.0, 0.0]], [[0.75, 0.25], [0.5, 0.5]])
    assert out.tolist() == [[0.5, 0.5], [0.75, 0.25]]
    with pytest.raises(DataError, match="same shape"):
        flip_tta_average([[0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]])


# ---------------------------------------------------------------- prediction tables
def test_predictions_frame_round_trip(tmp_path):
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    frame = predictions_frame(["x/a.wav", "x/b.wav"], probs, ["2", "10", "1"], labels=["2", "1"], folds=[0, 1])
    assert frame.columns.tolist() == ["path", "label", "fold", "prediction", "prob_2", "prob_10", "prob_1"]
    assert frame["prediction"].tolist() == ["2", "1"]
    csv = tmp_path / "oof_files.csv"
    frame.to_csv(csv, index=False)
    back, classes, p = read_predictions(csv)
    assert classes == ["2", "10", "1"]  # column order kept, labels stay strings
    np.testing.assert_allclose(p, probs)
    assert back["label"].tolist() == ["2", "1"]
    assert back["fold"].tolist() == [0, 1]


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda f: f.drop(columns="path"), "no 'path' column"),
        (lambda f: f.drop(columns=["prob_a", "prob_b"]), "prob_<class>"),
        (lambda f: f.assign(path=["a.wav", "a.wav"]), "a.wav.*repeated"),
        (lambda f: f.assign(prob_a=[0.9, 0.5]), "b.wav.*sum to 1"),
        (lambda f: f.assign(fold=[0.0, 1.5]), "fold"),
    ],
)
def test_read_predictions_names_the_problem(mutate, match):
    frame = predictions_frame(["a.wav", "b.wav"], [[0.9, 0.1], [0.3, 0.7]], ["a", "b"])
    with pytest.raises(DataError, match=match):
        read_predictions(mutate(frame))


def test_read_predictions_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.csv"):
        read_predictions(tmp_path / "nope.csv")


def test_predictions_frame_rejects_unnormalised_rows():
    with pytest.raises(DataError, match="Row 1 sums to"):
        predictions_frame(["a", "b"], [[0.5, 0.5], [2.0, 1.0]], ["x", "y"])


# ---------------------------------------------------------------- metrics
def test_uar_hand_computed():
    # class a: 2 of 3 right, class b: 1 of 1 right -> UAR (2/3 + 1) / 2, accuracy 3/4
    assert uar(["a", "a", "a", "b"], ["a", "a", "b", "b"]) == pytest.approx((2 / 3 + 1) / 2)


def test_classification_metrics_hand_computed():
    y = ["a", "a", "a", "b", "c"]
    probs = np.array(
        [
            [0.8, 0.1, 0.1],  # a -> a
            [0.6, 0.3, 0.1],  # a -> a
            [0.2, 0.7, 0.1],  # a -> b
            [0.1, 0.8, 0.1],  # b -> b
            [0.5, 0.25, 0.25],  # c -> a
        ]
    )
    m = classification_metrics(y, probs, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["uar"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.6, 0.2, 0.8, 0.25])))
    assert m["confusion"] == [[2, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert m["per_class"]["a"] == {"precision": 2 / 3, "recall": 2 / 3, "f1": pytest.approx(2 / 3), "support": 3}
    assert m["per_class"]["c"]["recall"] == 0.0
    # f1: a 2/3, b 2*(.5*1)/(1.5) = 2/3, c 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    json.dumps(m)  # plain Python types


def test_log_loss_uses_all_classes():
    # only class "a" appears in y_true; log_loss must still accept the 3-column probs
    m = classification_metrics(["a", "a"], [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]], ["a", "b", "c"])
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.5, 0.25])))


def test_unknown_labels_are_named():
    with pytest.raises(DataError, match="'dog'"):
        classification_metrics(["cat", "dog"], [[0.5, 0.5], [0.5, 0.5]], ["cat", "bird"])


def test_missing_labels_and_bad_shape():
    with pytest.raises(DataError, match="missing labels"):
        classification_metrics(["cat", None], [[0.5, 0.5], [0.5, 0.5]], ["cat", "bird"])
    with pytest.raises(DataError, match="shape"):
        classification_metrics(["cat"], [[0.5, 0.5], [0.5, 0.5]], ["cat", "bird"])


# ---------------------------------------------------------------- report
@pytest.mark.parametrize("fmt, name", [("markdown", "report.md"), ("html", "report.html")])
def test_write_report_writes_everything(tmp_path, fmt, name):
    rng = np.random.default_rng(0)
    classes = ["0", "1", "2"]
    y = ["0", "0", "1", "1", "2", "2"]
    probs = np.array(
        [[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.6, 0.1], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2]]
    )
    paths = [f"spk/{i}.wav" for i in range(6)]
    images = {p: rng.integers(0, 256, size=(16, 24, 3), dtype=np.uint8) for p in paths}
    out = write_report(tmp_path / "rep", y, probs, classes, paths=paths, images=images, format=fmt,
                       extra={"backbone": "resnet18"}, normalize=True, n_examples=2)
    assert out == tmp_path / "rep" / name
    rep = tmp_path / "rep"
    for f in ("metrics.json", "confusion.csv", "confusion.png", "per_class.csv", "recall.png", "predictions.csv"):
        assert (rep / f).is_file(), f
    metrics = json.loads((rep / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["extra"] == {"backbone": "resnet18"}
    confusion = pd.read_csv(rep / "confusion.csv", index_col=0)
    assert confusion.to_numpy().tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert pd.read_csv(rep / "per_class.csv")["support"].tolist() == [2, 2, 2]
    with Image.open(rep / "confusion.png") as im:
        assert im.format == "PNG" and im.size[0] > 100
    examples = sorted((rep / "examples").glob("*.png"))
    assert len(examples) == 4  # 2 correct + 2 wrong
    with Image.open(examples[0]) as im:
        assert im.size == (24, 16)
    text = out.read_text()
    assert "confusion.png" in text and "examples/" in text and "resnet18" in text
    assert not list(rep.glob("*.tmp")) and not list(rep.glob(".*"))  # atomic writes left no temp files


def test_write_report_callable_images_and_bad_input(tmp_path):
    calls = []

    def render(path):
        calls.append(path)
        return np.zeros((8, 8, 3), dtype=np.uint8)

    write_report(tmp_path, ["a", "b"], [[0.9, 0.1], [0.8, 0.2]], ["a", "b"], paths=["x", "y"], images=render)
    assert sorted(calls) == ["x", "y"]
    with pytest.raises(ParameterError, match="format"):
        write_report(tmp_path, ["a"], [[1.0, 0.0]], ["a", "b"], format="pdf")
    with pytest.raises(DataError, match="paths"):
        write_report(tmp_path, ["a"], [[1.0, 0.0]], ["a", "b"], images={})
    with pytest.raises(DataError, match="uint8"):
        write_report(tmp_path, ["a"], [[1.0, 0.0]], ["a", "b"], paths=["x"], images={"x": np.zeros((4, 4, 3))})

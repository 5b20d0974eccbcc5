"""Embeddings and linear probes (specimg.predict.embed / probe, specimg embed / probe)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from specimg.exceptions import DataError, ParameterError
from specimg.predict import embed, probe


def _features(table: pd.DataFrame) -> np.ndarray:
    return table[[c for c in table.columns if c.startswith("f") and c[1:].isdigit()]].to_numpy()


@pytest.fixture(scope="module")
def imagenet_embeddings(fsdd_subset_csv, tmp_path_factory):
    from specimg.presets import fsdd_render_config

    out = tmp_path_factory.mktemp("emb") / "imagenet.parquet"
    table = embed(fsdd_subset_csv, "tf_efficientnet_lite0", weights="offline", render_config=fsdd_render_config(32),
                  out=out, progress=False)
    return out, table


def test_a_backbone_embeds_every_file_once(imagenet_embeddings, fsdd_subset_csv):
    out, table = imagenet_embeddings
    files = pd.read_csv(fsdd_subset_csv)
    assert sorted(table["path"]) == sorted(files["path"]) and len(table) == len(files) == 60
    assert list(table.columns[:4]) == ["path", "label", "model", "model_fold"]
    assert _features(table).shape == (60, 1280) and np.isfinite(_features(table)).all()
    assert (table["model_fold"] == -1).all() and (table["model"] == "tf_efficientnet_lite0").all()
    written = pd.read_parquet(out)
    np.testing.assert_array_equal(_features(written), _features(table))


def test_file_rows_are_the_mean_of_their_windows(imagenet_embeddings, fsdd_subset_csv, tmp_path):
    from specimg.presets import fsdd_render_config

    _, files = imagenet_embeddings
    windows = embed(fsdd_subset_csv, "tf_efficientnet_lite0", weights="offline", render_config=fsdd_render_config(32),
                    windows=True, progress=False)
    assert {"segment", "start", "end"} <= set(windows.columns) and len(windows) >= len(files)
    names = [c for c in windows.columns if c.startswith("f") and c[1:].isdigit()]
    pooled = windows.groupby("path")[names].mean()
    np.testing.assert_allclose(pooled.loc[files["path"]].to_numpy(), _features(files), rtol=1e-5, atol=1e-5)


def test_a_rerun_reads_the_finished_features(imagenet_embeddings, fsdd_subset_csv, monkeypatch):
    from specimg.predict import _embed
    from specimg.presets import fsdd_render_config

    out, table = imagenet_embeddings
    monkeypatch.setattr(_embed, "_window_features", lambda *a, **k: pytest.fail("features computed again"))
    again = embed(fsdd_subset_csv, "tf_efficientnet_lite0", weights="offline", render_config=fsdd_render_config(32),
                  out=out, progress=False)
    np.testing.assert_array_equal(_features(again), _features(table))


def test_probe_scores_separable_and_random_features(rng):
    n, labels = 120, np.repeat(["a", "b", "c"], 40)
    groups = np.tile(np.arange(6), 20)
    signal = np.eye(3)[pd.factorize(labels)[0]] * 5 + rng.normal(size=(n, 3))
    table = pd.DataFrame({"path": [f"{i}.wav" for i in range(n)], "label": labels, "speaker": groups.astype(str)})
    good = pd.concat([table, pd.DataFrame(signal, columns=["f0000", "f0001", "f0002"])], axis=1)
    m = probe(good, n_splits=3, group_column="speaker")
    assert m["mean"]["accuracy"] == 1.0 and len(m["folds"]) == 3 and m["n_files"] == n
    noise = good.assign(f0000=rng.normal(size=n), f0001=rng.normal(size=n), f0002=rng.normal(size=n))
    assert probe(noise, n_splits=3, group_column="speaker")["mean"]["accuracy"] < 0.6  # chance is 1/3


def test_probe_refuses_what_it_cannot_score(rng):
    table = pd.DataFrame({"path": ["a.wav", "b.wav"], "label": ["x", None], "f0000": [0.0, 1.0]})
    with pytest.raises(DataError, match="needs a label for every file"):
        probe(table, n_splits=2)
    with pytest.raises(ParameterError, match="needs the folds"):
        probe(table.assign(label="x"))
    with pytest.raises(ParameterError, match="windows"):
        probe(table.assign(label="x", segment=0), n_splits=2)
    with pytest.raises(ParameterError, match="'speaker' is neither"):
        probe(table.assign(label="x"), n_splits=2, group_column="speaker")
    with pytest.raises(DataError, match="does not exist"):
        probe("nowhere.parquet", n_splits=2)


def test_a_model_without_pooled_features_is_named(fsdd_subset_csv, tiny_backbone, small_config):
    with pytest.raises(ParameterError, match="forward_features and forward_head"):
        embed(fsdd_subset_csv, tiny_backbone, weights="none", render_config=small_config, progress=False)


def test_a_run_embeds_with_each_fold_model_and_probes_its_folds(fsdd_subset_csv, tmp_path):
    """Each fold model embeds every file; the probe of fold k uses fold k's model, which never saw fold k."""
    from specimg.config import TrainConfig
    from specimg.presets import fsdd_render_config
    from specimg.training import train_cv

    config = TrainConfig(backbone="tf_efficientnet_lite0", weights="offline", n_splits=3, group_column="speaker",
                         schedule={"epochs": 1, "warmup_epochs": 0}, runtime={"device": "cpu"})
    run = tmp_path / "run"
    train_cv(fsdd_subset_csv, run, config, render_config=fsdd_render_config(32), verbose=False, anchor=False)
    out = tmp_path / "emb.csv"
    cmd = [sys.executable, "-m", "specimg", "embed", str(fsdd_subset_csv), "--model", str(run), "--out", str(out),
           "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "embedded 60 file(s) with 3 model(s)" in done.stdout and "180 file row(s) of 1280 features" in done.stdout
    table = pd.read_csv(out)
    assert sorted(table["model_fold"].unique()) == [0, 1, 2] and (table.groupby("model_fold").size() == 60).all()
    folds = pd.read_csv(run / "folds.csv").set_index("path")["fold"]
    assert (table["fold"] == table["path"].map(folds)).all()
    printed = subprocess.run([sys.executable, "-m", "specimg", "probe", str(out), "--run", str(run)],
                             capture_output=True, text=True, check=True).stdout
    assert printed.startswith("probe (logistic regression): accuracy") and "over 3 folds, 60 files" in printed
    m = probe(out, run=run)
    for k, f in m["folds"].items():  # fold k's files, fold k's model
        assert f["n_files"] == int((folds == int(k)).sum())

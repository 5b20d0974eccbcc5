"""Embeddings and linear probes: a network's penultimate features, pooled per file, and a classifier on them.

:func:`embed` passes every window through the network up to its pooled features (timm's
``forward_head(..., pre_logits=True)``); a probe on a run's folds uses, for each held-out fold, the fold model
that never saw it. :func:`probe` scores the held-out files as ``specimg train`` does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._io import PathLike, atomic_path, atomic_save_npy, read_done, write_done
from ..config import RenderConfig
from ..exceptions import DataError, ParameterError

__all__ = ["embed", "probe", "probe_line"]
#: The first feature column; the others follow as ``f0001``, ``f0002``...
FEATURE_PREFIX = "f"


def _penultimate(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
        raise ParameterError(f"embed needs a timm-style model with forward_features and forward_head(pre_logits=True); "
                             f"{type(model).__name__} has not. Give a timm backbone, or add both methods to yours.")
    return model.forward_head(model.forward_features(x), pre_logits=True).flatten(1)


def _models(model: Any, *, weights: str, render_config: Optional[RenderConfig],
            device: torch.device) -> Tuple[List[nn.Module], List[int], Dict[str, Any]]:
    """(models, fold of each model or -1, meta: render, mean, std, input_size, name, run folds table)."""
    from ..models import backbone_data_config, create_backbone
    from ..training import Run

    if isinstance(model, (str, os.PathLike)) and Path(model).is_dir():
        run = Run.open(model)
        models, meta = run.load_models("all", device=device)
        return models, list(meta["folds"]), {"render": RenderConfig.from_dict(meta["render"]), "mean": meta["mean"],
                                             "std": meta["std"], "input_size": meta["input_size"],
                                             "name": str(model), "folds": run.folds}
    if render_config is None:
        raise ParameterError("embed with a backbone name needs render_config: the spectrogram settings of the "
                             "images (specimg embed takes the render options of specimg render).")
    net = create_backbone(model, num_classes=2, weights=weights).to(device).eval()
    data = backbone_data_config(net, image_size=render_config.spectrogram.image_size)
    return [net], [-1], {"render": render_config, "mean": data["mean"], "std": data["std"],
                         "input_size": data["input_size"], "name": str(model), "folds": None}


def embed(source: Union[PathLike, pd.DataFrame], model: Union[PathLike, str], *, out: Optional[PathLike] = None,
          weights: str = "auto", render_config: Optional[RenderConfig] = None, windows: bool = False,
          device: str = "auto", batch_size: int = 64, workers: int = 1, progress: bool = True) -> pd.DataFrame:
    """The penultimate features of ``model`` for every file of ``source``, pooled per file.

    Parameters
    ----------
    source : path or DataFrame
        A CSV (``path[,label,...]``), a folder of class folders or of audio, or a table.
    model : path or str
        A run folder (each fold model embeds every file) or a backbone name (with ``weights``).
    out : path or None
        Write the table here (``.parquet``; ``.csv`` also works). The images are cached in
        ``<out>.cache/`` and each model's features in ``<out>.parts/``, so a re-run after a crash
        resumes where it stopped.
    weights : str
        The weights of a backbone name (:func:`~specimg.models.create_backbone`: ``'offline'``,
        ``'hub'``, ``'auto'`` or a checkpoint path); ignored for a run.
    render_config : RenderConfig or None
        The images of a backbone name (a run uses its own).
    windows : bool
        One row per window (with ``segment``, ``start``, ``end``) instead of one per file.

    Returns
    -------
    table : pd.DataFrame
        ``path``, ``label`` (when the input has one), ``fold`` (the file's fold, for a run), ``model``
        (``'fold k'`` or the backbone), ``model_fold`` (k, or -1), then the features ``f0000``...
        (float32).
    """
    from ..spectrogram import render_dataset
    from ..training import resolve_device

    dev = resolve_device(device)
    t0 = time.perf_counter()
    models, model_folds, meta = _models(model, weights=weights, render_config=render_config, device=dev)
    base = Path(out) if out is not None else None
    with contextlib.ExitStack() as stack:  # without out: the images in a temporary folder, removed at the end
        cache_dir = base.with_name(base.name + ".cache") if base else \
            Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="specimg-embed-"))) / "cache"
        table = _embed_cache(render_dataset(source, cache_dir, meta["render"], workers=workers, progress=progress),
                             source, models, model_folds, meta, base, windows, dev, batch_size)
    if base is not None:
        with atomic_path(base, suffix=base.suffix) as tmp:
            table.to_csv(tmp, index=False) if base.suffix == ".csv" else table.to_parquet(tmp, index=False)
    table.attrs["seconds"] = time.perf_counter() - t0
    return table


def _embed_cache(cache: Any, source: Any, models: List[nn.Module], model_folds: List[int], meta: Dict[str, Any],
                 base: Optional[Path], windows: bool, dev: torch.device, batch_size: int) -> pd.DataFrame:
    if not len(cache.segments):
        raise DataError(f"embed: no file of {source!s} could be read (see {cache.root / 'errors.csv'}).")
    from ._inputs import prediction_input
    from ..data import PixelNormalize

    pixels = prediction_input("cached", meta["render"], input_hw=tuple(meta["input_size"][-2:]), mean=meta["mean"],
                              std=meta["std"], device=dev)
    normalize = PixelNormalize(meta["mean"], meta["std"]).to(dev)
    row_of_id = pd.Series(np.arange(len(cache.files)), index=cache.files["file_id"].to_numpy())
    file_of_window = row_of_id.loc[cache.segments["file_id"].to_numpy()].to_numpy()
    frames = []
    for net, k in zip(models, model_folds):
        feats = _cached_features(base, k, meta, cache, lambda: _window_features(net, cache.images, pixels, normalize,
                                                                               batch_size))
        frames.append(_table(cache, feats, file_of_window, k, meta, windows))
    return pd.concat(frames, ignore_index=True)


@torch.no_grad()
def _window_features(net: nn.Module, images: Any, pixels: Any, normalize: nn.Module, batch_size: int) -> np.ndarray:
    out = []
    for s in range(0, len(images), batch_size):
        x = normalize(pixels.image_pixels(np.asarray(images[s:s + batch_size])).float())
        out.append(_penultimate(net, x.contiguous(memory_format=torch.channels_last)).float().cpu())
    return torch.cat(out).numpy().astype(np.float32)


def _cached_features(base: Optional[Path], k: int, meta: Dict[str, Any], cache: Any, compute: Any) -> np.ndarray:
    """A model's window features, from ``<out>.parts/`` when an earlier call finished them for these images."""
    if base is None:
        return compute()
    parts = base.with_name(base.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(json.dumps([meta["name"], k, cache.root.name, len(cache.segments),
                                     meta["render"].to_dict()], sort_keys=True, default=str).encode()).hexdigest()[:16]
    npy, done = parts / f"model{k}.npy", parts / f"model{k}.json"
    if read_done(done, key, outputs=[npy]) is not None:
        return np.load(npy)
    feats = compute()
    atomic_save_npy(feats, npy)
    write_done(done, key, model=meta["name"], fold=k, windows=len(feats))
    return feats


def _table(cache: Any, feats: np.ndarray, file_of_window: np.ndarray, k: int, meta: Dict[str, Any],
           windows: bool) -> pd.DataFrame:
    files = cache.files.reset_index(drop=True)
    names = [f"{FEATURE_PREFIX}{i:04d}" for i in range(feats.shape[1])]
    if windows:
        seg = cache.segments.reset_index(drop=True)
        head = pd.concat([pd.DataFrame({"path": files["path"].to_numpy()[file_of_window]}),
                          seg[["segment", "start", "end"]]], axis=1)
        labels = files["label"].to_numpy()[file_of_window] if "label" in files.columns else None
        values = feats
    else:
        counts = np.bincount(file_of_window, minlength=len(files)).astype(np.float64)
        sums = np.zeros((len(files), feats.shape[1]))
        np.add.at(sums, file_of_window, feats)
        keep = counts > 0
        values = (sums[keep] / counts[keep, None]).astype(np.float32)
        head = files.loc[keep, ["path"]].reset_index(drop=True)
        labels = files.loc[keep, "label"].to_numpy() if "label" in files.columns else None
    if labels is not None:
        head["label"] = [None if pd.isna(v) else str(v) for v in labels]
    if meta["folds"] is not None:
        fold = meta["folds"].set_index("path")["fold"]
        head["fold"] = head["path"].map(fold).fillna(-1).astype(int)
    head["model"] = f"fold {k}" if k >= 0 else meta["name"]
    head["model_fold"] = k
    return pd.concat([head, pd.DataFrame(values, columns=names)], axis=1)


def _read_embeddings(emb: Union[PathLike, pd.DataFrame]) -> pd.DataFrame:
    if isinstance(emb, pd.DataFrame):
        return emb
    path = Path(emb)
    if not path.is_file():
        raise DataError(f"{str(emb)!r} does not exist: write it with `specimg embed AUDIO --model ... --out {emb}`.")
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


def probe(emb: Union[PathLike, pd.DataFrame], *, run: Optional[PathLike] = None, n_splits: Optional[int] = None,
          group_column: Optional[str] = None, groups: Optional[pd.DataFrame] = None, C: float = 1.0,
          seed: int = 0) -> Dict[str, Any]:
    """A linear probe: logistic regression on the embeddings, fold by fold, scored on the held-out files.

    Parameters
    ----------
    emb : path or DataFrame
        What :func:`embed` wrote (file rows with a ``label``).
    run : path or None
        Use this run's folds (its ``folds.csv``). Embeddings of that run's own models are used model by
        model: the probe of fold k trains and tests on fold k's model's features, which never saw fold k.
    n_splits, group_column : int, str
        Without ``run``: :func:`~specimg.data.file_folds` on the table (``group_column`` from the
        embeddings, or from ``groups``: a table ``path, <group_column>`` such as the input CSV).
    C : float
        Inverse regularisation of :class:`sklearn.linear_model.LogisticRegression` (balanced classes, on
        standardised features).

    Returns
    -------
    metrics : dict
        ``folds`` (accuracy, UAR, files of each fold), ``mean``, ``std``, ``pooled``, ``seconds``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ..scoring import label_scores

    t0 = time.perf_counter()
    table = _read_embeddings(emb)
    if "segment" in table.columns:
        raise ParameterError("probe takes file embeddings; these are windows (embed --windows). Embed again "
                             "without --windows.")
    if "label" not in table.columns or table["label"].isna().any():
        raise DataError("probe needs a label for every file; the embeddings have none (or some missing): embed a "
                        "labelled CSV (path,label).")
    table = table.assign(label=table["label"].astype(str))
    features = [c for c in table.columns if c.startswith(FEATURE_PREFIX) and c[1:].isdigit()]
    folds_of = _probe_folds(table, run=run, n_splits=n_splits, group_column=group_column, groups=groups, seed=seed)
    rows, per_fold = [], {}
    own = table["model_fold"].ge(0).any() if "model_fold" in table.columns else False
    ks = set(folds_of.values()) - {-1}
    if own:  # a run's embeddings: the folds whose model embedded the files (a run may be partly trained)
        ks &= set(table["model_fold"].astype(int))
    for k in sorted(ks):
        view = table[table["model_fold"] == k] if own else table.drop_duplicates("path")
        fold = view["path"].map(folds_of).fillna(-1).astype(int).to_numpy()
        train, held = fold != k, fold == k
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, class_weight="balanced"))
        clf.fit(view.loc[train, features].to_numpy(np.float32), view.loc[train, "label"])
        pred = clf.predict(view.loc[held, features].to_numpy(np.float32))
        truth = view.loc[held, "label"].to_numpy()
        per_fold[str(k)] = {**label_scores(truth, pred), "n_files": int(held.sum())}
        rows.append((truth, pred))
    if not per_fold:
        raise DataError("probe: no fold to score (embeddings of a run's models must come from the run whose folds "
                        "are given).")
    truth, pred = (np.concatenate([r[j] for r in rows]) for j in (0, 1))
    keys = ("accuracy", "uar")
    return {"folds": per_fold, "mean": {m: float(np.mean([f[m] for f in per_fold.values()])) for m in keys},
            "std": {m: float(np.std([f[m] for f in per_fold.values()])) for m in keys},
            "pooled": label_scores(truth, pred),
            "n_files": int(len(truth)), "features": len(features), "seconds": time.perf_counter() - t0}


def _probe_folds(table: pd.DataFrame, *, run: Optional[PathLike], n_splits: Optional[int],
                 group_column: Optional[str], groups: Optional[pd.DataFrame], seed: int) -> Dict[str, int]:
    if run is not None:
        from ..training import Run

        folds = Run.open(run, need_models=False).folds
        return dict(zip(folds["path"].astype(str), folds["fold"].astype(int)))
    if not n_splits:
        raise ParameterError("probe needs the folds: run= (a run folder) or n_splits= (with group_column=).")
    from ..data import file_folds

    files = table.drop_duplicates("path")[["path", "label"]].reset_index(drop=True)
    if group_column is not None:
        source = table if group_column in table.columns else groups
        if source is None or group_column not in source.columns:
            raise ParameterError(f"probe: the group column {group_column!r} is neither in the embeddings nor in "
                                 f"groups=; give the input table (specimg probe --groups CSV).")
        files[group_column] = files["path"].map(source.drop_duplicates("path").set_index("path")[group_column])
    assigned = file_folds(files, n_splits=n_splits, group_column=group_column, seed=seed)
    return dict(zip(files["path"].astype(str), np.asarray(assigned).astype(int)))


def probe_line(metrics: Dict[str, Any], what: str = "probe (logistic regression)") -> str:
    """``probe (logistic regression): accuracy 0.9000 +- 0.0100  UAR ... (mean +- std over folds)``."""
    m, s = metrics["mean"], metrics["std"]
    return (f"{what}: accuracy {m['accuracy']:.4f} +- {s['accuracy']:.4f}   UAR {m['uar']:.4f} +- {s['uar']:.4f}   "
            f"(mean +- std over {len(metrics['folds'])} folds, {metrics['n_files']} files, "
            f"{metrics['features']} features, {metrics['seconds']:.1f} s)")

"""k-fold cross-validation of a backbone over an image cache: one Trainer per fold."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import balanced_accuracy_score
from torch import nn

from ..config import RenderConfig, TrainConfig
from .._io import atomic_write_csv as _atomic_csv
from .._io import atomic_write_text as _atomic_text
from .._io import config_diff
from ..data import (PixelNormalize, SegmentDataset, WaveformDataset, cache_targets, file_folds, pseudo_leaks,
                    spectrogram_transforms)
from ..exceptions import ParameterError
from ._callbacks import Callback
from ._distributed import barrier, init_distributed, is_main_process
from ._losses import aggregate_files
from ._trainer import FitResult, Trainer

__all__ = ["train_cv", "CVResult"]

PathLike = Union[str, "os.PathLike[str]"]
CONFIG_NAME = "config.json"


@dataclass
class CVResult:
    """What :func:`train_cv` returns (everything is also written under ``run_dir``).

    Attributes
    ----------
    run_dir : Path
    folds : list of int
        The folds finished so far (by this call or an earlier one).
    metrics : dict
        The content of ``metrics.json``: per-fold and mean/std file accuracy
        and UAR, pooled out-of-fold scores, per-group accuracy.
    oof_files : pd.DataFrame
        ``path, label, fold, prediction, prob_<class>...`` (one row per
        out-of-fold file).
    oof_segments : pd.DataFrame
        ``path, segment, start, end, fold, prob_<class>...``.
    classes : list of str
    config : TrainConfig
    fit_results : dict[int, FitResult]
        The folds trained by this call.
    """

    run_dir: Path
    folds: List[int]
    metrics: Dict[str, Any]
    oof_files: pd.DataFrame
    oof_segments: pd.DataFrame
    classes: List[str]
    config: TrainConfig
    fit_results: Dict[int, FitResult] = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines: mean +- std over folds, each fold, each group."""
        m = self.metrics
        n = len(self.folds)
        lines = [f"{n}/{m['n_splits']} fold(s) done in {self.run_dir}"]
        if n:
            lines.append(f"file accuracy {m['mean']['accuracy']:.4f} +- {m['std']['accuracy']:.4f}   "
                         f"UAR {m['mean']['uar']:.4f} +- {m['std']['uar']:.4f}   (mean +- std over folds)")
            for k in self.folds:
                f = m["folds"][str(k)]
                lines.append(f"  fold {k}: accuracy {f['accuracy']:.4f}  UAR {f['uar']:.4f}  "
                             f"({f['n_files']} files, best epoch {f['best_epoch']}/{f['epochs_run']})")
            if m.get("per_group"):
                lines.append(f"  per {m['group_column']}:")
                for g, v in m["per_group"].items():
                    lines.append(f"    {g}: accuracy {v['accuracy']:.4f} ({v['n_files']} files)")
        return "\n".join(lines)


# --------------------------------------------------------------------------- helpers
def _fold_seed(seed: int, fold: int) -> int:
    return int(np.random.SeedSequence([seed, 1000 + fold]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _check_backbone(config: TrainConfig) -> nn.Module:
    """Build the backbone once (2 classes) so that a bad name, weights source or option fails before any work."""
    from ..models import create_backbone

    return create_backbone(config.backbone, num_classes=2, weights=config.weights, drop_rate=config.drop_rate,
                           **config.backbone_kwargs)


def _is_cache_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and (path / "images.npy").exists()


def _open_or_render(source: Any, out_dir: Path, config: TrainConfig, render_config: Optional[RenderConfig],
                    cache_dir: Optional[PathLike], verbose: bool) -> Tuple[Any, Optional[nn.Module]]:
    from ..data import WaveformSet
    from ..spectrogram import ImageCache, render_dataset

    workers = max(1, config.num_workers if config.num_workers else min(8, os.cpu_count() or 1))
    is_cache = isinstance(source, ImageCache) or (isinstance(source, (str, os.PathLike))
                                                  and _is_cache_dir(Path(source)))
    is_audio = isinstance(source, (str, os.PathLike, pd.DataFrame)) and not is_cache
    if is_audio:
        # the fold plan of the input table fails the same way before the render as after it (bad files only
        # remove files): a missing group column or too many folds is reported before any audio work
        from ..audio import read_table

        file_folds(read_table(source), n_splits=config.n_splits, group_column=config.group_column,
                   seed=config.seed)
    if config.frontend == "gpu":
        if isinstance(source, WaveformSet):
            if render_config is not None and render_config.hash() != source.config.hash():
                raise ParameterError("render_config differs from the config the WaveformSet was loaded with. "
                                     "Drop render_config, or load the audio again.")
            return source, _check_backbone(config)
        if is_cache:
            raise ParameterError("frontend='gpu' makes the images on the device from audio, but the input is an "
                                 "image cache whose images are already rendered. Give the audio CSV or folder as "
                                 "input, or train with frontend='cpu' (--frontend cpu) on the cache.")
        if not is_audio:
            raise ParameterError(f"The first argument of train_cv must be a CSV, a folder of audio, a DataFrame or a "
                                 f"WaveformSet with frontend='gpu'. Got {type(source).__name__}.")
        probe = _check_backbone(config)  # fail fast, before decoding the audio
        target = Path(cache_dir) if cache_dir is not None else out_dir / "audio"
        if is_main_process():  # under torchrun, rank 0 decodes while the others wait, then all map the same file
            data = WaveformSet.load(source, render_config or RenderConfig(), workers=workers, progress=verbose,
                                    cache_dir=target)
        barrier()
        if not is_main_process():
            data = WaveformSet.open(target)
        return data, probe
    if isinstance(source, ImageCache):
        cache, probe = source, None
    elif isinstance(source, (str, os.PathLike)) and _is_cache_dir(Path(source)):
        cache, probe = ImageCache.open(source), None
    elif isinstance(source, (str, os.PathLike, pd.DataFrame)):
        probe = _check_backbone(config)  # fail fast, before a long render
        rcfg = render_config or RenderConfig()
        target = Path(cache_dir) if cache_dir is not None else out_dir / "cache"
        if is_main_process():  # under torchrun, rank 0 renders while the others wait, then all open the cache
            cache = render_dataset(source, target, rcfg, workers=workers, progress=verbose)
        barrier()
        if not is_main_process():
            cache = ImageCache.open(target)
        return cache, probe
    else:
        raise ParameterError(f"The first argument of train_cv must be an ImageCache, a cache folder, a CSV, a folder "
                             f"of audio or a DataFrame. Got {type(source).__name__}.")
    if render_config is not None and render_config.hash() != cache.config.hash():
        raise ParameterError(f"render_config differs from the config the cache {str(cache.root)!r} was rendered "
                             "with. Drop render_config to use the cache as it is, or render the audio again.")
    return cache, probe


def _data_hash(files: pd.DataFrame, folds: np.ndarray, group_column: Optional[str]) -> str:
    h = hashlib.sha1()
    groups = files[group_column] if group_column else files["path"]
    for p, lab, g, n, f in zip(files["path"], files["label"], groups, files["n_segments"], folds):
        h.update(f"{p}\t{lab}\t{g}\t{n}\t{f}\n".encode())
    return h.hexdigest()[:16]


def _fold_done(fold_dir: Path, fingerprint: str) -> bool:
    marker = fold_dir / "fold.json"
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except ValueError:
        return False
    return (info.get("fingerprint") == fingerprint and (fold_dir / "best.pt").is_file()
            and (fold_dir / "oof_files.csv").is_file() and (fold_dir / "oof_segments.csv").is_file())


def _scores(oof_files: pd.DataFrame) -> Dict[str, float]:
    y, p = oof_files["label"].astype(str).to_numpy(), oof_files["prediction"].astype(str).to_numpy()
    return {"accuracy": float(np.mean(y == p)), "uar": float(balanced_accuracy_score(y, p))}


# --------------------------------------------------------------------------- the runner
def train_cv(
    source: Any,
    out_dir: PathLike,
    config: Optional[TrainConfig] = None,
    *,
    render_config: Optional[RenderConfig] = None,
    cache_dir: Optional[PathLike] = None,
    folds: Union[None, int, Sequence[int]] = None,
    callbacks: Iterable[Callback] = (),
    resume: bool = True,
    verbose: bool = True,
) -> CVResult:
    """Cross-validate a backbone: train one model per fold, predict its held-out files.

    Folds are grouped by source file, or by ``config.group_column`` (a
    speaker, a patient), and stratified by class (:func:`specimg.data.file_folds`).
    Every fold writes ``RUN/fold_{i}/`` (``best.pt``, ``last.pt``,
    ``log.csv``, its out-of-fold window and file predictions); then the run
    writes ``RUN/oof_segments.csv``, ``RUN/oof_files.csv`` (the rows of the
    folds finished so far), ``RUN/metrics.json`` and ``RUN/config.json``.
    Calling it again with the same arguments skips the finished folds and
    continues an interrupted fold from its ``last.pt``.

    Under ``torchrun --nproc_per_node N`` (or with the process group of
    :func:`~specimg.training.init_distributed` set up), each fold trains
    with :class:`~torch.nn.parallel.DistributedDataParallel` over the N
    processes (see :class:`Trainer`); rank 0 alone renders, writes and
    prints, and every process returns the same :class:`CVResult`.

    Parameters
    ----------
    source : ImageCache, WaveformSet, path or DataFrame
        An image cache (object or folder), or audio to render first: a CSV,
        a class-folder tree or a table (see :func:`specimg.audio.read_table`),
        rendered with :func:`specimg.spectrogram.render_dataset` into
        ``cache_dir`` (default ``out_dir/cache``). With
        ``config.frontend='gpu'`` the audio is decoded instead, once, into
        a waveform cache (:class:`~specimg.data.WaveformSet`, in ``cache_dir``,
        default ``out_dir/audio``) and every batch becomes images on the
        training device: no image is written.
    out_dir : path
        The run folder.
    config : TrainConfig or None
        Training options (defaults: ``TrainConfig()``).
    render_config : RenderConfig or None
        How to render audio input (default ``RenderConfig()``); with a cache,
        it must match the cache's config.
    cache_dir : path or None
        Where to render audio input (``frontend='gpu'``: where to keep the
        decoded audio).
    folds : None, int or sequence of int
        The folds to run (``None``: all ``config.n_splits``).
    callbacks : iterable of Callback
        Passed to every fold's :class:`Trainer`.
    resume : bool
        Skip finished folds and continue interrupted ones. ``False`` trains
        the requested folds from scratch (and, when the config changed,
        discards the results of the old config).
    verbose : bool
        Progress bars and a printed summary.

    Returns
    -------
    result : CVResult

    Raises
    ------
    ParameterError
        Bad options; an unknown backbone; more folds than groups; a missing
        group column; ``out_dir`` holding a run of another config (with
        ``resume=True``).
    DataError
        Unlabelled files, a single class, a class with fewer files than folds.

    Examples
    --------
    >>> cfg = TrainConfig(backbone="tf_efficientnet_lite0", weights="offline", epochs=5,
    ...                   n_splits=6, group_column="speaker", device="cpu")
    >>> result = train_cv("cache/fsdd", "runs/fsdd", cfg)  # doctest: +SKIP
    >>> result.metrics["mean"]["accuracy"]  # doctest: +SKIP
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise ParameterError(f"The 'config' parameter of train_cv must be a TrainConfig. Got {type(config).__name__}.")
    if render_config is not None and not isinstance(render_config, RenderConfig):
        raise ParameterError(f"The 'render_config' parameter of train_cv must be a RenderConfig or None. Got "
                             f"{type(render_config).__name__}.")
    if folds is None:
        todo = list(range(config.n_splits))
    else:
        todo = [folds] if isinstance(folds, (int, np.integer)) else list(folds)
        bad = [f for f in todo if isinstance(f, bool) or not isinstance(f, (int, np.integer))
               or not 0 <= f < config.n_splits]
        if bad or not todo:
            raise ParameterError(f"The 'folds' parameter of train_cv must list fold indices in [0, "
                                 f"{config.n_splits - 1}] (n_splits={config.n_splits}). Got {folds!r}.")
        todo = sorted({int(f) for f in todo})
    callbacks = list(callbacks)
    # under torchrun: join the process group (a no-op in a single process); gloo when training on the CPU
    init_distributed("gloo" if config.device == "cpu" else None)
    main = is_main_process()
    verbose = verbose and main
    run = Path(out_dir)
    run.mkdir(parents=True, exist_ok=True)

    cache, probe = _open_or_render(source, run, config, render_config, cache_dir, verbose)
    files = cache.files.reset_index(drop=True)
    classes = list(cache.classes)
    fold_of_file = file_folds(files, n_splits=config.n_splits, group_column=config.group_column, seed=config.seed)
    if probe is None:
        probe = _check_backbone(config)
    from ..models import backbone_data_config, create_backbone

    on_device = config.frontend == "gpu"
    if on_device:
        cache_hw = tuple(int(v) for v in cache.config.spectrogram.image_size)
    else:
        cache_hw = (int(cache.images.shape[1]), int(cache.images.shape[2]))
    if config.image_size is not None:
        image_size = tuple(config.image_size)
    elif (getattr(probe, "pretrained_cfg", None) or {}).get("fixed_input_size"):
        image_size = tuple(backbone_data_config(probe)["input_size"][1:])
    else:
        image_size = cache_hw
    data_cfg = backbone_data_config(probe, image_size=image_size)
    del probe

    data_hash = _data_hash(files, fold_of_file, config.group_column)
    ident = {"train": config.result_dict(), "render": cache.config.to_dict(), "classes": classes,
             "data_hash": data_hash}
    fingerprint = hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    cfg_path = run / CONFIG_NAME
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_text())
        except ValueError:
            old = {}
        if old.get("fingerprint") != fingerprint:
            old_ident = {"train": TrainConfig.from_dict(old["train"]).result_dict() if "train" in old else {},
                         "render": old.get("render", {}), "classes": old.get("classes"),
                         "data_hash": old.get("data_hash")}
            diff = config_diff(old_ident, ident) or ["unreadable config.json"]
            if resume:
                raise ParameterError(
                    f"{str(run)!r} holds a run with another config or data ({'; '.join(diff[:6])}). Write to "
                    "another --out folder, or pass resume=False (--no-resume) to discard it and start over.")
            if main:
                warnings.warn(f"Discarding the previous run in {str(run)!r} (changed: {'; '.join(diff[:6])}).",
                              UserWarning, stacklevel=2)
                for d in run.glob("fold_*"):
                    shutil.rmtree(d, ignore_errors=True)
                for name in ("oof_segments.csv", "oof_files.csv", "metrics.json"):
                    (run / name).unlink(missing_ok=True)
    barrier()  # every process has checked the old config.json before rank 0 replaces it
    resolved = {
        "train": config.to_dict(),
        "render": cache.config.to_dict(),
        "classes": classes,
        "backbone": config.backbone,
        "weights": config.weights,
        "cache": str(Path(cache.root).resolve()) if cache.root is not None else None,
        "frontend": config.frontend,
        "image_size": list(image_size),
        "data": {"input_size": list(data_cfg["input_size"]), "mean": list(data_cfg["mean"]),
                 "std": list(data_cfg["std"])},
        "n_files": int(len(files)),
        "n_images": int(len(cache.segments)),
        "data_hash": data_hash,
        "fingerprint": fingerprint,
    }
    fold_table = pd.DataFrame({"path": files["path"], "label": files["label"], "fold": fold_of_file})
    if config.group_column:
        fold_table.insert(2, config.group_column, files[config.group_column].to_numpy())
    if main:
        _atomic_text(cfg_path, json.dumps(resolved, indent=2))
        _atomic_csv(fold_table, run / "folds.csv")

    # per-window arrays
    file_ids_all, targets_all = cache_targets(cache)
    fid_to_row = {int(f): i for i, f in enumerate(files["file_id"].to_numpy())}
    window_file_row = np.array([fid_to_row[int(f)] for f in file_ids_all], dtype=np.int64)
    window_fold = fold_of_file[window_file_row]
    # A pseudo-labelled file (fold -1) trains every fold, except a fold that validates its group: with a group
    # column (speaker, patient), training on a pseudo-labelled recording of a validation speaker would leak
    # that voice into the fold's score.
    window_leaks = {k: pseudo_leaks(files, fold_of_file, k, config.group_column)[window_file_row] for k in todo}
    mean, std = data_cfg["mean"], data_cfg["std"]
    pipeline = None
    if on_device:
        from ..data import DeviceAugment, FrontendPipeline

        augment = DeviceAugment(hflip=config.hflip, time_mask=config.time_mask, freq_mask=config.freq_mask,
                                n_masks=config.n_masks, freq_stretch=config.freq_stretch,
                                time_stretch=config.time_stretch)
        pipeline = FrontendPipeline(cache.config, image_size=image_size, mean=data_cfg["mean"], std=data_cfg["std"],
                                    augment=augment, normalize=False)
    else:
        train_tf = spectrogram_transforms(train=True, image_size=image_size, cache_size=cache_hw,
                                          hflip=config.hflip, time_mask=config.time_mask, freq_mask=config.freq_mask,
                                          n_masks=config.n_masks, freq_stretch=config.freq_stretch,
                                          time_stretch=config.time_stretch)
        eval_tf = spectrogram_transforms(train=False, image_size=image_size, cache_size=cache_hw)
    prob_cols = [f"prob_{c}" for c in classes]
    meta = {"backbone": config.backbone, "weights": config.weights, "classes": classes,
            "drop_rate": config.drop_rate, "backbone_kwargs": dict(config.backbone_kwargs),
            "input_size": list(data_cfg["input_size"]), "mean": list(mean), "std": list(std),
            "render_config": cache.config.to_dict(), "cache": resolved["cache"], "frontend": config.frontend}

    fit_results: Dict[int, FitResult] = {}
    for k in todo:
        fold_dir = run / f"fold_{k}"
        if resume and _fold_done(fold_dir, fingerprint):
            if verbose:
                print(f"fold {k}: already finished, skipped ({fold_dir})", file=sys.stderr)
            continue
        if main:
            (fold_dir / "fold.json").unlink(missing_ok=True)
        train_rows = np.flatnonzero((window_fold != k) & ~window_leaks[k])
        val_rows = np.flatnonzero(window_fold == k)
        if on_device:
            train_ds = WaveformDataset(cache, targets_all, rows=train_rows, file_ids=file_ids_all,
                                       num_classes=len(classes))
            val_ds = WaveformDataset(cache, targets_all, rows=val_rows, file_ids=file_ids_all,
                                     num_classes=len(classes))
        else:
            train_ds = SegmentDataset(cache.images, targets_all, rows=train_rows, file_ids=file_ids_all,
                                      transform=train_tf, seed=config.seed, num_classes=len(classes),
                                      normalize=False)
            val_ds = SegmentDataset(cache.images, targets_all, rows=val_rows, file_ids=file_ids_all,
                                    transform=eval_tf, seed=config.seed, num_classes=len(classes), normalize=False)
        torch.manual_seed(_fold_seed(config.seed, k))
        model = create_backbone(config.backbone, num_classes=len(classes), weights=config.weights,
                                drop_rate=config.drop_rate, **config.backbone_kwargs)
        trainer = Trainer(config, out_dir=fold_dir, callbacks=callbacks, resume=resume, progress=verbose,
                          desc=f"fold {k}", batch_transform=pipeline, normalize=PixelNormalize(mean, std))
        result = trainer.fit(model, train_ds, val_ds, num_classes=len(classes), meta={**meta, "fold": k})
        fit_results[k] = result
        probs = trainer.predict(model, val_ds)  # (n_val_windows, n_classes)
        seg = cache.segments.iloc[val_rows]
        seg_df = pd.DataFrame({"path": files["path"].to_numpy()[window_file_row[val_rows]],
                               "segment": seg["segment"].to_numpy(), "start": seg["start"].to_numpy(),
                               "end": seg["end"].to_numpy(), "fold": k})
        seg_df[prob_cols] = probs
        ids, fprobs = aggregate_files(probs, file_ids_all[val_rows])
        frows = np.array([fid_to_row[int(f)] for f in ids], dtype=np.int64)
        order = np.argsort(frows, kind="stable")
        frows, fprobs = frows[order], fprobs[order]
        file_df = pd.DataFrame({"path": files["path"].to_numpy()[frows], "label": files["label"].to_numpy()[frows],
                                "fold": k, "prediction": np.asarray(classes, dtype=object)[fprobs.argmax(1)]})
        file_df[prob_cols] = fprobs
        if main:
            _atomic_csv(seg_df, fold_dir / "oof_segments.csv")
            _atomic_csv(file_df, fold_dir / "oof_files.csv")
            info = {"fold": k, "fingerprint": fingerprint, **_scores(file_df), "n_files": int(len(file_df)),
                    "n_windows": int(len(seg_df)), "best_epoch": result.best_epoch, "best_score": result.best_score,
                    "epochs_run": result.epochs_run, "stopped_early": result.stopped_early}
            _atomic_text(fold_dir / "fold.json", json.dumps(info, indent=2))
        barrier()  # the fold's files are written before any process looks at the next fold

    if main:
        result = _collect(run, config, classes, files, fingerprint, fit_results, verbose)
    barrier()
    if not main:  # the other processes read what rank 0 wrote
        result = _collect(run, config, classes, files, fingerprint, fit_results, False, write=False)
    return result


def _collect(run: Path, config: TrainConfig, classes: List[str], files: pd.DataFrame, fingerprint: str,
             fit_results: Dict[int, FitResult], verbose: bool, *, write: bool = True) -> CVResult:
    done = [k for k in range(config.n_splits) if _fold_done(run / f"fold_{k}", fingerprint)]
    str_cols = {"path": str, "label": str, "prediction": str}
    seg_parts, file_parts, per_fold = [], [], {}
    for k in done:
        d = run / f"fold_{k}"
        seg_parts.append(pd.read_csv(d / "oof_segments.csv", dtype={"path": str}))
        file_parts.append(pd.read_csv(d / "oof_files.csv", dtype=str_cols, keep_default_na=False))
        info = json.loads((d / "fold.json").read_text())
        per_fold[str(k)] = {key: info[key] for key in ("accuracy", "uar", "n_files", "n_windows", "best_epoch",
                                                       "best_score", "epochs_run", "stopped_early")}
    prob_cols = [f"prob_{c}" for c in classes]
    order = {p: i for i, p in enumerate(files["path"])}
    if file_parts:
        oof_files = pd.concat(file_parts, ignore_index=True)
        oof_files = oof_files.iloc[np.argsort(oof_files["path"].map(order).to_numpy(), kind="stable")]
        oof_files = oof_files.reset_index(drop=True)
        oof_segments = pd.concat(seg_parts, ignore_index=True)
        key = oof_segments["path"].map(order).to_numpy() * 1_000_000 + oof_segments["segment"].to_numpy()
        oof_segments = oof_segments.iloc[np.argsort(key, kind="stable")].reset_index(drop=True)
    else:
        oof_files = pd.DataFrame(columns=["path", "label", "fold", "prediction", *prob_cols])
        oof_segments = pd.DataFrame(columns=["path", "segment", "start", "end", "fold", *prob_cols])
    if write:
        _atomic_csv(oof_segments, run / "oof_segments.csv")
        _atomic_csv(oof_files, run / "oof_files.csv")

    metrics: Dict[str, Any] = {"metric": config.metric, "n_splits": config.n_splits, "folds_done": done,
                               "folds": per_fold, "group_column": config.group_column}
    if done:
        acc = np.array([per_fold[str(k)]["accuracy"] for k in done])
        uar = np.array([per_fold[str(k)]["uar"] for k in done])
        metrics["mean"] = {"accuracy": float(acc.mean()), "uar": float(uar.mean())}
        metrics["std"] = {"accuracy": float(acc.std()), "uar": float(uar.std())}
        metrics["oof"] = _scores(oof_files)
        if config.group_column:
            gmap = dict(zip(files["path"], files[config.group_column].astype(str)))
            g = oof_files["path"].map(gmap)
            correct = (oof_files["label"] == oof_files["prediction"]).to_numpy()
            metrics["per_group"] = {str(name): {"accuracy": float(correct[idx].mean()), "n_files": int(len(idx))}
                                    for name, idx in sorted(g.groupby(g).indices.items(), key=lambda kv: kv[0])}
    if write:
        _atomic_text(run / "metrics.json", json.dumps(metrics, indent=2))
    result = CVResult(run_dir=run, folds=done, metrics=metrics, oof_files=oof_files, oof_segments=oof_segments,
                      classes=classes, config=config, fit_results=fit_results)
    if verbose:
        print(result.summary())
    return result

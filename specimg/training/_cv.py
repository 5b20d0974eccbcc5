"""k-fold cross-validation of a backbone: one Trainer per fold, every result written through a :class:`Run`."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._io import PathLike, config_diff
from ..config import RenderConfig, RuntimeConfig, TrainConfig
from ..data import CachedImages, OnTheFlyImages, PixelNormalize, TrainingImages, WaveformSet, pseudo_leaks
from ..exceptions import ParameterError, TrainingError
from ..tasks import Task, resolve_task
from ._callbacks import Callback
from ._distributed import barrier, init_distributed, is_main_process
from ._run import Run
from ._trainer import FitResult, Trainer

__all__ = ["train_cv", "CVResult"]

_logger = logging.getLogger(__name__)


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
        from ._anchor import anchor_line

        line = anchor_line(self.metrics.get("anchor"), self.task)
        return self.task.summary(self.run_dir, self.folds, self.metrics) + (f"\n{line}" if line else "")

    @property
    def task(self) -> Task:
        """The run's task (resolved from the config and the labels)."""
        return Task.from_config(self.config)


# --------------------------------------------------------------------------- input
def _fold_seed(seed: int, fold: int) -> int:
    return int(np.random.SeedSequence([seed, 1000 + fold]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _check_backbone(config: TrainConfig) -> nn.Module:
    """Build the backbone once (2 classes) so that a bad name, weights source or option fails before any work."""
    from ..models import create_backbone

    return create_backbone(config.backbone, num_classes=2, weights=config.weights, drop_rate=config.drop_rate,
                           **config.backbone_kwargs)


def _is_cache_source(source: Any) -> bool:
    from ..spectrogram import ImageCache

    return isinstance(source, ImageCache) or (isinstance(source, (str, os.PathLike))
                                              and ImageCache.is_complete(source))


def _render_or_load(source: Any, run: Run, config: TrainConfig, render_config: Optional[RenderConfig],
                    cache_dir: Optional[PathLike], verbose: bool) -> TrainingImages:
    """Audio -> an image cache (``images='cached'``) or a waveform cache (``'on-the-fly'``); rank 0 does the work."""
    from ..audio import read_table
    from ..spectrogram import ImageCache, render_dataset

    # the fold plan of the input table fails the same way before the render as after it (bad files only remove
    # files): a missing group column or too many folds is reported before any audio work
    table = read_table(source)
    task = resolve_task(table, config)
    task.check_input(table, n_splits=config.n_splits, group_column=config.group_column, seed=config.seed)
    nw = config.runtime.num_workers
    workers = max(1, nw if nw else min(8, os.cpu_count() or 1))
    rcfg = render_config or RenderConfig()
    on_the_fly = config.images == "on-the-fly"
    target = Path(cache_dir) if cache_dir is not None else run.root / ("audio" if on_the_fly else "cache")
    if is_main_process():  # under torchrun, rank 0 renders / decodes while the others wait, then all open it
        if on_the_fly:
            data: Any = WaveformSet.load(source, rcfg, workers=workers, progress=verbose, cache_dir=target)
        else:
            data = render_dataset(source, target, rcfg, workers=workers, progress=verbose)
    barrier()
    if not is_main_process():
        data = WaveformSet.open(target) if on_the_fly else ImageCache.open(target)
    data.files = task.prepare_files(data.files, table)  # a reused cache keeps its images; the input's labels count
    return OnTheFlyImages(data) if on_the_fly else CachedImages(data)


def _open_input(source: Any, run: Run, config: TrainConfig, render_config: Optional[RenderConfig],
                cache_dir: Optional[PathLike], verbose: bool) -> Tuple[TrainingImages, nn.Module]:
    """The training input as :class:`TrainingImages`, and the probe backbone (built before any long work)."""
    from ..spectrogram import ImageCache

    on_the_fly = config.images == "on-the-fly"
    if isinstance(source, WaveformSet) or _is_cache_source(source):
        if isinstance(source, WaveformSet) != on_the_fly:
            raise ParameterError(
                "images='on-the-fly' makes the images on the device from audio, but the input is an image cache "
                "whose images are already rendered. Give the audio CSV or folder as input, or train with "
                "images='cached' (--images cached) on the cache." if on_the_fly else
                "A WaveformSet holds audio for images made on the fly: train it with images='on-the-fly' "
                "(--images on-the-fly).")
        data = source if isinstance(source, (WaveformSet, ImageCache)) else ImageCache.open(source)
        if render_config is not None and render_config.hash() != data.config.hash():
            where = f"the cache {str(data.root)!r} was rendered" if not on_the_fly else "the WaveformSet was loaded"
            raise ParameterError(f"render_config differs from the config {where} with. Drop render_config to use "
                                 "it as it is, or render / load the audio again.")
        return (OnTheFlyImages(data) if on_the_fly else CachedImages(data)), _check_backbone(config)
    if not isinstance(source, (str, os.PathLike, pd.DataFrame)):
        raise ParameterError(f"The first argument of train_cv must be an ImageCache, a cache folder, a CSV, a folder "
                             f"of audio, a DataFrame or (images='on-the-fly') a WaveformSet. Got "
                             f"{type(source).__name__}.")
    probe = _check_backbone(config)  # fail fast, before a long render
    return _render_or_load(source, run, config, render_config, cache_dir, verbose), probe


# --------------------------------------------------------------------------- plan
@dataclass
class _Plan:
    """What every fold shares: the file table, its folds, the window arrays, the model input."""

    files: pd.DataFrame
    classes: List[str]
    fold_of_file: np.ndarray
    image_size: Tuple[int, int]
    data_cfg: Dict[str, Any]
    file_ids: np.ndarray  # (n_windows,) file id of every window
    targets: np.ndarray  # (n_windows,) class index of every window
    window_file_row: np.ndarray  # (n_windows,) row of ``files`` of every window
    fid_to_row: Dict[int, int]
    task: Task  # what the run learns: ``targets`` are class indices (single-label) or multi-hot rows
    score_ids: Optional[np.ndarray] = None  # (n_windows,) the unit validation scores pool over (None: the file)
    config: Optional[TrainConfig] = None  # the config with the task resolved (every task option filled in)

    @property
    def window_fold(self) -> np.ndarray:
        return self.fold_of_file[self.window_file_row]


def _image_size(config: TrainConfig, probe: nn.Module, rendered: Tuple[int, int]) -> Tuple[int, int]:
    from ..models import backbone_data_config

    if config.image_size is not None:
        return tuple(config.image_size)  # type: ignore[return-value]
    if (getattr(probe, "pretrained_cfg", None) or {}).get("fixed_input_size"):
        return tuple(backbone_data_config(probe)["input_size"][1:])  # type: ignore[return-value]
    return rendered


def _plan(images: TrainingImages, config: TrainConfig, probe: nn.Module) -> _Plan:
    from ..models import backbone_data_config

    files = images.files
    image_size = _image_size(config, probe, images.rendered_size)
    data_cfg = backbone_data_config(probe, image_size=image_size)
    file_ids = images.segments["file_id"].to_numpy(dtype=np.int64)
    fid_to_row = {int(f): i for i, f in enumerate(files["file_id"].to_numpy())}
    window_file_row = np.array([fid_to_row[int(f)] for f in file_ids], dtype=np.int64)
    task = resolve_task(files, config)
    classes, targets, score_ids = task.targets(files, images.segments, images.classes,
                                               offset=images.config.audio.offset,
                                               window_seconds=images.config.segment.seconds)
    fold_of_file = task.folds(files, classes, n_splits=config.n_splits, group_column=config.group_column,
                              seed=config.seed)
    return _Plan(files=files, classes=classes, fold_of_file=fold_of_file, image_size=image_size,
                 data_cfg=data_cfg, file_ids=file_ids, targets=targets, window_file_row=window_file_row,
                 fid_to_row=fid_to_row, task=task, score_ids=score_ids, config=config.replace(task=task.config))


def _data_hash(files: pd.DataFrame, folds: np.ndarray, group_column: Optional[str]) -> str:
    h = hashlib.sha1()
    groups = files[group_column] if group_column else files["path"]
    for p, lab, g, n, f in zip(files["path"], files["label"], groups, files["n_segments"], folds):
        h.update(f"{p}\t{lab}\t{g}\t{n}\t{f}\n".encode())
    for col in ("labels", "events"):  # multi-label tables: their tags and events decide the targets
        if col in files.columns:
            h.update("\n".join(map(str, files[col])).encode())
    return h.hexdigest()[:16]


def _ident(config: TrainConfig, render: Dict[str, Any], classes: List[str], data_hash: Optional[str], *,
           full: bool = False) -> Dict:
    """What a run's fingerprint covers; ``full``: every training option (defaults included), to show a diff."""
    train = config.result_dict()
    if full:
        train = config.to_dict()
        for name in RuntimeConfig.NOT_IN_RESULT:
            train["runtime"].pop(name, None)
    return {"train": train, "render": render, "classes": classes, "data_hash": data_hash}


def _data_root(files: pd.DataFrame) -> Optional[str]:
    """The one folder every table path is relative to (the input CSV's), or None."""
    if "abspath" not in files:
        return None
    roots = set()
    for p, a in zip(files["path"].astype(str), files["abspath"].astype(str)):
        if Path(p).is_absolute() or not a.endswith(p):
            return None
        roots.add(a[: len(a) - len(p)])
    return str(Path(roots.pop())) if len(roots) == 1 else None


def _resolved_config(images: TrainingImages, config: TrainConfig, plan: _Plan) -> Dict[str, Any]:
    """The content of ``config.json``: the resolved configs, classes, normalisation and the run's fingerprint."""
    data_hash = _data_hash(plan.files, plan.fold_of_file, config.group_column)
    render = images.config.to_dict()
    fingerprint = hashlib.sha1(json.dumps(_ident(config, render, plan.classes, data_hash),
                                          sort_keys=True).encode()).hexdigest()[:16]
    d = plan.data_cfg
    return {"train": config.to_dict(), "render": render, "classes": plan.classes, "backbone": config.backbone,
            "weights": config.weights, "cache": str(Path(images.root).resolve()) if images.root is not None else None,
            "images": images.kind, "data_root": _data_root(plan.files), "image_size": list(plan.image_size),
            "data": {"input_size": list(d["input_size"]), "mean": list(d["mean"]), "std": list(d["std"])},
            "n_files": int(len(plan.files)), "n_images": int(images.n_windows), "data_hash": data_hash,
            "fingerprint": fingerprint, "task": plan.task.kind}


def _check_previous(run: Run, config: TrainConfig, resolved: Dict[str, Any], *, resume: bool, main: bool) -> None:
    """Refuse (``resume``) or discard a run folder that holds a run of another config or data."""
    if not run.path(Run.CONFIG).exists():
        return
    old = run.config if run.has_config() else {}
    if old.get("fingerprint") == resolved["fingerprint"]:
        return
    old_train = TrainConfig.from_dict(old["train"]) if "train" in old else None
    old_ident = _ident(old_train, old.get("render", {}), old.get("classes"), old.get("data_hash"), full=True) \
        if old_train is not None else {}
    new_ident = _ident(config, resolved["render"], resolved["classes"], resolved["data_hash"], full=True)
    diff = config_diff(old_ident, new_ident) or ["unreadable config.json or a run of an older specimg"]
    if resume:
        raise ParameterError(f"{str(run.root)!r} holds a run with another config or data ({'; '.join(diff[:6])}). "
                             "Write to another --out folder, or pass resume=False (--no-resume) to discard it and "
                             "start over.")
    if main:
        warnings.warn(f"Discarding the previous run in {str(run.root)!r} (changed: {'; '.join(diff[:6])}).",
                      UserWarning, stacklevel=3)
        run.discard()


def _fold_table(plan: _Plan, config: TrainConfig) -> pd.DataFrame:
    table = pd.DataFrame({"path": plan.files["path"], "label": plan.files["label"], "fold": plan.fold_of_file})
    truth = plan.task.file_truth(plan.targets, plan.window_file_row, len(plan.files), plan.classes)
    if truth is not None:
        table.insert(2, plan.task.truth_column, truth)
    if config.group_column:
        table.insert(2, config.group_column, plan.files[config.group_column].to_numpy())
    return table


# --------------------------------------------------------------------------- one fold
def _check_finite(probs: np.ndarray, fold: int, result: FitResult) -> None:
    bad = ~np.isfinite(probs).all(axis=1)
    if bad.any():
        raise TrainingError(f"fold {fold}: the model kept from epoch {result.best_epoch} predicts non-finite "
                            f"probabilities for {int(bad.sum())} of {len(probs)} held-out windows: it diverged. "
                            "The fold is left unfinished. Lower --lr, train with --amp off (or bf16) or clip the "
                            "gradients (--grad-clip 1.0), then run the same command again.")


def _train_fold(k: int, run: Run, images: TrainingImages, plan: _Plan, config: TrainConfig, *, meta: Dict[str, Any],
                transform: Optional[nn.Module], callbacks: List[Callback], resume: bool, verbose: bool,
                fingerprint: str) -> FitResult:
    """Train fold ``k``, predict its held-out windows, write its tables (rank 0) and mark it done last."""
    from ..models import create_backbone

    main = is_main_process()
    fold_dir = run.start_fold(k) if main else run.fold_dir(k)
    leaks = pseudo_leaks(plan.files, plan.fold_of_file, k, config.group_column)[plan.window_file_row]
    # A pseudo-labelled file (fold -1) trains every fold, except a fold that validates its group: with a group
    # column (speaker, patient), training on a pseudo-labelled recording of a validation speaker would leak
    # that voice into the fold's score.
    train_rows = np.flatnonzero((plan.window_fold != k) & ~leaks)
    val_rows = np.flatnonzero(plan.window_fold == k)
    choose_rows = val_rows  # the windows that choose the kept epoch
    if config.schedule.select_epoch == "inner":
        train_rows, choose_rows = _inner_split(plan, config, k, train_rows)
    train_rows = plan.task.training_rows(train_rows, plan.targets, seed=_fold_seed(config.seed, k))
    kw = dict(config=config, image_size=plan.image_size, num_classes=len(plan.classes))
    train_ds = images.dataset(train_rows, plan.targets, plan.file_ids, train=True, **kw)
    # validation scores pool over files, or over windows (``score_ids``) for annotated recordings
    val_ids = plan.file_ids if plan.score_ids is None else plan.score_ids
    val_ds = images.dataset(val_rows, plan.targets, val_ids, train=False, **kw)
    choose_ds = val_ds if choose_rows is val_rows else images.dataset(choose_rows, plan.targets, val_ids, train=False,
                                                                       **kw)
    torch.manual_seed(_fold_seed(config.seed, k))
    model = create_backbone(config.backbone, num_classes=len(plan.classes), weights=config.weights,
                            drop_rate=config.drop_rate, **config.backbone_kwargs)
    normalize = PixelNormalize(plan.data_cfg["mean"], plan.data_cfg["std"])
    trainer = Trainer(config, out_dir=fold_dir, callbacks=callbacks, resume=resume, progress=verbose,
                      desc=f"fold {k}", batch_transform=transform, normalize=normalize, task=plan.task)
    result = trainer.fit(model, train_ds, choose_ds, num_classes=len(plan.classes), meta={**meta, "fold": k})
    probs = trainer.predict(model, val_ds)  # (n_val_windows, n_classes)
    _check_finite(probs, k, result)
    seg_df, file_df = plan.task.fold_tables(k, plan, images.segments, val_rows, probs)
    scores = plan.task.fold_scores(seg_df, file_df, plan.classes)
    if main:
        info = {"fold": k, "fingerprint": fingerprint, **scores, "n_files": int(len(file_df)),
                "n_windows": int(len(seg_df)), "best_epoch": result.best_epoch, "best_score": result.best_score,
                "epochs_run": result.epochs_run, "stopped_early": result.stopped_early}
        run.write_fold(k, seg_df, file_df, info)
    return result


def _inner_split(plan: _Plan, config: TrainConfig, k: int, train_rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``select_epoch='inner'``: (training windows, the windows that choose the epoch) of fold ``k``.

    The fold's training files are split again by the run's fold rule (groups kept whole, classes balanced)
    into ``max(2, n_splits - 1)`` inner folds; the first is held back to choose the epoch. Pseudo-labelled
    files (fold -1) always train.
    """
    rows = np.unique(plan.window_file_row[train_rows])
    rows = rows[plan.fold_of_file[rows] >= 0]
    inner = plan.task.folds(plan.files.iloc[rows].reset_index(drop=True), plan.classes,
                            n_splits=max(2, config.n_splits - 1), group_column=config.group_column,
                            seed=config.seed, warn=False)
    held = np.zeros(len(plan.files), dtype=bool)
    held[rows[inner == 0]] = True
    in_held = held[plan.window_file_row[train_rows]]
    return train_rows[~in_held], train_rows[in_held]


# --------------------------------------------------------------------------- the runner
def _fold_list(folds: Union[None, int, Sequence[int]], n_splits: int) -> List[int]:
    if folds is None:  # all folds; SPECIMG_MAX_FOLDS=N keeps the first N of the plan (smoke runs: the docs' tests)
        cap = os.environ.get("SPECIMG_MAX_FOLDS", "").strip()
        if cap and (not cap.isdigit() or int(cap) < 1):
            raise ParameterError(f"The SPECIMG_MAX_FOLDS environment variable must be an int >= 1 (the most folds "
                                 f"a train_cv call trains when it is not given folds). Got {cap!r}.")
        return list(range(min(n_splits, int(cap)) if cap else n_splits))
    todo = [folds] if isinstance(folds, (int, np.integer)) else list(folds)
    bad = [f for f in todo if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or not 0 <= f < n_splits]
    if bad or not todo:
        raise ParameterError(f"The 'folds' parameter of train_cv must list fold indices in [0, {n_splits - 1}] "
                             f"(n_splits={n_splits}). Got {folds!r}.")
    return sorted({int(f) for f in todo})


def _check_configs(config: Optional[TrainConfig], render_config: Optional[RenderConfig]) -> TrainConfig:
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise ParameterError(f"The 'config' parameter of train_cv must be a TrainConfig. Got {type(config).__name__}.")
    if render_config is not None and not isinstance(render_config, RenderConfig):
        raise ParameterError(f"The 'render_config' parameter of train_cv must be a RenderConfig or None. Got "
                             f"{type(render_config).__name__}.")
    return config


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
    anchor: bool = True,
) -> CVResult:
    """Cross-validate a backbone: train one model per fold, predict its held-out files.

    Folds are grouped by source file, or by ``config.group_column`` (a speaker, a patient), and stratified by
    class (:func:`specimg.data.file_folds`). Every fold writes ``RUN/fold_{i}/`` (the layout:
    :class:`~specimg.training.Run`). Calling it again with the same arguments skips the finished folds and
    continues an interrupted fold from its ``last.pt``. Under ``torchrun`` each fold trains over the processes
    (see :class:`Trainer`); rank 0 alone renders, writes and prints, and every process returns the same result.

    Parameters
    ----------
    source : ImageCache, WaveformSet, path or DataFrame
        An image cache (object or folder), or audio (see :func:`specimg.audio.read_table`) rendered first into
        ``cache_dir`` (default ``out_dir/cache``); with ``config.images='on-the-fly'`` decoded once into a
        :class:`~specimg.data.WaveformSet` (default ``out_dir/audio``), its batches made images on the device.
    out_dir : path
        The run folder.
    config : TrainConfig or None
        Training options (defaults: ``TrainConfig()``).
    render_config : RenderConfig or None
        How to render audio input (default ``RenderConfig()``); with a cache,
        it must match the cache's config.
    cache_dir : path or None
        Where to render audio input (``images='on-the-fly'``: where to keep
        the decoded audio).
    folds : None, int or sequence of int
        The folds to run (``None``: all ``config.n_splits``, or the first
        ``N`` when the ``SPECIMG_MAX_FOLDS`` environment variable is ``N``:
        a smoke run; the rest can be trained later, without it).
    callbacks : iterable of Callback
        Passed to every fold's :class:`Trainer`.
    resume : bool
        Skip finished folds and continue interrupted ones. ``False`` trains
        the requested folds from scratch (and, when the config changed,
        discards the results of the old config).
    verbose : bool
        Progress bars and per-epoch lines; the summary is logged
        (``logging``, logger ``specimg.training``) either way.
    anchor : bool
        Also fit the classical anchor on the finished folds (MFCC statistics
        + LightGBM, :func:`~specimg.training.fit_anchor`; seconds): its scores
        go into ``metrics.json`` (``"anchor"``) and under the summary.

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
    TrainingError
        A fold diverged (non-finite loss or predictions); it is left
        unfinished and the message names the fold, epoch and step.

    Examples
    --------
    >>> cfg = TrainConfig(backbone="tf_efficientnet_lite0", weights="offline", schedule={"epochs": 5},
    ...                   n_splits=6, group_column="speaker", runtime={"device": "cpu"})
    >>> result = train_cv("cache/fsdd", "runs/fsdd", cfg)  # doctest: +SKIP
    >>> result.metrics["mean"]["accuracy"]  # doctest: +SKIP
    """
    config = _check_configs(config, render_config)
    todo = _fold_list(folds, config.n_splits)
    callbacks = list(callbacks)
    # under torchrun: join the process group (a no-op in a single process); gloo when training on the CPU
    init_distributed("gloo" if config.runtime.device == "cpu" else None)
    main = is_main_process()
    verbose = verbose and main
    run = Run.create(out_dir)
    images, probe = _open_input(source, run, config, render_config, cache_dir, verbose)
    plan = _plan(images, config, probe)
    del probe
    config = plan.config or config  # the task resolved: every task option filled in
    resolved = _resolved_config(images, config, plan)
    fingerprint = resolved["fingerprint"]
    _check_previous(run, config, resolved, resume=resume, main=main)
    barrier()  # every process has checked the old config.json before rank 0 replaces it
    if main:
        run.write_config(resolved)
        run.write_table(Run.FOLDS, _fold_table(plan, config))
    d = plan.data_cfg
    meta = {"backbone": config.backbone, "weights": config.weights, "classes": plan.classes,
            "drop_rate": config.drop_rate, "backbone_kwargs": dict(config.backbone_kwargs),
            "input_size": list(d["input_size"]), "mean": list(d["mean"]), "std": list(d["std"]),
            "render_config": images.config.to_dict(), "cache": resolved["cache"], "images": images.kind}
    transform = images.device_transform(config=config, image_size=plan.image_size, mean=d["mean"], std=d["std"])
    fit_results: Dict[int, FitResult] = {}
    for k in todo:
        if resume and run.fold_done(k, fingerprint):
            _logger.info("fold %d: already finished, skipped (%s)", k, run.fold_dir(k))
            continue
        fit_results[k] = _train_fold(k, run, images, plan, config, meta=meta, transform=transform,
                                     callbacks=callbacks, resume=resume, verbose=verbose, fingerprint=fingerprint)
        barrier()  # the fold's files are written before any process looks at the next fold
    if main:
        result = _collect(run, config, plan, fingerprint, fit_results,
                          anchor=_anchor(run, plan, images.config, config, fingerprint) if anchor else None)
    barrier()
    if not main:  # the other processes read what rank 0 wrote
        result = _collect(run, config, plan, fingerprint, fit_results, write=False)
    return result


def _concat_folds(run: Run, done: List[int], plan: _Plan) -> Tuple[pd.DataFrame, pd.DataFrame, Dict[str, Any]]:
    """The finished folds' tables, in the order of the input table (then by window)."""
    seg_parts, file_parts, per_fold = [], [], {}
    for k in done:
        seg, files, info = run.read_fold(k)
        seg_parts.append(seg)
        file_parts.append(files)
        keys = plan.task.score_keys
        per_fold[str(k)] = {key: info.get(key) for key in (*keys, "n_files", "n_windows", "best_epoch",
                                                           "best_score", "epochs_run", "stopped_early")}
    cols = [f"prob_{c}" for c in plan.classes]
    if not file_parts:
        return (pd.DataFrame(columns=["path", "label", "fold", "prediction", *cols]),
                pd.DataFrame(columns=["path", "segment", "start", "end", "fold", *cols]), per_fold)
    order = {p: i for i, p in enumerate(plan.files["path"])}
    oof_files = pd.concat(file_parts, ignore_index=True)
    oof_files = oof_files.iloc[np.argsort(oof_files["path"].map(order).to_numpy(), kind="stable")]
    oof_segments = pd.concat(seg_parts, ignore_index=True)
    key = oof_segments["path"].map(order).to_numpy() * 1_000_000 + oof_segments["segment"].to_numpy()
    oof_segments = oof_segments.iloc[np.argsort(key, kind="stable")]
    return oof_files.reset_index(drop=True), oof_segments.reset_index(drop=True), per_fold


def _done_folds(run: Run, config: TrainConfig, fingerprint: str) -> List[int]:
    return [k for k in range(config.n_splits) if run.fold_done(k, fingerprint)]


def _anchor(run: Run, plan: _Plan, render_config: RenderConfig, config: TrainConfig,
            fingerprint: str) -> Optional[Dict[str, Any]]:
    """MFCC statistics + LightGBM on the finished folds (:mod:`._anchor`), or its record from an earlier call."""
    from .._io import read_done, write_done
    from ..exceptions import SpecimgError
    from ._anchor import fit_anchor

    done = _done_folds(run, config, fingerprint)
    if not done or plan.score_ids is not None or "abspath" not in plan.files:
        return None  # nothing scored yet, or windows scored against events: no file-level anchor
    key = f"{fingerprint}:{','.join(map(str, done))}"
    record = read_done(run.path(Run.ANCHOR), key)
    if record is not None:
        return record["anchor"]
    table = _fold_table(plan, config).assign(abspath=plan.files["abspath"].to_numpy())
    try:
        result = fit_anchor(table, plan.fold_of_file, plan.task, plan.classes, render_config, seed=config.seed,
                            workers=min(2, os.cpu_count() or 1), score_folds=done)
    except (SpecimgError, ValueError) as exc:  # the CNN's run is complete without it
        _logger.warning("the MFCC + LightGBM anchor could not be fitted (%s); the run is complete without it", exc)
        return None
    seconds = result.pop("seconds")  # metrics.json stays a function of the inputs; anchor.json has the time
    write_done(run.path(Run.ANCHOR), key, anchor=result, seconds=seconds)
    return result


def _collect(run: Run, config: TrainConfig, plan: _Plan, fingerprint: str, fit_results: Dict[int, FitResult], *,
             write: bool = True, anchor: Optional[Dict[str, Any]] = None) -> CVResult:
    done = _done_folds(run, config, fingerprint)
    oof_files, oof_segments, per_fold = _concat_folds(run, done, plan)
    task = plan.task
    metrics = task.run_metrics(done, per_fold, oof_files, oof_segments, plan.classes, plan.files, config,
                               level="file" if plan.score_ids is None else "window")
    if anchor is not None:
        metrics["anchor"] = anchor
    elif not write and run.path(Run.METRICS).is_file():  # the other processes: what rank 0 wrote
        metrics["anchor"] = json.loads(run.path(Run.METRICS).read_text()).get("anchor")
    decision = task.fit_decision(oof_files, oof_segments, plan.classes) if done else None
    if decision is not None:  # e.g. per-class thresholds of maximum F1 on the pooled out-of-fold scores
        oof_files = oof_files.assign(prediction=task.decide(
            oof_files[[f"prob_{c}" for c in plan.classes]].to_numpy(dtype=np.float64), plan.classes, decision))
        if write:
            run.write_thresholds(decision)
    if write:
        run.write_table(Run.OOF_SEGMENTS, oof_segments)
        run.write_table(Run.OOF_FILES, oof_files)
        run.write_metrics(metrics)
    result = CVResult(run_dir=run.root, folds=done, metrics=metrics, oof_files=oof_files, oof_segments=oof_segments,
                      classes=plan.classes, config=config, fit_results=fit_results)
    if write:
        _logger.info("%s", result.summary())
    return result

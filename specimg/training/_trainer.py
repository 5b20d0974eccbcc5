"""The training loop of one split: warm-up + cosine, AMP, checkpoints, early stopping, resume."""

from __future__ import annotations

import copy
import os
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, Subset
from torch.utils.data.distributed import DistributedSampler

from .._io import PathLike, atomic_write_csv, config_diff
from ..config import TrainConfig
from ..data import PixelNormalize, SegmentDataset
from ..exceptions import ParameterError, TrainingError
from ..models import Ensemble
from ..tasks import Task
from .._progress import progress_bar
from ._callbacks import Callback, _CallbackList
from ._checkpoint import CHECKPOINT_FORMAT, atomic_save
from ._distributed import all_gather_objects, all_sum, any_true, barrier, dist_info, shard_rows
from ._schedule import build_optimizer, build_scheduler

__all__ = ["Trainer", "FitResult", "resolve_device"]


def resolve_device(device: str = "auto") -> torch.device:
    """``'auto'`` -> CUDA when available, else the CPU; checks that CUDA exists when asked for.

    Under ``torchrun`` (a process group of several processes), ``'auto'`` and
    ``'cuda'`` mean this process's GPU, ``cuda:LOCAL_RANK``.
    """
    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda") or
                                           (device.startswith("cuda:") and device[5:].isdigit())):
        raise ParameterError(f"The 'device' option must be 'auto', 'cpu', 'cuda' or 'cuda:N'. Got {device!r}.")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(f"device={device!r} was asked for but torch sees no CUDA GPU. Use device='cpu' or "
                             "'auto' (--device cpu).")
    _, local_rank, world = dist_info()
    if device == "cuda" and world > 1:
        return torch.device("cuda", local_rank)
    return torch.device(device)


def _amp_dtype(amp: str, device: torch.device) -> Optional[torch.dtype]:
    if device.type != "cuda" or amp == "off":
        if device.type != "cuda" and amp in ("bf16", "fp16"):
            warnings.warn(f"amp={amp!r} is used on CUDA only; training in float32 on the {device.type}.",
                          UserWarning, stacklevel=3)
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _freeze(model: nn.Module, names: Optional[Tuple[str, ...]]) -> Tuple[nn.Module, ...]:
    """Stop the gradients of ``config.freeze``'s modules; they are returned to be kept in eval mode."""
    if not names:
        return ()
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        top = ", ".join(n for n, _ in model.named_children())
        raise ParameterError(f"freeze={list(names)!r}: {unknown} not among the model's modules. Name modules as in "
                             f"model.named_modules(), e.g. its top-level ones: {top}.")
    for n in names:
        modules[n].requires_grad_(False)
    return tuple(modules[n] for n in names)


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _rng_state() -> Dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns.

    Attributes
    ----------
    best_epoch : int or None
        Epoch (from 1) of the kept weights.
    best_score : float or None
        Its validation metric (file level); ``None`` without validation data.
    metric : str
        ``'accuracy'`` or ``'uar'``.
    history : list of dict
        One row of ``log.csv`` per epoch.
    epochs_run : int
        Epochs trained (fewer than ``epochs`` after early stopping).
    stopped_early : bool
    checkpoint : Path or None
        ``best.pt`` when the trainer has an ``out_dir``.
    """

    best_epoch: Optional[int]
    best_score: Optional[float]
    metric: str
    history: List[Dict[str, Any]] = field(default_factory=list)
    epochs_run: int = 0
    stopped_early: bool = False
    checkpoint: Optional[Path] = None


@dataclass
class _FitState:
    """The working state of one :meth:`Trainer.fit` (what ``last.pt`` saves besides the trainer's attributes)."""

    loader: Any
    steps: int
    order_gen: torch.Generator
    worker_gen: torch.Generator
    optimizer: Any
    scheduler: Any
    scaler: Any
    criterion: nn.Module
    base_meta: Dict[str, Any]
    last_path: Optional[Path]
    best_path: Optional[Path]
    net: Any = None
    since_best: int = 0
    best_state: Optional[Dict[str, Any]] = None
    stopped_early: bool = False
    best_loss: float = float("inf")
    ema: Any = None  # timm ModelEmaV3 when config.ema is set
    frozen: Tuple[nn.Module, ...] = ()  # config.freeze's modules: kept in eval mode while training

    def judged(self, model: nn.Module) -> nn.Module:
        """The weights that are validated and kept: the moving average when there is one, else ``model``."""
        return model if self.ema is None else self.ema.module


class Trainer:
    """Fine-tune a classifier on one training / validation split.

    The options are the config's (:class:`~specimg.config.TrainConfig`); the kept epoch is chosen by the task's
    file-level metric. With an ``out_dir`` every epoch writes ``last.pt`` (everything a resume needs, RNG states
    included) and ``log.csv``, and each better epoch ``best.pt``, all atomically: ``fit`` called again after a
    crash continues from ``last.pt`` and ends with the weights of an uninterrupted run (bit for bit on the CPU).

    Parameters
    ----------
    config : TrainConfig
    out_dir : path or None
        Folder of the checkpoints and the log; ``None`` keeps the best
        weights in memory only.
    callbacks : iterable of Callback
    resume : bool
        Continue from ``out_dir/last.pt`` when it exists (else start over).
    progress : bool
        Show a tqdm bar per epoch and a line per finished epoch.
    desc : str
        Prefix of the progress bar.
    batch_transform : nn.Module or callable or None
        ``batch_transform(x, train=..., generator=...)`` on every batch on the device, before the model (e.g.
        :class:`~specimg.data.FrontendPipeline`); ``generator`` draws the training augmentation.
    normalize : PixelNormalize or None
        Applied on the device to every batch (after ``batch_transform``), when the data yields pixels (e.g.
        ``SegmentDataset(normalize=False)``); ``None``: the batches are already normalised.
    task : Task or None
        What the fit learns (:mod:`specimg.tasks`: loss, activation,
        validation metric). ``None``: ``config.task``, its ``kind='auto'``
        decided by the targets (multi-hot rows are multi-label).

    Notes
    -----
    **Several processes** (``torchrun --nproc_per_node N``, after :func:`~specimg.training.init_distributed`):
    the model is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` and each process trains on its
    share of every epoch with ``batch_size // N`` items, so a config means the same on 1 or N processes. The
    validation probabilities are gathered, so every process takes the same decisions; rank 0 alone writes and
    prints. Resuming needs the same number of processes to be bit-exact.

    Examples
    --------
    >>> cfg = TrainConfig(schedule={"epochs": 2}, runtime={"device": "cpu"})
    >>> trainer = Trainer(cfg, out_dir="run/fold_0")  # doctest: +SKIP
    >>> result = trainer.fit(model, train_ds, val_ds)  # doctest: +SKIP
    >>> probs = trainer.predict(model, val_ds)  # (n_windows, n_classes)  # doctest: +SKIP
    """

    def __init__(self, config: TrainConfig, *, out_dir: Optional[PathLike] = None,
                 callbacks: Iterable[Callback] = (), resume: bool = True, progress: bool = True,
                 desc: str = "train", batch_transform: Optional[Any] = None,
                 normalize: Optional[PixelNormalize] = None, task: Optional[Task] = None) -> None:
        if not isinstance(config, TrainConfig):
            raise ParameterError(f"Trainer needs a TrainConfig; got {type(config).__name__}.")
        if task is not None and not isinstance(task, Task):
            raise ParameterError(f"The 'task' parameter of Trainer must be a specimg.tasks.Task or None. Got "
                                 f"{type(task).__name__}.")
        #: the task (None until fit resolves it from the config and the targets, when not given)
        self.task: Optional[Task] = task
        callbacks = list(callbacks)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise ParameterError(f"Every callback must subclass specimg.training.Callback; got "
                                     f"{type(cb).__name__}.")
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.callbacks = callbacks
        self.resume = bool(resume)
        self.progress = bool(progress)
        self.desc = desc
        if batch_transform is not None and not callable(batch_transform):
            raise ParameterError(f"The 'batch_transform' parameter of Trainer must be callable. Got "
                                 f"{type(batch_transform).__name__}.")
        self.batch_transform = batch_transform
        if normalize is not None and not isinstance(normalize, PixelNormalize):
            raise ParameterError(f"The 'normalize' parameter of Trainer must be a specimg.data.PixelNormalize or "
                                 f"None. Got {type(normalize).__name__}.")
        self.normalize = normalize
        self.rank, self.local_rank, self.world_size = dist_info()
        self.is_main = self.rank == 0
        self.progress = self.progress and self.is_main
        self.device = resolve_device(config.runtime.device)
        if isinstance(batch_transform, nn.Module):
            batch_transform.to(self.device)
        if normalize is not None:
            normalize.to(self.device)
        self._aug_gen = torch.Generator()
        self.amp_dtype = _amp_dtype(config.runtime.amp, self.device)
        self.channels_last = bool(config.runtime.channels_last)
        if config.runtime.num_workers is not None:
            self.num_workers = config.runtime.num_workers
        elif self.device.type == "cuda":
            self.num_workers = max(0, min(8, (os.cpu_count() or 1) - 1))
        else:
            self.num_workers = 0
        # state visible to callbacks
        self.model: Optional[nn.Module] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None
        self.epoch = 0
        self.global_step = 0
        self.history: List[Dict[str, Any]] = []
        self.best_score: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.stop_training = False

    # ------------------------------------------------------------------ loaders
    def _loader(self, data: SegmentDataset, *, train: bool, order: Optional[torch.Generator] = None,
                workers: Optional[torch.Generator] = None) -> DataLoader:
        """``order`` shuffles the training items; ``workers`` seeds the worker processes (torch draws
        their base seed only when there are workers, so the two must not share a generator)."""
        bs = self._per_process_batch() if train else max(1, self.config.optim.batch_size * 2)
        kw: Dict[str, Any] = dict(batch_size=bs, num_workers=self.num_workers,
                                  pin_memory=self.device.type == "cuda")
        if self.num_workers > 0:
            kw["prefetch_factor"] = 4
        if train and self.world_size > 1:
            # every process draws the same permutation (seed + epoch) and takes its own share of it
            sampler = DistributedSampler(data, num_replicas=self.world_size, rank=self.rank, shuffle=True,
                                         seed=self.config.seed)
            per_process = len(sampler)
            kw.update(sampler=sampler, generator=workers, drop_last=per_process > bs)
        elif train:
            kw.update(sampler=RandomSampler(data, generator=order), generator=workers,
                      drop_last=len(data) > bs)
        return DataLoader(data, shuffle=False, **kw)

    def _per_process_batch(self) -> int:
        bs, world = self.config.optim.batch_size, self.world_size
        if world == 1:
            return bs
        if bs < world:
            raise ParameterError(f"batch_size={bs} cannot be split over {world} processes: batch_size is the number "
                                 f"of items per optimizer step, shared by the processes. Use --batch-size {world} "
                                 "or more (a multiple of the process count).")
        if bs % world:
            warnings.warn(f"batch_size={bs} is not a multiple of the {world} processes: each takes {bs // world}, "
                          f"so an optimizer step sees {bs // world * world} items.", UserWarning, stacklevel=3)
        return bs // world

    def _to_device(self, x: Any, *, train: bool = False, normalize: bool = True) -> torch.Tensor:
        if isinstance(x, (tuple, list)):
            x = type(x)(t.to(self.device, non_blocking=True) for t in x)
        else:
            x = x.to(self.device, non_blocking=True)
        if self.batch_transform is not None:
            x = self.batch_transform(x, train=train, generator=self._aug_gen if train else None)
        if normalize and self.normalize is not None:
            x = self.normalize(x)  # (B, 3, H, W) float32
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    # ------------------------------------------------------------------ predict
    @torch.no_grad()
    def predict(self, model: nn.Module, data: SegmentDataset, *, tta: Optional[str] = None) -> np.ndarray:
        """Window probabilities of ``data``.

        Parameters
        ----------
        model : nn.Module
        data : SegmentDataset
        tta : {'flip', 'none'} or None
            ``'flip'`` averages the probabilities of each image and of its
            horizontal flip; ``None`` uses ``config.tta``.

        Returns
        -------
        probs : np.ndarray [shape=(len(data), n_classes), dtype=float32]
        """
        tta = self.config.tta if tta is None else tta
        if tta not in ("flip", "none"):
            raise ParameterError(f"The 'tta' parameter of Trainer.predict must be 'flip' or 'none'. Got {tta!r}.")
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        was_training = model.training
        model.eval()
        # the inference core of Predictor and of the exported graph: normalise, flip TTA, softmax
        core = Ensemble([model], normalize=self.normalize, tta=tta, channels_last=self.channels_last,
                        activation=self._task_of(data).activation)
        out = []
        share = data if self.world_size == 1 else Subset(data, shard_rows(len(data)).tolist())
        for x, _ in self._loader(share, train=False):
            x = self._to_device(x, normalize=False)  # (B, 3, H, W): pixels, or normalised without self.normalize
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                p = core(x)  # (B, n_classes) float32
            out.append(p.cpu())
        model.train(was_training)
        probs = torch.cat(out).numpy().astype(np.float32) if out else None
        if self.world_size > 1:  # every process gets every window, in order
            parts = [p for p in all_gather_objects(probs) if p is not None]
            probs = np.concatenate(parts) if parts else None
        if probs is None:
            return np.zeros((0, 0), dtype=np.float32)
        return probs

    def evaluate(self, model: nn.Module, data: SegmentDataset) -> Dict[str, float]:
        """The task's validation scores (:meth:`specimg.tasks.Task.validation`, with ``config.tta``): the
        window loss and, on the windows pooled per ``data.file_ids``, file accuracy and UAR (single-label) or
        macro / micro AP and macro ROC-AUC (multi-label)."""
        probs = self.predict(model, data)
        if not np.isfinite(probs).all():
            raise self._diverged(f"{int((~np.isfinite(probs).all(1)).sum())} of {len(probs)} validation windows "
                                 "have non-finite probabilities", self.epoch + 1)
        ids = data.file_ids if data.file_ids is not None else np.arange(len(data))
        return self._task_of(data).validation(probs, data.targets, ids)

    def _task_of(self, data: Any) -> Task:
        """The task: given, or resolved once from the config and the targets (multi-hot rows: multi-label)."""
        if self.task is None:
            kind = self.config.task.kind
            if kind == "auto":
                kind = "multi-label" if np.asarray(data.targets).ndim == 2 else "single-label"
            self.task = Task.for_kind(kind, self.config.task)
        return self.task

    # ------------------------------------------------------------------ fit
    def fit(self, model: nn.Module, train_data: SegmentDataset, val_data: Optional[SegmentDataset] = None, *,
            num_classes: Optional[int] = None, meta: Optional[Mapping[str, Any]] = None) -> FitResult:
        """Train ``model`` in place; it ends holding the best epoch's weights.

        Parameters
        ----------
        model : nn.Module
            Maps (B, 3, H, W) float images to (B, num_classes) logits.
        train_data : SegmentDataset
            Labelled training windows (with the training transform).
        val_data : SegmentDataset or None
            Labelled validation windows with ``file_ids`` (the evaluation
            transform); ``None`` keeps the last epoch.
        num_classes : int or None
            Defaults to ``train_data.num_classes``, then ``model.num_classes``.
        meta : mapping or None
            Extra entries stored in ``best.pt`` / ``last.pt`` (classes,
            backbone name, normalisation...), JSON-like values only.

        Returns
        -------
        result : FitResult

        Raises
        ------
        DataError
            Empty or unlabelled training / validation data.
        ParameterError
            ``last.pt`` written with another config while ``resume=True``.
        """
        num_classes = self._task_of(train_data).check_targets(train_data, val_data, num_classes, model)
        st = self._prepare(model, train_data, num_classes, meta)
        self._restore(st, model)
        st.net = self._wrap(model)
        cbs = _CallbackList(self.callbacks)
        cbs("on_train_start", self)
        while self.epoch < self.config.schedule.epochs and not st.stopped_early and not self.stop_training:
            e = self.epoch  # 0-based index of the epoch being trained
            cbs("on_epoch_start", self, e + 1)
            t0 = time.perf_counter()
            logs, bar = self._train_epoch(st, model, train_data, cbs)
            self._end_epoch(st, model, val_data, logs, t0, bar)
            cbs("on_epoch_end", self, e + 1, logs)
            self.stop_training = any_true(self.stop_training, self.device)  # a callback on any process stops all
        # the best weights end up in the model
        if st.best_path is not None and st.best_path.exists():
            model.load_state_dict(torch.load(st.best_path, map_location="cpu", weights_only=True)["model"])
        elif st.best_state is not None:
            model.load_state_dict(st.best_state)
        elif st.ema is not None:  # no validation data, no checkpoint: the last epoch's average
            model.load_state_dict(st.ema.module.state_dict())
        result = FitResult(best_epoch=self.best_epoch, best_score=self.best_score, metric=self.metric,
                           history=list(self.history), epochs_run=self.epoch, stopped_early=st.stopped_early,
                           checkpoint=st.best_path)
        cbs("on_train_end", self, result)
        return result

    # ------------------------------------------------------------------ the pieces of fit
    @property
    def metric(self) -> str:
        """The validation metric that picks the kept epoch (the task's: ``TaskConfig.metric``)."""
        return self.task.metric if self.task is not None else (self.config.task.metric or "accuracy")

    def _prepare(self, model: nn.Module, train_data: Any, num_classes: int,
                 meta: Optional[Mapping[str, Any]]) -> "_FitState":
        """The model on its device, the loader, optimizer, schedule, scaler and loss of a fit."""
        cfg, device = self.config, self.device
        model.to(device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        frozen = _freeze(model, cfg.freeze)
        task = self._task_of(train_data)
        order_gen, worker_gen = torch.Generator(), torch.Generator()
        loader = self._loader(train_data, train=True, order=order_gen, workers=worker_gen)
        steps = len(loader)
        optimizer = build_optimizer(model, cfg.optim)
        sc = cfg.schedule
        scheduler = build_scheduler(optimizer, steps_per_epoch=steps, epochs=sc.epochs,
                                    warmup_epochs=sc.warmup_epochs, schedule=sc.lr_schedule,
                                    step_size=sc.step_size, step_gamma=sc.step_gamma)
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        criterion: nn.Module = task.loss(np.asarray(train_data.targets), num_classes).to(device)
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.epoch, self.global_step, self.history = 0, 0, []
        self.best_score, self.best_epoch, self.stop_training = None, None, False
        base_meta = {"format": CHECKPOINT_FORMAT, "version": 1, "num_classes": num_classes,
                     "train_config": cfg.to_dict(), "task": task.to_dict(), "metric": task.metric,
                     **dict(meta or {})}
        last_path = best_path = None
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            last_path, best_path = self.out_dir / "last.pt", self.out_dir / "best.pt"
        ema = None
        if sc.ema is not None:
            from timm.utils import ModelEmaV3

            ema = ModelEmaV3(model, decay=sc.ema, use_warmup=True, warmup_power=0.75)
        return _FitState(loader=loader, steps=steps, order_gen=order_gen, worker_gen=worker_gen, optimizer=optimizer,
                         scheduler=scheduler, scaler=scaler, criterion=criterion, base_meta=base_meta,
                         last_path=last_path, best_path=best_path, ema=ema, frozen=frozen)

    def _restore(self, st: "_FitState", model: nn.Module) -> None:
        """Continue from ``last.pt`` (``resume``), or clear the folder's checkpoints (``resume=False``)."""
        if st.last_path is None:
            return
        if self.resume and st.last_path.exists():
            state = torch.load(st.last_path, map_location="cpu", weights_only=True)
            self._check_resumable(state, st.last_path, st.steps)
            model.load_state_dict(state["model"])
            if st.ema is not None:
                st.ema.module.load_state_dict(state["ema"])
            st.optimizer.load_state_dict(state["optimizer"])
            st.scheduler.load_state_dict(state["scheduler"])
            if st.scaler.is_enabled() and state["scaler"]:  # empty when saved without fp16 (e.g. on the CPU)
                st.scaler.load_state_dict(state["scaler"])
            self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
            rng_ranks = state.get("rng_ranks") or [state["rng"]]
            self.history = list(state["history"])
            self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
            st.since_best, st.stopped_early = int(state["since_best"]), bool(state["stopped_early"])
            st.best_loss = float(state["best_loss"])
            _set_rng_state(rng_ranks[self.rank] if len(rng_ranks) == self.world_size else state["rng"])
        elif not self.resume and self.is_main:
            for p in (st.last_path, st.best_path, self.out_dir / "log.csv"):  # type: ignore[operator]
                p.unlink(missing_ok=True)
        barrier()  # nobody reads last.pt while rank 0 may still be removing it

    def _wrap(self, model: nn.Module) -> nn.Module:
        """The module the training steps call: ``model``, or its DistributedDataParallel wrapper under torchrun."""
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.epoch == 0:  # distinct dropout draws per process (the weights come from rank 0)
            torch.manual_seed(_epoch_seed(self.config.seed, 0, 100 + self.rank))
        return net

    def _seed_epoch(self, st: "_FitState", train_data: Any, e: int) -> Tuple[np.random.Generator, torch.Generator]:
        """Every random draw of epoch ``e`` from ``(seed, epoch)``: the order, the workers, augmentation, mixup."""
        seed = self.config.seed
        train_data.set_epoch(e)
        st.order_gen.manual_seed(_epoch_seed(seed, e, 0))
        st.worker_gen.manual_seed(_epoch_seed(seed, e, 3 + 1000 * self.rank))
        self._aug_gen.manual_seed(_epoch_seed(seed, e, 4 + 1000 * self.rank))
        if isinstance(st.loader.sampler, DistributedSampler):
            st.loader.sampler.set_epoch(e)
        return np.random.default_rng(_epoch_seed(seed, e, 1)), torch.Generator().manual_seed(_epoch_seed(seed, e, 2))

    def _step(self, st: "_FitState", model: nn.Module, x: torch.Tensor, y: torch.Tensor, mix: Any, e: int,
              i: int) -> torch.Tensor:
        """One optimizer step on a batch (mixup, autocast, the finite-loss check, scaler, clipping, schedule)."""
        alpha, clip = self.config.augment.mixup, self.config.optim.grad_clip
        mix_rng, mix_gen = mix
        if alpha > 0:
            lam = float(mix_rng.beta(alpha, alpha))
            perm = torch.randperm(len(x), generator=mix_gen).to(self.device)
            x = lam * x + (1.0 - lam) * x[perm]
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            logits = st.net(x)  # (B, n_classes)
        logits = logits.float()
        if alpha > 0:
            loss = self.task.mixup_loss(st.criterion, logits, y, perm, lam)  # type: ignore[union-attr]
        else:
            loss = st.criterion(logits, y)
        self._check_loss(loss, e, i, st.steps)
        st.optimizer.zero_grad(set_to_none=True)
        st.scaler.scale(loss).backward()
        if clip is not None:
            st.scaler.unscale_(st.optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        st.scaler.step(st.optimizer)
        st.scaler.update()
        st.scheduler.step()
        self.global_step += 1
        if st.ema is not None:
            st.ema.update(model, step=self.global_step)
        return loss.detach()

    def _train_epoch(self, st: "_FitState", model: nn.Module, train_data: Any,
                     cbs: _CallbackList) -> Tuple[Dict[str, Any], Any]:
        """One pass over the training data; returns the epoch's first log entries and its progress bar."""
        e, device = self.epoch, self.device
        mix = self._seed_epoch(st, train_data, e)
        model.train()
        for module in st.frozen:  # fixed BatchNorm statistics (and no dropout) in the frozen layers
            module.eval()
        loss_sum = torch.zeros((), device=device)
        seen = 0
        # the bar does not wrap the loader: tqdm would start (and drop) an extra loader iterator,
        # whose worker prefetch draws one more shuffle from the epoch's generator
        bar = progress_bar(total=st.steps, desc=f"{self.desc} epoch {e + 1}/{self.config.schedule.epochs}",
                           leave=False, file=sys.stderr, disable=not self.progress, dynamic_ncols=True)
        for i, (x, y) in enumerate(st.loader):
            x, y = self._to_device(x, train=True), y.to(device, non_blocking=True)  # (B, 3, H, W), (B,)
            loss = self._step(st, model, x, y, mix, e, i)
            loss_sum += loss * len(x)
            seen += len(x)
            if self.progress and (i % 10 == 0 or i == st.steps - 1):
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}",
                                lr=f"{st.optimizer.param_groups[0]['lr']:.2e}", refresh=False)
            bar.update(1)
            cbs("on_batch_end", self, i, loss)
        bar.close()
        totals = all_sum(torch.stack([loss_sum.float(), torch.tensor(float(seen), device=device)]))
        return ({"epoch": e + 1, "lr": float(st.optimizer.param_groups[0]["lr"]),
                 "train_loss": float(totals[0]) / max(float(totals[1]), 1.0)}, bar)

    def _end_epoch(self, st: "_FitState", model: nn.Module, val_data: Any, logs: Dict[str, Any], t0: float,
                   bar: Any) -> None:
        """Validate, keep the best weights, write ``log.csv`` and ``last.pt``, print the epoch's line."""
        cfg, e = self.config.schedule, self.epoch
        judged = st.judged(model)
        if self.world_size > 1:  # every process evaluates (and rank 0 saves) rank 0's BatchNorm statistics
            for buf in [*model.buffers(), *(judged.buffers() if judged is not model else ())]:
                torch.distributed.broadcast(buf, 0)
        validate = val_data is not None and (cfg.validate_last is None or e >= cfg.epochs - cfg.validate_last)
        # without validation data every epoch is the best so far; an epoch before the validated ones never is
        score, improved = None, val_data is None
        if validate:
            logs.update(self.evaluate(judged, val_data))
            score = logs[f"val_{self.metric}"]
            # ties on the (coarse) file-level metric go to the lower validation loss
            improved = (self.best_score is None or score > self.best_score
                        or (score == self.best_score and logs["val_loss"] < st.best_loss))
        if cfg.select_epoch == "last":  # validation is logged; the kept weights are the last epoch's
            improved = True
        logs["best"] = bool(improved)
        logs["seconds"] = round(time.perf_counter() - t0, 3)
        if improved:
            self.best_score, self.best_epoch, st.since_best = score, e + 1, 0
            st.best_loss = logs.get("val_loss", float("inf"))
            if st.best_path is not None:
                if self.is_main:
                    atomic_save({**st.base_meta, "model": judged.state_dict(), "epoch": e + 1, "score": score},
                                st.best_path)
            elif val_data is not None:  # without validation the last epoch is the best: nothing to keep
                st.best_state = copy.deepcopy(judged.state_dict())
        elif validate:
            st.since_best += 1
        self.history.append(logs)
        self.epoch = e + 1
        if cfg.patience is not None and st.since_best >= cfg.patience:
            st.stopped_early = True
        self._save_last(st, model)
        if self.progress:
            msg = f"{self.desc} epoch {e + 1}/{cfg.epochs}: train_loss {logs['train_loss']:.4f}"
            if validate:
                msg += f"  val_loss {logs['val_loss']:.4f}  val_{self.metric} {score:.4f}" + ("  *" if improved else "")
            bar.write(msg, file=sys.stderr)

    def _save_last(self, st: "_FitState", model: nn.Module) -> None:
        """``log.csv`` and ``last.pt`` (everything a resume needs, every process's RNG state), rank 0 writing."""
        if self.out_dir is None:
            return
        rng_ranks = all_gather_objects(_rng_state())
        if self.is_main:
            atomic_write_csv(pd.DataFrame(self.history), self.out_dir / "log.csv")
            extra = {} if st.ema is None else {"ema": st.ema.module.state_dict()}
            atomic_save({**st.base_meta, "model": model.state_dict(), **extra, "optimizer": st.optimizer.state_dict(),
                         "scheduler": st.scheduler.state_dict(), "scaler": st.scaler.state_dict(),
                         "epoch": self.epoch, "global_step": self.global_step, "history": self.history,
                         "best_score": self.best_score, "best_epoch": self.best_epoch, "since_best": st.since_best,
                         "best_loss": st.best_loss, "stopped_early": st.stopped_early, "steps_per_epoch": st.steps,
                         "world_size": self.world_size, "rng": rng_ranks[0], "rng_ranks": rng_ranks},
                        st.last_path)
        barrier()

    def _diverged(self, what: str, epoch: int) -> TrainingError:
        optim, amp = self.config.optim, self.config.runtime.amp
        return TrainingError(
            f"{self.desc}: {what} at epoch {epoch}: the model diverged, so the fold stops here, unfinished "
            f"(last.pt keeps the last finished epoch). Lower --lr (now {optim.lr:g}), train with --amp off or bf16 "
            f"(now {amp}) or clip the gradients (--grad-clip 1.0, now {optim.grad_clip}), then run the command "
            "again with --no-resume.")

    def _check_loss(self, loss: torch.Tensor, epoch: int, step: int, steps: int) -> None:
        """Stop at a non-finite training loss (every process stops: the flag is shared under torchrun)."""
        bad = not bool(torch.isfinite(loss.detach()))
        if self.world_size > 1:
            bad = any_true(bad, loss.device)
        if bad:
            raise self._diverged(f"the training loss is {float(loss.detach()):g} at step {step + 1}/{steps}", epoch + 1)

    def _check_resumable(self, state: Mapping[str, Any], path: Path, steps: int) -> None:
        old_cfg = TrainConfig.from_dict(state["train_config"])
        diff = [] if old_cfg.result_dict() == self.config.result_dict() else \
            config_diff(old_cfg.result_dict(), self.config.result_dict())
        if diff:
            raise ParameterError(f"{str(path)!r} was written with another config ({'; '.join(diff[:6])}). Pass "
                                 "resume=False (--no-resume) to start this fold over, or write to another folder.")
        if int(state.get("world_size", 1)) != self.world_size:
            raise ParameterError(f"{str(path)!r} was trained by {state.get('world_size', 1)} process(es), now "
                                 f"{self.world_size}. Resume with the same number of processes (torchrun "
                                 "--nproc_per_node), or pass resume=False (--no-resume) to start this fold over.")
        if int(state.get("steps_per_epoch", steps)) != steps:
            raise ParameterError(f"{str(path)!r} was trained with {state['steps_per_epoch']} batches per epoch, now "
                                 f"{steps}: the data changed. Pass resume=False (--no-resume) to start over.")

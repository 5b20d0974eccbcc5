"""Configuration as data: one frozen dataclass per stage, and the training options in sections.

Each config validates itself (a :class:`~specimg.exceptions.ParameterError` names the option and the fix),
round-trips through :meth:`to_dict` / :meth:`from_dict` and is written next to every cache and run. A section
of :class:`TrainConfig` is given as its config or as a dict of its options::

    TrainConfig(backbone="resnet18", schedule={"epochs": 3}, optim={"optimizer": "adamw", "lr": 1e-3})
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Literal, Mapping, Optional, Tuple, Union

from ._validation import (ConfigBase, check_choice, check_float, check_fraction, check_int, check_positive,
                          check_probability, config_section, fail, unknown_options_message)
from .audio import AudioConfig, SegmentConfig
from .exceptions import ParameterError
from .spectrogram import (CACHE_FORMAT_VERSION, RenderConfig, SpectrogramConfig, default_hop_length, default_n_fft,
                          mel_bands_that_fit, ms_to_samples)

__all__ = [
    "AudioConfig",
    "SegmentConfig",
    "SpectrogramConfig",
    "RenderConfig",
    "TrainConfig",
    "OptimConfig",
    "ScheduleConfig",
    "AugmentConfig",
    "TaskConfig",
    "RuntimeConfig",
    "ms_to_samples",
    "default_n_fft",
    "default_hop_length",
    "mel_bands_that_fit",
    "CACHE_FORMAT_VERSION",
]


def _max_epochs() -> Optional[int]:
    """The ``SPECIMG_MAX_EPOCHS`` cap on :attr:`ScheduleConfig.epochs`, or None when unset."""
    text = os.environ.get("SPECIMG_MAX_EPOCHS", "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ParameterError(f"The SPECIMG_MAX_EPOCHS environment variable must be an int >= 1 (the most epochs "
                             f"any TrainConfig trains). Got {text!r}. Unset it to train the configured epochs.")
    return int(text)


# --------------------------------------------------------------------------- the sections
@dataclass(frozen=True)
class OptimConfig(ConfigBase):
    """How the weights are updated.

    Parameters
    ----------
    optimizer : {'sgd', 'adamw'}
        SGD with (non-Nesterov) momentum, or AdamW.
    lr : float
        Peak learning rate (reached at the end of the warm-up).
    momentum : float
        SGD momentum (ignored by AdamW).
    weight_decay : float
        Weight decay (not applied to biases and normalisation weights).
    batch_size : int
        Windows per training batch (per optimizer step; split over the processes under torchrun).
    grad_clip : float or None
        Clip the global gradient norm to this value; ``None`` disables it.
    """

    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 32
    grad_clip: Optional[float] = None

    def __post_init__(self) -> None:
        o = "TrainConfig.optim"
        check_choice(self.optimizer, "optimizer", ("sgd", "adamw"), owner=o)
        check_positive(self.lr, "lr", owner=o)
        check_fraction(self.momentum, "momentum", owner=o)
        check_float(self.weight_decay, "weight_decay", owner=o, low=0.0)
        check_int(self.batch_size, "batch_size", owner=o, low=1)
        check_positive(self.grad_clip, "grad_clip", owner=o, allow_none=True)


@dataclass(frozen=True)
class ScheduleConfig(ConfigBase):
    """How long a fold trains, how its learning rate moves, and which epoch it keeps.

    Parameters
    ----------
    epochs : int
        Maximum number of epochs per fold. The ``SPECIMG_MAX_EPOCHS``
        environment variable, when set, caps it (and ``warmup_epochs``):
        smoke runs, such as the documentation's commands in the test suite.
    warmup_epochs : float
        Linear warm-up length in epochs, stepped per batch; ``0`` disables it.
    lr_schedule : {'cosine', 'step'}
        After the warm-up: a cosine decay to 0 over the remaining steps, or a
        step decay multiplying the rate by ``step_gamma`` every
        ``step_size`` epochs.
    step_size : int or None
        Epochs between two decays of the step schedule; ``None`` is a third
        of ``epochs`` (at least 1).
    step_gamma : float
        Decay factor of the step schedule.
    patience : int or None
        Early stopping: stop a fold after this many epochs without a better
        validation metric; ``None`` disables it.
    select_epoch : {'best', 'last', 'inner'}
        Which epoch's weights each fold keeps: they predict the held-out
        fold (the out-of-fold tables that the scores and the stackers read)
        and are the fold's model for prediction. ``'best'`` is the epoch
        that scores best on the held-out fold itself, so the out-of-fold
        figures are optimistic (that fold chose it); ``'last'`` the last
        epoch (validation still logged, nothing chosen); ``'inner'`` the best
        epoch on an inner split of the training folds (one group-wise fold of
        the fold's training files is held back to choose it, and the model
        trains on the rest; the held-out fold is only predicted).
    validate_last : int or None
        Validate only the last this many epochs and keep the best of them
        (``patience`` counts validated epochs only); ``None`` validates every
        epoch. ``1`` keeps the last epoch, chosen without looking at the
        validation fold, and saves the time of the other validation passes.
    ema : float or None
        Keep an exponential moving average of the weights (timm
        ``ModelEmaV3``, buffers included) with this decay, warmed up as
        ``min(ema, 1 - (1 + step) ** -0.75)`` so that short runs average
        over fewer steps; validation, ``best.pt`` and the model that ``fit``
        returns use the averaged weights. ``None`` disables it; ``0.998`` is
        about the last 500 steps.
    """

    epochs: int = 10
    warmup_epochs: float = 1.0
    lr_schedule: Literal["cosine", "step"] = "cosine"
    step_size: Optional[int] = None
    step_gamma: float = 0.1
    patience: Optional[int] = None
    select_epoch: Literal["best", "last", "inner"] = "best"
    validate_last: Optional[int] = None
    ema: Optional[float] = None

    def __post_init__(self) -> None:
        o = "TrainConfig.schedule"
        check_int(self.epochs, "epochs", owner=o, low=1)
        cap = _max_epochs()
        if cap is not None and self.epochs > cap:  # SPECIMG_MAX_EPOCHS: smoke runs (the docs' commands in CI)
            object.__setattr__(self, "epochs", cap)
            object.__setattr__(self, "warmup_epochs", min(self.warmup_epochs, cap))
        check_float(self.warmup_epochs, "warmup_epochs", owner=o, low=0.0, high=self.epochs,
                    fix=f"The warm-up must fit in the {self.epochs} epoch(s); lower warmup_epochs or raise epochs.")
        check_choice(self.lr_schedule, "lr_schedule", ("cosine", "step"), owner=o)
        check_int(self.step_size, "step_size", owner=o, low=1, allow_none=True)
        check_probability(self.step_gamma, "step_gamma", owner=o)
        check_int(self.patience, "patience", owner=o, low=1, allow_none=True,
                  fix="Use None to turn early stopping off.")
        check_choice(self.select_epoch, "select_epoch", ("best", "last", "inner"), owner=o)
        if self.select_epoch == "last" and self.patience is not None:
            fail(o, "patience", "None when select_epoch='last' (early stopping needs an epoch choice)",
                 self.patience, "Use select_epoch='inner' to stop early on an inner split, or drop patience.")
        check_int(self.validate_last, "validate_last", owner=o, low=1, allow_none=True,
                  fix="Use None to validate every epoch, 1 for the last epoch only.")
        check_float(self.ema, "ema", owner=o, low=0.0, high=1.0, include_high=False, allow_none=True,
                    fix="It is the decay of the weight average, e.g. 0.998; None turns it off.")


@dataclass(frozen=True)
class AugmentConfig(ConfigBase):
    """Training-time augmentation of the images (and of their targets, with mixup).

    Parameters
    ----------
    hflip : float
        Probability of a horizontal (time) flip of a training image.
    time_mask, freq_mask : float
        SpecAugment-style masking: the largest width of one full-height
        (time) or full-width (frequency) stripe, as a fraction of the image
        width or height; ``0`` disables it. Stripes are set to 0 (silence).
    n_masks : int
        Up to this many stripes of each kind are drawn per image (when the
        masking fires, with probability 0.5).
    freq_stretch, time_stretch : float
        Random rescaling of the image along frequency / time by up to this
        fraction (e.g. ``0.15`` draws a factor in [0.85, 1.15]), anchored at
        the lowest frequency: an image-space stand-in for vocal-tract-length
        and tempo perturbation, which helps models generalise to unseen
        speakers. ``0`` disables it.
    mixup : float
        Mixup Beta(alpha, alpha) parameter applied to training batches;
        ``0`` disables mixup (the targets of a mixed batch: ``TaskConfig.mixup_targets``).
    """

    hflip: float = 0.5
    time_mask: float = 0.0
    freq_mask: float = 0.0
    n_masks: int = 2
    freq_stretch: float = 0.0
    time_stretch: float = 0.0
    mixup: float = 0.0

    def __post_init__(self) -> None:
        o = "TrainConfig.augment"
        check_probability(self.hflip, "hflip", owner=o)
        check_fraction(self.time_mask, "time_mask", owner=o, fix="It is the largest stripe width as a fraction of "
                       "the image width, e.g. 0.1.")
        check_fraction(self.freq_mask, "freq_mask", owner=o, fix="It is the largest stripe height as a fraction of "
                       "the image height, e.g. 0.1.")
        check_int(self.n_masks, "n_masks", owner=o, low=1)
        check_fraction(self.freq_stretch, "freq_stretch", owner=o, high=0.5)
        check_fraction(self.time_stretch, "time_stretch", owner=o, high=0.5)
        check_float(self.mixup, "mixup", owner=o, low=0.0, fix="It is the Beta(alpha, alpha) parameter; 0 turns mixup "
                    "off, 0.2-0.4 is usual.")


#: The two tasks a run can be.
TASK_KINDS = ("single-label", "multi-label")
#: ``TaskConfig`` options -> the value each task gives them when they are left at None; an option a task does
#: not list does not apply to it (given anyway, it is an error that names it).
TASK_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "single-label": {"metric": "accuracy", "class_weights": "inverse", "label_smoothing": 0.0,
                     "loss": "cross_entropy", "pooling": "mean"},
    "multi-label": {"metric": "macro_ap", "loss": "bce", "focal_gamma": 2.0, "pos_weight": "none", "pooling": "max",
                    "mixup_targets": "union", "event_min_seconds": 0.25, "event_min_fraction": 0.5,
                    "negative_ratio": None},
}
#: The values each task accepts for its options that are choices.
TASK_CHOICES: Dict[str, Dict[str, Tuple[str, ...]]] = {
    "single-label": {"metric": ("accuracy", "uar"), "loss": ("cross_entropy",), "pooling": ("mean", "max")},
    "multi-label": {"metric": ("macro_ap", "macro_roc_auc"), "loss": ("bce", "focal", "asymmetric"),
                    "pooling": ("max", "mean")},
}


@dataclass(frozen=True)
class TaskConfig(ConfigBase):
    """What a run learns: one label per file (single-label) or a set of tags per file or window (multi-label).

    ``kind='auto'`` decides from the input (multi-label when it holds tag sets: a ``labels`` column,
    multi-hot class columns or an annotation table, see :func:`~specimg.audio.read_table`); the run stores
    the task it resolved, with every option below filled in (``config.json``). An option left at ``None``
    takes its task's default; an option that does not apply to the task is refused by name. The task object
    that acts on these options is :mod:`specimg.tasks`.

    Parameters
    ----------
    kind : {'auto', 'single-label', 'multi-label'}
        ``'multi-label'`` also trains a one-label-per-file table with one sigmoid per class.
    metric : str or None
        What picks the best epoch, on the validation fold's files (windows pooled per file, with ``tta``):
        single-label ``'accuracy'`` (default) or ``'uar'`` (unweighted average recall); multi-label
        ``'macro_ap'`` (macro average precision, default) or ``'macro_roc_auc'``, over the classes present
        in the fold, on files for tag tables and on windows for annotated recordings. Ties go to the epoch
        with the lower validation loss.
    class_weights : {'inverse', 'none'} or None
        Single-label: ``'inverse'`` (default) weights the cross-entropy of each class by
        ``n_windows / (n_classes * n_windows_of_class)`` over the fold's training windows; ``'none'`` is the
        plain loss.
    label_smoothing : float or None
        Single-label: label smoothing of the cross-entropy, in [0, 1) (default 0).
    loss : str or None
        Single-label ``'cross_entropy'``. Multi-label: ``'bce'`` (binary cross-entropy with logits, default),
        ``'focal'`` (each term scaled by ``(1 - p_t) ** focal_gamma``, Lin et al. 2017) or ``'asymmetric'``
        (Ridnik et al. 2021: negatives focused by ``focal_gamma`` with their probabilities shifted down by
        0.05, positives plain), for many negatives per positive.
    focal_gamma : float or None
        Multi-label: the focusing exponent of the focal and asymmetric losses (default 2; Ridnik et al. use
        4 for the asymmetric loss).
    pos_weight : {'none', 'balanced'} or None
        Multi-label: weight of the positive term of each class's loss: ``'balanced'`` is
        ``n_negative / n_positive`` over the fold's training windows (clipped to [1, 100]), ``'none'``
        (default) is 1.
    pooling : {'mean', 'max'} or None
        How a file's window probabilities pool into its scores: single-label ``'mean'`` (default, then
        renormalised), multi-label ``'max'`` (default: a tag present anywhere in the file) or ``'mean'``, per
        class and without renormalisation.
    mixup_targets : {'union', 'mix'} or None
        Multi-label mixup targets: ``'union'`` (default) gives a mixed image the tags of both images (both
        sounds are in it), ``'mix'`` the ``lam``-weighted mean of their targets. Single-label mixup always
        mixes.
    event_min_seconds : float or None
        Multi-label, annotated recordings: an event labels a window that it overlaps by at least this many
        seconds (default 0.25) ...
    event_min_fraction : float or None
        ... or by at least this fraction of the event's duration (default 0.5: a short call wholly inside a
        window counts); ``0`` uses the seconds rule alone.
    negative_ratio : float or None
        Multi-label: keep at most this many windows without any tag per window with one, in each fold's
        training split (drawn with the seed); ``None`` (default) keeps every negative. Validation keeps all.
    """

    kind: Literal["auto", "single-label", "multi-label"] = "auto"
    metric: Optional[str] = None
    class_weights: Optional[Literal["inverse", "none"]] = None
    label_smoothing: Optional[float] = None
    loss: Optional[str] = None
    focal_gamma: Optional[float] = None
    pos_weight: Optional[Literal["none", "balanced"]] = None
    pooling: Optional[Literal["mean", "max"]] = None
    mixup_targets: Optional[Literal["union", "mix"]] = None
    event_min_seconds: Optional[float] = None
    event_min_fraction: Optional[float] = None
    negative_ratio: Optional[float] = None

    def __post_init__(self) -> None:
        o = "TrainConfig.task"
        check_choice(self.kind, "kind", ("auto", *TASK_KINDS), owner=o)
        check_choice(self.metric, "metric", ("accuracy", "uar", "macro_ap", "macro_roc_auc"), owner=o, allow_none=True)
        check_choice(self.class_weights, "class_weights", ("inverse", "none"), owner=o, allow_none=True)
        check_float(self.label_smoothing, "label_smoothing", owner=o, low=0.0, high=1.0, include_high=False,
                    allow_none=True)
        check_choice(self.loss, "loss", ("cross_entropy", "bce", "focal", "asymmetric"), owner=o, allow_none=True)
        check_float(self.focal_gamma, "focal_gamma", owner=o, low=0.0, high=10.0, allow_none=True)
        check_choice(self.pos_weight, "pos_weight", ("none", "balanced"), owner=o, allow_none=True)
        check_choice(self.pooling, "pooling", ("mean", "max"), owner=o, allow_none=True)
        check_choice(self.mixup_targets, "mixup_targets", ("union", "mix"), owner=o, allow_none=True)
        check_float(self.event_min_seconds, "event_min_seconds", owner=o, low=0.0, allow_none=True,
                    fix="It is the overlap in seconds that makes an event label a window; 0 counts any overlap.")
        check_float(self.event_min_fraction, "event_min_fraction", owner=o, low=0.0, high=1.0, allow_none=True,
                    fix="It is a fraction of the event's duration; 0 uses event_min_seconds alone.")
        check_positive(self.negative_ratio, "negative_ratio", owner=o, allow_none=True,
                       fix="None keeps every window without a tag.")
        if self.kind != "auto":
            self._check_applies(self.kind)

    def _check_applies(self, kind: str) -> None:
        defaults, choices = TASK_DEFAULTS[kind], TASK_CHOICES[kind]
        for name in (f.name for f in dataclasses.fields(self) if f.name != "kind"):
            value = getattr(self, name)
            if value is None:
                continue
            if name not in defaults:
                other = next(k for k in TASK_KINDS if k != kind)
                raise ParameterError(f"The {name!r} option of TrainConfig.task applies to {other} runs, but this run is "
                                     f"{kind}. Drop it" + (" (the input has one label per file)" if kind ==
                                                           "single-label" else "") + ".")
            if name in choices and value not in choices[name]:
                fail("TrainConfig.task", name, f"one of {', '.join(map(repr, choices[name]))} for a {kind} run",
                     value)

    @property
    def resolved(self) -> bool:
        return self.kind != "auto"

    def resolve(self, kind: str) -> "TaskConfig":
        """This config for a ``kind`` run, every option of that task filled in (its default where None).

        Raises
        ------
        ParameterError
            ``kind`` contradicts an explicit :attr:`kind`, or an option does not apply to ``kind``.

        Examples
        --------
        >>> TaskConfig().resolve("multi-label").pooling
        'max'
        >>> TaskConfig(metric="uar").resolve("single-label").metric
        'uar'
        """
        check_choice(kind, "kind", TASK_KINDS, owner="TaskConfig.resolve")
        if self.kind not in ("auto", kind):
            raise ParameterError(f"TaskConfig(kind={self.kind!r}) was asked for, but the input makes a {kind} run. "
                                 "Drop the kind (task: auto) or give a table of the other kind.")
        self._check_applies(kind)
        filled = {name: (getattr(self, name) if getattr(self, name) is not None else default)
                  for name, default in TASK_DEFAULTS[kind].items()}
        return TaskConfig(kind=kind, **filled)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RuntimeConfig(ConfigBase):
    """Where and how fast a run trains.

    Parameters
    ----------
    device : str
        ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
    num_workers : int or None
        DataLoader worker processes; ``None`` picks 0 on the CPU (the model uses every core) and
        ``min(8, n_cpus - 1)`` on CUDA.
    amp : {'auto', 'bf16', 'fp16', 'off'}
        Mixed precision on CUDA (``'auto'``: bf16 where supported, else fp16). Always off on the CPU.
    channels_last : bool
        Run the model and its batches in the channels-last (NHWC) memory format, on CUDA and on the CPU
        alike: on the CPU ``tf_efficientnet_lite0`` trains faster with it (depthwise convolutions; see
        ``benchmarks/cpu_step.py``). Set it to ``False`` for a custom module that calls ``.view()`` on its
        feature maps.
    """

    device: str = "auto"
    num_workers: Optional[int] = None
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True

    #: Options that change how fast a run goes but not its result: a run may be resumed after changing them.
    NOT_IN_RESULT = ("device", "num_workers")

    def __post_init__(self) -> None:
        o = "TrainConfig.runtime"
        dev = self.device
        if not isinstance(dev, str) or not (dev in ("auto", "cpu", "cuda") or
                                            (dev.startswith("cuda:") and dev[5:].isdigit())):
            fail(o, "device", "'auto', 'cpu', 'cuda' or 'cuda:N'", dev)
        check_int(self.num_workers, "num_workers", owner=o, low=0, allow_none=True)
        check_choice(self.amp, "amp", ("auto", "bf16", "fp16", "off"), owner=o)
        if not isinstance(self.channels_last, bool):
            fail(o, "channels_last", "a bool", self.channels_last)


# --------------------------------------------------------------------------- the training config
#: TrainConfig's sections: attribute -> config class.
SECTIONS: Dict[str, type] = {"optim": OptimConfig, "schedule": ScheduleConfig, "augment": AugmentConfig,
                             "task": TaskConfig, "runtime": RuntimeConfig}


@dataclass(frozen=True)
class TrainConfig(ConfigBase):
    """How a backbone is fine-tuned on spectrogram images (one run of k folds).

    The defaults are the voice-pathology recipe: SGD (lr 0.01, momentum 0.9, weight decay 1e-4), one epoch of
    linear warm-up then a cosine decay, cross-entropy weighted by the inverse class frequency, horizontal flip
    with p=0.5 and the same flip as test-time augmentation. The options of the model, the folds and the
    input are fields of their own; the rest is in five sections (each a config or a dict of its options):
    :class:`OptimConfig` ``optim``, :class:`ScheduleConfig` ``schedule``, :class:`AugmentConfig`
    ``augment``, :class:`TaskConfig` ``task`` and :class:`RuntimeConfig` ``runtime``.

    Parameters
    ----------
    backbone : str
        A timm model name or a name registered with :func:`specimg.models.register_backbone`.
    weights : str
        Where the pretrained weights come from: ``'auto'``, ``'hub'``, ``'offline'``, ``'none'`` (random
        init) or the path of a checkpoint (see :func:`specimg.models.create_backbone`).
    backbone_kwargs : dict
        Extra keyword arguments for the model constructor (timm kwargs such as ``drop_path_rate``); must be
        JSON-serialisable.
    drop_rate : float or None
        Dropout before the classifier; ``None`` keeps the backbone's default.
    freeze : tuple of str, str or None
        Modules of the backbone kept at their pretrained weights, named as in ``model.named_modules()`` and
        comma-separated on the command line, e.g. ``("conv_stem", "bn1", "blocks.0")``. Their BatchNorm
        statistics stay fixed as well, and the backward pass stops before them. ``None`` trains every layer.
    image_size : int, (int, int) or None
        (height, width) the backbone sees. ``None`` uses the cached images as they are (the render stage
        already chose their size), except for backbones that need a fixed input size (timm
        ``fixed_input_size``, e.g. ViTs), which get their default size. Images of another size are resized on
        the fly.
    n_splits : int
        Number of cross-validation folds.
    group_column : str or None
        Column of the input table whose values must never be split across folds (a speaker, a patient);
        ``None`` groups by source file only.
    seed : int
        Seeds the folds, the initialisation, the shuffling and the augmentation; runs on the CPU are
        reproducible bit for bit.
    tta : {'flip', 'none'}
        Test-time augmentation of the validation and out-of-fold predictions: ``'flip'`` averages the
        probabilities of a window and of its horizontal flip.
    images : {'cached', 'on-the-fly'}
        How audio becomes images. ``'cached'``: rendered once on the CPU into an image cache
        (:func:`~specimg.spectrogram.render_dataset`) that every epoch reads. ``'on-the-fly'``: no image
        files; each batch of waveform windows is turned into images on the training device by
        :class:`~specimg.spectrogram.SpectrogramFrontend` (the same images to +-1 pixel level), then augmented
        there. On a machine without a GPU the same front end runs on the CPU.
    optim, schedule, augment, task, runtime
        The sections (see each class).

    Examples
    --------
    >>> cfg = TrainConfig(backbone="resnet18", schedule={"epochs": 3}, optim={"optimizer": "adamw", "lr": 1e-3})
    >>> cfg.schedule.epochs, cfg.optim.lr
    (3, 0.001)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    backbone: str = "tf_efficientnet_lite0"
    weights: str = "auto"
    backbone_kwargs: Mapping[str, Any] = field(default_factory=dict)
    drop_rate: Optional[float] = None
    freeze: Union[str, Tuple[str, ...], None] = None
    image_size: Optional[Tuple[int, int]] = None
    n_splits: int = 5
    group_column: Optional[str] = None
    seed: int = 0
    tta: Literal["flip", "none"] = "flip"
    images: Literal["cached", "on-the-fly"] = "cached"
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self) -> None:
        o = "TrainConfig"
        for name, cls in SECTIONS.items():
            object.__setattr__(self, name, config_section(getattr(self, name), cls, owner=o, name=name))
        if not isinstance(self.backbone, str) or not self.backbone.strip():
            fail(o, "backbone", "a timm model name or a registered backbone name", self.backbone,
                 "For example backbone='tf_efficientnet_lite0' or 'resnet18'.")
        if not isinstance(self.weights, str) or not self.weights.strip():
            fail(o, "weights", "'auto', 'hub', 'offline', 'none' or the path of a checkpoint", self.weights)
        if not isinstance(self.backbone_kwargs, Mapping):
            fail(o, "backbone_kwargs", "a dict of keyword arguments for the model", self.backbone_kwargs)
        try:
            kwargs = json.loads(json.dumps(dict(self.backbone_kwargs), sort_keys=True))
        except (TypeError, ValueError):
            fail(o, "backbone_kwargs", "JSON-serialisable (numbers, strings, lists, dicts)", self.backbone_kwargs,
                 "Register a backbone factory with register_backbone for anything richer.")
        object.__setattr__(self, "backbone_kwargs", kwargs)
        check_float(self.drop_rate, "drop_rate", owner=o, low=0.0, high=1.0, include_high=False, allow_none=True)
        if self.freeze is not None:
            names = self.freeze.split(",") if isinstance(self.freeze, str) else self.freeze
            if (not isinstance(names, (list, tuple)) or not names
                    or not all(isinstance(n, str) and n.strip() for n in names)):
                fail(o, "freeze", "None, or module names such as ('conv_stem', 'bn1', 'blocks.0')", self.freeze)
            object.__setattr__(self, "freeze", tuple(n.strip() for n in names))
        object.__setattr__(self, "image_size", _image_size(self.image_size, o))
        check_int(self.n_splits, "n_splits", owner=o, low=2, fix="Cross-validation needs at least 2 folds.")
        if self.group_column is not None and (not isinstance(self.group_column, str) or not self.group_column):
            fail(o, "group_column", "None or the name of a column of the input table", self.group_column)
        check_int(self.seed, "seed", owner=o, low=0)
        check_choice(self.tta, "tta", ("flip", "none"), owner=o)
        check_choice(self.images, "images", ("cached", "on-the-fly"), owner=o)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """A TrainConfig from :meth:`to_dict`'s nested dict (or the flat ``train`` of a run written by specimg
        0.1, whose options are moved into their sections)."""
        if not isinstance(data, Mapping):
            fail("TrainConfig", "data", "a dict of options", data)
        data = dict(data)
        if any(k in _FLAT for k in data) and not any(isinstance(data.get(s), Mapping) for s in SECTIONS):
            data = _from_flat(data)
        top = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(top))
        if unknown:
            raise ParameterError(unknown_options_message("TrainConfig", unknown, top, elsewhere=OPTION_SECTION))
        for name, section in SECTIONS.items():
            if isinstance(data.get(name), Mapping):
                data[name] = section.from_dict(dict(data[name]))
        return cls(**data)

    def result_dict(self) -> dict:
        """:meth:`to_dict` less what does not change the result (:attr:`RuntimeConfig.NOT_IN_RESULT`) and the
        options left at their default.

        Leaving the defaults out keeps a run's fingerprint when a later release adds an option (at its
        default, the result is unchanged).
        """
        d, defaults = self.to_dict(), TrainConfig().to_dict()
        for name in RuntimeConfig.NOT_IN_RESULT:
            d["runtime"].pop(name, None)
        out: Dict[str, Any] = {}
        for k, v in d.items():
            if k in SECTIONS:
                changed = {n: x for n, x in v.items() if defaults[k].get(n) != x}
                if changed:
                    out[k] = changed
            elif defaults[k] != v:
                out[k] = v
        return out

    def with_options(self, **options: Any) -> "TrainConfig":
        """A copy with options changed by their names, whatever their section (``epochs=3, lr=1e-3``).

        The one place that maps an option to its section (:data:`OPTION_SECTION`): the command line's flags,
        the presets' overrides and the benchmarks' variants go through it.

        Examples
        --------
        >>> TrainConfig().with_options(epochs=3, lr=1e-3, backbone="resnet18").schedule.epochs
        3
        """
        top: Dict[str, Any] = {}
        sections: Dict[str, Dict[str, Any]] = {}
        for name, value in options.items():
            where = OPTION_SECTION.get(name)
            if where is None:
                if name not in _TOP:
                    raise ParameterError(unknown_options_message("TrainConfig.with_options", [name],
                                                                 [*_TOP, *OPTION_SECTION]))
                top[name] = value
            else:
                sections.setdefault(where, {})[OPTION_FIELD.get(name, name)] = value
        for where, changes in sections.items():
            top[where] = getattr(self, where).replace(**changes)
        return self.replace(**top)


def _image_size(size: Any, owner: str) -> Optional[Tuple[int, int]]:
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    try:
        size = tuple(size)
    except TypeError:
        size = (None,)
    if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 8 for s in size):
        fail(owner, "image_size", "None, an int or (height, width) of ints >= 8", size)
    return size  # type: ignore[return-value]


#: The top-level options of TrainConfig (the model, the folds, the input).
_TOP = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in SECTIONS)
#: Option name -> the section that holds it (flags and overrides name options without their section). The
#: task's ``kind`` is the option ``task``.
OPTION_SECTION: Dict[str, str] = {("task" if (s == "task" and f.name == "kind") else f.name): s
                                  for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
#: Option name -> its field in its section, where the two differ.
OPTION_FIELD: Dict[str, str] = {"task": "kind"}

#: The flat options of specimg 0.1 (run folders written before the sections) -> (section, field).
_FLAT = {**{name: (sec, OPTION_FIELD.get(name, name)) for name, sec in OPTION_SECTION.items() if name != "task"},
         "schedule": ("schedule", "lr_schedule"), "metric": ("task", "metric"),
         "multi_label_loss": ("task", "loss"), "multi_label_pooling": ("task", "pooling"),
         "multi_label_metric": ("task", "metric")}


def _from_flat(data: Dict[str, Any]) -> Dict[str, Any]:
    """The 0.1 flat ``train`` dict in sections: task options kept only where they apply to the run's task."""
    data = dict(data)
    legacy = data.pop("frontend", None)
    if legacy is not None and "images" not in data:
        data["images"] = {"cpu": "cached", "gpu": "on-the-fly"}.get(legacy, legacy)
    multi = data.pop("multi_label", None)
    kind = "multi-label" if multi else ("single-label" if multi is False else "auto")
    flat = {k: data.pop(k) for k in list(data) if k in _FLAT}
    if kind == "auto":  # the 0.1 fields say nothing more: multi-label runs stored multi_label=True
        kind = "single-label" if "multi_label_metric" in flat else "auto"
    out_sections: Dict[str, Dict[str, Any]] = {s: {} for s in SECTIONS}
    applies = TASK_DEFAULTS.get(kind, {})
    for key, value in flat.items():
        section, name = _FLAT[key]
        if section == "task":
            if kind == "auto" or name not in applies:
                continue
            if name in TASK_CHOICES[kind] and value not in TASK_CHOICES[kind][name]:
                continue  # the other task's option (0.1 stored both metrics, and the multi-label loss)
            if kind == "single-label" and key == "multi_label_pooling":
                continue  # 0.1 pooled single-label windows by their mean, whatever this said
            if name == "event_min_fraction" and value is None:
                value = 0.0
        out_sections[section][name] = value
    out_sections["task"]["kind"] = kind
    data.update({s: v for s, v in out_sections.items()})
    return data

"""The ``specimg train`` subcommand (a thin layer over :func:`train_cv`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .._cli_common import add_render_options, add_table_options, input_table, parse_image_size, render_config_from_args
from .._cli_config import add_config_flags, given_config_flags
from ..config import SECTIONS, RenderConfig, TrainConfig
from ..exceptions import ParameterError

__all__ = ["add_train_parser", "run_train", "build_configs"]


def _render_defaults() -> Dict[str, Any]:
    probe = argparse.ArgumentParser(add_help=False)
    add_render_options(probe)
    return vars(probe.parse_args([]))


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to an ``argparse`` subparsers object.

    The parser's default ``func`` is :func:`run_train`, called with the parsed
    namespace; it returns the exit status.
    """
    p = subparsers.add_parser(
        "train",
        help="cross-validate a backbone on spectrogram images",
        description="Fine-tune a backbone with k-fold cross-validation (folds grouped by file or by a group column) "
                    "and write RUN/fold_i/best.pt, RUN/oof_files.csv, RUN/oof_segments.csv, RUN/metrics.json and "
                    "RUN/config.json. INPUT is a CSV (path,label[,group,...]), a folder with one sub-folder per "
                    "class (both rendered first, with the rendering options below), or an image cache folder "
                    "from `specimg render`. --image-size sets the rendered size of audio input and resizes a "
                    "cache of another size on the fly. Re-running the same command skips finished folds and "
                    "resumes an interrupted one. With --images on-the-fly, audio is decoded once into RUN/audio and "
                    "each batch becomes images on the device (no image is written). Data-parallel on several GPUs or processes: "
                    "`torchrun --nproc_per_node N -m specimg train ...` (rank 0 writes; --batch-size is per "
                    "optimizer step, split over the processes).",
    )
    p.add_argument("input", metavar="INPUT", help="CSV, class-folder tree, or image cache folder")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder to write")
    cv = p.add_argument_group("cross-validation")
    cv.add_argument("--fold", type=int, action="append", metavar="I",
                    help="run only this fold (repeatable); default all")
    cv.add_argument("--no-resume", action="store_true",
                    help="retrain the folds from scratch instead of skipping / continuing them")
    dests = {}
    tr = p.add_argument_group("the model and the folds (TrainConfig; see `specimg.config.TrainConfig`)")
    dests.update(add_config_flags(tr, TrainConfig, skip=(*_NOT_FLAGS, *SECTIONS), rename=_RENAMED,
                                  metavars=_METAVARS, required=("backbone",)))
    for name, cls in SECTIONS.items():
        group = p.add_argument_group(f"{name} (TrainConfig.{name}: {cls.__name__})")
        added = add_config_flags(group, cls, rename=_RENAMED, metavars=_METAVARS, choices=_CHOICES.get(name, {}))
        dests.update({d: OPTION_FIELD_OF.get((name, f), f) for d, f in added.items()})
    p.set_defaults(config_dests=dests)
    p.add_argument("--cache", metavar="DIR",
                   help="where to render audio input (default RUN/cache); with --images on-the-fly, where to "
                        "keep the decoded audio (default RUN/audio)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines (the summary is kept)")
    p.add_argument("--no-anchor", action="store_true",
                   help="skip the classical anchor: MFCC statistics + LightGBM fitted on the same folds (seconds), "
                        "printed as 'anchor (MFCC + LightGBM): ...' under the summary and kept in metrics.json")
    add_render_options(p)  # the same options as `specimg render`; they apply to audio input only
    add_table_options(p)
    p.set_defaults(image_size=None)  # None: audio renders at 512; a cache keeps its own size
    p.set_defaults(func=run_train)
    return p


#: TrainConfig fields that are no flag of their own: image_size is --image-size (a render option that also
#: resizes a cache), backbone_kwargs takes Python values
_NOT_FLAGS = ("image_size", "backbone_kwargs")
#: TrainConfig field -> flag, where the flag reads better than the field
_RENAMED = {"n_splits": "folds", "num_workers": "workers", "kind": "task"}
#: (section, field) -> the option name :meth:`TrainConfig.with_options` knows it by, where they differ
OPTION_FIELD_OF = {("task", "kind"): "task"}
#: The values of the task options, which their annotations leave open (each task accepts some of them)
_CHOICES = {"task": {"metric": ("accuracy", "uar", "macro_ap", "macro_roc_auc"),
                     "loss": ("cross_entropy", "bce", "focal", "asymmetric")}}
_METAVARS = {"backbone": "NAME", "weights": "SOURCE", "n_splits": "K", "group_column": "COL", "device": "DEV",
             "num_workers": "N", "hflip": "P", "time_mask": "FRAC", "freq_mask": "FRAC", "freq_stretch": "FRAC",
             "time_stretch": "FRAC", "mixup": "ALPHA", "validate_last": "N", "ema": "DECAY", "patience": "N",
             "freeze": "NAMES"}


def build_configs(args: argparse.Namespace, *, audio_input: bool) -> Tuple[TrainConfig, Optional[RenderConfig]]:
    """The TrainConfig and (for audio input) RenderConfig of parsed ``specimg train`` arguments."""
    train_kw = given_config_flags(args, args.config_dests)
    defaults = _render_defaults()
    if not audio_input:
        changed = [f"--{k.replace('_', '-')}" for k, v in defaults.items()
                   if k != "image_size" and getattr(args, k, v) != v]
        if args.cache is not None:
            changed.append("--cache")
        if changed:
            raise ParameterError(f"{' '.join(changed)} only apply to audio input, but {args.input!r} is an image "
                                 "cache whose images are already rendered. Drop these options, or give the audio "
                                 "CSV / folder as INPUT.")
        if args.image_size is not None:  # resize the cached images on the fly
            train_kw["image_size"] = parse_image_size(args.image_size)
        return TrainConfig().with_options(**train_kw), None
    if args.image_size is None:
        args = argparse.Namespace(**{**vars(args), "image_size": defaults["image_size"]})
    return TrainConfig().with_options(**train_kw), render_config_from_args(args)


def run_train(args: argparse.Namespace) -> int:
    """Run ``specimg train`` from parsed arguments; returns the exit status (0)."""
    from ..spectrogram import ImageCache
    from ._cv import train_cv
    from ._distributed import is_main_process

    audio_input = not ImageCache.is_complete(Path(args.input))
    config, render = build_configs(args, audio_input=audio_input)
    folds: Optional[List[int]] = args.fold
    quiet = bool(getattr(args, "quiet", False))
    result = train_cv(input_table(args, args.input), args.out, config, render_config=render, cache_dir=args.cache,
                      folds=folds, resume=not args.no_resume, verbose=not quiet, anchor=not args.no_anchor)
    if is_main_process():
        print(result.summary())
    return 0

"""The ``specimg train`` subcommand (a thin layer over :func:`train_cv`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .._cli_common import add_render_options, parse_image_size, render_config_from_args
from ..config import RenderConfig, TrainConfig
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
                    "resumes an interrupted one. With --frontend gpu, audio is decoded once into RUN/audio and each "
                    "batch becomes images on the device (no image is written). Data-parallel on several GPUs or processes: "
                    "`torchrun --nproc_per_node N -m specimg train ...` (rank 0 writes; --batch-size is per "
                    "optimizer step, split over the processes).",
    )
    p.add_argument("input", metavar="INPUT", help="CSV, class-folder tree, or image cache folder")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder to write")
    p.add_argument("--backbone", required=True, metavar="NAME", help="timm model or registered backbone name")
    p.add_argument("--weights", metavar="SOURCE", help="auto | hub | offline | none | PATH (default auto)")
    cv = p.add_argument_group("cross-validation")
    cv.add_argument("--folds", type=int, metavar="K", help="number of folds (default 5)")
    cv.add_argument("--fold", type=int, action="append", metavar="I",
                    help="run only this fold (repeatable); default all")
    cv.add_argument("--group-column", metavar="COL", help="keep each value of this column in one fold (speaker)")
    cv.add_argument("--no-resume", action="store_true",
                    help="retrain the folds from scratch instead of skipping / continuing them")
    tr = p.add_argument_group("training")
    tr.add_argument("--epochs", type=int)
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--lr", type=float, help="peak learning rate (default 0.01)")
    tr.add_argument("--optimizer", choices=("sgd", "adamw"))
    tr.add_argument("--warmup-epochs", type=float)
    tr.add_argument("--schedule", choices=("cosine", "step"))
    tr.add_argument("--class-weights", choices=("inverse", "none"))
    tr.add_argument("--label-smoothing", type=float)
    tr.add_argument("--metric", choices=("accuracy", "uar"), help="file-level metric picking the best epoch")
    tr.add_argument("--patience", type=int, help="early stopping patience in epochs (default off)")
    tr.add_argument("--drop-rate", type=float)
    tr.add_argument("--hflip", type=float, metavar="P", help="horizontal flip probability (default 0.5)")
    tr.add_argument("--time-mask", type=float, metavar="FRAC", help="max time-mask width, fraction of the width")
    tr.add_argument("--freq-mask", type=float, metavar="FRAC", help="max frequency-mask height, fraction")
    tr.add_argument("--freq-stretch", type=float, metavar="FRAC",
                    help="random frequency rescaling by up to FRAC (VTLP-like; e.g. 0.15)")
    tr.add_argument("--time-stretch", type=float, metavar="FRAC", help="random time rescaling by up to FRAC")
    tr.add_argument("--mixup", type=float, metavar="ALPHA", help="mixup Beta(alpha, alpha); 0 = off")
    tr.add_argument("--tta", choices=("flip", "none"), help="test-time augmentation of the OOF predictions")
    tr.add_argument("--frontend", choices=("cpu", "gpu"),
                    help="cpu (default): render audio into an image cache first; gpu: no image files, each batch of "
                         "waveforms becomes images on the training device (the CPU when there is no GPU)")
    tr.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"))
    tr.add_argument("--device", metavar="DEV", help="auto | cpu | cuda | cuda:N")
    tr.add_argument("--seed", type=int)
    tr.add_argument("--workers", type=int, metavar="N", help="data-loader / render worker processes")
    p.add_argument("--cache", metavar="DIR",
                   help="where to render audio input (default RUN/cache); with --frontend gpu, where to keep the "
                        "decoded audio (default RUN/audio)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines (the summary is kept)")
    add_render_options(p)  # the same options as `specimg render`; they apply to audio input only
    p.set_defaults(image_size=None)  # None: audio renders at 512; a cache keeps its own size
    p.set_defaults(func=run_train)
    return p


def _given(args: argparse.Namespace, mapping: Dict[str, str]) -> Dict[str, Any]:
    return {field: getattr(args, flag) for flag, field in mapping.items() if getattr(args, flag, None) is not None}


def build_configs(args: argparse.Namespace, *, audio_input: bool) -> Tuple[TrainConfig, Optional[RenderConfig]]:
    """The TrainConfig and (for audio input) RenderConfig of parsed ``specimg train`` arguments."""
    train_kw = _given(args, {
        "backbone": "backbone", "weights": "weights", "folds": "n_splits", "group_column": "group_column",
        "epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "optimizer": "optimizer",
        "warmup_epochs": "warmup_epochs", "schedule": "schedule", "class_weights": "class_weights",
        "label_smoothing": "label_smoothing", "metric": "metric", "patience": "patience", "drop_rate": "drop_rate",
        "hflip": "hflip", "time_mask": "time_mask", "freq_mask": "freq_mask", "freq_stretch": "freq_stretch",
        "time_stretch": "time_stretch", "mixup": "mixup", "tta": "tta", "frontend": "frontend",
        "amp": "amp", "device": "device", "seed": "seed", "workers": "num_workers",
    })
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
        return TrainConfig(**train_kw), None
    if args.image_size is None:
        args = argparse.Namespace(**{**vars(args), "image_size": defaults["image_size"]})
    return TrainConfig(**train_kw), render_config_from_args(args)


def run_train(args: argparse.Namespace) -> int:
    """Run ``specimg train`` from parsed arguments; returns the exit status (0)."""
    from ._cv import _is_cache_dir, train_cv

    audio_input = not _is_cache_dir(Path(args.input))
    config, render = build_configs(args, audio_input=audio_input)
    folds: Optional[List[int]] = args.fold
    quiet = bool(getattr(args, "quiet", False))
    result = train_cv(args.input, args.out, config, render_config=render, cache_dir=args.cache, folds=folds,
                      resume=not args.no_resume, verbose=not quiet)
    if quiet:
        from ._distributed import is_main_process

        if is_main_process():
            print(result.summary())
    return 0

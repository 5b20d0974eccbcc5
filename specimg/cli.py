"""The ``specimg`` command: a thin layer over the library.

Subcommands: ``render`` (audio -> cached images), ``train``, ``predict``,
``evaluate``, ``export``, ``stack``, ``pseudo-label`` and ``experiment``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from . import __version__
from ._cli_common import add_render_options, render_config_from_args
from .exceptions import SpecimgError

__all__ = ["main", "build_parser"]


def _cmd_render(args: argparse.Namespace) -> int:
    from .spectrogram import render_dataset

    config = render_config_from_args(args)
    cache = render_dataset(args.input, args.out, config, workers=args.workers, png=args.png, strict=args.strict,
                           overwrite=args.overwrite, progress=not args.quiet)
    n_err = len(cache.errors)
    print(f"rendered {len(cache.files)} file(s) into {len(cache.images)} image(s) of "
          f"{'x'.join(map(str, cache.images.shape[1:]))} in {cache.root}"
          + (f"; {n_err} file(s) failed, see {cache.root / 'errors.csv'}" if n_err else ""))
    if cache.classes:
        counts = cache.files["label"].value_counts()
        print("classes: " + ", ".join(f"{c} ({int(counts.get(c, 0))} files)" for c in cache.classes))
    return 1 if n_err and args.strict else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="specimg", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"specimg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("render", help="render audio into cached spectrogram images",
                       description="Render audio (a CSV path,label[,group] or a class-folder tree) into an image "
                                   "cache that training reads. Re-running the same command resumes.")
    p.add_argument("input", help="CSV (path,label[,group]; paths relative to the CSV) or a folder of audio")
    p.add_argument("--out", required=True, help="cache folder")
    add_render_options(p)
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--png", action="store_true", help="also write PNG images under OUT/png/")
    p.add_argument("--strict", action="store_true", help="stop at the first bad file")
    p.add_argument("--overwrite", action="store_true", help="replace a cache rendered with another config")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_render)

    for module, hook in _HOOKS:
        getattr(importlib.import_module(module), hook)(sub)
    return parser


#: (module, function adding its subparsers): each stage owns its command-line options.
_HOOKS = [
    ("specimg.training._cli", "add_train_parser"),
    ("specimg.predict._cli", "add_predict_parsers"),
    ("specimg.stacking._cli", "add_stack_parsers"),
    ("specimg.experiment._cli", "add_experiment_parser"),
]


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SpecimgError as exc:
        print(f"specimg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"specimg {args.command}: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

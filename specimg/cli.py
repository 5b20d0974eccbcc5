"""The ``specimg`` command: a thin layer over the library."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any, Dict, List, Optional, Tuple

from . import __version__
from ._cli_common import add_render_options, add_table_options, input_table, render_config_from_args
from .exceptions import SpecimgError

__all__ = ["main", "build_parser"]


def _cmd_render(args: argparse.Namespace) -> int:
    from .spectrogram import render_dataset

    config = render_config_from_args(args)
    cache = render_dataset(input_table(args, args.input), args.out, config, workers=args.workers, png=args.png,
                           strict=args.strict, overwrite=args.overwrite, progress=not args.quiet)
    n_err, n_reused = len(cache.errors), cache.reused_files
    n_new = len(cache.files) - n_reused
    images = f"{len(cache.images)} image(s) of {'x'.join(map(str, cache.images.shape[1:]))}"
    if not n_new and not n_err:
        line = f"nothing to render: {cache.root} already holds these {n_reused} file(s), {images}"
    else:
        reused = f" and reused {n_reused} from the cache" if n_reused else ""
        line = f"rendered {n_new} file(s){reused}: {images} in {cache.root}"
    if n_err:
        line += f"; {n_err} file(s) failed, see {cache.root / 'errors.csv'}"
    print(line)
    if cache.classes:
        counts = cache.files["label"].value_counts()
        print("classes: " + ", ".join(f"{c} ({int(counts.get(c, 0))} files)" for c in cache.classes))
    return 1 if n_err and args.strict else 0


class _LazySubcommands(argparse._SubParsersAction):
    """Subcommands whose parsers are built the first time they are used: a placeholder knows only its one-line
    help (enough for ``specimg --help``); choosing it imports its stage (torch, timm: seconds) and builds the
    real parser (``_HOOKS``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy: Dict[str, Tuple[str, str]] = {}  # command -> (module, hook)

    def add_lazy(self, name: str, help: str, module: str, hook: str) -> None:
        self.add_parser(name, help=help, add_help=False)
        self._lazy[name] = (module, hook)

    def load(self, name: str) -> None:
        """Replace the placeholders of ``name``'s stage by the parsers its hook builds."""
        module, hook = self._lazy[name]
        names = [n for n, v in self._lazy.items() if v == (module, hook)]
        order = [a.dest for a in self._choices_actions]
        for n in names:
            del self._lazy[n], self._name_parser_map[n]
        self._choices_actions[:] = [a for a in self._choices_actions if a.dest not in names]
        getattr(importlib.import_module(module), hook)(self)
        self._choices_actions.sort(key=lambda a: order.index(a.dest) if a.dest in order else len(order))

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        if values and values[0] in self._lazy:
            self.load(values[0])
        super().__call__(parser, namespace, values, option_string)


def build_parser(*, lazy: bool = False) -> argparse.ArgumentParser:
    """The ``specimg`` argument parser.

    Parameters
    ----------
    lazy : bool
        Build each stage's subcommands only when they are chosen (what :func:`main` does, so that
        ``specimg --help`` and ``specimg render`` import no torch); ``False`` (default) builds them all,
        as the generated CLI reference needs.
    """
    parser = argparse.ArgumentParser(prog="specimg", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"specimg {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="also print debug messages (the library's logging at DEBUG level)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", action=_LazySubcommands)
    sub.required = True

    p = sub.add_parser("render", help="render audio into cached spectrogram images",
                       description="Render audio (a CSV path,label[,group] or a class-folder tree) into an image "
                                   "cache that training reads. Re-running the same command resumes.")
    p.add_argument("input", help="CSV (path,label[,group]; paths relative to the CSV) or a folder of audio")
    p.add_argument("--out", required=True, help="cache folder")
    add_render_options(p)
    add_table_options(p)
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--png", action="store_true", help="also write PNG images under OUT/png/")
    p.add_argument("--strict", action="store_true", help="stop at the first bad file")
    p.add_argument("--overwrite", action="store_true", help="replace a cache rendered with another config")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_render)

    for module, hook, commands in _HOOKS:
        if lazy:
            for name, help in commands.items():
                sub.add_lazy(name, help, module, hook)
        else:
            getattr(importlib.import_module(module), hook)(sub)
    return parser


#: (module, function adding its subparsers, {command: its one-line help}): each stage owns its command-line
#: options. The help lines are repeated here so that ``specimg --help`` lists the commands without importing
#: the stages; tests/test_light_imports.py checks that they match what the hooks add.
_HOOKS: List[Tuple[str, str, Dict[str, str]]] = [
    ("specimg.training._cli", "add_train_parser",
     {"train": "cross-validate a backbone on spectrogram images"}),
    ("specimg.predict._cli", "add_predict_parsers",
     {"predict": "predict audio files with a trained run (flip TTA, per-file answers)",
      "evaluate": "score predictions: accuracy, UAR, macro-F1, confusion matrix, report",
      "export": "export fold models to ONNX or TorchScript",
      "embed": "write the penultimate features of a run's models or of a backbone, per file",
      "probe": "fit logistic regression on embeddings, fold by fold: accuracy and UAR"}),
    ("specimg.stacking._cli", "add_stack_parsers",
     {"stack": "stack or blend several runs' out-of-fold predictions",
      "pseudo-label": "add confident test predictions to a training table as pseudo-labels"}),
    ("specimg.experiment._cli", "add_experiment_parser",
     {"experiment": "run a whole recipe: render, train every model, stack, blend, pseudo-label, report"}),
]


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when a record is emitted (redirections included)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it
        pass


def setup_logging(verbosity: int = 0) -> None:
    """What the library logs (logger ``specimg``) goes to stderr as plain lines; the library itself never
    installs a handler. ``verbosity``: -1 warnings only (``--quiet``), 0 info, 1 debug (``-v``)."""
    logger = logging.getLogger("specimg")
    for h in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(h)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel({-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG))


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser(lazy=True)
    args = parser.parse_args(argv)
    setup_logging(-1 if getattr(args, "quiet", False) else min(1, int(getattr(args, "verbose", 0) or 0)))
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

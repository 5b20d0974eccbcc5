"""MkDocs hooks: pages generated from the code at build time.

Registered in ``mkdocs.yml`` under ``hooks:``. Two markers are replaced when a
page is built, so the site always matches the installed code:

``<!-- specimg:cli -->``
    The ``--help`` of the ``specimg`` command and of every subcommand that
    :func:`specimg.cli.build_parser` registers (stages installed later, such as
    ``stack`` or ``experiment``, appear without editing the docs).
``<!-- specimg:api -->``
    One mkdocstrings ``::: specimg.<package>`` block per public package, in the
    order the data flows through them; a package that is not in this checkout
    is left out.

``python docs/_hooks.py cli`` prints the generated CLI page (what the site
shows), for a quick look without building.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator, List, Tuple

CLI_MARKER = "<!-- specimg:cli -->"
API_MARKER = "<!-- specimg:api -->"

#: Width of the generated ``--help`` text (argparse reads $COLUMNS).
HELP_COLUMNS = 100

#: Subcommand builders that ``specimg.cli`` may not register yet: (module, function adding subparsers).
#: Their commands appear in a separate section until ``build_parser`` has them, then that section is empty.
CLI_CANDIDATES: Tuple[Tuple[str, str], ...] = (
    ("specimg.training._cli", "add_train_parser"),
    ("specimg.predict._cli", "add_predict_parsers"),
    ("specimg.stacking._cli", "add_stack_parsers"),
    ("specimg.experiment._cli", "add_experiment_parser"),
)

#: Extra mkdocstrings options of some packages (the config dataclasses share to_dict/from_dict/replace).
API_OPTIONS = {"specimg.config": ["inherited_members: true"]}

#: (module, heading) of the API reference, in data-flow order.
API_MODULES: Tuple[Tuple[str, str], ...] = (
    ("specimg.config", "Configuration"),
    ("specimg.audio", "Audio and segmentation"),
    ("specimg.spectrogram", "Spectrogram images, cache and GPU front end"),
    ("specimg.tasks", "Tasks: single-label and multi-label"),
    ("specimg.data", "Datasets, transforms and folds"),
    ("specimg.models", "Backbones and weights"),
    ("specimg.training", "Training and cross-validation"),
    ("specimg.scoring", "Scores: window-to-file pooling and metrics"),
    ("specimg.predict", "Prediction, metrics, reports and export"),
    ("specimg.stacking", "Stacking and pseudo-labels"),
    ("specimg.experiment", "Experiments (recipes)"),
    ("specimg.datasets", "Bundled datasets (FSDD)"),
    ("specimg.exceptions", "Exceptions"),
)


@contextmanager
def _help_width(columns: int) -> Iterator[None]:
    """Fix argparse's line width (and switch off colour) while help text is formatted."""
    saved = {k: os.environ.get(k) for k in ("COLUMNS", "NO_COLOR")}
    os.environ["COLUMNS"] = str(columns)
    os.environ["NO_COLOR"] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def subcommands(parser: argparse.ArgumentParser, prefix: str = "specimg") -> List[Tuple[str, str, argparse.ArgumentParser]]:
    """Every (nested) subcommand of ``parser``: ``(full name, one-line help, parser)``, in registration order."""
    out: List[Tuple[str, str, argparse.ArgumentParser]] = []
    for action in parser._actions:  # argparse has no public accessor for subparsers
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help or "" for a in action._choices_actions}
        for name, sub in action.choices.items():
            full = f"{prefix} {name}"
            out.append((full, helps.get(name, ""), sub))
            out.extend(subcommands(sub, full))
    return out


def _help_section(full: str, help_text: str, sub: argparse.ArgumentParser) -> List[str]:
    anchor = full.replace(" ", "-")
    lines = [f"## {full} {{ #{anchor} }}", ""]
    if help_text:
        lines += [help_text[0].upper() + help_text[1:] + ".", ""]
    return lines + ["```text", sub.format_help().rstrip(), "```", ""]


def unregistered_commands(registered: List[str]) -> List[Tuple[str, str, argparse.ArgumentParser]]:
    """Subcommands whose builders exist in this checkout but that ``build_parser`` does not register."""
    scratch = argparse.ArgumentParser(prog="specimg")
    sub = scratch.add_subparsers(dest="command", metavar="COMMAND")
    for module, func in CLI_CANDIDATES:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        add = getattr(mod, func, None)
        if callable(add):
            add(sub)
    return [c for c in subcommands(scratch) if c[0] not in registered]


def cli_markdown() -> str:
    """The CLI reference: a table of subcommands, then each one's ``--help``."""
    from specimg.cli import build_parser

    with _help_width(HELP_COLUMNS):
        parser = build_parser()
        commands = subcommands(parser)
        pending = unregistered_commands([c[0] for c in commands])
        pending_names = {c[0] for c in pending}
        lines = ["| command | what it does |", "| --- | --- |"]
        for full, help_text, _ in commands + pending:
            anchor = full.replace(" ", "-")
            note = " *(not yet registered in `specimg.cli`)*" if full in pending_names else ""
            lines.append(f"| [`{full}`](#{anchor}) | {help_text}{note} |")
        lines += ["", "## specimg", "", "```text", parser.format_help().rstrip(), "```", ""]
        for full, help_text, sub in commands:
            lines += _help_section(full, help_text, sub)
        if pending:
            lines += ["## Not yet registered", "",
                      "These subcommands are in this checkout but `specimg.cli.build_parser()` does not add them yet, "
                      "so the `specimg` command does not accept them; their help is shown as their modules define "
                      "it. They move up to the list above once they are registered.", ""]
            for full, help_text, sub in pending:
                lines += _help_section(full, help_text, sub)
    return "\n".join(lines)


def _has_package(module: str) -> bool:
    try:
        spec = importlib.util.find_spec(module)
    except ImportError:
        return False
    # a folder without __init__.py (a namespace package) is work in progress, not a public package
    return spec is not None and spec.origin not in (None, "namespace")


def api_markdown() -> str:
    """One mkdocstrings block per public package present in this checkout."""
    blocks = []
    for module, heading in API_MODULES:
        if not _has_package(module):
            continue
        options = ["show_root_heading: true", "show_root_toc_entry: false", "heading_level: 3",
                   *API_OPTIONS.get(module, [])]
        blocks.append(f"## {heading}\n\n::: {module}\n    options:\n" + "".join(f"      {o}\n" for o in options))
    return "\n".join(blocks)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    """MkDocs hook: fill the generated sections of a page."""
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_markdown())
    if API_MARKER in markdown:
        markdown = markdown.replace(API_MARKER, api_markdown())
    return markdown


if __name__ == "__main__":  # pragma: no cover - a developer's preview
    what = sys.argv[1] if len(sys.argv) > 1 else "cli"
    print(cli_markdown() if what == "cli" else api_markdown())

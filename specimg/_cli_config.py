"""Command-line flags generated from a config dataclass: one flag per field, its numpydoc text as the help, its
type, choices and finite-number check from the field's annotation (the CLI and the library cannot disagree).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from ._validation import finite_float

__all__ = ["field_docs", "add_config_flags", "given_config_flags"]


def field_docs(cls: type) -> Dict[str, str]:
    """``{field: description}`` from the numpydoc ``Parameters`` section of a class docstring.

    A line ``a, b : type`` documents both ``a`` and ``b``; the description is
    the indented text under it, joined into one line.
    """
    doc = cls.__doc__ or ""
    section = re.split(r"\n\s*Parameters\n\s*-+\n", doc, maxsplit=1)
    if len(section) < 2:
        return {}
    body = re.split(r"\n\s*(?:Examples|Notes|Returns|Attributes|See Also)\n\s*-+\n", section[1], maxsplit=1)[0]
    out: Dict[str, str] = {}
    names: List[str] = []
    for line in body.splitlines():
        m = re.match(r"^    ([A-Za-z_][\w, ]*?) :", line)
        if m:
            names = [n.strip() for n in m.group(1).split(",")]
            for n in names:
                out[n] = ""
        elif line.strip() and names:
            for n in names:
                out[n] = (out[n] + " " + line.strip()).strip()
    return out


def _first_sentence(text: str) -> str:
    text = re.sub(r":(?:class|func|meth|attr|mod):`~?([^`]+)`", lambda m: m.group(1).split(".")[-1], text)
    text = text.replace("``", "")
    protected = re.sub(r"\b(e\.g|i\.e|etc|vs)\.", lambda m: m.group(1).replace(".", "\0") + "\0", text)
    m = re.match(r"(.+?[.;])(\s|$)", protected)
    if m:
        return m.group(1).replace("\0", ".").rstrip(".;")
    return text.rstrip(".;")


def _flag_type(annotation: Any) -> Tuple[Any, Optional[Tuple[str, ...]], bool]:
    """(argparse type, choices, is_bool) of a field annotation."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Union and len(args) == 1:
        return _flag_type(args[0])
    if origin is typing.Literal:
        return str, tuple(str(a) for a in typing.get_args(annotation)), False
    if annotation is bool:
        return None, None, True
    if annotation is int:
        return int, None, False
    if annotation is float:
        return finite_float, None, False
    return str, None, False


def add_config_flags(group: Any, cls: type, *, skip: Iterable[str] = (), rename: Mapping[str, str] = {},
                     metavars: Mapping[str, str] = {}, choices: Mapping[str, Tuple[str, ...]] = {},
                     required: Iterable[str] = ()) -> Dict[str, str]:
    """Add one flag per dataclass field of ``cls`` to an argparse group; returns ``{dest: field}``.

    Every flag defaults to ``None`` (meaning "the config's default"), so
    :func:`given_config_flags` can tell what the user typed.

    Parameters
    ----------
    group : argparse parser or argument group
    cls : dataclass type
    skip : field names left out (handled elsewhere)
    rename : field -> flag name without ``--`` (``n_splits`` -> ``folds``)
    metavars : field -> metavar
    choices : field -> the accepted values, where the annotation does not list them
    required : fields whose flag must be given
    """
    required = set(required)
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)
                if f.default is not dataclasses.MISSING}
    dests: Dict[str, str] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + rename.get(f.name, f.name).replace("_", "-")
        dest = rename.get(f.name, f.name).replace("-", "_")
        kind, allowed, is_bool = _flag_type(hints[f.name])
        allowed = choices.get(f.name, allowed)
        default = defaults.get(f.name)
        text = _first_sentence(docs.get(f.name, ""))
        if default is not None and f.name not in required and not isinstance(default, (dict, list)):
            text += f" (default {default})"
        text = text.replace("%", "%%")
        if is_bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            group.add_argument(flag, dest=dest, type=kind, choices=allowed, default=None,
                               metavar=metavars.get(f.name), help=text, required=f.name in required)
        dests[dest] = f.name
    return dests


def given_config_flags(args: argparse.Namespace, dests: Mapping[str, str]) -> Dict[str, Any]:
    """``{field: value}`` of the generated flags the user gave."""
    return {name: getattr(args, dest) for dest, name in dests.items() if getattr(args, dest, None) is not None}

"""A griffe extension: Sphinx roles in docstrings become links in the API reference.

specimg's docstrings are numpydoc, written for Sphinx as well as for ``help()``:
they cross-reference with roles such as ``:func:`~specimg.audio.read_table``` or
``:meth:`forward```. mkdocstrings renders Markdown, where those roles would show
as raw text. This extension rewrites each role into an *optional* autorefs link
(a link when the target is documented on the site, plain code otherwise, never a
build warning) and drops reStructuredText's ``::`` literal-block markers.

Short targets (``:func:`create_backbone```) are looked up the way Sphinx would:
first in the enclosing class, then in the public package of the docstring's
module (``specimg.models._factory`` -> ``specimg.models``).

Loaded from ``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import html
import re
from typing import Any, List

import griffe

_ROLE = re.compile(r":(?:py:)?(func|meth|class|attr|mod|data|exc|obj|const):`(~?)([^`<>]+?)`")
_LITERAL_MARKER = re.compile(r"(?m)(\S)::$")  # "text::" before an indented block -> "text:"
_BARE_MARKER = re.compile(r"(?m)^(\s*)::$")


def _public(path: str) -> str:
    """``specimg.models._factory.create_backbone`` -> ``specimg.models.create_backbone``."""
    return ".".join(p for p in path.split(".") if not p.startswith("_") or p.startswith("__"))


def _candidates(target: str, obj: Any) -> List[str]:
    if target.startswith("specimg."):
        return [target, _public(target)] if _public(target) != target else [target]
    if "." in target and not target.split(".")[0][:1].isupper():
        return [target]  # another library (torch.no_grad, sklearn.base.clone)
    out = []
    scope = obj
    while scope is not None and not scope.is_module:
        if scope.is_class:
            out.append(f"{_public(scope.path)}.{target}")
        scope = scope.parent
    if scope is not None:
        out.append(f"{_public(scope.path)}.{target}")
    return out or [target]


def rewrite(text: str, obj: Any) -> str:
    """Rewrite the Sphinx roles and ``::`` markers of one docstring."""

    def link(match: "re.Match[str]") -> str:
        role, tilde, target = match.groups()
        target = target.strip()
        title = target.rsplit(".", 1)[-1] if tilde else target
        if role in ("func", "meth"):
            title += "()"
        ids = _candidates(target, obj)
        attrs = f'identifier="{html.escape(ids[0])}"'
        if len(ids) > 1:  # autorefs tries the slug when the identifier is unknown
            attrs += f' slug="{html.escape(ids[1])}"'
        return f"<autoref {attrs} optional><code>{html.escape(title)}</code></autoref>"

    text = _ROLE.sub(link, text)
    text = _LITERAL_MARKER.sub(r"\1:", text)
    return _BARE_MARKER.sub("", text)


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen = set()
        stack: List[Any] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.is_alias or id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj.docstring.value, obj)
            stack.extend(obj.members.values())

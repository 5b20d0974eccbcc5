"""The package surface: every public name resolves, nothing heavy at import, the CLI entry points."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import specimg


@pytest.mark.parametrize("name", [n for n in specimg.__all__ if n != "__version__"])
def test_every_public_name_resolves(name):
    obj = getattr(specimg, name)
    assert obj is not None and getattr(obj, "__name__", name) == name


def test_unknown_name():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        specimg.nope  # noqa: B018


def test_import_is_light():
    code = "import sys, specimg, specimg.cli; print(sorted(m for m in ('torch', 'timm', 'lightgbm', 'librosa') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_python_dash_m_and_version():
    out = subprocess.run([sys.executable, "-m", "specimg", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and specimg.__version__ in out.stdout


def test_exception_tree():
    assert issubclass(specimg.ParameterError, ValueError) and issubclass(specimg.ParameterError, specimg.SpecimgError)
    from specimg.exceptions import NotFittedError, WeightsError  # the rarer ones: from specimg.exceptions only

    assert issubclass(NotFittedError, AttributeError) and issubclass(WeightsError, specimg.SpecimgError)
    err = specimg.AudioError("a.wav", "is silent")
    assert str(err) == "a.wav: is silent" and err.path == "a.wav"


def test_the_api_page_lists_the_top_level_names():
    """docs/api.md's table of top-level names is specimg's list, name for name, each under its sub-package."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    table = page.split("<!-- specimg:toplevel -->")[1].split("<!-- /specimg:toplevel -->")[0]
    listed = re.findall(r"\[`(\w+)`\]\[specimg\.(\w+)\.\1\]", table)
    assert sorted(n for n, _ in listed) == sorted(set(specimg.__all__) - {"__version__"})
    for name, package in listed:
        assert getattr(importlib.import_module(f"specimg.{package}"), name) is getattr(specimg, name), name
    assert len(listed) <= 40


def test_multi_label_is_a_task_not_a_second_library():
    """Issue 23: names mentioning multi-label live in specimg/tasks; at most a dozen uses outside it."""
    import ast
    from collections import Counter

    root = Path(specimg.__file__).parent
    assert not [p.name for p in root.rglob("*.py") if re.search(r"multi_?label", p.stem, re.I)]
    names: Counter = Counter()
    for path in root.rglob("*.py"):
        if "tasks" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            found = {ast.Name: ("id",), ast.Attribute: ("attr",), ast.FunctionDef: ("name",),
                     ast.ClassDef: ("name",), ast.arg: ("arg",), ast.keyword: ("arg",),
                     ast.alias: ("name", "asname")}.get(type(node), ())
            for value in (getattr(node, a) for a in found):
                if value and re.search(r"multi_?label", value, re.I):
                    names[value] += 1
    print(f"names mentioning multi-label outside specimg/tasks: {len(names)} distinct, "
          f"{sum(names.values())} uses: {dict(names)}")
    assert sum(names.values()) <= 12, names

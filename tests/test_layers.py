"""Layers point down and no package reaches into another's private modules (run in CI with the suite).

The layer contract lives in pyproject.toml ([tool.importlinter]) and is checked by import-linter's
``lint-imports``; the private-module rule by the AST walk below (import-linter has no contract for it).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("import-linter is not installed: `pip install -e '.[test]'` (it is in the test extra)")
    return subprocess.run([exe, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 kept, 0 broken" in proc.stdout


def _contracts() -> list:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_the_layer_contract_covers_every_module():
    """``exhaustive``: a module of specimg that no layer names breaks the contract (next test)."""
    layers = _contracts()[0]
    assert layers["type"] == "layers" and layers["containers"] == ["specimg"] and layers["exhaustive"] is True
    declared = {m.strip() for layer in layers["layers"] for m in layer.split(":")}
    children = {p.stem for p in (ROOT / "specimg").iterdir()
                if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert declared == children
    assert {"private_modules"} <= {c["type"] for c in _contracts()}


def _copy_with(tmp_path: Path, relpath: str, code: str) -> subprocess.CompletedProcess:
    shutil.copytree(ROOT / "specimg", tmp_path / "specimg", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "specimg" / relpath, "a") as fh:
        fh.write(code)
    return subprocess.run([shutil.which("lint-imports", path=str(Path(sys.executable).parent)), "--no-cache"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)})


def test_the_layer_contract_catches_an_upward_import(tmp_path):
    """The check can fail: a copy of the package where audio imports training breaks the contract."""
    proc = _copy_with(tmp_path, "audio/_segment.py", "\n\ndef _upward():\n    from ..training import train_cv  # noqa\n")
    assert proc.returncode != 0
    assert "specimg.audio._segment -> specimg.training" in proc.stdout


def test_the_contracts_catch_an_undeclared_module_and_a_plain_private_import(tmp_path):
    """A new top-level module no layer names, and ``import specimg.spectrogram._image`` from data (no ``from``)."""
    proc = _copy_with(tmp_path / "x", "data/_dataset.py",
                      "\n\ndef _reach():\n    import specimg.spectrogram._image  # noqa\n")
    assert proc.returncode != 0
    assert "specimg.data._dataset -> specimg.spectrogram._image" in proc.stdout
    (tmp_path / "x" / "specimg" / "newthing.py").write_text("X = 1\n")
    proc = subprocess.run([shutil.which("lint-imports", path=str(Path(sys.executable).parent)), "--no-cache"],
                          cwd=tmp_path / "x", capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(tmp_path / "x"), "PATH": str(Path(sys.executable).parent)})
    assert proc.returncode != 0 and "specimg.newthing" in proc.stdout


def private_imports(package_root: Path) -> List[str]:
    """``file:line: who imports what`` for every import of a private module (or name) of another package.

    A module may use the private modules of its own package and of the packages above it (``specimg._io``
    from ``specimg.training``), never those of a sibling (``specimg.spectrogram._image`` from ``specimg.data``).
    """
    bad = []
    base = package_root.parent
    for f in sorted(package_root.rglob("*.py")):
        parts = list(f.relative_to(base).with_suffix("").parts)
        pkg = ".".join(parts[:-1]) if parts[-1] != "__init__" else ".".join(parts[:-1])
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):  # import a.b._c
                names = [a.name for a in node.names if a.name.split(".")[0] == package_root.name]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    target = ".".join(up + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith(package_root.name):
                    continue
                names = [target] + [f"{target}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                pieces = name.split(".")
                for i, piece in enumerate(pieces):
                    if piece.startswith("_") and not piece.startswith("__"):
                        owner = ".".join(pieces[:i])
                        if not (pkg == owner or pkg.startswith(owner + ".")):
                            bad.append(f"{f.relative_to(base)}:{node.lineno}: {pkg} imports {'.'.join(pieces[:i + 1])}")
                        break
    return sorted(set(bad))


def test_no_package_imports_another_packages_private_module():
    assert private_imports(ROOT / "specimg") == []


def test_the_private_import_check_can_fail(tmp_path):
    pkg = tmp_path / "toy"
    for sub in ("a", "b"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "_shared.py").write_text("X = 1\n")
    (pkg / "a" / "_impl.py").write_text("Y = 1\n")
    (pkg / "b" / "mod.py").write_text(textwrap.dedent("""
        from .._shared import X          # the parent's private module: allowed
        from ..a._impl import Y          # a sibling's private module: not allowed
        from ..a import _impl            # the same, spelled as a name
        import toy.a._impl               # the same, as a plain import
    """))
    assert private_imports(pkg) == ["toy/b/mod.py:3: toy.b imports toy.a._impl",
                                    "toy/b/mod.py:4: toy.b imports toy.a._impl",
                                    "toy/b/mod.py:5: toy.b imports toy.a._impl"]

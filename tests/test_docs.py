"""The documentation site builds without warnings and shows every command and the key API names.

Builds the site once (``mkdocs build --strict`` into a temporary folder, about 5-20 s) and checks the
generated pages. Skipped when the ``docs`` extra (mkdocs, mkdocstrings-python) is not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings_handlers") is None,
    reason="the docs extra is not installed (pip install -e '.[docs]': mkdocs, mkdocstrings-python)",
)


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        cwd=tmp_path_factory.getbasetemp(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert "WARNING" not in proc.stderr, proc.stderr
    return out


def _subcommands() -> list[str]:
    from specimg.cli import build_parser

    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert actions, "build_parser() has no subcommands"
    return list(actions[0].choices)


@needs_mkdocs
def test_cli_page_lists_every_subcommand(site: Path) -> None:
    page = (site / "cli" / "index.html").read_text(encoding="utf-8")
    commands = _subcommands()
    assert {"render", "train", "predict"} <= set(commands)
    for name in commands:
        assert f'id="specimg-{name}"' in page, f"no section for `specimg {name}` on the CLI page"
        assert f"usage: specimg {name}" in page, f"no --help text for `specimg {name}` on the CLI page"
    # an option only the generated help can know about
    assert "--class-hop LABEL=SECONDS" in page


@needs_mkdocs
def test_api_page_renders_key_names(site: Path) -> None:
    page = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("specimg.models.create_backbone", "specimg.spectrogram.render_dataset",
                 "specimg.training.train_cv", "specimg.predict.Predictor", "specimg.stacking.CNNStacker",
                 "specimg.config.RenderConfig", "specimg.exceptions.ParameterError"):
        assert f'id="{name}"' in page, f"{name} is not documented on the API page"
    # numpydoc sections were parsed, not shown raw
    assert "Parameters" in page and "----------" not in page
    # Sphinx roles in docstrings became links (or code), never raw text
    assert ":func:`" not in page and ":class:`" not in page
    assert 'href="#specimg.models.create_backbone"' in page


@needs_mkdocs
def test_stage_pages_link_their_pictures(site: Path) -> None:
    for page, image in (("audio", "segmentation.png"), ("spectrogram", "spectrogram.png"), ("data", "folds.png"),
                        ("backbones", "backbone_filters.png"), ("training", "training.png"),
                        ("predict", "confusion.png"), ("stacking", "stacking.png"), ("frontend", "frontend.png")):
        html = (site / page / "index.html").read_text(encoding="utf-8")
        assert f"../images/{image}" in html, f"{page} page does not show {image}"
        assert (site / "images" / image).is_file()


def test_images_are_small() -> None:
    images = sorted((DOCS / "images").glob("*.png"))
    assert len(images) >= 9
    too_big = [f"{p.name} ({p.stat().st_size // 1024} KB)" for p in images if p.stat().st_size > 150 * 1024]
    assert not too_big, f"images over 150 KB: {too_big}"


@pytest.mark.parametrize("text, expected", [
    (":func:`~specimg.audio.read_table`", 'identifier="specimg.audio.read_table"'),
    (":class:`~specimg.config.TrainConfig`", "<code>TrainConfig</code>"),
    (":func:`specimg.models.create_backbone`", "<code>specimg.models.create_backbone()</code>"),
    (":func:`torch.no_grad`", 'identifier="torch.no_grad"'),
])
def test_sphinx_roles_become_optional_autorefs(text: str, expected: str) -> None:
    pytest.importorskip("griffe", reason="griffe comes with mkdocstrings-python (docs extra)")
    roles = _load("_sphinx_roles", DOCS / "_sphinx_roles.py")
    out = roles.rewrite(f"See {text}.", None)
    assert expected in out
    assert " optional>" in out and ":func:" not in out and ":class:" not in out


def test_sphinx_roles_resolve_short_names_in_the_public_package() -> None:
    griffe = pytest.importorskip("griffe", reason="griffe comes with mkdocstrings-python (docs extra)")
    roles = _load("_sphinx_roles", DOCS / "_sphinx_roles.py")
    module = griffe.Module("_factory", parent=griffe.Module("models", parent=griffe.Module("specimg")))
    func = griffe.Function("create_backbone", parent=module)
    out = roles.rewrite("Names registered with :func:`register_backbone`::\n\n    code", func)
    assert 'identifier="specimg.models.register_backbone"' in out
    assert "register_backbone`:\n" in out or "</autoref>:\n" in out  # the '::' literal marker became ':'
    assert "::" not in out


def test_hook_markers_are_in_the_pages() -> None:
    hooks = _load("_hooks", DOCS / "_hooks.py")
    assert hooks.CLI_MARKER in (DOCS / "cli.md").read_text()
    assert hooks.API_MARKER in (DOCS / "api.md").read_text()
    api = hooks.api_markdown()
    assert "::: specimg.models" in api and "::: specimg.stacking" in api
    assert re.search(r"::: specimg\.config\n    options:\n(      .*\n)*      inherited_members: true", api)

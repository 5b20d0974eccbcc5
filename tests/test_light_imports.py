"""The light CLI: ``import specimg``, ``import specimg.spectrogram``, ``specimg --help`` and ``specimg render``
import no torch (nor timm, scikit-learn, LightGBM), as ``specimg/__init__.py`` promises.

Each check runs in a fresh interpreter (``sys.modules`` of the test process already holds torch).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HEAVY = ("torch", "timm", "sklearn", "lightgbm", "albumentations", "matplotlib")


def _heavy_modules_after(code: str, cwd: Path) -> list:
    """Run ``code`` in a fresh interpreter; the heavy modules it left in ``sys.modules``."""
    probe = (f"{code}\nimport json, sys\n"
             f"print('HEAVY=' + json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("HEAVY=")][-1]
    return json.loads(line[len("HEAVY="):])


@pytest.mark.parametrize("code", [
    "import specimg",
    "import specimg.spectrogram",
    "import specimg.audio, specimg.config",
    "from specimg.spectrogram import render_dataset, ImageCache, render_file",
])
def test_light_imports(code, tmp_path):
    assert _heavy_modules_after(code, tmp_path) == []


def test_front_end_still_loads_on_first_use(tmp_path):
    assert "torch" in _heavy_modules_after("from specimg.spectrogram import SpectrogramFrontend", tmp_path)
    import specimg.spectrogram

    assert specimg.spectrogram.SpectrogramFrontend.__module__ == "specimg.spectrogram._frontend"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        specimg.spectrogram.nope  # noqa: B018


@pytest.mark.parametrize("argv", [["--help"], ["render", "--help"]])
def test_help_imports_no_stage(argv, tmp_path):
    code = ("from specimg.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code")
    assert _heavy_modules_after(code, tmp_path) == []


def test_render_command_imports_no_torch(tmp_path):
    import soundfile as sf

    sr = 8000
    t = np.arange(sr // 2) / sr
    for i, f0 in enumerate((300.0, 900.0)):
        sf.write(tmp_path / f"t{i}.wav", (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), sr)
    (tmp_path / "in.csv").write_text("path,label\nt0.wav,a\nt1.wav,b\n")
    argv = ["render", "in.csv", "--out", "cache", "--sample-rate", "8000", "--seconds", "0.5", "--hop", "0.25",
            "--n-fft", "256", "--hop-length", "64", "--n-mels", "32", "--image-size", "32", "--quiet"]
    code = f"from specimg.cli import main\nassert main({argv!r}) == 0"
    assert _heavy_modules_after(code, tmp_path) == []
    assert (tmp_path / "cache" / "images.npy").is_file()


def test_lazy_command_table_matches_the_stages():
    """``specimg --help`` lists each stage's commands from cli._HOOKS without importing the stage: the names
    and one-line helps there must be those the stage's hook really adds."""
    import argparse

    from specimg import cli

    def listed(parser):
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return {a.dest: a.help for a in action._choices_actions}

    eager, lazy = listed(cli.build_parser()), listed(cli.build_parser(lazy=True))
    assert lazy == eager
    assert list(lazy) == ["render", "train", "predict", "evaluate", "export", "embed", "probe", "stack",
                          "pseudo-label", "experiment"]


def test_lazy_parser_parses_like_the_eager_one():
    from specimg import cli

    argv = ["evaluate", "preds.csv", "--report", "rep", "--run", "runs/x", "--format", "html"]
    a = vars(cli.build_parser().parse_args(argv))
    b = vars(cli.build_parser(lazy=True).parse_args(argv))
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a if k != "func")
    assert a["func"].__qualname__ == b["func"].__qualname__ == "_cmd_evaluate"

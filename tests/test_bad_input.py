"""The bad-input sweep: one table per public entry point.

Every bad file gets a message naming it and what is wrong, and the rest of the
batch keeps its work; every nonsense option fails before any work with a
message naming the option and the fix.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from specimg.cli import main

RENDER = ["--sample-rate", "8000", "--seconds", "1", "--hop", "0.5", "--n-fft", "256", "--hop-length", "64",
          "--n-mels", "32", "--image-size", "32x48", "--quiet"]


def test_render_sweep(bad_batch, tmp_path, capsys):
    assert main(["render", str(bad_batch.csv), "--out", str(tmp_path / "c"), *RENDER]) == 0
    files = pd.read_csv(tmp_path / "c" / "files.csv")["path"].tolist()
    errors = pd.read_csv(tmp_path / "c" / "errors.csv").set_index("path")["error"].to_dict()
    for name, expected in bad_batch.expected.items():
        if expected is None:
            assert name in files, f"{name} should have been rendered; errors: {errors.get(name)}"
        else:
            assert expected in errors[name], (name, errors.get(name))
    err = capsys.readouterr().err
    assert "7 file(s) could not be rendered" in err and "garbage.wav" in err


@pytest.mark.parametrize("args, message", [
    (["--hop", "-1"], "'hop' parameter of SegmentConfig must be a finite number > 0"),
    (["--seconds", "0"], "'seconds' parameter"),
    (["--image-size", "big"], "--image-size 'big' must be N or HxW"),
    (["--image-size", "4"], "'image_size' parameter"),
    (["--n-fft", "16xs"], "--n-fft '16xs' must be samples"),
    (["--class-hop", "zebra=5"], r"--class-hop names label\(s\) \['zebra'\]"),
    (["--class-hop", "3=-5"], "class_hop\\['3'\\]"),
    (["--sample-rate", "10"], "'sample_rate' parameter of AudioConfig must be an int >= 1000"),
    (["--workers", "0"], "'workers' parameter of render_dataset"),
    (["--pad-mode", "none", "--seconds", "30"], "longer than every file"),
    (["--feature", "mfcc", "--n-mfcc", "40"], "'n_mfcc' parameter of SpectrogramConfig must be <= n_mels=32"),
])
def test_render_nonsense_options(bad_batch, tmp_path, capsys, args, message):
    opts = RENDER + args
    assert main(["render", str(bad_batch.csv), "--out", str(tmp_path / "c"), *opts]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "c" / "images.npy").exists()


def test_render_missing_input(tmp_path, capsys):
    assert main(["render", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "c")]) == 2
    assert "does not exist" in capsys.readouterr().err

"""kill -9 in the middle of a long job, then the same command again: the result equals an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from specimg.spectrogram import ImageCache

RENDER_OPTS = ["--sample-rate", "8000", "--seconds", "1", "--hop", "0.5", "--n-fft", "256", "--hop-length", "64",
               "--n-mels", "32", "--image-size", "32x48", "--quiet"]


def _run_and_kill(cmd, ready, timeout=120.0):
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` is true; return whether it was killed mid-run."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < timeout:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    proc.wait()
    return False


def test_kill9_render_then_resume(fsdd_subset_csv, tmp_path):
    cli = [sys.executable, "-m", "specimg", "render", str(fsdd_subset_csv)]
    out = tmp_path / "killed"
    killed = _run_and_kill(cli + ["--out", str(out), *RENDER_OPTS],
                           lambda: len(list(out.glob(".partial-*/*.json"))) >= 10)
    assert killed, "the render finished before it could be killed"
    assert not (out / "config.json").exists()  # no finished-looking cache after a kill
    done_before = len(list(out.glob(".partial-*/*.json")))
    subprocess.run(cli + ["--out", str(out), *RENDER_OPTS], check=True, capture_output=True)
    subprocess.run(cli + ["--out", str(tmp_path / "clean"), *RENDER_OPTS], check=True, capture_output=True)
    a, b = ImageCache.open(out), ImageCache.open(tmp_path / "clean")
    assert done_before >= 10 and len(a.files) == 60
    np.testing.assert_array_equal(a.images, b.images)
    pd.testing.assert_frame_equal(a.segments, b.segments)
    pd.testing.assert_frame_equal(a.files, b.files)

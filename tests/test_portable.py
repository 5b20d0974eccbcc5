"""The plain-kernel run of ``make test`` really runs on the plainest kernels, so that a result pinned to one CPU's
SIMD fails there (and not on a user's machine).

``make test`` runs tests/test_spectrogram_defaults.py and this file once more with the Makefile's
``PLAIN_KERNELS`` variables: numpy without its x86-64-v3/v4 and AVX-512 dispatch targets, OpenBLAS as on a
Nehalem, torch's ATen on its default (non-vectorised) CPU capability.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json
import numpy as np, torch, threadpoolctl
from numpy._core._multiarray_umath import __cpu_features__ as f
blas = [i.get("architecture") for i in threadpoolctl.threadpool_info() if i["internal_api"] == "openblas"]
print(json.dumps({"numpy_v3": f.get("X86_V3", False), "numpy_v4": f.get("X86_V4", False),
                  "torch": torch.backends.cpu.get_cpu_capability(), "openblas": blas}))
"""


def plain_kernels() -> dict:
    """The Makefile's ``PLAIN_KERNELS`` assignments as an environment dict."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = re.search(r"^PLAIN_KERNELS\s*:=\s*(.*)$", text, re.M)
    assert line, "the Makefile has no PLAIN_KERNELS line"
    return dict(word.split("=", 1) for word in shlex.split(line.group(1)))


def _probe(env: dict) -> dict:
    import json

    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_plain_kernel_variables_take_effect():
    env = {**os.environ, **plain_kernels()}
    got = _probe(env)
    assert got["numpy_v3"] is False and got["numpy_v4"] is False, got
    assert got["torch"] == "DEFAULT", got
    assert got["openblas"] and all(a == "Nehalem" for a in got["openblas"]), got
    assert plain_kernels()["SPECIMG_PLAIN_KERNELS"] == "1"


def test_this_run_is_what_it_says():
    """This very process is on the kernels its environment asks for: the plain ones under ``make test``'s
    second run (SPECIMG_PLAIN_KERNELS=1), the CPU's own in the first (the probe sees the same as this process)."""
    import threadpoolctl
    import torch
    from numpy._core._multiarray_umath import __cpu_features__ as f

    here = {"numpy_v3": f.get("X86_V3", False), "torch": torch.backends.cpu.get_cpu_capability(),
            "openblas": sorted(i.get("architecture") for i in threadpoolctl.threadpool_info()
                               if i["internal_api"] == "openblas")}
    probe = _probe(dict(os.environ))
    assert (here["numpy_v3"], here["torch"]) == (probe["numpy_v3"], probe["torch"])  # (other OpenBLAS copies may load)
    if os.environ.get("SPECIMG_PLAIN_KERNELS") == "1":
        assert here["torch"] == "DEFAULT" and not here["numpy_v3"] and set(here["openblas"]) == {"Nehalem"}, here

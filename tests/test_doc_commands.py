"""The documentation is a test: every ``specimg`` shell block and every Python block of README.md and docs/*.md
runs, in page order, each page in a fresh empty working folder, on FSDD.

How a page runs (``tests/_doc_runner.py``):

- the working folder is ``TMP/PAGE/work`` and ``TMP/PAGE/shared/datasets/fsdd`` is FSDD, so the pages' paths
  (``FSDD=../shared/datasets/fsdd``, ``../shared/datasets/fsdd/labels.csv``) work as written. To keep the suite
  small it is a 120-file subset (takes 0 and 5 of every digit by the 6 speakers; ``labels.csv`` lists those,
  ``recordings/`` holds all 3,000 files so that a path to any recording resolves). The working folder also
  holds a copy of the checkout's ``examples/recipes`` (the recipes page runs ``specimg experiment
  examples/recipes/...`` from a checkout, whose recipes find FSDD at ``../shared/datasets/fsdd``);
- ``SPECIMG_MAX_EPOCHS=1`` caps every training's epochs (``TrainConfig`` honours it) and ``SPECIMG_MAX_FOLDS=3``
  trains the first 3 folds of a plan when no fold is named (``train_cv`` honours it); Getting started and the
  training page say so. The budgets are shrunk by these visible variables, never by editing a page;
- Python blocks share one interpreter per page (as a reader pasting them in order); shell blocks run with
  ``bash -e -o pipefail`` and the ``specimg`` of this environment on the PATH. A shell block without a
  ``specimg`` command (``make``, ``pip``: what CI itself runs) is not a documented command and is left out;
- a block that cannot run here (placeholder data, several GPUs, a network) is marked in the page source by
  ``<!-- not-run: REASON -->`` on the lines just before it. Marked blocks are counted and reported; an
  unmarked block that fails fails the test, with the page, line and output.

The pages' ``specimg`` commands run through a fork server that imports torch and the rest once
(``tests/_cli_server.py``): on the predict page 147 s instead of 223 s wall in one A/B on the loaded
development machine (``SPECIMG_DOC_NO_SERVER=1`` runs every command as its own process). Each page prints
the duration of each block.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("_doc_runner.py")
#: README first, then the pages in the site's order (pages without a python or specimg block are listed by
#: test_every_block_is_run_or_marked_with_a_reason and not run).
PAGES = ["README.md", "docs/index.md", "docs/getting-started.md", "docs/audio.md", "docs/spectrogram.md",
         "docs/data.md", "docs/backbones.md", "docs/custom-backbone.md", "docs/training.md", "docs/predict.md",
         "docs/stacking.md", "docs/multilabel.md", "docs/frontend.md", "docs/gpu.md", "docs/recipes.md", "docs/cli.md",
         "docs/api.md"]
SHELL = ("bash", "sh", "shell", "console")
FENCE = re.compile(r"^```\s*([\w+-]*)")
NOT_RUN = re.compile(r"^<!--\s*not-run:(.*?)-->\s*$")
SPECIMG_COMMAND = re.compile(r"(^|[\s;&|(`$])(specimg|-m specimg)(\s|$)", re.M)
#: FSDD subset of the doc runs: these takes of every digit and speaker.
TAKES = (0, 5)


@dataclass
class Block:
    page: str
    line: int  # line of the first code line (1-based)
    kind: str  # 'python' or 'shell'
    code: str
    run: bool
    reason: str = ""


def page_blocks(page: str) -> List[Block]:
    """The python and shell blocks of a page, with their not-run markers."""
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    blocks: List[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1).lower(), i + 1
        end = next(j for j in range(start, len(lines)) if lines[j].startswith("```"))
        code = "\n".join(lines[start:end])
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        marker = NOT_RUN.match(lines[j].strip()) if j >= 0 else None
        if marker and not marker.group(1).strip():
            raise AssertionError(f"{page}:{j + 1}: a not-run marker needs a reason: <!-- not-run: why -->")
        kind = "python" if lang == "python" else "shell" if lang in SHELL else None
        if kind == "shell" and not SPECIMG_COMMAND.search(re.sub(r"(^|\s)#.*$", "", code, flags=re.M)):
            kind = None  # make / pip: not a documented specimg command (a comment may name specimg)
        if kind is not None:
            blocks.append(Block(page, start + 1, kind, code, run=marker is None,
                                reason=marker.group(1).strip() if marker else ""))
        elif marker:
            raise AssertionError(f"{page}:{j + 1}: a not-run marker before a block that would not run anyway")
        i = end + 1
    return blocks


def test_every_block_is_run_or_marked_with_a_reason():
    """Parsing only: the markers are well formed, and the pages hold the blocks the runs below execute."""
    blocks = [b for p in PAGES for b in page_blocks(p)]
    marked = [b for b in blocks if not b.run]
    assert sum(b.run for b in blocks) >= 30, "far fewer runnable blocks than the pages hold: is the parser broken?"
    assert all(b.reason for b in marked)
    docs = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
    assert sorted(p for p in PAGES if p.startswith("docs/")) == docs, "a page is missing from PAGES"
    print(f"\n{len(blocks)} blocks: {len(blocks) - len(marked)} run, {len(marked)} marked not-run:")
    for b in marked:
        print(f"  {b.page}:{b.line}: {b.reason}")
    print("pages without a python or specimg block: " + ", ".join(p for p in PAGES if not page_blocks(p)))


def test_the_budget_variables_are_honoured(monkeypatch):
    """What the doc runs rely on: SPECIMG_MAX_EPOCHS caps TrainConfig.epochs (and the warm-up), SPECIMG_MAX_FOLDS
    the folds of a train_cv call that names none; a bad value is an error naming the variable."""
    from specimg.config import TrainConfig
    from specimg.exceptions import ParameterError
    from specimg.training._cv import _fold_list

    assert TrainConfig(epochs=10).epochs == 10 and _fold_list(None, 6) == [0, 1, 2, 3, 4, 5]
    monkeypatch.setenv("SPECIMG_MAX_EPOCHS", "1")
    monkeypatch.setenv("SPECIMG_MAX_FOLDS", "3")
    cfg = TrainConfig(epochs=10, warmup_epochs=2)
    assert (cfg.epochs, cfg.warmup_epochs) == (1, 1) and TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert _fold_list(None, 6) == [0, 1, 2] and _fold_list(None, 2) == [0, 1] and _fold_list([4, 5], 6) == [4, 5]
    for name, value in (("SPECIMG_MAX_EPOCHS", "0"), ("SPECIMG_MAX_FOLDS", "x")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ParameterError, match=name):
            TrainConfig() if name == "SPECIMG_MAX_EPOCHS" else _fold_list(None, 6)
        monkeypatch.setenv(name, "3")


@pytest.fixture(scope="module")
def fsdd_subset(fsdd_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("doc_fsdd") / "fsdd"
    root.mkdir()
    (root / "recordings").symlink_to((fsdd_dir / "recordings").resolve())
    labels = pd.read_csv(fsdd_dir / "labels.csv", dtype=str)
    take = labels["path"].str.extract(r"_(\d+)\.wav$")[0].astype(int)
    labels[take.isin(TAKES)].to_csv(root / "labels.csv", index=False)
    return root


def _env() -> dict:
    env = {**os.environ, "SPECIMG_MAX_EPOCHS": "1", "SPECIMG_MAX_FOLDS": "3", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1",
           "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SPECIMG_FSDD", None)  # the pages find FSDD where they say: ../shared/datasets/fsdd
    return env


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory):
    """One fork server for every page: it imports torch, timm and the rest once; each page's runner and each of
    its ``specimg`` commands is a process forked from it (``tests/_cli_server.py``). ``SPECIMG_DOC_NO_SERVER=1``
    runs every page and command as a process of its own instead."""
    sys.path.insert(0, str(Path(__file__).parent))
    import tempfile

    from _cli_server import stop, write_shim

    if os.environ.get("SPECIMG_DOC_NO_SERVER"):
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="spdoc"))  # a short path: a Unix socket's name is at most ~100 bytes
    sock = str(folder / "s")
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_cli_server.py")), sock], env=_env())
    deadline = time.time() + 300
    while not Path(sock + ".ready").exists():
        assert server.poll() is None and time.time() < deadline, "the specimg fork server did not start"
        time.sleep(0.05)
    shim = write_shim(folder / "bin")
    yield {"SPECIMG_CLI_SERVER": sock, "PATH": f"{shim}{os.pathsep}{_env()['PATH']}", "shim": str(shim / "specimg")}
    stop(sock)
    server.wait(timeout=60)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("page", [p for p in PAGES if page_blocks(p)])
def test_page_runs_as_written(page, fsdd_subset, tmp_path, cli_server):
    blocks = page_blocks(page)
    (tmp_path / "shared" / "datasets").mkdir(parents=True)
    (tmp_path / "shared" / "datasets" / "fsdd").symlink_to(fsdd_subset)
    work = tmp_path / "work"
    shutil.copytree(ROOT / "examples" / "recipes", work / "examples" / "recipes")
    spec, results = tmp_path / "blocks.json", tmp_path / "results.jsonl"
    spec.write_text(json.dumps([b.__dict__ for b in blocks]))
    if cli_server is None:
        command, env = [sys.executable, str(RUNNER), str(spec), str(results)], _env()
    else:  # the page's runner forked from the warm server
        command = [sys.executable, cli_server["shim"], "__run_page__", str(spec), str(results)]
        env = {**_env(), "SPECIMG_CLI_SERVER": cli_server["SPECIMG_CLI_SERVER"], "PATH": cli_server["PATH"]}
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"the runner itself failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["line"] for r in rows] == [b.line for b in blocks]
    summary = ", ".join(f"{page}:{r['line']} {r['status']} {r['seconds']:.1f}s" for r in rows)
    print(f"\n{summary}")
    failed = [f"{page}:{r['line']} ({b.kind} block) failed:\n{b.code}\n--- output ---\n{r['error']}"
              for r, b in zip(rows, blocks) if r["status"] == "failed"]
    assert not failed, "\n\n".join(failed)


def test_the_runner_reports_every_failure(tmp_path):
    """A failing Python or shell block is reported as failed (with its output) and the page goes on; shell
    variables carry over to the page's later blocks, as in the reader's terminal."""
    blocks = [Block("p.md", 1, "python", "raise ValueError('a broken example')", True),
              Block("p.md", 5, "shell", "specimg render nowhere.csv --out cache --quiet", True),
              Block("p.md", 9, "shell", 'OPTS="--a --b"\nN=2', True),
              Block("p.md", 12, "shell", 'test "$OPTS" = "--a --b" && test "$N" = 2', True),
              Block("p.md", 15, "python", "x = 1", False, "marked"),
              Block("p.md", 18, "python", "assert 'x' not in globals()", True)]
    (tmp_path / "blocks.json").write_text(json.dumps([b.__dict__ for b in blocks]))
    proc = subprocess.run([sys.executable, str(RUNNER), "blocks.json", "results.jsonl"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["failed", "failed", "ok", "ok", "not-run", "ok"]
    assert "a broken example" in rows[0]["error"]
    assert "exit status 2" in rows[1]["error"] and "nowhere.csv' does not exist" in rows[1]["error"]

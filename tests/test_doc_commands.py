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
  ``<!-- not-run: REASON -->`` on the lines just before it (a reason of at most ``MAX_REASON`` characters).
  Marked blocks are counted and reported; an unmarked block that fails fails the test, with the page, line
  and output;
- every block that runs is followed by a check, an HTML comment (invisible on the site and on GitHub) holding
  Python statements that assert what the page's text promises of the block: ``<!-- check: assert ... -->`` on
  one line, or ``<!-- check:`` then the statements, indented, then ``-->``. The runner executes it after the
  block (see ``tests/_doc_runner.py`` for what it sees: ``stdout``, ``shown``, the page's names, ...); a check
  that fails fails the block, with the assertion's values and the block's output. A runnable block without a
  check fails ``test_every_run_block_checks_what_its_text_promises``. Where the text quotes a figure of a full
  run, the check asserts what this small run can show (counts, shapes, ranges), not the figure.

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
import textwrap
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
         "docs/data.md", "docs/backbones.md", "docs/custom-backbone.md", "docs/training.md", "docs/predict.md", "docs/embeddings.md",
         "docs/stacking.md", "docs/multilabel.md", "docs/frontend.md", "docs/gpu.md", "docs/recipes.md", "docs/cli.md",
         "docs/api.md"]
SHELL = ("bash", "sh", "shell", "console")
FENCE = re.compile(r"^```\s*([\w+-]*)")
NOT_RUN = re.compile(r"^<!--\s*not-run:(.*?)-->\s*$")
CHECK = re.compile(r"^<!--\s*check:(.*)$")
#: The longest reason a not-run marker may give (characters): a reason, not a paragraph.
MAX_REASON = 100
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
    check: str = ""  # the statements of the <!-- check: ... --> comment after the block
    check_line: int = 0  # the line of that comment (1-based)


def _check_after(page: str, lines: List[str], end: int) -> tuple:
    """The ``<!-- check: ... -->`` comment after the fence closing at ``end``: (its statements, its line, the
    line after it), or ("", 0, end + 1). One line (``<!-- check: assert ... -->``), or ``<!-- check:`` then the
    statements on the lines below, indented as one block, then ``-->``."""
    k = end + 1
    while k < len(lines) and not lines[k].strip():
        k += 1
    if k >= len(lines) or not CHECK.match(lines[k]):
        return "", 0, end + 1
    last = next((j for j in range(k, len(lines)) if "-->" in lines[j]), None)
    if last is None:
        raise AssertionError(f"{page}:{k + 1}: a check comment that never ends (-->)")
    first = CHECK.match(lines[k]).group(1)
    if last == k:
        code = first.split("-->")[0].strip()
    else:
        body = textwrap.dedent("\n".join(lines[k + 1:last] + [lines[last].split("-->")[0]]))
        code = (first.strip() + "\n" + body if first.strip() else body).strip()
    if not code:
        raise AssertionError(f"{page}:{k + 1}: an empty check")
    return code, k + 1, last + 1


def page_blocks(page: str) -> List[Block]:
    """The python and shell blocks of a page, with their not-run markers and their checks."""
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    blocks: List[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            if CHECK.match(lines[i]):
                raise AssertionError(f"{page}:{i + 1}: a check comment that follows no code block")
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
        check, check_line, i = _check_after(page, lines, end)
        if check and (kind is None or marker):
            raise AssertionError(f"{page}:{check_line}: a check after a block that is not run")
        if kind is not None:
            blocks.append(Block(page, start + 1, kind, code, run=marker is None,
                                reason=marker.group(1).strip() if marker else "", check=check, check_line=check_line))
        elif marker:
            raise AssertionError(f"{page}:{j + 1}: a not-run marker before a block that would not run anyway")
    return blocks


def test_every_block_is_run_or_marked_with_a_reason():
    """Parsing only: the markers are well formed, and the pages hold the blocks the runs below execute."""
    blocks = [b for p in PAGES for b in page_blocks(p)]
    marked = [b for b in blocks if not b.run]
    assert sum(b.run for b in blocks) >= 30, "far fewer runnable blocks than the pages hold: is the parser broken?"
    assert all(b.reason for b in marked)
    long = [f"{b.page}:{b.line}: {len(b.reason)} characters" for b in marked if len(b.reason) > MAX_REASON]
    assert not long, f"a not-run reason is a few words (at most {MAX_REASON} characters): {long}"
    docs = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
    assert sorted(p for p in PAGES if p.startswith("docs/")) == docs, "a page is missing from PAGES"
    print(f"\n{len(blocks)} blocks: {len(blocks) - len(marked)} run, {len(marked)} marked not-run:")
    for b in marked:
        print(f"  {b.page}:{b.line}: {b.reason}")
    print("pages without a python or specimg block: " + ", ".join(p for p in PAGES if not page_blocks(p)))


def _asserts(check: str) -> list:
    import ast

    return [n for n in ast.walk(ast.parse(check)) if isinstance(n, ast.Assert)]


def test_every_run_block_checks_what_its_text_promises():
    """Parsing only: every block that runs is followed by a ``<!-- check: ... -->`` comment whose statements assert
    what the page says of it (files written, counts, a metric's range, printed lines). A check is Python that
    compiles and holds at least one ``assert`` of something that is not a constant."""
    import ast

    blocks = [b for p in PAGES for b in page_blocks(p) if b.run]
    missing = [f"{b.page}:{b.line}" for b in blocks if not b.check]
    assert not missing, ("these blocks run but check nothing; add <!-- check: assert ... --> after each, asserting "
                         f"what the text around it promises: {missing}")
    for b in blocks:
        where = f"{b.page}:{b.check_line}"
        try:
            asserts = _asserts(b.check)
        except SyntaxError as exc:
            raise AssertionError(f"{where}: the check is not Python: {exc}") from None
        assert asserts, f"{where}: a check asserts something (no assert statement in {b.check!r})"
        constant = [a for a in asserts if isinstance(a.test, ast.Constant)]
        assert not constant, f"{where}: an assert of a constant cannot fail: {ast.unparse(constant[0])}"
    print(f"\n{len(blocks)} run blocks, each with a check ({sum(len(_asserts(b.check)) for b in blocks)} asserts)")


@pytest.mark.parametrize("text, message", [
    ("```python\nx = 1\n```\n", None),
    ("```python\nx = 1\n```\n\n<!-- check: assert x == 1 -->\n", None),
    ("```python\nx = 1\n```\n<!-- check:\n    assert x == 1\n    assert x > 0\n-->\n", None),
    ("```python\nx = 1\n```\n<!-- check:\n    assert x == 1\n", "never ends"),
    ("```text\nx = 1\n```\n<!-- check: assert x == 1 -->\n", "a check after a block that is not run"),
    ("<!-- not-run: a reason -->\n```python\nx = 1\n```\n<!-- check: assert x -->\n", "not run"),
    ("Some text.\n\n<!-- check: assert x == 1 -->\n", "follows no code block"),
    ("```python\nx = 1\n```\n<!-- check: -->\n", "an empty check"),
])
def test_check_comments_parse(text, message, tmp_path, monkeypatch):
    """The check comment's two spellings, and the misplaced or broken ones the parser refuses."""
    (tmp_path / "p.md").write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    if message is None:
        blocks = page_blocks("p.md")
        assert len(blocks) == 1
        assert blocks[0].check in ("", "assert x == 1", "assert x == 1\nassert x > 0")
        assert bool(blocks[0].check) == ("check" in text) and (blocks[0].check_line > 0) == bool(blocks[0].check)
    else:
        with pytest.raises(AssertionError, match=message):
            page_blocks("p.md")


def test_the_budget_variables_are_honoured(monkeypatch):
    """What the doc runs rely on: SPECIMG_MAX_EPOCHS caps TrainConfig.epochs (and the warm-up), SPECIMG_MAX_FOLDS
    the folds of a train_cv call that names none; a bad value is an error naming the variable."""
    from specimg.config import TrainConfig
    from specimg.exceptions import ParameterError
    from specimg.training._cv import _fold_list

    assert TrainConfig().with_options(epochs=10).schedule.epochs == 10 and _fold_list(None, 6) == [0, 1, 2, 3, 4, 5]
    monkeypatch.setenv("SPECIMG_MAX_EPOCHS", "1")
    monkeypatch.setenv("SPECIMG_MAX_FOLDS", "3")
    cfg = TrainConfig().with_options(epochs=10, warmup_epochs=2)
    assert (cfg.schedule.epochs, cfg.schedule.warmup_epochs) == (1, 1) and TrainConfig.from_dict(cfg.to_dict()) == cfg
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


def test_a_block_whose_output_is_wrong_fails_its_check(tmp_path):
    """A block that exits 0 but writes or prints what its page does not say fails, with the check's assertion (the
    values, as pytest shows them) and the block's output; a block that is right passes; a Python check sees what
    the block printed and the values of its expression statements (``shown``), and a copy of the page's namespace,
    so what it assigns never reaches a later block; a failed block's check is not run."""
    table = "printf 'path,label\\na.wav,1\\nb.wav,2\\n' > table.csv && echo 'wrote 2 files to table.csv'"
    rows_check = "t = pd.read_csv('table.csv')\nassert t.shape == (3, 2), t\nassert 'wrote 3 files' in stdout"
    blocks = [
        Block("p.md", 1, "shell", table, True, check=rows_check, check_line=4),  # the page says 3 files
        Block("p.md", 8, "shell", table, True, check=rows_check.replace("3", "2"), check_line=11),
        Block("p.md", 15, "python", "import json\nprint(json.dumps({'accuracy': 0.42}))", True,
              check="acc = json.loads(stdout)['accuracy']\nassert 0.8 <= acc <= 1, 'the page says 0.8-1'",
              check_line=18),
        Block("p.md", 22, "python", "n = 3\nprint(n, 'windows')\nn * 2   # 6", True,
              check="leak = 1\nassert stdout.split() == ['3', 'windows'] and shown == [None, 6]", check_line=25),
        Block("p.md", 29, "python", "assert 'leak' not in globals() and 'stdout' not in globals()", True,
              check="assert n == 3", check_line=30),
        Block("p.md", 33, "python", "raise ValueError('the block itself')", True,
              check="raise RuntimeError('a check that must not run')", check_line=35),
    ]
    (tmp_path / "blocks.json").write_text(json.dumps([b.__dict__ for b in blocks]))
    proc = subprocess.run([sys.executable, str(RUNNER), "blocks.json", "results.jsonl"], cwd=tmp_path,
                          env={**_env(), "SPECIMG_DOC_NO_SERVER": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["failed", "ok", "failed", "ok", "ok", "failed"]
    first = rows[0]["error"]
    assert first.startswith("check failed: p.md:4 (check of the block at line 1)")
    assert "assert (2, 2) == (3, 2)" in first  # pytest's rewritten assert shows the values
    assert "--- stdout ---\nwrote 2 files to table.csv" in first
    assert "the page says 0.8-1" in rows[2]["error"] and "0.42" in rows[2]["error"]
    assert "the block itself" in rows[5]["error"] and "check failed" not in rows[5]["error"]
    assert rows[3]["stdout"] == "3 windows\n"

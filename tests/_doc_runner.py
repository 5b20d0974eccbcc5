"""Run the code blocks of one documentation page, in page order, in the current (empty) working folder.

    python tests/_doc_runner.py BLOCKS.json RESULTS.jsonl

``BLOCKS.json`` lists the page's blocks (``line``, ``kind``: ``python`` or ``shell``, ``code``, ``run``: false for a
block marked ``<!-- not-run: reason -->``, ``check``: the statements of the ``<!-- check: ... -->`` comment after
the block, ``check_line``). Python blocks share one namespace, as a reader pasting them into one
session would; shell blocks run with ``bash -e -o pipefail`` (``specimg`` on the PATH), so every failing command
fails its block, and the shell variables a block sets (``NAME=...`` at the start of a line) are set in the
page's later blocks too, as in the reader's terminal.

A block that ran without an error then has its check run: Python statements (their ``assert`` messages
rewritten as pytest's, showing the values) that assert what the page's text promises of the block. A Python
block's check sees a copy of the page's namespace (what it assigns does not reach the later blocks) plus
``stdout``, what the block printed, and ``shown``, the values of the block's top-level expression statements in
order (``X.shape   # (n_files, 3, n_classes)``: what a reader at a prompt sees); a shell block's check sees its
``stdout`` and ``stderr``. Both have ``code`` (the block's source), ``Path``, ``pd``, ``np``, ``json``, ``re`` and
``os``, and run in the working folder. A check that raises fails the block with the check, its assertion and the
block's output.

One JSON line per block goes to ``RESULTS.jsonl``: ``line``, ``status`` (``ok``, ``failed``,
``not-run``), ``seconds``, for a failure the end of its output, and the ends of ``stdout`` and ``stderr``. A
failed block does not stop the page: the later ones run too, so that one report lists every failure.

The shell blocks' ``specimg`` commands go through a fork server (``tests/_cli_server.py``) that has imported
torch, timm and the rest once, instead of paying those imports at every command; each command still runs
``specimg.cli.main`` in a process of its own, with the block's folder, environment and streams.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Tuple

#: The longest a shell block may run (seconds).
SHELL_TIMEOUT = 900


class _Tee(io.StringIO):
    """Keeps what is written and passes it on to ``stream``."""

    def __init__(self, stream) -> None:
        super().__init__()
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(text)
        return super().write(text)


#: The name under which a Python block collects the values of its expression statements while it runs.
SHOWN = "__specimg_doc_shown__"


def _compile_block(code: str, name: str):
    """A Python block whose top-level expression statements (``X.shape   # (n, 3, k)``: what a reader at a prompt
    would see) also append their values to the list ``SHOWN``; everything else runs unchanged."""
    tree = ast.parse(code, name)
    for i, node in enumerate(tree.body):
        if isinstance(node, ast.Expr) and not (isinstance(node.value, ast.Constant) and
                                               isinstance(node.value.value, str)):
            keep = ast.Attribute(value=ast.Name(SHOWN, ast.Load()), attr="append", ctx=ast.Load())
            tree.body[i] = ast.copy_location(ast.Expr(ast.Call(func=keep, args=[node.value], keywords=[])), node)
    return compile(ast.fix_missing_locations(tree), name, "exec")


def _python(code: str, name: str, namespace: dict) -> Tuple[str, str, list]:
    """Run a Python block in the page's namespace: (the error, or ""; what it printed; the values of its
    expression statements, in order)."""
    out, shown = _Tee(sys.stdout), []
    namespace[SHOWN] = shown
    try:
        with contextlib.redirect_stdout(out):
            exec(_compile_block(code, name), namespace)
    except BaseException:  # noqa: BLE001 - the report shows it; the next block still runs
        return traceback.format_exc(limit=-8), out.getvalue(), shown
    finally:
        namespace.pop(SHOWN, None)
    return "", out.getvalue(), shown


ASSIGNMENT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=", re.M)


def _shell(code: str, state: Path, env: dict) -> Tuple[str, str, str]:
    """Run a shell block after the variables of the earlier ones; keep the variables it sets for the next.
    Returns (the error, or ""; its stdout; its stderr)."""
    names = sorted(set(ASSIGNMENT.findall(code)))
    keep = f"\ndeclare -p {' '.join(names)} >> {shlex.quote(str(state))}\n" if names else ""
    script = f"[ -f {shlex.quote(str(state))} ] && source {shlex.quote(str(state))}\n{code}{keep}"
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], capture_output=True, text=True,
                          timeout=SHELL_TIMEOUT, env=env)
    if proc.returncode != 0:
        return f"exit status {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}", proc.stdout, proc.stderr
    return "", proc.stdout, proc.stderr


def _compile_check(code: str, name: str):
    """The check's code, its ``assert`` statements rewritten as pytest rewrites a test's (the values are shown)."""
    tree = ast.parse(code, name)
    try:
        from _pytest.assertion.rewrite import rewrite_asserts
    except ImportError:  # without pytest: plain asserts
        pass
    else:
        rewrite_asserts(tree, code.encode())
    return compile(tree, name, "exec")


def _check(block: dict, namespace: dict, stdout: str, stderr: str, shown: list) -> str:
    """Run the block's check: "" when it holds, else the check, its assertion and the block's output."""
    import numpy as np
    import pandas as pd

    name = f"{block['page']}:{block['check_line']} (check of the block at line {block['line']})"
    helpers = {"Path": Path, "pd": pd, "np": np, "json": json, "re": re, "os": os}
    if block["kind"] == "python":  # a copy: what the check assigns never reaches the page's later blocks
        scope = {**helpers, **namespace, "stdout": stdout, "shown": shown, "code": block["code"]}
    else:
        scope = {"__name__": "__check__", **helpers, "stdout": stdout, "stderr": stderr, "code": block["code"]}
    try:
        exec(_compile_check(block["check"], name), scope)
    except BaseException:  # noqa: BLE001 - the report shows it
        return (f"check failed: {name}\n{block['check']}\n--- assertion ---\n{traceback.format_exc(limit=-4)}"
                f"--- stdout ---\n{stdout[-3000:]}\n--- stderr ---\n{stderr[-3000:]}")
    return ""


def _start_server() -> tuple:
    """The fork server, its socket and the environment whose PATH finds the ``specimg`` shim first."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _cli_server import write_shim

    folder = Path(tempfile.mkdtemp(prefix="spdoc"))
    sock = str(folder / "s")
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_cli_server.py")), sock])
    deadline = time.time() + 300
    while not Path(sock + ".ready").exists():
        if server.poll() is not None or time.time() > deadline:
            raise RuntimeError("the specimg fork server did not start")
        time.sleep(0.05)
    shim = write_shim(folder / "bin")
    env = {**os.environ, "SPECIMG_CLI_SERVER": sock, "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}"}
    return server, sock, env, folder


def main(blocks_json: str, results_jsonl: str) -> None:
    blocks = json.loads(Path(blocks_json).read_text())
    namespace: dict = {"__name__": "__main__"}
    state = Path(results_jsonl).with_suffix(".shell-state")
    if os.environ.get("SPECIMG_CLI_SERVER"):  # forked by a running server (the test session's): use it
        server, sock, env, folder = None, None, dict(os.environ), None
    elif any(b["run"] and b["kind"] == "shell" for b in blocks) and not os.environ.get("SPECIMG_DOC_NO_SERVER"):
        server, sock, env, folder = _start_server()
    else:
        server, sock, env, folder = None, None, dict(os.environ), None
    try:
        _run_blocks(blocks, namespace, state, env, results_jsonl)
    finally:
        if server is not None:
            from _cli_server import stop

            stop(sock)
            server.wait(timeout=60)
            shutil.rmtree(folder, ignore_errors=True)


def _run_blocks(blocks: list, namespace: dict, state: Path, env: dict, results_jsonl: str) -> None:
    with open(results_jsonl, "w", encoding="utf-8") as out:
        for b in blocks:
            t0 = time.perf_counter()
            stdout, stderr, shown = "", "", []
            if not b["run"]:
                status, error = "not-run", ""
            else:
                name = f"{b['page']}:{b['line']}"
                if b["kind"] == "python":
                    error, stdout, shown = _python(b["code"], name, namespace)
                else:
                    error, stdout, stderr = _shell(b["code"], state, env)
                if not error and b.get("check"):
                    error = _check(b, namespace, stdout, stderr, shown)
                status = "failed" if error else "ok"
            out.write(json.dumps({"line": b["line"], "status": status, "seconds": round(time.perf_counter() - t0, 2),
                                  "error": error, "stdout": stdout[-4000:], "stderr": stderr[-4000:]}) + "\n")
            out.flush()


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    main(sys.argv[1], sys.argv[2])

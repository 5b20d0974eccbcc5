"""Run the code blocks of one documentation page, in page order, in the current (empty) working folder.

    python tests/_doc_runner.py BLOCKS.json RESULTS.jsonl

``BLOCKS.json`` lists the page's blocks (``line``, ``kind``: ``python`` or ``shell``, ``code``, ``run``: false for a
block marked ``<!-- not-run: reason -->``). Python blocks share one namespace, as a reader pasting them into one
session would; shell blocks run with ``bash -e -o pipefail`` (``specimg`` on the PATH), so every failing command
fails its block, and the shell variables a block sets (``NAME=...`` at the start of a line) are set in the
page's later blocks too, as in the reader's terminal. One JSON line per block goes to ``RESULTS.jsonl``: ``line``, ``status`` (``ok``, ``failed``,
``not-run``), ``seconds`` and, for a failure, the end of its output. A failed block does not stop the page: the
later ones run too, so that one report lists every failure.

The shell blocks' ``specimg`` commands go through a fork server (``tests/_cli_server.py``) that has imported
torch, timm and the rest once, instead of paying those imports at every command; each command still runs
``specimg.cli.main`` in a process of its own, with the block's folder, environment and streams.
"""

from __future__ import annotations

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

#: The longest a shell block may run (seconds).
SHELL_TIMEOUT = 900


def _python(code: str, name: str, namespace: dict) -> str:
    try:
        exec(compile(code, name, "exec"), namespace)
    except BaseException:  # noqa: BLE001 - the report shows it; the next block still runs
        return traceback.format_exc(limit=-8)
    return ""


ASSIGNMENT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=", re.M)


def _shell(code: str, state: Path, env: dict) -> str:
    """Run a shell block after the variables of the earlier ones; keep the variables it sets for the next."""
    names = sorted(set(ASSIGNMENT.findall(code)))
    keep = f"\ndeclare -p {' '.join(names)} >> {shlex.quote(str(state))}\n" if names else ""
    script = f"[ -f {shlex.quote(str(state))} ] && source {shlex.quote(str(state))}\n{code}{keep}"
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], capture_output=True, text=True,
                          timeout=SHELL_TIMEOUT, env=env)
    if proc.returncode != 0:
        return f"exit status {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
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
            if not b["run"]:
                status, error = "not-run", ""
            else:
                name = f"{b['page']}:{b['line']}"
                error = (_python(b["code"], name, namespace) if b["kind"] == "python"
                         else _shell(b["code"], state, env))
                status = "failed" if error else "ok"
            out.write(json.dumps({"line": b["line"], "status": status, "seconds": round(time.perf_counter() - t0, 2),
                                  "error": error}) + "\n")
            out.flush()


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    main(sys.argv[1], sys.argv[2])

"""A fork server for the ``specimg`` commands of the documentation tests.

Each ``specimg ...`` line of a page would start a Python process that imports torch, timm, librosa and
scikit-learn again (about 5 s of CPU each, some 35 times over the pages). Here one server process imports
them once; the pages' shell blocks find a ``specimg`` shim first on their PATH, a few lines of Python that
hand the server their arguments, working folder, environment and standard streams (file descriptors over a
Unix socket) and exit with the command's status. The server forks a child per command, which runs
``specimg.cli.main(argv)`` exactly as the real entry point does, with the caller's streams, folder and
environment. What a command computes and prints is unchanged; only the imports are shared.

    python tests/_cli_server.py SOCKET      # serve until the socket file is removed or a stop request
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import traceback
from pathlib import Path

#: The first argument that asks the server to run a documentation page (tests/_doc_runner.py) instead of a command.
RUN_PAGE = "__run_page__"

SHIM = '''#!{python} -S
import json, os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ["SPECIMG_CLI_SERVER"])
msg = json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}).encode()
socket.send_fds(s, [struct.pack("!I", len(msg)) + msg], [0, 1, 2])
data = b""
while len(data) < 4:
    chunk = s.recv(4 - len(data))
    if not chunk:
        sys.exit(70)  # the command's process died without a status
    data += chunk
sys.exit(struct.unpack("!i", data)[0])
'''


def write_shim(folder: Path) -> Path:
    """An executable ``specimg`` in ``folder`` that runs its command through the server."""
    folder.mkdir(parents=True, exist_ok=True)
    shim = folder / "specimg"
    shim.write_text(SHIM.format(python=sys.executable))
    shim.chmod(0o755)
    return folder


def _recv_request(conn: socket.socket) -> tuple:
    msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    (size,) = struct.unpack("!I", msg[:4])
    body = msg[4:]
    while len(body) < size:
        body += conn.recv(size - len(body))
    return json.loads(body), fds


def _child(conn: socket.socket, request: dict, fds: list) -> None:
    """Run one command in this forked process, with the caller's streams, folder and environment."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the command's own worker pools wait for their children
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False, buffering=1)
        sys.stderr = open(2, "w", closefd=False, buffering=1)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        argv = request["argv"]
        if argv[:1] == [RUN_PAGE]:  # a documentation page: its runner, forked with the imports already done
            sys.argv = [str(Path(__file__).with_name("_doc_runner.py")), *argv[1:]]
            sys.path.insert(0, str(Path(__file__).parent))
            import _doc_runner

            _doc_runner.main(*argv[1:])
            code = 0
        else:
            sys.argv = ["specimg", *argv]
            from specimg.cli import main

            code = int(main(argv) or 0)
    except SystemExit as exc:  # argparse errors and --help
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported as the real command would
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            conn.sendall(struct.pack("!i", code))
        finally:
            os._exit(code)


def serve(path: str) -> None:
    import matplotlib  # noqa: F401  everything a command or a page may import, once, before any fork
    import matplotlib.pyplot  # noqa: F401
    import specimg  # noqa: F401
    import specimg.cli
    import specimg.experiment  # noqa: F401
    import specimg.stacking  # noqa: F401
    import timm  # noqa: F401

    specimg.cli.build_parser()  # every stage's subcommands
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the finished command processes are reaped by the kernel
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    Path(path + ".ready").write_text("")
    while True:
        conn, _ = server.accept()
        request, fds = _recv_request(conn)
        if request.get("stop"):
            conn.close()
            break
        if os.fork() == 0:
            server.close()
            _child(conn, request, fds)
        for fd in fds:
            os.close(fd)
        conn.close()
    server.close()


def stop(path: str) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    msg = json.dumps({"stop": True}).encode()
    socket.send_fds(s, [struct.pack("!I", len(msg)) + msg], [])
    s.close()


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    serve(sys.argv[1])

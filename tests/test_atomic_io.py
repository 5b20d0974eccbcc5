"""Every file specimg writes goes through one atomic write (specimg._io): two writers of one folder never collide,
a writer killed mid-write leaves the old file or the new one (never a mix), and no write site bypasses it."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from specimg._io import atomic_folder, atomic_path, atomic_write_csv, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]

WRITER = textwrap.dedent("""
    import sys, time
    from specimg._io import atomic_write_text
    target, letter, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for i in range(n):
        atomic_write_text(target, letter * 200_000 + "\\n")
""")


def test_two_writers_of_one_file_never_mix(tmp_path):
    """Two processes rewrite one file 60 times each while this one reads it: every read is one writer's whole
    file, and no temporary file is left."""
    target = tmp_path / "table.csv"
    atomic_write_text(target, "0" * 200_000 + "\n")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(target), letter, "60"]) for letter in "AB"]
    seen = set()
    while any(p.poll() is None for p in procs):
        text = target.read_text()
        assert len(text) == 200_001 and len(set(text[:-1])) == 1, "a read saw a partial or mixed file"
        seen.add(text[0])
    assert [p.wait() for p in procs] == [0, 0]
    assert target.read_text()[0] in "AB" and seen <= {"0", "A", "B"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]  # unique temporary names, all renamed


KILLED = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from specimg._io import atomic_folder, atomic_path
    target, kind = Path(sys.argv[1]), sys.argv[2]
    if kind == "file":
        with atomic_path(target) as tmp:
            with open(tmp, "w") as fh:
                fh.write("new,half\\n")
                fh.flush()
                print("writing", flush=True)
                time.sleep(60)  # killed here
                fh.write("never\\n")
    else:
        with atomic_folder(target, last=["report.md"]) as stage:
            (stage / "per_class.csv").write_text("new\\n")
            print("writing", flush=True)
            time.sleep(60)  # killed here
            (stage / "report.md").write_text("# new\\n")
""")


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_writer_killed_mid_write_leaves_the_old_result(kind, tmp_path):
    target = tmp_path / ("metrics.csv" if kind == "file" else "report")
    if kind == "file":
        atomic_write_csv(__import__("pandas").DataFrame({"old": [1, 2]}), target)
        before = {"metrics.csv": target.read_text()}
    else:
        with atomic_folder(target, last=["report.md"]) as stage:
            (stage / "per_class.csv").write_text("old\n")
            (stage / "report.md").write_text("# old\n")
        before = {p.name: p.read_text() for p in target.iterdir()}
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(target), kind], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    after = ({"metrics.csv": target.read_text()} if kind == "file"
             else {p.name: p.read_text() for p in target.iterdir()})
    assert after == before  # the old result, whole
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers and all(n.endswith(".tmp") for n in leftovers)  # the dead writer's temporary, never the target
    if kind == "file":  # and the next write goes through
        atomic_write_text(target, "new\n")
        assert target.read_text() == "new\n"


def test_a_failed_write_changes_nothing(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("the writer failed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    with pytest.raises(RuntimeError):
        with atomic_folder(tmp_path / "r", last=["report.md"]) as stage:
            (stage / "x.csv").write_text("x")
            raise RuntimeError("the report failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # not even the report folder


def test_a_report_folder_keeps_other_files_and_drops_stale_ones(tmp_path):
    out = tmp_path / "report"
    with atomic_folder(out, last=["report.md"]) as stage:
        (stage / "examples").mkdir()
        (stage / "examples" / "old.png").write_bytes(b"png")
        (stage / "report.md").write_text("# one\n")
    (out / "notes.txt").write_text("the user's")
    with atomic_folder(out, last=["report.md"], stale=["examples"]) as stage:
        (stage / "report.md").write_text("# two\n")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "report.md"]
    assert (out / "report.md").read_text() == "# two\n"


#: Calls that write a file under the name they are given, which must only ever be a temporary path.
DIRECT_WRITES = {"to_csv", "write_text", "write_bytes", "savefig", "save", "to_parquet", "to_json"}


def direct_writes(package: Path) -> list:
    """``file:line: call`` for write calls in ``package`` whose target is not a temporary (``tmp``/``stage``)."""
    bad = []
    for f in sorted(package.rglob("*.py")):
        if f.name == "_io.py":
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name = node.func.attr
            if name not in DIRECT_WRITES and not (name == "open" or name == "write"):
                continue
            src = ast.unparse(node)
            if name in ("open", "write") or not node.args and name not in ("write_text", "write_bytes"):
                continue  # file handles (streams into a temporary), to_csv() into a string
            # the path written: the receiver of write_text, the first argument of to_csv / savefig, any of save's
            target = ast.unparse(node.func.value) if name in ("write_text", "write_bytes") else \
                " ".join(ast.unparse(a) for a in node.args) if name == "save" else ast.unparse(node.args[0])
            if not any(word in target for word in ("tmp", "stage", "fh", "buf")):
                bad.append(f"{f.relative_to(package.parent)}:{node.lineno}: {src[:90]}")
    return bad


def test_no_write_site_bypasses_the_atomic_write():
    assert direct_writes(ROOT / "specimg") == []


def test_the_write_site_check_can_fail(tmp_path):
    pkg = tmp_path / "toy"
    pkg.mkdir()
    (pkg / "m.py").write_text("def f(frame, out, fig):\n    frame.to_csv(out / 'a.csv', index=False)\n"
                              "    fig.savefig(out / 'b.png')\n    x = frame.to_csv(index=False)\n"
                              "    frame.to_csv(tmp, index=False)\n")
    assert [b.split(": ", 1)[0] for b in direct_writes(pkg)] == ["toy/m.py:2", "toy/m.py:3"]


#: Modules allowed their own rename, and why.
OWN_RENAMES = {"specimg/datasets.py": "a downloaded dataset: a whole folder staged under a unique name, renamed once"}


def renames(package: Path) -> list:
    """``file:line: call`` of ``os.replace`` / ``os.rename`` / ``tempfile.mk*temp`` outside specimg._io."""
    bad = []
    for f in sorted(package.rglob("*.py")):
        rel = str(f.relative_to(package.parent))
        if f.name == "_io.py" or rel in OWN_RENAMES:
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in (
                    "os.replace", "os.rename", "tempfile.mkstemp", "tempfile.mkdtemp", "shutil.move"):
                bad.append(f"{rel}:{node.lineno}: {ast.unparse(node.func)}")
    return bad


def test_temporary_names_and_renames_live_in_one_helper(tmp_path):
    """A hand-made temporary name (``.log.csv.tmp``: two runs writing one folder collide) cannot come back."""
    assert renames(ROOT / "specimg") == []
    toy = tmp_path / "toy"  # the check can fail
    toy.mkdir()
    (toy / "m.py").write_text("import os\ndef f(d):\n    os.replace(d / '.log.csv.tmp', d / 'log.csv')\n")
    assert renames(toy) == ["toy/m.py:3: os.replace"]

"""Run ``specimg ARGV`` in-process, as the bad-input tables do."""

from __future__ import annotations

from typing import Iterable, Tuple

from specimg.cli import main


def cli(argv: Iterable[object], capsys) -> Tuple[int, str, str]:
    """``(exit status, stdout, stderr)`` of ``specimg ARGV``; argparse errors exit with status 2."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err

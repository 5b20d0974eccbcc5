"""Progress bars that suit both a terminal and a log file."""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(*args: Any, **kwargs: Any) -> Any:
    """``tqdm.auto.tqdm`` on stderr, redrawn at most every 30 s when stderr is not a terminal.

    In a terminal a bar redraws in place; in a log file (CI, ``nohup``,
    ``torchrun`` workers) every redraw is appended, and tqdm's default
    0.1 s interval makes megabytes of them over a long training. An explicit
    ``mininterval`` (or the ``TQDM_MININTERVAL`` environment variable, which
    tqdm reads) wins.
    """
    from tqdm.auto import tqdm

    kwargs.setdefault("file", sys.stderr)
    stream = kwargs["file"]
    if "mininterval" not in kwargs and "TQDM_MININTERVAL" not in os.environ:
        isatty = getattr(stream, "isatty", None)
        kwargs["mininterval"] = 0.1 if (isatty is not None and isatty()) else 30.0
    return tqdm(*args, **kwargs)

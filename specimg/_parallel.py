"""Worker processes of the CPU pools (render, audio decoding, prediction)."""

from __future__ import annotations

import sys

__all__ = ["single_threaded_worker", "failure_reason"]


def single_threaded_worker() -> None:
    """Initializer of a pool process: one BLAS / OpenMP (and torch) thread.

    The pool is the parallelism. Left to their defaults, each of N workers
    would also start a thread per core in OpenBLAS for the mel filterbank
    product: N x cores threads on cores threads. Measured on 2 cores, 20 files
    of 120 s rendered at 512x512 by 2 workers (``benchmarks/render.py
    --thread-ab``, medians of 3 alternated runs): 58.8 img/s with the
    default threads, 68.2 img/s with one thread each (1.16x).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    torch = sys.modules.get("torch")  # only when the parent had imported it: no import cost otherwise
    if torch is not None:
        torch.set_num_threads(1)


def failure_reason(exc: BaseException) -> str:
    """What a batch records for a file a worker could not use.

    An :class:`~specimg.exceptions.AudioError` gives its reason (the batch
    names the file beside it), another specimg error its message, anything
    else its type and message: one bad file never costs the batch its work.
    """
    from .exceptions import AudioError, SpecimgError

    if isinstance(exc, AudioError):
        return exc.reason
    if isinstance(exc, SpecimgError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"

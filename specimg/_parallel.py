"""Worker processes of the CPU pools (render, audio decoding, prediction)."""

from __future__ import annotations

import sys

__all__ = ["single_threaded_worker"]


def single_threaded_worker() -> None:
    """Initializer of a pool process: one BLAS / OpenMP (and torch) thread.

    The pool is the parallelism. Left to their defaults, each of N workers
    would also start a thread per core in OpenBLAS for the mel filterbank
    product: N x cores threads on cores threads. Measured on 2 cores, 8 files
    of 120 s rendered at 512x512 by 2 workers: 100 img/s with the default
    threads, 147 img/s with one thread each.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    torch = sys.modules.get("torch")  # only when the parent had imported it: no import cost otherwise
    if torch is not None:
        torch.set_num_threads(1)

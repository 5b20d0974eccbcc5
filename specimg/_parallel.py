"""Worker processes of the CPU pools (render, audio decoding, prediction)."""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Any, Callable, Iterator, List, Sequence, Tuple

__all__ = ["single_threaded_worker", "failure_reason", "pool_map", "WORKER_DIED"]

#: What :func:`pool_map` records for an item whose worker process died while holding it.
WORKER_DIED = ("the worker process preparing it died (killed by the system, e.g. out of memory, or a crash in a "
               "decoder); it is left out. Check the file, or retry it with fewer --workers")


def single_threaded_worker() -> None:
    """Initializer of a pool process: one BLAS / OpenMP (and torch) thread.

    The pool is the parallelism. Left to their defaults, each of N workers
    would also start a thread per core in OpenBLAS for the mel filterbank
    product: N x cores threads on cores threads. Measured on 2 cores, 20 files
    of 120 s rendered at 512x512 by 2 workers (``benchmarks/render.py
    --thread-ab``, medians of 3 alternated runs): 58.8 img/s with the
    default threads, 68.2 img/s with one thread each (1.16x).
    """
    if _CONTROLLER is not None:  # found in the parent before it forked: no second search of the loaded libraries
        _CONTROLLER.limit(limits=1)
    else:
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


#: The parent's threadpoolctl controller (the BLAS / OpenMP libraries it has loaded), which forked workers
#: inherit: they limit those libraries through it instead of each searching the loaded libraries again.
_CONTROLLER: Any = None


def _new_pool(workers: int) -> Any:
    from concurrent.futures import ProcessPoolExecutor

    from threadpoolctl import ThreadpoolController

    global _CONTROLLER
    _CONTROLLER = ThreadpoolController()  # now: the libraries loaded so far are those the workers start with
    return ProcessPoolExecutor(max_workers=workers, initializer=single_threaded_worker)


def _alone(fn: Callable[..., Any], args: Sequence[Any]) -> Any:
    """Run one item in a pool of its own: its result, or :data:`WORKER_DIED` when that process dies too."""
    from concurrent.futures.process import BrokenProcessPool

    pool = _new_pool(1)
    try:
        return pool.submit(fn, *args).result()
    except BrokenProcessPool:
        return WORKER_DIED
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def pool_map(fn: Callable[..., Any], items: Sequence[Sequence[Any]], *, workers: int,
             window: int = 2) -> Iterator[Tuple[int, Any]]:
    """``fn(*item)`` for every item, in worker processes, yielded as ``(index, result)`` in input order.

    At most ``window * workers`` items are in flight (bounded memory). A
    worker that dies (the kernel's out-of-memory killer, a segfault in a
    decoder) breaks a ``ProcessPoolExecutor`` for every item in flight; here
    those items are retried one at a time in a process of their own, so the
    one that kills its process again is reported as :data:`WORKER_DIED`
    (naming the file is the caller's part: it knows the index) and the rest
    go on in a new pool. ``fn`` must return a value for a bad item (specimg's
    jobs return the failure reason as a str), not raise.

    With ``workers=1`` the items run in this process, one after the other.
    """
    from concurrent.futures.process import BrokenProcessPool

    if workers <= 1:
        for i, args in enumerate(items):
            yield i, fn(*args)
        return
    nxt, inflight = 0, OrderedDict()  # index -> future
    pool = _new_pool(workers)
    try:
        while nxt < len(items) or inflight:
            while nxt < len(items) and len(inflight) < window * workers:
                inflight[nxt] = pool.submit(fn, *items[nxt])
                nxt += 1
            i, fut = next(iter(inflight.items()))
            try:
                result = fut.result()
            except BrokenProcessPool:
                suspects: List[int] = list(inflight)
                inflight.clear()
                pool.shutdown(wait=True, cancel_futures=True)
                for j in suspects:
                    yield j, _alone(fn, items[j])
                pool = _new_pool(workers)
                continue
            del inflight[i]
            yield i, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

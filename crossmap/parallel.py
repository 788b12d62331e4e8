"""Independent compile work in several processes, with the same results as one: each task is a
pure function of what the parent holds, so the answers are identical whatever ``jobs`` is, and
come back in task order.

Workers are forked (on systems that have ``fork``): they see the parent's data without copying
it, and only each task's small specification and its answer cross between processes. Elsewhere,
and for ``jobs`` = 1 or a single task, the tasks run in this process.
"""

from __future__ import annotations

import multiprocessing
from typing import Any, Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")

_WORK: tuple[Callable[..., Any], tuple] | None = None  # (function, shared arguments) for forked workers


def run_tasks(function: Callable[..., Any], shared: tuple, tasks: Sequence[tuple], jobs: int) -> list[Any]:
    """``[function(*shared, *task) for task in tasks]``, in up to ``jobs`` forked processes."""
    workers = min(max(1, int(jobs)), len(tasks))
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [function(*shared, *task) for task in tasks]
    global _WORK
    _WORK = (function, shared)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return pool.map(_run_one, list(tasks), chunksize=1)
    finally:
        _WORK = None


def iter_tasks(function: Callable[..., Any], shared: tuple, tasks: Sequence[tuple], jobs: int) -> Iterator[Any]:
    """``function(*shared, *task)`` for each task, yielded in task order as they are done, in up to
    ``jobs`` forked processes (lazily, one at a time, in this process). An exception a task raises
    is raised when its turn comes; the workers stop when the iteration ends or is abandoned."""
    workers = min(max(1, int(jobs)), len(tasks))
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for task in tasks:
            yield function(*shared, *task)
        return
    global _WORK
    _WORK = (function, shared)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            yield from pool.imap(_run_one, list(tasks), chunksize=1)
    finally:
        _WORK = None


def _run_one(task: tuple) -> Any:
    assert _WORK is not None, "run_tasks sets the work before forking"
    function, shared = _WORK
    return function(*shared, *task)


def in_background(function: Callable[..., T], args: tuple, enabled: bool = True) -> Callable[[], T]:
    """Start ``function(*args)`` in a forked process while this one goes on, and return a call
    that waits for its answer (raising what it raised). Without ``fork``, or when not
    ``enabled``, the returned call computes it then, in this process."""
    if not enabled or "fork" not in multiprocessing.get_all_start_methods():
        return lambda: function(*args)
    global _WORK
    _WORK = (function, args)  # the worker is forked now and sees it; nothing is pickled but the answer
    try:
        pool = multiprocessing.get_context("fork").Pool(1)
    finally:
        _WORK = None
    pending = pool.apply_async(_run_one, ((),))

    def result() -> T:
        try:
            return pending.get()
        finally:
            pool.terminate()
            pool.join()

    return result

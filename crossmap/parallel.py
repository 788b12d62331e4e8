"""Independent compile work in several processes, with the same results as one: each task is a
pure function of what the parent holds, so the answers are identical whatever ``jobs`` is, and
come back in task order.

Workers are forked (on systems that have ``fork``): they see the parent's data without copying
it, and only each task's small specification and its answer cross between processes. Elsewhere,
and for ``jobs`` = 1 or a single task, the tasks run in this process.
"""

from __future__ import annotations

import multiprocessing
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar

from crossmap.memory import resident_bytes

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


# a process holding more than this does its background work itself: its fork would show all of
# it again in the child's resident size (and copy whatever either side writes)
BACKGROUND_MAX_RESIDENT = 1 << 30


class Pending(Generic[T]):
    """The answer of work started by ``in_background``: ``result()`` waits for it once and keeps
    it (or the error the work raised)."""

    def __init__(self, forked: bool, wait: Callable[[], T]) -> None:
        self.forked = forked  # whether a forked process computes it
        self._wait: Callable[[], T] | None = wait
        self._value: T | None = None
        self._error: Exception | None = None

    def settle(self) -> None:
        """Wait for the answer now, keeping it or its error; what the work held is let go."""
        if self._wait is not None:
            try:
                self._value = self._wait()
            except Exception as exc:
                self._error = exc
            self._wait = None

    def result(self) -> T:
        """The answer (raising what the work raised)."""
        self.settle()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


def in_background(function: Callable[..., T], args: tuple, enabled: bool = True) -> Pending[T]:
    """Start ``function(*args)`` in a forked process while this one goes on. Without ``fork``,
    when not ``enabled``, or when this process holds more than ``BACKGROUND_MAX_RESIDENT`` bytes,
    it is computed now, in this process (``Pending.forked`` says which)."""
    resident = resident_bytes()
    if (not enabled or "fork" not in multiprocessing.get_all_start_methods()
            or (resident is not None and resident > BACKGROUND_MAX_RESIDENT)):
        done = Pending(False, lambda: function(*args))
        done.settle()
        return done
    global _WORK
    _WORK = (function, args)  # the worker is forked now and sees it; nothing is pickled but the answer
    try:
        pool = multiprocessing.get_context("fork").Pool(1)
    finally:
        _WORK = None
    pending = pool.apply_async(_run_one, ((),))

    def wait() -> T:
        try:
            return pending.get()
        finally:
            pool.terminate()
            pool.join()

    return Pending(True, wait)

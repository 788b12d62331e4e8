"""A small progress bar on stderr for long work (compiling, emulating datasets, training).

It draws only when stderr is a terminal or when forced, so logs and pipes stay clean."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


class Progress:
    """Counts work done out of ``total`` and redraws one status line at most 10 times a second."""

    def __init__(self, total: int, label: str, enabled: bool | None = None, unit: str = "it") -> None:
        self.total = max(int(total), 0)
        self.label = label
        self.unit = unit
        self.done = 0
        self.start = time.perf_counter()
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._last = 0.0
        self.status = ""

    def update(self, amount: int = 1, status: str = "") -> None:
        """Add ``amount`` to the work done and redraw if due."""
        self.done += amount
        if status:
            self.status = status
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = now - self.start
        frac = self.done / self.total if self.total else 1.0
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        sys.stderr.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {self.unit} "
                         f"{rate:,.0f} {self.unit}/s eta {eta:4.0f}s {self.status}\x1b[K")
        sys.stderr.flush()

    def close(self) -> None:
        """Finish the line."""
        if self.enabled:
            self._draw(time.perf_counter())
            sys.stderr.write("\n")
            sys.stderr.flush()


def track(items: Iterable[T], total: int, label: str, enabled: bool | None = None) -> Iterator[T]:
    """Iterate over ``items`` while showing a progress bar."""
    bar = Progress(total, label, enabled)
    for item in items:
        yield item
        bar.update()
    bar.close()

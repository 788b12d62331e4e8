"""Progress on stderr for long work (emulating datasets).

On a terminal it is one status line redrawn at most 10 times a second. When stderr is a file or a
pipe (``nohup``, CI logs) it is a plain line every ``LOG_EVERY`` seconds and one at the end, so a
log shows how far a long run got without filling up with redraws."""

from __future__ import annotations

import sys
import time

LOG_EVERY = 30.0  # seconds between progress lines when stderr is not a terminal
REDRAW_EVERY = 0.1  # seconds between redraws of the status line on a terminal


class Progress:
    """Counts work done out of ``total``. ``enabled``: None picks the status line on a terminal
    and log lines elsewhere; True forces the status line; False shows nothing."""

    def __init__(self, total: int, label: str, enabled: bool | None = None, unit: str = "it") -> None:
        self.total = max(int(total), 0)
        self.label = label
        self.unit = unit
        self.done = 0
        self.start = time.perf_counter()
        self.enabled = enabled is not False
        self.redraw = enabled is True or (enabled is None and sys.stderr.isatty())
        self._last = self.start
        self.status = ""

    def update(self, amount: int = 1, status: str = "") -> None:
        """Add ``amount`` to the work done and show it if due."""
        self.done += amount
        if status:
            self.status = status
        if not self.enabled:
            return
        now = time.perf_counter()
        due = now - self._last >= (REDRAW_EVERY if self.redraw else LOG_EVERY)
        if due or (self.redraw and self.done >= self.total):
            self._last = now
            self._show(now)

    def line(self, now: float) -> str:
        """The progress text: label, done of total, rate, time left, status."""
        elapsed = now - self.start
        frac = self.done / self.total if self.total else 1.0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        if self.redraw:
            width = 24
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            count = f"[{bar}] {self.done}/{self.total} {self.unit}"
        else:
            count = f"{self.done}/{self.total} {self.unit} ({100 * frac:.0f}%)"
        text = f"{self.label} {count} {rate:,.1f} {self.unit}/s eta {eta:.0f}s, {elapsed:.0f}s elapsed"
        return f"{text} {self.status}".rstrip()

    def _show(self, now: float) -> None:
        if self.redraw:
            sys.stderr.write(f"\r{self.line(now)}\x1b[K")
        else:
            sys.stderr.write(self.line(now) + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        """Show the final state (ending the status line)."""
        if not self.enabled:
            return
        self._show(time.perf_counter())
        if self.redraw:
            sys.stderr.write("\n")
            sys.stderr.flush()

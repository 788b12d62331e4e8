"""Backends that run a compiled program: ``emulator`` (fast, vectorized) and ``reference`` (plain
loops, the executable spec of DESIGN section 1). Both take ``(program, inputs, ticks=None,
**options)`` and return a ``Result``; options: ``seed``, ``sample_offset``, ``record`` (and
``path`` for the emulator)."""

from __future__ import annotations

from typing import Callable

from crossmap.errors import CrossmapError

from crossmap.backends.result import Result

BACKENDS = ("emulator", "reference")


def get_backend(name: str) -> Callable[..., Result]:
    """The run function of the backend called ``name``."""
    if name == "emulator":
        from crossmap.backends.emulator import run
    elif name == "reference":
        from crossmap.backends.reference import run
    else:
        raise CrossmapError(f"unknown backend {name!r}; available backends: {', '.join(BACKENDS)}")
    return run


__all__ = ["BACKENDS", "Result", "get_backend"]

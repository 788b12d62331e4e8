"""Backends that run a compiled program: ``emulator`` (fast, vectorized numpy), ``torch`` (the same
rules on a torch device, CPU or CUDA) and ``reference`` (plain loops, the executable spec of
docs/chip-model.md). All take ``(program, inputs, ticks=None, **options)`` and return a ``Result``;
options: ``seed``, ``sample_offset``, ``record`` (and ``path`` for the emulator; ``device``,
``precision`` and ``path`` for torch, which is imported only when this backend is used)."""

from __future__ import annotations

from typing import Callable

from crossmap.errors import CrossmapError

from crossmap.backends.result import Result

BACKENDS = ("emulator", "reference", "torch")


def get_backend(name: str) -> Callable[..., Result]:
    """The run function of the backend called ``name``."""
    if name == "emulator":
        from crossmap.backends.emulator import run
    elif name == "reference":
        from crossmap.backends.reference import run
    elif name == "torch":
        from crossmap.backends.torch_emulator import run
    else:
        raise CrossmapError(f"unknown backend {name!r}; available backends: {', '.join(BACKENDS)}")
    return run


__all__ = ["BACKENDS", "Result", "get_backend"]

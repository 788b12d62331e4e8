"""Whether crossmap's compiled (numba) kernels can run in this process; the passes and backends
that have them fall back to their numpy forms where they cannot."""

from __future__ import annotations

import importlib.util
import sys


def numba_available() -> bool:
    """Whether numba can be imported here (without importing it, which takes a few tenths of a second)."""
    return "numba" in sys.modules or importlib.util.find_spec("numba") is not None

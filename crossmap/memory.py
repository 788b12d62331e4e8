"""Handing freed memory back to the operating system between compile stages, and reading how
much this process holds.

glibc keeps memory that Python and numpy free in its heap for reuse, so the resident size of a
process that once held a large network stays at its peak even after the network is released.
``release_free_memory`` asks the allocator to return the free pages (``malloc_trim``); on a C
library without it, it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from typing import Callable


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Return the allocator's free pages to the operating system; True when it could be asked."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def resident_bytes() -> int | None:
    """This process's resident memory in bytes (Linux ``/proc``), or None where it cannot be read."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None

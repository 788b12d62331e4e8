"""The torch backend's sparse synaptic integration on the CPU (and the numpy emulator's where
numba is missing, see ``crossmap.backends.type_counts``): per (core, sample) the rows of
``W_eff`` of its active axons summed, work in proportion to the activity instead of to the
crossbar.

The bags are the set positions of a bool (cores, samples, axons) spike mask, in order: one
``flatnonzero``, the bag of (core, sample) starting at the first set position at or after
``(core * B + sample) * A``. The rows are summed by torch's ``embedding_bag`` (bags of row
indices, summed; numpy has nothing as fast: a gather then ``add.reduceat`` ran 40x slower), from a
byte table where every row of ``W_eff`` spans at most 255 (binary and ternary networks): per row
the bytes ``w - min(w)``, then float32 scale 1 and bias ``min(w)``, so ``scale * q + bias`` is
``w`` and the sums are the same integers from a quarter of the bytes. Every partial sum is an
integer below 2^24 (the chip spec checks ``A * max|w| < 2^24``), so float32 is exact in any order.

torch is optional for the numpy emulator: ``available()`` says whether this path can run.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def available() -> bool:
    """Whether torch (which runs the bag sums) can be imported here."""
    return "torch" in sys.modules or importlib.util.find_spec("torch") is not None


def _torch() -> Any:
    """torch; on its first import here its CPU threads are set to 1, as the numpy emulator runs
    one BLAS thread per emulating process (``crossmap.runner.thread_counts``)."""
    if "torch" in sys.modules:
        return sys.modules["torch"]
    import torch

    torch.set_num_threads(1)
    return torch


def byte_rows(weights: np.ndarray) -> np.ndarray | None:
    """W_eff (C, A, N) as a byte embedding table (C * A, N + 8): per row the bytes w - min(w),
    then float32 scale 1 and bias min(w); None when some row spans more than 255."""
    C, A, N = weights.shape
    flat = weights.reshape(C * A, N)
    low = flat.min(axis=1, keepdims=True)
    if (flat.max(axis=1, keepdims=True) - low > 255).any():
        return None
    table = np.empty((C * A, N + 8), np.uint8)
    np.subtract(flat, low, out=table[:, :N], casting="unsafe")
    table[:, N:N + 4] = np.ones((C * A, 1), np.float32).view(np.uint8)
    table[:, N + 4:] = low.astype(np.float32).view(np.uint8)
    return table


class BagTables:
    """The tables the sparse path reads for one program: ``W_eff`` (C, A, N) float32, its byte
    table when every row fits one (built on first use), and the fanout per flat axon."""

    def __init__(self, weights: np.ndarray, fanout: np.ndarray) -> None:
        self.weights = weights
        self.fanout = fanout.reshape(-1).astype(np.float64)   # connected neurons per flat axon
        self._bytes: np.ndarray | None | bool = False

    def byte_table(self) -> np.ndarray | None:
        """The byte table, or None (a row spans more than 255, or this torch lacks the op)."""
        if self._bytes is False:
            table = byte_rows(self.weights)
            if table is not None:
                torch = _torch()
                try:   # a build without the quantized CPU kernels: the float32 table instead
                    _byte_bag(torch, torch.from_numpy(table[:1]), torch.zeros(1, dtype=torch.int64),
                              torch.zeros(1, dtype=torch.int64))
                except (RuntimeError, AttributeError, NotImplementedError):
                    table = None
            self._bytes = table
        return self._bytes


def _byte_bag(torch: Any, table: "torch.Tensor", rows: "torch.Tensor", offsets: "torch.Tensor") -> "torch.Tensor":
    """Sums per bag of the rows of a ``byte_rows`` table (float32)."""
    return torch.ops.quantized.embedding_bag_byte_rowwise_offsets(table, rows, offsets, False, 0, False,
                                                                 None, None, False)


def bag_sums(tables: BagTables, mask: np.ndarray, cores: np.ndarray, events: np.ndarray) -> np.ndarray:
    """S (k, B, N) float32 of cores ``cores`` (k,) from their spike mask (k, B, A) bool: per
    (core, sample) the sum of the W_eff rows of its active axons. Adds the synaptic events per
    sample to ``events`` (B,) float64."""
    torch = _torch()
    k, B, A = mask.shape
    N = tables.weights.shape[2]
    flat = np.flatnonzero(mask)                              # (core, sample) * A + axon, in order
    offsets = np.searchsorted(flat, np.arange(0, k * B * A, A))
    bag = flat // A
    # W_eff row = core * A + axon = flat + (core - bag) * A, with core the bag's core
    shift = (np.repeat(cores.astype(np.int64), B) - np.arange(k * B)) * A
    rows = flat + shift[bag]
    events += np.bincount(bag, weights=tables.fanout[rows], minlength=k * B).reshape(k, B).sum(axis=0)
    rows_t, offsets_t = torch.from_numpy(rows), torch.from_numpy(offsets)
    table = tables.byte_table()
    if table is not None:
        S = _byte_bag(torch, torch.from_numpy(table), rows_t, offsets_t)
    else:
        C = tables.weights.shape[0]
        S = torch.nn.functional.embedding_bag(rows_t, torch.from_numpy(tables.weights).view(C * A, N), offsets_t,
                                              mode="sum")
    return S.numpy().reshape(k, B, N)

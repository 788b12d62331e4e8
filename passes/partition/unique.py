"""Distinct values of large arrays of non-negative integer keys without sorting them all: a table
over the keys' range when it is small next to their count, and per block of rows when the keys
come grouped by a nondecreasing block (a core) and only the block's part has a small range. Each
gives exactly what ``np.unique`` gives."""

from __future__ import annotations

import numpy as np

from crossmap.passes.partition.pack import distinct_columns

# a table over the range is used while the range is at most this many times the count, plus the minimum
TABLE_RANGE_PER_VALUE = 8
TABLE_RANGE_MIN = 1 << 20


def _table_fits(top: int, count: int) -> bool:
    return top <= TABLE_RANGE_PER_VALUE * count + TABLE_RANGE_MIN


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` of a 1-D array of non-negative integers (the
    inverse 1-D): a presence table and its running count when the range is small, else np.unique."""
    values = np.asarray(values)
    if values.size == 0 or int(values.min()) < 0 or not _table_fits(int(values.max()) + 1, values.size):
        uniq, inverse = np.unique(values, return_inverse=True)
        return uniq, inverse.reshape(-1)
    present = np.zeros(int(values.max()) + 1, bool)
    present[values] = True
    rank = np.cumsum(present, dtype=np.int64) - 1
    return np.flatnonzero(present).astype(values.dtype), rank[values]


def block_pairs(blocks: np.ndarray, lengths: np.ndarray, keys: np.ndarray, num_keys: int) -> np.ndarray:
    """``np.unique(np.repeat(blocks, lengths) * num_keys + keys)``: the distinct (block, key)
    pairs as block * num_keys + key, sorted, for nondecreasing ``blocks`` (one per run of
    ``lengths`` entries of ``keys``, each key in [0, num_keys)). Blocks are deduplicated one at a
    time (their keys through a scratch table of ``num_keys`` entries) when a table over every
    pair would be too large."""
    blocks = np.asarray(blocks, np.int64)
    lengths = np.asarray(lengths, np.int64)
    keys = np.asarray(keys, np.int64)
    if keys.size == 0:
        return np.zeros(0, np.int64)
    top = (int(blocks.max()) + 1) * num_keys
    if _table_fits(top, keys.size):
        present = np.zeros(top, bool)
        present[np.repeat(blocks, lengths) * num_keys + keys] = True
        return np.flatnonzero(present).astype(np.int64)
    ends = np.cumsum(lengths)
    change = np.flatnonzero(np.r_[True, blocks[1:] != blocks[:-1]])  # the first run of each block
    first = (ends - lengths)[change].tolist()
    last = ends[np.r_[change[1:] - 1, blocks.size - 1]].tolist()
    scratch = np.empty(num_keys, np.int64)
    parts = [distinct_columns(keys[a:b], scratch) + block * num_keys
             for block, a, b in zip(blocks[change].tolist(), first, last)]
    return np.concatenate(parts).astype(np.int64)

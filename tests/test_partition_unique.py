"""The table-based distinct keys of the partition pass equal np.unique's, on both of their paths
(a table over the whole range, and block by block or np.unique when the range is too wide)."""

from __future__ import annotations

import numpy as np
import pytest

from crossmap.passes.partition import unique
from crossmap.passes.partition.unique import block_pairs, unique_inverse


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("wide", [False, True])
def test_unique_inverse_is_numpys(seed, wide, monkeypatch):
    if wide:
        monkeypatch.setattr(unique, "TABLE_RANGE_MIN", 0)
        monkeypatch.setattr(unique, "TABLE_RANGE_PER_VALUE", 0)
    rng = np.random.default_rng(seed)
    values = rng.integers(0, int(rng.choice([1, 7, 300, 10**9])), int(rng.integers(0, 500)))
    got, inverse = unique_inverse(values)
    want, want_inverse = np.unique(values, return_inverse=True)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(inverse, want_inverse.reshape(-1))
    assert got.dtype == want.dtype


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("wide", [False, True])
def test_block_pairs_are_the_distinct_pairs(seed, wide, monkeypatch):
    if wide:  # block by block
        monkeypatch.setattr(unique, "TABLE_RANGE_MIN", 0)
        monkeypatch.setattr(unique, "TABLE_RANGE_PER_VALUE", 0)
    rng = np.random.default_rng(seed)
    runs = int(rng.integers(1, 40))
    blocks = np.sort(rng.integers(0, int(rng.choice([1, 5, 10**6])), runs))
    lengths = rng.integers(0, int(rng.choice([3, 120])), runs)
    num_keys = int(rng.integers(1, 400))
    keys = rng.integers(0, num_keys, int(lengths.sum()))
    expected = np.unique(np.repeat(blocks, lengths) * num_keys + keys)
    np.testing.assert_array_equal(block_pairs(blocks, lengths, keys, num_keys), expected)

"""The compiled kernels of binarize_deterministic give the answers of the array and Python code
they replaced (kept here as oracles), bit for bit, on random instances."""

from __future__ import annotations

import heapq

import numpy as np
import pytest
import scipy.sparse as sp

import crossmap.passes.binarize.kernels as kernels
from crossmap.passes.binarize import axon_types
from crossmap.passes.binarize.axon_types import (_conflicts, _dsatur, _unique_columns, _unique_columns_by_bytes,
                                                 assign_axon_types, distinct_per_row, distinct_values)
from crossmap.passes.binarize.build import _sum_range
from crossmap.passes.binarize.levels import row_scales


def plain_row_scales(w: sp.csr_matrix, weight_max: int, tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row at once with array code, the rows still open at each level q together."""
    n = w.shape[0]
    indptr = w.indptr.astype(np.int64)
    lengths = np.diff(indptr)
    values = np.asarray(w.data, np.float64)
    scale, data, exact = np.ones(n), np.zeros(values.size, np.int64), lengths == 0
    pending = np.flatnonzero(lengths > 0)
    if pending.size:
        a = np.abs(values)
        smallest = np.minimum.reduceat(a, indptr[pending])
        largest = np.maximum.reduceat(a, indptr[pending])
    for q in range(1, weight_max + 1):
        if pending.size == 0:
            break
        s = smallest / q
        with np.errstate(divide="ignore", invalid="ignore"):
            alive = ~(largest / s > weight_max + tol)
        pending, s, smallest, largest = pending[alive], s[alive], smallest[alive], largest[alive]
        starts, ends = indptr[pending], indptr[pending + 1]
        entries = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)] or [np.zeros(0, np.int64)])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = values[entries] / np.repeat(s, lengths[pending])
            k = np.rint(ratio)
            owner = np.repeat(np.arange(pending.size), lengths[pending])
            found = np.bincount(owner, weights=np.abs(ratio - k) > tol, minlength=pending.size) == 0
        scale[pending[found]] = s[found]
        taken = found[owner]
        with np.errstate(invalid="ignore"):  # a nan or inf weight: whatever the cast gives, the kernel's too
            data[entries[taken]] = k[taken].astype(np.int64)
        exact[pending[found]] = True
        keep = ~found
        pending, smallest, largest = pending[keep], smallest[keep], largest[keep]
    return scale, data, exact


def plain_conflicts(w: sp.csr_matrix) -> sp.csr_matrix:
    """Column conflicts as sparse products of value indicators, one per pair of values."""
    values = np.unique(w.data[w.data != 0])
    n = w.shape[1]
    indicators = [(w == v).astype(np.int64).tocsc() for v in values]
    total = sp.csr_matrix((n, n), dtype=np.int64)
    for i in range(len(values)):
        for k in range(i + 1, len(values)):
            total = total + (indicators[i].T @ indicators[k]).tocsr()
    adj = (total + total.T).tocsr()
    adj.setdiag(0)
    adj.eliminate_zeros()
    adj = (adj > 0).tocsr()
    adj.sum_duplicates()
    adj.sort_indices()
    return adj


def plain_dsatur(adj: sp.csr_matrix, colors: int) -> np.ndarray | None:
    """DSatur with a heap of (-key, vertex) entries, stale entries skipped."""
    n = adj.shape[0]
    key = np.diff(adj.indptr).astype(np.int64).tolist()
    seen = np.zeros((colors, n), bool)
    result = [-1] * n
    heap = [(-k, v) for v, k in enumerate(key)]
    heapq.heapify(heap)
    for _ in range(n):
        while True:
            negative, v = heapq.heappop(heap)
            if -negative == key[v]:
                break
        free = np.flatnonzero(~seen[:, v])
        if free.size == 0:
            return None
        c = int(free[0])
        result[v], key[v] = c, -1
        for u in adj.indices[adj.indptr[v]:adj.indptr[v + 1]].tolist():
            if not seen[c, u]:
                seen[c, u] = True
                if key[u] >= 0:
                    key[u] += n + 1
                    heapq.heappush(heap, (-key[u], u))
    return np.array(result, np.int64)


def plain_shared_assignment(w: sp.csr_matrix, types: int) -> tuple | None:
    """The shared scheme from the oracles above: (line columns, line types, synapses, weight)."""
    csc = w.tocsc()
    used = np.flatnonzero(np.diff(csc.indptr) > 0)
    colors = np.full(w.shape[1], -1, np.int64)
    if used.size:
        reps, inverse = _unique_columns_by_bytes(csc, used)
        rep_colors = plain_dsatur(plain_conflicts(w[:, used[reps]]), types)
        if rep_colors is None:
            return None
        colors[used] = rep_colors[inverse]
    lines = np.flatnonzero(colors >= 0)
    weight = np.zeros((w.shape[0], types), np.int64)
    coo = w.tocoo()
    weight[coo.row, colors[coo.col]] = coo.data
    synapses = sp.csr_matrix(csc[:, lines].T != 0)
    return lines, colors[lines], synapses, weight.astype(np.int32)


def random_integer_matrix(rng: np.random.Generator, values: tuple[int, ...] = (-2, -1, 1, 3),
                          duplicates: bool = True) -> sp.csr_matrix:
    """A sparse integer matrix with a few values, empty rows and columns, and repeated columns."""
    n, m = int(rng.integers(1, 40)), int(rng.integers(1, 60))
    dense = rng.choice(np.array(values), (n, m)) * (rng.random((n, m)) < rng.uniform(0.05, 0.5))
    dense[:, rng.random(m) < 0.1] = 0
    if duplicates and m > 2:
        copies = rng.integers(0, m, m // 3)
        dense[:, rng.integers(0, m, copies.size)] = dense[:, copies]
    w = sp.csr_matrix(dense.astype(np.int64))
    w.eliminate_zeros()
    return w


def random_graph(rng: np.random.Generator, n: int, density: float) -> sp.csr_matrix:
    upper = sp.triu(sp.random(n, n, density=density, random_state=int(rng.integers(1 << 30))), k=1)
    return ((upper + upper.T) > 0).tocsr()


def test_row_scales_equal_the_array_code_bit_for_bit():
    rng = np.random.default_rng(0)
    for trial in range(150):
        n, m = int(rng.integers(1, 15)), int(rng.integers(1, 12))
        s = rng.choice([0.1, 0.37, 1.0, 2.5, 1e-3])
        k = rng.integers(-6, 7, (n, m)) * (rng.random((n, m)) < 0.6)
        values = k * s * np.where(rng.random((n, m)) < 0.15, 1 + 0.3 * rng.random((n, m)), 1.0)
        if trial % 5 == 0:
            values = values * rng.random((n, m))
        w = sp.csr_matrix(values)
        w.eliminate_zeros()
        if trial % 9 == 0 and w.nnz:  # explicit zeros, infinities and nan: the same answers too
            w.data[rng.integers(0, w.nnz)] = rng.choice([0.0, np.inf, np.nan])
        for weight_max in (1, 3, 7, 255):
            for tol in (1e-4, 0.05):
                got, want = row_scales(w, weight_max, tol), plain_row_scales(w, weight_max, tol)
                for a, b in zip(got, want):
                    np.testing.assert_array_equal(a, b)
                    assert a.dtype == b.dtype


def test_distinct_per_row_and_distinct_values_equal_numpy_unique():
    rng = np.random.default_rng(1)
    for _ in range(60):
        w = random_integer_matrix(rng, values=tuple(rng.integers(-300, 300, 6).tolist()))
        want = [np.unique(w.data[w.indptr[j]:w.indptr[j + 1]]).size for j in range(w.shape[0])]
        assert distinct_per_row(w).tolist() == want
        for data in (w.data, w.data * 100_003, w.data.astype(np.int32), w.data.astype(float) / 3):
            got, expect = distinct_values(data), np.unique(data)
            np.testing.assert_array_equal(got, expect)
            assert got.dtype == expect.dtype


def test_unique_columns_equal_grouping_by_bytes():
    rng = np.random.default_rng(2)
    for _ in range(80):
        csc = random_integer_matrix(rng).tocsc()
        used = np.flatnonzero(np.diff(csc.indptr) > 0)
        for got, want in zip(_unique_columns(csc, used), _unique_columns_by_bytes(csc, used)):
            np.testing.assert_array_equal(got, want)


def test_a_hash_collision_falls_back_to_bytes(monkeypatch):
    csc = sp.csc_matrix(np.array([[1, 1, 0], [0, 0, 2]], np.int64))
    used = np.arange(3)
    monkeypatch.setattr(kernels, "unique_columns", lambda *args: (np.zeros(0, np.int64), np.zeros(3, np.int64), False))
    reps, inverse = _unique_columns(csc, used)
    assert reps.tolist() == [0, 2] and inverse.tolist() == [0, 0, 1]


@pytest.mark.parametrize("values", [(-1, 1), (-2, -1, 1, 3), (1, 2), (5,)])
def test_conflict_graph_equals_the_sparse_products(values):
    rng = np.random.default_rng(len(values))
    for _ in range(60):
        w = random_integer_matrix(rng, values=values)
        columns = rng.permutation(w.shape[1])[:int(rng.integers(0, w.shape[1] + 1))]
        columns = np.sort(columns) if rng.random() < 0.5 else columns
        got, want = _conflicts(w, columns), plain_conflicts(w[:, columns])
        assert got.shape == want.shape and got.has_canonical_format
        np.testing.assert_array_equal(got.indptr, want.indptr)
        np.testing.assert_array_equal(got.indices, want.indices)
        assert got.data.all()


@pytest.mark.parametrize("colors", [2, 3, 4, 9])
def test_dsatur_equals_the_heap_loop_on_larger_graphs(colors):
    rng = np.random.default_rng(colors)
    for n, density in ((1, 0.0), (30, 0.3), (400, 0.01), (1500, 0.002), (300, 0.05)):
        adj = random_graph(rng, n, density)
        got, want = _dsatur(adj, colors), plain_dsatur(adj, colors)
        assert (got is None) == (want is None)
        if got is not None:
            np.testing.assert_array_equal(got, want)


def test_assign_axon_types_equals_the_plain_shared_scheme():
    rng = np.random.default_rng(5)
    shared = 0
    for _ in range(60):
        w = random_integer_matrix(rng, values=tuple(rng.choice([-3, -2, -1, 1, 2, 4], 3, replace=False).tolist()))
        want = plain_shared_assignment(w, 4)
        got = assign_axon_types(w, 4, time_limit=0.0)
        if want is None:
            assert got.scheme == "split"
            continue
        shared += 1
        assert got.scheme == "shared"
        for a, b in zip((got.line_column, got.line_type, got.weight), (want[0], want[1], want[3])):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
        for name in ("indptr", "indices", "data"):
            a, b = getattr(got.synapses, name), getattr(want[2], name)
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
        assert got.synapses.shape == want[2].shape
    assert shared > 20


def test_shared_colors_takes_any_sparse_form():
    w = sp.coo_matrix(np.array([[1, -1, 0], [1, 1, 2]], np.int64))
    colors = axon_types.shared_colors(w, 4)
    assert colors is not None and colors[0] != colors[1]


def test_sum_range_equals_the_sums_of_negative_and_positive_weights():
    rng = np.random.default_rng(6)
    for _ in range(40):
        w = random_integer_matrix(rng)
        for matrix in (w, sp.csr_matrix((w.data, w.indices, w.indptr), shape=w.shape)):
            low, high = _sum_range(matrix)
            np.testing.assert_array_equal(low, np.asarray(w.minimum(0).sum(axis=1)).ravel())
            np.testing.assert_array_equal(high, np.asarray(w.maximum(0).sum(axis=1)).ravel())
            assert low.dtype == high.dtype == np.int64
    dup = sp.csr_matrix((np.array([2, -3]), np.array([0, 0]), np.array([0, 2])), shape=(1, 1))
    low, high = _sum_range(dup)  # duplicates add up first
    assert low.tolist() == [-1] and high.tolist() == [0]

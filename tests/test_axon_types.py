"""The DSatur colouring behind axon-type assignment: a proper colouring, in DSatur's order."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from crossmap.passes.binarize.axon_types import _dsatur


def plain_dsatur(adj: sp.csr_matrix, colors: int) -> np.ndarray | None:
    """The textbook loop: recount every vertex's saturation each step (the oracle)."""
    n = adj.shape[0]
    degree = np.diff(adj.indptr)
    result = np.full(n, -1)
    for _ in range(n):
        sat = [len({result[u] for u in adj.indices[adj.indptr[v]:adj.indptr[v + 1]] if result[u] >= 0})
               for v in range(n)]
        v = max((v for v in range(n) if result[v] < 0), key=lambda v: (sat[v], degree[v], -v))
        used = {result[u] for u in adj.indices[adj.indptr[v]:adj.indptr[v + 1]]}
        free = [c for c in range(colors) if c not in used]
        if not free:
            return None
        result[v] = free[0]
    return result


@pytest.mark.parametrize("seed", range(12))
def test_dsatur_matches_the_textbook_loop_and_colours_properly(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    upper = sp.triu(sp.random(n, n, density=rng.uniform(0.02, 0.12), random_state=seed), k=1)
    adj = ((upper + upper.T) > 0).tocsr()
    for colors in (2, 3, 4, 8, 70):
        got, want = _dsatur(adj, colors), plain_dsatur(adj, colors)
        assert (got is None) == (want is None)
        if got is not None:
            np.testing.assert_array_equal(got, want)
            rows, cols = adj.nonzero()
            assert (got[rows] != got[cols]).all()


@pytest.mark.parametrize("colors", [4, 12, 40])
def test_dsatur_on_dense_graphs_matches_the_textbook_loop(colors):
    """Dense graphs need many colours: more than fit a byte, and sometimes more than allowed."""
    n = 60
    upper = sp.triu(sp.random(n, n, density=0.7, random_state=colors), k=1)
    adj = ((upper + upper.T) > 0).tocsr()
    got, want = _dsatur(adj, colors), plain_dsatur(adj, colors)
    assert (got is None) == (want is None)
    if got is not None:
        np.testing.assert_array_equal(got, want)

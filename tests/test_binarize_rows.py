"""The whole-layer forms of the per-neuron integer helpers give the per-neuron answers."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from crossmap.passes.binarize.analysis import row_scale
from crossmap.passes.binarize.axon_types import distinct_per_row
from crossmap.passes.binarize.levels import row_scales


def random_rows(rng: np.random.Generator, trial: int) -> sp.csr_matrix:
    n, m = int(rng.integers(1, 12)), int(rng.integers(1, 10))
    s = rng.choice([0.1, 0.37, 1.0, 2.5])
    k = rng.integers(-5, 6, (n, m)) * (rng.random((n, m)) < 0.6)
    values = k * s * np.where(rng.random((n, m)) < 0.1, 1 + 0.3 * rng.random((n, m)), 1.0)  # some rows inexact
    if trial % 7 == 0:
        values = values * rng.random((n, m))  # no scale at all
    w = sp.csr_matrix(values)
    w.eliminate_zeros()
    return w


def test_row_scales_equal_row_scale_row_by_row():
    rng = np.random.default_rng(0)
    for trial in range(200):
        w = random_rows(rng, trial)
        weight_max = int(rng.choice([1, 3, 255]))
        scale, data, exact = row_scales(w, weight_max, 1e-4)
        for j in range(w.shape[0]):
            values = w.data[w.indptr[j]:w.indptr[j + 1]]
            found = row_scale(values, weight_max, 1e-4)
            if values.size == 0:
                assert exact[j] and scale[j] == 1.0
                continue
            assert (found is not None) == bool(exact[j])
            if found is not None:
                assert found[0] == scale[j]
                np.testing.assert_array_equal(found[1], data[w.indptr[j]:w.indptr[j + 1]])


def test_distinct_per_row_counts_each_rows_values():
    for trial in range(50):
        w = sp.random(15, 20, density=0.3, random_state=trial, format="csr")
        w.data = np.rint(w.data * 5) - 2
        w.eliminate_zeros()
        want = [np.unique(w.data[w.indptr[j]:w.indptr[j + 1]]).size for j in range(15)]
        assert distinct_per_row(w).tolist() == want

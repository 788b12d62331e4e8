"""Compiled kernels of ``crossmap.passes.binarize.codes`` (imported only when codes are fitted, as
importing numba takes a few tenths of a second). Every choice and sum is made in the same order as
the numpy form it replaces (``np.argmin``: the first smallest, a NaN counting as smallest;
``np.bincount``: element order), so the results are the same bit for bit."""

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _nearest(value, sums):  # pragma: no cover
    """Index of the entry of ``sums`` nearest ``value``: ``np.argmin(np.abs(value - sums))``."""
    best = 0
    gap = abs(value - sums[0])
    for s in range(1, sums.shape[0]):
        d = abs(value - sums[s])
        if gap != gap:  # a NaN is the minimum for argmin, and the first one stays
            break
        if d < gap or d != d:
            best = s
            gap = d
    return best


@numba.njit(cache=True, nogil=True)
def nearest_subsets(values, rows, sums):  # pragma: no cover
    """The subset whose sum (a row of ``sums``) is nearest each value of row ``rows[e]``."""
    out = np.empty(values.shape[0], np.int64)
    for e in range(values.shape[0]):
        out[e] = _nearest(values[e], sums[rows[e]])
    return out


@numba.njit(cache=True, nogil=True)
def assign_with_moments(values, weight, rows, sums, n):  # pragma: no cover
    """(subset, err, mass, moment) for the nearest-sum assignment: the subset of every value, each
    row's weighted squared error, and per (row, subset) the total weight and weight x value,
    each summed in element order like ``np.bincount``."""
    count = sums.shape[1]
    subset = np.empty(values.shape[0], np.int64)
    err = np.zeros(n)
    mass = np.zeros((n, count))
    moment = np.zeros((n, count))
    for e in range(values.shape[0]):
        r = rows[e]
        s = _nearest(values[e], sums[r])
        subset[e] = s
        d = values[e] - sums[r, s]
        err[r] += weight[e] * (d * d)
        mass[r, s] += weight[e]
        moment[r, s] += weight[e] * values[e]
    return subset, err, mass, moment


@numba.njit(cache=True, nogil=True)
def few_values(indptr, data, bits):  # pragma: no cover
    """(count, values): per row of a CSR matrix its distinct stored values, ascending, when there
    are at most ``bits`` of them (count bits + 1 when there are more). The values must be nonzero
    and not NaN, so that equal values are the same number."""
    n = indptr.shape[0] - 1
    count = np.zeros(n, np.int64)
    values = np.zeros((n, bits))
    for r in range(n):
        found = 0
        for e in range(indptr[r], indptr[r + 1]):
            x = data[e]
            new = True
            for q in range(found):
                if values[r, q] == x:
                    new = False
                    break
            if new:
                if found == bits:
                    found = bits + 1
                    break
                values[r, found] = x
                found += 1
        count[r] = found
        if found <= bits:
            values[r, :found] = np.sort(values[r, :found])
    return count, values


@numba.njit(cache=True, nogil=True)
def feedback_sweep(v, sums, u, order):  # pragma: no cover
    """Round the columns of ``v`` (rows, m; already in ``order``) one by one to the nearest of each
    row's ``sums``, passing each rounding error on to the later columns through the upper factor
    ``u``; returns the chosen subsets in the original column order. ``v`` is overwritten."""
    rows, m = v.shape
    chosen = np.zeros((rows, m), np.int64)
    for i in range(m):
        pivot = u[i, i]
        for r in range(rows):
            pick = _nearest(v[r, i], sums[r])
            err = (v[r, i] - sums[r, pick]) / pivot
            for j in range(i + 1, m):
                v[r, j] = v[r, j] - err * u[i, j]
            chosen[r, order[i]] = pick
    return chosen

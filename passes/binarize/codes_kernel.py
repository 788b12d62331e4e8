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
def _sorted(sums):  # pragma: no cover
    """(ascending sums, their indices, equal sums by index; whether the row has a NaN or an
    infinity) per row."""
    n, count = sums.shape
    values = np.empty((n, count))
    index = np.empty((n, count), np.int64)
    odd = np.zeros(n, np.bool_)
    for r in range(n):
        order = np.argsort(sums[r], kind="mergesort")
        for q in range(count):
            index[r, q] = order[q]
            values[r, q] = sums[r, order[q]]
            if not np.isfinite(sums[r, q]):
                odd[r] = True
    return values, index, odd


@numba.njit(cache=True, nogil=True)
def _nearest_sorted(value, values, index):  # pragma: no cover
    """``_nearest`` of a finite value among finite sums, given them ascending
    (``values``) with their indices: the distance falls towards the value and rises after it, so
    the nearest lie around the insertion point; of equally near ones the lowest index wins."""
    count = values.shape[0]
    lo, hi = 0, count
    while lo < hi:  # the first sum >= value
        mid = (lo + hi) // 2
        if values[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    gap = np.inf
    if lo > 0:
        gap = abs(value - values[lo - 1])
    if lo < count:
        gap = min(gap, abs(value - values[lo]))
    best = count
    q = lo - 1
    while q >= 0 and abs(value - values[q]) == gap:
        best = min(best, index[q])
        q -= 1
    q = lo
    while q < count and abs(value - values[q]) == gap:
        best = min(best, index[q])
        q += 1
    return best


@numba.njit(cache=True, nogil=True)
def _pick(value, r, sums, values, index, odd):  # pragma: no cover
    """``_nearest(value, sums[r])``, by the sorted sums where all are finite."""
    if odd[r] or not np.isfinite(value):
        return _nearest(value, sums[r])
    return _nearest_sorted(value, values[r], index[r])


@numba.njit(cache=True, nogil=True)
def nearest_subsets(values, rows, sums):  # pragma: no cover
    """The subset whose sum (a row of ``sums``) is nearest each value of row ``rows[e]``."""
    ordered, index, odd = _sorted(sums)
    out = np.empty(values.shape[0], np.int64)
    for e in range(values.shape[0]):
        out[e] = _pick(values[e], rows[e], sums, ordered, index, odd)
    return out


@numba.njit(cache=True, nogil=True)
def assign_with_moments(values, weight, rows, sums, n):  # pragma: no cover
    """(subset, err, mass, moment) for the nearest-sum assignment: the subset of every value, each
    row's weighted squared error, and per (row, subset) the total weight and weight x value,
    each summed in element order like ``np.bincount``."""
    count = sums.shape[1]
    ordered, index, odd = _sorted(sums)
    subset = np.empty(values.shape[0], np.int64)
    err = np.zeros(n)
    mass = np.zeros((n, count))
    moment = np.zeros((n, count))
    for e in range(values.shape[0]):
        r = rows[e]
        s = _pick(values[e], r, sums, ordered, index, odd)
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

"""Compiled kernels of the deterministic binarization: per-row scales and distinct values, column
signatures, the column conflict graph and DSatur colouring (see ``levels.py`` and
``axon_types.py``, which import this module only when they run, as importing numba takes a few
tenths of a second). Floating-point kernels use numpy's error model, so a division by zero gives
inf or nan as the array code it replaces does, with the same IEEE arithmetic and so the same bits.
"""

import numba
import numpy as np
from numba import types as nbtypes

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def row_scales(indptr, values, weight_max, tol):  # pragma: no cover
    """(scale, integer per stored value, exact) per row: for q = 1, 2, ... the scale s = min|v| / q,
    given up once max|v| / s exceeds weight_max + tol, taken once every |v / s - rint(v / s)| <= tol.
    Empty rows: scale 1, exact."""
    n = indptr.size - 1
    scale = np.ones(n)
    data = np.zeros(values.size, np.int64)
    exact = np.zeros(n, np.bool_)
    limit = weight_max + tol
    for j in range(n):
        lo, hi = indptr[j], indptr[j + 1]
        if lo == hi:
            exact[j] = True
            continue
        smallest = abs(values[lo])
        largest = smallest
        for i in range(lo + 1, hi):  # np.minimum / np.maximum semantics: a nan wins
            a = abs(values[i])
            if a < smallest or np.isnan(a):
                smallest = a if not np.isnan(smallest) else smallest
            if a > largest or np.isnan(a):
                largest = a if not np.isnan(largest) else largest
        for q in range(1, weight_max + 1):
            s = smallest / q
            if largest / s > limit:
                break
            good = True
            for i in range(lo, hi):
                ratio = values[i] / s
                if abs(ratio - np.rint(ratio)) > tol:
                    good = False
                    break
            if good:
                scale[j] = s
                for i in range(lo, hi):
                    data[i] = np.int64(np.rint(values[i] / s))
                exact[j] = True
                break
    return scale, data, exact


@numba.njit(cache=True, nogil=True)
def distinct_per_row(indptr, data):  # pragma: no cover
    """The number of distinct stored values in each row of a CSR matrix: each value is looked up
    among the row's values found so far (rows have few), or a row with many is sorted."""
    n = indptr.size - 1
    out = np.zeros(n, np.int64)
    found = np.empty(16, data.dtype)
    for j in range(n):
        lo, hi = indptr[j], indptr[j + 1]
        count = 0
        for i in range(lo, hi):
            v = data[i]
            new = True
            for t in range(count):
                if found[t] == v:
                    new = False
                    break
            if new:
                if count == found.size:
                    count = -1
                    break
                found[count] = v
                count += 1
        if count < 0:
            row = np.sort(data[lo:hi])
            count = 1
            for i in range(1, row.size):
                if row[i] != row[i - 1]:
                    count += 1
        out[j] = count
    return out


@numba.njit(cache=True, nogil=True)
def sum_range(indptr, data):  # pragma: no cover
    """(sum of the negative, sum of the positive stored values) of each row of a CSR matrix."""
    n = indptr.size - 1
    low = np.zeros(n, np.int64)
    high = np.zeros(n, np.int64)
    for j in range(n):
        for i in range(indptr[j], indptr[j + 1]):
            v = data[i]
            if v < 0:
                low[j] += v
            else:
                high[j] += v
    return low, high


@numba.njit(cache=True, nogil=True)
def _mix(h, x):  # pragma: no cover
    """One FNV-1a step over a 64-bit word."""
    return (h ^ np.uint64(x)) * _FNV_PRIME


@numba.njit(cache=True, nogil=True)
def unique_columns(indptr, indices, data, used):  # pragma: no cover
    """(reps, inverse, ok) for the CSC columns ``used``: the positions in ``used`` of the first
    column of each distinct (rows, values) signature, in order of appearance, and each used
    column's signature index. Columns are grouped by a hash and compared entry by entry with their
    group's first column; ok is False when two different columns share a hash (the caller then
    groups them another way)."""
    m = used.size
    reps = np.empty(m, np.int64)
    inverse = np.empty(m, np.int64)
    first = numba.typed.Dict.empty(key_type=nbtypes.uint64, value_type=nbtypes.int64)
    count = 0
    for pos in range(m):
        c = used[pos]
        lo, hi = indptr[c], indptr[c + 1]
        h = _mix(_FNV_OFFSET, hi - lo)
        for i in range(lo, hi):
            h = _mix(_mix(h, indices[i]), data[i])
        if h not in first:
            first[h] = count
            reps[count] = pos
            inverse[pos] = count
            count += 1
            continue
        r = first[h]
        other = used[reps[r]]
        olo = indptr[other]
        if indptr[other + 1] - olo != hi - lo:
            return reps[:count], inverse, False
        for i in range(hi - lo):
            if indices[lo + i] != indices[olo + i] or data[lo + i] != data[olo + i]:
                return reps[:count], inverse, False
        inverse[pos] = r
    return reps[:count], inverse, True


@numba.njit(cache=True, nogil=True)
def conflict_graph(indptr, indices, data, column_rep, m, values):  # pragma: no cover
    """The conflict graph over m representative columns of a CSR matrix (``column_rep[c]``: the
    representative index of column c, -1 for columns left out; ``values``: the sorted distinct
    stored values): a ~ b (a != b) when some row has different values in a and b. Returns
    (indptr, indices), neighbours sorted, no self-loops.

    Each row's kept entries are ordered by value, so an entry meets only the entries of larger
    values in its row: each conflicting pair is found from its smaller value's side, collected per
    column with a mark per column, and the lists are then merged with their transpose. Inside, the
    columns are numbered in order of first appearance, so that a row's columns lie close together
    and the marks it touches share cache lines."""
    n = indptr.size - 1
    k = values.size
    # inner numbering: representatives in order of first appearance (any left over after them)
    inner = np.full(m, -1, np.int64)
    outer = np.empty(m, np.int64)
    seen = 0
    for i in range(indptr[0], indptr[n]):
        a = column_rep[indices[i]]
        if a >= 0 and inner[a] < 0:
            inner[a] = seen
            outer[seen] = a
            seen += 1
    for a in range(m):
        if inner[a] < 0:
            inner[a] = seen
            outer[seen] = a
            seen += 1
    # the kept entries, row by row, in order of value (stable), each with the end of its value's run
    row_start = np.zeros(n + 1, np.int64)
    for r in range(n):
        kept = 0
        for i in range(indptr[r], indptr[r + 1]):
            if column_rep[indices[i]] >= 0:
                kept += 1
        row_start[r + 1] = row_start[r] + kept
    total = row_start[n]
    col = np.empty(total, np.int64)
    run_end = np.empty(total, np.int64)
    entry_row = np.empty(total, np.int64)
    level = np.empty(indptr[n] - indptr[0], np.int64)
    bucket = np.zeros(k + 1, np.int64)
    for r in range(n):
        bucket[:] = 0
        for i in range(indptr[r], indptr[r + 1]):
            if column_rep[indices[i]] >= 0:
                t = np.searchsorted(values, data[i])
                level[i - indptr[0]] = t
                bucket[t + 1] += 1
        for t in range(k):
            bucket[t + 1] += bucket[t]
        base = row_start[r]
        for i in range(indptr[r], indptr[r + 1]):
            a = column_rep[indices[i]]
            if a >= 0:
                t = level[i - indptr[0]]
                p = base + bucket[t]
                bucket[t] += 1
                col[p] = inner[a]
                entry_row[p] = r
                run_end[p] = t  # the level for now; the run's end below
        for p in range(base, row_start[r + 1]):
            run_end[p] = base + bucket[run_end[p]]
    # the kept entries of each column (a counting sort by column)
    col_start = np.zeros(m + 1, np.int64)
    for p in range(total):
        col_start[col[p] + 1] += 1
    for a in range(m):
        col_start[a + 1] += col_start[a]
    fill = col_start[:m].copy()
    by_col = np.empty(total, np.int64)
    for p in range(total):
        by_col[fill[col[p]]] = p
        fill[col[p]] += 1
    # half the neighbours: b of a larger value than a in some row
    mark = np.full(m, -1, np.int64)
    half_ptr = np.zeros(m + 1, np.int64)
    half = np.empty(max(16, 4 * m), np.int64)
    size = 0
    for a in range(m):
        for q in range(col_start[a], col_start[a + 1]):
            p = by_col[q]
            lo, hi = run_end[p], row_start[entry_row[p] + 1]
            if size + hi - lo > half.size:  # room for every entry of this run
                grown = np.empty(max(2 * half.size, size + hi - lo), np.int64)
                grown[:size] = half[:size]
                half = grown
            for e in range(lo, hi):
                b = col[e]
                if mark[b] != a:
                    mark[b] = a
                    half[size] = b
                    size += 1
        half_ptr[a + 1] = size
    # the halves with sorted rows (a transpose sorts them), merged row by row; a pair found from both
    # sides (values ordered both ways in two rows) is kept once
    back_ptr, back = _transpose(half_ptr, half[:size], m, inner, outer)
    identity = np.arange(m)
    sorted_ptr, sorted_half = _transpose(back_ptr, back, m, identity, identity)
    out_ptr = np.zeros(m + 1, np.int64)
    out = np.empty(2 * size + 1, np.int64)
    count = 0
    for a in range(m):
        i, i_end = sorted_ptr[a], sorted_ptr[a + 1]
        k, k_end = back_ptr[a], back_ptr[a + 1]
        while i < i_end or k < k_end:
            if k == k_end or (i < i_end and sorted_half[i] < back[k]):
                out[count] = sorted_half[i]
                i += 1
            elif i == i_end or back[k] < sorted_half[i]:
                out[count] = back[k]
                k += 1
            else:
                out[count] = back[k]
                i += 1
                k += 1
            count += 1
        out_ptr[a + 1] = count
    return out_ptr, out[:count].copy()


@numba.njit(cache=True, nogil=True)
def _transpose(ptr, items, m, inner, outer):  # pragma: no cover
    """The transpose of an m x m pattern in CSR form, numbered ``inner`` (row and item ``inner[a]``
    stand for a; ``outer`` the inverse), in the outer numbering; its rows come out sorted."""
    out_ptr = np.zeros(m + 1, np.int64)
    for e in range(items.size):
        out_ptr[outer[items[e]] + 1] += 1
    for a in range(m):
        out_ptr[a + 1] += out_ptr[a]
    fill = out_ptr[:m].copy()
    out = np.empty(items.size, np.int64)
    for a in range(m):
        row = inner[a]
        for e in range(ptr[row], ptr[row + 1]):
            b = outer[items[e]]
            out[fill[b]] = a
            fill[b] += 1
    return out_ptr, out


@numba.njit(cache=True, nogil=True)
def _before(key_a, v_a, key_b, v_b):  # pragma: no cover
    """Heap order: the higher key first, then the lower vertex."""
    return key_a > key_b or (key_a == key_b and v_a < v_b)


@numba.njit(cache=True, nogil=True)
def _push(heap_key, heap_v, size, k, v):  # pragma: no cover
    """Add the entry (k, v) to the binary heap of ``size`` entries (sifted up from the end)."""
    i = size
    while i > 0:
        parent = (i - 1) // 2
        if not _before(k, v, heap_key[parent], heap_v[parent]):
            break
        heap_key[i], heap_v[i] = heap_key[parent], heap_v[parent]
        i = parent
    heap_key[i], heap_v[i] = k, v


@numba.njit(cache=True, nogil=True)
def dsatur(indptr, indices, colors):  # pragma: no cover
    """(colour per vertex, ok): DSatur with at most ``colors`` colours; ok is False when a vertex
    finds every colour among its neighbours. The next vertex has the most distinct neighbour
    colours, then the highest degree, then the lowest index: the highest key saturation * (n + 1)
    + degree, kept in a binary heap with an entry per key change (stale entries are skipped)."""
    n = indptr.size - 1
    key = np.empty(n, np.int64)
    for v in range(n):
        key[v] = indptr[v + 1] - indptr[v]
    seen = np.zeros((colors, n), np.bool_)
    result = np.full(n, -1, np.int64)
    capacity = n + indices.size + 1
    heap_key = np.empty(capacity, np.int64)
    heap_v = np.empty(capacity, np.int64)
    size = 0
    step = n + 1
    for v in range(n):
        _push(heap_key, heap_v, size, key[v], v)
        size += 1
    for _ in range(n):
        while True:
            top_key, v = heap_key[0], heap_v[0]
            size -= 1
            last_key, last_v = heap_key[size], heap_v[size]
            i = 0
            while True:  # sift the last entry down from the root
                child = 2 * i + 1
                if child >= size:
                    break
                if child + 1 < size and _before(heap_key[child + 1], heap_v[child + 1], heap_key[child],
                                                heap_v[child]):
                    child += 1
                if not _before(heap_key[child], heap_v[child], last_key, last_v):
                    break
                heap_key[i], heap_v[i] = heap_key[child], heap_v[child]
                i = child
            if size > 0:
                heap_key[i], heap_v[i] = last_key, last_v
            if top_key == key[v]:
                break
        c = 0
        while c < colors and seen[c, v]:
            c += 1
        if c == colors:
            return result, False
        result[v] = c
        key[v] = -1
        flags = seen[c]
        for e in range(indptr[v], indptr[v + 1]):
            u = indices[e]
            if flags[u]:
                continue
            flags[u] = True
            if key[u] < 0:
                continue
            key[u] += step
            _push(heap_key, heap_v, size, key[u], u)
            size += 1
    return result, True


def warm_up() -> None:
    """Load (or compile) the kernels for the usual argument types, so that processes forked from
    this one find them ready."""
    indptr = np.array([0, 2, 3], np.int64)
    data = np.array([1, -1, 1], np.int64)
    indices = np.array([0, 1, 1], np.int32)
    row_scales(indptr, data.astype(np.float64), 1, 1e-4)
    distinct_per_row(indptr, data)
    sum_range(indptr, data)
    unique_columns(indptr, indices, data, np.arange(2, dtype=np.int64))
    graph_ptr, graph = conflict_graph(indptr, indices, data, np.arange(2, dtype=np.int64), 2,
                                      np.array([-1, 1], np.int64))
    dsatur(graph_ptr, graph, 4)

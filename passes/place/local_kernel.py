"""The compiled loops of ``crossmap.passes.place.local`` (``improve_by_swaps`` and ``anneal``
document what they do): imported only when a placement is improved, as importing numba takes a
few tenths of a second. Every sum runs in edge order, so the same inputs give the same placement
on every machine."""

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _dist(a, b, xs, ys, chip_xs, chip_ys, penalty):  # pragma: no cover
    d = np.float64(abs(xs[a] - xs[b]) + abs(ys[a] - ys[b]))
    if penalty != 0.0:
        d = d + penalty * np.float64(abs(chip_xs[a] - chip_xs[b]) + abs(chip_ys[a] - chip_ys[b]))
    return d


@numba.njit(cache=True, nogil=True)
def _median(values, weights):  # pragma: no cover
    """The weighted median: the value where the cumulative weight (in stable value order) first
    reaches half the total."""
    order = np.argsort(values, kind="mergesort")
    cum = np.cumsum(weights[order])
    half = cum[-1] / 2.0
    k = np.searchsorted(cum, half)
    return values[order[k]]


@numba.njit(cache=True, nogil=True)
def sweep(order, indptr, neighbor, weight, cells, occupant, offsets, xs, ys, chip_xs, chip_ys, penalty,
          width, height):  # pragma: no cover
    """Give each node of ``order`` in turn its best improving move or swap (``cells`` and
    ``occupant`` updated in place); return the summed cost saved."""
    gained = 0.0
    count = offsets.shape[0]
    cand = np.empty(count, np.int64)
    delta = np.empty(count, np.float64)
    for node in order:
        lo, hi = indptr[node], indptr[node + 1]
        here = cells[node]
        pos = cells[neighbor[lo:hi]]
        wts = weight[lo:hi]
        tx = np.int64(_median(xs[pos], wts))
        ty = np.int64(_median(ys[pos], wts))
        size = 0
        for o in range(count):
            cx, cy = tx + offsets[o, 0], ty + offsets[o, 1]
            if 0 <= cx < width and 0 <= cy < height:
                c = cy * width + cx
                if c != here:
                    cand[size] = c
                    size += 1
        if size == 0:
            continue
        stay = 0.0
        for j in range(pos.size):
            stay += _dist(here, pos[j], xs, ys, chip_xs, chip_ys, penalty) * wts[j]
        for i in range(size):
            own = 0.0
            for j in range(pos.size):
                own += _dist(cand[i], pos[j], xs, ys, chip_xs, chip_ys, penalty) * wts[j]
            d = own - stay
            other = occupant[cand[i]]
            if other >= 0:
                change = 0.0
                for e in range(indptr[other], indptr[other + 1]):
                    opos = cells[neighbor[e]]
                    change += weight[e] * (_dist(here, opos, xs, ys, chip_xs, chip_ys, penalty)
                                           - _dist(cand[i], opos, xs, ys, chip_xs, chip_ys, penalty))
                d += change
                # an edge between node and the occupant keeps its length; undo the double count
                k = min(np.searchsorted(neighbor[lo:hi], other), hi - lo - 1)
                if neighbor[lo + k] == other:
                    d += 2.0 * wts[k] * _dist(here, cand[i], xs, ys, chip_xs, chip_ys, penalty)
                else:
                    d += 0.0
            delta[i] = d
        best = 0
        for i in range(1, size):
            if delta[i] < delta[best]:
                best = i
        if delta[best] >= -1e-9:
            continue
        target = cand[best]
        other = occupant[target]
        cells[node] = target
        occupant[target] = node
        occupant[here] = other
        if other >= 0:
            cells[other] = here
        gained += -delta[best]
    return gained


@numba.njit(cache=True, nogil=True)
def _change(ax, ay, bx, by, kx, ky, mx, my, penalty):  # pragma: no cover
    """Length of an edge to a core at (kx, ky) from (ax, ay) minus its length from (bx, by)."""
    hops = abs(ax - kx) + abs(ay - ky) - abs(bx - kx) - abs(by - ky)
    if penalty == 0.0:
        return np.float64(hops)
    kcx, kcy = kx // mx, ky // my
    crossings = abs(ax // mx - kcx) + abs(ay // my - kcy) - abs(bx // mx - kcx) - abs(by // my - kcy)
    return hops + penalty * crossings


@numba.njit(cache=True, nogil=True)
def anneal_loop(pick, off_x, off_y, draw, indptr, neighbor, weight, xs, ys, occupant, width, height, mx, my,
                penalty, t_start, cooling):  # pragma: no cover
    """Judge the proposals one by one (core ``pick[s]`` moved by ``(off_x[s], off_y[s])``, swapping
    with the target cell's occupant) by the Metropolis rule; ``xs``, ``ys`` and ``occupant``
    are updated in place."""
    for step in range(pick.size):
        node = pick[step]
        fx, fy = xs[node], ys[node]
        tx, ty = fx + off_x[step], fy + off_y[step]
        if tx < 0 or ty < 0 or tx >= width or ty >= height or (tx == fx and ty == fy):
            continue
        other = occupant[ty * width + tx]
        delta = 0.0
        for e in range(indptr[node], indptr[node + 1]):
            k = neighbor[e]
            if k != other:
                delta += weight[e] * _change(tx, ty, fx, fy, xs[k], ys[k], mx, my, penalty)
        if other >= 0:
            back = 0.0
            for e in range(indptr[other], indptr[other + 1]):
                k = neighbor[e]
                if k != node:
                    back += weight[e] * _change(fx, fy, tx, ty, xs[k], ys[k], mx, my, penalty)
            delta += back
        if delta > 0 and draw[step] >= math.exp(-delta / (t_start * math.exp(cooling * step))):
            continue
        xs[node], ys[node] = tx, ty
        occupant[ty * width + tx] = node
        occupant[fy * width + fx] = other
        if other >= 0:
            xs[other], ys[other] = fx, fy

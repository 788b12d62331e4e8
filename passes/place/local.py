"""Local improvement of a placement: a vectorized move/swap search (numpy) and simulated
annealing over short-range swaps. Both only ever keep placements on distinct cells.
"""

from __future__ import annotations

import math

import numpy as np

from crossmap.mesh import Mesh
from crossmap.passes.place.cost import Adjacency
from crossmap.passes.place.start import weighted_median


def improve_by_swaps(mesh: Mesh, adj: Adjacency, cells: np.ndarray, sweeps: int = 8, radius: int = 2,
                     seed: int = 0, min_gain: float = 1e-4) -> np.ndarray:
    """Local search: each node in turn tries every cell within ``radius`` of the weighted median
    of its neighbours, moving there (swapping with the occupant) when that lowers the cost.
    Stops after ``sweeps`` sweeps or when a sweep gains less than ``min_gain`` of the cost."""
    n = cells.size
    cells = cells.copy()
    occupant = np.full(mesh.size, -1, np.int64)
    occupant[cells] = np.arange(n)
    rng = np.random.default_rng(seed)
    offsets = np.array([(dx, dy) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
                        if abs(dx) + abs(dy) <= radius], np.int64)
    degree = adj.degree()
    total = float(degree.sum()) / 2.0 or 1.0
    movable = np.nonzero(np.diff(adj.indptr) > 0)[0]
    for _ in range(sweeps):
        gained = 0.0
        for node in rng.permutation(movable).tolist():
            gained += _best_move(mesh, adj, cells, occupant, node, offsets)
        if gained < min_gain * total:
            break
    return cells


def _best_move(mesh: Mesh, adj: Adjacency, cells: np.ndarray, occupant: np.ndarray, node: int,
               offsets: np.ndarray) -> float:
    """Apply the best improving move or swap of ``node``; return the cost it saved (>= 0)."""
    nbrs, wts = adj.row(node)
    here = cells[node]
    pos = cells[nbrs]
    tx = int(weighted_median(mesh.x[pos], wts))
    ty = int(weighted_median(mesh.y[pos], wts))
    cx, cy = tx + offsets[:, 0], ty + offsets[:, 1]
    inside = (cx >= 0) & (cx < mesh.width) & (cy >= 0) & (cy < mesh.height)
    cand = (cy * mesh.width + cx)[inside]
    cand = cand[cand != here]
    if cand.size == 0:
        return 0.0
    # change of node's own edges
    delta = mesh.dist(cand[:, None], pos[None, :]) @ wts - float(mesh.dist(here, pos) @ wts)
    others = occupant[cand]
    has = np.nonzero(others >= 0)[0]
    if has.size:
        occ = others[has]
        starts, ends = adj.indptr[occ], adj.indptr[occ + 1]
        lengths = ends - starts
        seg = np.repeat(np.arange(has.size), lengths)
        flat = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(starts, lengths)
        opos = cells[adj.neighbor[flat]]
        change = adj.weight[flat] * (mesh.dist(np.full(flat.size, here), opos) - mesh.dist(cand[has][seg], opos))
        delta[has] += np.bincount(seg, weights=change, minlength=has.size)
        # an edge between node and the occupant keeps its length; undo the double count
        k = np.searchsorted(nbrs, occ)
        k = np.minimum(k, max(nbrs.size - 1, 0))
        linked = nbrs.size > 0
        if linked:
            is_nbr = nbrs[k] == occ
            delta[has] += np.where(is_nbr, 2.0 * wts[k] * mesh.dist(here, cand[has]), 0.0)
    best = int(np.argmin(delta))
    if delta[best] >= -1e-9:
        return 0.0
    target = int(cand[best])
    other = int(occupant[target])
    cells[node] = target
    occupant[target] = node
    occupant[here] = other
    if other >= 0:
        cells[other] = here
    return float(-delta[best])


def anneal(mesh: Mesh, adj: Adjacency, cells: np.ndarray, moves: int, seed: int = 0, radius: int = 3,
           start_temperature: float | None = None, end_temperature: float | None = None) -> np.ndarray:
    """Simulated annealing: ``moves`` proposals, each moving a random core to a random cell within
    ``radius`` (swapping with its occupant), accepted by the Metropolis rule under a temperature
    falling geometrically from ``start_temperature`` to ``end_temperature`` (default: the mean
    edge weight and a hundredth of it). Returns the final placement; it ends cold, so callers
    compare it with the start and keep the better."""
    n = cells.size
    if moves <= 0 or n < 2 or adj.neighbor.size == 0:
        return cells.copy()
    mean_weight = float(adj.weight.mean())
    t_start = mean_weight if start_temperature is None else start_temperature
    t_end = 0.01 * mean_weight if end_temperature is None else end_temperature
    width, height = mesh.width, mesh.height
    penalty = mesh.penalty
    mx, my = mesh.chip.mesh_x, mesh.chip.mesh_y
    nbr = [adj.neighbor[adj.indptr[i]:adj.indptr[i + 1]].tolist() for i in range(n)]
    wts = [adj.weight[adj.indptr[i]:adj.indptr[i + 1]].tolist() for i in range(n)]
    xs = (cells % width).tolist()
    ys = (cells // width).tolist()
    occupant = [-1] * (width * height)
    for i in range(n):
        occupant[ys[i] * width + xs[i]] = i
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n, moves).tolist()
    off_x = rng.integers(-radius, radius + 1, moves).tolist()
    off_y = rng.integers(-radius, radius + 1, moves).tolist()
    draw = rng.random(moves).tolist()
    cooling = math.log(t_end / t_start) / moves

    links = [list(zip(nbr[i], wts[i])) for i in range(n)]
    exp = math.exp
    if penalty:
        return _anneal_with_crossings(links, xs, ys, occupant, width, height, mx, my, penalty, pick, off_x, off_y,
                                      draw, t_start, cooling, moves)
    for step in range(moves):
        node = pick[step]
        fx = xs[node]
        fy = ys[node]
        tx = fx + off_x[step]
        ty = fy + off_y[step]
        if tx < 0 or ty < 0 or tx >= width or ty >= height or (tx == fx and ty == fy):
            continue
        other = occupant[ty * width + tx]
        # the cost change of node's edges (except to other), then of other's (except to node):
        # the same sums in the same order as a per-node helper, inlined for speed
        delta = 0.0
        for k, w in links[node]:
            if k != other:
                kx = xs[k]
                ky = ys[k]
                delta += w * (abs(tx - kx) + abs(ty - ky) - abs(fx - kx) - abs(fy - ky))
        if other >= 0:
            back = 0.0
            for k, w in links[other]:
                if k != node:
                    kx = xs[k]
                    ky = ys[k]
                    back += w * (abs(fx - kx) + abs(fy - ky) - abs(tx - kx) - abs(ty - ky))
            delta += back
        if delta > 0 and draw[step] >= exp(-delta / (t_start * exp(cooling * step))):
            continue
        xs[node] = tx
        ys[node] = ty
        occupant[ty * width + tx] = node
        occupant[fy * width + fx] = other
        if other >= 0:
            xs[other] = fx
            ys[other] = fy
    return np.asarray(ys, np.int64) * width + np.asarray(xs, np.int64)


def _anneal_with_crossings(links: list, xs: list[int], ys: list[int], occupant: list[int], width: int, height: int,
                           mx: int, my: int, penalty: float, pick: list[int], off_x: list[int], off_y: list[int],
                           draw: list[float], t_start: float, cooling: float, moves: int) -> np.ndarray:
    """The annealing loop of ``anneal`` when chip crossings cost ``penalty`` hops each."""
    exp = math.exp
    for step in range(moves):
        node = pick[step]
        fx = xs[node]
        fy = ys[node]
        tx = fx + off_x[step]
        ty = fy + off_y[step]
        if tx < 0 or ty < 0 or tx >= width or ty >= height or (tx == fx and ty == fy):
            continue
        other = occupant[ty * width + tx]
        fcx, fcy, tcx, tcy = fx // mx, fy // my, tx // mx, ty // my
        delta = 0.0
        for k, w in links[node]:
            if k != other:
                kx = xs[k]
                ky = ys[k]
                kcx, kcy = kx // mx, ky // my
                delta += w * (abs(tx - kx) + abs(ty - ky) - abs(fx - kx) - abs(fy - ky)
                              + penalty * (abs(tcx - kcx) + abs(tcy - kcy) - abs(fcx - kcx) - abs(fcy - kcy)))
        if other >= 0:
            back = 0.0
            for k, w in links[other]:
                if k != node:
                    kx = xs[k]
                    ky = ys[k]
                    kcx, kcy = kx // mx, ky // my
                    back += w * (abs(fx - kx) + abs(fy - ky) - abs(tx - kx) - abs(ty - ky)
                                 + penalty * (abs(fcx - kcx) + abs(fcy - kcy) - abs(tcx - kcx) - abs(tcy - kcy)))
            delta += back
        if delta > 0 and draw[step] >= exp(-delta / (t_start * exp(cooling * step))):
            continue
        xs[node] = tx
        ys[node] = ty
        occupant[ty * width + tx] = node
        occupant[fy * width + fx] = other
        if other >= 0:
            xs[other] = fx
            ys[other] = fy
    return np.asarray(ys, np.int64) * width + np.asarray(xs, np.int64)

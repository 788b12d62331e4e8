"""Local improvement of a placement: a move/swap search around each core's neighbours and simulated
annealing over short-range swaps, both compiled (``local_kernel``). Both only ever keep
placements on distinct cells.
"""

from __future__ import annotations

import math

import numpy as np

from crossmap.mesh import Mesh
from crossmap.passes.place.cost import Adjacency


def improve_by_swaps(mesh: Mesh, adj: Adjacency, cells: np.ndarray, sweeps: int = 8, radius: int = 2,
                     seed: int = 0, min_gain: float = 1e-4) -> np.ndarray:
    """Local search: each node in turn (in a random order per sweep) tries every cell within
    ``radius`` of the weighted median of its neighbours, moving there (swapping with the occupant)
    when that lowers the cost; of several, the one that lowers it most (the first in ``radius``
    order on a tie). Stops after ``sweeps`` sweeps or when a sweep gains less than ``min_gain`` of
    the cost. The sweeps run compiled (``local_kernel``)."""
    from crossmap.passes.place.local_kernel import sweep

    n = cells.size
    cells = np.array(cells, np.int64)
    occupant = np.full(mesh.size, -1, np.int64)
    occupant[cells] = np.arange(n)
    rng = np.random.default_rng(seed)
    offsets = np.array([(dx, dy) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
                        if abs(dx) + abs(dy) <= radius], np.int64)
    degree = adj.degree()
    total = float(degree.sum()) / 2.0 or 1.0
    movable = np.nonzero(np.diff(adj.indptr) > 0)[0]
    indptr, neighbor = adj.indptr.astype(np.int64), adj.neighbor.astype(np.int64)
    weight = adj.weight.astype(np.float64)
    coordinates = [np.ascontiguousarray(a, np.int64) for a in (mesh.x, mesh.y, mesh.chip_x, mesh.chip_y)]
    for _ in range(sweeps):
        gained = sweep(rng.permutation(movable), indptr, neighbor, weight, cells, occupant, offsets, *coordinates,
                       float(mesh.penalty), mesh.width, mesh.height)
        if gained < min_gain * total:
            break
    return cells


def anneal(mesh: Mesh, adj: Adjacency, cells: np.ndarray, moves: int, seed: int = 0, radius: int = 3,
           start_temperature: float | None = None, end_temperature: float | None = None) -> np.ndarray:
    """Simulated annealing: ``moves`` proposals, each moving a random core to a random cell within
    ``radius`` (swapping with its occupant), accepted by the Metropolis rule under a temperature
    falling geometrically from ``start_temperature`` to ``end_temperature`` (default: the mean
    edge weight and a hundredth of it). Returns the final placement; it ends cold, so callers
    compare it with the start and keep the better.

    The proposals are drawn here (numpy's generator, seeded) and judged one by one, compiled
    (``local_kernel.anneal_loop``): each cost change is summed edge by edge."""
    from crossmap.passes.place.local_kernel import anneal_loop

    n = cells.size
    if moves <= 0 or n < 2 or adj.neighbor.size == 0:
        return cells.copy()
    mean_weight = float(adj.weight.mean())
    t_start = mean_weight if start_temperature is None else start_temperature
    t_end = 0.01 * mean_weight if end_temperature is None else end_temperature
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n, moves)
    off_x = rng.integers(-radius, radius + 1, moves)
    off_y = rng.integers(-radius, radius + 1, moves)
    draw = rng.random(moves)
    cooling = math.log(t_end / t_start) / moves
    xs, ys = np.array(cells % mesh.width, np.int64), np.array(cells // mesh.width, np.int64)
    occupant = np.full(mesh.size, -1, np.int64)
    occupant[ys * mesh.width + xs] = np.arange(n)
    anneal_loop(pick, off_x, off_y, draw, adj.indptr.astype(np.int64), adj.neighbor.astype(np.int64),
                adj.weight.astype(np.float64), xs, ys, occupant, mesh.width, mesh.height, mesh.chip.mesh_x,
                mesh.chip.mesh_y, float(mesh.penalty), float(t_start), float(cooling))
    return ys * mesh.width + xs

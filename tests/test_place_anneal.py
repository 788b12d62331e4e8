"""The compiled annealing and move/swap sweeps make every decision of plain Python loops: the
same placement, bit for bit, on single- and multi-chip boards, hot and cold, dense and sparse
graphs, hubs and edges without traffic."""

import math

import numpy as np
import pytest

from crossmap.chip import ChipSpec
from crossmap.mesh import Mesh, edges_from_arrays
from crossmap.passes.place.cost import adjacency
from crossmap.passes.place.local import anneal, improve_by_swaps
from crossmap.passes.place.start import weighted_median


def plain_anneal(mesh, adj, cells, moves, seed=0, radius=3, start_temperature=None, end_temperature=None):
    """The textbook loop: one proposal at a time, the cost change summed edge by edge."""
    n = cells.size
    if moves <= 0 or n < 2 or adj.neighbor.size == 0:
        return cells.copy()
    mean_weight = float(adj.weight.mean())
    t_start = mean_weight if start_temperature is None else start_temperature
    t_end = 0.01 * mean_weight if end_temperature is None else end_temperature
    width, height, penalty = mesh.width, mesh.height, mesh.penalty
    mx, my = mesh.chip.mesh_x, mesh.chip.mesh_y
    links = [list(zip(adj.neighbor[adj.indptr[i]:adj.indptr[i + 1]].tolist(),
                      adj.weight[adj.indptr[i]:adj.indptr[i + 1]].tolist())) for i in range(n)]
    xs, ys = (cells % width).tolist(), (cells // width).tolist()
    occupant = [-1] * (width * height)
    for i in range(n):
        occupant[ys[i] * width + xs[i]] = i
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n, moves).tolist()
    off_x = rng.integers(-radius, radius + 1, moves).tolist()
    off_y = rng.integers(-radius, radius + 1, moves).tolist()
    draw = rng.random(moves).tolist()
    cooling = math.log(t_end / t_start) / moves

    def change(ax, ay, bx, by, k):
        """weight x (length from a - length from b) of the edge to k, as the compiler writes it."""
        kx, ky = xs[k], ys[k]
        hops = abs(ax - kx) + abs(ay - ky) - abs(bx - kx) - abs(by - ky)
        if not penalty:
            return hops
        kcx, kcy = kx // mx, ky // my
        return hops + penalty * (abs(ax // mx - kcx) + abs(ay // my - kcy) - abs(bx // mx - kcx) - abs(by // my - kcy))

    for step in range(moves):
        node = pick[step]
        fx, fy = xs[node], ys[node]
        tx, ty = fx + off_x[step], fy + off_y[step]
        if tx < 0 or ty < 0 or tx >= width or ty >= height or (tx == fx and ty == fy):
            continue
        other = occupant[ty * width + tx]
        delta = 0.0
        for k, w in links[node]:
            if k != other:
                delta += w * change(tx, ty, fx, fy, k)
        if other >= 0:
            back = 0.0
            for k, w in links[other]:
                if k != node:
                    back += w * change(fx, fy, tx, ty, k)
            delta += back
        if delta > 0 and draw[step] >= math.exp(-delta / (t_start * math.exp(cooling * step))):
            continue
        xs[node], ys[node] = tx, ty
        occupant[ty * width + tx] = node
        occupant[fy * width + fx] = other
        if other >= 0:
            xs[other], ys[other] = fx, fy
    return np.asarray(ys, np.int64) * width + np.asarray(xs, np.int64)


def random_case(seed, board=(1, 1), nodes=60, degree=4.0):
    rng = np.random.default_rng(seed)
    chip = ChipSpec.truenorth().replace(mesh_x=8, mesh_y=8, board_x=board[0], board_y=board[1])
    mesh = Mesh(chip, crossing_penalty=2.7)
    m = int(nodes * degree / 2)
    u, v = rng.integers(0, nodes, m), rng.integers(0, nodes, m)
    keep = u != v
    edges = edges_from_arrays(nodes, u[keep], v[keep], rng.random(int(keep.sum())) * rng.choice([1.0, 0.1, 7.3]))
    cells = rng.permutation(mesh.size)[:nodes].astype(np.int64)
    return mesh, adjacency(edges), cells


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("board", [(1, 1), (2, 2)])
def test_annealing_is_the_plain_loop(seed, board):
    nodes = [10, 60, 64, 30, 120, 64][seed]
    mesh, adj, cells = random_case(seed, board, nodes=min(nodes, mesh_cells := 64 * board[0] * board[1]),
                                   degree=[2.0, 4.0, 9.0, 3.0, 6.0, 12.0][seed])
    assert mesh_cells == mesh.size
    for temperature in (None, 50.0):
        expected = plain_anneal(mesh, adj, cells, 20_000, seed=seed, start_temperature=temperature)
        assert np.array_equal(anneal(mesh, adj, cells, 20_000, seed=seed, start_temperature=temperature), expected)


def hub_case(board):
    """A hub read by every core, a few random edges, five edges without traffic."""
    rng = np.random.default_rng(11)
    chip = ChipSpec.truenorth().replace(mesh_x=8, mesh_y=8, board_x=board[0], board_y=board[1])
    mesh = Mesh(chip, crossing_penalty=2.7)
    nodes = 50
    u = np.concatenate([np.zeros(nodes - 1, np.int64), rng.integers(1, nodes, 60)])
    v = np.concatenate([np.arange(1, nodes), rng.integers(1, nodes, 60)])
    keep = u != v
    weights = rng.random(int(keep.sum()))
    weights[:5] = 0.0
    adj = adjacency(edges_from_arrays(nodes, u[keep], v[keep], weights))
    cells = rng.permutation(mesh.size)[:nodes].astype(np.int64)
    return mesh, adj, cells


@pytest.mark.parametrize("board", [(1, 1), (2, 2)])
def test_annealing_is_the_plain_loop_with_a_hub(board):
    mesh, adj, cells = hub_case(board)
    assert np.array_equal(anneal(mesh, adj, cells, 8_000, seed=5), plain_anneal(mesh, adj, cells, 8_000, seed=5))


def plain_improve_by_swaps(mesh, adj, cells, sweeps=8, radius=2, seed=0, min_gain=1e-4):
    """The move/swap search with numpy: per node, the cost change of every candidate cell at once."""
    cells = cells.copy()
    occupant = np.full(mesh.size, -1, np.int64)
    occupant[cells] = np.arange(cells.size)
    rng = np.random.default_rng(seed)
    offsets = np.array([(dx, dy) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
                        if abs(dx) + abs(dy) <= radius], np.int64)
    total = float(adj.degree().sum()) / 2.0 or 1.0
    movable = np.nonzero(np.diff(adj.indptr) > 0)[0]
    for _ in range(sweeps):
        gained = 0.0
        for node in rng.permutation(movable).tolist():
            nbrs, wts = adj.row(node)
            here, pos = cells[node], cells[nbrs]
            tx, ty = int(weighted_median(mesh.x[pos], wts)), int(weighted_median(mesh.y[pos], wts))
            cx, cy = tx + offsets[:, 0], ty + offsets[:, 1]
            inside = (cx >= 0) & (cx < mesh.width) & (cy >= 0) & (cy < mesh.height)
            cand = (cy * mesh.width + cx)[inside]
            cand = cand[cand != here]
            if cand.size == 0:
                continue
            delta = np.array([float(mesh.dist(c, pos) @ wts) for c in cand]) - float(mesh.dist(here, pos) @ wts)
            for i, c in enumerate(cand.tolist()):
                other = occupant[c]
                if other >= 0:
                    onbrs, owts = adj.row(other)
                    delta[i] += float(np.sum(owts * (mesh.dist(here, cells[onbrs]) - mesh.dist(c, cells[onbrs]))))
                    if other in nbrs:
                        delta[i] += 2.0 * wts[np.searchsorted(nbrs, other)] * float(mesh.dist(here, c))
            best = int(np.argmin(delta))
            if delta[best] >= -1e-9:
                continue
            target, other = int(cand[best]), int(occupant[cand[best]])
            cells[node], occupant[target], occupant[here] = target, node, other
            if other >= 0:
                cells[other] = here
            gained += float(-delta[best])
        if gained < min_gain * total:
            break
    return cells


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("board", [(1, 1), (2, 2)])
def test_swap_sweeps_are_the_numpy_search(seed, board):
    """Traffic in 32nds, as measured on the default 32 samples, and a crossing penalty of 2.5:
    every sum is exact in any order, so BLAS's order gives the same sums as the edge order."""
    mesh, adj, cells = random_case(seed, board, nodes=[20, 60, 64, 40][seed], degree=[3.0, 5.0, 8.0, 2.0][seed])
    mesh = Mesh(mesh.chip, crossing_penalty=2.5)
    adj = type(adj)(adj.indptr, adj.neighbor, np.round(adj.weight * 32) / 32)
    expected = plain_improve_by_swaps(mesh, adj, cells, sweeps=3, seed=seed)
    got = improve_by_swaps(mesh, adj, cells, sweeps=3, seed=seed)
    assert np.array_equal(got, expected)
    assert not np.array_equal(got, cells)


@pytest.mark.parametrize("board", [(1, 1), (2, 2)])
def test_swap_sweeps_with_a_hub_are_the_numpy_search(board):
    mesh, adj, cells = hub_case(board)
    mesh = Mesh(mesh.chip, crossing_penalty=2.5)
    adj = type(adj)(adj.indptr, adj.neighbor, np.round(adj.weight * 32) / 32)
    assert np.array_equal(improve_by_swaps(mesh, adj, cells, sweeps=4, seed=2),
                          plain_improve_by_swaps(mesh, adj, cells, sweeps=4, seed=2))

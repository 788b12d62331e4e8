"""The batched annealing makes every decision of the plain one-by-one loop: the same placement,
bit for bit, on single- and multi-chip boards, hot and cold, dense and sparse graphs."""

import math

import numpy as np
import pytest

from crossmap.chip import ChipSpec
from crossmap.mesh import Mesh, edges_from_arrays
from crossmap.passes.place import local
from crossmap.passes.place.cost import adjacency
from crossmap.passes.place.local import anneal


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
def test_batched_annealing_is_the_plain_loop(monkeypatch, seed, board):
    nodes = [10, 60, 64, 30, 120, 64][seed]
    mesh, adj, cells = random_case(seed, board, nodes=min(nodes, mesh_cells := 64 * board[0] * board[1]),
                                   degree=[2.0, 4.0, 9.0, 3.0, 6.0, 12.0][seed])
    assert mesh_cells == mesh.size
    monkeypatch.setattr(local, "BATCH_MIN_DEGREE", 0)  # batches even for sparse graphs
    for temperature in (None, 50.0):
        expected = plain_anneal(mesh, adj, cells, 20_000, seed=seed, start_temperature=temperature)
        assert np.array_equal(anneal(mesh, adj, cells, 20_000, seed=seed, start_temperature=temperature), expected)


def test_batched_annealing_is_the_plain_loop_whatever_the_batch_size(monkeypatch):
    mesh, adj, cells = random_case(7, nodes=50, degree=5.0)
    expected = plain_anneal(mesh, adj, cells, 5_000, seed=3)
    monkeypatch.setattr(local, "BATCH_MIN_DEGREE", 0)  # batches whatever the degree
    for low, high, start, plain in ((1, 1, 1, 1), (2, 4, 3, 7), (16, 64, 16, 100), (4096, 4096, 4096, 1024)):
        monkeypatch.setattr(local, "BATCH_MIN", low)
        monkeypatch.setattr(local, "BATCH_MAX", high)
        monkeypatch.setattr(local, "BATCH_START", start)
        monkeypatch.setattr(local, "PLAIN_STRETCH", plain)
        assert np.array_equal(anneal(mesh, adj, cells, 5_000, seed=3), expected)


@pytest.mark.parametrize("board", [(1, 1), (2, 2)])
def test_batched_annealing_is_the_plain_loop_with_hubs_summed_by_numpy(monkeypatch, board):
    """Cores with many edges (a hub read by every core) have their changes summed with numpy."""
    rng = np.random.default_rng(11)
    chip = ChipSpec.truenorth().replace(mesh_x=8, mesh_y=8, board_x=board[0], board_y=board[1])
    mesh = Mesh(chip, crossing_penalty=2.7)
    nodes = 50
    u = np.concatenate([np.zeros(nodes - 1, np.int64), rng.integers(1, nodes, 60)])
    v = np.concatenate([np.arange(1, nodes), rng.integers(1, nodes, 60)])
    keep = u != v
    weights = rng.random(int(keep.sum()))
    weights[:5] = 0.0  # edges without traffic
    adj = adjacency(edges_from_arrays(nodes, u[keep], v[keep], weights))
    cells = rng.permutation(mesh.size)[:nodes].astype(np.int64)
    expected = plain_anneal(mesh, adj, cells, 8_000, seed=5)
    for hub, degree in ((0, 0), (10, 0), (1000, 0), (10, 1000)):
        monkeypatch.setattr(local, "HUB_EDGES", hub)
        monkeypatch.setattr(local, "BATCH_MIN_DEGREE", degree)
        assert np.array_equal(anneal(mesh, adj, cells, 8_000, seed=5), expected)

"""A linear-programming lower bound on the placement cost, tighter than the star bound.

Every placement gives each edge e a hop distance d_e >= 1. Write z[e, D] = 1 when d_e > D
(D = 1 .. L-1), so that d_e >= 1 + sum_D z[e, D]. Any placement satisfies:

- monotone: z[e, D] >= z[e, D + 1];
- per core v: at most c(D) = 2 D (D + 1) cells lie within D hops of a cell, so at most c(D) of
  v's edges have d <= D:  sum_{e at v} z[e, D] >= degree(v) - c(D);
- globally: n cells span at most 2 n - ceil(2 sqrt n) adjacent pairs (Harary and Harborth,
  1976), and at most n c(D) / 2 pairs within D hops, so  sum_e z[e, D] >= m - P_D(n);
- the same count of adjacent pairs for dense sets of cores (``dense_neighbourhoods``): of the
  edges inside a set S at most P_1(|S|) are one hop long;
- bicliques (``bicliques``): a cores that each talk to the same b cores, as the layers of a
  grouped CNN make them, need at least ``biclique_hops(a, b)`` hops in all (a cut argument, see
  there); an edge of a biclique gets a tail t_e >= 0 so that d_e >= 1 + sum_D z[e, D] + t_e can
  be longer than the levels the LP models.

The minimum of sum_e w_e (1 + sum_D z[e, D]) over 0 <= z <= 1 under these constraints is a lower
bound on every placement's cost (crossing penalties left out). Unlike the star bound, an edge
has one distance for both its ends, and the global count catches graphs denser than a mesh
(a core graph with more than about 2 edges per core cannot have all its edges one hop long).
The LP is solved with HiGHS (scipy) within ``MAX_ITERATIONS`` simplex iterations, a budget of
work and not of time, so the same core graph gets the same bound on every run and every machine;
above ``max_variables``, or when the iterations run out, the star bound is used alone.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from crossmap.mesh import Edges, Mesh
from crossmap.passes.place.cost import lower_bound as star_bound

MAX_VARIABLES = 400_000
MAX_WORK = 20_000_000
MAX_ITERATIONS = 20_000  # HiGHS iterations: a deterministic budget for the LP
MAX_BICLIQUE_SIDE = 256  # larger bicliques are skipped (their bound's dynamic program grows as n^2)
MAX_BICLIQUE_ENTRIES = 2_000_000  # edge entries of all biclique constraints together


def cells_within(distance: int) -> int:
    """Cells other than the centre within ``distance`` hops on an unbounded mesh."""
    return 2 * distance * (distance + 1)


def pairs_within(n: int, distance: int, cells: int) -> int:
    """An upper bound on the pairs of ``n`` distinct cells (of a board of ``cells``) at most
    ``distance`` hops apart."""
    reach = min(cells_within(distance), n - 1, cells - 1)
    bound = n * reach // 2
    if distance == 1:
        bound = min(bound, 2 * n - math.ceil(2 * math.sqrt(n)))
    return max(bound, 0)


def _shared_neighbours(edges: Edges, max_work: int) -> tuple[int, sp.csr_matrix, sp.csr_matrix, sp.csr_matrix] | None:
    """(cores, 0/1 adjacency, shared-neighbour counts common[u, w], edge index + 1 per core pair),
    or None without edges or when the scan would take more than ``max_work`` steps."""
    n, m = edges.num_nodes, int(edges.u.size)
    if m == 0:
        return None
    ends = (np.r_[edges.u, edges.v], np.r_[edges.v, edges.u])
    adj = sp.csr_matrix((np.ones(2 * m), ends), shape=(n, n))
    adj.data[:] = 1.0
    degree = np.diff(adj.indptr)
    if float(np.sum(degree.astype(np.float64) ** 2) * degree.max()) > max_work:
        return None
    edge_id = sp.csr_matrix((np.r_[np.arange(m), np.arange(m)] + 1, ends), shape=(n, n))
    return n, adj, (adj @ adj).tocsr(), edge_id


def dense_neighbourhoods(edges: Edges, cells: int, max_work: int = MAX_WORK) -> list[tuple[np.ndarray, int]]:
    """Core sets denser than any set of cells can be. For each core u: u, its neighbours, and the
    cores sharing at least two neighbours with u (in a layered network, the other readers of
    the same inputs: the two sides of a biclique). A set is kept (once) when the edges inside it
    outnumber the adjacent pairs its cells can have. Returns (edge indices inside S, |S|) per
    kept set; empty when scanning would take more than ``max_work`` steps."""
    shared = _shared_neighbours(edges, max_work)
    if shared is None:
        return []
    n, adj, common, edge_id = shared
    seen: set[tuple[int, ...]] = set()
    found = []
    for u in range(n):
        row = slice(common.indptr[u], common.indptr[u + 1])
        twins = common.indices[row][common.data[row] >= 2]
        nodes = np.unique(np.r_[u, adj.indices[adj.indptr[u]:adj.indptr[u + 1]], twins])
        key = tuple(nodes.tolist())
        if len(nodes) < 4 or key in seen:
            continue
        seen.add(key)
        inside = edge_id[nodes][:, nodes]
        members = np.unique(inside.data) - 1
        if members.size > pairs_within(len(nodes), 1, cells):
            found.append((members.astype(np.int64), len(nodes)))
    return found


def compact_biclique_hops(a: int, b: int) -> int:
    """The total hops of K(a, b) in one compact layout: the a + b cells nearest the centre of a
    square, the smaller side nearest. An upper bound on the optimum (and a check on
    ``biclique_hops``)."""
    n = a + b
    side = math.isqrt(n - 1) + 1
    y, x = np.divmod(np.arange(side * side), side)
    centre = (side - 1) / 2.0
    order = np.lexsort((np.abs(x - centre) + np.abs(y - centre), (x - centre) ** 2 + (y - centre) ** 2))[:n]
    small, large = order[:min(a, b)], order[min(a, b):]
    hops = np.abs(x[small][:, None] - x[large][None, :]) + np.abs(y[small][:, None] - y[large][None, :])
    return int(hops.sum())


@lru_cache(maxsize=4096)
def biclique_hops(a: int, b: int) -> int:
    """A lower bound on the total hops of the a x b edges between a cores and b other cores, all
    on distinct cells. The horizontal part of the total is, summed over the vertical lines
    between mesh columns, (A left)(B right) + (A right)(B left); with k cores left of a line
    that is at least h(k), its minimum over how the k split into A and B. Say the cores use R
    rows and C columns (R C >= n = a + b). Reading the used columns left to right, k grows by
    1..R cores at each of C steps, so the horizontal part is at least the cheapest such path
    from 0 to n paying h at each of its C - 1 stops; the vertical part likewise with rows and
    columns swapped; the bound is the least total over R and C. (Every stop costs at least the
    smallest h not yet used, which rules out most R and C before the paths are priced.)"""
    n = a + b
    h = np.zeros(n + 1)
    for k in range(1, n):
        left_a = np.arange(max(0, k - b), min(a, k) + 1)
        left_b = k - left_a
        h[k] = np.min(left_a * (b - left_b) + (a - left_a) * left_b)
    stops = np.concatenate([[0.0], np.cumsum(np.sort(h[1:n]))])  # [j]: the j smallest h summed
    ceiling = compact_biclique_hops(a, b)  # the optimum is at most this, so larger totals never win
    longest = int(np.searchsorted(stops, ceiling, side="right"))  # C - 1 stops cost > ceiling beyond
    steps = max(1, min(n, longest))
    paths = _stepped_paths(h, steps)  # [cap - 1, s - 1]: s steps of 1..cap, or inf
    best = float(ceiling)
    for rows in range(1, steps + 1):
        columns = np.arange(max(1, -(-n // rows)), steps + 1)
        if columns.size:
            total = paths[rows - 1, columns - 1] + paths[columns - 1, rows - 1]
            best = min(best, float(total.min()))
    return int(np.ceil(best - 1e-9))


def _stepped_paths(h: np.ndarray, steps: int) -> np.ndarray:
    """cost[cap - 1, s - 1] = the least sum of h over the stops k_1 < ... < k_(s-1) of a path
    0 = k_0 < ... < k_s = n = len(h) - 1 in steps of 1..cap (h[n] = 0), for cap, s <= steps."""
    n = h.size - 1
    cost = np.full((steps, steps), np.inf)
    for cap in range(1, steps + 1):
        reach = np.full(n + 1, np.inf)
        reach[0] = 0.0
        for s in range(1, steps + 1):
            reach = _trailing_min(reach, cap) + h
            reach[0] = np.inf
            cost[cap - 1, s - 1] = reach[n]
    return cost


def _trailing_min(values: np.ndarray, width: int) -> np.ndarray:
    """out[k] = min(values[k - width .. k - 1]) (inf where that is empty)."""
    padded = np.concatenate([np.full(width, np.inf), values[:-1]])
    return np.lib.stride_tricks.sliding_window_view(padded, width).min(1)


def bicliques(edges: Edges, max_work: int = MAX_WORK) -> list[tuple[np.ndarray, int, int]]:
    """Complete bipartite subgraphs K(a, b), a, b >= 2, found greedily: from each core, the cores
    sharing the most neighbours with it join its side while the edges between the sides do not
    decrease. Returns (edge indices, a, b) per distinct biclique, largest first, at most
    ``MAX_BICLIQUE_ENTRIES`` edge entries in all; empty when the scan would take more than
    ``max_work`` steps."""
    shared = _shared_neighbours(edges, max_work)
    if shared is None:
        return []
    n, adj, common, edge_id = shared
    found: dict[tuple, tuple[np.ndarray, int, int]] = {}
    for u in range(n):
        side = adj.indices[adj.indptr[u]:adj.indptr[u + 1]]
        row = slice(common.indptr[u], common.indptr[u + 1])
        others, shared = common.indices[row], common.data[row]
        keep = (others != u) & (shared >= 2)
        members = [u]
        for w in others[keep][np.lexsort((others[keep], -shared[keep]))]:
            joint = np.intersect1d(side, adj.indices[adj.indptr[w]:adj.indptr[w + 1]], assume_unique=True)
            if joint.size >= 2 and joint.size * (len(members) + 1) >= side.size * len(members):
                side = joint
                members.append(int(w))
        if len(members) < 2 or side.size < 2 or max(len(members), side.size) > MAX_BICLIQUE_SIDE:
            continue
        one, other = tuple(sorted(members)), tuple(side.tolist())
        key = min((one, other), (other, one))
        if key not in found:
            ids = np.asarray(edge_id[list(one)][:, list(other)].todense()).reshape(-1) - 1
            found[key] = (ids.astype(np.int64), len(one), len(other))
    chosen, entries = [], 0
    for ids, a, b in sorted(found.values(), key=lambda item: -item[0].size):
        if entries + ids.size <= MAX_BICLIQUE_ENTRIES:
            chosen.append((ids, a, b))
            entries += ids.size
    return chosen


def lp_bound(mesh: Mesh, edges: Edges, max_variables: int = MAX_VARIABLES,
             max_iterations: int = MAX_ITERATIONS) -> float | None:
    """The LP lower bound described in the module docstring, or None when the LP would have more
    than ``max_variables`` variables or HiGHS does not finish within ``max_iterations``
    iterations (deterministic work, so the answer does not depend on the machine's speed)."""
    m, n = int(edges.u.size), edges.num_nodes
    if m == 0:
        return 0.0
    degree = np.bincount(np.concatenate([edges.u, edges.v]), minlength=n)
    dense = dense_neighbourhoods(edges, mesh.size)
    blocks = [(ids, biclique_hops(a, b)) for ids, a, b in bicliques(edges)]
    blocks = [(ids, hops) for ids, hops in blocks if hops > ids.size]
    levels = 1 if dense or blocks else 0  # z[e, D] for D = 1 .. levels: only where some constraint can bind
    while degree.max() > cells_within(levels + 1) or m > pairs_within(n, levels + 1, mesh.size):
        levels += 1
    if levels == 0:
        return float(edges.w.sum())
    tails = np.unique(np.concatenate([ids for ids, _ in blocks])) if blocks else np.zeros(0, np.int64)
    if m * levels + tails.size > max_variables:
        return None

    def var(e: np.ndarray, level: int) -> np.ndarray:  # level is 1-based
        return e * levels + (level - 1)

    ends = np.concatenate([edges.u, edges.v])
    order = np.argsort(ends, kind="stable")
    by_node = order % m  # edge indices grouped by end node
    starts = np.searchsorted(ends[order], np.arange(n + 1))
    rows, cols, vals, rhs = [], [], [], []  # A_ub z <= b_ub, written as -sum z <= -(needed)
    row = 0
    everything = np.arange(m)
    for level in range(1, levels + 1):
        need = degree - cells_within(level)
        for v in np.flatnonzero(need > 0):
            at_v = by_node[starts[v]:starts[v + 1]]
            rows.append(np.full(at_v.size, row))
            cols.append(var(at_v, level))
            vals.append(-np.ones(at_v.size))
            rhs.append(-float(need[v]))
            row += 1
        short = m - pairs_within(n, level, mesh.size)
        if short > 0:
            rows.append(np.full(m, row))
            cols.append(var(everything, level))
            vals.append(-np.ones(m))
            rhs.append(-float(short))
            row += 1
        if level == 1:
            for members, size in dense:
                rows.append(np.full(members.size, row))
                cols.append(var(members, 1))
                vals.append(-np.ones(members.size))
                rhs.append(-float(members.size - pairs_within(size, 1, mesh.size)))
                row += 1
        if level < levels:  # z[e, level + 1] - z[e, level] <= 0
            rows.append(np.repeat(np.arange(row, row + m), 2))
            cols.append(np.stack([var(everything, level + 1), var(everything, level)], 1).reshape(-1))
            vals.append(np.tile([1.0, -1.0], m))
            rhs.extend([0.0] * m)
            row += m
    tail_of = np.full(m, -1, np.int64)
    tail_of[tails] = m * levels + np.arange(tails.size)
    for ids, hops in blocks:  # sum over the biclique of (sum_D z[e, D] + t_e) >= hops - edges
        entries = np.concatenate([var(np.repeat(ids, levels), np.tile(np.arange(1, levels + 1), ids.size)),
                                  tail_of[ids]])
        rows.append(np.full(entries.size, row))
        cols.append(entries)
        vals.append(-np.ones(entries.size))
        rhs.append(-float(hops - ids.size))
        row += 1
    width = m * levels + tails.size
    a_ub = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(row, width))
    cost = np.concatenate([np.repeat(edges.w.astype(np.float64), levels), edges.w[tails].astype(np.float64)])
    upper = np.concatenate([np.ones(m * levels), np.full(tails.size, np.inf)])
    from scipy.optimize import linprog  # imported here: scipy.optimize takes a second to load

    result = linprog(cost, A_ub=a_ub, b_ub=np.asarray(rhs), bounds=np.stack([np.zeros(width), upper], 1),
                     method="highs", options={"maxiter": int(max_iterations)})
    if result.status != 0:
        return None
    # the LP optimum minus a hair for the solver's tolerance, so the bound stays a bound
    return float(edges.w.sum() + result.fun - 1e-7 * max(1.0, abs(result.fun)))


STAR = "star: each core's heaviest edges on its nearest cells, halved"
LP = ("LP: one distance per edge, cells within D hops of a core and pairs of cells within D hops counted, "
      "bicliques cut")


def placement_lower_bound(mesh: Mesh, edges: Edges, max_variables: int = MAX_VARIABLES) -> tuple[float, str]:
    """The best lower bound available and which one it is: the LP bound when it is small enough
    and higher, else the star bound of ``placement_cost.lower_bound`` (chip crossings not bounded)."""
    star = star_bound(mesh, edges)
    lp = lp_bound(mesh, edges, max_variables)
    if lp is not None and lp > star:
        return lp, LP
    return star, STAR

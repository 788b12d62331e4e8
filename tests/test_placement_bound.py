"""The LP lower bound on placement cost: never above the optimum (brute force), exact on graphs
where the counting arguments are tight, and never below the star bound."""

import itertools

import networkx as nx
import numpy as np
import pytest

from crossmap.chip import ChipSpec
from crossmap.passes.place.bound import (biclique_hops, bicliques, compact_biclique_hops, dense_neighbourhoods, lp_bound,
                                      pairs_within, placement_lower_bound)
from crossmap.mesh import Mesh, edges_from_graph
from crossmap.passes.place.cost import lower_bound
from place_graphs import brute_force, random_graph, tiny_chip


def graph_of(pairs, weight=1.0) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_edges_from((u, v, {"traffic": weight}) for u, v in pairs)
    return graph


@pytest.mark.parametrize("n,m,seed", [(5, 8, 0), (6, 10, 1), (6, 14, 2), (5, 10, 3), (6, 12, 4)])
def test_bound_never_exceeds_the_optimum(n, m, seed):
    graph = random_graph(n, m, seed)
    mesh = Mesh(tiny_chip())
    best = brute_force(tiny_chip(), graph)
    edges = edges_from_graph(graph)
    assert lp_bound(mesh, edges) <= best + 1e-6
    assert lower_bound(mesh, edges) <= placement_lower_bound(mesh, edges)[0] <= best + 1e-6


def test_a_hub_has_one_distance_per_edge():
    # the star bound halves: (4*1 + 2*2 + 6) / 2 = 7; one distance per edge gives the optimum 8
    edges = edges_from_graph(graph_of((0, k) for k in range(1, 7)))
    mesh = Mesh(ChipSpec.truenorth())
    assert lower_bound(mesh, edges) == pytest.approx(7.0)
    assert lp_bound(mesh, edges) == pytest.approx(8.0, abs=1e-5)


def biclique(a: int, b: int) -> nx.DiGraph:
    return graph_of((i, a + j) for i in range(a) for j in range(b))


def test_a_biclique_cannot_have_all_edges_one_hop():
    # K(4,4): 16 edges, but 8 cells have at most 2*8 - ceil(2 sqrt 8) = 10 adjacent pairs (22 hops);
    # the cut argument of biclique_hops says 28, the optimum (test_biclique_hops_on_a_4x4_board)
    edges = edges_from_graph(biclique(4, 4))
    mesh = Mesh(ChipSpec.truenorth())
    assert pairs_within(8, 1, mesh.size) == 10
    assert lower_bound(mesh, edges) == pytest.approx(16.0)
    assert dense_neighbourhoods(edges, mesh.size)  # the biclique is found as a dense set
    assert [(a, b) for _, a, b in bicliques(edges)] == [(4, 4)]
    assert biclique_hops(4, 4) == 28
    assert lp_bound(mesh, edges) == pytest.approx(28.0, abs=1e-5)


@pytest.mark.parametrize("a,b,mesh", [(2, 2, 4), (2, 3, 4), (3, 3, 3), (2, 4, 3), (4, 4, 3)])
def test_biclique_hops_never_exceed_the_optimum(a, b, mesh):
    best = brute_force(tiny_chip(mesh), biclique(a, b))
    assert a * b <= biclique_hops(a, b) <= best
    if a + b > 4:  # only K(2,2) fits with every edge one hop long (a 2 x 2 square)
        assert biclique_hops(a, b) > a * b



@pytest.mark.parametrize("a,b,optimum", [(4, 4, 28), (3, 5, 26), (3, 4, 19), (2, 6, 18)])
def test_biclique_hops_on_a_4x4_board(a, b, optimum):
    """Every placement of K(a, b) on a 4 x 4 board, by brute force: the bound is at most the
    optimum, and equal to it where the cut argument is tight."""
    cells = np.array([(x, y) for y in range(4) for x in range(4)])
    chosen = cells[np.array(list(itertools.combinations(range(16), a + b)))]  # (sets, a + b, 2)
    best = None
    for side in itertools.combinations(range(a + b), a):
        other = [i for i in range(a + b) if i not in side]
        hops = np.abs(chosen[:, list(side), None, :] - chosen[:, None, other, :]).sum((1, 2, 3))
        best = int(hops.min()) if best is None else min(best, int(hops.min()))
    assert best == optimum
    assert biclique_hops(a, b) <= optimum
    if (a, b) in ((4, 4), (2, 6)):
        assert biclique_hops(a, b) == optimum


@pytest.mark.parametrize("a,b", [(32, 8), (8, 2), (16, 16), (12, 5), (64, 8), (100, 3)])
def test_biclique_hops_stay_below_a_compact_layout(a, b):
    """A bound above the cost of one real layout would be no bound: K(32, 8) was once priced at
    932 hops, and the layout of ``compact_biclique_hops`` takes 910."""
    assert a * b < biclique_hops(a, b) <= compact_biclique_hops(a, b)

def test_a_biclique_inside_a_bigger_graph_is_found_and_cut():
    # K(6,3) plus a tail: the LP sees the biclique and prices it above the per-core counts
    graph = biclique(6, 3)
    graph.add_edges_from([(8, 9, {"traffic": 1.0}), (9, 10, {"traffic": 1.0})])
    edges = edges_from_graph(graph)
    found = bicliques(edges)
    assert [(a, b) for _, a, b in found] == [(6, 3)] and found[0][0].size == 18
    mesh = Mesh(ChipSpec.truenorth())
    assert lp_bound(mesh, edges) >= biclique_hops(6, 3) + 2 - 1e-5


def test_a_mesh_shaped_graph_is_bounded_exactly():
    grid = nx.grid_2d_graph(3, 4)
    index = {node: i for i, node in enumerate(grid.nodes)}
    edges = edges_from_graph(graph_of((index[a], index[b]) for a, b in grid.edges))
    mesh = Mesh(ChipSpec.truenorth())
    assert lp_bound(mesh, edges) == pytest.approx(float(edges.u.size), abs=1e-5)


def test_too_large_falls_back_to_the_star_bound():
    edges = edges_from_graph(graph_of((0, k) for k in range(1, 7)))
    mesh = Mesh(ChipSpec.truenorth())
    assert lp_bound(mesh, edges, max_variables=1) is None
    bound, kind = placement_lower_bound(mesh, edges, max_variables=1)
    assert bound == pytest.approx(lower_bound(mesh, edges)) and kind.startswith("star")


def test_the_lp_is_bounded_by_iterations_not_time():
    edges = edges_from_graph(graph_of([(a, b) for a in range(6) for b in range(6, 9)] + [(0, 1), (1, 2)]))
    mesh = Mesh(ChipSpec.truenorth())
    assert lp_bound(mesh, edges, max_iterations=0) is None
    first = lp_bound(mesh, edges)
    assert first is not None and first == lp_bound(mesh, edges)

"""Shared helpers of the placement tests: a tiny chip, random core graphs and the brute-force
optimum of a placement."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np

from crossmap.chip import ChipSpec
from crossmap.mesh import Mesh, edges_from_graph


def tiny_chip(mesh: int = 3, board: int = 1) -> ChipSpec:
    """A chip of mesh x mesh cores (board x board of them) with tiny cores."""
    return ChipSpec(name="tiny", axons_per_core=4, neurons_per_core=4, mesh_x=mesh, mesh_y=mesh,
                    board_x=board, board_y=board)


def random_graph(n: int, edges: int, seed: int) -> nx.DiGraph:
    """``n`` cores and ``edges`` random edges with integer traffic 1..19."""
    rng = np.random.default_rng(seed)
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n))
    for _ in range(edges):
        u, v = rng.choice(n, 2, replace=False)
        graph.add_edge(int(u), int(v), traffic=float(rng.integers(1, 20)))
    return graph


def brute_force(chip: ChipSpec, graph: nx.DiGraph, penalty: float = 0.0) -> float:
    """The optimal placement cost, by trying every placement."""
    mesh = Mesh(chip, penalty)
    edges = edges_from_graph(graph)
    perms = np.array(list(itertools.permutations(range(mesh.size), graph.number_of_nodes())))
    cost = (mesh.dist(perms[:, edges.u], perms[:, edges.v]) * edges.w).sum(axis=1)
    return float(cost.min())

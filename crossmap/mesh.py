"""The board mesh shared by the compiler's stages and the report: cell coordinates, hops and chip
crossings between cells, core-to-core traffic as edge arrays, the placement cost (traffic x
hops plus a penalty per chip crossing) and the random and row-major placements a placement is
compared with.

A placement is an int array ``cell[n]`` of mesh cells, ``cell = y * grid_x + x`` on the whole board.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from crossmap.chip import ChipSpec

if TYPE_CHECKING:
    import networkx as nx

    from crossmap.program import Program


@dataclass(frozen=True)
class Edges:
    """Undirected weighted edges between cores: traffic both ways summed, self loops dropped."""

    num_nodes: int
    u: np.ndarray  # int64, u < v
    v: np.ndarray
    w: np.ndarray  # float64 spikes per sample

    @property
    def total(self) -> float:
        """Sum of edge weights: the traffic that leaves a core."""
        return float(self.w.sum())


def edges_from_arrays(num_nodes: int, src: ArrayLike, dst: ArrayLike, traffic: ArrayLike) -> Edges:
    """Merge directed (src, dst, traffic) triples into undirected ``Edges``."""
    src = np.asarray(src, dtype=np.int64).reshape(-1)
    dst = np.asarray(dst, dtype=np.int64).reshape(-1)
    traffic = np.asarray(traffic, dtype=np.float64).reshape(-1)
    keep = (src != dst) & (traffic > 0)
    lo = np.minimum(src, dst)[keep]
    hi = np.maximum(src, dst)[keep]
    key = lo * max(num_nodes, 1) + hi
    unique, inverse = np.unique(key, return_inverse=True)
    weight = np.bincount(inverse, weights=traffic[keep], minlength=unique.size)
    n = max(num_nodes, 1)
    return Edges(num_nodes, unique // n, unique % n, weight.astype(np.float64))


def edges_from_graph(graph: nx.DiGraph, num_nodes: int | None = None) -> Edges:
    """``Edges`` of a networkx core graph (edge attribute ``traffic``, missing means 1)."""
    n = graph.number_of_nodes() if num_nodes is None else num_nodes
    triples = [(u, v, float(d.get("traffic", 1.0))) for u, v, d in graph.edges(data=True)]
    if not triples:
        return edges_from_arrays(n, [], [], [])
    src, dst, traffic = zip(*triples)
    return edges_from_arrays(n, src, dst, traffic)


def directed_traffic(graph: nx.DiGraph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(src, dst, traffic) arrays of a networkx core graph, self loops included."""
    triples = [(u, v, float(d.get("traffic", 1.0))) for u, v, d in graph.edges(data=True)]
    if not triples:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    src, dst, traffic = zip(*triples)
    return np.asarray(src, np.int64), np.asarray(dst, np.int64), np.asarray(traffic, np.float64)


def program_connections(program: Program) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(src core, dst core, number of routed neurons) for every core pair a program connects: the
    structural stand-in for traffic when no measured traffic is known."""
    routed = program.target_core >= 0
    src = np.nonzero(routed)[0].astype(np.int64)
    dst = program.target_core[routed].astype(np.int64)
    if src.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    key = src * program.num_cores + dst
    unique, counts = np.unique(key, return_counts=True)
    return unique // program.num_cores, unique % program.num_cores, counts.astype(np.float64)


def default_crossing_penalty(chip: ChipSpec) -> float:
    """Hops one chip crossing is worth: the energy of a crossing over the energy of a hop."""
    hop = chip.energy.hop_pj
    return round(float(chip.energy.chip_crossing_pj / hop), 6) if hop > 0 else 0.0


class Mesh:
    """Cell coordinates of a board and distances between cells."""

    def __init__(self, chip: ChipSpec, crossing_penalty: float = 0.0) -> None:
        self.chip = chip
        self.width = chip.grid_x
        self.height = chip.grid_y
        self.size = self.width * self.height
        cells = np.arange(self.size, dtype=np.int64)
        self.x = cells % self.width
        self.y = cells // self.width
        self.chip_x = self.x // chip.mesh_x
        self.chip_y = self.y // chip.mesh_y
        self.multi_chip = chip.board_x * chip.board_y > 1
        self.penalty = float(crossing_penalty) if self.multi_chip else 0.0

    def hops(self, a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
        """Mesh hops |dx| + |dy| between cells."""
        return np.abs(self.x[a] - self.x[b]) + np.abs(self.y[a] - self.y[b])

    def crossings(self, a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
        """Chip boundaries an x-then-y route between cells crosses."""
        return np.abs(self.chip_x[a] - self.chip_x[b]) + np.abs(self.chip_y[a] - self.chip_y[b])

    def dist(self, a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
        """The objective's distance: hops plus the crossing penalty times crossings."""
        d = self.hops(a, b).astype(np.float64)
        if self.penalty:
            d = d + self.penalty * self.crossings(a, b)
        return d

    def cell(self, x: np.ndarray | int, y: np.ndarray | int) -> np.ndarray:
        """Cell index of coordinates."""
        return np.asarray(y) * self.width + np.asarray(x)

    def coordinates(self, cells: ArrayLike) -> np.ndarray:
        """(n, 2) int32 array of (x, y) of cells."""
        cells = np.asarray(cells, dtype=np.int64)
        return np.stack([self.x[cells], self.y[cells]], axis=1).astype(np.int32)


def placement_cost(mesh: Mesh, edges: Edges, cells: np.ndarray) -> float:
    """Sum over edges of traffic x (hops + penalty x chip crossings)."""
    if edges.u.size == 0:
        return 0.0
    return float(np.dot(edges.w, mesh.dist(cells[edges.u], cells[edges.v])))


def traffic_hops(mesh: Mesh, edges: Edges, cells: np.ndarray) -> tuple[float, float]:
    """(traffic x hops, traffic x chip crossings) of a placement."""
    if edges.u.size == 0:
        return 0.0, 0.0
    a, b = cells[edges.u], cells[edges.v]
    return float(np.dot(edges.w, mesh.hops(a, b))), float(np.dot(edges.w, mesh.crossings(a, b)))


def row_major_cells(mesh: Mesh, n: int) -> np.ndarray:
    """Cores in index order, row by row over the board (the provisional layout)."""
    return np.arange(n, dtype=np.int64)


def random_cells(mesh: Mesh, n: int, seed: int) -> np.ndarray:
    """A uniformly random placement on distinct cells."""
    return np.random.default_rng(seed).permutation(mesh.size)[:n].astype(np.int64)

"""What the placement search works on beyond the board mesh (``crossmap.mesh``): the core graph's
adjacency in CSR form and a fast lower bound on any placement's cost."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossmap.mesh import Edges, Mesh


@dataclass(frozen=True)
class Adjacency:
    """Symmetric weighted adjacency in CSR form; each row sorted by neighbour index."""

    indptr: np.ndarray
    neighbor: np.ndarray
    weight: np.ndarray

    def row(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """Neighbours of ``node`` and the weights of its edges."""
        lo, hi = self.indptr[node], self.indptr[node + 1]
        return self.neighbor[lo:hi], self.weight[lo:hi]

    def degree(self) -> np.ndarray:
        """Weighted degree of every node."""
        n = self.indptr.size - 1
        return np.bincount(np.repeat(np.arange(n), np.diff(self.indptr)), weights=self.weight, minlength=n)


def adjacency(edges: Edges) -> Adjacency:
    """The CSR adjacency of undirected edges."""
    n = edges.num_nodes
    a = np.concatenate([edges.u, edges.v])
    b = np.concatenate([edges.v, edges.u])
    w = np.concatenate([edges.w, edges.w])
    order = np.lexsort((b, a))
    a, b, w = a[order], b[order], w[order]
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(a, minlength=n), out=indptr[1:])
    return Adjacency(indptr, b.astype(np.int64), w.astype(np.float64))


def sorted_center_distances(mesh: Mesh) -> np.ndarray:
    """Distances from the most central cell to every other cell, ascending. Element r is a lower
    bound on the distance of the (r+1)-th closest neighbour of any core anywhere on the board."""
    center = mesh.cell((mesh.width - 1) // 2, (mesh.height - 1) // 2)
    others = np.delete(np.arange(mesh.size), center)
    return np.sort(mesh.hops(np.full(others.size, center), others)).astype(np.float64)


def lower_bound(mesh: Mesh, edges: Edges) -> float:
    """A lower bound on the cost of any placement (crossing penalties left out).

    A core's neighbours sit on distinct cells, so at best its heaviest edge has the nearest cell,
    the next heaviest the next cell, and so on (4 cells at distance 1, 8 at 2, ... clipped by the
    board's edges). Each edge belongs to two cores, so the bound is half the sum over cores. It is
    never below the plain bound "every edge costs at least one hop".
    """
    if edges.u.size == 0:
        return 0.0
    node = np.concatenate([edges.u, edges.v])
    weight = np.concatenate([edges.w, edges.w])
    order = np.lexsort((-weight, node))
    node, weight = node[order], weight[order]
    starts = np.searchsorted(node, node, side="left")
    rank = np.arange(node.size) - starts
    distances = sorted_center_distances(mesh)
    rank = np.minimum(rank, distances.size - 1)
    return float(np.dot(weight, distances[rank]) / 2.0)

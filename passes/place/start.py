"""Starting placements: a compact region of the board, a Hilbert curve over it, a greedy
constructive placement in max-adjacency (BFS-like) order, and spectral placements (the graph
Laplacian's first eigenvectors laid along the curve, or spread over the region in 2-D).

Everything here is deterministic for a given input.
"""

from __future__ import annotations

import heapq

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
from scipy.sparse.csgraph import connected_components

from crossmap.mesh import Edges, Mesh
from crossmap.passes.place.cost import Adjacency, adjacency


def region_order(mesh: Mesh) -> np.ndarray:
    """All cells, most preferred first: chips by growing square rings from the board origin, and
    inside a chip cells by growing square rings from the chip's origin. The first k cells form a
    compact block, inside as few chips as possible."""
    chip_ring = np.maximum(mesh.chip_x, mesh.chip_y)
    lx = mesh.x - mesh.chip_x * mesh.chip.mesh_x
    ly = mesh.y - mesh.chip_y * mesh.chip.mesh_y
    ring = np.maximum(lx, ly)
    # inside a ring alternate around the corner so partial rings stay balanced
    along = np.where(lx >= ly, 2 * ly, 2 * lx + 1)
    return np.lexsort((along, ring, mesh.chip_x, mesh.chip_y, chip_ring)).astype(np.int64)


def max_adjacency_order(adj: Adjacency, start_order: np.ndarray) -> np.ndarray:
    """Nodes in the order a greedy placer should take them: always the unplaced node with the most
    traffic to the placed ones (ties: earliest in ``start_order``); a new component starts at the
    earliest unplaced node of ``start_order``."""
    n = adj.indptr.size - 1
    rank = np.empty(n, np.int64)
    rank[start_order] = np.arange(n)
    gain = np.zeros(n)
    done = np.zeros(n, bool)
    heap: list[tuple[float, int, int]] = []
    order = []
    next_start = 0
    while len(order) < n:
        while heap and done[heap[0][2]]:
            heapq.heappop(heap)
        if heap:
            _, _, node = heapq.heappop(heap)
        else:
            while done[start_order[next_start]]:
                next_start += 1
            node = int(start_order[next_start])
        if done[node]:
            continue
        done[node] = True
        order.append(node)
        nbrs, wts = adj.row(node)
        for m, w in zip(nbrs.tolist(), wts.tolist()):
            if not done[m]:
                gain[m] += w
                heapq.heappush(heap, (-gain[m], int(rank[m]), m))
    return np.asarray(order, np.int64)


def greedy_cells(mesh: Mesh, adj: Adjacency, start_order: np.ndarray) -> np.ndarray:
    """Constructive placement: nodes in max-adjacency order, each on the free cell closest (in
    traffic-weighted distance) to its placed neighbours, ties to the preferred region order."""
    n = adj.indptr.size - 1
    preferred = region_order(mesh)
    pref_rank = np.empty(mesh.size, np.float64)
    pref_rank[preferred] = np.arange(mesh.size)
    tie = pref_rank / (mesh.size * 1e3)
    occupied = np.zeros((mesh.height, mesh.width), bool)
    cells = np.full(n, -1, np.int64)
    next_free = 0
    for node in max_adjacency_order(adj, start_order).tolist():
        nbrs, wts = adj.row(node)
        placed = cells[nbrs] >= 0
        if not placed.any():
            while occupied.flat[preferred[next_free]]:
                next_free += 1
            cell = int(preferred[next_free])
        else:
            pos, w = cells[nbrs[placed]], wts[placed]
            tx = int(weighted_median(mesh.x[pos], w))
            ty = int(weighted_median(mesh.y[pos], w))
            candidates = _free_near(occupied, tx, ty)
            cost = mesh.dist(candidates[:, None], pos[None, :]) @ w + tie[candidates]
            cell = int(candidates[np.argmin(cost)])
        cells[node] = cell
        occupied.flat[cell] = True
    return cells


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2.0)])


def _free_near(occupied: np.ndarray, tx: int, ty: int) -> np.ndarray:
    """Free cells in the smallest square around (tx, ty) that holds some, plus one ring more."""
    height, width = occupied.shape
    radius = 1
    while True:
        x0, x1 = max(0, tx - radius), min(width, tx + radius + 1)
        y0, y1 = max(0, ty - radius), min(height, ty + radius + 1)
        ys, xs = np.nonzero(~occupied[y0:y1, x0:x1])
        if xs.size:
            return ((ys + y0) * width + xs + x0).astype(np.int64)
        if x0 == 0 and y0 == 0 and x1 == width and y1 == height:
            raise ValueError("no free cell left on the board")
        radius *= 2




def hilbert_order(mesh: Mesh) -> np.ndarray:
    """All cells of the board in the order of a Hilbert curve over the smallest power-of-two
    square that covers it (cells outside the board skipped). Consecutive cells are neighbours
    except where the board's edge cuts the curve; on boards of whole power-of-two chips the curve
    finishes one chip before it enters the next."""
    side = 1
    while side < max(mesh.width, mesh.height):
        side *= 2
    d = np.arange(side * side, dtype=np.int64)
    x = np.zeros_like(d)
    y = np.zeros_like(d)
    t = d.copy()
    s = 1
    while s < side:
        # the two bits of this level choose the quadrant; the lower levels' curve is rotated or
        # reflected so the four sub-curves join end to end
        rx = (t // 2) & 1
        ry = (t ^ rx) & 1
        flip = (ry == 0) & (rx == 1)
        x = np.where(flip, s - 1 - x, x)
        y = np.where(flip, s - 1 - y, y)
        swap = ry == 0
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        x = x + s * rx
        y = y + s * ry
        t //= 4
        s *= 2
    keep = (x < mesh.width) & (y < mesh.height)
    return (y[keep] * mesh.width + x[keep]).astype(np.int64)


# Arnoldi restarts the eigensolver may take: a connected core graph needs a few dozen; one of many
# components (chained by light edges, so its smallest eigenvalues cluster) can need thousands,
# tens of seconds for a full chip, and gets the component and greedy starts instead
SPECTRAL_MAX_RESTARTS = 300


def spectral_coordinates(edges: Edges, dims: int = 2, seed: int = 0) -> np.ndarray | None:
    """The ``dims`` eigenvectors of the weighted graph Laplacian after the constant one
    (n x dims), or None when the graph is too small or the eigensolver does not converge within
    ``SPECTRAL_MAX_RESTARTS`` restarts (a bound on work, so the answer does not depend on the
    machine). Components are chained by light edges so the embedding is not spent on separating
    them."""
    n = edges.num_nodes
    if n < dims + 2 or edges.u.size == 0:
        return None
    u, v, w = edges.u, edges.v, edges.w
    weights = sp.coo_matrix((w, (u, v)), shape=(n, n)).tocsr()
    count, labels = connected_components(weights, directed=False)
    if count > 1:
        first = np.unique(labels, return_index=True)[1]
        light = np.full(count - 1, 1e-3 * float(w.mean()))
        u = np.concatenate([u, first[:-1]])
        v = np.concatenate([v, first[1:]])
        w = np.concatenate([w, light])
    sym = sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([u, v]), np.concatenate([v, u]))),
                        shape=(n, n)).tocsc()
    degree = np.asarray(sym.sum(axis=1)).ravel()
    laplacian = (sp.diags(degree) - sym) / float(degree.mean())
    start = np.random.default_rng(seed).random(n) + 1.0
    try:
        values, vectors = sla.eigsh(laplacian.tocsc(), k=dims + 1, sigma=-1e-2, which="LM", v0=start,
                                    maxiter=SPECTRAL_MAX_RESTARTS)
    except (sla.ArpackError, RuntimeError, ValueError):
        return None
    order = np.argsort(values)
    vectors = vectors[:, order[1:dims + 1]]
    # fix each vector's sign so the result does not depend on the solver's choice
    signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(dims)])
    return vectors * np.where(signs == 0, 1.0, signs)


def curve_cells(mesh: Mesh, order: np.ndarray) -> np.ndarray:
    """Nodes in ``order`` on consecutive cells of the Hilbert curve."""
    cells = np.empty(order.size, np.int64)
    cells[order] = hilbert_order(mesh)[:order.size]
    return cells


def spread_cells(mesh: Mesh, points: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Put points (n x 2) on the cells ``region`` (n of them) keeping their relative layout:
    recursively halve the cells along their longer side and the points, in proportion, along
    the matching coordinate."""
    n = points.shape[0]
    cells = np.empty(n, np.int64)
    rank = np.empty_like(points)
    for k in range(2):  # ranks make the two coordinates comparable
        rank[np.argsort(points[:, k], kind="stable"), k] = np.arange(n)
    stack = [(np.arange(n), np.asarray(region, np.int64))]
    while stack:
        idx, cel = stack.pop()
        if idx.size == 1:
            cells[idx[0]] = cel[0]
            continue
        cx, cy = mesh.x[cel], mesh.y[cel]
        axis = 0 if np.ptp(cx) >= np.ptp(cy) else 1
        cel = cel[np.lexsort((cy, cx))] if axis == 0 else cel[np.lexsort((cx, cy))]
        idx = idx[np.argsort(rank[idx, axis], kind="stable")]
        half = idx.size // 2
        stack.append((idx[:half], cel[:half]))
        stack.append((idx[half:], cel[half:]))
    return cells


def component_cells(mesh: Mesh, edges: Edges) -> np.ndarray | None:
    """Each connected component (an ensemble's copies, say) placed greedily in its own square
    block, blocks packed in shelves from the board origin, largest first. None when the graph is
    connected or the blocks do not fit the board. A greedy placement of the whole graph puts the
    first component in the middle and wraps the others around it."""
    n = edges.num_nodes
    graph = sp.coo_matrix((np.ones(edges.u.size), (edges.u, edges.v)), shape=(n, n))
    count, label = connected_components(graph, directed=False)
    sizes = np.bincount(label, minlength=count)
    if count < 2 or (sizes >= 2).sum() < 2:
        return None
    cells = np.full(n, -1, np.int64)
    x0 = y0 = shelf = 0
    for comp in np.argsort(-sizes, kind="stable"):
        nodes = np.flatnonzero(label == comp)
        side = int(np.ceil(np.sqrt(1.25 * nodes.size)))
        if x0 + side > mesh.width:
            x0, y0, shelf = 0, y0 + shelf, 0
        if side > mesh.width or y0 + side > mesh.height:
            return None
        block = Mesh(mesh.chip.replace(mesh_x=side, mesh_y=side, board_x=1, board_y=1))
        keep = np.isin(edges.u, nodes)  # edges never leave a component
        local = np.full(n, -1, np.int64)
        local[nodes] = np.arange(nodes.size)
        sub = Edges(nodes.size, local[edges.u[keep]], local[edges.v[keep]], edges.w[keep])
        placed = greedy_cells(block, adjacency(sub), np.arange(nodes.size))
        cells[nodes] = mesh.cell(x0 + block.x[placed], y0 + block.y[placed])
        x0, shelf = x0 + side, max(shelf, side)
    return cells


def starting_placements(mesh: Mesh, edges: Edges, seed: int = 0,
                        points: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every starting placement by name: ``greedy`` (max-adjacency order, nearest free cell),
    ``components`` (each connected component greedily in its own block; graphs of several
    components only), ``curve`` (Fiedler order along the Hilbert curve), ``spectral`` (2-D
    Laplacian embedding spread over a compact block; these two only when the eigensolver
    succeeds) and ``spatial`` (given ``points``, n x 2, such as the image positions of
    crossmap.passes.place.geometry, spread over a compact block)."""
    n = edges.num_nodes
    adj = adjacency(edges)
    starts = {"greedy": greedy_cells(mesh, adj, np.arange(n))}
    tiled = component_cells(mesh, edges)
    if tiled is not None:
        starts["components"] = tiled
    coords = spectral_coordinates(edges, 2, seed)
    if coords is not None:
        starts["curve"] = curve_cells(mesh, np.argsort(coords[:, 0], kind="stable"))
        starts["spectral"] = spread_cells(mesh, coords, region_order(mesh)[:n])
    if points is not None and n:
        starts["spatial"] = spread_cells(mesh, np.asarray(points, np.float64), region_order(mesh)[:n])
    return starts

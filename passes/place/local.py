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
    compare it with the start and keep the better.

    The proposals are judged in batches (``Annealer``): each batch's cost changes are computed at
    once with numpy from the placement at its start, then walked in order; a proposal whose core,
    swap partner, their neighbours or target cell moved earlier in the batch is judged again one
    by one. Every decision, and so the result, is that of judging the proposals one by one."""
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
    annealer = Annealer(mesh, adj, cells, t_start, cooling)
    annealer.run(pick, off_x, off_y, draw)
    return annealer.cells()


# batch sizes of Annealer: a batch shrinks while many of its proposals must be judged again one by
# one (a move changes the cost of its neighbours' proposals) and grows while few must
BATCH_MIN, BATCH_MAX, BATCH_START = 16, 8192, 256
# proposals judged one by one when even the smallest batch had to judge many of its own again
PLAIN_STRETCH = 1024
# batches only when the cores have at least this many edges each on average
BATCH_MIN_DEGREE = 6
PLAIN_CHUNK = 1 << 16  # proposals made into lists at a time for the one-by-one loop (memory stays small)
# a proposal whose random draw lies this close to its acceptance probability is judged again with
# math.exp, so that numpy's exp (which may differ in the last bit) never decides
EXP_MARGIN = 1e-9
# a proposal whose two cores have more edges than this is judged again with numpy, not a loop
HUB_EDGES = 48


class Annealer:
    """The state of ``anneal``: where each core sits (lists for the one-by-one judging, arrays
    for the batches, kept equal), which cell each core occupies, and the batch stamps that say
    which cores and cells changed in the current batch."""

    def __init__(self, mesh: Mesh, adj: Adjacency, cells: np.ndarray, t_start: float, cooling: float) -> None:
        n = cells.size
        self.width, self.height = mesh.width, mesh.height
        self.penalty = mesh.penalty
        self.mx, self.my = mesh.chip.mesh_x, mesh.chip.mesh_y
        self.t_start, self.cooling = t_start, cooling
        self.indptr, self.neighbor, self.weight = adj.indptr, adj.neighbor, adj.weight
        nbr = [adj.neighbor[adj.indptr[i]:adj.indptr[i + 1]].tolist() for i in range(n)]
        wts = [adj.weight[adj.indptr[i]:adj.indptr[i + 1]].tolist() for i in range(n)]
        self.nbr = nbr
        self.links = [list(zip(nbr[i], wts[i])) for i in range(n)]
        self.x = np.asarray(cells % self.width, np.int64)
        self.y = np.asarray(cells // self.width, np.int64)
        self.xs, self.ys = self.x.tolist(), self.y.tolist()
        self.occ = np.full(self.width * self.height, -1, np.int64)
        self.occ[self.y * self.width + self.x] = np.arange(n)
        self.occupant = self.occ.tolist()
        self.hub_bounds = adj.indptr.tolist()  # edge range of each core, for _hub_sum
        self.hub_zeros = np.zeros(int(np.diff(adj.indptr).max(initial=0)), np.int64)  # one bin for bincount
        self.core_stamp = [-1] * n  # the last batch in which the core or a neighbour moved
        self.cell_stamp = [-1] * (self.width * self.height)  # the last batch in which the cell's occupant changed

    def cells(self) -> np.ndarray:
        """The placement now."""
        return self.y * self.width + self.x

    def run(self, pick: np.ndarray, off_x: np.ndarray, off_y: np.ndarray, draw: np.ndarray) -> None:
        """Judge every proposal (core ``pick[s]`` by ``(off_x[s], off_y[s])``) in order."""
        moves, start, batch = pick.size, 0, 0
        if self.neighbor.size < BATCH_MIN_DEGREE * len(self.xs):
            # few edges per core: the one-by-one loop costs no more than a batch's array work
            for start in range(0, moves, PLAIN_CHUNK):
                self._plain_slice(start, min(moves, start + PLAIN_CHUNK), pick, off_x, off_y, draw)
            return
        size = BATCH_START
        while start < moves:
            if size == 0:  # even the smallest batch judged many of its proposals again
                end = min(moves, start + PLAIN_STRETCH)
                self._plain_slice(start, end, pick, off_x, off_y, draw)
                size = BATCH_MIN
            else:
                end = min(moves, start + size)
                again = self._batch(batch, start, pick[start:end], off_x[start:end], off_y[start:end],
                                    draw[start:end])
                if again * 10 > end - start:
                    size = 0 if size == BATCH_MIN else max(BATCH_MIN, size // 2)
                elif again * 50 < end - start:
                    size = min(BATCH_MAX, size * 2)
            start, batch = end, batch + 1

    def _plain_slice(self, start: int, end: int, pick: np.ndarray, off_x: np.ndarray, off_y: np.ndarray,
                     draw: np.ndarray) -> None:
        """``_plain`` on the proposals start .. end - 1."""
        self._plain(start, pick[start:end].tolist(), off_x[start:end].tolist(), off_y[start:end].tolist(),
                    draw[start:end].tolist())

    def _plain(self, first: int, pick: list[int], off_x: list[int], off_y: list[int], draw: list[float]) -> None:
        """Judge proposals one by one from step ``first`` (the textbook loop, inlined: for cores
        with few edges a call per proposal costs as much as its work), then bring the arrays in
        line with the lists."""
        xs, ys, occupant, links, width, height = self.xs, self.ys, self.occupant, self.links, self.width, self.height
        t_start, cooling, exp = self.t_start, self.cooling, math.exp
        for step, node, dx, dy, u in zip(range(first, first + len(pick)), pick, off_x, off_y, draw):
            fx = xs[node]
            fy = ys[node]
            tx = fx + dx
            ty = fy + dy
            if tx < 0 or ty < 0 or tx >= width or ty >= height or (tx == fx and ty == fy):
                continue
            other = occupant[ty * width + tx]
            if self.penalty:
                delta = self._delta(node, other, fx, fy, tx, ty)
            else:  # the same sums in the same order as _delta
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
            if delta > 0 and u >= exp(-delta / (t_start * exp(cooling * step))):
                continue
            xs[node] = tx
            ys[node] = ty
            occupant[ty * width + tx] = node
            occupant[fy * width + fx] = other
            if other >= 0:
                xs[other] = fx
                ys[other] = fy
            if self.penalty:  # _delta may sum a hub's edges from the arrays
                self.x[node], self.y[node] = tx, ty
                if other >= 0:
                    self.x[other], self.y[other] = fx, fy
        self.x[:] = xs
        self.y[:] = ys
        self.occ[:] = occupant

    def _batch(self, batch: int, first: int, pick: np.ndarray, off_x: np.ndarray, off_y: np.ndarray,
               draw: np.ndarray) -> int:
        """Judge one batch of proposals (the first is step ``first``); returns how many had to be
        judged again one by one."""
        fx, fy = self.x[pick], self.y[pick]
        tx, ty = fx + off_x, fy + off_y
        valid = (tx >= 0) & (ty >= 0) & (tx < self.width) & (ty < self.height) & ((off_x != 0) | (off_y != 0))
        target = np.where(valid, ty * self.width + tx, 0)
        other = np.where(valid, self.occ[target], -1)
        delta = self._deltas(np.flatnonzero(valid), pick, other, fx, fy, tx, ty)
        steps = first + np.arange(pick.size)
        keep = self._verdicts(delta, draw, steps) & valid
        core_stamp, cell_stamp = self.core_stamp, self.cell_stamp
        again = 0
        for j, node, v, t, o, k in zip(range(pick.size), pick.tolist(), valid.tolist(), target.tolist(),
                                       other.tolist(), keep.tolist()):
            if core_stamp[node] == batch or (v and (cell_stamp[t] == batch or (o >= 0 and core_stamp[o] == batch))):
                again += 1
                self._one(batch, node, int(off_x[j]), int(off_y[j]), float(draw[j]), first + j)
            elif k:
                self._apply(batch, node, self.xs[node], self.ys[node], t % self.width, t // self.width, o)
        return again

    def _deltas(self, rows: np.ndarray, pick: np.ndarray, other: np.ndarray, fx: np.ndarray, fy: np.ndarray,
                tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
        """Cost change of each proposal ``rows`` (0 elsewhere), as ``_one`` sums it: the moving
        core's edges in order (but the one to its swap partner), then the partner's in order."""
        delta = np.zeros(pick.size)
        if rows.size == 0:
            return delta
        node, partner = pick[rows], other[rows]
        own = self._edge_sums(node, partner, tx[rows], ty[rows], fx[rows], fy[rows])
        swapped = np.flatnonzero(partner >= 0)
        if swapped.size:
            back = self._edge_sums(partner[swapped], node[swapped], fx[rows][swapped], fy[rows][swapped],
                                   tx[rows][swapped], ty[rows][swapped])
            own[swapped] = own[swapped] + back
        delta[rows] = own
        return delta

    def _edge_sums(self, core: np.ndarray, skip: np.ndarray, tx: np.ndarray, ty: np.ndarray, fx: np.ndarray,
                   fy: np.ndarray) -> np.ndarray:
        """Per proposal, the sum in edge order over the edges of ``core`` (but to ``skip``) of
        weight x (length from (tx, ty) - length from (fx, fy)), starting from 0.0 (bincount adds
        in order, so the sums are bit for bit those of a loop)."""
        starts = self.indptr[core]
        lengths = self.indptr[core + 1] - starts
        seg = np.repeat(np.arange(core.size), lengths)
        flat = np.arange(seg.size) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(starts, lengths)
        k = self.neighbor[flat]
        use = k != skip[seg]
        seg, k, w = seg[use], k[use], self.weight[flat[use]]
        kx, ky = self.x[k], self.y[k]
        t_x, t_y, f_x, f_y = tx[seg], ty[seg], fx[seg], fy[seg]
        change = np.abs(t_x - kx) + np.abs(t_y - ky) - np.abs(f_x - kx) - np.abs(f_y - ky)
        if self.penalty:
            kcx, kcy = kx // self.mx, ky // self.my
            chips = (np.abs(t_x // self.mx - kcx) + np.abs(t_y // self.my - kcy)
                     - np.abs(f_x // self.mx - kcx) - np.abs(f_y // self.my - kcy))
            change = change + self.penalty * chips
        return np.bincount(seg, weights=w * change, minlength=core.size)

    def _verdicts(self, delta: np.ndarray, draw: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Whether each proposal is accepted by the Metropolis rule; a draw too close to its
        probability to trust numpy's exp is decided with math.exp as ``_one`` does."""
        keep = delta <= 0
        hot = np.flatnonzero(~keep)
        if hot.size:
            p = np.exp(-delta[hot] / (self.t_start * np.exp(self.cooling * steps[hot])))
            keep[hot] = draw[hot] < p
            close = hot[np.abs(draw[hot] - p) <= EXP_MARGIN]
            for j in close.tolist():
                keep[j] = not draw[j] >= math.exp(-float(delta[j]) / (self.t_start * math.exp(self.cooling * int(steps[j]))))
        return keep

    def _one(self, batch: int, node: int, dx: int, dy: int, draw: float, step: int) -> None:
        """Judge one proposal on the placement as it is now (and apply it when accepted)."""
        fx, fy = self.xs[node], self.ys[node]
        tx, ty = fx + dx, fy + dy
        if tx < 0 or ty < 0 or tx >= self.width or ty >= self.height or (tx == fx and ty == fy):
            return
        other = self.occupant[ty * self.width + tx]
        delta = self._delta(node, other, fx, fy, tx, ty)
        if delta > 0 and draw >= math.exp(-delta / (self.t_start * math.exp(self.cooling * step))):
            return
        self._apply(batch, node, fx, fy, tx, ty, other)

    def _delta(self, node: int, other: int, fx: int, fy: int, tx: int, ty: int) -> float:
        """The cost change of moving ``node`` to (tx, ty) and ``other`` (-1: none) to (fx, fy):
        node's edges (except to other), then other's (except to node), summed in edge order."""
        xs, ys, links = self.xs, self.ys, self.links
        if len(links[node]) + (len(links[other]) if other >= 0 else 0) > HUB_EDGES:
            delta = self._hub_sum(node, other, tx, ty, fx, fy)
            return delta + self._hub_sum(other, node, fx, fy, tx, ty) if other >= 0 else delta
        delta = 0.0
        if not self.penalty:
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
            return delta
        mx, my, penalty = self.mx, self.my, self.penalty
        fcx, fcy, tcx, tcy = fx // mx, fy // my, tx // mx, ty // my
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
        return delta

    def _hub_sum(self, core: int, skip: int, tx: int, ty: int, fx: int, fy: int) -> float:
        """``_delta``'s sum over the edges of ``core`` (but to ``skip``) with numpy, for cores with
        many edges: the terms of ``_edge_sums`` for one core, the edge to ``skip`` given 0.0 (a
        sum that starts at 0.0 never holds -0.0, so adding 0.0 changes nothing), added in edge
        order by ``bincount`` as the loop adds them."""
        lo, hi = self.hub_bounds[core], self.hub_bounds[core + 1]
        k = self.neighbor[lo:hi]
        kx, ky = self.x[k], self.y[k]
        change = np.abs(tx - kx) + np.abs(ty - ky) - np.abs(fx - kx) - np.abs(fy - ky)
        if self.penalty:
            kcx, kcy = kx // self.mx, ky // self.my
            chips = (np.abs(tx // self.mx - kcx) + np.abs(ty // self.my - kcy)
                     - np.abs(fx // self.mx - kcx) - np.abs(fy // self.my - kcy))
            change = change + self.penalty * chips
        terms = self.weight[lo:hi] * change
        if skip >= 0:
            terms[k == skip] = 0.0
        return float(np.bincount(self.hub_zeros[:hi - lo], weights=terms, minlength=1)[0])

    def _apply(self, batch: int, node: int, fx: int, fy: int, tx: int, ty: int, other: int) -> None:
        """Move ``node`` from (fx, fy) to (tx, ty) and ``other`` (-1: none) the other way, and
        stamp the cores and cells whose proposals this changes."""
        here, there = fy * self.width + fx, ty * self.width + tx
        self.xs[node], self.ys[node] = tx, ty
        self.x[node], self.y[node] = tx, ty
        self.occupant[there], self.occupant[here] = node, other
        self.occ[there], self.occ[here] = node, other
        core_stamp = self.core_stamp
        core_stamp[node] = batch
        for k in self.nbr[node]:
            core_stamp[k] = batch
        if other >= 0:
            self.xs[other], self.ys[other] = fx, fy
            self.x[other], self.y[other] = fx, fy
            core_stamp[other] = batch
            for k in self.nbr[other]:
                core_stamp[k] = batch
        self.cell_stamp[here] = self.cell_stamp[there] = batch

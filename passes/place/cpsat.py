"""CP-SAT models of placement (OR-Tools): the whole problem for small core graphs, and a window
of the board (the cores in a rectangle of cells, everything else fixed) for large-neighbourhood
search on big ones. Both are warm-started from the current placement with solution hints.

Weights are scaled to integers for the solver; callers compare results with the exact float
objective and keep a solution only when it is really better.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from crossmap.mesh import Edges, Mesh
from crossmap.passes.place.cost import Adjacency, sorted_center_distances

if TYPE_CHECKING:
    from ortools.sat.python import cp_model

# resolution of the integer objective: the heaviest edge weighs this much
WEIGHT_SCALE = 10_000


@dataclass(frozen=True)
class SolverBudget:
    """How long one solve may run, and how reproducibly."""

    seconds: float
    reproducible: bool = True
    seed: int = 0
    workers: int = 1

    def parameters(self, solver: cp_model.CpSolver) -> None:
        """Set the solver's time limit, seed and workers. A reproducible solve is limited in
        deterministic time, on one worker, with a wall-clock guard far beyond it (a hundred times the
        budget plus a minute) that only a stalled solver reaches, so a loaded machine gives the same
        answer."""
        params = solver.parameters
        params.random_seed = int(self.seed) % (2**31 - 1)
        if self.reproducible:
            params.num_workers = 1
            params.max_deterministic_time = max(self.seconds, 1e-3)
            params.max_time_in_seconds = 100.0 * self.seconds + 60.0
        else:
            params.num_workers = max(1, int(self.workers))
            params.max_time_in_seconds = max(self.seconds, 1e-3)


@dataclass
class SolveResult:
    """Outcome of one CP-SAT solve."""

    cells: np.ndarray | None  # the solver's placement, None when it found none
    status: str
    optimal: bool
    deterministic_time: float
    wall_time: float


def _int_weights(weights: np.ndarray, scale: float) -> list[int]:
    return [int(round(w * scale)) for w in weights.tolist()]


def _abs_diff(model: cp_model.CpModel, a: cp_model.LinearExprT, b: cp_model.LinearExprT,
              bound: int, name: str) -> cp_model.IntVar:
    """A variable >= |a - b| (tight under minimization)."""
    d = model.new_int_var(0, bound, name)
    model.add(d >= a - b)
    model.add(d >= b - a)
    return d


def solve_global(mesh: Mesh, edges: Edges, hint: np.ndarray, budget: SolverBudget) -> SolveResult:
    """Place every core: integer (x, y) per core, all cells distinct, minimizing traffic x
    (hops + penalty x chip crossings). On a single chip an optimal placement exists with no empty
    row or column between used ones, shifted to the origin, so coordinates are limited to
    [0, min(width, n)) and the smallest x and y are 0."""
    from ortools.sat.python import cp_model  # imported here: OR-Tools takes a second to load

    n = edges.num_nodes
    model = cp_model.CpModel()
    compact = not mesh.multi_chip
    width = min(mesh.width, n) if compact else mesh.width
    height = min(mesh.height, n) if compact else mesh.height
    xs = [model.new_int_var(0, width - 1, f"x{i}") for i in range(n)]
    ys = [model.new_int_var(0, height - 1, f"y{i}") for i in range(n)]
    model.add_all_different([ys[i] * mesh.width + xs[i] for i in range(n)])
    if compact and n > 0:
        model.add_min_equality(0, xs)
        model.add_min_equality(0, ys)
    wmax = float(edges.w.max()) if edges.w.size else 1.0
    weights = _int_weights(edges.w, WEIGHT_SCALE / wmax)
    penalty = _int_weights(edges.w * mesh.penalty, WEIGHT_SCALE / wmax) if mesh.penalty else None
    chip_x = chip_y = None
    if penalty is not None:
        chip_x = [model.new_int_var(0, mesh.chip.board_x - 1, f"cx{i}") for i in range(n)]
        chip_y = [model.new_int_var(0, mesh.chip.board_y - 1, f"cy{i}") for i in range(n)]
        for i in range(n):
            model.add_division_equality(chip_x[i], xs[i], mesh.chip.mesh_x)
            model.add_division_equality(chip_y[i], ys[i], mesh.chip.mesh_y)
    terms = []
    hops: list[list[tuple[int, cp_model.LinearExprT]]] = [[] for _ in range(n)]
    for k, (u, v) in enumerate(zip(edges.u.tolist(), edges.v.tolist())):
        dx = _abs_diff(model, xs[u], xs[v], width, f"dx{k}")
        dy = _abs_diff(model, ys[u], ys[v], height, f"dy{k}")
        model.add(dx + dy >= 1)  # redundant (cells are distinct): tightens the relaxation
        hops[u].append((weights[k], dx + dy))
        hops[v].append((weights[k], dx + dy))
        terms.append(weights[k] * (dx + dy))
        if penalty is not None and chip_x is not None and chip_y is not None:
            cx = _abs_diff(model, chip_x[u], chip_x[v], mesh.chip.board_x, f"dcx{k}")
            cy = _abs_diff(model, chip_y[u], chip_y[v], mesh.chip.board_y, f"dcy{k}")
            terms.append(penalty[k] * (cx + cy))
    # redundant: a core's neighbours sit on distinct cells, so its weighted hops are at least
    # those of its heaviest edges on the nearest cells (see placement_cost.lower_bound)
    nearest = sorted_center_distances(mesh)
    for star in hops:
        if len(star) > 4:
            ordered = sorted(star, key=lambda item: -item[0])
            bound = sum(w * int(nearest[min(r, nearest.size - 1)]) for r, (w, _) in enumerate(ordered))
            model.add(sum(w * d for w, d in star) >= bound)
    model.minimize(sum(terms))
    if compact and n > 0:  # the hint shifted to the origin, as the model requires
        hint_x, hint_y = mesh.x[hint] - mesh.x[hint].min(), mesh.y[hint] - mesh.y[hint].min()
        if hint_x.max() >= width or hint_y.max() >= height:
            hint_x = hint_y = None
    else:
        hint_x, hint_y = mesh.x[hint], mesh.y[hint]
    if hint_x is not None and hint_y is not None:
        for i in range(n):
            model.add_hint(xs[i], int(hint_x[i]))
            model.add_hint(ys[i], int(hint_y[i]))
    solver = cp_model.CpSolver()
    budget.parameters(solver)
    status = solver.solve(model)
    cells = None
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        cells = np.array([solver.value(ys[i]) * mesh.width + solver.value(xs[i]) for i in range(n)], np.int64)
    return SolveResult(cells, solver.status_name(status), status == cp_model.OPTIMAL,
                       solver.deterministic_time, solver.wall_time)


def solve_window(mesh: Mesh, adj: Adjacency, cells: np.ndarray, occupant: np.ndarray,
                 window: np.ndarray, budget: SolverBudget) -> SolveResult:
    """Re-place the cores sitting on the cells ``window`` among those cells (every other core
    fixed): an assignment of cores to cells, with the fixed neighbours' cost linear in the
    assignment and the cost of edges inside the window as absolute differences."""
    from ortools.sat.python import cp_model  # imported here: OR-Tools takes a second to load

    window = np.asarray(window, np.int64)
    nodes = occupant[window]
    nodes = nodes[nodes >= 0]
    k, m = nodes.size, window.size
    if k == 0:
        return SolveResult(cells.copy(), "EMPTY", True, 0.0, 0.0)
    inside = np.full(cells.size, -1, np.int64)
    inside[nodes] = np.arange(k)
    external = np.zeros((k, m))
    internal: list[tuple[int, int, float]] = []
    wmax = 1e-12
    for a, node in enumerate(nodes.tolist()):
        nbrs, wts = adj.row(node)
        wmax = max(wmax, float(wts.max()) if wts.size else 0.0)
        local = inside[nbrs]
        fixed = local < 0
        if fixed.any():
            external[a] = mesh.dist(window[:, None], cells[nbrs[fixed]][None, :]) @ wts[fixed]
        for b, w in zip(local[~fixed].tolist(), wts[~fixed].tolist()):
            if a < b:
                internal.append((a, b, w))
    scale = WEIGHT_SCALE / wmax
    model = cp_model.CpModel()
    assign = [[model.new_bool_var(f"b{a}_{c}") for c in range(m)] for a in range(k)]
    for a in range(k):
        model.add_exactly_one(assign[a])
    for c in range(m):
        model.add_at_most_one(assign[a][c] for a in range(k))
    wx, wy = mesh.x[window], mesh.y[window]
    x0, y0 = int(wx.min()), int(wy.min())
    span_x, span_y = int(wx.max()) - x0, int(wy.max()) - y0
    terms = []
    for a in range(k):
        row = [int(round(v)) for v in (external[a] * scale).tolist()]
        terms.extend(row[c] * assign[a][c] for c in range(m) if row[c])
    if internal:
        xs = [sum(int(wx[c] - x0) * assign[a][c] for c in range(m)) for a in range(k)]
        ys = [sum(int(wy[c] - y0) * assign[a][c] for c in range(m)) for a in range(k)]
        cxs = cys = None
        if mesh.penalty:
            cx0, cy0 = mesh.chip_x[window], mesh.chip_y[window]
            cxs = [sum(int(cx0[c]) * assign[a][c] for c in range(m)) for a in range(k)]
            cys = [sum(int(cy0[c]) * assign[a][c] for c in range(m)) for a in range(k)]
        for e, (a, b, w) in enumerate(internal):
            iw = int(round(w * scale))
            if iw == 0:
                continue
            dx = _abs_diff(model, xs[a], xs[b], span_x, f"dx{e}")
            dy = _abs_diff(model, ys[a], ys[b], span_y, f"dy{e}")
            terms.append(iw * (dx + dy))
            if cxs is not None and cys is not None:
                pw = int(round(w * mesh.penalty * scale))
                dcx = _abs_diff(model, cxs[a], cxs[b], mesh.chip.board_x, f"dcx{e}")
                dcy = _abs_diff(model, cys[a], cys[b], mesh.chip.board_y, f"dcy{e}")
                terms.append(pw * (dcx + dcy))
    model.minimize(sum(terms))
    position = {int(c): j for j, c in enumerate(window.tolist())}
    for a, node in enumerate(nodes.tolist()):
        current = position[int(cells[node])]
        for c in range(m):
            model.add_hint(assign[a][c], c == current)
    solver = cp_model.CpSolver()
    budget.parameters(solver)
    status = solver.solve(model)
    out = None
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        out = cells.copy()
        for a, node in enumerate(nodes.tolist()):
            values = [solver.boolean_value(v) for v in assign[a]]
            out[node] = window[values.index(True)]
    return SolveResult(out, solver.status_name(status), status == cp_model.OPTIMAL,
                       solver.deterministic_time, solver.wall_time)

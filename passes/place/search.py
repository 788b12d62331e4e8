"""The placement search: starting heuristics, local search, simulated annealing, then CP-SAT,
either on the whole problem (small core graphs) or as large-neighbourhood search over windows
of the board (big ones), all inside one time budget.

With ``reproducible`` every decision depends only on the input, the seed and the budget: the
annealing length is set from an estimate of its speed, and CP-SAT runs on one worker with a
deterministic time limit. Otherwise CP-SAT uses every worker and wall-clock limits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from crossmap.mesh import Edges, Mesh, placement_cost
from crossmap.passes.place.cost import adjacency
from crossmap.passes.place.cpsat import SolverBudget, solve_global, solve_window
from crossmap.passes.place.local import anneal, improve_by_swaps
from crossmap.passes.place.start import starting_placements

METHODS = ("auto", "cpsat", "lns", "heuristic")
# "auto" solves the whole problem with CP-SAT up to this many cores, windows beyond
GLOBAL_MAX_CORES = 24
# estimated cost of one annealing move: fixed part plus a part per neighbour visited (seconds),
# measured on a 2-core machine shared with other work
MOVE_SECONDS = 1.5e-6
MOVE_SECONDS_PER_NEIGHBOUR = 0.4e-6
# estimated cost of a starting placement and of one sweep of moves and swaps, per core
START_SECONDS_PER_CORE = 150e-6
SWEEP_SECONDS_PER_CORE = 110e-6
# CP-SAT's deterministic time advances about a third as fast as wall time on these models (loaded machine)
DETERMINISTIC_PER_SECOND = 0.35
WINDOW_SIDE = 3
WINDOW_DETERMINISTIC_TIME = 0.05
WINDOW_OVERHEAD_SECONDS = 0.01
WINDOW_SHARE = 0.15


@dataclass
class SearchResult:
    """A placement and how it was found."""

    cells: np.ndarray
    cost: float
    heuristic_cost: float
    start: str
    strategy: str
    stages: list[dict] = field(default_factory=list)
    solver_status: str | None = None
    optimal: bool = False
    windows_tried: int = 0
    windows_improved: int = 0
    warnings: list[str] = field(default_factory=list)
    # wall-clock seconds per phase and the estimate charged for it (not part of any report:
    # wall time differs from run to run)
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)


class Budget:
    """Seconds left for the search: estimated from the work done when reproducible (so decisions
    do not depend on the machine's speed), measured on the wall clock otherwise."""

    def __init__(self, seconds: float, reproducible: bool) -> None:
        self.seconds = max(0.0, float(seconds))
        self.reproducible = reproducible
        self.charged = 0.0
        self.started = time.perf_counter()

    def charge(self, estimate: float) -> None:
        """Count ``estimate`` seconds of work as spent (reproducible mode)."""
        self.charged += max(0.0, estimate)

    def remaining(self) -> float:
        """Seconds still available."""
        spent = self.charged if self.reproducible else time.perf_counter() - self.started
        return max(0.0, self.seconds - spent)


def search(mesh: Mesh, edges: Edges, seconds: float, *, reproducible: bool = True, seed: int = 0,
           method: str = "auto", workers: int = 2, points: np.ndarray | None = None,
           log: Callable[[str], None] | None = None) -> SearchResult:
    """Place ``edges.num_nodes`` cores on distinct cells of ``mesh`` within about ``seconds``;
    ``points`` (n x 2, optional) adds a start that keeps their layout (``spatial``)."""
    n = edges.num_nodes
    adj = adjacency(edges)
    budget = Budget(seconds, reproducible)
    degree = float(np.diff(adj.indptr).mean()) if n else 0.0

    # 1. starting placements, each polished by a few sweeps of moves and swaps
    best_name, best, best_cost = "", np.zeros(0, np.int64), 0.0
    stages = []
    clock, charged = time.perf_counter(), budget.charged
    for name, cells in starting_placements(mesh, edges, seed, points).items():
        cells = improve_by_swaps(mesh, adj, cells, sweeps=3, seed=seed)
        cost = placement_cost(mesh, edges, cells)
        budget.charge(n * (START_SECONDS_PER_CORE + 3 * SWEEP_SECONDS_PER_CORE))
        stages.append({"stage": f"start:{name}", "cost": cost})
        if not best_name or cost < best_cost - 1e-9:
            best_name, best, best_cost = name, cells, cost
    result = SearchResult(best, best_cost, best_cost, best_name, "heuristic", stages)
    say = log or (lambda message: None)
    say(f"place: best start {best_name}, cost {best_cost:.6g}")
    result.timings["starts"] = (time.perf_counter() - clock, budget.charged - charged)
    if n < 2 or edges.u.size == 0:
        result.optimal = True
        return result
    if seconds <= 0:
        result.warnings.append("time limit 0: kept the heuristic placement without search")
        return result

    # 2. simulated annealing, then moves and swaps again
    small = n <= GLOBAL_MAX_CORES
    use_global = method == "cpsat" or (method == "auto" and small)
    share = 0.3 if use_global else (1.0 if method == "heuristic" else 1.0 - WINDOW_SHARE)
    move_cost = MOVE_SECONDS + MOVE_SECONDS_PER_NEIGHBOUR * 2 * degree
    moves = int(share * budget.remaining() / move_cost)
    if small:
        moves = min(moves, 2000 * n)
    if moves > 0:
        say(f"place: annealing, {moves:,} moves")
        clock, charged = time.perf_counter(), budget.charged
        annealed = anneal(mesh, adj, result.cells, moves, seed=seed)
        annealed = improve_by_swaps(mesh, adj, annealed, sweeps=4, seed=seed + 1)
        budget.charge(moves * move_cost + 4 * n * SWEEP_SECONDS_PER_CORE)
        _keep_if_better(result, mesh, edges, annealed, "anneal")
        result.timings["anneal"] = (time.perf_counter() - clock, budget.charged - charged)
    if method == "heuristic":
        result.strategy = "heuristic"
        return result

    # 3. CP-SAT on the whole problem, or on windows of the board
    clock, charged = time.perf_counter(), budget.charged
    say(f"place: CP-SAT on {'the whole problem' if use_global else 'windows of the board'}, cost {result.cost:.6g}")
    if use_global:
        _solve_whole(result, mesh, edges, budget, reproducible, seed, workers)
    else:
        _solve_windows(result, mesh, adj, edges, budget, reproducible, seed, workers)
    result.timings["cpsat"] = (time.perf_counter() - clock, budget.charged - charged)
    return result


def _keep_if_better(result: SearchResult, mesh: Mesh, edges: Edges, cells: np.ndarray, stage: str) -> bool:
    cost = placement_cost(mesh, edges, cells)
    result.stages.append({"stage": stage, "cost": cost})
    if cost < result.cost - 1e-9 * max(1.0, abs(result.cost)):
        result.cells, result.cost = cells, cost
        return True
    return False


def _solve_whole(result: SearchResult, mesh: Mesh, edges: Edges, budget: Budget, reproducible: bool,
                 seed: int, workers: int) -> None:
    seconds = budget.remaining()
    solve = solve_global(mesh, edges, result.cells,
                         SolverBudget(seconds * (DETERMINISTIC_PER_SECOND if reproducible else 1.0),
                                      reproducible, seed, workers))
    budget.charge(seconds)
    result.strategy = "cpsat"
    result.solver_status = solve.status
    if solve.cells is None:
        result.warnings.append(f"CP-SAT found no placement within {seconds:.3g} s (status {solve.status}); "
                               f"kept the heuristic placement")
        return
    _keep_if_better(result, mesh, edges, solve.cells, "cpsat")
    result.optimal = solve.optimal


def _solve_windows(result: SearchResult, mesh: Mesh, adj, edges: Edges, budget: Budget, reproducible: bool,
                   seed: int, workers: int) -> None:
    """Large-neighbourhood search: re-solve the cores in small windows around the most expensive
    cores, most expensive first, while the budget lasts."""
    result.strategy = "lns"
    cells = result.cells.copy()
    n = cells.size
    occupant = np.full(mesh.size, -1, np.int64)
    occupant[cells] = np.arange(n)
    # each core's share of the cost: the weighted length of its edges
    local = np.zeros(n)
    lengths = mesh.dist(cells[edges.u], cells[edges.v]) * edges.w
    np.add.at(local, edges.u, lengths)
    np.add.at(local, edges.v, lengths)
    order = np.lexsort((np.arange(n), -local))
    per_window = WINDOW_DETERMINISTIC_TIME if reproducible else WINDOW_DETERMINISTIC_TIME / DETERMINISTIC_PER_SECOND
    cost_per_window = WINDOW_DETERMINISTIC_TIME / DETERMINISTIC_PER_SECOND + WINDOW_OVERHEAD_SECONDS
    covered = np.zeros(mesh.size, bool)
    statuses: set[str] = set()
    current = placement_cost(mesh, edges, cells)  # the cost of ``cells``, kept as they change
    for node in order.tolist():
        if budget.remaining() < cost_per_window:
            break
        if covered[cells[node]]:
            continue
        window = _window_around(mesh, int(cells[node]), WINDOW_SIDE)
        covered[window] = True
        solve = solve_window(mesh, adj, cells, occupant, window,
                             SolverBudget(per_window, reproducible, seed + result.windows_tried, workers))
        budget.charge(solve.deterministic_time / DETERMINISTIC_PER_SECOND + WINDOW_OVERHEAD_SECONDS)
        result.windows_tried += 1
        statuses.add(solve.status)
        if solve.cells is None:
            continue
        cost = placement_cost(mesh, edges, solve.cells)
        if cost < current - 1e-9:
            cells, current = solve.cells, cost
            occupant[:] = -1
            occupant[cells] = np.arange(n)
            result.windows_improved += 1
    result.solver_status = ",".join(sorted(statuses)) if statuses else "NOT_RUN"
    _keep_if_better(result, mesh, edges, cells, "cpsat-windows")


def _window_around(mesh: Mesh, cell: int, side: int) -> np.ndarray:
    """The cells of a side x side square containing ``cell``, shifted to lie on the board."""
    x0 = min(max(0, int(mesh.x[cell]) - side // 2), max(0, mesh.width - side))
    y0 = min(max(0, int(mesh.y[cell]) - side // 2), max(0, mesh.height - side))
    xs = np.arange(x0, min(mesh.width, x0 + side))
    ys = np.arange(y0, min(mesh.height, y0 + side))
    return (ys[:, None] * mesh.width + xs[None, :]).reshape(-1).astype(np.int64)

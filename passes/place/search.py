"""The placement search: starting heuristics, local search, simulated annealing, then CP-SAT,
either on the whole problem (small core graphs) or as large-neighbourhood search over windows
of the board (big ones), all inside one time budget.

With ``reproducible`` every decision depends only on the input, the seed and the budget: the
annealing length is set from an estimate of its speed, and CP-SAT runs on one worker with a
deterministic time limit. Otherwise CP-SAT uses every worker and wall-clock limits.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from crossmap.mesh import Edges, Mesh, placement_cost
from crossmap.passes.place.cost import Adjacency, adjacency
from crossmap.passes.place.cpsat import SolveResult, SolverBudget, solve_global, solve_window
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
           log: Callable[[str], None] | None = None, threads: int = 1) -> SearchResult:
    """Place ``edges.num_nodes`` cores on distinct cells of ``mesh`` within about ``seconds``;
    ``points`` (n x 2, optional) adds a start that keeps their layout (``spatial``). With
    ``threads`` > 1 the board's windows are solved two at a time (the same result)."""
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
        _solve_windows(result, mesh, adj, edges, budget, reproducible, seed, workers, threads)
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


def _solve_windows(result: SearchResult, mesh: Mesh, adj: Adjacency, edges: Edges, budget: Budget,
                   reproducible: bool, seed: int, workers: int, threads: int = 1) -> None:
    """Large-neighbourhood search: re-solve the cores in small windows around the most expensive
    cores, most expensive first, while the budget lasts.

    With ``threads`` > 1 the next window is solved while the current one is (CP-SAT runs without
    the interpreter lock), on the placement as it stands. When the current window has moved none
    of the cores the next window's model reads (its cores and their neighbours), the early answer
    is the answer the window would get after it, so it is kept; otherwise the window is solved
    again. The result is the same as solving the windows one after another."""
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
    order = np.lexsort((np.arange(n), -local)).tolist()
    per_window = WINDOW_DETERMINISTIC_TIME if reproducible else WINDOW_DETERMINISTIC_TIME / DETERMINISTIC_PER_SECOND
    cost_per_window = WINDOW_DETERMINISTIC_TIME / DETERMINISTIC_PER_SECOND + WINDOW_OVERHEAD_SECONDS
    covered = np.zeros(mesh.size, bool)
    statuses: set[str] = set()
    current = placement_cost(mesh, edges, cells)  # the cost of ``cells``, kept as they change

    def next_window(after: int, cells: np.ndarray) -> tuple[int, np.ndarray] | None:
        """The first core of ``order`` past position ``after`` on an uncovered cell, and its window."""
        for position in range(after + 1, n):
            cell = int(cells[order[position]])
            if not covered[cell]:
                return position, _window_around(mesh, cell, WINDOW_SIDE)
        return None

    def solve(window: np.ndarray, cells: np.ndarray, occupant: np.ndarray, tried: int) -> SolveResult:
        return solve_window(mesh, adj, cells, occupant, window,
                            SolverBudget(per_window, reproducible, seed + tried, workers))

    with ThreadPoolExecutor(max_workers=2) if threads > 1 else _InThisThread() as pool:
        position, early = -1, None  # early: (position, window, placement it read, future) solved ahead
        while budget.remaining() >= cost_per_window:
            found = next_window(position, cells)
            if found is None:
                break
            position, window = found
            covered[window] = True
            if early is not None and early[0] == position and np.array_equal(early[1], window) \
                    and not _moved_what_it_reads(adj, occupant, window, early[2], cells):
                running = early[3]
            else:
                running = pool.submit(solve, window, cells, occupant.copy(), result.windows_tried)
            early = None
            ahead = next_window(position, cells) if threads > 1 else None  # if this window moves nothing
            if ahead is not None:
                early = (ahead[0], ahead[1], cells,
                         pool.submit(solve, ahead[1], cells, occupant.copy(), result.windows_tried + 1))
            solve_result = running.result()
            budget.charge(solve_result.deterministic_time / DETERMINISTIC_PER_SECOND + WINDOW_OVERHEAD_SECONDS)
            result.windows_tried += 1
            statuses.add(solve_result.status)
            if solve_result.cells is None:
                continue
            moved = cells.copy()  # the window's answer, on the placement as it stands now
            nodes = occupant[window]
            nodes = nodes[nodes >= 0]
            moved[nodes] = solve_result.cells[nodes]
            cost = placement_cost(mesh, edges, moved)
            if cost < current - 1e-9:
                cells, current = moved, cost
                occupant[:] = -1
                occupant[cells] = np.arange(n)
                result.windows_improved += 1
    result.solver_status = ",".join(sorted(statuses)) if statuses else "NOT_RUN"
    _keep_if_better(result, mesh, edges, cells, "cpsat-windows")


def _moved_what_it_reads(adj: Adjacency, occupant: np.ndarray, window: np.ndarray, before: np.ndarray,
                         now: np.ndarray) -> bool:
    """Whether a core that moved between placements ``before`` and ``now`` is one that a window
    model reads: a core on the window's cells in either placement, or a neighbour of one."""
    moved = np.flatnonzero(before != now)
    if moved.size == 0:
        return False
    there_now = occupant[window]
    there_now = there_now[there_now >= 0]
    there_before = np.flatnonzero(np.isin(before, window))
    reads = [there_now, there_before] + [adj.row(int(node))[0] for node in there_now.tolist()]
    return bool(np.isin(moved, np.concatenate(reads)).any())


class _InThisThread:
    """An executor that runs each task when it is submitted, in the caller's thread."""

    def __enter__(self) -> "_InThisThread":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, function: Callable[..., SolveResult], *args: object) -> Future:
        future: Future = Future()
        future.set_result(function(*args))
        return future


def _window_around(mesh: Mesh, cell: int, side: int) -> np.ndarray:
    """The cells of a side x side square containing ``cell``, shifted to lie on the board."""
    x0 = min(max(0, int(mesh.x[cell]) - side // 2), max(0, mesh.width - side))
    y0 = min(max(0, int(mesh.y[cell]) - side // 2), max(0, mesh.height - side))
    xs = np.arange(x0, min(mesh.width, x0 + side))
    ys = np.arange(y0, min(mesh.height, y0 + side))
    return (ys[:, None] * mesh.width + xs[None, :]).reshape(-1).astype(np.int64)

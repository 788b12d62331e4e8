"""Stage 4, ``place``: put the logical cores on distinct mesh positions of the board, minimizing the
sum over core-graph edges of traffic x hops plus a penalty per chip crossing.

The search (crossmap.passes.place.search) starts from fast heuristics (greedy max-adjacency order,
spectral layouts along a Hilbert curve or spread in 2-D, and for image inputs each core at the
image position its spikes come from, crossmap.passes.place.geometry), improves them by swaps and
simulated annealing, then runs CP-SAT warm-started from the best: on the whole problem for small core
graphs, on small windows of the board (large-neighbourhood search) for big ones. The heuristic
result is the fallback whenever the solver finds nothing better.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import networkx as nx
import numpy as np
from threadpoolctl import threadpool_limits

from crossmap.chip import check_fits
from crossmap.errors import PipelineError
from crossmap.mesh import (Edges, Mesh, default_crossing_penalty, edges_from_arrays, edges_from_graph,
                           placement_cost, program_connections, random_cells, row_major_cells, traffic_hops)
from crossmap.parallel import in_background
from crossmap.passes.place.bound import placement_lower_bound
from crossmap.passes.place.geometry import input_positions
from crossmap.passes.place.search import METHODS, SearchResult, search as search_placement
from crossmap.pipeline import CompileState
from crossmap.program import Program

# a core graph with fewer edges bounds its placement in this process (a fork costs more)
BACKGROUND_BOUND_EDGES = 1000


@dataclass
class Place:
    """Placement options.

    ``time_limit`` caps the search in seconds; a core graph gets at most ``seconds_per_core`` per
    core (plus half a second) of it, so small programs place fast. ``reproducible`` (default)
    makes the result depend only on the inputs and ``state.seed``: one solver worker, a fixed
    seed, deterministic time limits. ``method``: ``auto`` (CP-SAT on the whole problem up to 24
    cores, large-neighbourhood search beyond), ``cpsat`` (always the whole problem), ``lns``
    or ``heuristic`` (no solver). ``chip_crossing_penalty`` is the number of hops one chip
    crossing costs; ``none`` takes the energy ratio chip_crossing_pj / hop_pj of the chip spec.
    """

    time_limit: float = 30.0
    reproducible: bool = True
    method: str = "auto"
    chip_crossing_penalty: float | None = None
    seconds_per_core: float = 0.02

    name: ClassVar[str] = "place"
    reads: ClassVar[tuple[str, ...]] = ("program",)
    produces: ClassVar[tuple[str, ...]] = ("placement",)

    def run(self, state: CompileState) -> CompileState:
        """Set ``state.program.core_xy`` and write ``state.reports['place']``."""
        self._check_options()
        program = state.program
        if program is None:
            raise PipelineError("pass 'place' needs a partitioned program; put 'partition' before 'place' "
                                "in the pipeline")
        chip = program.chip
        n = program.num_cores
        check_fits(chip, n)
        penalty = default_crossing_penalty(chip) if self.chip_crossing_penalty is None else self.chip_crossing_penalty
        mesh = Mesh(chip, penalty)
        edges, measured = core_graph_edges(state.core_graph, program)
        provisional = placement_cost(mesh, edges, mesh.cell(program.core_xy[:, 0], program.core_xy[:, 1]))
        budget = min(self.time_limit, 0.5 + self.seconds_per_core * n)
        state.log(f"place: {n} cores, {edges.u.size} edges, budget {budget:.1f} s ({self.method})")
        input_shape = state.model_input_shape()
        points = input_positions(program, input_shape)
        # the lower bound depends on the traffic only: with a spare process it is found during the search
        bound = in_background(placement_lower_bound, (mesh, edges),
                              enabled=state.jobs > 1 and edges.u.size >= BACKGROUND_BOUND_EDGES)
        # one BLAS thread: the search makes many tiny products, and idle BLAS threads spin on a core
        # that the second window solver and the bound's process need
        with threadpool_limits(1, user_api="blas"):
            result = search_placement(mesh, edges, budget, reproducible=self.reproducible, seed=state.seed,
                                      method=self.method, workers=os.cpu_count() or 1, points=points, log=state.log,
                                      threads=min(2, state.jobs))
        for message in result.warnings:
            warnings.warn(f"place: {message}", UserWarning, stacklevel=2)
        program.core_xy = mesh.coordinates(result.cells)
        report = self._report(mesh, edges, measured, result, provisional, budget, state.seed, bound.result())
        report["input_shape"] = list(input_shape) if points is not None else None
        state.reports["place"] = report
        seconds = sum(wall for wall, _ in result.timings.values())
        ratio = report["ratio_to_bound"]
        state.log(f"place: cost {result.cost:.6g} ({ratio:.3f} x lower bound) by {result.strategy} in {seconds:.1f} s"
                  if ratio is not None else f"place: cost {result.cost:.6g} in {seconds:.1f} s")
        return state

    def _check_options(self) -> None:
        if not (isinstance(self.time_limit, (int, float)) and self.time_limit >= 0 and math.isfinite(self.time_limit)):
            raise PipelineError(f"pass 'place' option time_limit = {self.time_limit!r} must be a number of seconds "
                                f">= 0 (0 keeps the heuristic placement)")
        if self.method not in METHODS:
            raise PipelineError(f"pass 'place' option method = {self.method!r} is unknown; choose one of "
                                f"{', '.join(METHODS)}")
        if self.chip_crossing_penalty is not None and not self.chip_crossing_penalty >= 0:
            raise PipelineError(f"pass 'place' option chip_crossing_penalty = {self.chip_crossing_penalty!r} must "
                                f"be >= 0 hops (or none for the chip's energy ratio)")
        if not self.seconds_per_core > 0:
            raise PipelineError(f"pass 'place' option seconds_per_core = {self.seconds_per_core!r} must be > 0")

    def _report(self, mesh: Mesh, edges: Edges, measured: bool, result: SearchResult, provisional: float,
                budget: float, seed: int, lower_bound: tuple[float, str]) -> dict[str, Any]:
        n = edges.num_nodes
        bound, bound_kind = lower_bound
        random = placement_cost(mesh, edges, random_cells(mesh, n, seed))
        row_major = placement_cost(mesh, edges, row_major_cells(mesh, n))
        hops, crossings = traffic_hops(mesh, edges, result.cells)
        chips = sorted({int(c) for c in mesh.chip.chip_of(mesh.x[result.cells], mesh.y[result.cells])})
        return {
            "cores": n,
            "board_cores": mesh.size,
            "chips_used": len(chips),
            "edges": int(edges.u.size),
            "traffic": "spikes per sample" if measured else "routed neurons per core pair (no traffic measured)",
            "objective": result.cost,
            "traffic_hops": hops,
            "traffic_chip_crossings": crossings,
            "chip_crossing_penalty": mesh.penalty,
            "lower_bound": bound,
            "lower_bound_kind": bound_kind + " (chip crossings not bounded)",
            "gap": _ratio(result.cost - bound, result.cost),
            "ratio_to_bound": _ratio(result.cost, bound),
            "heuristic": result.heuristic_cost,
            "random": random,
            "row_major": row_major,
            "provisional": provisional,
            "ratio_to_random": _ratio(result.cost, random),
            "method": self.method,
            "strategy": result.strategy,
            "start": result.start,
            "solver_status": result.solver_status,
            "optimal": bool(result.optimal),
            "windows_tried": result.windows_tried,
            "windows_improved": result.windows_improved,
            "time_budget_s": budget,
            "reproducible": bool(self.reproducible),
            "stages": result.stages,
            "warnings": list(result.warnings),
        }


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if b > 0 else None


def core_graph_edges(graph: nx.DiGraph | None, program: Program) -> tuple[Edges, bool]:
    """Undirected edges to place by: the core graph's traffic when there is one (True), else
    the program's routed neurons per core pair (False)."""
    n = program.num_cores
    if graph is None:
        src, dst, count = program_connections(program)
        return edges_from_arrays(n, src, dst, count), False
    bad = [node for node in graph.nodes if not (isinstance(node, (int, np.integer)) and 0 <= node < n)]
    if bad:
        raise PipelineError(f"pass 'place': core graph nodes {bad[:5]} are not core indices 0..{n - 1} of the "
                            f"program; the partition pass must number nodes by core")
    return edges_from_graph(graph, n), True

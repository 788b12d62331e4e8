"""OR-Tools settings shared by the passes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ortools.sat.python import cp_model


def reproducible_solver(time_limit: float, seed: int) -> cp_model.CpSolver:
    """A CP-SAT solver that gives the same answer on every run: one worker, a fixed seed, and a
    deterministic time limit (in CP-SAT's deterministic seconds)."""
    from ortools.sat.python import cp_model  # imported here: OR-Tools takes a second to load

    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = int(seed)
    solver.parameters.max_deterministic_time = float(time_limit)
    return solver

"""The refinement stage of binarize_lsq (see crossmap.passes.binarize.lsq_fit): re-choose the synapses of the
neurons with the largest errors with OR-Tools, on an L1 surrogate of the squared error.

For one neuron, the connections of its most ambiguous inputs (where the rounding solution was
nearly tied) and its integer bias B are re-chosen for the calibration samples: first the LP
relaxation (GLOP) rounded at 1/2, then CP-SAT on the integer problem starting from the best
solution so far. The solvers see at most half of the samples; a new solution is kept only when
the squared error is lower on all samples and not higher on the unseen half.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from crossmap.passes.binarize.lsq_fit import FitOptions, LayerFit

LP_COST = 0.04  # seconds one neuron's LP takes (model building included), for the budget
CPSAT_OVERHEAD = 3.0  # wall seconds per deterministic second of a small CP-SAT model (building, presolve)


def l1_connections(coef: np.ndarray, fixed: np.ndarray, target: np.ndarray, hint: np.ndarray, bias_hint: int,
                   bias_bound: int, *, method: str, time_limit: float, seed: int,
                   capacity: int | None = None) -> tuple[np.ndarray, int] | None:
    """At most one option per free input and a bias B minimizing the L1 surrogate
    sum_s |sum_{i,c} coef[s, i, c] b_ic + fixed_s + B - target_s| (the caller keeps the result only
    when its squared error is lower).

    ``method`` ``lp``: GLOP on the LP relaxation, then each input takes its largest fractional
    option if it is >= 1/2; ``cpsat``: CP-SAT on the integer problem from the hint ``hint``
    (option index or -1 per input), single worker, fixed seed, deterministic time limit. With
    ``capacity`` at most that many synapses are chosen."""
    if method == "lp":
        return _lp_round(coef, fixed, target, capacity)
    from ortools.sat.python import cp_model
    from crossmap.solvers import reproducible_solver

    n_s, n_i, n_c = coef.shape
    model = cp_model.CpModel()
    b = [[model.NewBoolVar(f"b{i}_{c}") for c in range(n_c)] for i in range(n_i)]
    for i in range(n_i):
        model.AddAtMostOne(b[i])
    bias = model.NewIntVar(-bias_bound, bias_bound, "B")
    flat_vars = [v for row in b for v in row]
    if capacity is not None:
        model.Add(sum(flat_vars) <= max(0, int(capacity)))
    base = fixed.astype(np.int64) - target.astype(np.int64)
    reach = np.abs(coef).reshape(n_s, -1).sum(axis=1) + np.abs(base) + bias_bound
    errors = []
    for s in range(n_s):
        bound = int(reach[s])
        r = model.NewIntVar(-bound, bound, f"r{s}")
        model.Add(r == cp_model.LinearExpr.WeightedSum(flat_vars, coef[s].reshape(-1).tolist()) + bias + int(base[s]))
        e = model.NewIntVar(0, bound, f"e{s}")
        model.AddAbsEquality(e, r)
        errors.append(e)
    model.Minimize(sum(errors))
    for i in range(n_i):
        for c in range(n_c):
            model.AddHint(b[i][c], int(hint[i] == c))
    model.AddHint(bias, int(bias_hint))
    solver = reproducible_solver(time_limit, seed)
    status = solver.Solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    choice = np.full(n_i, -1, np.int64)
    for i in range(n_i):
        for c in range(n_c):
            if solver.Value(b[i][c]):
                choice[i] = c
    return choice, int(solver.Value(bias))


def _lp_round(coef: np.ndarray, fixed: np.ndarray, target: np.ndarray, capacity: int | None = None
              ) -> tuple[np.ndarray, int] | None:
    """LP relaxation of the L1 fit (GLOP) and rounding at 1/2 (the largest ones when ``capacity``
    limits the count)."""
    from ortools.linear_solver import pywraplp

    n_s, n_i, n_c = coef.shape
    solver = pywraplp.Solver.CreateSolver("GLOP")
    b = [[solver.NumVar(0.0, 1.0, f"b{i}_{c}") for c in range(n_c)] for i in range(n_i)]
    for i in range(n_i):
        row = solver.RowConstraint(-solver.infinity(), 1.0)
        for c in range(n_c):
            row.SetCoefficient(b[i][c], 1.0)
    if capacity is not None:
        total = solver.RowConstraint(-solver.infinity(), float(max(0, capacity)))
        for i in range(n_i):
            for c in range(n_c):
                total.SetCoefficient(b[i][c], 1.0)
    bias = solver.NumVar(-solver.infinity(), solver.infinity(), "B")
    objective = solver.Objective()
    base = (target - fixed).astype(np.float64)
    for s in range(n_s):
        e = solver.NumVar(0.0, solver.infinity(), f"e{s}")
        objective.SetCoefficient(e, 1.0)
        for sign in (1.0, -1.0):  # e >= sign * (sum coef b + B - base)
            row = solver.RowConstraint(-sign * base[s], solver.infinity())
            row.SetCoefficient(e, 1.0)
            row.SetCoefficient(bias, -sign)
            for i in range(n_i):
                for c in range(n_c):
                    if coef[s, i, c]:
                        row.SetCoefficient(b[i][c], -sign * float(coef[s, i, c]))
    objective.SetMinimization()
    if solver.Solve() not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        return None
    frac = np.array([[b[i][c].solution_value() for c in range(n_c)] for i in range(n_i)])
    choice = np.where(frac.max(axis=1) >= 0.5, frac.argmax(axis=1), -1)
    if capacity is not None and np.sum(choice >= 0) > capacity:
        on = np.flatnonzero(choice >= 0)
        choice[on[np.argsort(frac.max(axis=1)[on], kind="stable")[:on.size - max(0, capacity)]]] = -1
    return choice.astype(np.int64), int(round(bias.solution_value()))


def refine(fit: LayerFit, counts: np.ndarray, target: np.ndarray, a: sp.csr_matrix, d: np.ndarray,
            options: FitOptions, bias_bound: int) -> None:
    """Improve the connections of the most erroneous neurons (LP rounding, then CP-SAT within the
    layer budget); a neuron keeps a new solution only when its squared error is lower."""
    n_s = min(options.samples, max(1, counts.shape[0] // 2))  # the solvers see at most half the samples
    every = counts.astype(np.int64)
    cnt, tgt = every[:n_s], target[:n_s]
    residual = cnt @ fit.integer_matrix().T.toarray() + fit.bias[None, :] - tgt
    order = np.argsort(-(residual.astype(np.float64) ** 2).sum(axis=0), kind="stable")
    # half the budget for the LP stage, half for CP-SAT (on the worst of the LP neurons); the LP
    # stage is the same for solver=lp and solver=cpsat, so cpsat never ends worse than lp
    count = min(len(order), max(1, int(0.5 * options.budget / LP_COST)))
    deep = max(1, int(0.5 * options.budget / (CPSAT_OVERHEAD * max(options.neuron_time, 1e-3)))) \
        if options.solver == "cpsat" else 0
    conn = fit.connect.tolil()
    L = fit.line_types.shape[1]
    for rank, j in enumerate(order[:count]):
        cols = a.indices[a.indptr[j]:a.indptr[j + 1]]
        vals = a.data[a.indptr[j]:a.indptr[j + 1]]
        keep = d[cols] > 1e-9
        cols, vals = cols[keep], vals[keep]
        if cols.size == 0:
            continue
        levels = fit.weight[j, fit.line_types[cols]]  # (inputs, copies) integers
        current = np.asarray(fit.connect[j, cols].todense()).ravel() - 1
        u = fit.scale[j]
        costs = np.stack([vals ** 2] + [(vals - levels[:, c] / u) ** 2 for c in range(L)], axis=1) * d[cols, None]
        part = np.sort(costs, axis=1)
        free = np.sort(np.argsort(part[:, 1] - part[:, 0], kind="stable")[:options.free])
        fixed_mask = np.ones(cols.size, bool)
        fixed_mask[free] = False
        rows_idx = np.arange(cols.size)

        def weights_of(choice: np.ndarray) -> np.ndarray:
            return np.where(choice >= 0, levels[rows_idx, np.maximum(choice, 0)], 0)

        def squared(choice: np.ndarray) -> tuple[float, int, float]:
            """Squared error on all calibration samples and on those the solvers did not see."""
            drive = every[:, cols] @ weights_of(choice)
            bias = int(np.clip(np.rint((target[:, j] - drive).mean()), -bias_bound, bias_bound))
            err = (drive + bias - target[:, j]).astype(np.float64) ** 2
            return float(err.sum()), bias, float(err[n_s:].sum())

        fixed = cnt[:, cols[fixed_mask]] @ weights_of(current)[fixed_mask]
        capacity = None
        if options.max_fan_in:
            # synapses on inputs without calibration activity count against the limit too
            others = int(np.sum(np.asarray(fit.connect[j].todense()).ravel() > 0)) - int(np.sum(current >= 0))
            capacity = options.max_fan_in - others - int(np.sum(current[fixed_mask] >= 0))
        coef = cnt[:, cols[free], None] * levels[free][None, :, :]
        best, (best_err, best_bias, best_held) = current, squared(current)
        methods = ["lp"] + (["cpsat"] if rank < deep else [])
        for method in methods:
            found = l1_connections(coef, fixed, tgt[:, j], best[free], best_bias, bias_bound, method=method,
                                   time_limit=options.neuron_time, seed=options.seed, capacity=capacity)
            if found is None:
                continue
            trial = best.copy()
            trial[free] = found[0]
            err, bias, held = squared(trial)
            if err < best_err and held <= best_held:  # better overall and not worse on unseen samples
                best, best_err, best_bias, best_held = trial, err, bias, held
        if not np.array_equal(best, current):
            for i, c in zip(cols, best):
                conn[j, i] = c + 1
            fit.improved += 1
        fit.bias[j] = best_bias
    fit.connect = sp.csr_matrix(conn, dtype=np.int64)
    fit.connect.eliminate_zeros()

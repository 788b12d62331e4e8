"""Layer-wise synapse optimization (after Mern et al. 2018) for binarize_lsq.

One layer at a time, given the deployed inputs of the calibration samples (spike counts N over T
ticks, x = N / T) and the float network's pre-activations z, find for every neuron j

    z_j  ~  z0_j + (sum_i k_j(i) N_i + B_j) / (T u_j)

where k_j(i) is 0 (no synapse) or the neuron's integer weight for the type of an axon carrying
input i, B_j an integer (the neuron's initial potential), u_j a positive scale. Every input is
carried on ``L`` axons (``lines_per_input``); the axon of input i for copy c has one type shared by
all neurons (a core's axon type), chosen among the types of copy c. With L = 2 the first half of
the types carries positive weights and the second half negative ones (Esser et al. 2016's trinary
inputs); with L = 1 every input has one axon and the G types group the inputs.

Steps (``fit_layer``):
1. ridge least squares per neuron: the float weights a on the neuron's inputs (its support in the
   float model) and bias that best predict z from the deployed inputs, pulled towards the float
   model's own weights (compensates the error of the layers already deployed);
2. types and per-neuron levels by alternating minimization (Lloyd) of sum_i d_i (a_i - w_i)^2,
   where w_i is 0 or the neuron's level of one of input i's axon types and d_i = sum_s x_si^2 (the
   diagonal of the input Gram matrix); connections by the nearest option: the rounding solution;
3. integers: u_j = weight_max / max level (bounded so the membrane never saturates), k = round(u v);
4. refinement of the neurons with the largest errors (as many as the layer's budget allows): the
   connections of the ``free`` most ambiguous inputs and B are re-chosen for the exact calibration
   samples (integer residuals sum_i k N_si + B - round(T u (z_s - z0))) on an L1 surrogate, first by
   the LP relaxation (GLOP) rounded at 1/2 (``solver=lp``), then by CP-SAT from the best solution so
   far as a hint (``solver=cpsat``, single worker, fixed seed, deterministic time limit). The
   solvers see at most half of the samples; a neuron keeps a new solution only when its squared
   error is lower on all samples and not higher on the unseen half (a guard against overfitting),
   so a better solver never does worse than the rounding solution (``solver=round``); see
   crossmap.passes.binarize.lsq_refine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


@dataclass
class TypePlan:
    """Axon types per (input, copy) and the sign each type's levels must have."""

    types: int
    copies: int

    def of_copy(self, c: int) -> np.ndarray:
        """Types available to copy c (round robin)."""
        return np.arange(c, self.types, self.copies)

    def sign(self, g: int) -> int:
        """+1 / -1 when levels of type g must be non-negative / non-positive, 0 when free."""
        if self.copies != 2:
            return 0
        return 1 if g % 2 == 0 else -1


@dataclass
class LayerFit:
    """The integer form of one layer and how well it fits."""

    line_types: np.ndarray  # (columns, copies) type of each input's axons
    weight: np.ndarray  # int (neurons, G) per-type integer weights
    connect: sp.csr_matrix  # int (neurons, columns): copy index + 1 of the synapse, 0 = none
    bias: np.ndarray  # int B per neuron (total over the run)
    scale: np.ndarray  # u per neuron
    z0: np.ndarray  # offset per neuron
    error_round: float  # relative squared error of the rounding solution
    error: float  # relative squared error of the final solution
    improved: int = 0  # neurons the LP / CP-SAT stage improved
    pruned: int = 0  # synapses dropped to respect the fan-in limit
    solver_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def integer_matrix(self) -> sp.csr_matrix:
        """(neurons, columns) integer weights the lines realize."""
        c = self.connect.tocoo()
        types = self.line_types[c.col, c.data - 1]
        return sp.csr_matrix((self.weight[c.row, types], (c.row, c.col)), shape=self.connect.shape)


def ridge_refit(x: np.ndarray, z: np.ndarray, support: sp.csr_matrix, prior: sp.csr_matrix, prior_bias: np.ndarray,
                ridge: float) -> tuple[sp.csr_matrix, np.ndarray]:
    """Per neuron: argmin ||x_S a + b - z||^2 + rho ||a - prior||^2 (+ rho' (b - prior_bias)^2)."""
    n_s = x.shape[0]
    sup = sp.csr_matrix(support, dtype=bool)
    a_data = np.zeros(sup.nnz)
    bias = np.zeros(sup.shape[0])
    prior = sp.csr_matrix(prior)
    groups: dict[bytes, list[int]] = {}
    for j in range(sup.shape[0]):
        groups.setdefault(sup.indices[sup.indptr[j]:sup.indptr[j + 1]].tobytes(), []).append(j)
    for key, rows in groups.items():
        cols = np.frombuffer(key, dtype=sup.indices.dtype)
        xs = np.hstack([x[:, cols], np.ones((n_s, 1))])
        gram = xs.T @ xs
        rho = ridge * max(float(np.trace(gram)) / gram.shape[0], 1e-9)
        reg = rho * np.eye(gram.shape[0])
        p = np.zeros((len(rows), cols.size + 1))
        p[:, :cols.size] = prior[rows][:, cols].toarray()
        p[:, -1] = prior_bias[rows]
        rhs = xs.T @ z[:, rows] + reg @ p.T
        sol = np.linalg.solve(gram + reg, rhs)  # (cols + 1, rows)
        for r, j in enumerate(rows):
            a_data[sup.indptr[j]:sup.indptr[j + 1]] = sol[:cols.size, r]
            bias[j] = sol[-1, r]
    return sp.csr_matrix((a_data, sup.indices.copy(), sup.indptr.copy()), shape=sup.shape), bias


def lloyd_types(a: sp.csr_matrix, d: np.ndarray, plan: TypePlan, iterations: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(types (columns, copies), levels (neurons, G), option per stored entry: copy or -1)."""
    a = sp.csr_matrix(a)
    rows = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr))
    cols, vals = a.indices, a.data
    wts = d[cols]
    n_cols, L = a.shape[1], plan.copies
    types, levels = _initial(a, rows, cols, vals, wts, plan)
    option = _assign(vals, rows, cols, types, levels, L)
    for _ in range(iterations):
        chosen = option >= 0
        g = types[cols[chosen], option[chosen]]
        levels[:] = 0.0
        _update_levels(levels, rows[chosen], g, vals[chosen], wts[chosen], plan)
        for c in range(L):
            others = np.full(vals.size, np.inf)
            for c2 in range(L):
                if c2 != c:
                    others = np.minimum(others, (vals - levels[rows, types[cols, c2]]) ** 2)
            base = np.minimum(others, vals ** 2)
            avail = plan.of_copy(c)
            costs = np.stack([np.bincount(cols, weights=wts * np.minimum(base, (vals - levels[rows, g]) ** 2),
                                          minlength=n_cols) for g in avail], axis=1)
            types[:, c] = avail[np.argmin(costs, axis=1)]
        new = _assign(vals, rows, cols, types, levels, L)
        if np.array_equal(new, option):
            option = new
            break
        option = new
    return types, levels, option


def _initial(a: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, wts: np.ndarray,
             plan: TypePlan) -> tuple[np.ndarray, np.ndarray]:
    """Starting types and levels: k-means of the weight columns when every input has one axon
    (inputs whose weights look alike share a type); per-neuron quantiles when each copy has one
    type of free sign; else input types by quantiles of a per-copy score and levels by the mean of
    the sign-compatible entries."""
    n_out, n_cols = a.shape
    G, L = plan.types, plan.copies
    types = np.zeros((n_cols, L), np.int64)
    levels = np.zeros((n_out, G))
    if L == 1 and G > 1 and n_out * n_cols <= 4_000_000 and n_cols >= G:
        types[:, 0], levels[:] = _kmeans_columns(a.toarray().T, wts_per_column(cols, wts, n_cols), G)
        return types, levels
    for c in range(L):
        avail = plan.of_copy(c)
        sign = plan.sign(int(avail[0]))
        if avail.size == 1 and sign == 0:
            types[:, c] = avail[0]
            q = (c + 0.5) / L
            for j in range(n_out):
                row = a.data[a.indptr[j]:a.indptr[j + 1]]
                levels[j, avail[0]] = np.quantile(row, q) if row.size else 0.0
            continue
        part = vals if sign == 0 else np.maximum(sign * vals, 0)
        score = np.bincount(cols, weights=np.abs(part) if sign else part, minlength=n_cols)
        score /= np.maximum(np.bincount(cols, minlength=n_cols), 1)
        if avail.size > 1:
            edges = np.quantile(score, np.linspace(0, 1, avail.size + 1)[1:-1])
            types[:, c] = avail[np.searchsorted(edges, score, side="right")]
        else:
            types[:, c] = avail[0]
        g = types[cols, c]
        signs = np.array([plan.sign(int(t)) for t in range(G)])[g]
        ok = (signs == 0) | (np.sign(vals) == signs)
        _update_levels(levels, rows[ok], g[ok], vals[ok], wts[ok], plan)
    return types, levels


def wts_per_column(cols: np.ndarray, wts: np.ndarray, n_cols: int) -> np.ndarray:
    """The input weight d_i of every column (0 for columns without entries)."""
    out = np.zeros(n_cols)
    out[cols] = wts
    return out


def _kmeans_columns(x: np.ndarray, weight: np.ndarray, k: int, iterations: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Weighted k-means of the rows of ``x`` (columns of the weight matrix), deterministic
    farthest-point start; returns (cluster per row, centres transposed (features, k))."""
    norms = np.linalg.norm(x, axis=1) * np.sqrt(weight + 1e-12)
    chosen = [int(np.argmax(norms))]
    dist = ((x - x[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(1, k):
        chosen.append(int(np.argmax(dist * (weight + 1e-12))))
        dist = np.minimum(dist, ((x - x[chosen[-1]]) ** 2).sum(axis=1))
    centers = x[chosen].copy()
    assign = np.zeros(x.shape[0], np.int64)
    for _ in range(iterations):
        d2 = (x ** 2).sum(axis=1)[:, None] - 2 * x @ centers.T + (centers ** 2).sum(axis=1)[None, :]
        assign = np.argmin(d2, axis=1)
        for c in range(k):
            m = assign == c
            if m.any():
                centers[c] = np.average(x[m], axis=0, weights=weight[m] + 1e-12)
    return assign, centers.T


def _update_levels(levels: np.ndarray, rows: np.ndarray, g: np.ndarray, vals: np.ndarray, wts: np.ndarray,
                   plan: TypePlan) -> None:
    """levels[j, g] = weighted mean of the values assigned to (j, g), sign-clipped."""
    G = plan.types
    key = rows * G + g
    num = np.bincount(key, weights=wts * vals, minlength=levels.size)
    den = np.bincount(key, weights=wts, minlength=levels.size)
    flat = levels.reshape(-1)
    has = den > 0
    flat[has] = num[has] / den[has]
    for t in range(G):
        s = plan.sign(t)
        if s:
            levels[:, t] = np.maximum(s * levels[:, t], 0) * s


def _assign(vals: np.ndarray, rows: np.ndarray, cols: np.ndarray, types: np.ndarray, levels: np.ndarray,
            copies: int) -> np.ndarray:
    """Best option per entry: -1 (no synapse) or the copy whose level is nearest."""
    costs = np.stack([vals ** 2] + [(vals - levels[rows, types[cols, c]]) ** 2 for c in range(copies)], axis=1)
    return np.argmin(costs, axis=1) - 1


def integer_levels(levels: np.ndarray, weight_max: int, limit_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u per neuron, integer levels round(u v)) with u = weight_max / max |v|, at most ``limit_scale``."""
    top = np.abs(levels).max(axis=1)
    u = np.where(top > 0, weight_max / np.maximum(top, 1e-300), limit_scale)
    u = np.minimum(u, limit_scale)
    k = np.clip(np.rint(levels * u[:, None]), -weight_max, weight_max).astype(np.int64)
    return u, k


def relative_error(pred: np.ndarray, z: np.ndarray) -> float:
    """sum (pred - z)^2 / sum (z - mean z)^2 over samples and neurons (per-neuron means)."""
    den = float(np.sum((z - z.mean(axis=0)) ** 2))
    return float(np.sum((pred - z) ** 2) / den) if den > 0 else float(np.sum((pred - z) ** 2))


@dataclass
class FitOptions:
    """Options of ``fit_layer``."""

    copies: int = 2
    iterations: int = 10
    ridge: float = 0.1
    refit: bool = True
    solver: str = "cpsat"  # cpsat (lp, then CP-SAT) | lp (GLOP relaxation + rounding) | round
    free: int = 32  # inputs per neuron the solvers may rewire (the most ambiguous ones)
    samples: int = 64  # calibration samples in an LP / CP-SAT model
    neuron_time: float = 0.1  # CP-SAT deterministic seconds per neuron
    budget: float = 10.0  # about the seconds the layer's LP and CP-SAT stages may take (most
    #                       erroneous neurons first; a count of neurons, so results are reproducible)
    seed: int = 0
    max_fan_in: int = 0  # axons a neuron may read (0: no limit)


def limit_fan_in(a: sp.csr_matrix, d: np.ndarray, types: np.ndarray, levels: np.ndarray, option: np.ndarray,
                 limit: int) -> tuple[np.ndarray, int]:
    """Keep at most ``limit`` synapses per neuron: those whose removal would cost the most
    (d_i * (a^2 - (a - level)^2)). Returns (new options, synapses dropped)."""
    option = option.copy()
    rows = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr))
    chosen = option >= 0
    level = np.where(chosen, levels[rows, types[a.indices, np.maximum(option, 0)]], 0.0)
    gain = d[a.indices] * (a.data ** 2 - (a.data - level) ** 2)
    dropped = 0
    for j in np.flatnonzero(np.bincount(rows[chosen], minlength=a.shape[0]) > limit):
        lo, hi = a.indptr[j], a.indptr[j + 1]
        on = lo + np.flatnonzero(chosen[lo:hi])
        drop = on[np.argsort(gain[on], kind="stable")[:on.size - limit]]
        option[drop] = -1
        dropped += drop.size
    return option, dropped


def fit_layer(counts: np.ndarray, ticks: int, support: sp.csr_matrix, prior: sp.csr_matrix, prior_bias: np.ndarray,
              z: np.ndarray, z0: np.ndarray, *, types: int, weight_max: int, v_max: int, shared_scale: bool,
              options: FitOptions) -> LayerFit:
    """The integer form of one layer (see the module docstring). ``counts`` (samples, columns) are
    the input spike counts over ``ticks`` ticks, ``z`` (samples, neurons) the float targets and
    ``z0`` (neurons,) the offset each neuron's count is measured from."""
    import time

    x = counts / float(ticks)
    support = sp.csr_matrix(support, dtype=bool)
    support.sum_duplicates()
    prior = sp.csr_matrix(prior, dtype=np.float64)
    if options.refit and x.shape[0] > 0:
        a, beta = ridge_refit(x, z, support, prior, prior_bias, options.ridge)
    else:
        rows = np.repeat(np.arange(support.shape[0]), np.diff(support.indptr))
        values = np.asarray(prior[rows, support.indices]).ravel()
        a = sp.csr_matrix((values, support.indices.copy(), support.indptr.copy()), shape=support.shape)
        beta = prior_bias.astype(np.float64)
    d = (x ** 2).sum(axis=0) + 1e-12
    plan = TypePlan(types, options.copies)
    line_types, levels, option = lloyd_types(a, d, plan, options.iterations)
    span = np.abs(z - z0).max(axis=0) if z.shape[0] else np.ones(z.shape[1])
    limit = 0.25 * v_max / (ticks * np.maximum(span, 1e-9))
    u, k = integer_levels(levels, weight_max, limit)
    if shared_scale:
        u = np.full_like(u, u.min())
        k = np.clip(np.rint(levels * u[:, None]), -weight_max, weight_max).astype(np.int64)
    rows = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr))
    cols = a.indices
    pruned = 0
    if options.max_fan_in:
        option, pruned = limit_fan_in(a, d, line_types, levels, option, options.max_fan_in)
    conn = sp.csr_matrix(((option + 1).astype(np.int64), (rows, cols)), shape=a.shape)
    conn.eliminate_zeros()
    fit = LayerFit(line_types=line_types, weight=k, connect=conn, bias=np.zeros(a.shape[0], np.int64), scale=u,
                   z0=np.asarray(z0, np.float64), error_round=0.0, error=0.0, pruned=pruned)
    target = np.rint(ticks * u[None, :] * (z - z0[None, :])).astype(np.int64)
    bias_bound = v_max // 2
    drive = counts @ fit.integer_matrix().T.toarray() if counts.size else np.zeros_like(target)
    fit.bias = np.clip(np.rint((target - drive).mean(axis=0)), -bias_bound, bias_bound).astype(np.int64) \
        if counts.shape[0] else np.rint(ticks * u * (beta - z0)).astype(np.int64)
    fit.error_round = relative_error(prediction(fit, counts, ticks), z)
    fit.error = fit.error_round
    if options.solver in ("cpsat", "lp") and counts.shape[0]:
        start = time.process_time()
        from crossmap.passes.binarize.lsq_refine import refine

        refine(fit, counts, target, a, d, options, bias_bound)
        fit.solver_seconds = time.process_time() - start
        fit.error = relative_error(prediction(fit, counts, ticks), z)
    elif options.solver not in ("cpsat", "lp", "round"):
        raise ValueError(options.solver)
    return fit


def prediction(fit: LayerFit, counts: np.ndarray, ticks: int) -> np.ndarray:
    """Float pre-activations the integer layer implies: z0 + (k . N + B) / (T u)."""
    drive = counts @ fit.integer_matrix().T.toarray() + fit.bias[None, :]
    return fit.z0[None, :] + drive / (ticks * fit.scale[None, :])

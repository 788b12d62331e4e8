"""Multi-level weights from binary synapses: per-neuron weight codes over several axon types.

An input is carried on up to ``bits`` axon lines, one per axon type g; neuron j's weight of type g
is the integer ``k[j, g]`` and its crossbar bits on the input's lines select a subset of the types,
so the input's weight is the subset sum. With codes near ``s * (1, 2, 4, -7)`` the 16 subset sums
are the integers -7..7 times s: a 4-bit signed weight with a scale per neuron, and the threshold
alpha[j] turns the integer sums into the neuron's float scale (weight = subset sum / alpha).

``fit_codes`` chooses, per neuron, the code (a Lloyd iteration: assign every weight to its nearest
subset sum, then refit the code values by least squares weighted by how strongly each input is
driven on the calibration data) and the integer codes and alpha. Given the calibration inputs,
the final assignment is not each weight's nearest sum but column by column with error feedback
(``assign_with_feedback``): what rounding a weight lost is made up on the neuron's weights not yet
rounded, through the inputs' correlation, so that the neuron's drive on the calibration inputs,
not each weight, is kept (second-order rounding as in optimal brain quantization).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

BASES = {1: (1.0,), 2: (1.0, -1.0), 3: (1.0, 2.0, -3.0), 4: (1.0, 2.0, 4.0, -7.0)}


@dataclass
class Codes:
    """Integer weights of one layer: ``k`` (neurons, bits) per-type weights, ``alpha`` thresholds,
    ``subset`` (nnz,) the type subset (bit mask) of every stored weight of ``pattern`` (the layer's
    CSR matrix, same structure)."""

    k: np.ndarray
    alpha: np.ndarray
    pattern: sp.csr_matrix
    subset: np.ndarray

    def realized(self) -> sp.csr_matrix:
        """The weights the integers give, in units of alpha: subset sum / alpha."""
        sums = _subset_sums(self.k.astype(np.float64))  # (n, 2**bits)
        rows = np.repeat(np.arange(self.k.shape[0]), np.diff(self.pattern.indptr))
        data = sums[rows, self.subset] / self.alpha[rows]
        return sp.csr_matrix((data, self.pattern.indices.copy(), self.pattern.indptr.copy()), shape=self.pattern.shape)


def _masks(bits: int) -> np.ndarray:
    """(2**bits, bits) 0/1: the types in each subset."""
    m = np.arange(2 ** bits)
    return ((m[:, None] >> np.arange(bits)[None, :]) & 1).astype(np.float64)


def _subset_sums(c: np.ndarray) -> np.ndarray:
    """(n, 2**bits) subset sums of the per-neuron codes c (n, bits)."""
    return c @ _masks(c.shape[1]).T


def _refit(mass: np.ndarray, moment: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Weighted least-squares code values per neuron for fixed subsets, from each (neuron, subset)'s
    total weight ``mass`` and weight x value ``moment`` (a type no weight of the neuron uses keeps
    its value)."""
    n, bits = c.shape
    masks = _masks(bits)  # (S, bits)
    gram = np.einsum("ns,sa,sb->nab", mass, masks, masks)
    rhs = moment @ masks
    used = (mass @ masks) > 0
    scale = np.trace(gram, axis1=1, axis2=2)[:, None, None] / bits + 1e-12
    ridge = 1e-9 * scale * np.eye(bits)[None]
    # unused types: pin them to their old value with a strong prior
    pin = (~used)[:, :, None] * np.eye(bits)[None] * scale
    new = np.linalg.solve(gram + ridge + pin, (rhs + (~used) * c * scale[:, :, 0])[..., None])[..., 0]
    return np.where(used, new, c)


def fit_codes(w: sp.csr_matrix, column_weight: np.ndarray, alpha_cap: np.ndarray, *, bits: int, weight_max: int,
              iterations: int = 6, inputs: np.ndarray | None = None) -> Codes:
    """Integer codes for the float matrix ``w`` (neurons, columns; a neuron fires once per unit of
    drive); ``column_weight`` is the importance of each column (its mean squared activity),
    ``alpha_cap`` the largest threshold each neuron may have; ``inputs`` (samples, columns), the
    calibration inputs, turn on the error feedback. See the module docstring."""
    from crossmap.passes.binarize import codes_kernel as kernel

    w = sp.csr_matrix(w, dtype=np.float64)
    w.sort_indices()
    n = w.shape[0]
    rows = np.repeat(np.arange(n), np.diff(w.indptr))
    values = w.data
    weight = np.asarray(column_weight, np.float64)[w.indices] + 1e-6
    base = np.asarray(BASES[bits])
    top = np.zeros(n)
    if values.size:
        np.maximum.at(top, rows, np.abs(values))
    top = np.where(top > 0, top, 1.0)
    best_c = None
    best_err = np.full(n, np.inf)
    for sign in (1.0, -1.0):
        for shrink in (1.0, 0.6):
            c = (top * shrink / np.abs(base).max())[:, None] * base[None, :] * sign
            for _ in range(iterations):
                _, _, mass, moment = kernel.assign_with_moments(values, weight, rows, _subset_sums(c), n)
                c = _refit(mass, moment, c)
            _, err, _, _ = kernel.assign_with_moments(values, weight, rows, _subset_sums(c), n)
            better = err < best_err
            best_err = np.where(better, err, best_err)
            best_c = np.where(better[:, None], c, best_c if best_c is not None else c)
    few = _few_values(w, rows, bits)
    for row, vals in few.items():
        best_c[row] = 0.0
        best_c[row, :vals.size] = vals  # exact: each value on one line of its own type
    return integer_codes(w, best_c, alpha_cap, weight_max=weight_max, inputs=inputs)


def _few_values(w: sp.csr_matrix, rows: np.ndarray, bits: int) -> dict[int, np.ndarray]:
    """Rows with at most ``bits`` distinct stored values: {row: those values, ascending}."""
    if not w.nnz:
        return {}
    if not np.all(w.data != 0):  # a stored zero (or NaN): distinct as np.unique sees it, -0.0 and 0.0 alike
        pairs = np.unique(np.stack([rows.astype(np.float64), w.data]), axis=1)
        per_row = np.bincount(pairs[0].astype(np.int64), minlength=w.shape[0])
        starts = np.concatenate([[0], np.cumsum(per_row)])
        return {int(row): pairs[1, starts[row]:starts[row + 1]]
                for row in np.flatnonzero((per_row > 0) & (per_row <= bits))}
    from crossmap.passes.binarize.codes_kernel import few_values

    count, values = few_values(w.indptr.astype(np.int64), w.data, bits)
    return {int(row): values[row, :count[row]].copy() for row in np.flatnonzero((count > 0) & (count <= bits))}


def integer_codes(w: sp.csr_matrix, c: np.ndarray, alpha_cap: np.ndarray, *, weight_max: int,
                  inputs: np.ndarray | None = None) -> Codes:
    """Round float codes ``c`` to integers k = round(c * alpha) with the largest alpha that keeps
    |k| <= weight_max and alpha <= ``alpha_cap``, then reassign every weight to the nearest integer
    subset sum (with ``inputs``: by ``assign_with_feedback``)."""
    n, bits = c.shape
    rows = np.repeat(np.arange(n), np.diff(w.indptr))
    peak = np.abs(c).max(axis=1)
    alpha = np.floor(weight_max / np.maximum(peak, 1e-12))
    alpha = np.clip(np.minimum(alpha, np.floor(alpha_cap)), 1, None)
    k = np.clip(np.rint(c * alpha[:, None]), -weight_max, weight_max)
    sums = _subset_sums(k) / alpha[:, None]
    if not w.nnz:
        subset = np.zeros(0, np.int64)
    elif inputs is None:
        from crossmap.passes.binarize.codes_kernel import nearest_subsets

        subset = nearest_subsets(w.data, rows, sums)
    else:
        subset = assign_with_feedback(w, sums, inputs)
    return Codes(k=k.astype(np.int64), alpha=alpha.astype(np.int64), pattern=w, subset=subset.astype(np.int64))


def assign_with_feedback(w: sp.csr_matrix, sums: np.ndarray, inputs: np.ndarray, damping: float = 0.01) -> np.ndarray:
    """The subset (index into each row's ``sums``) of every stored weight of ``w``, chosen column by
    column, most active input first: each rounding error is carried over to the row's weights not
    yet rounded, weighted by the inputs' correlation (the inverse of H = X'X / N, damped by
    ``damping`` x its mean diagonal), which minimizes the error of the row's drive on ``inputs``
    (samples, columns) rather than weight by weight. Rows that share their columns are done together."""
    from crossmap.passes.binarize.codes_kernel import nearest_subsets

    w = sp.csr_matrix(w)
    w.sort_indices()
    rows = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))
    subset = nearest_subsets(w.data, rows, sums)
    x = np.asarray(inputs, np.float64)
    if len(x) == 0:
        return subset
    exact = np.isclose(sums[rows, subset], w.data, rtol=0, atol=1e-12)  # nothing to carry over
    groups: dict[bytes, list[int]] = {}
    for row in range(w.shape[0]):
        cols = w.indices[w.indptr[row]:w.indptr[row + 1]]
        if cols.size:
            groups.setdefault(cols.tobytes(), []).append(row)
    for rows in groups.values():
        r = np.asarray(rows)
        cols = w.indices[w.indptr[r[0]]:w.indptr[r[0] + 1]]
        where = w.indptr[r][:, None] + np.arange(cols.size)[None, :]  # (rows, m) positions in w.data
        if not exact[where].all():
            subset[where] = _feedback_group(w.data[where], sums[r], x[:, cols], damping, subset[where])
    return subset


def _feedback_group(values: np.ndarray, sums: np.ndarray, x: np.ndarray, damping: float, nearest: np.ndarray
                    ) -> np.ndarray:
    """``assign_with_feedback`` for rows (rows, m) that read the same m columns, inputs x (N, m);
    ``nearest`` are the subsets nearest each value (kept when H cannot be factored)."""
    m = values.shape[1]
    h = x.T @ x / len(x)
    h += (damping * max(float(np.mean(np.diag(h))), 1e-12)) * np.eye(m)
    order = np.argsort(-np.diag(h), kind="stable")
    h = h[np.ix_(order, order)]
    try:
        u = np.linalg.cholesky(np.linalg.inv(h)).T  # upper: inv(h) = u' u
    except np.linalg.LinAlgError:
        return nearest
    from crossmap.passes.binarize.codes_kernel import feedback_sweep

    return feedback_sweep(values[:, order].copy(), np.ascontiguousarray(sums), np.ascontiguousarray(u), order)

"""Float step layers -> integer weights and integer thresholds (the deterministic method).

A step neuron fires iff w . x + b > t (or >= t when inclusive). Dividing by a positive per-neuron
scale s changes nothing, so with w = s * k for integers k the neuron fires iff k . x >= θ with
θ = integer_threshold((t - b) / s). Modes:

- ``levels``: find the largest s with w / s integral (within ``tolerance``) and |k| <= weight_max;
  exact. With ``rescale`` a neuron whose weights are not few-level integers (or have more distinct
  values than axon types) is quantized to at most G levels instead, and the error is reported.
- ``probability``: Esser et al. 2015 connection probabilities, |w| in [0, 1]: k = sign(w) * (|w| > 1/2),
  s = 1 (the model's own deterministic rounding); the weight change is reported.

Max-pooling populations over binary sources are OR neurons (weights 1, θ = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import norm as sparse_norm

from crossmap.passes.binarize.analysis import Layer, integer_threshold, row_scale
from crossmap.passes.binarize.axon_types import distinct_per_row
from crossmap.chip import ChipSpec
from crossmap.errors import BinarizeError


@dataclass
class IntegerStep:
    """Integer weights (size, columns) and thresholds (fire iff k . x >= theta) of a step layer."""

    weights: sp.csr_matrix
    theta: np.ndarray
    scale: np.ndarray  # the per-neuron scale s (1 where not applicable)
    relative_error: float  # ||w - s k|| / ||w||
    rescaled: int  # neurons quantized with loss
    kind: str  # "step" or "or"


def integer_step_layer(layer: Layer, chip: ChipSpec, *, mode: str = "levels", tolerance: float = 1e-4,
                       rescale: bool = False, method: str = "deterministic") -> IntegerStep:
    """The integer form of one step (or max-pool) layer; BinarizeError when it has none."""
    pop = layer.pop
    if pop.reduce == "max":
        return _or_layer(layer, method)
    if pop.activation != "step":
        raise BinarizeError(
            f"layer {layer.name!r} has activation {pop.activation!r}; the {method} method maps only step "
            f"neurons (Greater(x, t) -> Cast) exactly, since a chip neuron's output is a spike; use "
            f"--binarize lsq for {pop.activation} networks")
    w = layer.weight()
    bias = layer.bias()
    t = float(pop.params.get("threshold", 0.0))
    inclusive = bool(pop.params.get("inclusive", False))
    data = np.zeros(w.nnz, np.int64)
    scale = np.ones(layer.size)
    rescaled = 0
    if mode == "levels":  # every row at once; the rows without an exact form one by one, in order
        scale, data, exact = row_scales(w, chip.weight_max, tolerance)
        exact &= distinct_per_row(sp.csr_matrix((data, w.indices, w.indptr), shape=w.shape)) <= chip.axon_types
        for j in np.flatnonzero(~exact).tolist():
            lo, hi = w.indptr[j], w.indptr[j + 1]
            values = w.data[lo:hi]
            if not rescale:
                raise _not_few_level(layer.name, j, values, row_scale(values, chip.weight_max, tolerance), chip)
            scale[j], data[lo:hi] = quantize_row(values, chip.axon_types, chip.weight_max, tolerance)
            rescaled += 1
    elif mode == "probability":
        for j in range(layer.size):
            lo, hi = w.indptr[j], w.indptr[j + 1]
            values = w.data[lo:hi]
            if values.size and np.abs(values).max() > 1 + tolerance:
                raise BinarizeError(f"layer {layer.name!r}: neuron {j} has weight {np.abs(values).max():g}; "
                                    f"connection probabilities must lie in [-1, 1]; use weights=levels for "
                                    f"few-level weights, or --binarize lsq")
            data[lo:hi] = np.sign(values) * (np.abs(values) > 0.5)
    elif w.nnz:
        raise BinarizeError(f"layer {layer.name!r}: unknown weight mode {mode!r}; use levels or probability")
    ints = sp.csr_matrix((data, w.indices.copy(), w.indptr.copy()), shape=w.shape)
    approx = sp.csr_matrix((data * np.repeat(scale, np.diff(w.indptr)), w.indices.copy(), w.indptr.copy()),
                           shape=w.shape)
    norm = sparse_norm(w) if w.nnz else 0.0
    error = float(sparse_norm(w - approx) / norm) if norm > 0 else 0.0
    ints.eliminate_zeros()
    theta = integer_threshold((t - bias) / scale, inclusive, tolerance)
    return IntegerStep(weights=ints, theta=theta, scale=scale, relative_error=error, rescaled=rescaled, kind="step")


def row_scales(w: sp.csr_matrix, weight_max: int, tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``row_scale`` of every row of ``w`` at once: (scale per row, integer per stored weight,
    whether the row has that form). Rows without weights get scale 1 and count as exact. The same
    arithmetic as ``row_scale``, row by row in a compiled loop, so the same answers."""
    from crossmap.passes.binarize.kernels import row_scales as kernel

    return kernel(np.asarray(w.indptr, np.int64), np.asarray(w.data, np.float64), int(weight_max), float(tol))


def _not_few_level(layer: str, j: int, values: np.ndarray, found: tuple | None, chip: ChipSpec) -> BinarizeError:
    """The error for a neuron whose weights have no exact chip form."""
    remedy = ("use --binarize lsq, or binarize_deterministic{rescale=true} to quantize these neurons with a "
              "reported error")
    if found is not None:
        levels = np.unique(found[1])
        return BinarizeError(f"layer {layer!r}: neuron {j} needs {levels.size} distinct integer weights "
                             f"{levels.tolist()[:8]} (after dividing by its scale {found[0]:g}), but a chip neuron "
                             f"has one weight per axon type ({chip.axon_types} types); {remedy}")
    a = np.abs(values)
    return BinarizeError(f"layer {layer!r}: neuron {j}'s {values.size} weights (|w| from {a.min():g} to {a.max():g}) "
                         f"are not integer multiples of one scale with |integer| <= {chip.weight_max}; the "
                         f"deterministic method needs few-level weights (scale * {{-1, 0, 1}} or small integers "
                         f"times a scale); {remedy}; for Esser 2015 probabilities in [0, 1] use "
                         f"binarize_deterministic{{weights=probability}} or --binarize stochastic")


def quantize_row(values: np.ndarray, levels: int, weight_max: int, tolerance: float) -> tuple[float, np.ndarray]:
    """(s, k): at most ``levels`` distinct nonzero integers k (|k| <= weight_max) with s * k close to
    ``values`` (1-D k-means on the values, then the exact scale of the centres or a rounding)."""
    centers = _kmeans_1d(values, levels)
    assign = np.argmin(np.abs(values[:, None] - centers[None, :]), axis=1)
    found = row_scale(centers, weight_max, tolerance)
    if found is not None:
        s, k = found
    else:
        top = float(np.abs(centers).max())
        # the coarsest integer grid that keeps the centres within 2% of the largest: small integers
        # keep thresholds (and the bias lines of neurons that fire without input) small
        for resolution in [r for r in (7, 15, 31, 63, 127) if r < weight_max] + [weight_max]:
            s = top / resolution
            k = np.rint(centers / s).astype(np.int64)
            if np.abs(centers - s * k).max() <= 0.02 * top:
                break
        k[k == 0] = np.where(centers[k == 0] >= 0, 1, -1)
    return s, k[assign]


def _kmeans_1d(values: np.ndarray, k: int, iterations: int = 30) -> np.ndarray:
    """Centres of a deterministic 1-D k-means (quantile start) on nonzero values."""
    distinct = np.unique(values)
    if distinct.size <= k:
        return distinct.astype(np.float64)
    centers = np.quantile(values, (np.arange(k) + 0.5) / k)
    for _ in range(iterations):
        assign = np.argmin(np.abs(values[:, None] - centers[None, :]), axis=1)
        new = np.array([values[assign == c].mean() if np.any(assign == c) else centers[c] for c in range(k)])
        if np.allclose(new, centers):
            break
        centers = new
    centers = centers[centers != 0] if np.any(centers != 0) else centers
    return np.unique(centers)


def _or_layer(layer: Layer, method: str) -> IntegerStep:
    """Max pooling over binary sources as an OR neuron (or a constant)."""
    pop = layer.pop
    w = layer.weight().tocsr()
    w.eliminate_zeros()
    bias = layer.bias()
    if w.nnz and w.data.min() <= 0:
        raise BinarizeError(f"max-pool layer {layer.name!r} has non-positive weights; the {method} method "
                            f"maps max pooling of spikes (an OR) only with positive weights")
    if pop.activation == "identity":
        if np.any(w.data != 1.0) or np.any(bias != 0):
            raise BinarizeError(f"max-pool layer {layer.name!r} with identity activation must have weights 1 "
                                f"and no bias so that its output is a spike (0 or 1); use --binarize lsq")
        keep = np.ones(w.nnz, bool)
        theta = np.ones(layer.size, np.int64)
    elif pop.activation == "step":
        t = float(pop.params.get("threshold", 0.0))
        inclusive = bool(pop.params.get("inclusive", False))

        def fires(v: np.ndarray) -> np.ndarray:
            return v >= t if inclusive else v > t

        rows = np.repeat(np.arange(layer.size), np.diff(w.indptr))
        keep = fires(w.data + bias[rows])
        theta = np.where(fires(bias), 0, 1).astype(np.int64)  # fires with no active input: always on
    else:
        raise BinarizeError(f"max-pool layer {layer.name!r} has activation {pop.activation!r}; the {method} "
                            f"method maps max pooling of spikes only with identity or step activation")
    data = keep.astype(np.int64)
    ints = sp.csr_matrix((data, w.indices.copy(), w.indptr.copy()), shape=w.shape)
    ints.eliminate_zeros()
    return IntegerStep(weights=ints, theta=theta, scale=np.ones(layer.size), relative_error=0.0, rescaled=0,
                       kind="or")

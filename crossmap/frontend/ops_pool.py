"""Pooling: AveragePool and GlobalAveragePool are linear projections (weight 1/count); MaxPool and
GlobalMaxPool become populations with ``reduce="max"`` over each window."""

from __future__ import annotations

import numpy as np
import onnx
import scipy.sparse as sp

from crossmap.frontend.lowering import Lowerer, attributes, handler
from crossmap.frontend.values import Affine, Unsupported
from crossmap.frontend.windows import Window


def _window(x: Affine, node: onnx.NodeProto, attrs: dict, global_pool: bool) -> Window:
    """The pooling window over ``x``'s spatial axes (per-sample shape (C, spatial...))."""
    if len(x.shape) < 2:
        raise Unsupported(f"input X has per-sample shape {x.shape}; pooling needs (C, spatial...)")
    spatial = x.shape[1:]
    if global_pool:
        return Window.from_attributes(spatial, spatial, {})
    kernel = attrs.get("kernel_shape")
    if not kernel:
        raise Unsupported("attribute kernel_shape is missing")
    return Window.from_attributes(spatial, kernel, attrs, ceil_mode=bool(attrs.get("ceil_mode", 0)))


def _connections(x: Affine, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Rows (output element), columns (input element) and output position of every valid window
    tap over all channels, and the number of output positions per channel."""
    out_pos, _, in_pos, _ = window.taps()
    keep = in_pos >= 0
    out_pos, in_pos = out_pos[keep], in_pos[keep]
    n_in, n_out = int(np.prod(window.in_shape)), int(np.prod(window.out_shape))
    channel = np.arange(x.shape[0])[:, None]
    rows = (channel * n_out + out_pos[None, :]).reshape(-1)
    cols = (channel * n_in + in_pos[None, :]).reshape(-1)
    return rows, cols, np.broadcast_to(out_pos, (x.shape[0], out_pos.size)).reshape(-1), n_out


@handler("AveragePool", "GlobalAveragePool")
def average_pool(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """Mean over each window (count_include_pad counts the explicit padding)."""
    attrs = attributes(node)
    x = lw.affine(ins[0], "input X")
    window = _window(x, node, attrs, node.op_type == "GlobalAveragePool")
    out_pos, _, in_pos, padded = window.taps()
    n_out = int(np.prod(window.out_shape))
    include = padded if attrs.get("count_include_pad", 0) else in_pos >= 0
    counts = np.bincount(out_pos[include], minlength=n_out)
    rows, cols, pos, n_out = _connections(x, window)
    if np.any(counts[pos] == 0):
        raise Unsupported("a pooling window covers no input element")
    weight = sp.csr_matrix((1.0 / counts[pos], (rows, cols)), shape=(x.shape[0] * n_out, x.size))
    return [lw.apply_linear(x, node, weight, 0.0, (x.shape[0], *window.out_shape))]


@handler("MaxPool", "GlobalMaxPool")
def max_pool(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """A population whose neurons take the max over their window."""
    attrs = attributes(node)
    lw.unused(node, 1, "Indices")
    x = lw.affine(ins[0], "input X")
    window = _window(x, node, attrs, node.op_type == "GlobalMaxPool")
    rows, cols, _, n_out = _connections(x, window)
    size = x.shape[0] * n_out
    if np.bincount(rows, minlength=size).min() == 0:
        raise Unsupported("a pooling window covers no input element")
    value = _max_terms(x, rows, cols, size)
    if value is None:  # max of sums: make the sums a population first
        x = Affine.of_population(lw.as_population(x, node), x.shape)
        value = _max_terms(x, rows, cols, size)
    terms, bias = value
    pooled = Affine((x.shape[0], *window.out_shape), terms, bias, list(x.nodes))
    return [lw.population(pooled, node, reduce="max", name=lw.label(node))]


def _max_terms(x: Affine, rows: np.ndarray, cols: np.ndarray,
               size: int) -> tuple[dict[str, sp.csr_matrix], np.ndarray] | None:
    """Max-projection weights and bias when every pooled element of ``x`` is ``w * neuron + b``
    with ``b`` the same over each window and no neuron twice in a window; else None."""
    if len(x.terms) != 1:
        return None
    (source, matrix), = x.terms.items()
    if np.any(np.diff(matrix.indptr) != 1):
        return None
    src = matrix.indices[cols]
    weights = matrix.data[cols]
    bias = x.bias[cols]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])  # rows come sorted, every row present
    low = np.minimum.reduceat(bias, starts)
    if np.any(np.maximum.reduceat(bias, starts) != low):
        return None
    if np.bincount(matrix.indices, minlength=matrix.shape[1]).max(initial=0) > 1:  # a neuron read twice
        pairs = np.sort(rows.astype(np.int64) * matrix.shape[1] + src)
        if np.any(pairs[1:] == pairs[:-1]):
            return None
    weight = sp.csr_matrix((weights, (rows, src)), shape=(size, matrix.shape[1]))
    return {source: weight}, low

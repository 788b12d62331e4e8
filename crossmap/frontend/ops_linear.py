"""Linear ops: Gemm, MatMul, Conv, BatchNormalization, elementwise arithmetic with constants or
between branches, reductions, and the ops that pass values through (Identity, Dropout, Cast)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import scipy.sparse as sp

from crossmap.frontend.lowering import Lowerer, attributes, handler
from crossmap.frontend.values import Affine, Condition, Const, Unsupported
from crossmap.frontend.windows import Window

FLOAT_CASTS = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


def _sample_row(lw: Lowerer, array: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    """A constant broadcast against a network tensor of per-sample ``shape`` (full shape
    (batch, *shape)), as one float64 vector per sample; ``Unsupported`` when it would broadcast
    over the batch axis or differ between samples."""
    array = np.asarray(array, dtype=np.float64)
    rank = len(shape) + 1
    if array.ndim > rank:
        raise Unsupported(f"{what} of shape {array.shape} has more axes than the tensor (batch, "
                          f"{', '.join(map(str, shape))}) and would move the batch axis")
    full = array.reshape((1,) * (rank - array.ndim) + array.shape)
    if full.shape[0] != 1:
        if not np.all(full == full[:1]):
            raise Unsupported(f"{what} of shape {array.shape} differs between the samples of a batch")
        full = full[:1]
    try:
        return np.broadcast_to(full, (1, *shape)).reshape(-1)
    except ValueError:
        raise Unsupported(f"{what} of shape {array.shape} does not broadcast to the tensor's per-sample shape "
                          f"{shape}") from None


def _out_shape(lw: Lowerer, shapes: list[tuple[int, ...]], const_shapes: list[tuple[int, ...]],
               what: str) -> tuple[int, ...]:
    """Per-sample shape of an elementwise op on network tensors of per-sample ``shapes`` and
    constants of ``const_shapes``; the batch axis must stay axis 0 of every network operand."""
    rank = max(len(s) for s in shapes) + 1
    if any(len(s) + 1 != rank for s in shapes):
        raise Unsupported(f"{what}: operands of per-sample shapes {shapes} have different ranks, so broadcasting "
                          f"would align the batch axis of one with a feature axis of another")
    for batch in filter(None, (lw.batch, lw.alt_batch)):
        try:
            out = np.broadcast_shapes(*[(batch, *s) for s in shapes], *const_shapes)
        except ValueError:
            raise Unsupported(f"{what}: shapes {[('batch', *s) for s in shapes]} and constants {const_shapes} do "
                              f"not broadcast") from None
        if len(out) != rank or out[0] != batch:
            raise Unsupported(f"{what}: a constant of shape {const_shapes} broadcasts over the batch axis")
    return tuple(int(d) for d in out[1:])


def expand(value: Affine, shape: tuple[int, ...], node: str) -> Affine:
    """``value`` broadcast to per-sample ``shape`` (same rank) by repeating elements."""
    if tuple(value.shape) == tuple(shape):
        return value
    index = np.broadcast_to(np.arange(value.size).reshape(value.shape), shape).reshape(-1)
    return value.rows(index, shape, node)


def _binary(lw: Lowerer, node: onnx.NodeProto, a: Any, b: Any) -> tuple[Any, Any, tuple[int, ...]]:
    """Operands of an elementwise op broadcast to their common per-sample shape: Affine values
    expanded, constants as per-sample vectors."""
    label = lw.label(node)
    for v in (a, b):
        if isinstance(v, Condition):
            lw.affine(v, f"an input of {node.op_type}")
    nets = [v for v in (a, b) if isinstance(v, Affine)]
    consts = [lw.const(v, f"the constant operand of {node.op_type}") for v in (a, b) if not isinstance(v, Affine)]
    shape = _out_shape(lw, [v.shape for v in nets], [c.shape for c in consts], node.op_type)

    def convert(v: Any) -> Any:
        if isinstance(v, Affine):
            return expand(v, shape, label)
        return _sample_row(lw, lw.const(v, "operand"), shape, f"the constant operand of {node.op_type}")

    return convert(a), convert(b), shape


@handler("Add", "Sub")
def add_sub(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """``a + b`` or ``a - b`` where either side may be a constant."""
    a, b, _ = _binary(lw, node, ins[0], ins[1])
    label = lw.label(node)
    sign = -1.0 if node.op_type == "Sub" else 1.0
    if isinstance(a, Affine) and isinstance(b, Affine):
        return [a.plus(b.scale(sign, label) if sign < 0 else b, label)]
    if isinstance(a, Affine):
        return [a.shift(sign * b, label)]
    return [(b.scale(sign, label) if sign < 0 else b).shift(a, label)]


@handler("Mul", "Div")
def mul_div(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """Scaling by a constant: ``x * c``, ``c * x`` or ``x / c``."""
    a, b, _ = _binary(lw, node, ins[0], ins[1])
    if isinstance(a, Affine) and isinstance(b, Affine):
        raise Unsupported(f"{node.op_type} of two tensors that both depend on the network input is not linear")
    if node.op_type == "Div":
        if not isinstance(a, Affine):
            raise Unsupported("dividing a constant by a tensor that depends on the network input is not linear")
        if np.any(b == 0):
            raise Unsupported("the divisor has zeros")
        return [a.scale(1.0 / b, lw.label(node))]
    x, c = (a, b) if isinstance(a, Affine) else (b, a)
    return [x.scale(c, lw.label(node))]


@handler("Neg")
def neg(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """``-x``."""
    return [lw.affine(ins[0], "the input of Neg").scale(-1.0, lw.label(node))]


@handler("Sum")
def sum_(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """The sum of several tensors (network tensors and constants)."""
    total = ins[0]
    for other in ins[1:]:
        a, b, _ = _binary(lw, node, total, other)
        if isinstance(a, Affine) and isinstance(b, Affine):
            total = a.plus(b, lw.label(node))
        elif isinstance(a, Affine):
            total = a.shift(b, lw.label(node))
        elif isinstance(b, Affine):
            total = b.shift(a, lw.label(node))
        else:
            total = Const(a + b)
    return [total]


@handler("Gemm")
def gemm(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """``alpha * A' B' + beta * C`` with A the network tensor and B, C constants."""
    attrs = attributes(node)
    if attrs.get("transA", 0):
        raise Unsupported("transA=1 puts the batch on axis 1 of A; crossmap needs the samples on axis 0")
    x = lw.affine(ins[0], "input A")
    if len(x.shape) != 1:
        raise Unsupported(f"input A has per-sample shape {x.shape}; Gemm needs (batch, K)")
    w = lw.const(ins[1], "input B (the weights)").astype(np.float64)
    if w.ndim != 2:
        raise Unsupported(f"input B has shape {w.shape}; Gemm needs a matrix")
    w = w.T if attrs.get("transB", 0) else w  # (K, N)
    if w.shape[0] != x.shape[0]:
        raise Unsupported(f"input B has {w.shape[0]} rows, A has {x.shape[0]} columns")
    weight = dense_csr(float(attrs.get("alpha", 1.0)) * w.T)
    bias: Any = 0.0
    if len(ins) > 2 and ins[2] is not None:
        c = lw.const(ins[2], "input C (the bias)") * float(attrs.get("beta", 1.0))
        bias = _sample_row(lw, c, (w.shape[1],), "input C (the bias)")
    return [lw.apply_linear(x, node, weight, bias, (w.shape[1],))]


@handler("MatMul")
def matmul(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """Matrix product of a network tensor with a constant matrix (on either side)."""
    a, b = ins
    if isinstance(a, Affine) and isinstance(b, Affine):
        raise Unsupported("MatMul of two tensors that both depend on the network input is not linear")
    if isinstance(a, Affine):
        w = _squeeze_leading(lw.const(b, "input B (the weights)"), len(a.shape) + 1, "input B")
        if a.shape[-1] != w.shape[0]:
            raise Unsupported(f"input A's last axis has {a.shape[-1]} elements, B has {w.shape[0]} rows")
        prefix = int(np.prod(a.shape[:-1], dtype=np.int64))
        if w.ndim == 1:
            block, shape = sp.csr_matrix(w.astype(np.float64)[None, :]), a.shape[:-1]
        else:
            block, shape = dense_csr(w.T), (*a.shape[:-1], w.shape[1])
        weight = sp.kron(sp.identity(prefix), block, format="csr")
        return [lw.apply_linear(a, node, weight, 0.0, tuple(shape))]
    x = lw.affine(b, "input B")
    w = _squeeze_leading(lw.const(a, "input A (the weights)"), len(x.shape) + 1, "input A")
    if len(x.shape) < 2 or w.ndim != 2:
        raise Unsupported(f"a constant of shape {w.shape} times a network tensor of per-sample shape {x.shape} "
                          f"would contract the batch axis")
    k, n = x.shape[-2], x.shape[-1]
    if w.shape[1] != k:
        raise Unsupported(f"input A has {w.shape[1]} columns, B has {k} rows")
    prefix = int(np.prod(x.shape[:-2], dtype=np.int64))
    block = sp.kron(sp.csr_matrix(w.astype(np.float64)), sp.identity(n), format="csr")
    weight = sp.kron(sp.identity(prefix), block, format="csr")
    return [lw.apply_linear(x, node, weight, 0.0, (*x.shape[:-2], w.shape[0], n))]


def dense_csr(matrix: np.ndarray) -> sp.csr_matrix:
    """A dense float matrix as CSR (float64, sorted indices, no stored zeros), built from one flat
    pass over it: for big dense layers several times faster than ``sp.csr_matrix(dense)``."""
    m = np.ascontiguousarray(matrix, np.float64)
    rows, cols = m.shape
    flat = m.reshape(-1)
    nonzero = np.flatnonzero(flat)
    index = np.int32 if max(flat.size, cols) < 2**31 else np.int64
    indptr = np.zeros(rows + 1, index)
    if nonzero.size == flat.size:
        indptr[1:] = np.arange(1, rows + 1, dtype=index) * cols
        return sp.csr_matrix((flat.copy(), np.tile(np.arange(cols, dtype=index), rows), indptr), shape=(rows, cols))
    np.cumsum(np.bincount(nonzero // cols, minlength=rows), out=indptr[1:])
    return sp.csr_matrix((flat[nonzero], (nonzero % cols).astype(index), indptr), shape=(rows, cols))


def _squeeze_leading(w: np.ndarray, rank: int, what: str) -> np.ndarray:
    """A constant matrix operand without leading size-1 axes (it must not reach the batch axis)."""
    while w.ndim > 2 and w.shape[0] == 1:
        w = w[0]
    if w.ndim > 2:
        raise Unsupported(f"{what} is a stack of matrices of shape {w.shape}; crossmap lowers products with one "
                          f"constant matrix")
    return w


@handler("Conv")
def conv(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """N-d convolution (strides, pads, auto_pad, dilations, groups) as explicit connectivity."""
    attrs = attributes(node)
    x = lw.affine(ins[0], "input X")
    w = lw.const(ins[1], "input W (the weights)").astype(np.float64)
    if len(x.shape) < 2 or w.ndim != len(x.shape) + 1:
        raise Unsupported(f"input X has per-sample shape {x.shape} and W shape {w.shape}; Conv needs (C, spatial...) "
                          f"and (M, C/group, kernel...)")
    channels, spatial = x.shape[0], x.shape[1:]
    groups = int(attrs.get("group", 1))
    out_channels, per_group = w.shape[0], w.shape[1]
    if channels % groups or out_channels % groups or per_group * groups != channels:
        raise Unsupported(f"group={groups} does not fit {channels} input channels and weights of shape {w.shape}")
    kernel = tuple(attrs.get("kernel_shape") or w.shape[2:])
    if tuple(kernel) != tuple(w.shape[2:]):
        raise Unsupported(f"kernel_shape {kernel} differs from the weights' kernel {w.shape[2:]}")
    window = Window.from_attributes(spatial, kernel, attrs)
    out_pos, tap, in_pos, _ = window.taps()
    keep = in_pos >= 0
    out_pos, tap, in_pos = out_pos[keep], tap[keep], in_pos[keep]
    n_in, n_out = int(np.prod(spatial)), int(np.prod(window.out_shape))
    weight = conv_matrix(w.reshape(out_channels, per_group, -1), groups, out_pos, tap, in_pos, n_in, n_out)
    bias: Any = 0.0
    if len(ins) > 2 and ins[2] is not None:
        bias = np.repeat(lw.const(ins[2], "input B (the bias)").astype(np.float64).reshape(-1), n_out)
    return [lw.apply_linear(x, node, weight, bias, (out_channels, *window.out_shape))]


def conv_matrix(w: np.ndarray, groups: int, out_pos: np.ndarray, tap: np.ndarray, in_pos: np.ndarray, n_in: int,
                n_out: int) -> sp.csr_matrix:
    """The (out channels x n_out, in channels x n_in) CSR matrix of a convolution, built in
    canonical order: ``w`` is (out channels, in channels per group, taps); the (output position,
    tap, input position) triples come ascending by output position, then input position (as
    ``Window.taps`` gives them). Row (m, p) holds, channel by channel of m's group, the taps of
    position p."""
    out_channels, per_group, _ = w.shape
    taps = out_pos.size
    length = np.bincount(out_pos, minlength=n_out).astype(np.int64)  # taps per output position
    start = np.cumsum(length) - length
    # the entries of one row block, (position, channel, tap) ascending: where each (tap, channel) goes
    t = np.arange(taps, dtype=np.int64)[:, None]
    c = np.arange(per_group, dtype=np.int64)[None, :]
    at = (start[out_pos][:, None] * per_group + c * length[out_pos][:, None] + t - start[out_pos][:, None]).reshape(-1)
    entry_tap, entry_channel = np.empty(at.size, np.int64), np.empty(at.size, np.int64)
    entry_tap[at] = np.broadcast_to(t, (taps, per_group)).reshape(-1)
    entry_channel[at] = np.broadcast_to(c, (taps, per_group)).reshape(-1)
    first_channel = (np.arange(out_channels, dtype=np.int64) // (out_channels // groups)) * per_group
    cols = (first_channel[:, None] + entry_channel[None, :]) * n_in + in_pos[entry_tap][None, :]
    data = w[:, entry_channel, tap[entry_tap]]
    indptr = np.zeros(out_channels * n_out + 1, np.int64)
    np.cumsum(np.tile(length * per_group, out_channels), out=indptr[1:])
    return sp.csr_matrix((data.reshape(-1), cols.reshape(-1), indptr), shape=(out_channels * n_out, per_group * groups * n_in))


@handler("BatchNormalization")
def batch_norm(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """Inference-mode batch norm: a per-channel scale and shift folded into the projection."""
    attrs = attributes(node)
    if attrs.get("training_mode", 0):
        raise Unsupported("training_mode=1 normalizes with the batch's own statistics; export in eval mode")
    for k, what in ((1, "running mean"), (2, "running variance")):
        lw.unused(node, k, what)
    x = lw.affine(ins[0], "input X")
    scale, shift, mean, var = (lw.const(v, what).astype(np.float64).reshape(-1) for v, what in
                               zip(ins[1:5], ("scale", "B", "input_mean", "input_var")))
    if not x.shape or x.shape[0] != scale.size:
        raise Unsupported(f"input X has per-sample shape {x.shape}, the parameters have {scale.size} channels")
    factor = scale / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
    per_channel = int(np.prod(x.shape[1:], dtype=np.int64))
    label = lw.label(node)
    return [x.scale(np.repeat(factor, per_channel), label).shift(np.repeat(shift - mean * factor, per_channel), label)]


@handler("ReduceSum", "ReduceMean")
def reduce_linear(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """Sum or mean over feature axes."""
    attrs = attributes(node)
    x = lw.affine(ins[0], "input data")
    rank = len(x.shape) + 1
    if len(ins) > 1 and ins[1] is not None:
        axes = [int(a) for a in lw.const(ins[1], "input axes").reshape(-1)]
    else:
        axes = list(attrs.get("axes", []))
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return [x.with_nodes(lw.label(node))]
        axes = list(range(rank))
    axes = sorted({a + rank if a < 0 else a for a in axes})
    if 0 in axes:
        raise Unsupported(f"reducing over axis 0 mixes the samples of a batch (axes {axes})")
    sample_axes = [a - 1 for a in axes]
    kept = tuple(1 if i in sample_axes else d for i, d in enumerate(x.shape))
    coords = np.indices(x.shape).reshape(len(x.shape), -1)
    coords[sample_axes] = 0
    rows = np.ravel_multi_index(tuple(coords), kept) if x.shape else np.zeros(1, dtype=np.int64)
    count = x.size // max(1, int(np.prod(kept, dtype=np.int64)))
    value = 1.0 / count if node.op_type == "ReduceMean" else 1.0
    weight = sp.csr_matrix((np.full(x.size, value), (rows, np.arange(x.size))), shape=(int(np.prod(kept)), x.size))
    shape = kept if attrs.get("keepdims", 1) else tuple(d for i, d in enumerate(x.shape) if i not in sample_axes)
    return [lw.apply_linear(x, node, weight, 0.0, shape)]


@handler("Identity")
def identity(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """Pass the value through."""
    return [ins[0]]


@handler("Dropout")
def dropout(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """Inference-mode dropout is the identity."""
    if len(ins) > 2 and ins[2] is not None and bool(lw.const(ins[2], "input training_mode")):
        raise Unsupported("training_mode is true; export the model in eval mode")
    lw.unused(node, 1, "mask")
    return [ins[0]]


@handler("Cast")
def cast(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """Cast to a float type: a comparison becomes a step population; float values pass."""
    to = int(attributes(node).get("to", 0))
    value = ins[0]
    if isinstance(value, Condition):
        if to == onnx.TensorProto.BOOL:
            return [value]
        if to in FLOAT_CASTS:
            return [lw.step(value, node)]
    elif isinstance(value, Affine) and to in FLOAT_CASTS:
        return [value.with_nodes(lw.label(node))]
    name = onnx.TensorProto.DataType.Name(to) if to in onnx.TensorProto.DataType.values() else str(to)
    raise Unsupported(f"Cast to {name} of a tensor that depends on the network input would round or truncate it; "
                      f"only casts to float types are supported")

"""Activations (each makes a population) and comparisons used as step activations."""

from __future__ import annotations

import numpy as np
import onnx

from crossmap.frontend.lowering import Lowerer, attributes, handler
from crossmap.frontend.ops_linear import _binary, _sample_row
from crossmap.frontend.values import Affine, Condition, Unsupported

SIMPLE = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Sign": "sign"}


@handler(*SIMPLE)
def simple(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """Relu, Sigmoid, Tanh, Sign."""
    x = lw.affine(ins[0], "the input")
    return [lw.population(x, node, SIMPLE[node.op_type])]


@handler("LeakyRelu")
def leaky_relu(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """``x if x >= 0 else alpha * x``."""
    x = lw.affine(ins[0], "the input")
    return [lw.population(x, node, "leaky_relu", {"alpha": float(attributes(node).get("alpha", 0.01))})]


@handler("PRelu")
def prelu(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """Leaky relu with a constant slope, one per neuron when it varies."""
    x = lw.affine(ins[0], "input X")
    slope = lw.const(ins[1], "input slope")
    if lw.loaded.original_opset < 7 and slope.ndim == 1 and x.shape and slope.size == x.shape[0] > 1:
        # before opset 7 a 1-d slope is per channel; the opset converter keeps it 1-d
        slope = slope.reshape((-1,) + (1,) * (len(x.shape) - 1))
    slope = _sample_row(lw, slope, x.shape, "input slope")
    alpha = float(slope[0]) if np.all(slope == slope[0]) else slope.copy()
    return [lw.population(x, node, "leaky_relu", {"alpha": alpha})]


@handler("HardSigmoid")
def hard_sigmoid(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """``clip(alpha * x + beta, 0, 1)``."""
    attrs = attributes(node)
    x = lw.affine(ins[0], "the input")
    params = {"alpha": float(attrs.get("alpha", 0.2)), "beta": float(attrs.get("beta", 0.5))}
    return [lw.population(x, node, "hard_sigmoid", params)]


@handler("Clip")
def clip(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """``clip(x, min, max)`` with constant bounds (either may be absent)."""
    x = lw.affine(ins[0], "the input")
    params = {}
    for index, key in ((1, "min"), (2, "max")):
        if len(ins) > index and ins[index] is not None:
            bound = lw.const(ins[index], f"input {key}").reshape(-1)
            if bound.size != 1:
                raise Unsupported(f"input {key} has {bound.size} values; Clip needs a scalar")
            params[key] = float(bound[0])
    if not params:
        return [x.with_nodes(lw.label(node))]
    return [lw.population(x, node, "clip", params)]


@handler("Greater", "GreaterOrEqual", "Less", "LessOrEqual")
def compare(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """``a > b`` and friends, where one side may be a constant: a Condition ``z > t``."""
    a, b, _ = _binary(lw, node, ins[0], ins[1])
    label = lw.label(node)
    inclusive = node.op_type.endswith("OrEqual")
    if node.op_type.startswith("Less"):
        a, b = b, a  # a < b  <=>  b > a
    if isinstance(a, Affine) and isinstance(b, Affine):
        return [Condition(a.plus(b.scale(-1.0, label), label), np.zeros(a.size), inclusive)]
    if isinstance(a, Affine):
        return [Condition(a.with_nodes(label), b, inclusive)]
    return [Condition(b.scale(-1.0, label), -a, inclusive)]  # c > x  <=>  -x > -c


@handler("Not")
def not_(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """``not (z > t)`` is ``-z >= -t``."""
    cond = ins[0]
    if not isinstance(cond, Condition):
        raise Unsupported("Not is supported only on comparison results")
    return [Condition(cond.affine.scale(-1.0, lw.label(node)), -np.asarray(cond.threshold), not cond.inclusive,
                      cond.nodes)]


@handler("Where")
def where(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """``where(z > t, p, q)`` with constants p, q: a step population scaled to q + (p - q) * step."""
    cond, p, q = ins
    if not isinstance(cond, Condition):
        raise Unsupported("the condition must be a comparison of a network tensor with a constant")
    if isinstance(p, Affine) or isinstance(q, Affine):
        raise Unsupported("Where between tensors that depend on the network input is not supported (only "
                          "between constants)")
    step = lw.step(cond, node)
    step, p_row, _ = _binary(lw, node, step, p)
    step, q_row, _ = _binary(lw, node, step, q)
    return [step.scale(p_row - q_row, lw.label(node)).shift(q_row, lw.label(node))]

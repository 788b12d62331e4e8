"""The model's output: Softmax / LogSoftmax / ArgMax at the end are dropped (the class is the
argmax of the output population either way) and recorded so they can be replayed; the tensor
before them becomes the output population."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from crossmap.errors import ModelError
from crossmap.frontend.loading import DEFAULT_DOMAINS
from crossmap.frontend.values import Affine, Condition, Const, Unsupported

TAIL_OPS = ("Softmax", "LogSoftmax", "ArgMax")
ORDER_PRESERVING = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")


def find_output_tail(nodes: list[onnx.NodeProto], output: str) -> list[onnx.NodeProto]:
    """The nodes at the end of the graph, in data order, that are dropped: from the first
    Softmax/LogSoftmax/ArgMax on the path to ``output``, through order-preserving reshapes."""
    producer = {name: node for node in nodes for name in node.output if name}
    chain: list[onnx.NodeProto] = []
    tensor = output
    while tensor in producer:
        node = producer[tensor]
        if node.domain not in DEFAULT_DOMAINS or node.op_type not in TAIL_OPS + ORDER_PRESERVING:
            break
        chain.append(node)
        tensor = node.input[0]
    deepest = [i for i, node in enumerate(chain) if node.op_type in TAIL_OPS]
    if not deepest:
        return []
    tail = chain[:deepest[-1] + 1]
    internal = {name for node in tail for name in node.output}
    tail_ids = {id(n) for n in tail}
    for node in nodes:  # a tail tensor read elsewhere: treat the ops as ordinary nodes
        if id(node) not in tail_ids and internal.intersection(node.input):
            return []
    return tail[::-1]


def finish_output(lw: Any, tail: list[onnx.NodeProto]) -> tuple[str, list[dict[str, Any]]]:
    """The output population's name and the dropped output ops (checked to act on whole samples)."""
    tensor = tail[0].input[0] if tail else lw.loaded.output_name
    producer = {name: node for node in lw.nodes for name in node.output if name}
    value = lw.values.get(tensor)
    node = producer.get(tensor)
    if isinstance(value, Const):
        raise ModelError(f"model {lw.loaded.source}: output {tensor!r} does not depend on the input "
                         f"{lw.loaded.input_name!r} (it is a constant); remedy: export the trained network, not "
                         f"a constant graph")
    if isinstance(value, Condition):
        value = lw.step(value, node)
    if not isinstance(value, Affine):  # the producer was already reported as unsupported
        return "input", []
    name = value.population()
    if name is None:
        name = next(iter(lw.population(value, node, name=value.origin).terms))
    return name, _tail_ops(lw, tail, value.shape)


def _tail_ops(lw: Any, tail: list[onnx.NodeProto], shape: tuple[int, ...]) -> list[dict[str, Any]]:
    """Check each dropped op acts on whole samples and describe it for ``apply_output_ops``."""
    ops: list[dict[str, Any]] = []
    array = np.zeros((lw.batch, *shape), dtype=np.float32)
    for node in tail:
        try:
            extra = [lw.const(lw.values.get(name), f"input {i} of {node.op_type}") if name else None
                     for i, name in enumerate(node.input[1:], start=1)]
            if node.op_type in TAIL_OPS:
                ops.append(_describe(lw, node, array.shape))
            array = lw.evaluate(node, [array, *extra])[0]
        except Unsupported as exc:
            lw.report(node, str(exc))
            return ops
    return ops


def _describe(lw: Any, node: onnx.NodeProto, shape: tuple[int, ...]) -> dict[str, Any]:
    from crossmap.frontend.lowering import attributes

    attrs = attributes(node)
    default_axis = 0 if node.op_type == "ArgMax" else -1
    axis = attrs.get("axis", default_axis)
    rank = len(shape)
    axis = axis + rank if axis < 0 else axis
    sample = int(np.prod(shape[1:], dtype=np.int64))
    if axis == 0:
        raise Unsupported(f"{node.op_type} over axis 0 mixes the samples of a batch; crossmap needs it over the "
                          f"features of each sample")
    if shape[axis] != sample:
        raise Unsupported(f"{node.op_type} over axis {axis} of a sample of shape {tuple(shape[1:])} treats parts of "
                          f"the sample separately; crossmap can drop it only when it covers the whole sample (the "
                          f"class is the argmax over all output neurons)")
    info = {"op": node.op_type, "name": lw.label(node)}
    if node.op_type == "ArgMax":
        info["select_last_index"] = bool(attrs.get("select_last_index", 0))
    return info

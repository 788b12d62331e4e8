"""Ops that only move elements (Reshape, Flatten, Transpose, Concat, Slice, Pad, ...) and the shape
queries (Shape, Size).

A movement op is run by onnx's reference evaluator on tensors of element ids instead of values:
every element of every data input gets a distinct integer, so the op's output says which input
element each output element is. That gives the new element order of the network tensor (its
neurons are only relabelled) and checks that no element moves between samples. With a dynamic
batch the op is run for two batch sizes, which must give the same per-sample relabelling.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import scipy.sparse as sp

from crossmap.frontend.lowering import Lowerer, handler
from crossmap.frontend.values import Affine, Condition, Const, Unsupported

# op -> indices of its data inputs (None: all inputs)
MOVEMENT = {"Reshape": [0], "Flatten": [0], "Squeeze": [0], "Unsqueeze": [0], "Transpose": [0], "Concat": None,
            "Slice": [0], "Split": [0], "Gather": [0], "Pad": [0], "Expand": [0], "Tile": [0],
            "DepthToSpace": [0], "SpaceToDepth": [0]}
PAD_ID = -1  # the id of elements a Pad op creates


@handler(*MOVEMENT)
def movement(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """Relabel the neurons of the data input(s) as the op moves them."""
    data = MOVEMENT[node.op_type]
    data = list(range(len(ins))) if data is None else data
    for i, value in enumerate(ins):
        if i in data and isinstance(value, Condition):
            raise Unsupported(f"input {i} is a comparison result; apply {node.op_type} before the comparison")
        if i not in data and value is not None and not isinstance(value, Const):
            raise Unsupported(f"input {i} depends on the network input; crossmap needs it to be a constant")
    pad_value = 0.0
    if node.op_type == "Pad" and len(ins) > 2 and ins[2] is not None:
        pad_value = float(lw.const(ins[2], "input constant_value").reshape(-1)[0])
    runs = [_run(lw, node, ins, data, lw.batch, alt=False)]
    if lw.alt_batch is not None:
        runs.append(_run(lw, node, ins, data, lw.alt_batch, alt=True))
    results = []
    for k in range(len(runs[0])):
        shape, source, local = runs[0][k]
        for other in runs[1:]:
            if other[k][0] != shape or not np.array_equal(other[k][1], source) or not np.array_equal(other[k][2], local):
                raise Unsupported(f"output {k} moves elements differently for different batch sizes (per-sample shape "
                                  f"{shape} vs {other[k][0]}); the op treats the batch axis as a feature axis")
        results.append(_assemble(lw, node, ins, data, shape, source, local, pad_value))
    return results


def _run(lw: Lowerer, node: onnx.NodeProto, ins: list, data: list[int], batch: int,
         alt: bool) -> list[tuple[tuple[int, ...], np.ndarray, np.ndarray]]:
    """Run the op on element ids for ``batch`` samples; per output: per-sample shape, and for each
    per-sample element the data input it comes from (-1: padding) and its index there."""
    arrays: list[np.ndarray | None] = []
    ranges: list[tuple[int, int, int, int]] = []  # (input index, first id, id count, ids per sample or 0)
    next_id = 0
    for i, value in enumerate(ins):
        if value is None:
            arrays.append(None)
            continue
        if i in data and isinstance(value, Affine):
            count, per_sample = batch * value.size, value.size
            ids = np.arange(next_id, next_id + count, dtype=np.int64).reshape((batch, *value.shape))
        elif i in data:
            const = value.alt if alt and value.alt is not None else value.value
            count, per_sample = const.size, 0
            ids = np.arange(next_id, next_id + count, dtype=np.int64).reshape(const.shape)
        else:
            arrays.append(value.alt if alt and value.alt is not None else value.value)
            continue
        arrays.append(ids)
        ranges.append((i, next_id, count, per_sample))
        next_id += count
    if node.op_type == "Pad":  # padding gets the id PAD_ID instead of the constant value
        arrays += [None] * (3 - len(arrays))
        arrays[2] = np.array(PAD_ID, dtype=np.int64)
        node = _with_pad_input(node)
    outputs = lw.evaluate(node, arrays)
    return [_decode(out, ranges, batch, k) for k, out in enumerate(outputs)]


def _with_pad_input(node: onnx.NodeProto) -> onnx.NodeProto:
    """``node`` (a Pad) with its optional constant_value input named, so it can be fed."""
    if len(node.input) > 2 and node.input[2]:
        return node
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    while len(copy.input) < 3:
        copy.input.append("")
    copy.input[2] = "__crossmap_pad_value"
    return copy


def _decode(out: np.ndarray, ranges: list[tuple[int, int, int, int]], batch: int,
            k: int) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """Per-sample source input and index of every element of an output id tensor."""
    if out.ndim == 0 or out.shape[0] != batch:
        raise Unsupported(f"for a batch of {batch} samples its output {k} has shape {out.shape}: axis 0 no longer "
                          f"holds the samples, the op mixes samples with features")
    flat = out.reshape(batch, -1)
    source = np.full(flat.shape, -1, dtype=np.int64)
    local = np.zeros(flat.shape, dtype=np.int64)
    for index, first, count, per_sample in ranges:
        hit = (flat >= first) & (flat < first + count)
        rel = flat - first
        source[hit] = index
        if per_sample:
            sample = rel // per_sample
            if np.any(hit & (sample != np.arange(batch)[:, None])):
                raise Unsupported(f"output {k} moves elements between samples of the batch")
            local[hit] = (rel % per_sample)[hit]
        else:
            local[hit] = rel[hit]
    if np.any((source == -1) & (flat != PAD_ID)):
        raise Unsupported(f"output {k} holds values that are not elements of its inputs")
    same_source = np.all(source == source[:1], axis=0)
    same_local = np.all(local == local[:1], axis=0)
    if not (np.all(same_source) and np.all(same_local)):
        if np.all(same_source) and any(per_sample == 0 and np.any(~same_local & (source[0] == index))
                                       for index, _, _, per_sample in ranges):
            raise Unsupported(f"output {k} takes different elements of a constant input for different samples (the "
                              f"constant differs between the samples of a batch)")
        raise Unsupported(f"output {k} arranges the elements of each sample differently")
    return tuple(int(d) for d in out.shape[1:]), source[0], local[0]


def _assemble(lw: Lowerer, node: onnx.NodeProto, ins: list, data: list[int], shape: tuple[int, ...],
              source: np.ndarray, local: np.ndarray, pad_value: float) -> Any:
    """The output value: rows of the network inputs, constants and padding at their places."""
    size = source.size
    bias = np.full(size, pad_value, dtype=np.float64)
    terms: dict[str, sp.csr_matrix] = {}
    nodes: list[str] = []
    origin = None
    for i in data:
        value = ins[i] if i < len(ins) else None
        at = np.flatnonzero(source == i)
        if value is None or at.size == 0:
            continue
        if isinstance(value, Const):
            bias[at] = value.value.astype(np.float64).reshape(-1)[local[at]]
            continue
        select = sp.csr_matrix((np.ones(at.size), (at, local[at])), shape=(size, value.size))
        for name, matrix in value.terms.items():
            part = select @ matrix
            terms[name] = (terms[name] + part).tocsr() if name in terms else part.tocsr()
        bias[at] = value.bias[local[at]]
        nodes += [n for n in value.nodes if n not in nodes]
        origin = origin or value.origin
    return Affine(shape, terms, bias, nodes + [lw.label(node)], origin)


@handler("Shape")
def shape(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """The shape (batch, *per-sample shape) of a network tensor, as a constant."""
    from crossmap.frontend.lowering import attributes

    value = ins[0]
    attrs = attributes(node)

    def dims(batch: int) -> np.ndarray:
        full = np.array([batch, *value.shape], dtype=np.int64)
        start, end = attrs.get("start", 0), attrs.get("end", len(full))
        return full[slice(start, end)]

    alt = dims(lw.alt_batch) if lw.alt_batch is not None else None
    primary = dims(lw.batch)
    return [Const(primary, None if alt is None or np.array_equal(alt, primary) else alt)]


@handler("Size")
def size(lw: Lowerer, node: onnx.NodeProto, ins: list) -> list:
    """The element count of a network tensor, as a constant."""
    per_sample = int(np.prod(ins[0].shape, dtype=np.int64))
    primary = np.array(lw.batch * per_sample, dtype=np.int64)
    return [Const(primary, None if lw.alt_batch is None else np.array(lw.alt_batch * per_sample, dtype=np.int64))]

"""The graph walk that lowers a loaded ONNX model to the float Network IR.

Nodes are visited in the graph's (topological) order. Nodes whose inputs are all constant are
folded with onnx's reference evaluator; the others go to the op handlers registered in
``HANDLERS`` (modules ``ops_*``), which turn ``Affine`` values into new ``Affine`` values or into
populations. Every node that cannot be lowered is recorded, the walk goes on, and at the end one
``UnsupportedModelError`` lists them all.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator

from crossmap.errors import UnsupportedModelError
from crossmap.ir import INPUT, Network, Population, Projection
from crossmap.frontend.loading import DEFAULT_DOMAINS, LoadedModel, to_numpy
from crossmap.frontend.values import Affine, Condition, Const, Poison, Unsupported

Value = Any  # Const | Affine | Condition | Poison | None
Handler = Callable[["Lowerer", onnx.NodeProto, list], list]

HANDLERS: dict[str, Handler] = {}

MAX_FOLDED_ELEMENTS = 2**26  # the largest constant a folded node may make (512 MiB of float64)


def folded_size(node: onnx.NodeProto, arrays: list[np.ndarray | None]) -> int | None:
    """Elements of the output of a node that can make a large tensor from small inputs
    (ConstantOfShape, Expand, Tile, Range), computed from its inputs without running it; None
    for other nodes or inputs it cannot read."""
    try:
        if node.op_type == "ConstantOfShape" and arrays and arrays[0] is not None:
            return int(np.prod(np.asarray(arrays[0], dtype=np.float64)))
        if node.op_type == "Expand" and len(arrays) >= 2 and arrays[0] is not None and arrays[1] is not None:
            shape = np.broadcast_shapes(np.shape(arrays[0]), tuple(int(d) for d in np.asarray(arrays[1]).reshape(-1)))
            return int(np.prod(np.asarray(shape, dtype=np.float64)))
        if node.op_type == "Tile" and len(arrays) >= 2 and arrays[0] is not None and arrays[1] is not None:
            repeats = np.asarray(arrays[1], dtype=np.float64).reshape(-1)
            return int(np.asarray(arrays[0]).size * np.prod(repeats))
        if node.op_type == "Range" and len(arrays) >= 3 and all(a is not None for a in arrays[:3]):
            start, limit, delta = (float(np.asarray(a).reshape(-1)[0]) for a in arrays[:3])
            return int(max(0.0, np.ceil((limit - start) / delta))) if delta else None
    except (ValueError, TypeError, OverflowError):
        return None
    return None

# With a dynamic batch axis, Shape of a network tensor is evaluated for two batch sizes, so
# constants that depend on the batch can be told apart from those that do not.
PRIMARY_BATCH, ALT_BATCH = 2, 3

WHY_NOT = {
    "Softmax": "Softmax is supported only at the output, over the whole sample (it is dropped there; the class "
               "is the argmax)",
    "LogSoftmax": "LogSoftmax is supported only at the output, over the whole sample",
    "ArgMax": "ArgMax is supported only at the output, over the whole sample",
}


def handler(*ops: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the lowering of ONNX ops ``ops``."""
    def register(fn: Handler) -> Handler:
        for op in ops:
            HANDLERS[op] = fn
        return fn
    return register


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """A node's attributes as python values (strings decoded)."""
    out = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode()
        out[attr.name] = value
    return out


class Lowerer:
    """State of one import: values of the ONNX tensors, the populations and projections made so
    far, and the nodes that could not be lowered."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.graph = loaded.model.graph
        self.opsets = loaded.opsets
        self.opset = loaded.opset
        self.batch = loaded.batch or PRIMARY_BATCH
        self.alt_batch = None if loaded.batch else ALT_BATCH
        self.values: dict[str, Value] = {}
        self.populations: list[Population] = [Population(INPUT, tuple(loaded.sample_shape))]
        self.projections: list[Projection] = []
        self.unsupported: list[dict[str, Any]] = []
        self.folded = 0
        self.skipped = 0  # supported nodes not checked because they read an unsupported node's output
        self._names = {INPUT}
        # one list of node objects: protobuf may hand out new wrappers on every access, and
        # nodes are identified by id() below
        self.nodes = list(self.graph.node)
        self._labels = {id(n): n.name or f"{n.op_type}_{i}" for i, n in enumerate(self.nodes)}
        self._evaluators: dict[int, ReferenceEvaluator] = {}
        self._read = {name for n in self.nodes for name in n.input} | {o.name for o in self.graph.output}

    # ------------------------------------------------------------------ naming and records
    def label(self, node: onnx.NodeProto) -> str:
        """The node's name, or ``<op>_<index>`` when it has none."""
        return self._labels.get(id(node)) or node.name or node.op_type

    def unique(self, name: str) -> str:
        """``name`` made unique among population names."""
        candidate, k = name, 1
        while candidate in self._names:
            k += 1
            candidate = f"{name}_{k}"
        self._names.add(candidate)
        return candidate

    def report(self, node: onnx.NodeProto, why: str) -> None:
        """Record that ``node`` cannot be lowered."""
        domain = node.domain or "ai.onnx"
        self.unsupported.append({"name": self.label(node), "op": node.op_type, "domain": domain,
                                 "opset": self.opsets.get(node.domain, self.opsets.get("ai.onnx", self.opset)),
                                 "why": why})

    # ------------------------------------------------------------------ values
    def affine(self, value: Value, what: str) -> Affine:
        """``value`` as an Affine, or ``Unsupported`` naming ``what``."""
        if isinstance(value, Affine):
            return value
        if isinstance(value, Condition):
            raise Unsupported(f"{what} is a comparison result; comparisons are supported only as step "
                              f"activations (Cast to float, or Where between constants)")
        raise Unsupported(f"{what} does not depend on the network input")

    def const(self, value: Value, what: str, default: Any = None) -> np.ndarray:
        """``value`` as a constant array (``default`` when the optional input is absent)."""
        if value is None:
            if default is None:
                raise Unsupported(f"{what} is missing")
            return np.asarray(default)
        if not isinstance(value, Const):
            raise Unsupported(f"{what} depends on the network input; crossmap needs it to be a constant")
        return value.fixed(what)

    def fold(self, node: onnx.NodeProto, inputs: list[Value]) -> list[Value]:
        """Evaluate a node whose inputs are all constant (twice when one depends on the batch)."""
        primary = self.evaluate(node, [None if v is None else v.value for v in inputs])
        if not any(isinstance(v, Const) and v.alt is not None for v in inputs):
            return [Const(a) for a in primary]
        alt = self.evaluate(node, [None if v is None else (v.value if v.alt is None else v.alt) for v in inputs])
        return [Const(a, None if a.shape == b.shape and np.array_equal(a, b) else b) for a, b in zip(primary, alt)]

    def evaluate(self, node: onnx.NodeProto, arrays: list[np.ndarray | None]) -> list[np.ndarray]:
        """Run one node on numpy arrays with onnx's reference evaluator (refusing one whose output
        would be larger than ``MAX_FOLDED_ELEMENTS``)."""
        size = folded_size(node, arrays)
        if size is not None and size > MAX_FOLDED_ELEMENTS:
            raise Unsupported(f"folding it would make a constant of {size:,} elements, more than the "
                              f"{MAX_FOLDED_ELEMENTS:,} crossmap materialises; such a tensor cannot be a layer of "
                              f"a chip program, so the model is likely malformed (check the shape it is given)")
        evaluator = self._evaluators.get(id(node))
        if evaluator is None:
            evaluator = ReferenceEvaluator(node, opsets=self.opsets)
            self._evaluators[id(node)] = evaluator
        feeds = {name: array for name, array in zip(node.input, arrays) if name and array is not None}
        try:
            outputs = evaluator.run(None, feeds)
        except Exception as exc:  # any failure of the reference kernels
            raise Unsupported(f"cannot evaluate it on constants: {str(exc).splitlines()[0] if str(exc) else exc!r}")
        return [np.asarray(o) for o in outputs]

    # ------------------------------------------------------------------ populations
    def population(self, value: Affine, node: onnx.NodeProto, activation: str = "identity",
                   params: dict[str, Any] | None = None, reduce: str = "sum", name: str | None = None) -> Affine:
        """Make a population computing ``activation(value)`` and return its values."""
        label = self.label(node)
        pop_name = self.unique(name or value.origin or label)
        nodes = value.nodes + ([label] if label not in value.nodes else [])
        self.populations.append(Population(pop_name, tuple(value.shape), activation, dict(params or {}),
                                           np.array(value.bias, dtype=np.float64), reduce, nodes))
        for source, weight in value.terms.items():
            self.projections.append(Projection(source, pop_name, weight.tocsr()))
        return Affine.of_population(pop_name, value.shape)

    def as_population(self, value: Affine, node: onnx.NodeProto) -> str:
        """The population equal to ``value``, made (identity activation) if there is none."""
        name = value.population()
        if name is not None:
            return name
        made = self.population(value, node, name=value.origin)
        return next(iter(made.terms))

    def apply_linear(self, value: Affine, node: onnx.NodeProto, weight: Any, bias: Any,
                     shape: tuple[int, ...]) -> Affine:
        """``weight @ value + bias``: composed into the pending projection when ``value`` is only a
        (scaled) selection of neurons, else applied to a population made from ``value``."""
        if not value.is_selection():
            value = Affine.of_population(self.as_population(value, node), value.shape)
        return value.linear(weight, bias, shape, self.label(node), origin=self.label(node))

    def step(self, cond: Condition, node: onnx.NodeProto) -> Affine:
        """A step population equal to ``cond`` as 0/1 floats."""
        thresholds = np.asarray(cond.threshold, dtype=np.float64).reshape(-1)
        value = cond.affine.with_nodes(*cond.nodes)
        if thresholds.size and np.all(thresholds == thresholds[0]):
            threshold = float(thresholds[0])
        else:  # per-neuron thresholds go into the bias
            value = value.shift(-np.broadcast_to(thresholds, (value.size,)), "")
            threshold = 0.0
        return self.population(value, node, "step", {"threshold": threshold, "inclusive": bool(cond.inclusive)})

    # ------------------------------------------------------------------ the walk
    def run(self) -> Network:
        """Lower the whole graph; raise UnsupportedModelError listing every node that cannot be."""
        from crossmap.frontend.output import find_output_tail, finish_output

        tail = find_output_tail(self.nodes, self.loaded.output_name)
        live = _live_nodes(self.nodes, self.loaded.output_name)
        tail_ids = {id(n) for n in tail}
        for tensor in self.graph.initializer:
            self.values[tensor.name] = Const(to_numpy(tensor))
        self.values[self.loaded.input_name] = Affine.of_population(INPUT, tuple(self.loaded.sample_shape))
        for node in self.nodes:
            if id(node) in live and id(node) not in tail_ids:
                self.visit(node)
        output, output_ops = finish_output(self, tail)
        if self.unsupported:
            error = UnsupportedModelError(_unsupported_message(self))
            error.nodes = list(self.unsupported)
            raise error
        return Network(self.populations, self.projections, output, {"output_ops": output_ops})

    def visit(self, node: onnx.NodeProto) -> None:
        """Lower one node and store the values of its outputs."""
        missing = [name for name in node.input if name and name not in self.values]
        inputs = [self.values.get(name) if name else None for name in node.input]
        fn = HANDLERS.get(node.op_type) if node.domain in DEFAULT_DOMAINS else None
        if missing:
            self._poison(node)
            if not any(isinstance(self.values.get(n), Poison) for n in missing):
                self.report(node, f"reads tensor(s) {missing} that no node produces")
            return
        if any(isinstance(v, Poison) for v in inputs):
            self._poison(node)
            if fn is None:
                self.report(node, self._why_not(node))
            else:
                self.skipped += 1
            return
        try:
            if all(v is None or isinstance(v, Const) for v in inputs):
                outputs = self.fold(node, inputs)
                self.folded += 1
            elif fn is None:
                raise Unsupported(self._why_not(node))
            else:
                outputs = fn(self, node, inputs)
        except Unsupported as exc:
            self.report(node, str(exc))
            self._poison(node)
            return
        for name, value in zip(node.output, outputs):
            if name:
                self.values[name] = value if value is not None else Poison()
        for name in node.output[len(outputs):]:
            if name:
                self.values[name] = Poison()

    def _why_not(self, node: onnx.NodeProto) -> str:
        if node.domain not in DEFAULT_DOMAINS:
            return f"operator domain {node.domain!r} is not the standard ONNX operator set"
        if node.op_type in WHY_NOT:
            return WHY_NOT[node.op_type]
        return f"{node.op_type} on a tensor that depends on the network input has no lowering to neurons"

    def _poison(self, node: onnx.NodeProto) -> None:
        for name in node.output:
            if name:
                self.values[name] = Poison()

    def unused(self, node: onnx.NodeProto, index: int, what: str) -> None:
        """``Unsupported`` when output ``index`` of ``node`` (``what``) is read by the model."""
        if index < len(node.output) and node.output[index] and node.output[index] in self._read:
            raise Unsupported(f"its output {index} ({what}) is used by the model; crossmap can only lower "
                              f"output 0")


def _live_nodes(nodes: list[onnx.NodeProto], output: str) -> set[int]:
    """Ids of the nodes the output depends on."""
    producer = {name: node for node in nodes for name in node.output if name}
    live, stack = set(), [output]
    seen = set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        node = producer.get(name)
        if node is None or id(node) in live:
            continue
        live.add(id(node))
        stack.extend(n for n in node.input if n)
        for attr in node.attribute:  # tensors that subgraphs read from the outer scope
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                stack.extend(n for inner in sub.node for n in inner.input if n)
    return live


def _unsupported_message(lw: Lowerer) -> str:
    from crossmap.frontend import SUPPORTED_OPS

    lines = [f"model {lw.loaded.source}: {len(lw.unsupported)} node(s) cannot be lowered to neurons "
             f"(opset {lw.loaded.original_opset}" + (f", converted to {lw.opset}" if lw.opset != lw.loaded.original_opset
                                                     else "") + "):"]
    for item in lw.unsupported:
        lines.append(f"  - node {item['name']!r}: op {item['op']} (domain {item['domain']}, opset {item['opset']}): "
                     f"{item['why']}")
    if lw.skipped:
        lines.append(f"  ({lw.skipped} node(s) of supported ops that read these nodes' outputs were not checked)")
    lines.append("supported ops: " + ", ".join(SUPPORTED_OPS))
    lines.append("remedy: replace these layers with supported ones (or move them out of the model) and "
                 "re-export")
    return "\n".join(lines)

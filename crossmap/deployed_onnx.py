"""Export a DeployedNetwork as an ONNX model that reproduces its tick dynamics exactly.

The model takes input spikes ``spikes`` (batch, input_ticks, num_inputs) as float 0/1 and returns
``class_counts`` (batch, num_classes): the output spikes per class over the run. Every tick of the
run is unrolled; per tick and group (docs/chip-model.md):

    acc  = sum over sources of MatMul(arriving spikes, integer weight matrix)
    V    = Clip(V + acc, v_min, v_max);  V = Clip(V + leak, v_min, v_max)
    fire = GreaterOrEqual(V, alpha)
    V    = Where(fire, reset by mode, Max(V, -beta))

The weight matrix of a source is (source size, group size): entry (k, j) is the sum over the lines
reading source neuron k of neuron j's weight for the line's type where the line has a synapse to j.
Spikes of a source neuron with delay d fired on tick t arrive on tick t + d. float32 is exact: every
value is an integer below 2^24.

Two prunings keep the graph small without changing any output: a group that is at rest (its
potential does not change and it does not fire without input) is not updated before the first tick
an input can reach it, and a group is not updated after the last tick on which its spikes can
still reach an output within the run. A single-tick feed-forward network thus becomes a plain
layered graph: one MatMul, Add, GreaterOrEqual and Cast per layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import scipy.sparse as sp
from numpy.typing import ArrayLike, DTypeLike
from onnx import TensorProto, helper, numpy_helper

from crossmap.errors import CrossmapError

if TYPE_CHECKING:
    from crossmap.deployed import DeployedNetwork, NeuronGroup


OPSET = 17
INPUT = "input"
ZERO = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])  # ConstantOfShape fill value


def deployed_to_onnx(net: DeployedNetwork, ticks: int | None = None) -> onnx.ModelProto:
    """The ONNX model of ``net`` (a DeployedNetwork) run for ``ticks`` ticks (default: input ticks
    plus latency)."""
    for g in net.groups:
        if g.threshold_mask.any() or g.stochastic_synapse.any():
            raise CrossmapError(f"group {g.name!r} uses stochastic modes, whose draws depend on core placement; "
                                f"only deterministic deployed networks can be exported to ONNX")
    total = int(ticks) if ticks is not None else int(net.input_ticks) + net.latency()
    if total < 1:
        raise CrossmapError(f"cannot export a run of {total} ticks; give ticks >= 1")
    return _Exporter(net, total).build()


def export_bytes(net: DeployedNetwork) -> int:
    """Bytes of the dense weight blocks ``deployed_to_onnx`` would write: per layer and source,
    the source neurons that reach the layer times the layer's size, float32."""
    total = 0
    for g in net.groups:
        rows: dict[str, set[int]] = {}
        for lines in net.incoming(g.name):
            used = np.unique(lines.source_index[np.diff(sp.csr_matrix(lines.synapses).indptr) > 0])
            rows.setdefault(lines.source, set()).update(used.tolist())
        total += 4 * g.size * sum(len(r) for r in rows.values())
    return total


class _Exporter:
    """Unrolls the ticks of one deployed network into an ONNX graph."""

    def __init__(self, net: DeployedNetwork, total: int) -> None:
        self.net = net
        self.total = total
        self.chip = net.chip
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0
        self._made: set[str] = set()
        self.index = {g.name: g for g in net.groups}
        self.sources = {g.name: self._source_matrices(g) for g in net.groups}

    # ------------------------------------------------------------------ graph helpers
    def const(self, name: str, value: ArrayLike, dtype: DTypeLike = np.float32) -> str:
        """Add an initializer and return its name."""
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: Any) -> str:
        """Add a node with one output; return the output name."""
        self.count += 1
        out = f"{op_type.lower()}_{self.count}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{op_type}_{self.count}", **attrs))
        return out

    # ------------------------------------------------------------------ static structure
    def _source_matrices(self, g: NeuronGroup) -> dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]:
        """source -> delay -> (source neuron indices, dense weight rows (len, g.size))."""
        out: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
        by_source: dict[str, sp.csr_matrix] = {}
        for lines in self.net.incoming(g.name):
            rows, cols = lines.connected()
            vals = g.weight[cols, lines.axon_type[rows]].astype(np.float64)
            n_src = self.net.num_inputs if lines.source == INPUT else self.index[lines.source].size
            m = sp.csr_matrix((vals, (lines.source_index[rows], cols)), shape=(n_src, g.size))
            by_source[lines.source] = by_source[lines.source] + m if lines.source in by_source else m
        for src, m in by_source.items():
            m = m.tocsr()
            used = np.flatnonzero(np.diff(m.indptr) > 0)
            if used.size == 0:
                continue
            delays = np.zeros(m.shape[0], np.int64) if src == INPUT else self.index[src].delay.astype(np.int64)
            out[src] = {}
            for d in np.unique(delays[used]):
                idx = used[delays[used] == d]
                out[src][int(d)] = (idx, m[idx].toarray())
        return out

    def _at_rest(self, g: NeuronGroup) -> bool:
        """True when, without input, the group keeps V = initial_v and never fires."""
        c = self.chip
        v0 = g.initial_v.astype(np.int64)
        v1 = np.clip(np.clip(v0, c.v_min, c.v_max) + g.leak, c.v_min, c.v_max)
        if np.any(v1 >= g.alpha):
            return False
        return bool(np.all(np.where(v1 < -g.beta, -g.beta, v1) == v0))

    def _schedule(self) -> tuple[dict[str, int], dict[str, int]]:
        """(first tick, last tick) each group must be updated on."""
        first = {g.name: (self.total if self._at_rest(g) else 0) for g in self.net.groups}
        changed = True
        while changed:
            changed = False
            for g in self.net.groups:
                for src, by_delay in self.sources[g.name].items():
                    start = 0 if src == INPUT else first[src]
                    tick = start + (0 if src == INPUT else min(by_delay))
                    if tick < first[g.name]:
                        first[g.name] = tick
                        changed = True
        last = {g.name: (self.total - 1 if (g.output_class >= 0).any() else -1) for g in self.net.groups}
        changed = True
        while changed:
            changed = False
            for g in self.net.groups:
                for src, by_delay in self.sources[g.name].items():
                    if src == INPUT or last[g.name] < 0:
                        continue
                    tick = last[g.name] - min(by_delay)
                    if tick > last[src]:
                        last[src] = tick
                        changed = True
        return first, last

    # ------------------------------------------------------------------ build
    def build(self) -> onnx.ModelProto:
        """The checked ModelProto."""
        net, chip = self.net, self.chip
        t_in = int(net.input_ticks)
        first, last = self._schedule()
        vmin = self.const("v_min", chip.v_min)
        vmax = self.const("v_max", chip.v_max)
        batch = self.op("Shape", ["spikes"])
        batch = self.op("Slice", [batch, self.const("zero_i", [0], np.int64), self.const("one_i", [1], np.int64)])
        inputs: dict[int, str] = {}
        state: dict[str, str] = {}
        fired: dict[tuple[str, int], str] = {}
        counts: dict[str, str] = {}
        for t in range(self.total):
            for g in net.groups:
                p = g.name
                if t < first[p] or t > last[p]:
                    continue
                if p not in state:
                    shape = self.op("Concat", [batch, self.const(f"{p}.size", [g.size], np.int64)], axis=0)
                    zeros = self.op("ConstantOfShape", [shape], value=ZERO)
                    state[p] = self.op("Add", [zeros, self.const(f"{p}.initial_v", g.initial_v)])
                terms = []
                for src, by_delay in self.sources[p].items():
                    for d, (idx, _) in by_delay.items():
                        if src == INPUT:
                            if t >= t_in:
                                continue
                            if t not in inputs:
                                inputs[t] = self.op("Gather", ["spikes", self.const(f"tick{t}", t, np.int64)], axis=1)
                            active = inputs[t]
                        else:
                            key = (src, t - d)
                            if key not in fired:
                                continue  # nothing fired (pruned or before the run)
                            active = fired[key]
                        weight, gather = self._matrix(p, src, d)
                        if gather is not None:
                            active = self.op("Gather", [active, gather], axis=1)
                        terms.append(self.op("MatMul", [active, weight]))
                v = state[p]
                if terms:
                    acc = terms[0]
                    for term in terms[1:]:
                        acc = self.op("Add", [acc, term])
                    v = self.op("Clip", [self.op("Add", [v, acc]), vmin, vmax])
                if g.leak.any():
                    v = self.op("Clip", [self.op("Add", [v, self._vec(p, "leak", g.leak)]), vmin, vmax])
                alpha = self._vec(p, "alpha", g.alpha)
                fire = self.op("GreaterOrEqual", [v, alpha])
                spikes = self.op("Cast", [fire], to=TensorProto.FLOAT)
                fired[(p, t)] = spikes
                if (g.output_class >= 0).any():
                    counts[p] = self.op("Add", [counts[p], spikes]) if p in counts else spikes
                if t < last[p]:
                    state[p] = self.op("Where", [fire, self._reset(g, v, alpha),
                                                 self.op("Max", [v, self._vec(p, "neg_beta", -g.beta)])])
        return self._finish(counts, batch)

    def _matrix(self, group: str, src: str, delay: int) -> tuple[str, str | None]:
        """(weight initializer, gather indices or None) of one source and delay (created once)."""
        idx, m = self.sources[group][src][delay]
        name = f"{group}.{src}.d{delay}"
        n_src = self.net.num_inputs if src == INPUT else self.index[src].size
        full = idx.size == n_src and np.all(idx == np.arange(n_src))
        if name not in self._made:
            self.const(f"{name}.w", m)
            if not full:
                self.const(f"{name}.idx", idx, np.int64)
            self._made.add(name)
        return f"{name}.w", None if full else f"{name}.idx"

    def _vec(self, group: str, key: str, values: np.ndarray, dtype: DTypeLike = np.float32) -> str:
        """A per-neuron constant, created once per group and key."""
        name = f"{group}.{key}"
        if name not in self._made:
            self.const(name, values, dtype)
            self._made.add(name)
        return name

    def _reset(self, g: NeuronGroup, v: str, alpha: str) -> str:
        """V after firing, by reset mode (0: reset_value, 1: V - alpha, 2: unchanged)."""
        modes = set(np.unique(g.reset_mode).tolist())
        if modes == {0}:
            return self._vec(g.name, "reset_value", g.reset_value)
        out = v
        if 1 in modes:
            linear = self.op("Sub", [v, alpha])
            out = linear if modes == {1} else self.op(
                "Where", [self._vec(g.name, "mode1", g.reset_mode == 1, bool), linear, out])
        if 0 in modes:
            out = self.op("Where", [self._vec(g.name, "mode0", g.reset_mode == 0, bool),
                                    self._vec(g.name, "reset_value", g.reset_value), out])
        return out

    def _finish(self, counts: dict[str, str], batch: str) -> onnx.ModelProto:
        """Class counts = sum over output groups of counts @ one-hot class matrix."""
        net = self.net
        total = None
        for p, c in counts.items():
            g = self.index[p]
            onehot = np.zeros((g.size, net.num_classes), np.float32)
            rows = np.flatnonzero(g.output_class >= 0)
            onehot[rows, g.output_class[rows]] = 1.0
            term = self.op("MatMul", [c, self.const(f"{p}.classes", onehot)])
            total = term if total is None else self.op("Add", [total, term])
        shape = self.op("Concat", [batch, self.const("num_classes", [net.num_classes], np.int64)], axis=0)
        zeros = self.op("ConstantOfShape", [shape], value=ZERO)
        out = zeros if total is None else self.op("Add", [zeros, total])
        self.nodes.append(helper.make_node("Identity", [out], ["class_counts"], name="class_counts"))
        graph = helper.make_graph(
            self.nodes, "crossmap_deployed",
            [helper.make_tensor_value_info("spikes", TensorProto.FLOAT,
                                           ["batch", int(net.input_ticks), net.num_inputs])],
            [helper.make_tensor_value_info("class_counts", TensorProto.FLOAT, ["batch", net.num_classes])],
            self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="crossmap")
        model.ir_version = 8
        meta = model.metadata_props.add()
        meta.key, meta.value = "crossmap.ticks", str(self.total)
        onnx.checker.check_model(model)
        return model

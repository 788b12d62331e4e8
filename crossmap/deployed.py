"""The deployed network IR that binarization produces: chip neurons in groups, joined by axon
lines with binary synapses, before they are cut into cores.

A ``Lines`` object is a set of axons feeding one target group: line ``l`` carries the spikes of
neuron ``source_index[l]`` of the ``source`` group (or input channel, when ``source == "input"``),
has axon type ``axon_type[l]``, and connects to the target neurons in row ``l`` of ``synapses``.
A neuron's spikes reach every line that reads it ``delay`` ticks after it fires; the partition
pass turns fan-out to several axons into neuron copies or splitters.

``simulate`` runs the deterministic chip neuron of docs/chip-model.md on this IR, tick by tick, so a
partitioned and placed program must give the same output spikes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from crossmap.chip import ChipSpec
from crossmap.compiled import numba_available
from crossmap.errors import CrossmapError, InputError

if TYPE_CHECKING:
    import onnx


INPUT = "input"


@dataclass
class NeuronGroup:
    """A layer of chip neurons with their integer parameters (arrays of length ``size``)."""

    name: str
    weight: np.ndarray  # int32 (size, G): the weight of each axon type
    alpha: np.ndarray
    beta: np.ndarray
    leak: np.ndarray
    reset_mode: np.ndarray
    reset_value: np.ndarray
    initial_v: np.ndarray
    threshold_mask: np.ndarray
    delay: np.ndarray  # ticks from firing to arrival at the consumers' axons
    output_class: np.ndarray  # class of each output neuron, -1 where it is not an output
    stochastic_synapse: np.ndarray  # bool (size, G)
    layer: str = ""  # the float layer it came from
    copy: int = 0  # ensemble copy index

    @property
    def size(self) -> int:
        """Number of neurons."""
        return int(self.weight.shape[0])

    @classmethod
    def make(cls, name: str, weight: np.ndarray, alpha: ArrayLike, *, chip: ChipSpec, beta: ArrayLike = 0,
             leak: ArrayLike = 0, reset_mode: ArrayLike = 0, reset_value: ArrayLike = 0, initial_v: ArrayLike = 0,
             threshold_mask: ArrayLike = 0, delay: ArrayLike = 1, output_class: ArrayLike = -1,
             stochastic_synapse: ArrayLike = False, layer: str = "",
             copy: int = 0) -> "NeuronGroup":
        """A group from per-neuron arrays or scalars broadcast to the group size."""
        weight = np.asarray(weight, dtype=np.int32)
        n = weight.shape[0]

        def vec(value: ArrayLike) -> np.ndarray:
            return np.broadcast_to(np.asarray(value, dtype=np.int32), (n,)).copy()

        stoch = np.broadcast_to(np.asarray(stochastic_synapse, dtype=bool), (n, chip.axon_types)).copy()
        return cls(name=name, weight=weight, alpha=vec(alpha), beta=vec(beta), leak=vec(leak),
                   reset_mode=vec(reset_mode), reset_value=vec(reset_value), initial_v=vec(initial_v),
                   threshold_mask=vec(threshold_mask), delay=vec(delay), output_class=vec(output_class),
                   stochastic_synapse=stoch, layer=layer or name, copy=copy)


@dataclass
class Lines:
    """Axons from ``source`` to ``target``: line l reads source neuron ``source_index[l]``, has type
    ``axon_type[l]`` and synapses ``synapses[l]`` (bool CSR, lines x target size)."""

    source: str
    target: str
    source_index: np.ndarray
    axon_type: np.ndarray
    synapses: sp.csr_matrix

    @property
    def num_lines(self) -> int:
        """Number of axon lines."""
        return int(self.source_index.shape[0])

    def connected(self) -> tuple[np.ndarray, np.ndarray]:
        """The (line, target neuron) index pairs of the set synapses; an entry stored as false is
        no synapse."""
        syn = self.synapses.tocoo()
        keep = np.asarray(syn.data, bool)
        return syn.row[keep], syn.col[keep]


@dataclass
class DeployedNetwork:
    """Chip-ready neuron groups (in topological order for feed-forward networks) and their lines."""

    chip: ChipSpec
    num_inputs: int
    groups: list[NeuronGroup]
    lines: list[Lines]
    num_classes: int
    input_ticks: int = 1
    encoding: dict[str, Any] = field(default_factory=lambda: {"kind": "spikes"})
    metadata: dict[str, Any] = field(default_factory=dict)

    def without_synapses(self) -> "DeployedNetwork":
        """The same network with every line's synapse matrix emptied (its shape kept): for work
        that needs the groups and which lines exist, not the synapses, at a fraction of the memory."""
        lines = [dataclasses.replace(l, synapses=sp.csr_matrix(l.synapses.shape, dtype=bool)) for l in self.lines]
        return dataclasses.replace(self, lines=lines)

    def group(self, name: str) -> NeuronGroup:
        """The group called ``name``."""
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    def group_index(self) -> dict[str, int]:
        """Group name -> position."""
        return {g.name: i for i, g in enumerate(self.groups)}

    def incoming(self, name: str) -> list[Lines]:
        """Lines that feed group ``name``."""
        return [l for l in self.lines if l.target == name]

    @property
    def num_neurons(self) -> int:
        """Neurons in all groups."""
        return sum(g.size for g in self.groups)

    def latency(self) -> int:
        """Ticks from an input spike to the last output spike it can cause, on the longest path
        (sum of the source neurons' delays along it); the emulator runs input_ticks + latency."""
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_node(INPUT)
        for g in self.groups:
            graph.add_node(g.name)
        for l in self.lines:
            delay = 0 if l.source == INPUT else int(self.group(l.source).delay[np.unique(l.source_index)].max())
            if graph.has_edge(l.source, l.target):
                delay = max(delay, graph.edges[l.source, l.target]["delay"])
            graph.add_edge(l.source, l.target, delay=delay)
        if not nx.is_directed_acyclic_graph(graph):
            raise CrossmapError("the deployed network has a cycle, so its latency is unbounded; give the "
                                "number of ticks to run explicitly")
        return int(nx.dag_longest_path_length(graph, weight="delay"))

    def validate(self) -> "DeployedNetwork":
        """Check shapes, index ranges and every parameter against the chip spec."""
        chip = self.chip
        names = self.group_index()
        if len(names) != len(self.groups) or INPUT in names:
            raise CrossmapError(f"group names must be unique and not {INPUT!r}: {[g.name for g in self.groups]}")
        limits = {"alpha": (chip.alpha_min, chip.alpha_max), "beta": (chip.beta_min, chip.beta_max),
                  "leak": (chip.leak_min, chip.leak_max), "reset_mode": (0, 2),
                  "reset_value": (chip.v_min, chip.v_max), "initial_v": (chip.v_min, chip.v_max),
                  "threshold_mask": (0, chip.alpha_max), "delay": (chip.delay_min, chip.delay_max),
                  "output_class": (-1, self.num_classes - 1)}
        for g in self.groups:
            if g.weight.shape != (g.size, chip.axon_types):
                raise CrossmapError(f"group {g.name!r}: weight shape {g.weight.shape}, need ({g.size}, {chip.axon_types})")
            _check(g.name, "weight", g.weight, chip.weight_min, chip.weight_max)
            for key, (lo, hi) in limits.items():
                arr = getattr(g, key)
                if arr.shape != (g.size,):
                    raise CrossmapError(f"group {g.name!r}: {key} has shape {arr.shape}, need ({g.size},)")
                _check(g.name, key, arr, lo, hi)
        for l in self.lines:
            if l.target not in names or (l.source != INPUT and l.source not in names):
                raise CrossmapError(f"lines {l.source!r} -> {l.target!r} name an unknown group")
            n_src = self.num_inputs if l.source == INPUT else self.groups[names[l.source]].size
            _check(f"{l.source}->{l.target}", "source_index", l.source_index, 0, n_src - 1)
            _check(f"{l.source}->{l.target}", "axon_type", l.axon_type, 0, chip.axon_types - 1)
            if l.synapses.shape != (l.num_lines, self.groups[names[l.target]].size):
                raise CrossmapError(f"lines {l.source!r} -> {l.target!r}: synapses shape {l.synapses.shape}")
        return self

    def to_onnx(self, ticks: int | None = None) -> onnx.ModelProto:
        """An ONNX model reproducing this network's tick dynamics: input spikes (batch, input_ticks,
        num_inputs) float 0/1 -> class spike counts (batch, num_classes); see crossmap.deployed_onnx."""
        from crossmap.deployed_onnx import deployed_to_onnx

        return deployed_to_onnx(self, ticks=ticks)

    def simulate(self, spikes: np.ndarray, ticks: int | None = None, record: bool = False,
                 count: bool = False) -> dict[str, np.ndarray]:
        """Run the deterministic chip neuron model on input spikes (batch, T, num_inputs).

        Returns ``{"class_counts": (batch, num_classes), "output_counts": {group: (batch, size)}}``,
        with ``record`` also ``"spikes": {group: (ticks, batch, size)}``, and with ``count``
        ``"spike_counts": {group: (size,)}``, each neuron's spikes summed over ticks and samples
        (what ``record`` gives, at a fraction of its memory). Stochastic modes are only emulated on
        a compiled program (their draws depend on core positions)."""
        for g in self.groups:
            if g.threshold_mask.any() or g.stochastic_synapse.any():
                raise CrossmapError(f"group {g.name!r} uses stochastic modes; simulate the compiled program "
                                    f"with crossmap.emulate instead")
        spikes = np.asarray(spikes)
        if spikes.ndim == 2:
            spikes = spikes[:, None, :]
        if spikes.ndim != 3 or spikes.shape[2] != self.num_inputs:
            raise InputError(f"input spikes have shape {spikes.shape}, need (batch, ticks, {self.num_inputs})")
        batch, t_in, _ = spikes.shape
        total = ticks if ticks is not None else t_in + self.latency()
        chip = self.chip
        history = max([int(g.delay.max()) for g in self.groups if g.size] + [1]) + 1
        fired = {g.name: np.zeros((history, batch, g.size), bool) for g in self.groups}
        volt = {g.name: np.broadcast_to(g.initial_v.astype(np.int64), (batch, g.size)).copy() for g in self.groups}
        counts = {g.name: np.zeros((batch, g.size), np.int64) for g in self.groups if (g.output_class >= 0).any()}
        recorded = {g.name: [] for g in self.groups}
        totals = {g.name: np.zeros(g.size, np.int64) for g in self.groups} if count else {}
        incoming = {g.name: self.incoming(g.name) for g in self.groups}
        integrate = _event_integrator(incoming, {g.name: g for g in self.groups})
        for t in range(total):
            new_fired = {}
            for g in self.groups:
                acc = np.zeros((batch, g.size), np.int64)
                for l in incoming[g.name]:
                    if l.source == INPUT:
                        active = spikes[:, t, l.source_index] if t < t_in else np.zeros((batch, l.num_lines), bool)
                    else:
                        src = self.group(l.source)
                        d = src.delay[l.source_index]
                        active = fired[l.source][(t - d) % history, :, l.source_index].T if t >= 1 else \
                            np.zeros((batch, l.num_lines), bool)
                        active = active & (t - d >= 0)[None, :]
                    if not active.any():  # a layer hears nothing before its inputs' spikes arrive
                        continue
                    integrate(l, active, acc)
                v = np.clip(volt[g.name] + acc, chip.v_min, chip.v_max)
                v = np.clip(v + g.leak, chip.v_min, chip.v_max)
                fire = v >= g.alpha
                reset = np.where(g.reset_mode == 0, g.reset_value, np.where(g.reset_mode == 1, v - g.alpha, v))
                v = np.where(fire, reset, np.where(v < -g.beta, -g.beta, v))
                volt[g.name] = v
                new_fired[g.name] = fire
            for g in self.groups:
                fired[g.name][t % history] = new_fired[g.name]
                if g.name in counts:
                    counts[g.name] += new_fired[g.name] & (g.output_class >= 0)
                if record:
                    recorded[g.name].append(new_fired[g.name])
                if count:
                    totals[g.name] += new_fired[g.name].sum(axis=0)
        class_counts = np.zeros((batch, self.num_classes), np.int64)
        for name, c in counts.items():
            cls = self.group(name).output_class
            for k in np.unique(cls[cls >= 0]):
                class_counts[:, k] += c[:, cls == k].sum(axis=1)
        out: dict[str, Any] = {"class_counts": class_counts, "output_counts": counts}
        if count:
            out["spike_counts"] = totals
        if record:
            out["spikes"] = {k: np.stack(v) if v else np.zeros((0, batch, 0), bool) for k, v in recorded.items()}
        return out


def _event_integrator(incoming: dict[str, list[Lines]],
                      groups: dict[str, NeuronGroup]) -> Callable[[Lines, np.ndarray, np.ndarray], None]:
    """``integrate(lines, active, acc)``: add to ``acc`` (batch, target size, int64) the weights that
    the ``active`` lines (batch, lines, bool) deliver. With numba the synapses are walked per active
    line, with no copy of the network; without it each line's weight matrix is built once."""
    if numba_available():
        from crossmap.deployed_kernel import add_line_events

        weight = {name: np.ascontiguousarray(g.weight, np.int64) for name, g in groups.items()}

        def integrate(lines: Lines, active: np.ndarray, acc: np.ndarray) -> None:
            syn = sp.csr_matrix(lines.synapses)  # the same arrays when it is CSR already
            add_line_events(np.ascontiguousarray(active, bool), syn.indptr, syn.indices,
                            np.asarray(syn.data, bool), lines.axon_type, weight[lines.target], acc)
        return integrate

    weights = {id(l): _line_weights(l, groups[name].weight) for name, ls in incoming.items() for l in ls}

    def integrate_matmul(lines: Lines, active: np.ndarray, acc: np.ndarray) -> None:
        acc += np.asarray(weights[id(lines)] @ active.astype(np.int64).T).T
    return integrate_matmul


def _line_weights(lines: Lines, weight: np.ndarray) -> sp.csr_matrix:
    """(target size, lines) int64: the weight each line's type gives each target neuron it has a
    (true) synapse to."""
    rows, cols = lines.connected()
    w = weight[cols, lines.axon_type[rows]].astype(np.int64)
    return sp.csr_matrix((w, (cols, rows)), shape=(lines.synapses.shape[1], lines.synapses.shape[0]))


def _check(owner: str, name: str, arr: np.ndarray, lo: int, hi: int) -> None:
    bad = (arr < lo) | (arr > hi)
    if np.any(bad):
        idx = int(np.flatnonzero(np.asarray(bad).reshape(-1))[0])
        raise CrossmapError(f"{owner}: {name} value {int(np.asarray(arr).reshape(-1)[idx])} at flat index {idx} is "
                            f"outside the chip range [{lo}, {hi}] ({int(np.sum(bad))} values)")

"""Building a DeployedNetwork from integer layers: axon lines and types, step neuron parameters,
tick alignment with relay neurons, and the always-on bias channel.

Tick alignment. A layer of depth k fires on tick k - 1 of a frame (tick 0 = the frame's input
tick) and its spikes arrive one tick later (delay 1). A layer reads every source on tick k - 1;
a source that arrives earlier (a skip connection, or the input read by a deep layer) is delayed by
a relay group: neurons with weight 1 and threshold 1 that copy their input and send it with the
missing delay (chains of relays for more than ``delay_max`` ticks).

Step neurons. A step neuron fires iff its integer synaptic sum s >= θ. With θ clamped to
[s_min, s_max + 1] (the sums the neuron can see, which changes nothing), it is realized as:

- 1 <= θ <= 1 - leak_min: alpha = 1, leak = 1 - θ, beta = 0, reset to 0. The neuron is memoryless:
  after a tick V is 0 whether it fired or not (a sub-threshold V = s + 1 - θ <= 0 is floored at
  -beta = 0), so every tick is an independent frame and rate-coded inputs stream through.
- θ > 1 - leak_min: alpha = θ, leak = 0 (exact for one frame: the neuron sees input on one tick
  only and V never rises afterwards; refused when several input ticks are asked for).
- θ < alpha_min with one input tick (the neuron fires with zero input, e.g. a positive bias), when
  the layer's read tick l is known ("timed"): leak λ = max(0, 1 - θ), alpha = alpha_min,
  initial_v = alpha_min - θ - (l + 1) λ and beta = max(0, -initial_v). V climbs by λ per tick and
  reaches alpha_min - θ exactly on tick l, so the neuron fires on tick l iff s >= θ; before l it
  stays below alpha_min because λ > -θ, and no input reaches it before l. After l it may fire again
  on its own, but those spikes reach each later layer after that layer's read tick, so they never
  change an output inside the run window (input ticks + latency); they do count as activity. No
  axon is spent; the partition pass refuses to shift such a layer's tick with splitters.
- θ <= 0 otherwise (several input ticks, or λ beyond the leak range): a positive leak would make it
  fire on every tick, before and after its frame. Instead it reads the always-on bias channel (an
  extra input channel that spikes on every input tick, relayed to the layer's tick like any other
  source) with a weight w_b >= 1 - θ and then uses θ + w_b as above. The bias lines take part in
  the axon type assignment like any input. w_b is one of the neuron's own positive weights when
  one is large enough; else the bias channel is read on up to 8 axons that each give the neuron's
  largest positive weight; only else a new weight value (if the neuron has a free axon type). So
  the bias rarely needs a type of its own and never a fifth weight value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from crossmap.passes.binarize.axon_types import TooManyValues, TypeAssignment, assign_axon_types, distinct_values
from crossmap.chip import ChipSpec
from crossmap.deployed import INPUT, DeployedNetwork, Lines, NeuronGroup
from crossmap.errors import BinarizeError, CrossmapError


@dataclass
class IntLayer:
    """An integer layer ready to deploy: columns read sources, ``weights`` (size, columns)."""

    name: str  # group name
    layer: str  # the float layer it came from
    depth: int
    sources: list[tuple[str, np.ndarray]]  # (INPUT or group name, source indices) per column block
    weights: sp.csr_matrix  # integer (size, columns)
    params: dict[str, np.ndarray]  # alpha, beta, leak, reset_mode, reset_value, initial_v
    output_class: np.ndarray
    bias_weight: np.ndarray | None = None  # (size, lines) weights of always-on bias lines (0: none)
    copy: int = 0
    assignment: TypeAssignment | None = None  # lines and types chosen by the method (else derived)

    @property
    def size(self) -> int:
        """Number of neurons."""
        return int(self.weights.shape[0])


@dataclass
class TypedColumns:
    """A layer's axon lines and types over its columns (its inputs, then its bias lines) and the
    distinct weights of those columns (at most 64, for the report)."""

    assignment: TypeAssignment
    levels: list[int]


def bias_lines(layer: IntLayer) -> np.ndarray | None:
    """The (size, lines) weights of the layer's always-on bias lines, or None when it reads none."""
    if layer.bias_weight is None:
        return None
    bias = np.asarray(layer.bias_weight, np.int64)
    return bias.reshape(layer.size, -1) if np.any(bias) else None


def type_columns(layer: IntLayer, chip: ChipSpec, *, time_limit: float, seed: int, remedy: str) -> TypedColumns:
    """The layer's lines and axon types (``layer.assignment`` when the method chose them): a pure
    function of the layer, so layers can be typed apart, in any order, before they are added."""
    weights = sp.csr_matrix(layer.weights, dtype=np.int64)
    bias = bias_lines(layer)
    if bias is not None:
        weights = sp.hstack([weights, sp.csr_matrix(bias)], format="csr")
    try:
        assignment = layer.assignment or assign_axon_types(weights, chip.axon_types, time_limit=time_limit,
                                                           seed=seed)
    except TooManyValues as exc:
        raise BinarizeError(f"layer {layer.layer!r}: neuron {exc.neuron} needs {len(exc.values)} distinct "
                            f"integer weights {exc.values.tolist()[:8]}, but a chip neuron has one weight per "
                            f"axon type ({chip.axon_types} types); {remedy}") from None
    return TypedColumns(assignment=assignment, levels=distinct_values(weights.data).tolist()[:64])


def step_neurons(layer: str, theta: np.ndarray, weights: sp.csr_matrix, chip: ChipSpec, *,
                 memoryless: bool, remedy: str, read_tick: int | None = None
                 ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """Parameters and bias-line weights of step neurons firing iff s >= theta (see module docstring).
    With ``read_tick`` (the tick the layer reads its single frame) neurons that fire with zero
    input are timed by initial_v and leak instead of reading the bias channel, where possible."""
    w = sp.csr_matrix(weights, dtype=np.int64)
    n = w.shape[0]
    s_min, s_max = _sum_range(w)
    worst = int(np.argmax(np.maximum(s_max - chip.v_max, chip.v_min - s_min))) if n else 0
    if n and (s_max[worst] > chip.v_max or s_min[worst] < chip.v_min):
        raise BinarizeError(f"layer {layer!r}: neuron {worst} can sum {int(s_min[worst])}..{int(s_max[worst])}, "
                            f"outside the membrane range [{chip.v_min}, {chip.v_max}]; {remedy}")
    theta = np.clip(np.asarray(theta, np.int64), s_min, s_max + 1)
    a0 = chip.alpha_min
    leak_room = a0 - chip.leak_min  # largest θ' with leak a0 - θ' in range
    alpha = np.full(n, a0, np.int64)
    leak = np.zeros(n, np.int64)
    timed_leak = np.maximum(0, 1 - theta)
    timed = (theta < a0) & (timed_leak <= chip.leak_max) if (read_tick is not None and not memoryless) \
        else np.zeros(n, bool)
    timed_v0 = a0 - theta - (int(read_tick or 0) + 1) * timed_leak
    timed &= (timed_v0 >= chip.v_min) & (-timed_v0 <= chip.beta_max)
    copies = {j: _bias_copies(layer, j, int(a0 - theta[j]), w.data[w.indptr[j]:w.indptr[j + 1]], chip,
                              leak_room - a0, remedy)
              for j in np.flatnonzero((theta < a0) & ~timed).tolist()}
    width = max((len(c) for c in copies.values()), default=0)
    bias_matrix = np.zeros((n, width), np.int64)
    for j, c in copies.items():
        bias_matrix[j, :len(c)] = c
    bias = bias_matrix.sum(axis=1)
    total = theta + bias  # >= a0 everywhere
    small = (total <= leak_room) if a0 == 1 else np.zeros(n, bool)
    leak[small] = a0 - total[small]
    big = ~small
    alpha[big] = total[big]
    if np.any(alpha > chip.alpha_max):
        j = int(np.argmax(alpha))
        raise BinarizeError(f"layer {layer!r}: neuron {j} needs a threshold of {int(alpha[j])}, above the chip's "
                            f"alpha limit {chip.alpha_max}; {remedy}")
    if memoryless and big.any():
        j = int(np.flatnonzero(big)[0])
        raise BinarizeError(f"layer {layer!r}: {int(big.sum())} neuron(s) (e.g. neuron {j}, threshold "
                            f"{int(total[j])}) need a threshold above {leak_room}, which a memoryless neuron "
                            f"(alpha = {a0}, leak = {a0} - threshold >= {chip.leak_min}) cannot have, so several "
                            f"input ticks would mix frames; use one input tick (threshold encoding, ticks=1), "
                            f"or {remedy}")
    beta = np.zeros(n, np.int64)
    initial_v = np.zeros(n, np.int64)
    alpha[timed] = a0
    leak[timed] = timed_leak[timed]
    initial_v[timed] = timed_v0[timed]
    beta[timed] = np.maximum(0, -timed_v0[timed])
    params = {"alpha": alpha, "beta": beta, "leak": leak, "reset_mode": np.zeros(n, np.int64),
              "reset_value": np.zeros(n, np.int64), "initial_v": initial_v}
    info = {"timed_neurons": int(timed.sum()), "bias_neurons": int(np.count_nonzero(bias)), "bias_lines": width, "one_shot_neurons": int(big.sum()),
            "silent_neurons": int(np.sum(theta > s_max)), "always_on_neurons": int(np.sum(theta <= s_min))}
    return params, bias_matrix, info


def _sum_range(w: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(smallest, largest) synaptic sum of each row of the integer matrix ``w``: the sums of its
    negative and of its positive weights."""
    if not w.has_canonical_format:  # duplicates add up before their sign counts
        return (np.asarray(w.minimum(0).sum(axis=1)).ravel().astype(np.int64),
                np.asarray(w.maximum(0).sum(axis=1)).ravel().astype(np.int64))
    from crossmap.passes.binarize.kernels import sum_range

    return sum_range(np.asarray(w.indptr, np.int64), w.data)


def _bias_copies(layer: str, j: int, need: int, row: np.ndarray, chip: ChipSpec, slack: int,
                 remedy: str, max_copies: int = 8) -> list[int]:
    """Weights of the always-on lines neuron j reads (their sum >= need): one existing positive
    weight w with need <= w <= need + slack, else copies of its largest positive weight, else a new
    weight when the neuron has a free axon type."""
    values = np.unique(row[row != 0])
    pos = values[values > 0]
    fits = pos[(pos >= need) & (pos <= need + slack)]
    if fits.size:
        return [int(fits[0])]
    if pos.size and -(-need // int(pos.max())) <= max_copies:
        return [int(pos.max())] * int(-(-need // int(pos.max())))
    if values.size < chip.axon_types:
        count = -(-need // chip.weight_max)
        if count <= max_copies:
            return [-(-need // count)] * count
    if not pos.size and values.size >= chip.axon_types:
        why = (f"its {values.size} weights {values.tolist()[:8]} are all negative and use every one of the chip's "
               f"{chip.axon_types} axon types, so no axon type is left for a positive always-on line")
    else:
        why = (f"its weights {values.tolist()[:8]} and the chip's {chip.axon_types} axon types (weights up to "
               f"{chip.weight_max}) cannot give that on {max_copies} lines")
    raise BinarizeError(f"layer {layer!r}: neuron {j} fires with zero input (it needs +{need} weight units from "
                        f"the always-on bias channel) but {why}; {remedy}")


class DeployedBuilder:
    """Collects groups and lines; aligns ticks with relays; owns the bias channel."""

    def __init__(self, chip: ChipSpec, data_channels: int, *, time_limit: float = 5.0, seed: int = 0) -> None:
        self.chip = chip
        self.data_channels = int(data_channels)
        self.bias_channel = int(data_channels)  # index of the always-on channel, if it is used
        self.uses_bias = False
        self.groups: list[NeuronGroup] = []
        self.lines: list[Lines] = []
        self.arrival: dict[str, int] = {INPUT: 0}
        self.sizes: dict[str, int] = {}
        self._relays: dict[tuple[str, bytes, int], str] = {}
        self.time_limit = time_limit
        self.seed = seed

    def add(self, layer: IntLayer, remedy: str, typed: TypedColumns | BinarizeError | None = None
            ) -> dict[str, Any]:
        """Add an integer layer as a group with its lines; returns a report entry. ``typed``: the
        layer's ``type_columns`` when it was computed apart (it depends on nothing added before),
        or the error it raised, raised here once the layer's sources are resolved."""
        want = layer.depth - 1
        names: list[str] = []
        indices: list[np.ndarray] = []
        for src, idx in layer.sources:
            name, index = self.at(src, np.asarray(idx, np.int64), want)
            names.extend([name] * len(index))
            indices.append(index)
        bias = bias_lines(layer)
        if bias is not None:
            self.uses_bias = True
            name, index = self.at(INPUT, np.array([self.bias_channel]), want)
            names.extend([name] * bias.shape[1])
            indices.append(np.repeat(index, bias.shape[1]))
        col_name = np.array(names, dtype=object)
        col_index = np.concatenate(indices) if indices else np.zeros(0, np.int64)
        if typed is None:
            typed = type_columns(layer, self.chip, time_limit=self.time_limit, seed=self.seed, remedy=remedy)
        if isinstance(typed, BinarizeError):
            raise typed
        assignment = typed.assignment
        for src in dict.fromkeys(col_name[assignment.line_column].tolist()):
            sel = np.flatnonzero(col_name[assignment.line_column] == src)
            self.lines.append(Lines(source=src, target=layer.name,
                                    source_index=col_index[assignment.line_column[sel]].astype(np.int64),
                                    axon_type=assignment.line_type[sel].astype(np.int64),
                                    synapses=sp.csr_matrix(assignment.synapses[sel], dtype=bool)))
        self._group(layer.name, assignment.weight, layer.params, delay=1, output_class=layer.output_class,
                    layer=layer.layer, copy=layer.copy)
        self.arrival[layer.name] = want + 1
        return {"lines": assignment.num_lines, "scheme": assignment.scheme, "levels": typed.levels}

    def at(self, source: str, index: np.ndarray, want: int) -> tuple[str, np.ndarray]:
        """(source, indices) whose spikes arrive on tick ``want``: the source itself, or a relay."""
        have = self.arrival[source]
        if have == want:
            return source, index
        if have > want:
            raise CrossmapError(f"internal: source {source!r} arrives on tick {have}, after tick {want} where "
                                f"a layer reads it")
        delay = min(want - have, self.chip.delay_max)
        key = (source, index.tobytes(), have + delay)
        if key not in self._relays:
            name = f"relay{len(self._relays)}:{source}@t{have + delay}"
            n = index.size
            weight = np.zeros((n, self.chip.axon_types), np.int64)
            weight[:, 0] = 1
            params = {"alpha": np.full(n, self.chip.alpha_min), "beta": np.zeros(n), "leak": np.zeros(n),
                      "reset_mode": np.zeros(n), "reset_value": np.zeros(n), "initial_v": np.zeros(n)}
            if self.chip.alpha_min != 1 or self.chip.weight_max < 1:
                raise BinarizeError(f"chip {self.chip.name!r}: a relay neuron needs weight 1 and alpha 1 (alpha_min "
                                    f"= {self.chip.alpha_min}); use a chip spec with alpha_min = 1")
            self.lines.append(Lines(source=source, target=name, source_index=index.copy(),
                                    axon_type=np.zeros(n, np.int64),
                                    synapses=sp.identity(n, dtype=bool, format="csr")))
            self._group(name, weight, params, delay=delay, output_class=-1, layer=name, copy=0)
            self.arrival[name] = have + delay
            self._relays[key] = name
        return self.at(self._relays[key], np.arange(index.size, dtype=np.int64), want)

    def _group(self, name: str, weight: np.ndarray, params: dict[str, np.ndarray], *, delay: int,
               output_class: Any, layer: str, copy: int) -> None:
        """Append a NeuronGroup after checking every parameter against the chip."""
        group = NeuronGroup.make(name, weight, params["alpha"], chip=self.chip, beta=params["beta"],
                                 leak=params["leak"], reset_mode=params["reset_mode"],
                                 reset_value=params["reset_value"], initial_v=params["initial_v"], delay=delay,
                                 output_class=output_class, layer=layer, copy=copy)
        self.groups.append(group)
        self.sizes[name] = group.size

    def network(self, num_classes: int, encoding: dict[str, Any], metadata: dict[str, Any] | None = None
                ) -> DeployedNetwork:
        """The validated DeployedNetwork (with the bias channel when a layer uses it)."""
        encoding = dict(encoding)
        if self.uses_bias:
            encoding["bias_channel"] = True
        else:
            encoding.pop("bias_channel", None)
        num_inputs = self.data_channels + (1 if self.uses_bias else 0)
        net = DeployedNetwork(chip=self.chip, num_inputs=num_inputs, groups=self.groups, lines=self.lines,
                              num_classes=int(num_classes), input_ticks=int(encoding.get("ticks", 1)),
                              encoding=encoding, metadata=dict(metadata or {}))
        try:
            return net.validate()
        except CrossmapError as exc:
            raise BinarizeError(f"the binarized network does not fit the chip: {exc}") from None

"""binarize_deterministic: the exact mapping of chip-ready step networks onto chip neurons.

For every step layer: per-neuron integer weights (the float weights divided by the neuron's scale,
checked integral within ``tolerance``) and an integer threshold θ (fire iff k . x >= θ), see
crossmap.passes.binarize.levels; axon lines and types: one axon per input when the inputs group into at
most G types with a common weight per neuron, else one axon per input and needed value, see
crossmap.passes.binarize.axon_types; neuron parameters, relays for tick alignment and the always-on bias channel
for neurons that fire with zero input, see crossmap.passes.binarize.build. A threshold population on the
input is the threshold encoding; a 0/1 class readout becomes ``output_class``.

Exactness: on binary inputs, the deployed network's class spike counts equal the float network's
readout values (times the number of input ticks), sample by sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from crossmap.passes.binarize.build import DeployedBuilder, IntLayer, TypedColumns, step_neurons, type_columns
from crossmap.passes.binarize.analysis import Layer, choose_encoding, plan_network
from crossmap.passes.binarize.levels import IntegerStep, integer_step_layer
from crossmap.parallel import iter_tasks
from crossmap.chip import ChipSpec
from crossmap.encoding import input_ticks
from crossmap.errors import BinarizeError
from crossmap.pipeline import CompileState

REMEDY = "use --binarize lsq, or binarize_deterministic{rescale=true} to quantize with a reported error"
PARALLEL_MIN_SYNAPSES = 200_000  # a network with fewer float synapses is binarized in this process (a fork costs more)


@dataclass
class BinarizeDeterministic:
    """Exact integer mapping of step networks with few-level weights."""

    name: ClassVar[str] = "binarize_deterministic"
    reads: ClassVar[tuple[str, ...]] = ("network",)
    produces: ClassVar[tuple[str, ...]] = ("deployed",)
    encoding: str = "threshold"  # threshold | rate | spikes (a Greater input layer forces threshold)
    ticks: int | None = None  # input ticks per sample (default: 1 for threshold, 16 for rate)
    threshold: float = 0.5  # input threshold when the model has no Greater input layer
    weights: str = "levels"  # levels (scale * integers) | probability (Esser 2015, |w| > 1/2 connects)
    tolerance: float = 1e-4  # how far w / scale may be from an integer
    rescale: bool = False  # quantize neurons without an exact form (error reported) instead of failing
    time_limit: float = 5.0  # CP-SAT seconds (deterministic time) per layer for the axon type grouping
    timed: bool = True  # one input tick: time zero-input neurons by initial_v + leak, not the bias channel

    def run(self, state: CompileState) -> CompileState:
        """Binarize ``state.network`` into ``state.deployed``; report per layer."""
        if self.weights not in ("levels", "probability"):
            raise BinarizeError(f"binarize_deterministic: weights={self.weights!r}; choose levels or probability")
        chip = state.chip
        plan = plan_network(state.network, method="deterministic")
        encoding = choose_encoding(plan, self.encoding, ticks=self.ticks, threshold=self.threshold,
                                   seed=state.seed, method="deterministic")
        memoryless = input_ticks(encoding) > 1
        builder = DeployedBuilder(chip, plan.data_channels, time_limit=self.time_limit, seed=state.seed)
        synapses = sum(block.nnz for layer in plan.layers for block in layer.blocks)
        jobs = state.jobs if synapses >= PARALLEL_MIN_SYNAPSES else 1
        if jobs > 1:
            from crossmap.passes.binarize.kernels import warm_up

            warm_up()  # compiled once here, shared by the forked workers
        prepared = iter_tasks(_prepare_layer, (self, chip, memoryless, state.seed, plan.layers),
                              [(i,) for i in range(len(plan.layers))], jobs)
        layers = []
        try:
            for layer in plan.layers:
                state.log(f"binarize {layer.name}")
                int_layer, info, typed = next(prepared)
                entry = builder.add(int_layer, REMEDY, typed)
                entry.update(info)
                layers.append(entry)
        finally:
            prepared.close()  # stops the workers when a layer fails
        state.deployed = builder.network(plan.num_classes, encoding, {"binarize": "deterministic"})
        state.reports[self.name] = {
            "method": "deterministic", "encoding": state.deployed.encoding, "layers": layers,
            "groups": len(state.deployed.groups), "neurons": state.deployed.num_neurons,
            "relay_groups": sum(1 for g in state.deployed.groups if g.name.startswith("relay")),
            "bias_channel": builder.uses_bias, "readout": plan.readout, "num_classes": plan.num_classes,
            "exact": all(entry["exact"] for entry in layers),
        }
        return state

    def _report(self, layer: Layer, ints: IntegerStep) -> dict[str, Any]:
        """The report entries of a layer's integer form."""
        return {"layer": layer.name, "method": "deterministic", "kind": ints.kind, "neurons": layer.size,
                "depth": layer.depth, "weights": self.weights, "approximation_error": ints.relative_error,
                "exact": ints.relative_error <= self.tolerance and ints.rescaled == 0 and self.weights == "levels",
                "rescaled_neurons": ints.rescaled,
                "scale_range": [float(ints.scale.min()), float(ints.scale.max())] if layer.size else []}


def _prepare_layer(options: BinarizeDeterministic, chip: ChipSpec, memoryless: bool, seed: int, layers: list[Layer],
                   index: int) -> tuple[IntLayer, dict[str, Any], TypedColumns | BinarizeError]:
    """Everything about layer ``index`` that depends on that layer alone: its integer weights and
    thresholds, neuron parameters and bias lines, its report entries, and its lines and axon types
    (or the error typing raised, which the builder raises once the layer's sources are resolved, as
    it would have). Once typed, the builder reads only the shape of the integer weights, so the
    returned layer holds an empty matrix of that shape: a worker process sends back no weights."""
    layer = layers[index]
    ints = integer_step_layer(layer, chip, mode=options.weights, tolerance=options.tolerance,
                              rescale=options.rescale)
    params, bias, info = step_neurons(layer.name, ints.theta, ints.weights, chip, memoryless=memoryless,
                                      remedy=REMEDY, read_tick=layer.depth - 1 if options.timed else None)
    info.update(options._report(layer, ints))
    offsets = np.cumsum([0] + [b.shape[1] for b in layer.blocks])
    sources = [(src, np.arange(offsets[i + 1] - offsets[i])) for i, src in enumerate(layer.sources)]
    int_layer = IntLayer(name=layer.name, layer=layer.name, depth=layer.depth, sources=sources, weights=ints.weights,
                         params=params, output_class=layer.output_class, bias_weight=bias)
    try:
        typed: TypedColumns | BinarizeError = type_columns(int_layer, chip, time_limit=options.time_limit, seed=seed,
                                                           remedy=REMEDY)
    except BinarizeError as exc:
        typed = exc
    int_layer.weights = sp.csr_matrix(ints.weights.shape, dtype=np.int64)
    return int_layer, info, typed

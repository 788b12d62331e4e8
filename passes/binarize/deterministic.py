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
from typing import ClassVar

import numpy as np

from crossmap.passes.binarize.build import DeployedBuilder, IntLayer, step_neurons
from crossmap.passes.binarize.analysis import choose_encoding, plan_network
from crossmap.passes.binarize.levels import integer_step_layer
from crossmap.encoding import input_ticks
from crossmap.errors import BinarizeError
from crossmap.pipeline import CompileState

REMEDY = "use --binarize lsq, or binarize_deterministic{rescale=true} to quantize with a reported error"


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
        layers = []
        for layer in plan.layers:
            state.log(f"binarize {layer.name}")
            ints = integer_step_layer(layer, chip, mode=self.weights, tolerance=self.tolerance,
                                      rescale=self.rescale)
            params, bias, info = step_neurons(layer.name, ints.theta, ints.weights, chip, memoryless=memoryless,
                                              remedy=REMEDY, read_tick=layer.depth - 1 if self.timed else None)
            offsets = np.cumsum([0] + [b.shape[1] for b in layer.blocks])
            sources = [(src, np.arange(offsets[i + 1] - offsets[i])) for i, src in enumerate(layer.sources)]
            entry = builder.add(IntLayer(name=layer.name, layer=layer.name, depth=layer.depth, sources=sources,
                                         weights=ints.weights, params=params, output_class=layer.output_class,
                                         bias_weight=bias), REMEDY)
            entry.update(info)
            entry.update({"layer": layer.name, "method": "deterministic", "kind": ints.kind, "neurons": layer.size,
                          "depth": layer.depth, "weights": self.weights,
                          "approximation_error": ints.relative_error,
                          "exact": ints.relative_error <= self.tolerance and ints.rescaled == 0
                          and self.weights == "levels",
                          "rescaled_neurons": ints.rescaled,
                          "scale_range": [float(ints.scale.min()), float(ints.scale.max())] if layer.size else []})
            layers.append(entry)
        state.deployed = builder.network(plan.num_classes, encoding, {"binarize": "deterministic"})
        state.reports[self.name] = {
            "method": "deterministic", "encoding": state.deployed.encoding, "layers": layers,
            "groups": len(state.deployed.groups), "neurons": state.deployed.num_neurons,
            "relay_groups": sum(1 for g in state.deployed.groups if g.name.startswith("relay")),
            "bias_channel": builder.uses_bias, "readout": plan.readout, "num_classes": plan.num_classes,
            "exact": all(entry["exact"] for entry in layers),
        }
        return state

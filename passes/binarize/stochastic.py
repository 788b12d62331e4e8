"""binarize_stochastic: Esser et al. 2015 sampling of an ensemble of binary networks.

Trained weights are connection probabilities: |w| (after dividing each neuron's weights and
threshold by max(1, max |w|) when ``scaling=neuron``) is the probability that the synapse is on,
and sign(w) is carried by the axon type. Each of ``ensemble`` copies samples its own crossbar:
synapse (j, i) of copy k in layer l is on when

    draw(seed, BINARIZE_STREAM, k, l, 0, j, i) < |w_ji| * 2**32        (crossmap.prng, stream 3)

so the same seed gives the same ensemble on every machine. The integer threshold of a neuron is
exact for its sampled weights (fire iff k . x > (t - b) / scale). Each copy is its own set of
neuron groups (``copy = k``, names ``layer@k``); the input channels are multicast to every copy
(one set of lines from ``input`` per copy), and every copy's output neurons vote for the same
classes, so the class counts add up over the ensemble. Neurons and axon lines are then built as in
binarize_deterministic (crossmap.passes.binarize.build).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from crossmap import prng
from crossmap.passes.binarize.build import DeployedBuilder, IntLayer, step_neurons
from crossmap.passes.binarize.analysis import Layer, choose_encoding, integer_threshold, plan_network
from crossmap.passes.binarize.levels import integer_step_layer
from crossmap.chip import ChipSpec
from crossmap.encoding import input_ticks
from crossmap.errors import BinarizeError
from crossmap.ir import INPUT
from crossmap.pipeline import CompileState

BINARIZE_STREAM = 3  # prng stream of the synapse samples (0-2 are the chip's own streams)
REMEDY = "use --binarize lsq, or scaling=neuron to treat |w| / max|w| as probabilities"


@dataclass
class BinarizeStochastic:
    """An ensemble of sampled binary networks (Esser et al. 2015)."""

    name: ClassVar[str] = "binarize_stochastic"
    reads: ClassVar[tuple[str, ...]] = ("network",)
    produces: ClassVar[tuple[str, ...]] = ("deployed",)
    ensemble: int = 4  # sampled copies whose class votes add up
    encoding: str = "threshold"  # threshold | rate | spikes (a Greater input layer forces threshold)
    ticks: int | None = None  # input ticks per sample (default: 1 for threshold, 16 for rate)
    threshold: float = 0.5  # input threshold when the model has no Greater input layer
    scaling: str = "neuron"  # neuron: divide by max(1, max|w|) per neuron; none: |w| > 1 is an error
    time_limit: float = 5.0  # CP-SAT seconds (deterministic time) per layer for the axon type grouping
    timed: bool = True  # one input tick: time zero-input neurons by initial_v + leak, not the bias channel

    def run(self, state: CompileState) -> CompileState:
        """Sample the ensemble into ``state.deployed``; report per layer."""
        if self.ensemble < 1:
            raise BinarizeError(f"binarize_stochastic: ensemble = {self.ensemble}; need at least one copy")
        if self.scaling not in ("neuron", "none"):
            raise BinarizeError(f"binarize_stochastic: scaling={self.scaling!r}; choose neuron or none")
        chip = state.chip
        plan = plan_network(state.network, method="stochastic")
        encoding = choose_encoding(plan, self.encoding, ticks=self.ticks, threshold=self.threshold,
                                   seed=state.seed, method="stochastic")
        memoryless = input_ticks(encoding) > 1
        builder = DeployedBuilder(chip, plan.data_channels, time_limit=self.time_limit, seed=state.seed)
        reports: dict[str, dict] = {}
        for copy in range(self.ensemble):
            def group(name: str) -> str:
                return name if self.ensemble == 1 or name == INPUT else f"{name}@{copy}"

            for index, layer in enumerate(plan.layers):
                state.log(f"binarize {group(layer.name)}")
                weights, theta, info = sample_layer(layer, chip, seed=state.seed, copy=copy, layer_index=index,
                                                    scaling=self.scaling)
                params, bias, neuron_info = step_neurons(layer.name, theta, weights, chip, memoryless=memoryless,
                                                         remedy=REMEDY,
                                                         read_tick=layer.depth - 1 if self.timed else None)
                offsets = np.cumsum([0] + [b.shape[1] for b in layer.blocks])
                sources = [(group(src), np.arange(offsets[i + 1] - offsets[i])) for i, src in enumerate(layer.sources)]
                entry = builder.add(IntLayer(name=group(layer.name), layer=layer.name, depth=layer.depth,
                                             sources=sources, weights=weights, params=params,
                                             output_class=layer.output_class, bias_weight=bias, copy=copy), REMEDY)
                summary = reports.setdefault(layer.name, {"layer": layer.name, "method": "stochastic",
                                                          "neurons": layer.size, "depth": layer.depth,
                                                          "kind": info["kind"], "copies": []})
                summary.update({k: info[k] for k in ("rescaled_neurons", "max_abs_weight")})
                summary["copies"].append({"lines": entry["lines"], "scheme": entry["scheme"],
                                          "synapses": info["synapses"], "approximation_error": info["error"],
                                          "bias_neurons": neuron_info["bias_neurons"]})
        for summary in reports.values():
            errors = [c["approximation_error"] for c in summary["copies"]]
            summary["approximation_error"] = float(np.mean(errors))
            summary["levels"] = [-1, 0, 1]
        state.deployed = builder.network(plan.num_classes, encoding, {"binarize": "stochastic",
                                                                      "ensemble": self.ensemble})
        state.reports[self.name] = {
            "method": "stochastic", "ensemble": self.ensemble, "seed": int(state.seed),
            "encoding": state.deployed.encoding, "layers": list(reports.values()),
            "groups": len(state.deployed.groups), "neurons": state.deployed.num_neurons,
            "bias_channel": builder.uses_bias, "readout": plan.readout, "num_classes": plan.num_classes,
        }
        return state


def sample_layer(layer: Layer, chip: ChipSpec, *, seed: int, copy: int, layer_index: int,
                 scaling: str) -> tuple[sp.csr_matrix, np.ndarray, dict]:
    """(integer weights in {-1, 0, 1}, integer thresholds, info) of one sampled copy of a layer.

    The info's ``error`` is the relative difference ||k - w / m|| / ||w / m|| between the sample
    and its expectation."""
    if layer.pop.reduce == "max":
        ints = integer_step_layer(layer, chip, method="stochastic")
        return ints.weights, ints.theta, {"kind": "or", "synapses": int(ints.weights.nnz), "error": 0.0,
                                          "rescaled_neurons": 0, "max_abs_weight": 1.0}
    pop = layer.pop
    if pop.activation != "step":
        raise BinarizeError(
            f"layer {layer.name!r} has activation {pop.activation!r}; the stochastic method samples step "
            f"neurons (Greater(x, t) -> Cast) whose weights are connection probabilities; use --binarize lsq "
            f"for {pop.activation} networks")
    w = layer.weight()
    rows = np.repeat(np.arange(layer.size), np.diff(w.indptr))
    peak = np.zeros(layer.size)
    np.maximum.at(peak, rows, np.abs(w.data))
    if scaling == "none" and np.any(peak > 1):
        j = int(np.argmax(peak))
        raise BinarizeError(f"layer {layer.name!r}: neuron {j} has weight {peak[j]:g}, but connection probabilities "
                            f"must lie in [-1, 1]; {REMEDY}")
    m = np.maximum(1.0, peak)
    p = np.abs(w.data) / m[rows]
    r = prng.draw(seed, BINARIZE_STREAM, copy, layer_index, 0, rows, w.indices)
    on = r.astype(np.float64) < p * float(2**32)
    data = (np.sign(w.data) * on).astype(np.int64)
    ints = sp.csr_matrix((data, w.indices.copy(), w.indptr.copy()), shape=w.shape)
    ints.eliminate_zeros()
    expected = w.data / m[rows]
    norm = float(np.linalg.norm(expected))
    error = float(np.linalg.norm(data - expected) / norm) if norm > 0 else 0.0
    t = float(pop.params.get("threshold", 0.0))
    theta = integer_threshold((t - layer.bias()) / m, bool(pop.params.get("inclusive", False)), 1e-9)
    return ints, theta, {"kind": "step", "synapses": int(ints.nnz), "error": error,
                         "rescaled_neurons": int(np.sum(peak > 1)), "max_abs_weight": float(peak.max(initial=0))}

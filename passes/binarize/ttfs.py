"""binarize_ttfs: time-to-first-spike (TTFS) coding of a float ReLU network, one spike per neuron.

The mapping (docs/ttfs.md has the derivation and the error bound). A window of K ticks carries a
value as the tick of one spike: level q in 1..K spikes on tick K - q of the window (earlier =
larger), level 0 does not spike.

- Input: the model's own threshold ``Greater(x, t)`` is the ttfs encoding with one level: a value
  above t spikes on tick 0. The encoding has K ticks, the window of the hidden layers.
- Hidden layers (ReLU or Clip(0, c), reading the input): integer weights k (at most G distinct
  values per neuron, at most ``max_fan_in`` inputs), integer bias B, leak (the ramp) lambda. All
  inputs arrive on tick 0; with alpha = 1 and initial_v = 1 - lambda (K + 1) + B the potential on
  tick j is 1 - lambda (K - j) + k.x + B, so the neuron first fires on tick j = K - q with
  q = min(K, floor((k.x + B) / lambda)): q is the activation in steps of lambda. It then resets to
  -beta (reset mode 0, reset_value = -beta), and beta is so large that the ramp cannot bring it back
  to alpha within the run: it fires at most once.
- The class readout (an identity output layer reading hidden layers): with the hidden layers'
  delay d, a spike of level q arrives on tick K - q + d and stays in the readout neuron's
  potential, so on window tick d - 1 + i (i = 1..K) the potential holds S(i), the weights of the
  spikes of level >= K + 1 - i, and sum_i S(i) = sum_j k_j q_j, the weighted sum of the levels. The chip's synapses add a weight once per spike,
  so a single neuron cannot hold that double sum; each class gets M neurons with reset mode none
  (they fire on every tick their potential is at or above their threshold) and thresholds
  m * D (m = 1..M): their spike count is sum_t sum_m [V(t) >= m D], a thermometer reading of the
  potential on every tick, i.e. about (K b + sum_j k_j q_j) / D. The class with most spikes wins.
  The run is K + d ticks (the encoding's K input ticks + latency d), so it ends on the last window
  tick. The offset and D are chosen on the calibration samples (agreement with the float model's
  class).

A layer that reads another hidden layer (a deeper network), a float input without the model's own
threshold, or max pooling is refused: with instantaneous synapses a neuron that must fire once can
only integrate inputs that arrive together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from crossmap.chip import ChipSpec
from crossmap.deployed import INPUT
from crossmap.encoding import encode, make_encoding, ttfs_levels
from crossmap.errors import BinarizeError
from crossmap.ir import Network
from crossmap.passes.binarize.analysis import Layer, Plan, plan_network
from crossmap.passes.binarize.build import DeployedBuilder, IntLayer
from crossmap.passes.binarize.levels import quantize_row
from crossmap.pipeline import CompileState

HIDDEN_ACTIVATIONS = ("relu", "clip")
FRACTIONS = (1.0, 2.0)  # readout threshold steps tried, times the potential's span / M (finer ones overfit)
REASSIGN_SWEEPS = 3  # rounds of data-driven level reassignment and refit of the readout weights
AGREEMENT_SLACK = 0.002  # readout settings this close to the best agreement count as equal; fewest spikes wins


@dataclass
class HiddenCode:
    """The integer form of one TTFS hidden layer: q = clip(floor((k.x + bias) / ramp), 0, ticks)."""

    weights: sp.csr_matrix  # integer (size, inputs)
    bias: np.ndarray  # integer B per neuron (includes half a step, so q rounds)
    ramp: np.ndarray  # integer leak lambda per neuron
    step: np.ndarray  # float activation per level: h ~ step * q

    def levels(self, x: np.ndarray, ticks: int) -> np.ndarray:
        """The level q (batch, size) of every neuron for binary inputs ``x`` (batch, inputs)."""
        u = np.asarray(self.weights @ x.T.astype(np.int64)).T + self.bias[None, :]
        return np.clip(np.floor_divide(u, self.ramp[None, :]), 0, ticks)


@dataclass
class ReadoutCode:
    """The integer class readout: per class integer weights on the hidden levels and an initial
    potential; ``threshold_step`` D and ``neurons`` M per class."""

    weights: np.ndarray  # int64 (classes, hidden)
    initial: np.ndarray  # int64 initial potential per class
    threshold_step: int
    neurons: int
    delay: int = 1  # ticks from a hidden spike to its arrival at the readout

    def counts(self, levels: np.ndarray, ticks: int, arrived: np.ndarray | None = None) -> np.ndarray:
        """Class spike counts (batch, classes) the readout neurons give for hidden levels (batch, hidden)
        over the run: ``delay`` ticks before the first hidden spike arrives, then the K window ticks;
        ``arrived`` is ``self.arrivals(levels, ticks)`` when the caller has it."""
        if arrived is None:
            arrived = self.arrivals(levels, ticks)
        total = np.zeros((levels.shape[0], self.weights.shape[0]), np.int64)
        for tick in range(ticks + self.delay):
            v = self.initial[None, :] + arrived[tick]
            total += np.clip(v // self.threshold_step, 0, self.neurons)
        return total

    def arrivals(self, levels: np.ndarray, ticks: int) -> np.ndarray:
        """(ticks + delay, batch, classes) int64: the summed weights of the hidden spikes that have
        arrived by each tick of the run (a spike of level q arrives on tick K + delay - q)."""
        spikes = levels > 0
        if np.abs(self.weights).sum(axis=1).max(initial=0) < 2 ** 53:  # float64 sums of integers are exact
            weights = self.weights.T.astype(np.float64)
            return np.stack([((levels >= ticks + self.delay - tick) & spikes).astype(np.float64) @ weights
                             for tick in range(ticks + self.delay)]).astype(np.int64)
        return np.stack([((levels >= ticks + self.delay - tick) & spikes).astype(np.int64) @ self.weights.T
                         for tick in range(ticks + self.delay)])


@dataclass
class BinarizeTtfs:
    """Time-to-first-spike coding: hidden neurons fire once, on a tick that encodes their activation."""

    name: ClassVar[str] = "binarize_ttfs"
    reads: ClassVar[tuple[str, ...]] = ("network", "calibration")
    produces: ClassVar[tuple[str, ...]] = ("deployed",)
    encoding: str = "ttfs"  # ttfs (the only encoding of this method)
    ticks: int | None = None  # K, the levels of a hidden activation and the ticks of the window (default 8)
    percentile: float = 99.9  # ReLU activation (on calibration samples) that maps to the top level
    readout_neurons: int = 32  # M, thermometer neurons per class
    samples: int = 2000  # calibration samples used
    max_fan_in: int | None = None  # inputs a hidden neuron may read (default: the chip's axons_per_core)
    delay: int = 1  # ticks from a hidden spike to the readout (1..the chip's delay_max)

    def run(self, state: CompileState) -> CompileState:
        """Map the network into ``state.deployed``; report agreement with the float model."""
        from threadpoolctl import ThreadpoolController

        blas = ThreadpoolController()  # the fits run on one BLAS thread: their many small calls only spin on more
        chip = state.chip
        ticks = self._check(state)
        plan = plan_network(state.network, allow_logits=True, method="ttfs")
        hidden, readout = _structure(plan, state.network, chip)
        encoding = make_encoding("ttfs", channels=plan.input_values, ticks=ticks,
                                 levels=[float(plan.input_threshold["threshold"])],
                                 inclusive=plan.input_threshold["inclusive"])
        x = np.asarray(state.calibration, np.float64)[: self.samples]
        x = x.reshape(len(x), -1)
        if x.shape[1] != plan.input_values:
            raise BinarizeError(f"calibration inputs have {x.shape[1]} values per sample, the network's input has "
                                f"{plan.input_values}; give calibration samples of the model's input shape")
        bits = ttfs_levels(encoding, x)
        floats = state.network.evaluate(x, keep=True)
        run_ticks = ticks + self.delay
        fan_in = chip.axons_per_core if self.max_fan_in is None else int(self.max_fan_in)
        builder = DeployedBuilder(chip, plan.data_channels, seed=state.seed)
        reports: list[dict[str, Any]] = []
        codes: dict[str, HiddenCode] = {}
        for layer in hidden:
            state.log(f"binarize {layer.name} (ttfs hidden)")
            with blas.limit(limits=1, user_api="blas"):
                code = hidden_code(layer, bits, floats[layer.name], ticks, self.percentile, fan_in, chip)
            codes[layer.name] = code
            params = hidden_params(code, ticks, run_ticks, chip)
            entry = builder.add(IntLayer(name=layer.name, layer=layer.name, depth=1,
                                         sources=[(INPUT, np.arange(plan.data_channels))], weights=code.weights,
                                         params=params, output_class=layer.output_class), REMEDY)
            levels = code.levels(bits, ticks)
            entry.update({"layer": layer.name, "role": "hidden", "neurons": layer.size,
                          "max_fan_in": int(np.diff(code.weights.indptr).max()) if layer.size else 0,
                          "ramp_range": [int(code.ramp.min()), int(code.ramp.max())] if layer.size else [],
                          "spiking_fraction": float(np.mean(levels > 0)) if levels.size else 0.0,
                          "level_error": _level_error(levels, code.step, floats[layer.name])})
            reports.append(entry)
        levels = np.hstack([codes[s].levels(bits, ticks) for s in readout.sources])
        steps = np.concatenate([codes[s].step for s in readout.sources])
        state.log(f"binarize {readout.name} (ttfs readout)")
        with blas.limit(limits=1, user_api="blas"):
            code = readout_code(readout, steps, levels, floats[readout.name], ticks, self.readout_neurons, chip,
                                self.delay)
        size = readout.size * code.neurons
        rows = np.repeat(np.arange(readout.size), code.neurons)
        m = np.tile(np.arange(1, code.neurons + 1), readout.size)
        params = {"alpha": m * code.threshold_step, "beta": np.full(size, chip.beta_max),
                  "leak": np.zeros(size), "reset_mode": np.full(size, 2), "reset_value": np.zeros(size),
                  "initial_v": code.initial[rows]}
        offsets = np.cumsum([0] + [codes[s].weights.shape[0] for s in readout.sources])
        entry = builder.add(IntLayer(name=readout.name, layer=readout.name, depth=2,
                                     sources=[(s, np.arange(offsets[i + 1] - offsets[i]))
                                              for i, s in enumerate(readout.sources)],
                                     weights=sp.csr_matrix(code.weights[rows]), params=params,
                                     output_class=readout.output_class[rows]), REMEDY)
        counts = code.counts(levels, ticks)
        float_class = np.argmax(floats[readout.name], axis=1)
        entry.update({"layer": readout.name, "role": "readout", "neurons": size,
                      "neurons_per_class": code.neurons, "threshold_step": code.threshold_step})
        reports.append(entry)
        for group in builder.groups:
            if group.name in codes:
                group.delay[:] = self.delay
        state.deployed = builder.network(plan.num_classes, encoding, {"binarize": "ttfs"})
        spikes = encode(encoding, x)
        simulated = state.deployed.simulate(spikes, ticks=run_ticks)["class_counts"]
        state.reports[self.name] = {
            "method": "ttfs", "encoding": encoding, "window_ticks": ticks, "layers": reports,
            "calibration_samples": int(len(x)),
            "agreement": float(np.mean(np.argmax(counts, axis=1) == float_class)) if len(x) else None,
            "deployed_equals_model": bool(np.array_equal(simulated, counts)),
            "hidden_spikes_per_sample": float(np.mean(levels > 0) * levels.shape[1]) if len(x) else 0.0,
            "readout_spikes_per_sample": float(counts.sum(axis=1).mean()) if len(x) else 0.0,
            "groups": len(state.deployed.groups), "neurons": state.deployed.num_neurons,
            "num_classes": plan.num_classes}
        return state

    def _check(self, state: CompileState) -> int:
        """Options and inputs a user can get wrong; returns the window K."""
        if self.encoding != "ttfs":
            raise BinarizeError(f"binarize_ttfs: encoding={self.encoding!r}; this method codes values as spike "
                                f"times, so its input encoding is ttfs (leave the option out)")
        ticks = 8 if self.ticks is None else int(self.ticks)
        if not 1 <= ticks <= 64:
            raise BinarizeError(f"binarize_ttfs: ticks={ticks}; the window must have 1 to 64 ticks (each is one "
                                f"level of a hidden activation)")
        if self.readout_neurons < 1 or self.readout_neurons > state.chip.neurons_per_core:
            raise BinarizeError(f"binarize_ttfs: readout_neurons={self.readout_neurons}; need 1 to "
                                f"{state.chip.neurons_per_core}")
        if not 0 < self.percentile <= 100:
            raise BinarizeError(f"binarize_ttfs: percentile={self.percentile}; need a value in (0, 100]")
        if not state.chip.delay_min <= self.delay <= state.chip.delay_max:
            raise BinarizeError(f"binarize_ttfs: delay={self.delay}; the chip's delays are {state.chip.delay_min} to "
                                f"{state.chip.delay_max} ticks")
        if self.max_fan_in is not None and self.max_fan_in < 1:
            raise BinarizeError(f"binarize_ttfs: max_fan_in={self.max_fan_in}; need at least 1")
        if state.calibration is None or len(state.calibration) == 0 or self.samples < 1:
            raise BinarizeError("binarize_ttfs needs calibration inputs (float samples of the model's input) to "
                                "scale the activations to spike times; crossmap.compile supplies MNIST or random "
                                "samples, or pass calibration=...")
        return ticks


REMEDY = "lower max_fan_in, or use --binarize lsq"


def _structure(plan: Plan, network: Network, chip: ChipSpec) -> tuple[list[Layer], Layer]:
    """(hidden layers, readout layer) of a network TTFS can map, else a BinarizeError saying why."""
    why = ("with instantaneous synapses a neuron that fires once can only integrate inputs that arrive on one "
           "tick; binarize_ttfs maps a thresholded input, hidden ReLU layers reading it, and a linear output "
           "layer reading them (models/ttfs_mlp.onnx, models/mlp.onnx); use --binarize lsq for other networks")
    threshold = plan.input_threshold
    if threshold is None or threshold.get("source") is not None or np.ndim(threshold["threshold"]) != 0:
        raise BinarizeError(f"binarize_ttfs: the model's input is not thresholded by one Greater(x, t) per value "
                            f"(the ttfs encoding of a one-level input); {why}")
    if plan.readout is not None:
        raise BinarizeError(f"binarize_ttfs: the model ends in a class readout of step neurons ({plan.readout!r}); "
                            f"{why}")
    output = plan.layer(network.output)
    hidden = [layer for layer in plan.layers if layer.name != output.name]
    for layer in hidden:
        act = layer.pop.activation
        if layer.sources != [INPUT] or layer.pop.reduce != "sum":
            raise BinarizeError(f"binarize_ttfs: layer {layer.name!r} reads {layer.sources} "
                                f"({layer.pop.reduce} of its inputs); {why}")
        if act not in HIDDEN_ACTIVATIONS or (act == "clip" and float(layer.pop.params.get("min", 0.0)) != 0.0):
            raise BinarizeError(f"binarize_ttfs: layer {layer.name!r} has activation {act!r}; a TTFS neuron's "
                                f"value is a non-negative spike time, so hidden layers must be Relu or Clip(0, c)")
    if output.pop.activation != "identity" or output.pop.reduce != "sum" or INPUT in output.sources \
            or not output.sources:
        raise BinarizeError(f"binarize_ttfs: output layer {output.name!r} ({output.pop.activation}, reading "
                            f"{output.sources}) is not a linear layer reading hidden layers; {why}")
    width = sum(plan.layer(s).size for s in output.sources)
    if width > chip.axons_per_core:
        raise BinarizeError(f"binarize_ttfs: output layer {output.name!r} reads {width} hidden neurons, more than the "
                            f"{chip.axons_per_core} axons of a core; use at most that many hidden neurons")
    return hidden, output


def hidden_code(layer: Layer, bits: np.ndarray, z_float: np.ndarray, ticks: int, percentile: float,
                fan_in: int, chip: ChipSpec) -> HiddenCode:
    """Integer weights, bias and ramp of a hidden layer (module docstring): at most ``fan_in`` inputs
    per neuron (the most important on the calibration inputs; the dropped inputs' mean goes to the
    bias), at most G distinct weights per neuron, levels of size ``step`` = top / K where top is the
    Clip maximum or the ``percentile`` of the ReLU activations."""
    w = layer.weight()
    bias = layer.bias()
    act = layer.pop
    if act.activation == "clip":
        top = np.full(layer.size, float(act.params.get("max", np.inf)))
    else:
        top = np.full(layer.size, 0.0)
    positive = np.maximum(z_float, 0)
    layer_top = float(np.percentile(positive, percentile)) if positive.size else 1.0
    top = np.where(np.isfinite(top) & (top > 0), top, max(layer_top, 1e-9))
    z_pre = np.asarray(w @ bits.T.astype(np.float64)).T + bias[None, :]
    mean = bits.mean(axis=0) if len(bits) else np.zeros(w.shape[1])
    spread = np.sqrt(mean * (1 - mean)) + 1e-3
    rows, cols, data = [], [], []
    int_bias = np.zeros(layer.size, np.int64)
    ramp = np.ones(layer.size, np.int64)
    step = np.zeros(layer.size)
    for j in range(layer.size):
        lo, hi = w.indptr[j], w.indptr[j + 1]
        idx, val = w.indices[lo:hi], w.data[lo:hi]
        b = bias[j]
        if idx.size > fan_in:
            keep = np.argsort(-np.abs(val) * spread[idx], kind="stable")[:fan_in]
            dropped = np.ones(idx.size, bool)
            dropped[keep] = False
            b += float(val[dropped] @ mean[idx[dropped]])
            keep.sort()
            idx, val = idx[keep], val[keep]
        want = top[j] / ticks  # float activation per level
        if idx.size:
            s, k = quantize_row(val, chip.axon_types, chip.weight_max, 1e-6)
            values, group = np.unique(k, return_inverse=True)
            # the level values and bias refitted to the float pre-activation on the calibration inputs;
            # samples far below zero (no spike either way) and above the top level count less
            target = z_pre[:, j]
            emphasis = np.where((target > -0.5 * top[j]) & (target < 1.5 * top[j]), 1.0, 0.1)
            levels, b = refit_levels(bits[:, idx], group, target, emphasis, s * values.astype(np.float64), b)
            root = np.sqrt(emphasis)
            for _ in range(REASSIGN_SWEEPS):
                group = reassign_levels(bits[:, idx] * root[:, None], group, levels, (target - b) * root)
                levels, b = refit_levels(bits[:, idx], group, target, emphasis, levels, b)
            per_unit = min(chip.weight_max / max(float(np.abs(levels).max()), 1e-12), chip.leak_max / want)
            k = np.rint(levels * per_unit).astype(np.int64)[group]
        else:
            k = np.zeros(0, np.int64)
            per_unit = chip.leak_max / max(want, 1e-12)
        lam = int(np.clip(round(want * per_unit), 1, chip.leak_max))
        ramp[j] = lam
        step[j] = lam / per_unit
        int_bias[j] = int(round(b * per_unit)) + lam // 2
        rows.append(np.full(idx.size, j))
        cols.append(idx)
        data.append(k)
    weights = sp.csr_matrix((np.concatenate(data) if data else [], (np.concatenate(rows) if rows else [],
                             np.concatenate(cols) if cols else [])), shape=w.shape, dtype=np.int64)
    return HiddenCode(weights=weights, bias=int_bias, ramp=ramp, step=step)


def weighted_levels(values: np.ndarray, importance: np.ndarray, count: int, iterations: int = 30
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(centres, group of each value): a 1-D k-means of ``values`` into at most ``count`` levels,
    each value weighted by ``importance`` (how much its error costs), started at quantiles."""
    weight = np.maximum(importance, 1e-12)
    centres = np.unique(np.quantile(values, (np.arange(count) + 0.5) / count))
    for _ in range(iterations):
        group = np.argmin(np.abs(values[:, None] - centres[None, :]), axis=1)
        sums = np.bincount(group, weight * values, centres.size)
        totals = np.bincount(group, weight, centres.size)
        new = np.where(totals > 0, sums / np.maximum(totals, 1e-300), centres)
        if np.allclose(new, centres):
            break
        centres = new
    group = np.argmin(np.abs(values[:, None] - centres[None, :]), axis=1)
    used, group = np.unique(group, return_inverse=True)
    return centres[used], group


def reassign_levels(x: np.ndarray, group: np.ndarray, values: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Each input's level moved, one input at a time, to the value that most lowers the squared error
    of x @ values[group] against ``target`` on the calibration samples (coordinate descent)."""
    group = group.copy()
    residual = target - x @ values[group]
    norms = np.einsum("ij,ij->j", x, x)
    levels = values.tolist()
    for i in np.argsort(-norms, kind="stable").tolist():
        norm = float(norms[i])
        if norm == 0:
            continue
        column = x[:, i]
        dot = float(column @ residual)
        now = levels[group[i]]
        # the error decrease of each choice (the change of input i's weight is level - now); the
        # first largest wins, as np.argmax picks it
        best, top = 0, None
        for q, level in enumerate(levels):
            delta = level - now
            gain = 2.0 * delta * dot - delta * delta * norm
            if top is None or not gain <= top:
                best, top = q, gain
                if gain != gain:
                    break
        if top > 1e-12:
            residual -= (levels[best] - now) * column
            group[i] = best
    return group


def refit_levels(x: np.ndarray, group: np.ndarray, target: np.ndarray, emphasis: np.ndarray, start: np.ndarray,
                 bias: float, ridge: float = 1e-3, fit_bias: bool = True) -> tuple[np.ndarray, float]:
    """(level values, bias) minimizing the weighted squared error of x[:, i] summed with the value of
    input i's level ``group[i]``, plus the bias, against ``target`` on the calibration samples,
    pulled towards ``start`` and ``bias`` by a small ridge (levels no sample uses keep their start).
    With ``fit_bias`` false the bias stays as given."""
    if len(x) == 0:
        return start, bias
    columns = [x.astype(np.float64) @ np.eye(start.size)[group]]
    prior = start.astype(np.float64)
    if fit_bias:
        columns.append(np.ones((len(x), 1)))
        prior = np.append(prior, bias)
    sqrt_w = np.sqrt(emphasis)[:, None]
    a = np.hstack(columns) * sqrt_w
    rest = target - (0.0 if fit_bias else bias)
    strength = ridge * float(emphasis.sum())
    solution = np.linalg.solve(a.T @ a + strength * np.eye(prior.size), a.T @ (rest * sqrt_w[:, 0]) + strength * prior)
    return (solution[:-1], float(solution[-1])) if fit_bias else (solution, bias)


def hidden_params(code: HiddenCode, ticks: int, run_ticks: int, chip: ChipSpec) -> dict[str, np.ndarray]:
    """Neuron parameters of a hidden layer: alpha 1, leak = ramp, initial_v = 1 - ramp (K + 1) + B,
    reset to -beta with beta large enough that the ramp cannot climb back to alpha within the run."""
    n = code.ramp.size
    alpha = np.full(n, chip.alpha_min, np.int64)
    initial = alpha - code.ramp * (ticks + 1) + code.bias
    beta = code.ramp * (run_ticks + 2) + np.maximum(0, -initial)
    bad = (initial < chip.v_min) | (initial > chip.v_max) | (beta > chip.beta_max)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise BinarizeError(f"binarize_ttfs: neuron {j} needs initial potential {int(initial[j])} and floor "
                            f"{-int(beta[j])}, outside the chip's ranges (V {chip.v_min}..{chip.v_max}, beta <= "
                            f"{chip.beta_max}); use fewer ticks")
    return {"alpha": alpha, "beta": beta, "leak": code.ramp.copy(), "reset_mode": np.zeros(n, np.int64),
            "reset_value": -beta, "initial_v": initial}


def readout_code(layer: Layer, steps: np.ndarray, levels: np.ndarray, logits: np.ndarray, ticks: int,
                 neurons: int, chip: ChipSpec, delay: int = 1) -> ReadoutCode:
    """Integer readout weights on the hidden levels (one scale for all classes, at most G distinct
    values per class), the class biases as initial potentials, and the threshold step and offset that
    agree best with the float model's classes on the calibration samples, robustly (the worst of the
    neighbouring offsets counts), with the fewest readout spikes among near-equal settings."""
    r = layer.weight().toarray() * steps[None, :]  # float weight per hidden level
    bias = layer.bias().copy()
    centres = np.zeros_like(r)
    for c in range(layer.size):
        nz = np.flatnonzero(r[c])
        if not nz.size:
            continue
        start, group = weighted_levels(r[c, nz], np.mean(levels[:, nz].astype(np.float64) ** 2, axis=0),
                                       chip.axon_types)
        # the class's level values refitted to the float logits from the deployed levels (the bias
        # stays: the thermometer reads the potential on every tick, where a bias refit would differ
        # between classes far more than the model's own)
        fitted, _ = refit_levels(levels[:, nz], group, logits[:, c], np.ones(len(levels)), start, bias[c],
                                 fit_bias=False)
        for _ in range(REASSIGN_SWEEPS):
            group = reassign_levels(levels[:, nz].astype(np.float64), group, fitted, logits[:, c] - bias[c])
            fitted, _ = refit_levels(levels[:, nz], group, logits[:, c], np.ones(len(levels)), fitted, bias[c],
                                     fit_bias=False)
        centres[c, nz] = fitted[group]
    scale = chip.weight_max / max(float(np.abs(centres).max()), 1e-12)
    weights = np.rint(centres * scale).astype(np.int64)
    # the bias acts on the K window ticks and the ``delay`` ticks before: spread it over K + delay
    bias_v = np.rint(bias * scale * ticks / (ticks + delay)).astype(np.int64)
    target = np.argmax(logits, axis=1)
    final = bias_v[None, :] + ((levels > 0).astype(np.int64) @ weights.T)
    lo, hi = (np.percentile(final, [5, 99.5]) if final.size else (0.0, 1.0))
    span = max(hi - lo, 1.0)
    shifts = np.linspace(-0.5, 1.0, 25)
    scored: list[tuple[float, float, ReadoutCode]] = []  # (robust agreement, spikes per sample, code)
    arrived = ReadoutCode(weights=weights, initial=bias_v, threshold_step=1, neurons=neurons,
                          delay=delay).arrivals(levels, ticks)  # the same for every offset and step
    for frac in FRACTIONS:
        step = max(1, int(round(span * frac / neurons)))
        codes, agree, spikes = [], [], []
        for shift in shifts:
            code = ReadoutCode(weights=weights, initial=bias_v + int(round(-lo - shift * span)),
                               threshold_step=step, neurons=neurons, delay=delay)
            counts = code.counts(levels, ticks, arrived)
            codes.append(code)
            agree.append(float(np.mean(np.argmax(counts, axis=1) == target)) if len(target) else 1.0)
            spikes.append(float(counts.sum(axis=1).mean()) if len(target) else 0.0)
        # the worst agreement over the neighbouring offsets: a setting next to a cliff (where the
        # top class stops firing) scores low even when it happens to agree on these samples
        for i in range(len(shifts)):
            scored.append((min(agree[max(0, i - 2):i + 3]), spikes[i], codes[i]))
    top = max(score for score, _, _ in scored)
    code = min((c for c in scored if c[0] >= top - AGREEMENT_SLACK), key=lambda c: c[1])[2]
    if np.abs(code.initial).max(initial=0) > chip.v_max:
        raise BinarizeError(f"binarize_ttfs: readout {layer.name!r} needs an initial potential beyond the chip's "
                            f"membrane range; use fewer ticks")
    return code


def _level_error(levels: np.ndarray, step: np.ndarray, h_float: np.ndarray) -> float:
    """Relative RMS error of step * q against the float activations."""
    denom = float(np.sqrt(np.mean(h_float ** 2))) if h_float.size else 0.0
    if denom == 0:
        return 0.0
    return float(np.sqrt(np.mean((levels * step[None, :] - h_float) ** 2)) / denom)



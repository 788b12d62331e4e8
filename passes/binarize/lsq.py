"""binarize_lsq: layer-wise optimal synapses (Mern et al. 2018) for any float model.

Every layer becomes a group of rate neurons (linear reset, reset_mode 1): over a run of T input
ticks a neuron's spike count is about T * clip((z - z0) / (z1 - z0), 0, 1) where z is its float
pre-activation, so the count represents the activation with an affine map chosen per activation:
relu [0, z1], identity [z0, z1], clip and hard/ordinary sigmoid and tanh their (linearized)
ranges, step a steep ramp above the threshold; z1 (and z0 for identity) are percentiles of the
calibrated activations. The output layer's neurons share one map, so class spike counts rank like
the float outputs (a 0/1 class readout of step neurons is kept as class votes instead).

Layer by layer, on the calibration inputs (``state.calibration``): the deployed inputs are the
spike counts of the layers already binarized (simulated on the chip model, so their errors are
seen), the targets are the float network's pre-activations, and crossmap.passes.binarize.lsq_fit chooses the
axon types, per-neuron integer weights, binary synapses and the bias (as the initial potential:
bias * T counts, no leak, so ticks without input add nothing) minimizing the squared error, with
LP rounding and CP-SAT (``solver=cpsat``), LP rounding only (``solver=lp``) or the rounding solution
alone (``solver=round``). The report gives the
approximation error per layer and the float vs deployed prediction agreement on the calibration set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from crossmap.passes.binarize.axon_types import TypeAssignment
from crossmap.passes.binarize.build import DeployedBuilder, IntLayer
from crossmap.passes.binarize.analysis import Layer, Plan, choose_encoding, plan_network
from crossmap.deployed import DeployedNetwork
from crossmap.encoding import encode
from crossmap.errors import BinarizeError
from crossmap.ir import INPUT, Network, _sparse_max
from crossmap.passes.binarize.lsq_fit import FitOptions, LayerFit, fit_layer, prediction
from crossmap.pipeline import CompileState

RAMP = 0.25  # a step neuron's ramp: a quarter of the way to its high activations
BETA_FACTOR = 1  # floor at -(alpha + initial deficit): one threshold of negative drive is remembered


@dataclass
class BinarizeLsq:
    """Rate-neuron layers with synapses fitted to calibration data (OR-Tools CP-SAT)."""

    name: ClassVar[str] = "binarize_lsq"
    reads: ClassVar[tuple[str, ...]] = ("network", "calibration")
    produces: ClassVar[tuple[str, ...]] = ("deployed",)
    encoding: str = "auto"  # auto (threshold when the model thresholds its input, else rate) | rate | threshold
    ticks: int | None = None  # input ticks per sample (default 32 for rate, 16 for threshold)
    threshold: float = 0.5  # input threshold of the threshold encoding
    lines_per_input: int = 2  # axons per input: 2 = positive and negative copies, 1 = one typed axon
    solver: str = "cpsat"  # cpsat (LP rounding, then CP-SAT) | lp (GLOP relaxation + rounding) | round
    time_limit: float = 20.0  # about the seconds the LP / CP-SAT stages may take for the whole network
    samples: int = 128  # calibration samples used
    percentile: float = 99.5  # activation percentile that maps to one spike per tick
    iterations: int = 10  # alternations of the type / level fit
    refit: bool = True  # refit float weights to the deployed inputs before discretizing
    free: int = 32  # inputs per neuron the solvers may rewire
    max_fan_in: int | None = None  # axons a neuron may read (default: the chip's axons_per_core; 0: no limit)

    def run(self, state: CompileState) -> CompileState:
        """Fit every layer into ``state.deployed``; report errors and agreement."""
        self._check(state)
        chip = state.chip
        net = state.network
        plan = plan_network(net, allow_logits=True, method="lsq")
        x = np.asarray(state.calibration, dtype=np.float64)[: self.samples].reshape(
            min(len(state.calibration), self.samples), -1)
        if x.shape[1] != plan.input_values:
            raise BinarizeError(f"calibration inputs have {x.shape[1]} values per sample, the network's input has "
                                f"{plan.input_values}; give calibration samples of the model's input shape")
        kind = self.encoding
        if kind == "auto":
            kind = "threshold" if plan.input_threshold is not None else "rate"
        ticks = self.ticks or (32 if kind == "rate" else 16)
        encoding = choose_encoding(plan, kind, ticks=ticks, threshold=self.threshold, seed=state.seed,
                                   method="lsq")
        spikes = encode(encoding, x)
        values = net.evaluate(x, keep=True)
        # the model's own threshold encoding: the spike channels are its step neurons' values
        floats = {INPUT: values[INPUT] if plan.input_threshold is None else spikes.mean(axis=1)}
        floats.update({layer.name: values[layer.name] for layer in plan.layers})
        run_ticks = ticks + plan.max_depth - 1
        counts: dict[str, np.ndarray] = {INPUT: spikes.sum(axis=1).astype(np.int64)}
        represent = {INPUT: (np.ones(plan.data_channels), np.zeros(plan.data_channels))}
        builder = DeployedBuilder(chip, plan.data_channels, seed=state.seed)
        total_neurons = sum(layer.size for layer in plan.layers)
        reports = []
        for layer in plan.layers:
            state.log(f"binarize {layer.name} (lsq)")
            options = FitOptions(copies=self.lines_per_input, iterations=self.iterations, refit=self.refit,
                                 solver=self.solver, free=self.free,
                                 budget=self.time_limit * layer.size / max(total_neurons, 1), seed=state.seed,
                                 max_fan_in=chip.axons_per_core if self.max_fan_in is None else self.max_fan_in)
            entry, lam, mu = self._layer(layer, plan, builder, counts, represent, floats, ticks, options)
            # the solver's CPU seconds go to the progress log, never the report: they differ run to run
            state.log(f"binarize {layer.name} (lsq): solver {entry.pop('solver_cpu_seconds'):.2f} CPU s")
            partial = DeployedNetwork(chip=chip, num_inputs=plan.data_channels, groups=builder.groups,
                                      lines=builder.lines, num_classes=plan.num_classes, input_ticks=ticks)
            recorded = partial.simulate(spikes, ticks=run_ticks, record=True)["spikes"][layer.name]
            counts[layer.name] = recorded.sum(axis=0).astype(np.int64)
            represent[layer.name] = (lam, mu)
            entry["mean_rate"] = float(counts[layer.name].mean() / ticks)
            reports.append(entry)
        state.deployed = builder.network(plan.num_classes, encoding, {"binarize": "lsq"})
        state.reports[self.name] = self._summary(state.deployed, plan, net, x, spikes, reports, encoding)
        return state

    def _check(self, state: CompileState) -> None:
        """Options and inputs a user can get wrong."""
        if self.solver not in ("cpsat", "lp", "round"):
            raise BinarizeError(f"binarize_lsq: solver={self.solver!r}; choose cpsat, lp or round")
        if self.lines_per_input < 1 or self.lines_per_input > state.chip.axon_types:
            raise BinarizeError(f"binarize_lsq: lines_per_input={self.lines_per_input}; need 1 to "
                                f"{state.chip.axon_types} (the chip's axon types)")
        if self.encoding not in ("auto", "rate", "threshold"):
            raise BinarizeError(f"binarize_lsq: encoding={self.encoding!r}; lsq needs float inputs encoded as "
                                f"rate or threshold spikes (or auto)")
        if state.calibration is None or len(state.calibration) == 0:
            raise BinarizeError("binarize_lsq needs calibration inputs (state.calibration, float samples of the "
                                "model's input); crossmap.compile supplies MNIST or random samples, or pass "
                                "calibration=...")
        if self.samples < 1:
            raise BinarizeError(f"binarize_lsq: samples={self.samples}; need at least 1")

    def _layer(self, layer: Layer, plan: Plan, builder: DeployedBuilder, counts: dict[str, np.ndarray],
               represent: dict[str, tuple[np.ndarray, np.ndarray]], floats: dict[str, np.ndarray], ticks: int,
               options: FitOptions) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        """Fit, build and report one layer; returns (report, lambda, mu) of its rate representation."""
        chip = builder.chip
        w = layer.weight()
        lam = np.concatenate([represent[s][0] for s in layer.sources]) if layer.sources else np.zeros(0)
        mu = np.concatenate([represent[s][1] for s in layer.sources]) if layer.sources else np.zeros(0)
        cols = np.hstack([counts[s] for s in layer.sources]) if layer.sources else np.zeros((len(floats[INPUT]), 0))
        prior = sp.csr_matrix(w.multiply(lam[None, :]))
        if layer.pop.reduce == "max":  # start a max from the mean of its window, not the sum
            prior = sp.csr_matrix(sp.diags(1.0 / np.maximum(np.diff(w.indptr), 1)) @ prior)
        prior_bias = layer.bias() + (w @ mu if w.shape[1] else 0)
        z = pre_activation(layer, floats)
        is_output = (layer.output_class >= 0).any()
        shared = is_output and layer.pop.activation not in ("step", "sign")
        z0, lo_hi = offsets(layer, z, self.percentile, shared)
        fit = fit_layer(cols, ticks, w != 0, prior, prior_bias, z, z0, types=chip.axon_types,
                        weight_max=chip.weight_max, v_max=chip.v_max, shared_scale=shared, options=options)
        zhat = prediction(fit, cols, ticks)
        z1, lam_out, mu_out = highs(layer, zhat, z0, lo_hi, self.percentile, shared)
        alpha = np.clip(np.rint(fit.scale * (z1 - z0)), chip.alpha_min, chip.alpha_max).astype(np.int64)
        beta = np.clip(BETA_FACTOR * alpha + np.maximum(0, -fit.bias), chip.beta_min, chip.beta_max).astype(np.int64)
        init = np.clip(fit.bias, chip.v_min, chip.v_max)
        n = layer.size
        params = {"alpha": alpha, "beta": beta, "leak": np.zeros(n), "reset_mode": np.ones(n),
                  "reset_value": np.zeros(n), "initial_v": init}
        offsets_ = np.cumsum([0] + [b.shape[1] for b in layer.blocks])
        sources = [(src, np.arange(offsets_[i + 1] - offsets_[i])) for i, src in enumerate(layer.sources)]
        assignment = lines_of(fit)
        entry = builder.add(IntLayer(name=layer.name, layer=layer.name, depth=layer.depth, sources=sources,
                                     weights=fit.integer_matrix(), params=params, output_class=layer.output_class,
                                     assignment=assignment), "use fewer lines_per_input")
        entry["solver_cpu_seconds"] = fit.solver_seconds  # for the progress log (popped by run)
        entry.update({"layer": layer.name, "method": "lsq", "neurons": n, "activation": layer.pop.activation,
                      "approximation_error": fit.error, "approximation_error_rounding": fit.error_round,
                      "improved_neurons": fit.improved, "pruned_synapses": fit.pruned,
                      "max_fan_in": int(np.diff(fit.connect.indptr).max()) if n else 0,
                      "synapses": int(fit.connect.nnz), "float_synapses": int(w.nnz),
                      "alpha_range": [int(alpha.min()), int(alpha.max())] if n else [],
                      "scale_range": [float(fit.scale.min()), float(fit.scale.max())] if n else [],
                      "shared_output_scale": bool(shared)})
        return entry, lam_out, mu_out

    def _summary(self, deployed: DeployedNetwork, plan: Plan, net: Network, x: np.ndarray, spikes: np.ndarray,
                 layers: list[dict[str, Any]], encoding: dict[str, Any]) -> dict[str, Any]:
        """The pass report with the float vs deployed agreement on the calibration set."""
        counts = deployed.simulate(spikes)["class_counts"]
        deployed_pred = np.argmax(counts, axis=1)
        float_out = net.evaluate(x)
        float_pred = np.argmax(float_out, axis=1)
        return {"method": "lsq", "encoding": encoding, "layers": layers, "solver": self.solver,
                "lines_per_input": self.lines_per_input, "calibration_samples": int(len(x)),
                "agreement": float(np.mean(deployed_pred == float_pred)) if len(x) else None,
                "silent_samples": int(np.sum(counts.sum(axis=1) == 0)),
                "groups": len(deployed.groups), "neurons": deployed.num_neurons, "readout": plan.readout,
                "num_classes": plan.num_classes}


def pre_activation(layer: Layer, floats: dict[str, np.ndarray]) -> np.ndarray:
    """The float pre-activation (sum or max of the inputs, plus bias) on the calibration samples."""
    batch = next(iter(floats.values())).shape[0]
    if layer.pop.reduce == "max":
        acc = np.full((batch, layer.size), -np.inf)
        for src, block in zip(layer.sources, layer.blocks):
            acc = np.maximum(acc, _sparse_max(sp.csr_matrix(block), floats[src].reshape(batch, -1)))
        acc[np.isinf(acc)] = 0.0
    else:
        acc = np.zeros((batch, layer.size))
        for src, block in zip(layer.sources, layer.blocks):
            acc = acc + np.asarray(sp.csr_matrix(block) @ floats[src].reshape(batch, -1).T).T
    return acc + layer.bias()


def offsets(layer: Layer, z: np.ndarray, percentile: float, shared: bool) -> tuple[np.ndarray, tuple]:
    """z0 per neuron (the pre-activation of zero spikes) and the (lo, hi) values of the activation."""
    pop, n = layer.pop, layer.size
    act, params = pop.activation, pop.params
    low = 100.0 - percentile
    if shared:
        top = z.max(axis=1) if z.size else np.zeros(1)
        return np.full(n, float(np.percentile(top, 1.0))), ("shared",)
    if act in ("relu", "leaky_relu"):
        return np.zeros(n), ("relu",)
    if act == "clip":
        a, b = float(params.get("min", 0.0)), float(params.get("max", 6.0))
        return np.full(n, a), ("fixed", a, b, a, b)
    if act == "hard_sigmoid":
        alpha, beta = float(params.get("alpha", 0.2)), float(params.get("beta", 0.5))
        return np.full(n, -beta / alpha), ("fixed", -beta / alpha, (1 - beta) / alpha, 0.0, 1.0)
    if act == "sigmoid":
        return np.full(n, -2.0), ("fixed", -2.0, 2.0, 0.0, 1.0)
    if act == "tanh":
        return np.full(n, -1.0), ("fixed", -1.0, 1.0, -1.0, 1.0)
    if act in ("step", "sign"):
        t = float(params.get("threshold", 0.0)) if act == "step" else 0.0
        return np.full(n, t), ("ramp", 0.0 if act == "step" else -1.0)
    if act == "identity":
        return np.percentile(z, low, axis=0) if z.size else np.zeros(n), ("identity",)
    raise BinarizeError(f"layer {layer.name!r} has activation {act!r}, which binarize_lsq cannot represent with "
                        f"rate neurons; supported: relu, leaky_relu, clip, hard_sigmoid, sigmoid, tanh, step, "
                        f"sign, identity")


def highs(layer: Layer, zhat: np.ndarray, z0: np.ndarray, rule: tuple, percentile: float, shared: bool
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z1, lambda, mu): the pre-activation of one spike per tick and the float value of a rate r,
    lambda * r + mu, from the deployed pre-activations ``zhat`` on the calibration samples."""
    n = layer.size
    kind = rule[0]
    if kind == "fixed":
        _, a, b, lo, hi = rule
        return np.full(n, b), np.full(n, hi - lo), np.full(n, lo)
    if kind == "shared":
        top = zhat.max(axis=1) if zhat.size else np.ones(1)
        z1 = max(float(np.percentile(top, percentile)), float(z0[0]) + 1e-6)
        return np.full(n, z1), np.full(n, z1 - z0[0]), z0.copy()
    peak = np.percentile(zhat, percentile, axis=0) if zhat.size else z0 + 1.0
    if kind == "ramp":
        span = np.maximum(RAMP * (peak - z0), 1e-6)
        lo = rule[1]
        return z0 + span, np.full(n, 1.0 - lo), np.full(n, lo)
    span = peak - z0
    alive = span > 1e-9
    # a neuron silent on every calibration sample gets the layer's typical range, not alpha = 1
    z1 = np.where(alive, peak, z0 + (float(np.median(span[alive])) if alive.any() else 1.0))
    if kind == "relu":
        return z1, z1, np.zeros(n)
    return z1, z1 - z0, z0.copy()  # identity


def lines_of(fit: LayerFit) -> TypeAssignment:
    """Axon lines of a fitted layer: one per (input, copy) that some neuron connects to."""
    conn = fit.connect.tocoo()
    copies = fit.line_types.shape[1]
    key = conn.col.astype(np.int64) * copies + (conn.data - 1)
    lines, line_of_entry = np.unique(key, return_inverse=True)
    synapses = sp.csr_matrix((np.ones(conn.nnz, bool), (line_of_entry, conn.row)),
                             shape=(lines.size, fit.connect.shape[0]))
    column = lines // copies
    return TypeAssignment(line_column=column, line_type=fit.line_types[column, lines % copies],
                          synapses=synapses, weight=fit.weight.astype(np.int32), scheme="lsq")

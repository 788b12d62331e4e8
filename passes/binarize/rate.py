"""binarize_rate: float ReLU networks (MLPs, CNNs with average pooling and folded batch norm) as
rate-coded integrate-and-fire neurons.

Every float layer becomes neurons with linear reset (V -= alpha on a spike; reset by subtraction)
and a deep floor (beta at the chip's limit), so over the T input ticks a neuron's spike count is
about T * clip(total drive / alpha, 0, 1): the ReLU of its summed input, in units of its scale.
Activity is normalized layer by layer on the calibration inputs (``state.calibration``), on the
spikes the deployed layers before it really produce (simulated on the chip model, so their errors
are seen and not compounded): a neuron's scale is the ``percentile`` of its activation.

- Bias correction: a layer's bias also cancels the mean error (over the calibration samples where
  each neuron is active in float) that its deployed inputs bring into its drive, against the float
  network's own values, so systematic errors upstream are not passed on (``drive_correction``).
- Gain: a neuron's scale is at least the drive of one input spike (``gain`` thresholds), so a rarely
  active neuron (a pooling difference, a border pixel) does not get weights its 4-bit code cannot
  hold.
- Weights: each input is carried on up to ``bits`` axon lines of different types and a neuron's
  weight is the sum of the types its crossbar bits select (``crossmap.passes.binarize.codes``: a
  4-bit signed code with a scale per neuron), rounded with error feedback through the calibration
  inputs' correlation (``feedback``), so that the neuron's drive, not each weight, is kept.
- Biases: T ticks of bias in all. A negative bias leaks out evenly over the run, what the leak
  range cannot hold taken off the initial potential (``spread``: held below zero until its input
  has all come in, a neuron would be short of ticks to fire in). A positive one is the leak, added
  on every tick of the run, with the ticks outside the layer's input window taken off the initial
  potential, so that the neuron never fires on the bias alone before its input arrives. A neuron
  whose bias needs more than the leak range gets a smaller threshold.
- Fan-in beyond one core: the inputs are cut into chunks that fit a core
  (``crossmap.passes.binarize.chunks``: a dense layer's inputs dealt out evenly, a convolution's
  channels grouped so that its partial neurons fill cores); each chunk's partial sum is one
  partial neuron whose steady leak lifts the calibration's low tail to zero (``partials=offset``;
  or a pair, its positive and its negative part, ``signed``), and a merge group adds the parts
  (its bias, fitted on the calibration data to the partials' real counts, takes the lift off
  again at the same pace) and applies the ReLU.
- Output: the last layer's neurons share one scale and offset, so class spike counts rank like the
  logits; zero spikes lie ``floor`` spans below the lowest winning score of the calibration set, so
  that a sample scoring lower still spikes for its class instead of falling to the tie of all-zero
  counts; ``output_copies`` copies of each output neuron (and of its partial sums) with staggered
  initial potentials give that many times the count resolution.
- Max pooling: rewritten exactly as ReLU layers of rectified differences
  (``crossmap.passes.binarize.maxpool``), so it needs no max neuron.
- Inputs: the model's own ``Greater(x, t)`` threshold is the threshold encoding (the same frame on
  every tick); float inputs use the regular (deterministic rate) encoding over the calibration
  range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from crossmap.chip import ChipSpec
from crossmap.deployed import INPUT, DeployedNetwork
from crossmap.encoding import encode, make_encoding
from crossmap.errors import BinarizeError
from crossmap.passes.binarize.analysis import Layer, Plan, plan_network
from crossmap.passes.binarize.axon_types import TypeAssignment
from crossmap.passes.binarize.build import DeployedBuilder, IntLayer
from crossmap.passes.binarize.chunks import input_chunks
from crossmap.passes.binarize.codes import Codes, _subset_sums, fit_codes
from crossmap.passes.binarize.maxpool import expand_max_pools
from crossmap.passes.binarize.trains import simulate_new
from crossmap.pipeline import CompileState

DEFAULT_TICKS = 32
SUPPORTED = ("relu", "identity", "clip")
TINY = 1e-9


@dataclass
class Rep:
    """How a group's spike counts stand for float values: value = scale * count / T - offset."""

    scale: np.ndarray
    offset: np.ndarray


@dataclass
class BinarizeRate:
    """Rate-coded integrate-and-fire conversion of float ReLU networks (see the module docstring)."""

    name: ClassVar[str] = "binarize_rate"
    reads: ClassVar[tuple[str, ...]] = ("network", "calibration")
    produces: ClassVar[tuple[str, ...]] = ("deployed",)
    ticks: int | None = None  # input ticks per sample (default 32)
    percentile: float = 99.9  # activation percentile that maps to one spike per tick
    samples: int = 256  # calibration samples used
    bits: int = 4  # axon lines (types) per input: weights are sums of that many per-neuron values
    output_copies: int = 8  # copies of each output neuron (staggered initial potentials)
    gain: float = 1.0  # largest drive of one input spike, in thresholds (a neuron's scale is raised to keep it)
    correct: bool = True  # cancel the mean drive error of the deployed inputs in each layer's bias
    floor: float = 0.25  # output layer: how far below the calibration's lowest winning score zero spikes lie, in spans
    feedback: bool = True  # round each neuron's weights with error feedback through its inputs' correlation
    partials: str = "offset"  # fan-in above a core: offset (one partial neuron per chunk) | signed (a +/- pair)
    spread: bool = True  # a negative bias leaks out over the run instead of all at the start
    encoding: str = "auto"  # auto (threshold when the model thresholds its input, else regular) | regular | rate

    def run(self, state: CompileState) -> CompileState:
        """Convert ``state.network`` into ``state.deployed``; report per layer."""
        self._check(state)
        chip = state.chip
        network = expand_max_pools(state.network)
        plan = plan_network(network, allow_logits=True, method="rate")
        _check_layers(plan)
        x = np.asarray(state.calibration, np.float64)
        x = x[: self.samples].reshape(min(len(x), self.samples), -1)
        if x.shape[1] != plan.input_values:
            raise BinarizeError(f"calibration inputs have {x.shape[1]} values per sample, the network's input has "
                                f"{plan.input_values}; give calibration samples of the model's input shape")
        ticks = self.ticks or DEFAULT_TICKS
        encoding, input_rep = self._encoding(plan, x, ticks, state.seed)
        spikes = encode(encoding, x)
        builder = DeployedBuilder(chip, plan.data_channels, seed=state.seed)
        conv = _Converter(self, chip, plan, builder, spikes, ticks, state, ThreadpoolController())
        conv.reps[INPUT] = input_rep
        conv.rates[INPUT] = spikes.sum(axis=1) / ticks
        floats = network.evaluate(x.reshape((len(x),) + tuple(network.input.shape)), keep=True)
        reports = []
        for layer in plan.layers:
            state.log(f"binarize {layer.name} (rate)")
            reports.append(conv.layer(layer, floats))
        state.deployed = builder.network(plan.num_classes, encoding, {"binarize": "rate"})
        state.reports[self.name] = self._summary(state, plan, conv, floats, reports, encoding)
        return state

    def _check(self, state: CompileState) -> None:
        """Options and inputs a user can get wrong."""
        if self.bits < 1 or self.bits > min(4, state.chip.axon_types):
            raise BinarizeError(f"binarize_rate: bits={self.bits}; need 1 to {min(4, state.chip.axon_types)} "
                                f"(axon types per input)")
        if self.encoding not in ("auto", "regular", "rate", "threshold"):
            raise BinarizeError(f"binarize_rate: encoding={self.encoding!r}; choose auto, regular, rate or threshold")
        if self.partials not in ("offset", "signed"):
            raise BinarizeError(f"binarize_rate: partials={self.partials!r}; choose offset or signed")
        if self.ticks is not None and self.ticks < 1:
            raise BinarizeError(f"binarize_rate: ticks={self.ticks}; need at least 1")
        if not 50.0 <= self.percentile <= 100.0:
            raise BinarizeError(f"binarize_rate: percentile={self.percentile}; choose a value in [50, 100]")
        if not 0.0 <= self.floor <= 10.0:
            raise BinarizeError(f"binarize_rate: floor={self.floor}; choose a value in [0, 10] (spans of the class "
                                f"scores below the calibration set's lowest winning score)")
        if self.gain < 0:
            raise BinarizeError(f"binarize_rate: gain={self.gain}; need >= 0 (0 turns the bound off)")
        if self.output_copies < 1 or self.samples < 1:
            raise BinarizeError(f"binarize_rate: output_copies={self.output_copies}, samples={self.samples}; "
                                f"need both >= 1")
        if state.calibration is None or len(state.calibration) == 0:
            raise BinarizeError("binarize_rate needs calibration inputs (float samples of the model's input); "
                                "crossmap.compile supplies them, or pass calibration=... (--calibration FILE)")

    def _encoding(self, plan: Plan, x: np.ndarray, ticks: int, seed: int) -> tuple[dict[str, Any], Rep]:
        """The input encoding and how its spike counts stand for the input values."""
        kind = self.encoding
        channels = plan.data_channels
        if plan.input_threshold is not None:
            if kind not in ("auto", "threshold"):
                raise BinarizeError(f"the model thresholds its input itself (Greater(x, t) on the input), which is "
                                    f"the threshold encoding; encoding {kind!r} would change what it computes; "
                                    f"use encoding=auto")
            spec = plan.input_threshold
            enc = make_encoding("threshold", channels=plan.input_values, ticks=ticks, threshold=spec["threshold"],
                                inclusive=spec["inclusive"], source=spec.get("source"))
            return enc, Rep(np.ones(channels), np.zeros(channels))
        if kind == "threshold":
            raise BinarizeError("binarize_rate: encoding=threshold needs a model that thresholds its input "
                                "(Greater(x, t) -> Cast); use encoding=auto for float inputs")
        low = min(0.0, float(x.min())) if x.size else 0.0
        high = float(x.max()) if x.size else 1.0
        if high <= low:
            high = low + 1.0
        if kind == "rate":
            if low < 0 or high > 1:
                raise BinarizeError(f"binarize_rate: encoding=rate needs inputs in [0, 1], the calibration inputs "
                                    f"span [{low:g}, {high:g}]; use encoding=auto (regular, any range)")
            enc = make_encoding("rate", channels=channels, ticks=ticks, seed=seed)
            return enc, Rep(np.ones(channels), np.zeros(channels))
        enc = make_encoding("regular", channels=channels, ticks=ticks, low=low, high=high)
        return enc, Rep(np.full(channels, high - low), np.full(channels, -low))

    def _summary(self, state: CompileState, plan: Plan, conv: "_Converter", floats: dict[str, np.ndarray],
                 reports: list[dict[str, Any]], encoding: dict[str, Any]) -> dict[str, Any]:
        """The pass report: layers, sizes and the float vs deployed agreement on the calibration set."""
        net: DeployedNetwork = state.deployed
        run = conv.run_ticks
        votes = np.zeros((conv.spikes.shape[0], plan.num_classes))
        for g in net.groups:
            if (g.output_class >= 0).any():
                counts = conv.trains[g.name][:run].sum(axis=0)
                for k in np.unique(g.output_class[g.output_class >= 0]):
                    votes[:, k] += counts[:, g.output_class == k].sum(axis=1)
        float_pred = np.argmax(floats[state.network.output], axis=1)
        agree = float(np.mean(np.argmax(votes, axis=1) == float_pred))
        state.log(f"binarize_rate: {net.num_neurons} neurons, calibration agreement with float {100 * agree:.1f}%")
        return {"method": "rate", "encoding": net.encoding, "ticks": conv.ticks, "layers": reports,
                "groups": len(net.groups), "neurons": net.num_neurons, "num_classes": plan.num_classes,
                "calibration_samples": int(conv.spikes.shape[0]), "calibration_agreement": agree,
                "bits": self.bits, "percentile": self.percentile, "output_copies": self.output_copies}


def _check_layers(plan: Plan) -> None:
    """Every layer must have an activation the rate neurons can compute (max pooling is expanded)."""
    for layer in plan.layers:
        pop = layer.pop
        act = pop.activation
        if act not in SUPPORTED or (act == "clip" and float(pop.params.get("min", 0.0)) != 0.0):
            raise BinarizeError(f"layer {layer.name!r} (ONNX {', '.join(pop.source_nodes) or pop.name}) has "
                                f"activation {act!r}{'' if act != 'clip' else ' with a nonzero minimum'}; "
                                f"binarize_rate converts ReLU, Clip(0, max) and linear layers; use --binarize lsq "
                                f"for other activations")


@dataclass
class _Converter:
    """Conversion state: the builder, each group's spike trains and representation."""

    options: BinarizeRate
    chip: ChipSpec
    plan: Plan
    builder: DeployedBuilder
    spikes: np.ndarray  # (batch, T, data channels)
    ticks: int
    state: CompileState
    blas: ThreadpoolController  # the code fit runs on one BLAS thread: its many small calls only spin on more
    trains: dict[str, np.ndarray] = field(default_factory=dict)
    reps: dict[str, Rep] = field(default_factory=dict)
    rates: dict[str, np.ndarray] = field(default_factory=dict)  # spikes per tick (batch, size)
    depth: dict[str, int] = field(default_factory=lambda: {INPUT: 0})
    chunks: dict[str, list[np.ndarray]] = field(default_factory=dict)
    run_ticks: int = 0

    def __post_init__(self) -> None:
        """Cut every layer's inputs into chunks and fix the run length (input ticks + latency)."""
        depth = {INPUT: 0}
        for layer in self.plan.layers:
            chunks = input_chunks(layer.weight(), self.options.bits, self.chip.axons_per_core,
                                  self.chip.neurons_per_core, shape=layer.pop.shape,
                                  parts=1 if self.options.partials == "offset" else 2,
                                  copied_sources=any(s != INPUT for s in layer.sources))
            self.chunks[layer.name] = chunks
            depth[layer.name] = 1 + max(depth[s] for s in layer.sources) + (1 if len(chunks) > 1 else 0)
        self.run_ticks = self.ticks + max(depth.values()) - 1

    def layer(self, layer: Layer, floats: dict[str, np.ndarray]) -> dict[str, Any]:
        """Convert one float layer into groups; returns its report."""
        w = layer.weight()
        lam_in = np.concatenate([self.reps[s].scale for s in layer.sources])
        mu_in = np.concatenate([self.reps[s].offset for s in layer.sources])
        rates_in = np.hstack([self.rates[s] for s in layer.sources])
        w_rate = sp.csr_matrix(w @ sp.diags(lam_in))
        b_rate = layer.bias() - w @ mu_in
        float_values = floats.get(layer.name)
        if self.options.correct and float_values is not None:
            b_rate = b_rate + self._bias_correction(layer, w, floats, float_values)
        zhat = np.asarray(rates_in @ w_rate.T.toarray()) + b_rate
        is_output = bool((layer.output_class >= 0).any())
        rep = self._scale(layer, zhat, is_output, w_rate)
        u = sp.csr_matrix(sp.diags(1.0 / rep.scale) @ w_rate)
        bu = (b_rate + rep.offset) / rep.scale
        offsets = np.cumsum([0] + [len(self.reps[s].scale) for s in layer.sources])
        flat_cols = [(s, i) for k, s in enumerate(layer.sources) for i in range(offsets[k + 1] - offsets[k])]
        chunks = self.chunks[layer.name]
        copies = self.options.output_copies if is_output else 1
        if len(chunks) == 1:
            self._emit(layer.name, layer.name, _select(flat_cols, chunks[0]), u[:, chunks[0]], bu,
                       rates_in[:, chunks[0]], layer.output_class, copies)
            groups = [layer.name]
        else:
            groups = self._split(layer, chunks, flat_cols, u, bu, rates_in, copies)
        if not is_output:
            self.reps[layer.name] = rep
        entry: dict[str, Any] = {
            "layer": layer.name, "neurons": layer.size, "activation": layer.pop.activation, "groups": groups,
            "chunks": len(chunks), "output": is_output, "depth": self.depth[layer.name],
            "scale_range": [float(rep.scale.min()), float(rep.scale.max())] if layer.size else [],
            "mean_rate": float(np.mean(self.rates[layer.name])),
        }
        if float_values is not None and not is_output:
            value = rep.scale * self.rates[layer.name] - rep.offset
            target = float_values.reshape(len(value), -1)
            entry["relative_error"] = float(np.linalg.norm(value - target) / max(np.linalg.norm(target), TINY))
        return entry

    def _bias_correction(self, layer: Layer, w: sp.csr_matrix, floats: dict[str, np.ndarray],
                         float_values: np.ndarray) -> np.ndarray:
        """``drive_correction`` of the layer from its sources' deployed and float values (the input
        encoding is taken as exact)."""
        deployed, exact = [], []
        for s in layer.sources:
            rep = self.reps[s]
            if s == INPUT or s not in floats:
                deployed.append(np.zeros((len(float_values), len(rep.scale))))
                exact.append(deployed[-1])
            else:
                deployed.append(rep.scale * self.rates[s] - rep.offset)
                exact.append(floats[s].reshape(len(float_values), -1))
        return drive_correction(w, np.hstack(deployed), np.hstack(exact), float_values.reshape(len(float_values), -1))

    def _scale(self, layer: Layer, zhat: np.ndarray, shared: bool, w_rate: sp.csr_matrix) -> Rep:
        """Scale and offset of a layer's neurons from its deployed pre-activations ``zhat``."""
        p = self.options.percentile
        n = layer.size
        act = layer.pop.activation
        if shared:
            top = zhat.max(axis=1)
            low = float(np.percentile(top, 100.0 - p))
            high = float(np.percentile(top, p))
            span = max(high - low, TINY)
            low -= self.options.floor * span  # keep the winner of unusual samples above zero spikes too
            return Rep(np.full(n, high - low), np.full(n, -low))
        if act == "identity":
            offset = np.maximum(0.0, -np.percentile(zhat, 100.0 - p, axis=0))
        else:
            offset = np.zeros(n)
        scale = np.percentile(np.maximum(zhat + offset, 0.0), p, axis=0)
        if self.options.gain > 0:
            drive = np.zeros(n)
            wr = sp.csr_matrix(w_rate)
            if wr.nnz:
                np.maximum.at(drive, np.repeat(np.arange(n), np.diff(wr.indptr)), np.abs(wr.data))
            scale = np.maximum(scale, drive / self.options.gain)
        if act == "clip" and "max" in layer.pop.params:
            scale = np.minimum(scale, float(layer.pop.params["max"]))
        alive = scale > TINY
        fill = float(np.median(scale[alive])) if alive.any() else 1.0
        return Rep(np.where(alive, scale, fill), offset)

    def _split(self, layer: Layer, chunks: list[np.ndarray], flat_cols: list[tuple[str, int]], u: sp.csr_matrix,
               bu: np.ndarray, rates_in: np.ndarray, copies: int) -> list[str]:
        """Partial groups, one per chunk of the inputs, and a merge group that adds their counts.
        With ``partials="offset"`` a chunk's partial neuron carries its sum plus an offset that
        lifts the calibration's low tail to zero (one neuron per chunk); with ``"signed"`` it is a
        pair, the positive and the negative part. The partials of an output layer get its
        ``copies`` too (staggered), which the merge reads all of: their count resolution, not only
        the merge's, limits the class scores."""
        p = self.options.percentile
        n = layer.size
        partial = [np.asarray(rates_in[:, c] @ u[:, c].T.toarray()) for c in chunks]
        signed = self.options.partials == "signed"
        if signed:
            peaks = [np.percentile(np.abs(v), p, axis=0) for v in partial]
        else:  # each chunk's lift: its sum's low tail up to zero
            lifts = [np.maximum(0.0, -np.percentile(v, 100.0 - p, axis=0)) for v in partial]
            peaks = [np.percentile(v + lift, p, axis=0) for v, lift in zip(partial, lifts)]
        sigma = np.max(peaks, axis=0)
        sigma = np.where(sigma > TINY, sigma, max(float(np.median(sigma)), TINY))
        names = []
        for c, cols in enumerate(chunks):
            name = f"{layer.name}/part{c}"
            sub = sp.csr_matrix(sp.diags(1.0 / sigma) @ u[:, cols])
            if signed:
                weights, bias = sp.vstack([sub, -sub], format="csr"), np.zeros(2 * n)
            else:
                weights, bias = sub, lifts[c] / sigma
            self._emit(name, layer.name, _select(flat_cols, cols), weights, bias, rates_in[:, cols],
                       np.full(weights.shape[0], -1), copies, steady=True)
            names.append(name)
        # merge: z / scale = sum_c sigma * (parts of chunk c) / copies + bias, the bias fitted to the real counts
        sign = np.concatenate([sigma, -sigma]) if signed else sigma
        width = sign.size * copies  # lines of one partial group: neurons x copies, neuron-major
        seen = self.run_ticks - 1  # the merge integrates a spike one tick after it is fired
        part_rates = np.hstack([self.trains[m][:seen].sum(axis=0) / self.ticks for m in names])
        values = np.tile(np.repeat(sign, copies) / copies, len(names))
        rows = np.tile(np.repeat(np.arange(sign.size) % n, copies), len(names))
        merge_w = sp.csr_matrix((values, (rows, np.arange(width * len(names)))), shape=(n, width * len(names)))
        target = rates_in @ u.T.toarray() + bu
        merge_b = np.mean(target - np.asarray(part_rates @ merge_w.T.toarray()), axis=0)
        sources = [(m, np.arange(width)) for m in names]
        self._emit(layer.name, layer.name, sources, merge_w, merge_b, part_rates, layer.output_class, copies)
        return names + [layer.name]

    def _emit(self, name: str, layer: str, sources: list[tuple[str, np.ndarray]], u: sp.csr_matrix,
              bu: np.ndarray, inputs: np.ndarray, output_class: np.ndarray, copies: int, steady: bool = False) -> None:
        """Fit codes to the group's float weights ``u`` on its ``inputs`` (calibration rates of its
        columns), add the group (with ``copies`` staggered copies of each neuron) and simulate it.
        ``steady``: a positive bias leaks in on every tick of the run, not T ticks of it in all (the
        lift of offset partial sums: their merge takes it off again at the same pace)."""
        chip = self.chip
        T, R = self.ticks, self.run_ticks
        depth = 1 + max(self.depth[s] for s, _ in sources)
        # the bias must fit the leak range (positive) and T ticks of it the membrane (negative)
        cap = np.where(bu > 0, chip.leak_max / np.maximum(bu, TINY), np.inf)
        cap = np.minimum(cap, (chip.beta_max // 2) / (T * np.maximum(1.0, np.abs(bu))))
        if self.options.spread:  # and a negative one, spread over the run, the leak range too
            cap = np.minimum(cap, np.where(bu < 0, -chip.leak_min * R / (T * np.maximum(-bu, TINY)), np.inf))
        cap = np.minimum(cap, chip.alpha_max)
        with self.blas.limit(limits=1, user_api="blas"):
            codes = fit_codes(u, np.mean(inputs ** 2, axis=0), cap, bits=self.options.bits,
                              weight_max=chip.weight_max, inputs=inputs if self.options.feedback else None)
        assignment, int_weights = _assignment(codes, chip.axon_types, copies)
        n = codes.k.shape[0]
        alpha = codes.alpha.astype(np.float64)
        bias = bu * alpha  # per input tick, in membrane units
        # T ticks of bias in all (see Biases in the module docstring); a steady lift starts at zero
        spread = -np.floor(np.maximum(-T * bias, 0.0) / R) if self.options.spread else 0.0
        leak = np.clip(np.where(bias > 0, np.rint(bias), spread), chip.leak_min, chip.leak_max)
        start = np.where(steady & (bias > 0), 0.0, np.rint(T * bias) - R * leak)
        stagger = np.tile((np.arange(copies) + 0.5) / copies, n)
        alpha_c = np.repeat(alpha, copies)
        initial = np.floor(alpha_c * stagger) + np.repeat(start, copies)
        initial = np.clip(initial, -chip.beta_max, chip.v_max)
        params = {"alpha": alpha_c, "beta": np.full(n * copies, chip.beta_max), "leak": np.repeat(leak, copies),
                  "reset_mode": np.ones(n * copies), "reset_value": np.zeros(n * copies), "initial_v": initial}
        classes = np.repeat(np.asarray(output_class, np.int64), copies)
        self.builder.add(IntLayer(name=name, layer=layer, depth=depth, sources=list(sources), weights=int_weights,
                                  params=params, output_class=classes, assignment=assignment),
                         "use more --ticks or --binarize lsq")
        self.depth[name] = depth
        simulate_new(self.chip, self.builder.groups, self.builder.lines, self.trains, self.spikes, R)
        counts = self.trains[name].sum(axis=0).astype(np.float64)
        if copies > 1:
            counts = counts.reshape(len(counts), n, copies).sum(axis=2) / copies
        self.rates[name] = counts / T


def drive_correction(w: sp.csr_matrix, deployed: np.ndarray, exact: np.ndarray, output: np.ndarray) -> np.ndarray:
    """The bias change per neuron that cancels the mean error of its drive ``w @ inputs`` when the
    inputs are the deployed values (batch, columns) instead of the float network's ``exact`` ones,
    averaged over the samples where the neuron is active in float (``output`` > 0; all samples for
    a neuron never active). Systematic errors upstream (rounding, the transients of rectified
    differences in max pooling) are then not passed on."""
    error = np.asarray(sp.csr_matrix(w) @ (deployed - exact).T).T  # (batch, neurons)
    active = output > 0
    count = active.sum(axis=0)
    mean = np.where(count > 0, (error * active).sum(axis=0) / np.maximum(count, 1), error.mean(axis=0))
    return -mean


def _select(flat_cols: list[tuple[str, int]], cols: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Source blocks (source, indices) of the chosen flat columns, in order."""
    blocks: list[tuple[str, list[int]]] = []
    for c in cols:
        s, i = flat_cols[int(c)]
        if blocks and blocks[-1][0] == s:
            blocks[-1][1].append(i)
        else:
            blocks.append((s, [i]))
    return [(s, np.asarray(idx, np.int64)) for s, idx in blocks]


def _assignment(codes: Codes, types: int, copies: int) -> tuple[TypeAssignment, sp.csr_matrix]:
    """Axon lines of a coded group, one per (column, type) some neuron uses, with every neuron
    repeated ``copies`` times; and the integer weight matrix (for the report)."""
    w = codes.pattern
    n, m = w.shape
    bits = codes.k.shape[1]
    rows = np.repeat(np.arange(n), np.diff(w.indptr))
    masks = ((codes.subset[:, None] >> np.arange(bits)[None, :]) & 1).astype(bool)  # (nnz, bits)
    e, g = np.nonzero(masks)
    key = w.indices[e].astype(np.int64) * bits + g
    lines, line_of = np.unique(key, return_inverse=True)
    r = np.repeat(line_of, copies)
    c = np.repeat(rows[e], copies) * copies + np.tile(np.arange(copies), e.size)
    synapses = sp.csr_matrix((np.ones(r.size, bool), (r, c)), shape=(lines.size, n * copies))
    weight = np.zeros((n * copies, types), np.int64)
    weight[:, :bits] = np.repeat(codes.k, copies, axis=0)
    sums = _subset_sums(codes.k.astype(np.float64))
    ints = sp.csr_matrix((sums[rows, codes.subset], w.indices, w.indptr), shape=(n, m))
    assignment = TypeAssignment(line_column=(lines // bits).astype(np.int64), line_type=(lines % bits).astype(np.int64),
                                synapses=synapses, weight=weight.astype(np.int32), scheme="rate")
    return assignment, ints

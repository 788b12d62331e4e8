"""Shared analysis of a float Network for the binarize passes.

``plan_network`` resolves the float network into the layers that become chip neuron groups:

- the input encoding: step populations whose every neuron reads one input value with a positive
  weight, ``Greater(x, t) -> Cast`` (or a 1x1 Conv with a bias per output channel, then a step: a
  thermometer code of several thresholds per value), when they are all the input feeds, ARE the
  threshold encoding: spike channel = (input value, threshold ``(t - bias) / weight``), channels
  several populations share are one; they are not deployed and their consumers read the spike
  channels;
- aliases: populations with identity activation, no bias and a pure selection (every row one entry
  equal to 1: Flatten, Reshape, Identity) are not deployed; their consumers read the source;
- the class readout: an identity output population with a fixed 0/1 matrix, every source neuron in
  at most one class and no bias, is not deployed; it sets ``output_class`` of its source neurons
  (class votes = spike counts). Any other output population is a layer whose neuron k votes for
  class k.

Every remaining population becomes a ``Layer`` whose sources are the input or other layers, with
float weight blocks already composed through the aliases, and a ``depth``: 1 + the largest depth of
its sources (the input has depth 0). Single-frame tick alignment: a layer of depth k computes on
tick k - 1 of a frame. Voting layers that no other layer reads all take the deepest voter's depth,
so that every class vote is cast on the last tick (``_align_voters``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from crossmap.errors import BinarizeError
from crossmap.ir import INPUT, Network, Population


@dataclass
class Layer:
    """A float population to deploy, its input blocks and its place in the network."""

    pop: Population
    sources: list[str]  # INPUT or layer names, one per block
    blocks: list[sp.csr_matrix]  # float weights (size, source size), one per source
    depth: int
    output_class: np.ndarray  # class vote of each neuron, -1 where none

    @property
    def name(self) -> str:
        """The population (and group) name."""
        return self.pop.name

    @property
    def size(self) -> int:
        """Number of neurons."""
        return self.pop.size

    def weight(self) -> sp.csr_matrix:
        """All input blocks side by side (size, total columns), float64."""
        if not self.blocks:
            return sp.csr_matrix((self.size, 0))
        w = sp.hstack(self.blocks, format="csr").astype(np.float64)
        w.sum_duplicates()  # canonical: sorted indices, no duplicates
        w.eliminate_zeros()
        return w

    def bias(self) -> np.ndarray:
        """The float bias (zeros when the population has none)."""
        if self.pop.bias is None:
            return np.zeros(self.size)
        return np.broadcast_to(np.asarray(self.pop.bias, np.float64).reshape(-1), (self.size,)).copy()


@dataclass
class Plan:
    """The deployable layers of a float network, in topological order."""

    layers: list[Layer]
    data_channels: int  # input spike channels (without the always-on bias channel)
    input_values: int  # values per sample (data_channels unless one value feeds several channels)
    num_classes: int
    # the model's own threshold encoding: {"threshold": t or [t...], "inclusive": b, "source": [value of
    # each spike channel] or None (channel c reads value c)}
    input_threshold: dict[str, Any] | None = None
    readout: str | None = None  # name of the readout population, if the model has one
    output: str = ""  # the layer(s) whose neurons vote (the readout's sources, comma-separated, or the output layer)
    notes: list[str] = field(default_factory=list)

    def layer(self, name: str) -> Layer:
        """The layer called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def max_depth(self) -> int:
        """Depth of the deepest layer."""
        return max((layer.depth for layer in self.layers), default=0)


def plan_network(network: Network, *, allow_logits: bool = False, method: str = "deterministic") -> Plan:
    """The deployable layers of ``network`` (see the module docstring). With ``allow_logits`` an
    output layer that is not a readout is allowed with any activation (lsq); otherwise the output
    must be a step layer or a readout of step neurons."""
    if network is None:
        raise BinarizeError("binarization needs a float network (state.network is empty); import a model "
                            "with crossmap.frontend.import_onnx first")
    pops = {p.name: p for p in network.populations}
    order = [p.name for p in network.populations]
    if INPUT not in pops:
        raise BinarizeError(f"the network has no population named {INPUT!r}; populations: {order[:8]}")
    if network.output not in pops or network.output == INPUT:
        raise BinarizeError(f"network output {network.output!r} is not a population of the network")
    consumers: dict[str, list[str]] = {name: [] for name in order}
    for proj in network.projections:
        if proj.source not in pops or proj.target not in pops:
            raise BinarizeError(f"projection {proj.source!r} -> {proj.target!r} names an unknown population")
        consumers[proj.source].append(proj.target)
        if order.index(proj.source) >= order.index(proj.target):
            raise BinarizeError(f"projection {proj.source!r} -> {proj.target!r} goes backwards (a recurrent "
                                f"network); binarization handles feed-forward networks only")
    input_values = data_channels = pops[INPUT].size
    # resolved[name] = (source, selection matrix (pop size, source size)) for non-deployed pops
    resolved: dict[str, tuple[str, sp.csr_matrix]] = {INPUT: (INPUT, sp.identity(data_channels, format="csr"))}
    encoding = _input_encoding(network, consumers)
    input_threshold = None
    if encoding is not None:
        input_threshold, selections = encoding
        data_channels = next(iter(selections.values())).shape[1]
        resolved.update({name: (INPUT, sel) for name, sel in selections.items()})
    readout = _readout(network, pops[network.output], resolved)
    layers: dict[str, Layer] = {}
    for name in order:
        if name == INPUT or name in resolved or (readout is not None and name == network.output):
            continue
        pop = pops[name]
        incoming = network.incoming(name)
        alias = _alias(pop, incoming) if name != network.output else None
        if alias is not None:
            src, sel = _resolve(incoming[0].source, resolved, layers)
            resolved[name] = (src, sp.csr_matrix(alias @ sel))
            continue
        sources: dict[str, sp.csr_matrix] = {}
        for proj in incoming:
            src, sel = _resolve(proj.source, resolved, layers)
            if method in CANONICAL_READERS and _is_identity(sel):
                block = _canonical(proj.weight)  # shared with the network: its weights are not copied
            else:
                block = sp.csr_matrix(proj.weight.astype(np.float64) @ sel)
            sources[src] = sources[src] + block if src in sources else block
        depth = 1 + max((0 if s == INPUT else layers[s].depth for s in sources), default=0)
        layers[name] = Layer(pop=pop, sources=list(sources), blocks=[sources[s].tocsr() for s in sources],
                             depth=depth, output_class=np.full(pop.size, -1, np.int64))
    if readout is not None:
        sources, num_classes = readout
        voters = []
        for source, classes in sources:
            src, sel = _resolve(source, resolved, layers)
            if src == INPUT:
                raise BinarizeError(f"readout {network.output!r} reads the input directly; a class readout must "
                                    f"read a layer of step neurons")
            if src in voters:
                raise BinarizeError(f"readout {network.output!r} reads layer {src!r} through two paths; "
                                    f"each voting layer may feed the readout once")
            layers[src].output_class = _compose_classes(classes, sel, src, network.output)
            voters.append(src)
        _align_voters([layers[v] for v in voters], layers.values())
        output_name = ",".join(voters)
    else:
        output_name = network.output
        if output_name in resolved:
            raise BinarizeError(f"network output {output_name!r} is an alias of {resolved[output_name][0]!r}; "
                                f"end the model with a layer or a class readout")
        out_layer = layers[output_name]
        out_layer.output_class = np.arange(out_layer.size, dtype=np.int64)
        num_classes = out_layer.size
        act = out_layer.pop.activation
        if not allow_logits and act != "step" and out_layer.pop.reduce != "max":
            raise BinarizeError(
                f"output layer {output_name!r} has activation {act!r}; the {method} method needs step "
                f"output neurons (Greater(x, 0) -> Cast, one or more per class followed by a 0/1 class "
                f"readout) because class votes are spike counts; end the model with a step layer, or use "
                f"--binarize lsq for float outputs")
    return Plan(layers=list(layers.values()), data_channels=data_channels, num_classes=int(num_classes),
                input_threshold=input_threshold, input_values=input_values,
                readout=network.output if readout is not None else None, output=output_name)


def _align_voters(voters: list[Layer], layers: Any) -> None:
    """Let every voting layer fire on the deepest one's tick. Class votes are spikes counted over
    the run window, and a neuron that fires with no input (a timed neuron) may fire again after
    its tick; so a shallow branch's voters (an ensemble of networks of different depths) read
    their sources later, through relays, and fire last, like the others. A voter that another
    layer reads keeps its depth (that layer reads it on its own tick)."""
    deepest = max((v.depth for v in voters), default=0)
    read = {source for layer in layers for source in layer.sources}
    for voter in voters:
        if voter.name not in read:
            voter.depth = deepest


def _resolve(name: str, resolved: dict[str, tuple[str, sp.csr_matrix]], layers: dict[str, Layer]
             ) -> tuple[str, sp.csr_matrix]:
    """(deployed source, selection matrix) of population ``name``."""
    if name in resolved:
        return resolved[name]
    if name in layers:
        return name, sp.identity(layers[name].size, format="csr")
    raise BinarizeError(f"population {name!r} is used before it is defined; the network must be in "
                        f"topological order")


# the methods that read a layer's blocks only in canonical form (Layer.weight, fan-in counts), so
# a block may be the projection's own matrix instead of its product with an identity selection
# (which holds the same entries in another order)
CANONICAL_READERS = ("deterministic", "stochastic")


def _is_identity(sel: sp.csr_matrix) -> bool:
    """Whether the selection matrix is the identity."""
    n = sel.shape[0]
    return (sel.shape == (n, n) and sel.nnz == n and np.array_equal(sel.indptr, np.arange(n + 1))
            and np.array_equal(sel.indices, np.arange(n)) and bool(np.all(sel.data == 1)))


def _canonical(weight: sp.spmatrix) -> sp.csr_matrix:
    """``weight`` as float64 CSR with sorted, distinct entries and no stored zeros: the same
    matrix (shared, not copied) when it is one already."""
    w = sp.csr_matrix(weight).astype(np.float64, copy=False)
    if not w.has_canonical_format or (w.nnz and not np.all(w.data != 0)):
        w = w.copy()
        w.sum_duplicates()
        w.eliminate_zeros()
    return w


def _is_selection(weight: sp.csr_matrix) -> bool:
    """True when every row has exactly one stored entry and it equals 1."""
    w = sp.csr_matrix(weight)
    w.eliminate_zeros()
    return bool(np.all(np.diff(w.indptr) == 1) and np.all(w.data == 1.0))


def _alias(pop: Population, incoming: list[Any]) -> sp.csr_matrix | None:
    """The selection matrix of a pass-through population, or None."""
    if pop.activation != "identity" or len(incoming) != 1 or pop.reduce not in ("sum", "max"):
        return None
    if pop.bias is not None and np.any(np.asarray(pop.bias) != 0):
        return None
    weight = sp.csr_matrix(incoming[0].weight)
    return weight if _is_selection(weight) else None


def _encoder_channels(network: Network, pop: Population) -> tuple[np.ndarray, np.ndarray] | None:
    """(input value, threshold) of each neuron of ``pop`` when it is a threshold encoder: a step
    population (not the output) whose one projection from the input gives every neuron one input
    value with a positive weight; else None."""
    incoming = network.incoming(pop.name)
    if pop.name == network.output or pop.activation != "step" or pop.reduce != "sum" or len(incoming) != 1:
        return None
    w = sp.csr_matrix(incoming[0].weight)
    w.eliminate_zeros()
    if incoming[0].source != INPUT or w.shape[0] != pop.size or not np.all(np.diff(w.indptr) == 1):
        return None
    if np.any(w.data <= 0):
        return None
    bias = np.zeros(pop.size) if pop.bias is None else np.broadcast_to(
        np.asarray(pop.bias, np.float64).reshape(-1), (pop.size,))
    thresholds = (float(pop.params.get("threshold", 0.0)) - bias) / w.data.astype(np.float64)
    return w.indices.astype(np.int64), np.asarray(thresholds, np.float64)


def _input_encoding(network: Network, consumers: dict[str, list[str]]
                    ) -> tuple[dict[str, Any], dict[str, sp.csr_matrix]] | None:
    """The threshold encoding made by the populations the input feeds, when every one of them is
    an encoder (``_encoder_channels``): ({"threshold", "inclusive", "source"}, {encoder population:
    selection (its size, spike channels)}); else None. Encoders that share a (value, threshold)
    share its spike channel; the channels are ordered by first use."""
    readers = [network.population(name) for name in consumers[INPUT]]
    channels = [_encoder_channels(network, pop) for pop in readers]
    if not readers or any(c is None for c in channels):
        return None
    inclusive = {bool(pop.params.get("inclusive", False)) for pop in readers}
    if len(inclusive) > 1:
        raise BinarizeError(f"the input feeds threshold encoders with both x > t and x >= t "
                            f"({', '.join(p.name for p in readers)}); one input encoding takes one kind of "
                            f"comparison; use Greater for every encoder (or GreaterOrEqual for every one)")
    index: dict[tuple[int, float], int] = {}
    rows = []
    for values, thresholds in channels:
        rows.append([index.setdefault((int(v), float(t)), len(index)) for v, t in zip(values, thresholds)])
    keys = list(index)
    source = np.array([v for v, _ in keys], np.int64)
    thresholds = np.array([t for _, t in keys], np.float64)
    same = np.ptp(thresholds) <= 1e-12 * max(1.0, float(np.abs(thresholds).max()))
    plain = len(keys) == network.input.size and np.array_equal(source, np.arange(len(keys)))
    spec = {"threshold": float(thresholds[0]) if same else thresholds.tolist(), "inclusive": inclusive.pop(),
            "source": None if plain else source.tolist()}
    selections = {pop.name: sp.csr_matrix((np.ones(len(r)), (np.arange(len(r)), r)), shape=(len(r), len(keys)))
                  for pop, r in zip(readers, rows)}
    return spec, selections


def _readout(network: Network, out: Population,
             resolved: dict[str, Any]) -> tuple[list[tuple[str, np.ndarray]], int] | None:
    """([(source population, class of each source neuron)], num_classes) of a class readout, or
    None. Several sources (an ensemble of separately trained copies whose voters are concatenated
    in front of one readout) add their votes."""
    incoming = network.incoming(out.name)
    if out.activation != "identity" or out.reduce != "sum" or not incoming:
        return None
    if out.bias is not None and np.any(np.asarray(out.bias) != 0):
        return None
    sources = []
    for proj in incoming:
        w = sp.csr_matrix(proj.weight).tocsc()
        w.eliminate_zeros()
        if w.nnz == 0 or np.any(w.data != 1.0) or np.any(np.diff(w.indptr) > 1):
            return None
        classes = np.full(w.shape[1], -1, np.int64)
        has = np.diff(w.indptr) == 1
        classes[has] = w.indices[w.indptr[:-1][has]]
        sources.append((proj.source, classes))
    return sources, out.size


def _compose_classes(classes: np.ndarray, sel: sp.csr_matrix, layer: str, readout: str) -> np.ndarray:
    """Classes per layer neuron, through an alias selection (alias neuron r = layer neuron col)."""
    sel = sp.csr_matrix(sel)
    out = np.full(sel.shape[1], -1, np.int64)
    rows, cols = sel.nonzero()
    for r, c in zip(rows, cols):
        if classes[r] < 0:
            continue
        if out[c] >= 0 and out[c] != classes[r]:
            raise BinarizeError(f"readout {readout!r}: neuron {int(c)} of layer {layer!r} votes for classes "
                                f"{int(out[c])} and {int(classes[r])}; each neuron may vote for one class")
        out[c] = classes[r]
    return out


# ---------------------------------------------------------------------------- integer helpers

def row_scale(values: np.ndarray, weight_max: int, tol: float) -> tuple[float, np.ndarray] | None:
    """(s, k): the largest s > 0 with values = s * k for integers |k| <= weight_max (within ``tol``
    relative to s), or None. ``values`` are the nonzero weights of one neuron."""
    a = np.abs(np.asarray(values, np.float64))
    if a.size == 0:
        return 1.0, np.zeros(0, np.int64)
    smallest, largest = a.min(), a.max()
    for q in range(1, weight_max + 1):
        s = smallest / q
        if largest / s > weight_max + tol:
            return None
        ratio = values / s
        k = np.rint(ratio)
        if np.all(np.abs(ratio - k) <= tol):
            return s, k.astype(np.int64)
    return None


def integer_threshold(v: np.ndarray, inclusive: bool, tol: float) -> np.ndarray:
    """The integer θ such that, for integer sums s, ``s > v`` (or ``s >= v`` when inclusive) iff
    s >= θ; values within ``tol`` of an integer count as that integer."""
    v = np.asarray(v, np.float64)
    k = np.rint(v)
    near = np.abs(v - k) <= tol
    exact = k if inclusive else k + 1
    return np.where(near, exact, np.ceil(v)).astype(np.int64)


def choose_encoding(plan: Plan, kind: str, *, ticks: int | None, threshold: float, seed: int,
                    method: str) -> dict[str, Any]:
    """The input encoding of a binarized network: the model's own ``Greater(x, t)`` threshold when it
    has one, else the requested kind (threshold at ``threshold``, rate with ``seed``, or spikes)."""
    from crossmap.encoding import KINDS, make_encoding

    if kind not in KINDS:
        raise BinarizeError(f"binarize_{method}: unknown encoding {kind!r}; choose one of {', '.join(KINDS)}")
    if ticks is not None and ticks < 1:
        raise BinarizeError(f"binarize_{method}: ticks = {ticks} must be at least 1")
    channels = plan.input_values
    if plan.input_threshold is not None:
        if kind != "threshold":
            raise BinarizeError(f"the model thresholds its input itself (Greater(x, t) on the input), which is "
                                f"the threshold encoding; encoding {kind!r} would change what the model "
                                f"computes; use encoding=threshold (the default) or remove that layer")
        return make_encoding("threshold", channels=channels, ticks=ticks,
                             threshold=plan.input_threshold["threshold"],
                             inclusive=plan.input_threshold["inclusive"],
                             source=plan.input_threshold.get("source"))
    return make_encoding(kind, channels=channels, ticks=ticks, threshold=threshold, seed=seed)

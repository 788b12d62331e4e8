"""The float network IR that the ONNX frontend produces: neuron populations joined by sparse
projections. Convolutions and pooling are already lowered to explicit connectivity.

A population's value is ``activation(reduce over incoming projections (W @ source) + bias)``,
where ``reduce`` is ``sum`` for ordinary layers and ``max`` for max pooling (then each target
neuron takes the max over its connected sources of ``w * x``). The network input is the
population named ``input``.

Conventions the frontend guarantees (``crossmap.frontend.import_onnx``):

- A population's neurons are in ONNX's flattened (C, H, W) order of the tensor it computes, so
  ``shape`` is that tensor's per-sample shape (the batch axis is never part of it).
- ``params`` hold floats; the one exception is ``leaky_relu``'s ``alpha``, which is an array of
  length ``size`` when it came from a PRelu with a per-channel slope.
- ``bias`` is a float64 array of length ``size`` (or None for the input).
- Softmax, LogSoftmax and ArgMax at the model's output are not populations: they are listed in
  ``metadata["output_ops"]`` and replayed by ``Network.apply_output_ops``; the predicted class is
  the argmax of the output population either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from crossmap.errors import InputError

INPUT = "input"

ACTIVATIONS = {
    "identity": (),
    "relu": (),
    "leaky_relu": ("alpha",),
    "sigmoid": (),
    "hard_sigmoid": ("alpha", "beta"),
    "tanh": (),
    "sign": (),
    "clip": ("min", "max"),
    # step: 1 where x > threshold (or >= when inclusive), else 0
    "step": ("threshold", "inclusive"),
}


def apply_activation(kind: str, x: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """The activation ``kind`` (one of ``ACTIVATIONS``) applied elementwise."""
    if kind == "identity":
        return x
    if kind == "relu":
        return np.maximum(x, 0)
    if kind == "leaky_relu":
        return np.where(x >= 0, x, x * params["alpha"])
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if kind == "hard_sigmoid":
        return np.clip(params["alpha"] * x + params["beta"], 0, 1)
    if kind == "tanh":
        return np.tanh(x)
    if kind == "sign":
        return np.sign(x)
    if kind == "clip":
        return np.clip(x, params.get("min", -np.inf), params.get("max", np.inf))
    if kind == "step":
        hit = x >= params["threshold"] if params.get("inclusive", False) else x > params["threshold"]
        return hit.astype(x.dtype)
    raise ValueError(f"unknown activation {kind!r}; known: {sorted(ACTIVATIONS)}")


@dataclass
class Population:
    """A layer of float neurons with a per-sample ``shape`` (e.g. (C, H, W) or (n,))."""

    name: str
    shape: tuple[int, ...]
    activation: str = "identity"
    params: dict[str, Any] = field(default_factory=dict)
    bias: np.ndarray | None = None
    reduce: str = "sum"
    source_nodes: list[str] = field(default_factory=list)  # ONNX nodes it came from

    @property
    def size(self) -> int:
        """Number of neurons."""
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass
class Projection:
    """Sparse weights from ``source`` to ``target``: a scipy CSR matrix of shape
    (target.size, source.size)."""

    source: str
    target: str
    weight: sp.csr_matrix

    @property
    def synapses(self) -> int:
        """Number of stored connections."""
        return int(self.weight.nnz)


@dataclass
class Network:
    """Populations in topological order (the first is ``input``), projections, and the output."""

    populations: list[Population]
    projections: list[Projection]
    output: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def population(self, name: str) -> Population:
        """The population called ``name``."""
        for pop in self.populations:
            if pop.name == name:
                return pop
        raise KeyError(name)

    @property
    def input(self) -> Population:
        """The input population."""
        return self.population(INPUT)

    @property
    def layers(self) -> list[Population]:
        """Every population but the input, in topological order."""
        return [p for p in self.populations if p.name != INPUT]

    @property
    def neurons(self) -> int:
        """Number of neurons outside the input population."""
        return sum(p.size for p in self.layers)

    @property
    def synapses(self) -> int:
        """Number of stored connections over all projections."""
        return sum(p.synapses for p in self.projections)

    def incoming(self, name: str) -> list[Projection]:
        """Projections whose target is ``name``."""
        return [p for p in self.projections if p.target == name]

    def outgoing(self, name: str) -> list[Projection]:
        """Projections whose source is ``name``."""
        return [p for p in self.projections if p.source == name]

    def fan_in(self, name: str) -> np.ndarray:
        """Per neuron of population ``name``: number of incoming synapses over all projections."""
        counts = np.zeros(self.population(name).size, dtype=np.int64)
        for proj in self.incoming(name):
            counts += np.diff(proj.weight.indptr)
        return counts

    def fan_out(self, name: str) -> np.ndarray:
        """Per neuron of population ``name``: number of outgoing synapses over all projections."""
        counts = np.zeros(self.population(name).size, dtype=np.int64)
        for proj in self.outgoing(name):
            counts += np.bincount(proj.weight.indices, minlength=counts.size)
        return counts

    def validate(self) -> None:
        """Check the IR's invariants (names, order, matrix shapes, activations); raise ValueError."""
        names = [p.name for p in self.populations]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate population names in {names}")
        if not names or names[0] != INPUT:
            raise ValueError(f"the first population must be {INPUT!r}, got {names[:1]}")
        position = {n: i for i, n in enumerate(names)}
        if self.output not in position:
            raise ValueError(f"output {self.output!r} is not a population")
        for pop in self.populations:
            if pop.activation not in ACTIVATIONS:
                raise ValueError(f"population {pop.name!r}: unknown activation {pop.activation!r}")
            missing = [k for k in ACTIVATIONS[pop.activation] if k not in pop.params and pop.activation != "clip"]
            if missing:
                raise ValueError(f"population {pop.name!r}: activation {pop.activation} lacks {missing}")
            if pop.reduce not in ("sum", "max"):
                raise ValueError(f"population {pop.name!r}: reduce must be sum or max, got {pop.reduce!r}")
            if pop.bias is not None and np.shape(pop.bias) != (pop.size,):
                raise ValueError(f"population {pop.name!r}: bias shape {np.shape(pop.bias)} != ({pop.size},)")
        for proj in self.projections:
            if proj.source not in position or proj.target not in position:
                raise ValueError(f"projection {proj.source!r}->{proj.target!r} names a missing population")
            if position[proj.source] >= position[proj.target]:
                raise ValueError(f"projection {proj.source!r}->{proj.target!r} goes against topological order")
            want = (self.population(proj.target).size, self.population(proj.source).size)
            if not sp.isspmatrix_csr(proj.weight) or proj.weight.shape != want:
                raise ValueError(f"projection {proj.source!r}->{proj.target!r}: weight must be CSR of shape "
                                 f"{want}, got {type(proj.weight).__name__} {proj.weight.shape}")
            if proj.target == INPUT:
                raise ValueError("the input population cannot have incoming projections")

    def evaluate(self, x: np.ndarray, keep: bool = False) -> Any:
        """Run the network in float64 on ``x`` of shape (batch, *input shape) or (batch, input size).
        Returns the output population's values (batch, size), or with ``keep`` a dict of every
        population's values."""
        x = np.asarray(x, dtype=np.float64)
        shape = tuple(self.input.shape)
        if x.ndim < 2 or (x.shape[1:] != shape and x.shape[1:] != (self.input.size,)):
            raise InputError(f"network input: got an array of shape {x.shape}, needed (batch, "
                             f"{', '.join(map(str, shape))}) or (batch, {self.input.size}); reshape the "
                             f"samples to the model's input shape")
        batch = x.shape[0]
        values: dict[str, np.ndarray] = {INPUT: x.reshape(batch, -1)}
        for pop in self.populations:
            if pop.name == INPUT:
                continue
            values[pop.name] = self.evaluate_population(pop, values)
        if keep:
            return values
        return values[self.output]

    def evaluate_population(self, pop: Population, values: dict[str, np.ndarray]) -> np.ndarray:
        """One population's values given those of its sources (batch, size)."""
        batch = next(iter(values.values())).shape[0]
        projections = self.incoming(pop.name)
        if pop.reduce == "max":
            acc = np.full((batch, pop.size), -np.inf)
            for proj in projections:
                acc = np.maximum(acc, _sparse_max(proj.weight, values[proj.source]))
        else:
            acc = np.zeros((batch, pop.size))
            for proj in projections:
                acc = acc + np.asarray(proj.weight @ values[proj.source].T).T
        if pop.bias is not None:
            acc = acc + pop.bias
        return apply_activation(pop.activation, acc, pop.params)

    def apply_output_ops(self, y: np.ndarray) -> np.ndarray:
        """Replay the output ops the frontend dropped (``metadata["output_ops"]``: Softmax,
        LogSoftmax, ArgMax over the whole sample) on output values ``y`` (batch, size), giving the
        original model's output (flattened per sample; ArgMax gives (batch,) class indices)."""
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        for op in self.metadata.get("output_ops", []):
            kind = op["op"]
            if kind == "ArgMax":
                if op.get("select_last_index"):
                    y = y.shape[1] - 1 - np.argmax(y[:, ::-1], axis=1)
                else:
                    y = np.argmax(y, axis=1)
                y = y.reshape(len(y), 1)
                continue
            shifted = y - y.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            y = shifted - log_norm if kind == "LogSoftmax" else np.exp(shifted - log_norm)
        ops = self.metadata.get("output_ops", [])
        return y[:, 0] if ops and ops[-1]["op"] == "ArgMax" else y

def _sparse_max(weight: sp.csr_matrix, x: np.ndarray) -> np.ndarray:
    """For each row r of ``weight``: max over its stored entries (r, c) of w * x[:, c]."""
    coo = weight.tocoo()
    products = x[:, coo.col] * coo.data  # (batch, nnz)
    out = np.full((x.shape[0], weight.shape[0]), -np.inf)
    order = np.argsort(coo.row, kind="stable")
    rows = coo.row[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if rows.size else np.zeros(0, int)
    if rows.size:
        out[:, rows[starts]] = np.maximum.reduceat(products[:, order], starts, axis=1)
    return out

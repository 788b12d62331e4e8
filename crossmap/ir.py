"""The float network IR that the ONNX frontend produces: neuron populations joined by sparse
projections. Convolutions and pooling are already lowered to explicit connectivity.

A population's value is ``activation(reduce over incoming projections (W @ source) + bias)``,
where ``reduce`` is ``sum`` for ordinary layers and ``max`` for max pooling (then each target
neuron takes the max over its connected sources of ``w * x``). The network input is the
population named ``input``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

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

    def incoming(self, name: str) -> list[Projection]:
        """Projections whose target is ``name``."""
        return [p for p in self.projections if p.target == name]

    def outgoing(self, name: str) -> list[Projection]:
        """Projections whose source is ``name``."""
        return [p for p in self.projections if p.source == name]

    def evaluate(self, x: np.ndarray, keep: bool = False) -> Any:
        """Run the network in float64 on ``x`` of shape (batch, *input shape). Returns the output
        population's values (batch, size), or with ``keep`` a dict of every population's values."""
        x = np.asarray(x, dtype=np.float64)
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

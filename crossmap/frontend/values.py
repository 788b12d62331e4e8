"""What an ONNX tensor is while the frontend walks the graph.

- ``Const``: a value known at import time (initializers, Constant nodes, folded subgraphs). When
  the batch is dynamic, a constant computed from ``Shape`` of a network tensor depends on the batch
  size; it then carries ``alt``, its value for a second batch size, so that uses can be checked.
- ``Affine``: a per-sample affine function of populations, ``sum_k terms[k] @ pop_k + bias``, in
  the flattened order of the tensor's per-sample ``shape``. Linear ONNX ops (Gemm, Conv, BN,
  reshapes, scaling by constants) only change the terms; nonlinear ones turn it into a population.
- ``Condition``: the boolean ``affine > threshold`` (``>=`` when inclusive), which becomes a step
  population when cast to float.
- ``Poison``: the output of a node that could not be lowered (already reported).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


class Unsupported(Exception):
    """Raised by an op handler: this node cannot be lowered, for the reason given."""


@dataclass
class Const:
    """A tensor known at import time; ``alt`` is its value for the second batch size, if it
    depends on the batch."""

    value: np.ndarray
    alt: np.ndarray | None = None

    def fixed(self, what: str) -> np.ndarray:
        """The value, or ``Unsupported`` when it depends on the batch size."""
        if self.alt is not None:
            raise Unsupported(f"{what} depends on the batch size")
        return self.value


@dataclass
class Affine:
    """``sum_k terms[k] @ values(pop_k) + bias`` for every sample, shape (size,) per sample."""

    shape: tuple[int, ...]
    terms: dict[str, sp.csr_matrix]
    bias: np.ndarray
    nodes: list[str] = field(default_factory=list)  # ONNX nodes folded in since the last population
    origin: str | None = None  # the first weight node (Gemm, Conv, ...) folded in, names the layer

    @classmethod
    def of_population(cls, name: str, shape: tuple[int, ...]) -> "Affine":
        """The values of population ``name`` itself."""
        size = int(np.prod(shape, dtype=np.int64))
        return cls(tuple(shape), {name: sp.identity(size, format="csr")}, np.zeros(size))

    @property
    def size(self) -> int:
        """Number of elements per sample."""
        return int(self.bias.size)

    def population(self) -> str | None:
        """The population this is exactly equal to (identity, no bias), else None."""
        if len(self.terms) != 1 or np.any(self.bias):
            return None
        (name, w), = self.terms.items()
        if w.shape[0] != w.shape[1] or w.nnz != w.shape[0]:
            return None
        coo = w.tocoo()
        return name if np.all(coo.row == coo.col) and np.all(coo.data == 1) else None

    def is_selection(self) -> bool:
        """True when every element reads at most one source neuron per term (a scaled selection),
        so composing a weight layer with it cannot make the weights denser."""
        return all(np.all(np.diff(w.indptr) <= 1) for w in self.terms.values())

    def with_nodes(self, *names: str) -> "Affine":
        """The same function with ``names`` added to its node history."""
        nodes = list(self.nodes)
        for name in names:
            nodes = _append(nodes, name)
        return Affine(self.shape, self.terms, self.bias, nodes, self.origin)

    def linear(self, weight: sp.spmatrix, bias: np.ndarray | float, shape: tuple[int, ...], node: str,
               origin: str | None = None) -> "Affine":
        """``weight @ self + bias`` with the new per-sample ``shape``."""
        weight = sp.csr_matrix(weight)
        terms = {k: _clean(weight @ w) for k, w in self.terms.items()}
        new_bias = np.asarray(weight @ self.bias, dtype=np.float64) + np.broadcast_to(bias, (weight.shape[0],))
        return Affine(tuple(shape), terms, new_bias, _append(self.nodes, node), self.origin or origin)

    def scale(self, factor: np.ndarray | float, node: str) -> "Affine":
        """Elementwise ``factor * self`` (factor broadcast to (size,))."""
        factor = np.broadcast_to(np.asarray(factor, dtype=np.float64), (self.size,))
        diag = sp.diags(factor, format="csr")
        terms = {k: _clean(diag @ w) for k, w in self.terms.items()}
        return Affine(self.shape, terms, factor * self.bias, _append(self.nodes, node), self.origin)

    def shift(self, offset: np.ndarray | float, node: str) -> "Affine":
        """Elementwise ``self + offset``."""
        return Affine(self.shape, self.terms, self.bias + offset, _append(self.nodes, node), self.origin)

    def plus(self, other: "Affine", node: str) -> "Affine":
        """``self + other`` (same shape)."""
        terms = dict(self.terms)
        for k, w in other.terms.items():
            terms[k] = _clean(terms[k] + w) if k in terms else w
        nodes = _append(self.nodes + [n for n in other.nodes if n not in self.nodes], node)
        return Affine(self.shape, terms, self.bias + other.bias, nodes, self.origin or other.origin)

    def rows(self, index: np.ndarray, shape: tuple[int, ...], node: str) -> "Affine":
        """Element ``i`` of the result is element ``index[i]`` of ``self``."""
        select = sp.csr_matrix((np.ones(index.size), (np.arange(index.size), index)), shape=(index.size, self.size))
        terms = {k: _clean(select @ w) for k, w in self.terms.items()}
        return Affine(tuple(shape), terms, self.bias[index], _append(self.nodes, node), self.origin)


@dataclass
class Condition:
    """The boolean tensor ``affine > threshold`` (``>=`` when ``inclusive``), per element."""

    affine: Affine
    threshold: np.ndarray
    inclusive: bool
    nodes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-sample shape."""
        return self.affine.shape


class Poison:
    """The output of a node that could not be lowered; nodes reading it are skipped."""


def _clean(matrix: sp.spmatrix) -> sp.csr_matrix:
    """CSR with explicit zeros dropped and duplicate entries summed."""
    matrix = sp.csr_matrix(matrix)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return matrix


def _append(nodes: list[str], node: str) -> list[str]:
    """``nodes`` with ``node`` at the end, unless it is empty or already there."""
    return nodes + [node] if node and node not in nodes else list(nodes)

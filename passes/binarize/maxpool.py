"""Max pooling as ReLU layers, for rate coding: max over a window is a sum of rectified differences.

For a window whose terms are t_1..t_K (``w * x`` of the pooled neurons), the running maximum
m_1 = t_1, m_k = m_{k-1} + relu(t_k - m_{k-1}) gives max = t_1 + r_2 + ... + r_K with
r_k = relu(t_k - t_1 - r_2 - ... - r_{k-1}). ``expand_max_pools`` replaces every max-reduce
population by K - 1 ReLU populations (one r_k per window each) and an identity population that
adds t_1, the r_k and the pool's bias, so a network with max pooling becomes one of sums and ReLUs,
exactly equal in float.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from crossmap.ir import Network, Population, Projection


def expand_max_pools(network: Network) -> Network:
    """The network with every max-pooling population expanded (the same object if it has none)."""
    if not any(p.reduce == "max" for p in network.populations):
        return network
    pops: list[Population] = []
    projs: list[Projection] = []
    for pop in network.populations:
        incoming = network.incoming(pop.name)
        if pop.reduce != "max":
            pops.append(pop)
            projs.extend(incoming)
            continue
        terms = _window_terms(pop, incoming)
        width = max(len(t) for t in terms)
        n = pop.size
        stages: list[str] = []
        for k in range(1, width):
            name = f"{pop.name}/max{k}"
            blocks: dict[str, list[tuple[int, int, float]]] = {}
            for row, window in enumerate(terms):
                if k >= len(window):
                    continue
                (s1, c1, w1), (sk, ck, wk) = window[0], window[k]
                blocks.setdefault(sk, []).append((row, ck, wk))
                blocks.setdefault(s1, []).append((row, c1, -w1))
            for earlier in stages:
                blocks.setdefault(earlier, []).extend((row, row, -1.0) for row in range(n))
            pops.append(Population(name, pop.shape, "relu", {}, np.zeros(n), "sum", list(pop.source_nodes)))
            projs.extend(_projections(blocks, name, network, n, stages, pop.shape))
            stages.append(name)
        blocks = {}
        for row, window in enumerate(terms):
            s1, c1, w1 = window[0]
            blocks.setdefault(s1, []).append((row, c1, w1))
        for earlier in stages:
            blocks.setdefault(earlier, []).extend((row, row, 1.0) for row in range(n))
        pops.append(Population(pop.name, pop.shape, pop.activation, dict(pop.params),
                               None if pop.bias is None else np.asarray(pop.bias, np.float64).copy(), "sum",
                               list(pop.source_nodes)))
        projs.extend(_projections(blocks, pop.name, network, n, stages, pop.shape))
    out = Network(populations=pops, projections=projs, output=network.output, metadata=dict(network.metadata))
    out.validate()
    return out


def _window_terms(pop: Population, incoming: list[Projection]) -> list[list[tuple[str, int, float]]]:
    """Per pooled neuron, its terms (source, index, weight) in a fixed order."""
    terms: list[list[tuple[str, int, float]]] = [[] for _ in range(pop.size)]
    for proj in incoming:
        w = sp.csr_matrix(proj.weight)
        for row in range(w.shape[0]):
            for c, v in zip(w.indices[w.indptr[row]:w.indptr[row + 1]], w.data[w.indptr[row]:w.indptr[row + 1]]):
                terms[row].append((proj.source, int(c), float(v)))
    return terms


def _projections(blocks: dict[str, list[tuple[int, int, float]]], target: str, network: Network, n: int,
                 stages: list[str], shape: tuple[int, ...]) -> list[Projection]:
    """One CSR projection per source of the entries (row, column, weight)."""
    out = []
    for source, entries in blocks.items():
        size = n if source in stages else network.population(source).size
        rows, cols, vals = (np.array(v) for v in zip(*entries))
        w = sp.csr_matrix((vals.astype(np.float64), (rows.astype(np.int64), cols.astype(np.int64))), shape=(n, size))
        w.sum_duplicates()
        out.append(Projection(source, target, w))
    return out

"""Axon keys of a deployed network: what each chip neuron reads, as sets of global axon keys.

An axon carries the spikes of one source (an input channel or a neuron) with one axon type. Its
*key* is an integer that names (source, type, multiplicity): ``(source_id * G + type) * M + m``.
``source_id`` is the input channel for inputs and ``num_inputs + offset[group] + neuron`` for
neurons. ``m`` > 0 only when one target neuron reads the same (source, type) through several lines
(the deployed IR adds the weight once per line, a crossbar adds it once per axon, so each repeat
needs its own axon). Neurons on one core that read the same key share one axon.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from crossmap.deployed import INPUT, DeployedNetwork, Lines
from crossmap.errors import UnsupportedModelError
from crossmap.passes.partition.unique import unique_inverse


@dataclass
class KeySpace:
    """How keys are numbered for one deployed network."""

    num_inputs: int
    axon_types: int
    multiplicity: int  # M: 1 + the largest repeat index m
    offsets: np.ndarray  # first source id of each group

    def source_of(self, keys: np.ndarray) -> np.ndarray:
        """Source ids of keys."""
        return np.asarray(keys, np.int64) // (self.axon_types * self.multiplicity)

    def type_of(self, keys: np.ndarray) -> np.ndarray:
        """Axon types of keys."""
        return (np.asarray(keys, np.int64) // self.multiplicity) % self.axon_types


@dataclass
class GroupKeys:
    """The axon keys each neuron of one group reads: ``reads`` is a bool CSR matrix
    (neurons x local keys) and ``keys[local]`` the global key of each column."""

    group: int
    reads: sp.csr_matrix
    keys: np.ndarray

    @property
    def fan_in(self) -> np.ndarray:
        """Distinct axons each neuron needs."""
        return np.diff(self.reads.indptr)


def topological_groups(net: DeployedNetwork) -> list[int]:
    """Group indices in an order where every group comes after the groups that feed it.
    Raises ``UnsupportedModelError`` for recurrent networks."""
    import networkx as nx

    index = net.group_index()
    graph = nx.DiGraph()
    graph.add_nodes_from(range(len(net.groups)))
    for lines in net.lines:
        if lines.source != INPUT and lines.num_lines:
            graph.add_edge(index[lines.source], index[lines.target])
    if not nx.is_directed_acyclic_graph(graph):
        cycle = [net.groups[u].name for u, _ in nx.find_cycle(graph)]
        raise UnsupportedModelError(f"the deployed network is recurrent (groups {cycle} form a cycle); the "
                                    f"partition pass needs a feed-forward network, so its layers can be cut "
                                    f"from the outputs backwards. Remove the recurrent connection")
    return list(nx.lexicographical_topological_sort(graph))


def group_keys(net: DeployedNetwork) -> tuple[KeySpace, list[GroupKeys]]:
    """The key space of ``net`` and, per group, the keys each neuron reads.

    Groups are keyed one at a time, so only one group's synapse lists are held in int64 at once.
    A group's keys are numbered with its own multiplicity first: ``base * m + repeat`` orders keys
    the same for every ``m`` above the largest repeat, so the local columns do not change when
    the keys are renumbered with the network's multiplicity at the end."""
    G = net.chip.axon_types
    index = net.group_index()
    sizes = np.array([g.size for g in net.groups], np.int64)
    offsets = net.num_inputs + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    into: list[list[Lines]] = [[] for _ in net.groups]
    for lines in net.lines:
        into[index[lines.target]].append(lines)
    local: list[tuple[sp.csr_matrix, np.ndarray, int]] = []
    mult = 1
    for gi, group_lines in enumerate(into):
        cols, base, plain = _group_reads(group_lines, offsets, index, G)
        if plain:
            group_mult, key = 1, base
        else:
            rep = _repeat_index(cols, base)
            group_mult = 1 + int(rep.max()) if rep.size else 1
            key = base * group_mult + rep
            del rep
        del base
        uniq, column = unique_inverse(key)
        reads = sp.csr_matrix((np.ones(key.size, bool), (cols, column.reshape(-1))),
                              shape=(net.groups[gi].size, uniq.size))
        del key, cols, column
        reads.sum_duplicates()
        reads.sort_indices()
        local.append((reads, uniq.astype(np.int64), group_mult))
        mult = max(mult, group_mult)
    space = KeySpace(num_inputs=net.num_inputs, axon_types=G, multiplicity=mult, offsets=offsets)
    result = [GroupKeys(group=gi, reads=reads, keys=(uniq // m) * mult + uniq % m if m != mult else uniq)
              for gi, (reads, uniq, m) in enumerate(local)]
    return space, result


def _group_reads(group_lines: list[Lines], offsets: np.ndarray, index: dict[str, int],
                 axon_types: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """The (target neuron, source * axon_types + type) pair of every synapse into one group, and
    whether no pair can repeat (see ``_distinct_lines``)."""
    cols_parts, base_parts = [], []
    sources: list[str] = []
    plain = True
    for lines in group_lines:
        rows, cols = lines.connected()
        if lines.source == INPUT:
            source = lines.source_index.astype(np.int64)
        else:
            source = offsets[index[lines.source]] + lines.source_index.astype(np.int64)
        base_parts.append(source[rows] * axon_types + lines.axon_type.astype(np.int64)[rows])
        cols_parts.append(cols.astype(np.int64))
        plain = plain and lines.source not in sources and _distinct_lines(lines, axon_types)
        sources.append(lines.source)
    if not cols_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), True
    return np.concatenate(cols_parts), np.concatenate(base_parts), plain


def _distinct_lines(lines: Lines, axon_types: int) -> bool:
    """True when no target neuron can read one (source, type) twice through ``lines``: its lines
    are distinct (source, type) pairs and no synapse is listed twice (so ``_repeat_index`` of its
    reads is all zeros and need not be sorted out)."""
    if not getattr(lines.synapses, "has_canonical_format", False):
        return False
    pair = lines.source_index.astype(np.int64) * axon_types + lines.axon_type.astype(np.int64)
    return np.unique(pair).size == pair.size


def _repeat_index(cols: np.ndarray, base: np.ndarray) -> np.ndarray:
    """For each (target neuron, base key) pair, how many equal pairs come before it (0, 1, ...)."""
    if cols.size == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((base, cols))
    c, b = cols[order], base[order]
    start = np.r_[True, (c[1:] != c[:-1]) | (b[1:] != b[:-1])]
    run_start = np.maximum.accumulate(np.where(start, np.arange(c.size), 0))
    rep = np.empty(c.size, np.int64)
    rep[order] = np.arange(c.size) - run_start
    return rep

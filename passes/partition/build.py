"""From a partition plan to a validated Program and its logical core graph.

Cores are numbered in the network's topological order (a splitter-only core after the cores of
its source group); axons of a core are its keys in ascending order, then its splitter axons;
neuron slots hold the group members (group order, neuron order, copies adjacent), then splitter
neurons. Each chip instance of a deployed neuron takes one role: an output port, one target axon
(direct), or one splitter set. Delays come from the group shifts (``timing.py``).

The core graph: node = core index with attributes ``layer`` (layers on the core joined by "+",
"splitters" for a splitter-only core), ``groups``, ``neurons`` and ``axons`` (slots taken),
``used_neurons``, ``synapses``, ``input_traffic`` (expected input spikes per sample on its axons),
``local_traffic`` and ``local_routes`` (spikes a core sends to its own axons); edge u -> v with
``traffic`` (expected spikes per sample from u to v) and ``routes`` (neuron -> axon routes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from crossmap.chip import check_fits
from crossmap.deployed import DeployedNetwork, NeuronGroup
from crossmap.errors import ResourceError
from crossmap.passes.partition.keys import GroupKeys, KeySpace
from crossmap.passes.partition.pack import gather_columns
from crossmap.passes.partition.plan import Plan
from crossmap.passes.partition.wiring import (Instances, Wiring, assign_jobs, instance_arrays,
                                              neuron_jobs, readers_of, solve_shifts, wire)
from crossmap.program import Program


@dataclass
class Built:
    """The program, the core graph, and the figures the report needs."""

    program: Program
    graph: nx.DiGraph
    shifts: list[int]
    output_shift: int
    copies: int
    splitter_neurons: int
    delays_changed: int
    traffic: float


def build_program(net: DeployedNetwork, plan: Plan, space: KeySpace, keys: list[GroupKeys], topo: list[int],
                  rates: dict[str, np.ndarray], input_rate: np.ndarray, input_fed: set[int]) -> Built:
    """Lay out ``plan`` as a Program (provisional row-major coordinates) and its core graph."""
    chip = net.chip
    check_fits(chip, len(plan.cores), stage="partition")
    pos = {g: i for i, g in enumerate(topo)}
    final = _core_order(plan, pos)
    readers = readers_of(plan, keys)  # what needs only the plan comes before the program's arrays exist
    jobs = neuron_jobs(net, plan, space, plan.demand_arrays())
    shifts = solve_shifts(net, plan, space, jobs, readers, input_fed)
    prog = Program.empty(chip, len(final), num_inputs=net.num_inputs, num_classes=net.num_classes,
                         input_ticks=net.input_ticks, encoding=dict(net.encoding),
                         group_names=[g.name for g in net.groups])
    core_keys = {old: np.array(sorted(plan.cores[old].keys), np.int64) for old in final}
    instances, split_slot = _fill_cores(prog, net, plan, space, keys, final, core_keys, pos)
    split_axon = {s: len(core_keys[plan.splits[s].core]) + plan.cores[plan.splits[s].core].splitters.index(s)
                  for s in range(len(plan.splits))}
    _input_map(prog, space, final, core_keys)
    assigned = assign_jobs(instances, jobs)
    graph = _empty_graph(prog, plan, net, final, core_keys, space, input_rate)
    where = np.empty(len(final), np.int64)
    where[np.asarray(final, np.int64)] = np.arange(len(final))
    wiring = wire(net, plan, space, topo, instances, jobs, assigned, readers, shifts, where, core_keys, split_slot,
                  split_axon, rates)
    _write_wiring(prog, graph, wiring)
    out_groups = [i for i, g in enumerate(net.groups) if (g.output_class >= 0).any()]
    output_shift = shifts[out_groups[0]] if out_groups else 0
    prog.latency = int(net.latency()) + int(output_shift)
    prog.core_labels = [_label(net, plan.cores[old]) for old in final]
    prog.validate()
    traffic = float(sum(d["traffic"] for _, _, d in graph.edges(data=True)) +
                    sum(d["local_traffic"] for _, d in graph.nodes(data=True)))
    return Built(program=prog, graph=graph, shifts=shifts, output_shift=int(output_shift), copies=wiring.copies,
                 splitter_neurons=wiring.splitter_neurons, delays_changed=wiring.delays_changed, traffic=traffic)


def _core_order(plan: Plan, pos: dict[int, int]) -> list[int]:
    def key(c: int) -> tuple[int, int, int]:
        core = plan.cores[c]
        if core.members:
            return (min(pos[g] for g, _, _ in core.members), 0, c)
        return (min(pos[plan.splits[s].group] for s in core.splitters), 1, c)

    return sorted(range(len(plan.cores)), key=key)


def _fill_cores(prog: Program, net: DeployedNetwork, plan: Plan, space: KeySpace, keys: list[GroupKeys],
                final: list[int], core_keys: dict[int, np.ndarray], pos: dict[int, int]
                ) -> tuple[Instances, dict[int, tuple[int, int]]]:
    """Crossbars, axon types and neuron parameters; returns every neuron's instances (in core
    order, each with the reader core it is aimed at or -1) and the (core, first slot) of each
    splitter set."""
    chip = net.chip
    split_slot: dict[int, tuple[int, int]] = {}
    placed: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # runs of members
    runs: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}  # group -> (core, slots, neurons) per run
    for fc, old in enumerate(final):
        core = plan.cores[old]
        ck = core_keys[old]
        prog.axon_type[fc, :ck.size] = space.type_of(ck)
        members = core.members
        aimed = core.aims if len(core.aims) == len(members) else [-1] * len(members)
        order = sorted(range(len(members)), key=lambda i: (pos[members[i][0]], members[i][1]))
        slot, start = 0, 0
        while start < len(order):  # one run of members of one group at a time
            g = members[order[start]][0]
            end = start
            while end < len(order) and members[order[end]][0] == g:
                end += 1
            run = order[start:end]
            neurons = np.array([members[i][1] for i in run], np.int64)
            counts = np.array([members[i][2] for i in run], np.int64)
            first = slot + np.cumsum(counts) - counts  # each member's first slot
            runs.setdefault(g, []).append((fc, *_fill_run(prog, fc, keys[g], ck, neurons, counts, first)))
            placed.append((g, fc, neurons, counts, first, np.array([aimed[i] for i in run], np.int64)))
            slot += int(counts.sum())
            start = end
        for i, s in enumerate(core.splitters):
            size = len(plan.splits[s].targets)
            axon, span = ck.size + i, slice(slot, slot + size)
            prog.crossbar[fc, axon, span] = True
            prog.axon_type[fc, axon] = 0
            prog.weight[fc, span, 0] = _splitter_weight(chip)
            prog.alpha[fc, span] = chip.alpha_min
            split_slot[s] = (fc, slot)
            slot += size
    for g, group_runs in runs.items():
        _write_group(prog, net.groups[g], g, group_runs)
    return instance_arrays(placed, space.offsets), split_slot


def _fill_run(prog: Program, fc: int, gk: GroupKeys, ck: np.ndarray, neurons: np.ndarray, counts: np.ndarray,
              first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put ``counts[k]`` adjacent instances of neuron ``neurons[k]`` from slot ``first[k]`` on
    core ``fc`` (axon keys ``ck``): set their crossbar bits now (a run's bits are many; they are
    not kept) and return the run's slots and the neuron of each slot."""
    slots = np.arange(int(counts.sum())) + (int(first[0]) if first.size else 0)  # the run's slots, adjacent
    per = np.repeat(neurons, counts)  # the neuron of each slot
    indptr = gk.reads.indptr  # not converted: a copy would cost the whole group's synapses per core
    lengths = (indptr[neurons + 1] - indptr[neurons]).astype(np.int64)
    axons = np.searchsorted(ck, gk.keys[gather_columns(indptr, gk.reads.indices, neurons)])
    owner = np.repeat(np.arange(neurons.size), lengths)  # the member of each (member, axon) entry
    times = counts[owner]
    entry_slot = np.repeat(first[owner], times) + (np.arange(int(times.sum())) - np.repeat(np.cumsum(times) - times,
                                                                                             times))
    bits = prog.crossbar[fc].reshape(-1)  # a view of the core's crossbar, axon-major
    bits[np.repeat(axons, times) * prog.crossbar.shape[2] + entry_slot] = True
    return slots, per


NEURON_FIELDS = ("weight", "stochastic_synapse", "alpha", "beta", "leak", "reset_mode", "reset_value", "initial_v",
                 "threshold_mask")


def _write_group(prog: Program, group: NeuronGroup, g: int, runs: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
    """Write the weights and parameters of every slot of group ``g``'s runs (core, slots, the
    neuron of each slot) into ``prog`` at once."""
    cores = np.concatenate([np.full(slots.size, fc, np.int64) for fc, slots, _ in runs])
    slots = np.concatenate([slots for _, slots, _ in runs])
    per = np.concatenate([neurons for _, _, neurons in runs])
    for name in NEURON_FIELDS:
        getattr(prog, name)[cores, slots] = getattr(group, name)[per]
    prog.neuron_group[cores, slots] = g
    prog.neuron_index[cores, slots] = per


def _splitter_weight(chip: Any) -> int:
    """The weight that makes a splitter (alpha = alpha_min) fire on every input spike."""
    if chip.alpha_min > chip.weight_max:
        raise ResourceError(f"chip spec {chip.name!r}: a splitter neuron needs a weight of alpha_min = "
                            f"{chip.alpha_min}, but weight_max = {chip.weight_max}; use fanout=copy")
    return max(1, chip.alpha_min)


def _input_map(prog: Program, space: KeySpace, final: list[int], core_keys: dict[int, np.ndarray]) -> None:
    """Every axon that carries an input channel gets an input-map entry (multicast)."""
    channel, core, axon = [], [], []
    for fc, old in enumerate(final):
        source = space.source_of(core_keys[old])
        hit = np.flatnonzero(source < space.num_inputs)
        channel.append(source[hit])
        core.append(np.full(hit.size, fc))
        axon.append(hit)
    prog.input_channel = np.concatenate(channel + [np.zeros(0)]).astype(np.int32)
    prog.input_core = np.concatenate(core + [np.zeros(0)]).astype(np.int32)
    prog.input_axon = np.concatenate(axon + [np.zeros(0)]).astype(np.int32)


def _empty_graph(prog: Program, plan: Plan, net: DeployedNetwork, final: list[int],
                 core_keys: dict[int, np.ndarray], space: KeySpace, input_rate: np.ndarray) -> nx.DiGraph:
    graph = nx.DiGraph()
    used = prog.used_neurons()
    for fc, old in enumerate(final):
        core = plan.cores[old]
        source = space.source_of(core_keys[old])
        inputs = source[source < space.num_inputs]
        layers = sorted({net.groups[g].layer for g in core.groups}) or ["splitters"]
        graph.add_node(fc, layer="+".join(layers), groups=[net.groups[g].name for g in core.groups],
                       neurons=int(core.neurons), axons=int(core.axons),
                       synapses=int(np.count_nonzero(prog.crossbar[fc])), used_neurons=int(used[fc].sum()),
                       input_traffic=float(input_rate[inputs].sum()) if inputs.size else 0.0, local_traffic=0.0,
                       local_routes=0)
    return graph


def _write_wiring(prog: Program, graph: nx.DiGraph, wiring: Wiring) -> None:
    """Set the targets and output ports in ``prog`` and add the routes' traffic to ``graph``."""
    r = wiring.routes
    prog.target_core[r.core, r.slot] = r.target
    prog.target_axon[r.core, r.slot] = r.axon
    prog.target_delay[r.core, r.slot] = r.delay
    prog.output_port[wiring.port_core, wiring.port_slot] = np.arange(wiring.port_core.size)
    prog.port_class = wiring.port_class.astype(np.int32)
    _add_routes(graph, r.core, r.target, r.rate)


def _add_routes(graph: nx.DiGraph, u: np.ndarray, v: np.ndarray, rate: np.ndarray) -> None:
    """The routes u -> v with their rates, in order, on ``graph``: a route within a core counts
    as local traffic on the node; an edge gets the sum of its routes' rates (bincount adds in
    order, from 0.0, as adding one route at a time does) and the edges are added in the order of
    their first route."""
    local = u == v
    if local.any():
        nodes, where = np.unique(u[local], return_inverse=True)
        sums = np.bincount(where, weights=rate[local]).tolist()
        counts = np.bincount(where).tolist()
        for node, total, count in zip(nodes.tolist(), sums, counts):
            data = graph.nodes[node]
            data["local_traffic"] += total
            data["local_routes"] += count
    u, v, rate = u[~local], v[~local], rate[~local]
    if u.size == 0:
        return
    codes, first, where = np.unique(u * (int(max(u.max(), v.max())) + 1) + v, return_index=True,
                                    return_inverse=True)
    sums = np.bincount(where, weights=rate)
    counts = np.bincount(where)
    for e in np.argsort(first, kind="stable").tolist():
        a, b = int(u[first[e]]), int(v[first[e]])
        if graph.has_edge(a, b):
            graph.edges[a, b]["traffic"] += float(sums[e])
            graph.edges[a, b]["routes"] += int(counts[e])
        else:
            graph.add_edge(a, b, traffic=float(sums[e]), routes=int(counts[e]))


def _label(net: DeployedNetwork, core: Any) -> str:
    names = [net.groups[g].name for g in core.groups]
    return "+".join(names) if names else "splitters"

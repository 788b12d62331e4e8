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
from crossmap.passes.partition.timing import ShiftConstraints, pin_groups
from crossmap.passes.partition.unique import block_pairs
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
    where = {old: new for new, old in enumerate(final)}
    prog = Program.empty(chip, len(final), num_inputs=net.num_inputs, num_classes=net.num_classes,
                         input_ticks=net.input_ticks, encoding=dict(net.encoding),
                         group_names=[g.name for g in net.groups])
    core_keys = {old: np.array(sorted(plan.cores[old].keys), np.int64) for old in final}
    instances, aims, split_slot = _fill_cores(prog, net, plan, space, keys, final, core_keys, pos)
    split_axon = {s: len(core_keys[plan.splits[s].core]) + plan.cores[plan.splits[s].core].splitters.index(s)
                  for s in range(len(plan.splits))}
    _input_map(prog, space, final, core_keys)
    readers = _readers(plan, keys)
    roles = _aim_roles(_roles(net, plan, space, topo), aims)
    shifts = _solve_shifts(net, plan, space, roles, readers, input_fed)
    graph = _empty_graph(prog, plan, net, final, core_keys, space, input_rate)
    counts = _wire(prog, net, plan, roles, instances, readers, shifts, where, core_keys, split_slot, split_axon,
                   rates, graph)
    out_groups = [i for i, g in enumerate(net.groups) if (g.output_class >= 0).any()]
    output_shift = shifts[out_groups[0]] if out_groups else 0
    prog.latency = int(net.latency()) + int(output_shift)
    prog.core_labels = [_label(net, plan.cores[old]) for old in final]
    prog.validate()
    traffic = float(sum(d["traffic"] for _, _, d in graph.edges(data=True)) +
                    sum(d["local_traffic"] for _, d in graph.nodes(data=True)))
    return Built(program=prog, graph=graph, shifts=shifts, output_shift=int(output_shift), copies=counts[0],
                 splitter_neurons=counts[1], delays_changed=counts[2], traffic=traffic)


def _core_order(plan: Plan, pos: dict[int, int]) -> list[int]:
    def key(c: int) -> tuple[int, int, int]:
        core = plan.cores[c]
        if core.members:
            return (min(pos[g] for g, _, _ in core.members), 0, c)
        return (min(pos[plan.splits[s].group] for s in core.splitters), 1, c)

    return sorted(range(len(plan.cores)), key=key)


def _fill_cores(prog: Program, net: DeployedNetwork, plan: Plan, space: KeySpace, keys: list[GroupKeys],
                final: list[int], core_keys: dict[int, np.ndarray], pos: dict[int, int]) -> tuple[dict, dict, dict]:
    """Crossbars, axon types and neuron parameters; returns the instance slots of each (group,
    neuron) in core order, the reader core each slot is aimed at (-1: any) and the (core, first
    slot) of each splitter set."""
    chip = net.chip
    split_slot: dict[int, tuple[int, int]] = {}
    placed: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # runs of members
    runs: dict[int, list[tuple[int, tuple[np.ndarray, ...]]]] = {}  # group -> (core, slots and bits) per run
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
            runs.setdefault(g, []).append((fc, _fill_run(keys[g], ck, neurons, counts, first)))
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
    instances, aims = _instance_slots(placed)
    return instances, aims, split_slot


def _instance_slots(placed: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
                    ) -> tuple[dict[tuple[int, int], list[tuple[int, int]]], dict[tuple[int, int], list[int]]]:
    """From runs (group, core, neurons, copies, first slots, aims) in core order: the slots
    (core, neuron slot) of each (group, neuron), in that order, and the aim of each slot."""
    if not placed:
        return {}, {}
    counts = np.concatenate([p[3] for p in placed])
    group = np.repeat(np.concatenate([np.full(p[2].size, p[0], np.int64) for p in placed]), counts)
    neuron = np.repeat(np.concatenate([p[2] for p in placed]), counts)
    core = np.repeat(np.concatenate([np.full(p[2].size, p[1], np.int64) for p in placed]), counts)
    aim = np.repeat(np.concatenate([p[5] for p in placed]), counts)
    first = np.concatenate([p[4] for p in placed])
    slot = np.repeat(first, counts) + np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    order = np.lexsort((neuron, group))  # stable: each neuron's slots stay in core order
    group, neuron, core, slot, aim = group[order], neuron[order], core[order], slot[order], aim[order]
    starts = np.flatnonzero(np.r_[True, (group[1:] != group[:-1]) | (neuron[1:] != neuron[:-1])]).tolist()
    ends = starts[1:] + [group.size]
    pairs = list(zip(core.tolist(), slot.tolist()))
    aims = aim.tolist()
    names = list(zip(group[starts].tolist(), neuron[starts].tolist()))
    instances = {name: pairs[a:b] for name, a, b in zip(names, starts, ends)}
    return instances, {name: aims[a:b] for name, a, b in zip(names, starts, ends)}


def _fill_run(gk: GroupKeys, ck: np.ndarray, neurons: np.ndarray, counts: np.ndarray,
              first: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where ``counts[k]`` adjacent instances of neuron ``neurons[k]`` go from slot ``first[k]``
    of a core with axon keys ``ck``: (the run's slots, the neuron of each slot, and the axon and
    slot of each crossbar bit to set)."""
    slots = np.arange(int(counts.sum())) + (int(first[0]) if first.size else 0)  # the run's slots, adjacent
    per = np.repeat(neurons, counts)  # the neuron of each slot
    indptr = gk.reads.indptr  # not converted: a copy would cost the whole group's synapses per core
    lengths = (indptr[neurons + 1] - indptr[neurons]).astype(np.int64)
    axons = np.searchsorted(ck, gk.keys[gather_columns(indptr, gk.reads.indices, neurons)])
    owner = np.repeat(np.arange(neurons.size), lengths)  # the member of each (member, axon) entry
    times = counts[owner]
    entry_slot = np.repeat(first[owner], times) + (np.arange(int(times.sum())) - np.repeat(np.cumsum(times) - times,
                                                                                             times))
    return slots, per, np.repeat(axons, times), entry_slot


NEURON_FIELDS = ("weight", "stochastic_synapse", "alpha", "beta", "leak", "reset_mode", "reset_value", "initial_v",
                 "threshold_mask")


def _write_group(prog: Program, group: NeuronGroup, g: int, runs: list[tuple[int, tuple[np.ndarray, ...]]]) -> None:
    """Write the runs of group ``g`` (core, ``_fill_run``'s arrays) into ``prog`` at once:
    crossbar bits, weights and parameters of every slot."""
    cores = np.concatenate([np.full(r[1].size, fc, np.int64) for fc, r in runs])
    slots = np.concatenate([r[0] for _, r in runs])
    per = np.concatenate([r[1] for _, r in runs])
    bit_cores = np.concatenate([np.full(r[2].size, fc, np.int64) for fc, r in runs])
    prog.crossbar[bit_cores, np.concatenate([r[2] for _, r in runs]), np.concatenate([r[3] for _, r in runs])] = True
    for name in NEURON_FIELDS:
        getattr(prog, name)[cores, slots] = getattr(group, name)[per]
    prog.neuron_group[cores, slots] = g
    prog.neuron_index[cores, slots] = per


def _aim_roles(roles: dict[tuple[int, int], list], aims: dict[tuple[int, int], list[int]]) -> dict:
    """Each neuron's jobs reordered so that an instance aimed at a reader core (a copy packed with
    that reader's other inputs) takes a direct job to that core; the rest keep their order."""
    out = {}
    for neuron, jobs in roles.items():
        wanted = aims.get(neuron, [])
        if not wanted or max(wanted) < 0:  # no instance aimed anywhere
            out[neuron] = jobs
            continue
        left = list(jobs)
        chosen: list[tuple | None] = [None] * len(wanted)
        for i, aim in enumerate(wanted):
            match = next((job for job in left if job[0] == "direct" and job[1][0] == aim), None)
            if match is not None:
                chosen[i] = match
                left.remove(match)
        rest = iter(left)
        out[neuron] = [job if job is not None else next(rest) for job in chosen] + list(rest)
    return out


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


def _readers(plan: Plan, keys: list[GroupKeys]) -> dict[tuple[int, int], list[int]]:
    """(plan core, key) -> the groups on that core that read the key, ascending (the lists are
    shared between entries with the same groups: they are only read)."""
    members: dict[int, tuple[list[int], list[int]]] = {}  # group -> (its cores, its neurons), one pair per member
    for c, core in enumerate(plan.cores):
        for g, n, _ in core.members:
            cores, neurons = members.setdefault(g, ([], []))
            cores.append(c)
            neurons.append(n)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for g in sorted(members):
        gk = keys[g]
        cores, neurons = (np.asarray(a, np.int64) for a in members[g])
        lengths = gk.reads.indptr[neurons + 1] - gk.reads.indptr[neurons]
        local = gather_columns(gk.reads.indptr, gk.reads.indices, neurons).astype(np.int64)
        pairs = block_pairs(cores, lengths, local, gk.keys.size)  # distinct (core, key) of the group
        parts.append((pairs // gk.keys.size, gk.keys[pairs % gk.keys.size], np.full(pairs.size, g, np.int64)))
    if not parts:
        return {}
    core, key, group = (np.concatenate([p[i] for p in parts]) for i in range(3))
    order = np.lexsort((group, key, core))
    core, key, group = core[order], key[order], group[order]
    starts = np.flatnonzero(np.r_[True, (core[1:] != core[:-1]) | (key[1:] != key[:-1])])
    alone = {g: [g] for g in members}
    runs = np.diff(np.r_[starts, core.size])
    values: list[list[int]] = [alone[g] for g in group[starts].tolist()]
    for r in np.flatnonzero(runs > 1).tolist():  # read by several groups on one core (merged bins)
        values[r] = group[starts[r]:starts[r] + runs[r]].tolist()
    return dict(zip(zip(core[starts].tolist(), key[starts].tolist()), values))


def _roles(net: DeployedNetwork, plan: Plan, space: KeySpace, topo: list[int]) -> dict[tuple[int, int], list]:
    """The job of each chip instance of each deployed neuron, in instance order:
    ("port",), ("direct", (core, key)) or ("split", split index)."""
    splits: dict[tuple[int, int], list[int]] = {}
    for s, split in enumerate(plan.splits):
        splits.setdefault((split.group, split.neuron), []).append(s)
    roles = {}
    demands = plan.demands
    for g in topo:
        offset, copies = int(space.offsets[g]), plan.group_mode[g] == "copy"
        for n, output in enumerate(net.groups[g].output_class.tolist()):
            targets = sorted(demands.get(offset + n, []))
            jobs: list[tuple] = [("port",)] if output >= 0 else []
            if copies or len(targets) == 1:
                jobs += [("direct", t) for t in targets]
            else:
                jobs += [("split", s) for s in splits.get((g, n), [])]
            roles[(g, n)] = jobs
    return roles


def _solve_shifts(net: DeployedNetwork, plan: Plan, space: KeySpace, roles: dict, readers: dict,
                  input_fed: set[int]) -> list[int]:
    """Group shifts that keep every path aligned (all zero without splitters). Many neurons ask
    for the same constraint (source group, reader groups, delay); each is added once (the
    constraints keep the tightest bound per pair of groups, so their order does not matter)."""
    cons = ShiftConstraints(num_groups=len(net.groups))
    pin_groups(cons, net, input_fed)
    cons.equal([i for i, g in enumerate(net.groups) if (g.output_class >= 0).any()])
    direct: set[tuple[int, tuple[int, ...], int]] = set()
    split: set[tuple[int, tuple[tuple[int, ...], ...], int]] = set()
    delays = [net.groups[g].delay.tolist() for g in range(len(net.groups))]
    for (g, n), jobs in roles.items():
        delay = int(delays[g][n])
        for job in jobs:
            if job[0] == "direct":
                direct.add((g, tuple(readers[job[1]]), delay))
            elif job[0] == "split":
                split.add((g, tuple(tuple(readers[t]) for t in plan.splits[job[1]].targets), delay))
    for g, consumers, delay in sorted(direct):
        cons.direct(g, list(consumers), delay, net.chip)
    for g, consumer_sets, delay in sorted(split):
        cons.split(g, [list(s) for s in consumer_sets], delay, net.chip)
    return cons.solve([g.name for g in net.groups], net.chip)


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


class Wiring:
    """What ``_wire`` decides, gathered while it walks the neurons and written at once: each
    neuron's target (slot, target core, target axon, delay; an axon given by its key on a plan
    core is looked up in one search for all), and the traffic of every route in the order the
    routes are made (so the sums and the order of the graph's edges are those of adding one route
    at a time)."""

    def __init__(self) -> None:
        # per target: (core, neuron, target core, plan core whose keys name the axon or -1, the key
        # or the axon itself, delay, rate); its route goes from core to target core
        self.rows: list[tuple[int, int, int, int, int, int, float]] = []

    def add(self, core: int, neuron: int, target: int, plan_core: int, axon: int, delay: int, rate: float) -> None:
        """Neuron ``neuron`` of ``core`` targets ``target`` (axon ``axon``, or the axon of key
        ``axon`` on plan core ``plan_core``) with ``delay``, carrying ``rate`` spikes per sample."""
        self.rows.append((core, neuron, target, plan_core, axon, delay, rate))

    def write(self, prog: Program, core_keys: dict[int, np.ndarray], graph: nx.DiGraph) -> None:
        """Set the targets in ``prog`` and add the routes' traffic to ``graph``."""
        if not self.rows:
            return
        core, neuron, target, plan_core, axon, delay = (np.array(column, np.int64) for column in
                                                        list(zip(*self.rows))[:6])
        rate = np.array([row[6] for row in self.rows], np.float64)
        by_key = plan_core >= 0
        if by_key.any():
            axon[by_key] = _axons_of_keys(core_keys, plan_core[by_key], axon[by_key])
        prog.target_core[core, neuron] = target
        prog.target_axon[core, neuron] = axon
        prog.target_delay[core, neuron] = delay
        _add_routes(graph, core, target, rate)


def _axons_of_keys(core_keys: dict[int, np.ndarray], core: np.ndarray, key: np.ndarray) -> np.ndarray:
    """``np.searchsorted(core_keys[c], k)`` for every pair (c, k), in one search over all the
    cores' keys laid end to end (core by core, each ascending, so the (core, key) codes ascend)."""
    cores = sorted(core_keys)
    sizes = np.array([core_keys[c].size for c in cores], np.int64)
    flat = np.concatenate([core_keys[c] for c in cores] + [np.zeros(0, np.int64)]).astype(np.int64)
    width = 1 + max(int(flat.max(initial=0)), int(key.max(initial=0)))
    codes = np.repeat(np.asarray(cores, np.int64), sizes) * width + flat
    start = np.zeros(max(cores) + 1, np.int64)
    start[cores] = np.cumsum(sizes) - sizes
    return np.searchsorted(codes, core * width + key) - start[core]


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


def _wire(prog: Program, net: DeployedNetwork, plan: Plan, roles: dict, instances: dict, readers: dict,
          shifts: list[int], where: dict[int, int], core_keys: dict[int, np.ndarray], split_slot: dict,
          split_axon: dict, rates: dict[str, np.ndarray], graph: nx.DiGraph) -> tuple[int, int, int]:
    """Targets, delays and output ports of every instance and splitter; traffic on the graph.
    Returns (copies added, splitter neurons added, instances whose delay differs from deployed)."""
    chip = net.chip
    copies = splitters = changed = 0
    ports: list[int] = []
    wiring = Wiring()
    group_rates = {g: rates[group.name].tolist() for g, group in enumerate(net.groups)}
    group_delays = {g: group.delay.tolist() for g, group in enumerate(net.groups)}
    for (g, n), jobs in roles.items():
        group = net.groups[g]
        slots = instances[(g, n)]
        copies += len(slots) - 1
        rate = float(group_rates[g][n])
        delay = int(group_delays[g][n])
        for (fc, j), job in zip(slots, jobs):
            if job[0] == "port":
                prog.output_port[fc, j] = len(ports)
                ports.append(int(group.output_class[n]))
                continue
            if job[0] == "direct":
                core, key = job[1]
                d = delay + shifts[readers[job[1]][0]] - shifts[g]
                wiring.add(fc, j, where[core], core, key, d, rate)
                changed += d != delay
                continue
            split = plan.splits[job[1]]
            totals = [delay + shifts[readers[t][0]] - shifts[g] for t in split.targets]
            first = max(chip.delay_min, max(totals) - chip.delay_max)
            hc, start = split_slot[job[1]]
            wiring.add(fc, j, hc, -1, split_axon[job[1]], first, rate)
            for i, ((core, key), total) in enumerate(zip(split.targets, totals)):
                wiring.add(hc, start + i, where[core], core, key, total - first, rate)
                splitters += 1
                changed += total != delay
    wiring.write(prog, core_keys, graph)
    prog.port_class = np.array(ports, np.int32)
    return copies, splitters, changed


def _label(net: DeployedNetwork, core: Any) -> str:
    names = [net.groups[g].name for g in core.groups]
    return "+".join(names) if names else "splitters"

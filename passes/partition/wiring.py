"""Which job each chip instance of a deployed neuron does, and the targets that follow, as arrays.

A deployed neuron has one *job* per place its spikes must go, in this order: an output port (when
it is an output neuron), then either one direct job per (reader core, key) it must reach, sorted
(copy-mode groups, or a single target), or one job per splitter set that forwards it (splitter
mode). Its chip instances take the jobs in order, except that an instance *aimed* at a reader core
(a copy packed with that reader's other inputs) takes a direct job to that core: the k-th instance
aimed at core c takes the k-th direct job to c, and the other instances take the remaining jobs in
order. A job left without an instance is dropped; an instance left without a job stays idle.

Everything here is a handful of array operations over all neurons at once: a network of millions
of neurons is wired without a Python object per neuron.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossmap.deployed import DeployedNetwork
from crossmap.passes.partition.keys import GroupKeys, KeySpace
from crossmap.passes.partition.pack import gather_columns
from crossmap.passes.partition.plan import Plan
from crossmap.passes.partition.timing import ShiftConstraints, pin_groups
from crossmap.passes.partition.unique import block_pairs

PORT, DIRECT, SPLIT = 0, 1, 2  # job kinds


@dataclass
class Instances:
    """Every chip instance of every deployed neuron, sorted by source id (``KeySpace.offsets[g] +
    n``), each neuron's instances in core order: its source, core (final index), neuron slot and
    aim (the plan core it feeds, or -1)."""

    source: np.ndarray
    core: np.ndarray
    slot: np.ndarray
    aim: np.ndarray


@dataclass
class Jobs:
    """Every job of every deployed neuron, sorted by source id, each neuron's jobs in order: kind
    (PORT, DIRECT or SPLIT), plan core and key of a direct job, splitter set of a split job."""

    source: np.ndarray
    kind: np.ndarray
    core: np.ndarray
    key: np.ndarray
    split: np.ndarray


@dataclass
class Readers:
    """For every (plan core, key) an axon carries, the groups on that core that read it: ``codes``
    (core * width + key, ascending), the index of each one's set of groups in ``sets`` (ascending
    group tuples) and its first (smallest) group."""

    codes: np.ndarray
    width: int
    set_index: np.ndarray
    first: np.ndarray
    sets: list[tuple[int, ...]]

    def find(self, core: np.ndarray, key: np.ndarray) -> np.ndarray:
        """Positions in ``codes`` of the pairs (core, key); every pair must be carried."""
        code = np.asarray(core, np.int64) * self.width + np.asarray(key, np.int64)
        where = np.searchsorted(self.codes, code)
        if code.size and (where.max() >= self.codes.size or (self.codes[where] != code).any()):
            raise AssertionError("a neuron's spikes are sent to an axon no core carries")
        return where


def instance_arrays(placed: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                    offsets: np.ndarray) -> Instances:
    """From runs (group, core, neurons, copies, first slots, aims) in core order, the instances
    of every neuron (each run's ``copies[k]`` adjacent slots from ``first[k]`` hold neuron
    ``neurons[k]``)."""
    if not placed:
        empty = np.zeros(0, np.int64)
        return Instances(empty, empty, empty, empty)
    counts = np.concatenate([p[3] for p in placed])
    source = np.repeat(np.concatenate([offsets[p[0]] + p[2] for p in placed]), counts)
    core = np.repeat(np.concatenate([np.full(p[2].size, p[1], np.int64) for p in placed]), counts)
    aim = np.repeat(np.concatenate([p[5] for p in placed]), counts)
    first = np.concatenate([p[4] for p in placed])
    slot = np.repeat(first, counts) + np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    order = np.argsort(source, kind="stable")  # each neuron's instances stay in core order
    return Instances(source[order], core[order], slot[order], aim[order])


def readers_of(plan: Plan, keys: list[GroupKeys]) -> Readers:
    """The groups on each plan core that read each key the core carries."""
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
    empty = np.zeros(0, np.int64)
    core, key, group = (np.concatenate([p[i] for p in parts] + [empty]) for i in range(3))
    width = 1 + int(key.max(initial=0))
    code = core * width + key
    order = np.lexsort((group, code))
    code, group = code[order], group[order]
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]]) if code.size else empty
    runs = np.diff(np.r_[starts, code.size])
    first = group[starts]
    sets: list[tuple[int, ...]] = [(g,) for g in range(int(first.max(initial=-1)) + 1)]  # one group: its index
    set_index = first.copy()
    for r in np.flatnonzero(runs > 1).tolist():  # read by several groups on one core (merged bins)
        shared = tuple(group[starts[r]:starts[r] + runs[r]].tolist())
        set_index[r] = len(sets)
        sets.append(shared)
    return Readers(codes=code[starts], width=width, set_index=set_index, first=first, sets=sets)


def neuron_jobs(net: DeployedNetwork, plan: Plan, space: KeySpace,
                demands: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Jobs:
    """The jobs of every deployed neuron (see the module docstring)."""
    source, core, key = demands
    group_of = group_of_sources(net, space)
    copy_mode = np.array([plan.group_mode.get(g) == "copy" for g in range(len(net.groups))] + [False])
    targets = np.bincount(source, minlength=group_of.size)
    direct = (group_of[source] >= 0) & (copy_mode[group_of[source]] | (targets[source] == 1))  # not input channels
    outputs = np.concatenate([space.offsets[g] + np.flatnonzero(group.output_class >= 0)
                              for g, group in enumerate(net.groups)] + [np.zeros(0, np.int64)])
    split_source = np.array([space.offsets[s.group] + s.neuron for s in plan.splits], np.int64).reshape(-1)
    n_port, n_direct, n_split = outputs.size, int(direct.sum()), split_source.size
    job_source = np.concatenate([outputs, source[direct], split_source]).astype(np.int64)
    kind = np.repeat(np.array([PORT, DIRECT, SPLIT], np.int64), [n_port, n_direct, n_split])
    job_core = np.concatenate([np.zeros(n_port, np.int64), core[direct], np.zeros(n_split, np.int64)])
    job_key = np.concatenate([np.zeros(n_port, np.int64), key[direct], np.zeros(n_split, np.int64)])
    split = np.concatenate([np.full(n_port + n_direct, -1, np.int64), np.arange(n_split, dtype=np.int64)])
    order = np.lexsort((split, job_key, job_core, kind, job_source))
    return Jobs(job_source[order], kind[order], job_core[order], job_key[order], split[order])


def _rank_within(*keys: np.ndarray) -> np.ndarray:
    """For each entry, how many entries before it (in array order) have the same ``keys``."""
    size = keys[0].size
    order = np.lexsort((np.arange(size),) + tuple(reversed(keys)))
    same = np.ones(size, bool)
    for k in keys:
        sorted_k = k[order]
        same[1:] &= sorted_k[1:] == sorted_k[:-1]
    if size:
        same[0] = False
    start = np.maximum.accumulate(np.where(~same, np.arange(size), 0)) if size else np.zeros(0, np.int64)
    rank = np.empty(size, np.int64)
    rank[order] = np.arange(size) - start
    return rank


def _pair(a_keys: tuple[np.ndarray, ...], b_keys: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j) of the entries with equal keys in ``a`` and ``b`` (each side's keys are distinct)."""
    if a_keys[0].size == 0 or b_keys[0].size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    both = [np.concatenate([a, b]) for a, b in zip(a_keys, b_keys)]
    code = np.zeros(both[0].size, np.int64)
    for k in both:  # mixed radix over the keys' ranges
        code = code * (int(k.max()) + 1) + k
    _, i, j = np.intersect1d(code[:a_keys[0].size], code[a_keys[0].size:], assume_unique=True, return_indices=True)
    return i, j


def assign_jobs(instances: Instances, jobs: Jobs) -> np.ndarray:
    """The job index of each instance, or -1 for an instance left without one."""
    result = np.full(instances.source.size, -1, np.int64)
    aimed = np.flatnonzero(instances.aim >= 0)
    direct = np.flatnonzero(jobs.kind == DIRECT)
    i, j = _pair((instances.source[aimed], instances.aim[aimed],
                  _rank_within(instances.source[aimed], instances.aim[aimed])),
                 (jobs.source[direct], jobs.core[direct], _rank_within(jobs.source[direct], jobs.core[direct])))
    result[aimed[i]] = direct[j]
    taken = np.zeros(jobs.source.size, bool)
    taken[direct[j]] = True
    free = np.flatnonzero(result < 0)
    left = np.flatnonzero(~taken)
    i, j = _pair((instances.source[free], _rank_within(instances.source[free])),
                 (jobs.source[left], _rank_within(jobs.source[left])))
    result[free[i]] = left[j]
    return result


def solve_shifts(net: DeployedNetwork, plan: Plan, space: KeySpace, jobs: Jobs, readers: Readers,
                 input_fed: set[int]) -> list[int]:
    """Group shifts that keep every path aligned (all zero without splitters). Many neurons ask
    for the same constraint (source group, reader groups, delay); each is added once (the
    constraints keep the tightest bound per pair of groups, so their order does not matter)."""
    cons = ShiftConstraints(num_groups=len(net.groups))
    pin_groups(cons, net, input_fed)
    cons.equal([i for i, g in enumerate(net.groups) if (g.output_class >= 0).any()])
    group_of = group_of_sources(net, space)
    delay_of = per_source(space, [g.delay for g in net.groups]).astype(np.int64)
    direct = jobs.kind == DIRECT
    sources = jobs.source[direct]
    at = readers.find(jobs.core[direct], jobs.key[direct])
    triples = np.unique(np.stack([group_of[sources], readers.set_index[at], delay_of[sources]], 1), axis=0)
    for g, consumers, delay in sorted((g, readers.sets[s], d) for g, s, d in triples.tolist()):
        cons.direct(g, list(consumers), delay, net.chip)
    t_set, t_core, t_key, _ = _split_targets(plan, np.arange(len(plan.splits), dtype=np.int64))
    index = readers.set_index[readers.find(t_core, t_key)].tolist()
    bounds = np.r_[0, np.cumsum(np.bincount(t_set, minlength=len(plan.splits)))].tolist()
    split = {(s.group, tuple(readers.sets[i] for i in index[a:b]), int(delay_of[space.offsets[s.group] + s.neuron]))
             for s, a, b in zip(plan.splits, bounds[:-1], bounds[1:])}
    for g, consumer_sets, delay in sorted(split):
        cons.split(g, [list(s) for s in consumer_sets], delay, net.chip)
    return cons.solve([g.name for g in net.groups], net.chip)


def per_source(space: KeySpace, values: list[np.ndarray], inputs: float = 0) -> np.ndarray:
    """One value per source id from one array per group (``inputs`` for the input channels)."""
    dtype = np.result_type(*values) if values else np.int64
    return np.concatenate([np.full(space.num_inputs, inputs, dtype)] + [np.asarray(v, dtype) for v in values])


def group_of_sources(net: DeployedNetwork, space: KeySpace) -> np.ndarray:
    """The group of each source id (-1 for the input channels)."""
    return per_source(space, [np.full(g.size, i, np.int64) for i, g in enumerate(net.groups)], inputs=-1)


@dataclass
class Routes:
    """The targets chosen for chip neurons, in the order the neurons are walked (group by group in
    topological order, neuron by neuron, instance by instance; a splitter set's neurons right after
    the instance that feeds it): source core and neuron slot, target core and axon, delay, and
    the rate of spikes per sample the route carries."""

    core: np.ndarray
    slot: np.ndarray
    target: np.ndarray
    axon: np.ndarray
    delay: np.ndarray
    rate: np.ndarray


@dataclass
class Wiring:
    """What the jobs make of the instances: the routes, the output ports (core, slot, class, in
    port order) and the counts the report gives."""

    routes: Routes
    port_core: np.ndarray
    port_slot: np.ndarray
    port_class: np.ndarray
    copies: int
    splitter_neurons: int
    delays_changed: int


def wire(net: DeployedNetwork, plan: Plan, space: KeySpace, topo: list[int], instances: Instances, jobs: Jobs,
         assigned: np.ndarray, readers: Readers, shifts: list[int], where: np.ndarray, core_keys: dict[int, np.ndarray],
         split_slot: dict[int, tuple[int, int]], split_axon: dict[int, int], rates: dict[str, np.ndarray]) -> Wiring:
    """The routes of every instance that has a job and of every splitter set fed by one, in the
    walk order of ``Routes``; ``where`` maps plan cores to final ones."""
    chip = net.chip
    group_of = group_of_sources(net, space)
    delay_of = per_source(space, [g.delay for g in net.groups]).astype(np.int64)
    rate_of = per_source(space, [np.asarray(rates[g.name], np.float64) for g in net.groups])
    class_of = per_source(space, [g.output_class for g in net.groups], inputs=-1)
    shift = np.asarray(shifts, np.int64)
    position = np.empty(len(net.groups), np.int64)
    position[np.asarray(topo, np.int64)] = np.arange(len(topo))
    walk = np.empty(instances.source.size, np.int64)  # each instance's place in the walk
    walk[np.argsort(position[group_of[instances.source]], kind="stable")] = np.arange(instances.source.size)

    has = np.flatnonzero(assigned >= 0)
    job = assigned[has]
    kind = jobs.kind[job]
    ports = has[kind == PORT]
    ports = ports[np.argsort(walk[ports])]

    d = has[kind == DIRECT]  # instances with a direct job
    dj = assigned[d]
    src = instances.source[d]
    first_reader = readers.first[readers.find(jobs.core[dj], jobs.key[dj])]
    d_delay = delay_of[src] + shift[first_reader] - shift[group_of[src]]

    s = has[kind == SPLIT]  # instances feeding a splitter set
    sets = jobs.split[assigned[s]]
    t_set, t_core, t_key, t_index = _split_targets(plan, sets)
    by_set = np.argsort(sets)
    t_inst = s[by_set[np.searchsorted(sets, t_set, sorter=by_set)]]  # the instance feeding each target's set
    t_src = instances.source[t_inst]
    t_total = delay_of[t_src] + shift[readers.first[readers.find(t_core, t_key)]] - shift[group_of[t_src]]
    latest = np.full(len(plan.splits), np.iinfo(np.int64).min, np.int64)
    np.maximum.at(latest, t_set, t_total)
    s_first = np.maximum(chip.delay_min, latest[sets] - chip.delay_max)
    hc = np.array([split_slot[i][0] for i in sets.tolist()], np.int64)
    start = np.array([split_slot[i][1] for i in t_set.tolist()], np.int64)
    t_host = np.array([split_slot[i][0] for i in t_set.tolist()], np.int64)
    t_first = np.maximum(chip.delay_min, latest[t_set] - chip.delay_max)

    order = np.lexsort((np.concatenate([np.zeros(d.size + s.size, np.int64), 1 + t_index]),
                        walk[np.concatenate([d, s, t_inst])]))
    keyed_axon = _axons_of_keys(core_keys, np.concatenate([jobs.core[dj], t_core]), np.concatenate([jobs.key[dj], t_key]))
    fields = (  # each field's parts: direct instances, splitter-feeding instances, splitter neurons
        lambda: (instances.core[d], instances.core[s], t_host),
        lambda: (instances.slot[d], instances.slot[s], start + t_index),
        lambda: (where[jobs.core[dj]], hc, where[t_core]),
        lambda: (keyed_axon[:d.size], np.array([split_axon[i] for i in sets.tolist()], np.int64), keyed_axon[d.size:]),
        lambda: (d_delay, s_first, t_total - t_first),
        lambda: (rate_of[src], rate_of[instances.source[s]], rate_of[t_src]),
    )
    routes = Routes(*(np.concatenate(parts())[order] for parts in fields))  # one unordered field at a time
    return Wiring(routes=routes, port_core=instances.core[ports], port_slot=instances.slot[ports],
                  port_class=class_of[instances.source[ports]].astype(np.int64),
                  copies=int(instances.source.size - np.count_nonzero(group_of >= 0)),
                  splitter_neurons=int(t_set.size),
                  delays_changed=int(np.count_nonzero(d_delay != delay_of[src]) +
                                     np.count_nonzero(t_total != delay_of[t_src])))


def _split_targets(plan: Plan, sets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The targets of the splitter sets ``sets``: (set, plan core, key, index within the set)."""
    chosen = [plan.splits[i].targets for i in sets.tolist()]
    sizes = np.array([len(t) for t in chosen], np.int64)
    flat = np.array([pair for t in chosen for pair in t], np.int64).reshape(-1, 2)
    index = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.repeat(sets, sizes), flat[:, 0], flat[:, 1], index


def _axons_of_keys(core_keys: dict[int, np.ndarray], core: np.ndarray, key: np.ndarray) -> np.ndarray:
    """``np.searchsorted(core_keys[c], k)`` for every pair (c, k), in one search over all the
    cores' keys laid end to end (core by core, each ascending, so the (core, key) codes ascend)."""
    if core.size == 0:
        return np.zeros(0, np.int64)
    cores = sorted(core_keys)
    sizes = np.array([core_keys[c].size for c in cores], np.int64)
    flat = np.concatenate([core_keys[c] for c in cores] + [np.zeros(0, np.int64)]).astype(np.int64)
    width = 1 + max(int(flat.max(initial=0)), int(key.max(initial=0)))
    codes = np.repeat(np.asarray(cores, np.int64), sizes) * width + flat
    start = np.zeros(max(cores) + 1, np.int64)
    start[cores] = np.cumsum(sizes) - sizes
    return np.searchsorted(codes, core * width + key) - start[core]

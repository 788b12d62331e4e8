"""Which neurons go on which logical core: the groups are packed from the outputs backwards, so
when a group is packed the cores that read its neurons are known and so is the number of places
(core, axon) each neuron's spikes must reach.

Fan-out: a chip neuron has one target. With ``copy`` a neuron that must reach k axons (plus an
output port) is placed k times on its core (copies read the same axons, so they cost neuron slots
only). With ``splitter`` it is placed once per N targets and drives a *splitter set*: one axon and
one splitter neuron per target, put into spare room of an existing core or on new splitter cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
import time
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from crossmap.deployed import INPUT, DeployedNetwork
from crossmap.chip import smallest_board
from crossmap.errors import ResourceError
from crossmap.passes.partition.keys import GroupKeys, KeySpace
from crossmap.parallel import run_tasks
from crossmap.passes.partition.pack import (compact_pack, conflict_bound, distinct_columns, gather_columns,
                                            greedy_pack, lower_bound, solve_pack)

FANOUT_MODES = ("copy", "splitter", "auto")  # auto: the best of copy, splitter and a per-group mix


@dataclass
class CoreContent:
    """One logical core while planning: neuron instances, the keys its axons carry, and the
    splitter sets it hosts (each takes one extra axon)."""

    members: list[tuple[int, int, int]]  # (group, neuron, instances)
    keys: set[int]
    neurons: int
    splitters: list[int] = field(default_factory=list)  # indices into Plan.splits
    aims: list[int] = field(default_factory=list)  # per member: the reader core its copies feed, or -1 (any)

    @property
    def axons(self) -> int:
        """Axons in use."""
        return len(self.keys) + len(self.splitters)

    @property
    def groups(self) -> list[int]:
        """Groups with neurons on this core, ascending."""
        return sorted({g for g, _, _ in self.members})


@dataclass
class SplitSet:
    """One instance of neuron (group, neuron) feeding ``size`` splitter neurons on ``core``, each
    forwarding to one of ``targets`` (core, key)."""

    group: int
    neuron: int
    targets: list[tuple[int, int]]
    core: int = -1


@dataclass
class Plan:
    """The outcome of packing: cores, where each neuron's spikes must go, and per-group figures
    (``group_rows``; their ``lower_bound`` is the fewest cores the group's own instances need:
    slots, distinct axons, and pairwise conflicting neurons)."""

    mode: str
    group_mode: dict[int, str] = field(default_factory=dict)  # group -> "copy" or "splitter"
    cores: list[CoreContent] = field(default_factory=list)
    splits: list[SplitSet] = field(default_factory=list)
    group_rows: list[dict[str, Any]] = field(default_factory=list)
    solver_runs: list[dict[str, Any]] = field(default_factory=list)
    key_cores: dict[int, list[int]] = field(default_factory=dict)  # key -> the cores whose axons carry it
    # the demands as arrays in the order they were made: (sources, their core, keys) per add_keys
    demand_log: list[tuple[np.ndarray, int, np.ndarray]] = field(default_factory=list)
    core_family: list[int] = field(default_factory=list)  # per core: its members' family, MIXED, or EMPTY
    # whether some group's packing qualifies for CP-SAT (small, above its bound, a small model),
    # whether or not the solver was on: when none does, a run with the solver packs the same
    solver_wanted: bool = False

    def add_keys(self, core: int, keys: set[int], space: KeySpace) -> None:
        """Give ``core`` the axons ``keys``; each new one is a place its source must reach (logged
        in ``demand_log``)."""
        content = self.cores[core]
        fresh = sorted(keys - content.keys)
        if not fresh:
            return
        content.keys.update(fresh)
        fresh_keys = np.array(fresh, np.int64)
        self.demand_log.append((space.source_of(fresh_keys), core, fresh_keys))
        key_cores = self.key_cores
        held = key_cores.keys() & fresh  # keys other cores carry already (a set operation, not a loop)
        for key in held:
            key_cores[key].append(core)
        key_cores.update({key: [core] for key in (fresh if not held else [k for k in fresh if k not in held])})

    def demand_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every place (core, key) a source's spikes must reach, from ``demand_log``, as arrays
        (source, core, key) sorted by source, then core, then key."""
        log = self.demand_log
        empty = np.zeros(0, np.int64)
        source = np.concatenate([s for s, _, _ in log] + [empty]).astype(np.int64)
        core = np.repeat(np.array([c for _, c, _ in log], np.int64), [s.size for s, _, _ in log]).astype(np.int64)
        key = np.concatenate([k for _, _, k in log] + [empty]).astype(np.int64)
        order = np.lexsort((key, core, source))
        return source[order], core[order], key[order]

    def new_core(self) -> int:
        """Append an empty core; returns its index."""
        self.cores.append(CoreContent(members=[], keys=set(), neurons=0))
        self.core_family.append(EMPTY)
        return len(self.cores) - 1

    def join_family(self, core: int, family: int) -> None:
        """Record that a group of ``family`` has members on ``core``."""
        current = self.core_family[core]
        self.core_family[core] = family if current in (EMPTY, family) else MIXED


EMPTY, MIXED = -1, -2  # Plan.core_family of a core without members, and of one holding several families


def instance_count(targets: int, output: bool, mode: str, max_neurons: int) -> int:
    """Chip neurons needed for one deployed neuron with ``targets`` axons to reach (and an output
    port when ``output``): one per target with copies; with splitters one for the port, one for a
    single target, one per ``max_neurons`` targets otherwise. At least one."""
    if mode == "copy":
        return max(1, targets + int(output))
    count = int(output)
    if targets == 1:
        count += 1
    elif targets > 1:
        count += math.ceil(targets / max_neurons)
    return max(1, count)


def instance_counts(targets: np.ndarray, output: np.ndarray, mode: str, max_neurons: int) -> np.ndarray:
    """``instance_count`` of every neuron of a group at once (``output``: has an output port)."""
    targets = np.asarray(targets, np.int64)
    ports = np.asarray(output, bool).astype(np.int64)
    if mode == "copy":
        return np.maximum(1, targets + ports)
    splitters = np.where(targets > 1, -(-targets // max_neurons), (targets == 1).astype(np.int64))
    return np.maximum(1, ports + splitters)


@dataclass
class PackOptions:
    """Knobs of the packing."""

    mode: str = "copy"
    solver: bool = True
    solver_max_items: int = 48
    solver_max_terms: int = 40_000  # cores x synapses of a group's packing model
    time_limit: float = 10.0
    merge_groups: bool = True
    seed: int = 0
    log: Callable[[str], None] | None = None  # progress lines (see PackProgress)
    jobs: int = 1  # processes for the candidate packings of a large group (results do not depend on it)


class PackProgress:
    """Progress lines while groups are packed: neurons done, the group at hand and an estimate of
    the time left, at most one line every ``every`` seconds (the lines depend on the clock; the
    packing does not)."""

    def __init__(self, total: int, label: str, log: Callable[[str], None] | None, every: float = 2.0) -> None:
        self.total, self.label, self.log, self.every = max(1, total), label, log, every
        self.neurons = 0
        self.start = self.last = time.perf_counter()

    def group(self, name: str, size: int) -> None:
        """About to pack group ``name`` of ``size`` neurons (after ``self.neurons`` others)."""
        now = time.perf_counter()
        if self.log is not None and (now - self.last >= self.every):
            self.last = now
            share = self.neurons / self.total
            left = f", about {(now - self.start) * (1 - share) / share:.0f} s left" if share > 0 else ""
            self.log(f"{self.label}: {self.neurons}/{self.total} neurons packed ({100 * share:.0f}%), now group "
                     f"{name!r} ({size} neurons){left}")
        self.neurons += size

    def done(self) -> None:
        """All groups packed."""
        if self.log is not None and time.perf_counter() - self.start >= self.every:
            self.log(f"{self.label}: {self.total} neurons packed in {time.perf_counter() - self.start:.0f} s")


def plan_partition(net: DeployedNetwork, space: KeySpace, keys: list[GroupKeys], topo: list[int],
                   key_rate: dict[int, float], options: PackOptions, memo: dict | None = None) -> Plan:
    """Pack every group, outputs first, then place the splitter sets. Mode ``mixed`` chooses copy
    or splitter per group by a local estimate: its cores, its splitter neurons, and the axons its
    cores ask of the groups before it (each one later costs a copy or a splitter there).

    ``memo`` (a dict kept between calls on the same network) holds the greedy packings of each
    group by what they depend on, so a second call (with the solver) packs again only the groups
    whose readers changed."""
    memo = {} if memo is None else memo
    chip = net.chip
    A, N = chip.axons_per_core, chip.neurons_per_core
    plan = Plan(mode=options.mode)
    family = network_families(net)
    small = [g for g in topo if options.solver and net.groups[g].size <= options.solver_max_items]
    budget = options.time_limit / max(1, len(small))
    progress = PackProgress(sum(net.groups[g].size for g in topo), f"partition (fanout={options.mode})", options.log)
    for g in reversed(topo):
        group, gk = net.groups[g], keys[g]
        progress.group(group.name, group.size)
        _check_fan_in(net, g, gk, A)
        offset = int(space.offsets[g])
        readers = _reader_cores(plan, offset, group.size)
        targets = np.asarray(readers.sum(axis=1)).reshape(-1).astype(np.int64)  # demands per neuron
        mode, counts, item_neuron, item_count, bins, item_aim = _best_greedy(net, space, gk, g, targets, options.mode,
                                                                           N, A, readers, memo, options.jobs)
        reads = gk.reads[item_neuron]
        greedy_cores = len(bins)
        if ("conflicts", g) not in memo:
            memo[("conflicts", g)] = conflict_bound(gk.reads, A)
        bound = max(lower_bound(int(counts.sum()), gk.keys.size, A, N), memo[("conflicts", g)])
        wanted = (group.size <= options.solver_max_items and bound < len(bins)
                  and len(bins) * reads.nnz <= options.solver_max_terms)
        plan.solver_wanted = plan.solver_wanted or wanted
        if g in small and wanted:
            cost = np.array([1 + int(round(100 * key_rate.get(int(k), 0.0))) for k in gk.keys], np.int64)
            result = solve_pack(reads, item_count, cost, A, N, bins, budget, options.seed)
            plan.solver_runs.append({"group": group.name, "status": result.status, "improved": result.cores is not None,
                                     "greedy_cores": len(bins), "lower_bound": bound,
                                     "cores": len(result.cores) if result.cores is not None else len(bins)})
            bins = result.cores if result.cores is not None else bins
        plan.group_mode[g] = mode
        first_new = len(plan.cores)
        placed = _place_bins(plan, space, g, gk, reads, item_neuron, item_count, bins, options.merge_groups, A, N,
                             family, item_aim)
        plan.group_rows.append({"group": group.name, "layer": group.layer, "fanout": mode, "neurons": group.size,
                                "instances": int(counts.sum()), "fan_out_max": int(targets.max(initial=0)),
                                "distinct_axons": int(gk.keys.size), "fan_in_max": int(gk.fan_in.max(initial=0)),
                                "greedy_cores": greedy_cores, "cores": len(placed),
                                "new_cores": len(plan.cores) - first_new, "lower_bound": bound})
    progress.done()
    plan.key_cores = {}  # only the packing reads it; large for large networks
    plan.group_rows.reverse()
    _make_splits(plan, net, space, topo, N)
    _place_splits(plan, A, N)
    return plan


def _reader_cores(plan: Plan, offset: int, size: int) -> sp.csr_matrix:
    """(neurons x cores) the number of the core's axons the neuron feeds (known: readers are
    packed first), from ``Plan.demand_log``: the demands on sources offset .. offset + size - 1."""
    sources = np.concatenate([s for s, _, _ in plan.demand_log] + [np.zeros(0, np.int64)])
    cores = np.repeat(np.array([c for _, c, _ in plan.demand_log], np.int64),
                      [s.size for s, _, _ in plan.demand_log]).astype(np.int64)
    mine = (sources >= offset) & (sources < offset + size)
    rows, cols = sources[mine] - offset, cores[mine]
    order = np.argsort(rows, kind="stable")  # neuron by neuron, each in the order its demands were made
    return sp.csr_matrix((np.ones(rows.size, np.int64), (rows[order], cols[order])),
                         shape=(size, max(1, len(plan.cores))))


def _best_greedy(net: DeployedNetwork, space: KeySpace, gk: GroupKeys, g: int, targets: np.ndarray, fanout: str,
                 N: int, A: int, readers: sp.csr_matrix, memo: dict, jobs: int = 1) -> tuple:
    """The cheapest greedy packing of group ``g`` over its fan-out modes and orders (see
    ``_pack_group``) as (mode, counts, item_neuron, item_count, bins, item_aim), the candidates
    packed in up to ``jobs`` processes (the same answer for any ``jobs``). Kept in ``memo``
    under all it depends on: the group, ``fanout``, and what its readers ask of it."""
    key = (fanout, g, targets.tobytes(), readers.shape, readers.indptr.tobytes(), readers.indices.tobytes(),
           readers.data.tobytes())
    if key not in memo:
        modes = ["copy", "splitter"] if fanout == "mixed" else [fanout]
        orders = (False, True) if readers.nnz else (False,)
        tasks = [(mode, by_reader, False) for mode in modes for by_reader in orders]
        if "copy" in modes and np.diff(readers.indptr).max(initial=0) >= 2:  # copies split by reader
            tasks.append(("copy", True, True))
        shared = (net, space, gk, g, targets, N, A, readers)
        packs = [pack for packs in run_tasks(_candidate_packs, shared, tasks,
                                             jobs if _worth_processes(gk, net.groups[g].size) else 1)
                 for pack in packs]
        mode, counts, item_neuron, item_count, bins, item_aim = min(packs, key=lambda p: p[0])[1]
        memo[key] = (mode, counts, item_neuron, item_count, bins, item_aim)  # not the reads: they are large
    return memo[key]


# a group reading fewer synapses, with fewer neurons, is packed in this process even with several
# jobs (a fork costs more than its packings)
PARALLEL_MIN_SYNAPSES = 200_000
PARALLEL_MIN_NEURONS = 8192


def _worth_processes(gk: GroupKeys, neurons: int) -> bool:
    """Whether the candidate packings of a group are worth forked processes."""
    return gk.reads.nnz >= PARALLEL_MIN_SYNAPSES or neurons >= PARALLEL_MIN_NEURONS


def _candidate_packs(net: DeployedNetwork, space: KeySpace, gk: GroupKeys, g: int, targets: np.ndarray, N: int,
                     A: int, readers: sp.csr_matrix, mode: str, by_reader: bool, per_reader: bool) -> list:
    """The packings of ``_pack_group`` without their reads (which the caller does not keep)."""
    packs = _pack_group(net, space, gk, g, targets, mode, N, A, by_reader, readers, per_reader=per_reader)
    return [(cost, (m, counts, neuron, count, bins, aim)) for cost, (m, counts, neuron, count, _, bins, aim) in packs]


COPY_WEIGHT = 4.0  # an extra instance of an upstream neuron, in neuron slots (see _pack_group)


def _pack_group(net: DeployedNetwork, space: KeySpace, gk: GroupKeys, g: int, targets: np.ndarray, mode: str,
                N: int, A: int, by_reader: bool = False, readers: sp.csr_matrix | None = None,
                per_reader: bool = False) -> list[tuple[tuple[float, ...], tuple]]:
    """Greedy packings of one group in one fan-out mode (as packed, and compacted to fewer cores),
    each with its estimated cost: cores, plus splitter neurons and the axons asked of earlier
    groups, in cores; ties: fewest core-to-reader links. An upstream neuron asked for by two cores
    needs a second instance, which costs more than its neuron slot (the copy must sit on a core
    holding all the lines it reads, often a new core), so extra instances weigh ``COPY_WEIGHT``
    slots. ``by_reader`` packs neurons read by the same cores together (see ``greedy_pack``).
    ``per_reader`` (copy mode) makes the copies of a neuron for each reader core an item of their
    own, aimed at that reader: a core then holds the copies that feed few cores (each copy brings
    the neuron's input axons along), instead of every copy of its neurons, which feed every core
    that reads any of them."""
    group = net.groups[g]
    counts = instance_counts(targets, group.output_class >= 0, mode, N)
    item_aim = None
    if per_reader:
        item_neuron, item_count, item_aim = _chunk_by_reader(readers, group.output_class >= 0, N)
        item_readers = sp.csr_matrix((np.ones(int((item_aim >= 0).sum()), np.int64),
                                      (np.flatnonzero(item_aim >= 0), item_aim[item_aim >= 0])),
                                     shape=(item_aim.size, readers.shape[1]))
    else:
        item_neuron, item_count = _chunk(counts, N)
        item_readers = readers[item_neuron] if readers is not None else None
    reads = gk.reads[item_neuron]
    start = greedy_pack(reads, item_count, A, N, item_readers if by_reader else None)
    compacted = compact_pack(reads, item_count, start, A, N)
    from_neurons = space.source_of(gk.keys) >= space.num_inputs
    distinct = int(from_neurons[np.bincount(reads.indices, minlength=reads.shape[1]) > 0].sum())
    splitters = int(targets[targets >= 2].sum()) if mode == "splitter" else 0
    out = []
    for bins in ([start, compacted] if len(compacted) < len(start) else [compacted]):
        upstream = int(from_neurons[bin_columns(reads, bins)[1]].sum())
        cost = len(bins) + (splitters + distinct + COPY_WEIGHT * (upstream - distinct)) / N
        links = bin_columns(item_readers, bins)[0].size if item_readers is not None else 0
        out.append(((cost, len(bins), links), (mode, counts, item_neuron, item_count, reads, bins, item_aim)))
    return out


def check_capacity(net: DeployedNetwork, keys: list[GroupKeys], grow_board: bool) -> None:
    """Stop before any packing when the network cannot fit: a neuron reading more distinct axons
    than a core has, or (unless the board may grow) more neurons than the chip's board holds
    (every deployed neuron takes at least one neuron slot). The error names the widest layers,
    the numbers and the remedies."""
    chip = net.chip
    A, N = chip.axons_per_core, chip.neurons_per_core
    for g, gk in enumerate(keys):
        _check_fan_in(net, g, gk, A)
    needed = math.ceil(net.num_neurons / N)
    if grow_board or needed <= chip.max_cores:
        return
    widest = sorted(net.groups, key=lambda group: -group.size)[:3]
    layers = "; ".join(f"{group.name!r} (layer {group.layer!r}) {group.size} neurons, at least "
                       f"{math.ceil(group.size / N)} cores" for group in widest)
    bx, by = smallest_board(chip, needed)
    raise ResourceError(
        f"partition: the program needs {needed} cores or more: the deployed network has {net.num_neurons} neurons "
        f"and a core holds {N}; the board of chip spec {chip.name!r} ({chip.board_x} x {chip.board_y} chips of "
        f"{chip.mesh_x} x {chip.mesh_y} cores) has {chip.max_cores}. Widest layers: {layers}. Remedies: compile "
        f"with --chip truenorth-auto (the smallest board that fits is at least {bx} x {by} chips, "
        f"--chip truenorth-{bx}x{by}), or make the widest layers narrower")


def _check_fan_in(net: DeployedNetwork, g: int, gk: GroupKeys, A: int) -> None:
    fan_in = gk.fan_in
    if fan_in.size and int(fan_in.max()) > A:
        group = net.groups[g]
        worst = int(np.argmax(fan_in))
        raise ResourceError(
            f"group {group.name!r} (layer {group.layer!r}): neuron {worst} reads {int(fan_in[worst])} distinct "
            f"axons (fan-in), a core has {A} (axons_per_core); {int((fan_in > A).sum())} of its {group.size} "
            f"neurons exceed it, so the layer cannot map exactly. Remedies: make the layer grouped or "
            f"block-sparse so each neuron reads at most {A} inputs (as in Esser et al. 2016), or binarize "
            f"with binarize_lsq and fewer inputs per neuron")


def _chunk_by_reader(readers: sp.csr_matrix, output: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items of copy mode split by reader: per neuron one item per reader core (one copy per axon
    it feeds there, in runs of at most N), aimed at that core, one for its output port, and one
    copy for a neuron with neither. Returns (neuron, copies, aimed core or -1) per item."""
    readers = readers.tocsr()
    size = readers.shape[0]
    entry_neuron = np.repeat(np.arange(size, dtype=np.int64), np.diff(readers.indptr))
    neuron, count, which = _split_runs(entry_neuron, np.asarray(readers.data, np.int64), N)
    aim = np.asarray(readers.indices, np.int64)[which]
    alone = np.flatnonzero(np.asarray(output, bool) | (np.diff(readers.indptr) == 0))  # a port, or no reader
    # each neuron's reader items in reader order, then its port item (a stable sort by neuron)
    neuron = np.concatenate([neuron, alone])
    order = np.argsort(neuron, kind="stable")
    count = np.concatenate([count, np.ones(alone.size, np.int64)])
    aim = np.concatenate([aim, np.full(alone.size, -1, np.int64)])
    return neuron[order], count[order], aim[order]


def _chunk(counts: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
    """Items: each neuron's instances in runs of at most N."""
    neuron, count, _ = _split_runs(np.arange(len(counts), dtype=np.int64), np.asarray(counts, np.int64), N)
    return neuron, count


def _split_runs(owner: np.ndarray, counts: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each ``counts[i]`` split as ``_runs`` does, in order: (owner, run length, i) per run."""
    runs = -(-counts // N)  # a count of 0 makes no run
    which = np.repeat(np.arange(counts.size, dtype=np.int64), runs)
    first_run = np.cumsum(runs) - runs
    index = np.arange(which.size, dtype=np.int64) - first_run[which]  # the run's place among its owner's runs
    length = np.minimum(N, counts[which] - index * N)
    return owner[which], length.astype(np.int64), which


def _runs(instances: int, N: int) -> list[int]:
    """``instances`` split into runs of at most N: [N, N, ..., the rest]."""
    return [N] * (instances // N) + ([instances % N] if instances % N else [])


def network_families(net: DeployedNetwork) -> list[int]:
    """Per group, a label shared by the groups connected to it through lines (the input aside):
    the separately trained copies of an ensemble are different families."""
    index = {group.name: i for i, group in enumerate(net.groups)}
    parent = list(range(len(net.groups)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for lines in net.lines:
        if lines.source in index and lines.target in index:
            parent[root(index[lines.source])] = root(index[lines.target])
    return [root(i) for i in range(len(net.groups))]


def bin_columns(matrix: sp.csr_matrix, bins: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct columns the rows of each bin use, as (bin, column) pairs sorted by bin, then
    column. Rows are gathered straight from the CSR arrays (a row slice of ``matrix`` per bin
    costs far more for small bins; one sort of all pairs at once, more for large ones)."""
    matrix = sp.csr_matrix(matrix)
    indptr, indices = matrix.indptr, matrix.indices
    scratch = np.empty(matrix.shape[1], np.int64)
    columns = [distinct_columns(gather_columns(indptr, indices, np.asarray(b, np.int64)), scratch) for b in bins]
    sizes = [c.size for c in columns]
    owner = np.repeat(np.arange(len(bins), dtype=np.int64), sizes)
    return owner, np.concatenate(columns + [np.zeros(0, np.int64)]).astype(np.int64)


def _place_bins(plan: Plan, space: KeySpace, g: int, gk: GroupKeys, reads: Any, item_neuron: np.ndarray,
                item_count: np.ndarray, bins: list[list[int]], merge: bool, A: int, N: int,
                family: list[int] | None = None, item_aim: np.ndarray | None = None) -> list[int]:
    """Add a group's bins as cores (merged into a partly used core of another group when both
    fit, and when that group belongs to another family only if they share axons: merging
    unconnected networks for slots alone saves a few cores but ties their placements together)
    and record the demands; returns the cores that hold the group."""
    if item_aim is None:
        item_aim = np.full(item_neuron.size, -1, np.int64)
    label = MIXED if family is None else family[g]
    owner, columns = bin_columns(reads, bins)
    per_bin = np.split(gk.keys[columns], np.searchsorted(owner, np.arange(1, len(bins))))
    contents = [(members, set(keys.tolist()), int(item_count[members].sum())) for members, keys in zip(bins, per_bin)]
    home = [-1] * len(contents)
    item_neuron, item_count, item_aim = item_neuron.tolist(), item_count.tolist(), item_aim.tolist()  # read per member
    if merge:  # emptiest bins first, each into the best partly used core of another group
        hosts = MergeHosts(plan, len(plan.cores), None if family is None else label, A, N)
        for b in sorted(range(len(contents)), key=lambda b: (contents[b][2] + len(contents[b][1]), b)):
            home[b] = hosts.best(contents[b][1], contents[b][2])
            if home[b] >= 0:
                _fill(plan, space, home[b], g, contents[b], item_neuron, item_count, item_aim, label)
                hosts.update(home[b])
    for b in range(len(contents)):
        if home[b] < 0:
            home[b] = plan.new_core()
            _fill(plan, space, home[b], g, contents[b], item_neuron, item_count, item_aim, label)
    return sorted(set(home))


def _fill(plan: Plan, space: KeySpace, core: int, g: int, content: tuple[list[int], set[int], int],
          item_neuron: list[int], item_count: list[int], item_aim: list[int], label: int) -> None:
    members, keys, neurons = content
    plan.cores[core].members.extend([(g, item_neuron[i], item_count[i]) for i in members])
    plan.cores[core].aims.extend([item_aim[i] for i in members])
    plan.cores[core].neurons += neurons
    plan.join_family(core, label)
    plan.add_keys(core, keys, space)


class MergeHosts:
    """The cores a group's bins may merge into (the first ``existing`` ones: other groups'), as
    arrays of their used neurons and axons and whether they hold only the group's family, so that
    choosing a host costs a few vectorized operations over the cores plus a look-up of the cores
    that carry each of the bin's axons (``Plan.key_cores``), not a scan of every core's key set."""

    def __init__(self, plan: Plan, existing: int, family: int | None, A: int, N: int) -> None:
        self.plan, self.existing, self.A, self.N = plan, existing, A, N
        cores = plan.cores[:existing]
        self.neurons = np.array([c.neurons for c in cores], np.int64)
        self.axons = np.array([c.axons for c in cores], np.int64)
        # a core of an unrelated network qualifies only when the bin shares axons with it
        self.related = (np.ones(existing, bool) if family is None else
                        np.isin(np.array(plan.core_family[:existing], np.int64), [family, EMPTY]))

    def best(self, keys: set[int], neurons: int) -> int:
        """The core that can also take a bin of ``neurons`` slots reading ``keys``, sharing the most
        axons with it, then the fullest, then the first; -1 when none can."""
        if self.existing == 0:
            return -1
        key_cores = self.plan.key_cores
        held = np.array([c for k in key_cores.keys() & keys for c in key_cores[k]], np.int64)  # only carried keys
        shared = np.bincount(held[held < self.existing], minlength=self.existing)
        ok = ((self.neurons + neurons <= self.N) & (np.maximum(self.axons, len(keys)) <= self.A)
              & (self.axons + len(keys) - shared <= self.A) & ((shared > 0) | self.related))
        candidates = np.flatnonzero(ok)
        if candidates.size == 0:
            return -1
        most = shared[candidates]
        candidates = candidates[most == most.max()]
        fullest = self.neurons[candidates]
        return int(candidates[np.argmax(fullest == fullest.max())])

    def update(self, core: int) -> None:
        """Refresh the figures of ``core`` after a bin went into it."""
        content = self.plan.cores[core]
        self.neurons[core] = content.neurons
        self.axons[core] = content.axons
        self.related[core] = self.related[core] and self.plan.core_family[core] != MIXED


def _make_splits(plan: Plan, net: DeployedNetwork, space: KeySpace, topo: list[int], N: int) -> None:
    """Splitter sets for every neuron of a splitter-mode group with two or more targets, in chunks
    of N targets (sorted by core, then key)."""
    wanted = [g for g in topo if plan.group_mode.get(g) == "splitter"]
    if not wanted:
        return
    source, core, key = plan.demand_arrays()
    for g in wanted:
        offset, size = int(space.offsets[g]), net.groups[g].size
        lo, hi = np.searchsorted(source, [offset, offset + size])
        bounds = np.r_[lo, np.flatnonzero(np.diff(source[lo:hi])) + lo + 1, hi].tolist()
        places = list(zip(core[lo:hi].tolist(), key[lo:hi].tolist()))
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b - a < 2:
                continue
            n = int(source[a]) - offset
            for start in range(a, b, N):
                plan.splits.append(SplitSet(group=g, neuron=n, targets=places[start - lo:min(b, start + N) - lo]))


def _place_splits(plan: Plan, A: int, N: int) -> None:
    """Put each splitter set on a core with one free axon and room for its neurons: a core it
    feeds, else any core, else a new splitter core (largest sets first)."""
    order = sorted(range(len(plan.splits)), key=lambda s: (-len(plan.splits[s].targets), s))
    for s in order:
        split = plan.splits[s]
        size = len(split.targets)

        def fits(c: int) -> bool:
            core = plan.cores[c]
            return core.axons + 1 <= A and core.neurons + size <= N

        near = [c for c, _ in split.targets if fits(c)]
        host = near[0] if near else next((c for c in range(len(plan.cores)) if fits(c)), -1)
        if host < 0:
            host = plan.new_core()
        plan.cores[host].splitters.append(s)
        plan.cores[host].neurons += size
        split.core = host


def input_groups(net: DeployedNetwork) -> set[int]:
    """Groups that read input channels directly."""
    index = net.group_index()
    return {index[l.target] for l in net.lines if l.source == INPUT and l.synapses.nnz}

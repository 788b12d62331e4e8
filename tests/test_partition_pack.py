"""Packing, keys and timing helpers of the partition pass."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from crossmap.chip import ChipSpec
from crossmap.deployed import INPUT, DeployedNetwork, Lines, NeuronGroup
from crossmap.errors import ResourceError
from crossmap.passes.partition.keys import group_keys
from crossmap.passes.partition.pack import (compact_pack, greedy_pack, greedy_pack_python, lower_bound, packing_cost,
                                            solve_pack)
from crossmap.passes.partition.plan import instance_count
from crossmap.passes.partition.timing import ShiftConstraints, at_rest

CHIP = ChipSpec.truenorth().replace(axons_per_core=16, neurons_per_core=8)


def check_packing(reads, weights, cores, A, N):
    """Every item exactly once; every core within A distinct keys and N neuron slots."""
    items = sorted(i for core in cores for i in core)
    assert items == list(range(reads.shape[0]))
    for core in cores:
        assert core, "no empty cores"
        assert np.unique(reads[core].indices).size <= A
        assert weights[core].sum() <= N


@st.composite
def instances(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 30)), int(rng.integers(1, 40))
    dense = rng.random((n, k)) < rng.uniform(0.05, 0.5)
    A = int(rng.integers(max(1, dense.sum(axis=1).max()), 45))
    N = int(rng.integers(2, 9))
    weights = rng.integers(1, N + 1, n)
    return sp.csr_matrix(dense), weights, A, N


@settings(max_examples=60, deadline=None)
@given(instances())
def test_greedy_and_compaction_are_valid(instance):
    reads, weights, A, N = instance
    greedy = greedy_pack(reads, weights, A, N)
    check_packing(reads, weights, greedy, A, N)
    compact = compact_pack(reads, weights, greedy, A, N)
    check_packing(reads, weights, compact, A, N)
    assert len(compact) <= len(greedy)
    assert len(compact) >= lower_bound(int(weights.sum()), np.unique(reads.indices).size, A, N)


def test_greedy_keeps_neurons_of_one_patch_together():
    patches = [np.arange(0, 8), np.arange(4, 12), np.arange(8, 16)]
    rng = np.random.default_rng(0)
    owner = rng.permutation(np.repeat(np.arange(3), 4))  # 12 neurons, 4 per patch, shuffled
    rows = [patches[p] for p in owner]
    reads = sp.csr_matrix((np.ones(sum(r.size for r in rows), bool),
                           (np.repeat(np.arange(12), [r.size for r in rows]), np.concatenate(rows))), shape=(12, 16))
    cores = greedy_pack(reads, np.ones(12, int), 8, 4)
    assert len(cores) == 3
    assert sorted(sorted(set(owner[c].tolist())) for c in cores) == [[0], [1], [2]]


def test_reader_aware_packing_puts_neurons_of_one_reader_together():
    # 8 neurons with an axon each; even ones are read by core A, odd ones by core B
    reads = sp.csr_matrix(np.eye(8, dtype=bool))
    readers = sp.csr_matrix((np.ones(8, int), (np.arange(8), np.arange(8) % 2)), shape=(8, 2))
    plain = greedy_pack(reads, np.ones(8, int), 4, 4)
    assert sorted(map(sorted, plain)) == [[0, 1, 2, 3], [4, 5, 6, 7]]  # axon order: each core feeds A and B
    aware = greedy_pack(reads, np.ones(8, int), 4, 4, targets=readers)
    assert sorted(map(sorted, aware)) == [[0, 2, 4, 6], [1, 3, 5, 7]]  # one reader per core


def test_compaction_merges_a_bad_start():
    reads = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]], bool))
    cores = compact_pack(reads, np.ones(3, int), [[0], [1], [2]], 3, 3)
    assert len(cores) == 1


def test_compaction_leaves_a_full_packing_alone():
    reads = sp.csr_matrix(np.eye(4, dtype=bool))
    start = [[0, 1], [2, 3]]
    assert compact_pack(reads, np.ones(4, int), start, 2, 2) == start


def test_solver_improves_a_bad_packing_and_reports_nothing_better_for_an_optimal_one():
    reads = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], bool))
    weights = np.ones(4, int)
    cost = np.ones(4, int)
    bad = [[0, 2], [1, 3]]  # two cores of 4 axons each; optimal puts twins together (2 + 2 axons)
    result = solve_pack(reads, weights, cost, 4, 2, bad, time_limit=5.0)
    assert result.cores is not None
    check_packing(reads, weights, result.cores, 4, 2)
    assert packing_cost(reads, result.cores, cost) == 4 < packing_cost(reads, bad, cost) == 8
    again = solve_pack(reads, weights, cost, 4, 2, result.cores, time_limit=5.0)
    assert again.cores is None and again.objective_after == again.objective_before


def test_lower_bound():
    assert lower_bound(17, 10, 16, 8) == 3
    assert lower_bound(4, 40, 16, 8) == 3
    assert lower_bound(0, 0, 16, 8) == 0


def test_instance_counts():
    assert [instance_count(k, False, "copy", 8) for k in (0, 1, 3)] == [1, 1, 3]
    assert instance_count(3, True, "copy", 8) == 4
    assert [instance_count(k, False, "splitter", 8) for k in (0, 1, 3, 8, 9)] == [1, 1, 1, 1, 2]
    assert instance_count(1, True, "splitter", 8) == 2 and instance_count(0, True, "splitter", 8) == 1


def test_keys_separate_types_and_repeats():
    a = NeuronGroup.make("a", np.ones((2, 4), int), alpha=1, chip=CHIP)
    syn = sp.csr_matrix(np.array([[1, 0], [1, 1], [1, 0], [0, 1]], bool))
    # lines: input 0 type 0 (twice onto neuron 0), input 0 type 1, input 1 type 0
    lines = Lines(INPUT, "a", np.array([0, 0, 0, 1]), np.array([0, 0, 1, 0]), syn)
    net = DeployedNetwork(CHIP, 2, [a], [lines], num_classes=1).validate()
    space, keys = group_keys(net)
    assert space.multiplicity == 2
    gk = keys[0]
    assert gk.fan_in.tolist() == [3, 2]  # neuron 0: (in0,t0,#0), (in0,t0,#1), (in0,t1); neuron 1: (in0,t0), (in1,t0)
    assert sorted(space.source_of(gk.keys).tolist()) == [0, 0, 0, 1]
    assert sorted(space.type_of(gk.keys).tolist()) == [0, 0, 0, 1]


def test_at_rest():
    rest = NeuronGroup.make("r", np.zeros((2, 4), int), alpha=2, leak=[0, -1], chip=CHIP)
    assert at_rest(rest, CHIP)  # V stays 0 (negative leak is floored at -beta = 0)
    assert not at_rest(NeuronGroup.make("l", np.zeros((1, 4), int), alpha=2, leak=1, chip=CHIP), CHIP)
    assert not at_rest(NeuronGroup.make("f", np.zeros((1, 4), int), alpha=1, initial_v=1, chip=CHIP), CHIP)
    assert not at_rest(NeuronGroup.make("d", np.zeros((1, 4), int), alpha=2, leak=-1, beta=5, chip=CHIP), CHIP)


def test_shift_constraints():
    cons = ShiftConstraints(num_groups=3)
    cons.split(0, [[1]], delay=1, chip=CHIP)  # 0 -> 1 through a splitter: needs 2 ticks, has 1
    cons.direct(1, [2], delay=1, chip=CHIP)
    cons.direct(0, [2], delay=1, chip=CHIP)  # a skip connection 0 -> 2 gets the extra tick too
    assert cons.solve(["a", "b", "c"], CHIP) == [0, 1, 1]
    cons.pinned[1] = "it is pinned for the test"
    with pytest.raises(ResourceError, match="group 'b' would have to start 1 tick.*pinned for the test"):
        cons.solve(["a", "b", "c"], CHIP)
    narrow = CHIP.replace(delay_max=1)
    cons = ShiftConstraints(num_groups=2)
    cons.split(0, [[1]], delay=1, chip=narrow)
    cons.within(0, 1, 0, 0)
    with pytest.raises(ResourceError, match="cannot be balanced"):
        cons.solve(["a", "b"], narrow)


def plain_greedy_pack(reads, weights, max_axons, max_neurons, targets=None):
    """The textbook greedy_pack: open a core with the first free item in structural order, then
    add the free item that fits with the fewest new reader cores, then new axons, then rank,
    scoring every item at every step."""
    from crossmap.passes.partition.pack import structural_order
    reads = sp.csr_matrix(reads)
    n = reads.shape[0]
    rank = structural_order(reads)
    targets = sp.csr_matrix(targets if targets is not None else (n, 1), dtype=np.int64)
    assigned = np.zeros(n, bool)
    cores = []
    while not assigned.all():
        members = [int(np.argsort(np.where(assigned, n + rank, rank))[0])]
        while True:
            item = members[-1]
            assigned[item] = True
            keys = np.unique(reads[members].indices)
            fed = np.unique(targets[members].indices)
            free_axons = max_axons - keys.size
            free_neurons = max_neurons - int(weights[members].sum())
            best = None
            for i in np.flatnonzero(~assigned):
                new = np.setdiff1d(reads[i].indices, keys).size
                if free_neurons <= 0 or new > free_axons or weights[i] > free_neurons:
                    continue
                key = (np.setdiff1d(targets[i].indices, fed).size, new, rank[i])
                if best is None or key < best[0]:
                    best = (key, int(i))
            if best is None:
                break
            members.append(best[1])
        cores.append(members)
    return cores


@settings(max_examples=80, deadline=None)
@given(instances(), st.integers(0, 10_000), st.booleans(), st.sampled_from([1, 3, 4096]))
def test_greedy_pack_equals_the_plain_greedy(instance, seed, with_targets, chunk):
    from crossmap.passes.partition import pack as partition_pack
    reads, weights, A, N = instance
    n = reads.shape[0]
    targets = None
    if with_targets:
        rng = np.random.default_rng(seed)
        targets = sp.csr_matrix(rng.random((n, 6)) < 0.3)
    plain = plain_greedy_pack(reads, weights, A, N, targets)
    assert greedy_pack(reads, weights, A, N, targets) == plain
    saved, partition_pack.UNTOUCHED_CHUNK = partition_pack.UNTOUCHED_CHUNK, chunk
    try:
        assert greedy_pack_python(reads, weights, A, N, targets) == plain
    finally:
        partition_pack.UNTOUCHED_CHUNK = saved


def random_pack_instance(rng, max_items):
    """Reads (random, or drawn from a few key sets so items repeat, with some empty items),
    weights (1, random, or 1 with some items that fill a core alone), A, N and optional targets."""
    n, k = int(rng.integers(1, max_items)), int(rng.integers(1, max(2, max_items // 2)))
    if rng.random() < 0.5:
        dense = rng.random((n, k)) < rng.uniform(0.02, 0.5)
    else:
        shapes = rng.random((int(rng.integers(1, 8)), k)) < rng.uniform(0.05, 0.6)
        dense = shapes[rng.integers(0, shapes.shape[0], n)]
    dense[rng.random(n) < 0.1] = False
    widest = int(dense.sum(axis=1).max())
    A = int(rng.integers(max(1, widest), 3 * max(1, widest) + 2))
    N = int(rng.integers(1, 12))
    kind = rng.random()
    if kind < 0.4:
        weights = rng.integers(1, N + 1, n)
    elif kind < 0.7:
        weights = np.where(rng.random(n) < 0.2, N, 1)
    else:
        weights = np.ones(n, np.int64)
    targets = None
    if rng.random() < 0.5:
        targets = sp.csr_matrix(rng.random((n, int(rng.integers(1, 8)))) < rng.uniform(0.05, 0.5))
    return sp.csr_matrix(dense), weights, A, N, targets


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_compiled_greedy_pack_equals_the_plain_greedy(seed):
    reads, weights, A, N, targets = random_pack_instance(np.random.default_rng(seed), 40)
    assert greedy_pack(reads, weights, A, N, targets) == plain_greedy_pack(reads, weights, A, N, targets)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_compiled_greedy_pack_equals_the_numpy_one_on_larger_groups(seed):
    reads, weights, A, N, targets = random_pack_instance(np.random.default_rng(seed), 1500)
    assert greedy_pack(reads, weights, A, N, targets) == greedy_pack_python(reads, weights, A, N, targets)


def test_greedy_pack_without_numba_runs_the_numpy_loop(monkeypatch):
    from crossmap.passes.partition import pack as partition_pack

    reads, weights, A, N, targets = random_pack_instance(np.random.default_rng(5), 200)
    monkeypatch.setattr(partition_pack, "numba_available", lambda: False)
    monkeypatch.setattr(partition_pack, "greedy_pack_python", lambda *args: "numpy")
    assert greedy_pack(reads, weights, A, N, targets) == "numpy"


def test_greedy_pack_of_nothing():
    assert greedy_pack(sp.csr_matrix((0, 5), dtype=bool), np.zeros(0, np.int64), 4, 4) == []
    assert greedy_pack(sp.csr_matrix((3, 0), dtype=bool), np.ones(3, np.int64), 4, 2) == [[0, 1], [2]]


def test_compaction_too_large_for_its_table_keeps_the_packing(monkeypatch):
    from crossmap.passes.partition import pack as partition_pack

    reads = sp.csr_matrix(np.eye(6, dtype=bool))
    cores = [[0], [1], [2], [3], [4], [5]]
    assert len(compact_pack(reads, np.ones(6, int), cores, 8, 8)) == 1
    monkeypatch.setattr(partition_pack, "COMPACT_MAX_ENTRIES", 35)
    assert compact_pack(reads, np.ones(6, int), cores, 8, 8) == cores


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_greedy_pack_equals_the_plain_greedy_when_items_repeat(seed, with_targets):
    """Items drawn from a few key sets (as the output channels of one convolution patch), so many
    join a core without new axons or readers."""
    rng = np.random.default_rng(seed)
    n, k, patterns = int(rng.integers(2, 40)), int(rng.integers(1, 30)), int(rng.integers(1, 5))
    shapes = rng.random((patterns, k)) < rng.uniform(0.05, 0.6)
    dense = shapes[rng.integers(0, patterns, n)]
    dense[rng.random(n) < 0.1] = False  # a few items read nothing
    A = int(rng.integers(max(1, dense.sum(axis=1).max()), 35))
    N = int(rng.integers(2, 12))
    weights = rng.integers(1, N + 1, n) if rng.random() < 0.5 else np.ones(n, np.int64)
    targets = sp.csr_matrix(rng.random((n, 4)) < 0.2) if with_targets else None
    reads = sp.csr_matrix(dense)
    assert greedy_pack(reads, weights, A, N, targets) == plain_greedy_pack(reads, weights, A, N, targets)


def plain_conflict_bound(reads, max_axons, limit=2000):
    """The clique of conflict_bound grown item by item, each checked against every member."""
    reads = sp.csr_matrix(reads)
    fan_in = np.diff(reads.indptr)
    if fan_in.size == 0:
        return 0
    clique = []
    for i in np.argsort(-fan_in, kind="stable")[:limit].tolist():
        if 2 * fan_in[i] <= max_axons:
            continue
        keys = set(reads[i].indices.tolist())
        if all(len(keys | set(reads[c].indices.tolist())) > max_axons for c in clique):
            clique.append(i)
    return max(len(clique), 1)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([3, 2000]))
def test_conflict_bound_is_the_plain_clique(seed, limit):
    from crossmap.passes.partition.pack import conflict_bound
    rng = np.random.default_rng(seed)
    n, k, A = int(rng.integers(0, 60)), int(rng.integers(1, 50)), int(rng.integers(2, 40))
    reads = sp.csr_matrix(rng.random((n, k)) < rng.uniform(0.1, 0.9))
    assert conflict_bound(reads, A, limit) == plain_conflict_bound(reads, A, limit)


def test_compiled_axon_freeing_makes_the_moves_of_the_numpy_one():
    from crossmap.passes.partition import pack as partition_pack

    moves = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        reads, weights, A, N, _ = random_pack_instance(rng, int(rng.integers(20, 400)))
        order = rng.permutation(reads.shape[0]).tolist()  # a poor packing: items dealt out at random
        cores, load = [], N
        for i in order:
            if load + weights[i] > N:
                cores.append([])
                load = 0
            cores[-1].append(i)
            load += weights[i]
        results = []
        alive = rng.random(len(cores)) < 0.9
        for compiled in (True, False):
            members_of = [list(c) for c in cores]
            count = np.zeros((len(cores), reads.shape[1]), np.int32)
            for c, members in enumerate(members_of):
                count[c] = np.asarray(reads[members].sum(axis=0)).reshape(-1)
            neurons = np.array([weights[m].sum() for m in members_of], np.int64)
            free = partition_pack._free_shared_axons if compiled else partition_pack._free_shared_axons_python
            free(reads, weights, members_of, count, neurons, alive.copy(), N)
            results.append((members_of, count, neurons))
        (one, count_one, neurons_one), (two, count_two, neurons_two) = results
        assert one == two
        np.testing.assert_array_equal(count_one, count_two)
        np.testing.assert_array_equal(neurons_one, neurons_two)
        moves += sum(a != b for a, b in zip(one, cores))
    assert moves > 0  # the instances did strand items

"""Packing items (neurons, or runs of copies of one neuron) into cores of at most A axons and N
neurons, where an item needs a set of axons and items on one core share the axons they have in
common.

``greedy_pack`` is the fast packing used for every size: it opens a core with the first free item
in structural order (smallest axon key first, so lowered convolutions are swept in raster order
and neurons over one patch come together) and then keeps adding the item that brings the fewest
new axons. ``solve_pack`` improves a packing of a small instance with OR-Tools CP-SAT: fewest
cores first, then the fewest (traffic-weighted) axons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


def structural_order(reads: sp.csr_matrix) -> np.ndarray:
    """Rank of each item: by its smallest key, then its largest key, then its index."""
    n = reads.shape[0]
    starts, ends = reads.indptr[:-1], reads.indptr[1:]
    empty = starts == ends
    first = np.full(n, reads.shape[1], np.int64)
    last = first.copy()
    first[~empty] = reads.indices[starts[~empty]]
    last[~empty] = reads.indices[ends[~empty] - 1]
    order = np.lexsort((np.arange(n), last, first))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    return rank


def greedy_pack(reads: sp.csr_matrix, weights: np.ndarray, max_axons: int, max_neurons: int,
                targets: sp.csr_matrix | None = None) -> list[list[int]]:
    """Items per core. ``reads`` (items x keys, sorted indices) gives the axons each item needs,
    ``weights`` the neuron slots it takes; every item must fit an empty core on its own.

    With ``targets`` (items x reader cores), the next item is the one that adds the fewest reader
    cores the core does not feed yet, then the fewest new axons: neurons read by the same core
    come together (a core feeds few cores, so the core graph has few edges), at the price of
    more axons per core.

    The choice is the smallest (new reader cores, new axons, structural rank) among the free
    items that fit. Items that share no axon and no reader with the core yet score their static
    (reader cores, fan-in, rank); the best of them is found by a pointer that only moves forward
    while a core fills (a core only gets fuller, so an item skipped once never fits it again),
    and only the items the core touches are scored afresh at each step."""
    reads = reads.tocsr()
    reads.sort_indices()
    n_items, n_keys = reads.shape
    weights = np.asarray(weights, np.int64)
    fan_in = np.diff(reads.indptr).astype(np.int64)
    readers = reads.T.tocsr()
    target_deg = np.zeros(n_items, np.int64)
    if targets is not None:
        targets = sp.csr_matrix(targets, dtype=np.int64, copy=True)
        targets.data[:] = 1
        target_deg = np.diff(targets.indptr).astype(np.int64)
        fed_by = targets.T.tocsr()
    rank = structural_order(reads)
    by_rank = np.argsort(rank)
    static = np.lexsort((rank, fan_in, target_deg))  # untouched items, best first
    assigned = np.zeros(n_items, bool)
    cores: list[list[int]] = []
    next_seed = 0
    left = n_items
    while left:
        while assigned[by_rank[next_seed]]:
            next_seed += 1
        overlap = np.zeros(n_items, np.int64)
        shared_targets = np.zeros(n_items, np.int64)
        touched = np.zeros(n_items, bool)
        touched_ids = np.zeros(0, np.int64)
        in_core = np.zeros(n_keys, bool)
        fed = np.zeros(targets.shape[1] if targets is not None else 0, bool)
        counts = Counts(fan_in, overlap, target_deg, shared_targets, rank, weights)
        pointer = 0
        axons = neurons = 0
        members: list[int] = []
        item = int(by_rank[next_seed])
        while item >= 0:
            members.append(item)
            assigned[item] = True
            left -= 1
            keys = reads.indices[reads.indptr[item]:reads.indptr[item + 1]]
            fresh = keys[~in_core[keys]]
            in_core[fresh] = True
            axons += fresh.size
            neurons += int(weights[item])
            reached = []  # items that now share an axon or a reader core with the core (repeats counted)
            if fresh.size:
                reached.append(np.concatenate([readers.indices[readers.indptr[k]:readers.indptr[k + 1]] for k in fresh]))
                np.add.at(overlap, reached[-1], 1)
            if targets is not None:
                outs = targets.indices[targets.indptr[item]:targets.indptr[item + 1]]
                fresh_out = outs[~fed[outs]]
                fed[fresh_out] = True
                if fresh_out.size:
                    reached.append(np.concatenate([fed_by.indices[fed_by.indptr[t]:fed_by.indptr[t + 1]]
                                                   for t in fresh_out]))
                    np.add.at(shared_targets, reached[-1], 1)
            if reached:
                hits = np.unique(np.concatenate(reached))
                hits = hits[~touched[hits]]
                touched[hits] = True
                touched_ids = np.concatenate([touched_ids, hits])
            free_axons, free_neurons = max_axons - axons, max_neurons - neurons
            if free_neurons <= 0:
                break
            item, pointer = _best_addition(counts, touched_ids, assigned, touched, static, pointer, free_axons,
                                           free_neurons)
        cores.append(members)
    return cores


UNTOUCHED_CHUNK = 4096  # static-order entries checked per vectorized step of the pointer


@dataclass
class Counts:
    """Per item, during ``greedy_pack``: axons (``fan_in``) and reader cores (``target_deg``) it
    needs, how many of them the open core already has (``overlap``, ``shared_targets``), its
    structural ``rank`` and its neuron slots (``weights``)."""

    fan_in: np.ndarray
    overlap: np.ndarray
    target_deg: np.ndarray
    shared_targets: np.ndarray
    rank: np.ndarray
    weights: np.ndarray


def _best_addition(c: Counts, touched_ids: np.ndarray, assigned: np.ndarray, touched: np.ndarray,
                   static: np.ndarray, pointer: int, free_axons: int, free_neurons: int) -> tuple[int, int]:
    """The free item that fits with the smallest (new reader cores, new axons, rank), or -1, and
    the advanced pointer into ``static`` (items the core has not touched, best first)."""
    best, best_key = -1, None
    if touched_ids.size:
        ids = touched_ids
        new = c.fan_in[ids] - c.overlap[ids]
        fits = ~assigned[ids] & (new <= free_axons) & (c.weights[ids] <= free_neurons)
        if fits.any():
            new_targets = c.target_deg[ids] - c.shared_targets[ids]
            span = c.rank.size + 1  # (new reader cores, new axons, rank) as one integer, lexicographic
            score = (new_targets * (free_axons + 1) + new) * span + c.rank[ids]
            pick = int(np.argmin(np.where(fits, score, np.iinfo(np.int64).max)))
            best = int(ids[pick])
            best_key = (int(new_targets[pick]), int(new[pick]), int(c.rank[best]))
    while pointer < static.size:
        chunk = static[pointer:pointer + UNTOUCHED_CHUNK]
        ok = (~assigned[chunk] & ~touched[chunk] & (c.fan_in[chunk] <= free_axons)
              & (c.weights[chunk] <= free_neurons))
        hit = np.flatnonzero(ok)
        if hit.size:
            pointer += int(hit[0])
            item = int(static[pointer])
            key = (int(c.target_deg[item]), int(c.fan_in[item]), int(c.rank[item]))
            if best_key is None or key < best_key:
                best = item
            break
        pointer += chunk.size
    return best, pointer


def compact_pack(reads: sp.csr_matrix, weights: np.ndarray, cores: list[list[int]], max_axons: int,
                 max_neurons: int, tries: int = 4) -> list[list[int]]:
    """Local search after ``greedy_pack``: try to empty one of the ``tries`` emptiest cores by
    moving each of its items to the other core where it adds the fewest axons; repeat while a core
    disappears. The result never has more cores."""
    reads = reads.tocsr()
    weights = np.asarray(weights, np.int64)
    K = len(cores)
    count = np.zeros((K, reads.shape[1]), np.int32)  # readers of each key on each core
    neurons = np.zeros(K, np.int64)
    for c, members in enumerate(cores):
        for i in members:
            count[c, reads.indices[reads.indptr[i]:reads.indptr[i + 1]]] += 1
        neurons[c] = weights[members].sum() if members else 0
    axons = (count > 0).sum(axis=1).astype(np.int64)
    alive = np.ones(K, bool)
    members_of = [list(m) for m in cores]
    while alive.sum() > 1:
        fill = neurons / max_neurons + axons / max_axons
        order = [int(c) for c in np.lexsort((np.arange(K), fill)) if alive[c]][:tries]
        if not any(_empty_core(b, reads, weights, members_of, count, neurons, axons, alive, max_axons, max_neurons)
                   for b in order):
            break
    _free_shared_axons(reads, weights, members_of, count, neurons, alive, max_neurons)
    return [members_of[c] for c in range(K) if alive[c]]


def _free_shared_axons(reads: sp.csr_matrix, weights: np.ndarray, members_of: list[list[int]], count: np.ndarray,
                       neurons: np.ndarray, alive: np.ndarray, max_neurons: int) -> None:
    """Move an item to another core that already has every axon it reads (and room for it)
    when that frees axons on its own core. Greedy packing can strand a few neurons of one patch
    on a core beside another patch; each stranded neuron makes every input it reads reach two
    cores (an extra instance upstream). Axon counts never grow, core counts never change."""
    for c in range(len(members_of)):
        if not alive[c]:
            continue
        for i in list(members_of[c]):
            keys = reads.indices[reads.indptr[i]:reads.indptr[i + 1]]
            if keys.size == 0 or not (count[c, keys] == 1).any():
                continue
            hosts = alive & (neurons + weights[i] <= max_neurons) & (count[:, keys] > 0).all(axis=1)
            hosts[c] = False
            if not hosts.any():
                continue
            d = int(np.argmax(hosts))
            count[c, keys] -= 1
            count[d, keys] += 1
            neurons[c] -= weights[i]
            neurons[d] += weights[i]
            members_of[c].remove(i)
            members_of[d].append(i)


def _empty_core(b: int, reads: sp.csr_matrix, weights: np.ndarray, members_of: list[list[int]], count: np.ndarray,
                neurons: np.ndarray, axons: np.ndarray, alive: np.ndarray, max_axons: int, max_neurons: int) -> bool:
    """Move every item of core ``b`` elsewhere, or change nothing; True when ``b`` was emptied."""
    moves: list[tuple[int, int, np.ndarray]] = []
    for i in members_of[b]:
        keys = reads.indices[reads.indptr[i]:reads.indptr[i + 1]]
        new = keys.size - (count[:, keys] > 0).sum(axis=1)
        ok = alive & (np.arange(alive.size) != b) & (neurons + weights[i] <= max_neurons) & (axons + new <= max_axons)
        if not ok.any():
            for c, j, k in reversed(moves):  # undo
                count[c, k] -= 1
                axons[c] = int((count[c] > 0).sum())
                neurons[c] -= weights[j]
            return False
        c = int(np.argmin(np.where(ok, new * (max_neurons + 1) - neurons, np.iinfo(np.int64).max)))
        count[c, keys] += 1
        axons[c] += int(new[c])
        neurons[c] += weights[i]
        moves.append((c, i, keys))
    for c, i, _ in moves:
        members_of[c].append(i)
    members_of[b] = []
    alive[b] = False
    return True


@dataclass
class SolveResult:
    """Outcome of ``solve_pack``: the cores (or None when nothing better was proven or found)."""

    cores: list[list[int]] | None
    status: str
    objective_before: int
    objective_after: int


def packing_cost(reads: sp.csr_matrix, cores: list[list[int]], key_cost: np.ndarray) -> int:
    """Sum over cores of the cost of the distinct keys the core needs."""
    total = 0
    for members in cores:
        keys = np.unique(reads[members].indices) if members else np.zeros(0, np.int64)
        total += int(key_cost[keys].sum())
    return total


def solve_pack(reads: sp.csr_matrix, weights: np.ndarray, key_cost: np.ndarray, max_axons: int,
               max_neurons: int, start: list[list[int]], time_limit: float, seed: int = 0) -> SolveResult:
    """Improve the packing ``start`` with CP-SAT (fewest cores, then least summed key cost, where a
    key used on two cores costs twice). Deterministic: one worker, fixed seed, deterministic time."""
    from ortools.sat.python import cp_model
    from crossmap.solvers import reproducible_solver

    reads = reads.tocsr()
    n_items, n_keys = reads.shape
    K = len(start)
    key_cost = np.asarray(key_cost, np.int64)
    big = int(key_cost.sum()) * K + 1
    before = K * big + packing_cost(reads, start, key_cost)
    model = cp_model.CpModel()
    x = [[model.NewBoolVar(f"x{i}_{c}") for c in range(K)] for i in range(n_items)]
    used_keys = sorted(set(reads.indices.tolist()))
    y = {(k, c): model.NewBoolVar(f"y{k}_{c}") for k in used_keys for c in range(K)}
    u = [model.NewBoolVar(f"u{c}") for c in range(K)]
    for i in range(n_items):
        model.AddExactlyOne(x[i])
        for k in reads.indices[reads.indptr[i]:reads.indptr[i + 1]]:
            for c in range(K):
                model.AddImplication(x[i][c], y[int(k), c])
    for c in range(K):
        model.Add(sum(int(weights[i]) * x[i][c] for i in range(n_items)) <= max_neurons * u[c])
        model.Add(sum(y[k, c] for k in used_keys) <= max_axons * u[c])
        if c + 1 < K:
            model.AddImplication(u[c + 1], u[c])
    model.Minimize(big * sum(u) + sum(int(key_cost[k]) * y[k, c] for k in used_keys for c in range(K)))
    home = {i: c for c, members in enumerate(start) for i in members}
    for i in range(n_items):
        for c in range(K):
            model.AddHint(x[i][c], home[i] == c)
    solver = reproducible_solver(time_limit, seed)
    status = solver.Solve(model)
    name = solver.StatusName(status)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return SolveResult(None, name, before, before)
    cores = [[i for i in range(n_items) if solver.BooleanValue(x[i][c])] for c in range(K)]
    cores = [members for members in cores if members]
    after = len(cores) * big + packing_cost(reads, cores, key_cost)
    if after >= before:
        return SolveResult(None, name, before, before)
    return SolveResult(cores, name, before, after)


def conflict_bound(reads: sp.csr_matrix, max_axons: int, limit: int = 2000) -> int:
    """Cores at least needed because items conflict: two items whose axons together exceed A
    cannot share a core, so a set of pairwise conflicting items (a clique, grown greedily from the
    largest fan-in down over at most ``limit`` items) needs one core each. Only items with more
    than A/2 axons can conflict with each other, plus at most one smaller item."""
    reads = reads.tocsr().astype(np.int32)
    fan_in = np.diff(reads.indptr)
    if fan_in.size == 0:
        return 0
    order = np.argsort(-fan_in, kind="stable")
    big = [int(i) for i in order[:limit] if 2 * fan_in[i] > max_axons]
    clique: list[int] = []
    for i in big:
        if clique:
            shared = (reads[clique] @ reads[i].T).toarray().reshape(-1)
            if np.any(fan_in[clique] + fan_in[i] - shared <= max_axons):
                continue
        clique.append(i)
    return max(len(clique), 1)


def lower_bound(neurons: int, distinct_axons: int, max_axons: int, max_neurons: int) -> int:
    """Cores at least needed: every neuron takes a slot and every distinct axon appears on some core."""
    return max(math.ceil(neurons / max_neurons), math.ceil(distinct_axons / max_axons))

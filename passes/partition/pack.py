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
from typing import Callable

import numpy as np
import scipy.sparse as sp

from crossmap.compiled import numba_available


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


def gather_columns(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The column indices of ``rows`` of a CSR matrix, concatenated (repeats kept)."""
    if rows.size <= 4:  # a few slices cost less than the vectorized gather's dozen array operations
        if rows.size == 1:
            row = int(rows[0])
            return indices[int(indptr[row]):int(indptr[row + 1])]
        return np.concatenate([indices[int(indptr[r]):int(indptr[r + 1])] for r in rows.tolist()]
                              + [indices[:0]])
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    total = int(lengths.sum())
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return indices[np.arange(total) + offsets]


def distinct_columns(columns: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """``np.unique(columns)`` (non-negative integers below ``scratch.size``) without sorting them
    all: each distinct value keeps the last of its positions (written into ``scratch``, whose
    contents do not matter), and only the distinct values are sorted."""
    if columns.size < 64:
        return np.unique(columns)
    positions = np.arange(columns.size, dtype=np.int64)
    scratch[columns] = positions
    return np.sort(columns[scratch[columns] == positions])


def greedy_pack(reads: sp.csr_matrix, weights: np.ndarray, max_axons: int, max_neurons: int,
                targets: sp.csr_matrix | None = None) -> list[list[int]]:
    """Items per core. ``reads`` (items x keys) gives the axons each item needs, ``weights`` the
    neuron slots it takes; every item must fit an empty core on its own.

    A core opens with the first free item in structural order, then takes, one at a time, the
    free item that fits with the smallest (new axons, structural rank). With ``targets`` (items x
    reader cores), the next item is the one that adds the fewest reader cores the core does not
    feed yet, then the fewest new axons: neurons read by the same core come together (a core
    feeds few cores, so the core graph has few edges), at the price of more axons per core.

    The loop runs compiled (``pack_kernel``) at the cost of the items each core touches, not of
    the whole group; without numba, ``greedy_pack_python`` gives the same cores."""
    if not numba_available():
        return greedy_pack_python(reads, weights, max_axons, max_neurons, targets)
    from crossmap.passes.partition import pack_kernel

    reads = sp.csr_matrix(reads)
    reads.sort_indices()
    n_items = reads.shape[0]
    r_ptr, r_ind = reads.indptr.astype(np.int64), reads.indices.astype(np.int64)
    readers = reads.T.tocsr()
    if targets is None:
        targets = sp.csr_matrix((n_items, 0), dtype=np.int64)
    targets = sp.csr_matrix(targets, dtype=np.int64, copy=True)
    targets.sum_duplicates()
    targets.sort_indices()
    fed_by = targets.T.tocsr()
    rank = structural_order(reads)
    static = np.lexsort((rank, np.diff(r_ptr), np.diff(targets.indptr)))
    members, ends = pack_kernel.greedy_pack(
        r_ptr, r_ind, readers.indptr.astype(np.int64), readers.indices.astype(np.int64),
        targets.indptr.astype(np.int64), targets.indices.astype(np.int64),
        fed_by.indptr.astype(np.int64), fed_by.indices.astype(np.int64),
        np.asarray(weights, np.int64), rank, np.argsort(rank), static, np.int64(max_axons), np.int64(max_neurons))
    flat, bounds = members.tolist(), [0] + ends.tolist()
    return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def greedy_pack_python(reads: sp.csr_matrix, weights: np.ndarray, max_axons: int, max_neurons: int,
                       targets: sp.csr_matrix | None = None) -> list[list[int]]:
    """``greedy_pack`` in numpy, for where numba is missing: the same cores.

    The choice is the smallest (new reader cores, new axons, structural rank) among the free
    items that fit. Items that share no axon and no reader with the core yet score their static
    (reader cores, fan-in, rank); the best of them is found by a pointer that only moves forward
    while a core fills (a core only gets fuller, so an item skipped once never fits it again).
    The items the core touches are kept in a candidate list that drops an item for good once it
    no longer fits (its new axons shrink by at most what the core gains, so an item that does not
    fit never fits again); only those are scored at each step, and the per-item counters are
    reset item by item, so a core costs the work of what it touches, not of the whole group.
    Each item's score is one integer kept up to date as the core gains axons and readers; the
    list is filtered only when its best no longer fits. When the best brings nothing new, the
    items after it that bring nothing new either (``free_riders``) join in one step."""
    reads = reads.tocsr()
    reads.sort_indices()
    n_items, n_keys = reads.shape
    weights = np.asarray(weights, np.int64)
    r_ptr, r_ind = reads.indptr.astype(np.int64), reads.indices.astype(np.int64)
    fan_in = np.diff(r_ptr)
    readers = reads.T.tocsr()
    k_ptr, k_ind = readers.indptr.astype(np.int64), readers.indices.astype(np.int64)
    target_deg = np.zeros(n_items, np.int64)
    n_targets = 0
    if targets is not None:
        targets = sp.csr_matrix(targets, dtype=np.int64, copy=True)
        targets.sum_duplicates()
        targets.sort_indices()
        n_targets = targets.shape[1]
        t_ptr, t_ind = targets.indptr.astype(np.int64), targets.indices.astype(np.int64)
        target_deg = np.diff(t_ptr)
        fed_by = targets.T.tocsr()
        f_ptr, f_ind = fed_by.indptr.astype(np.int64), fed_by.indices.astype(np.int64)
    rank = structural_order(reads)
    by_rank = np.argsort(rank)
    static = np.lexsort((rank, fan_in, target_deg))  # untouched items, best first
    static_fan_in, static_weight = fan_in[static], weights[static]
    span = n_items + 1  # (new axons, rank) as one integer, lexicographic
    big = (max_axons + 1) * span  # (new reader cores, new axons, rank) as one integer, for items that fit
    done = np.iinfo(np.int64).max // 4  # the key of an assigned item: never fits
    assigned_above = done // 2  # an assigned item's key stays above this however much it is lowered
    base = target_deg * big + fan_in * span + rank
    key = base.copy()  # per item: (reader cores the open core does not feed, axons it lacks, rank)
    blocked = np.zeros(n_items, bool)  # assigned, or touched by the open core
    scratch = np.empty(n_items, np.int64)
    in_core = np.zeros(n_keys, bool)
    fed = np.zeros(n_targets, bool)
    heaviest = int(weights.max(initial=0))
    weight_of, rank_of = weights.tolist(), rank.tolist()  # read one item at a time
    static_key = list(zip(target_deg[static].tolist(), static_fan_in.tolist(), rank[static].tolist()))
    pool = np.empty(n_items, np.int64)  # the open core's candidates are pool[:size] (each item once per core)
    cores: list[list[int]] = []
    next_seed = 0
    left = n_items
    while left:
        while base[by_rank[next_seed]] == done:
            next_seed += 1
        size = 0  # touched items in pool, some of which may no longer fit
        seen: list[np.ndarray] = []  # every item touched by this core, to reset
        core_keys: list[np.ndarray] = []
        core_outs: list[np.ndarray] = []
        pointer = 0
        axons = neurons = 0
        members: list[int] = []
        item = int(by_rank[next_seed])
        while item >= 0:
            members.append(item)
            base[item] = key[item] = done
            blocked[item] = True
            left -= 1
            keys = r_ind[r_ptr[item]:r_ptr[item + 1]]
            fresh = keys[~in_core[keys]]
            reached = []
            if fresh.size:
                in_core[fresh] = True
                core_keys.append(fresh)
                axons += fresh.size
                hit = gather_columns(k_ptr, k_ind, fresh)
                np.add.at(key, hit, -span)
                reached.append(hit)
            neurons += weight_of[item]
            if targets is not None:
                outs = t_ind[t_ptr[item]:t_ptr[item + 1]]
                fresh_out = outs[~fed[outs]]
                if fresh_out.size:
                    fed[fresh_out] = True
                    core_outs.append(fresh_out)
                    hit = gather_columns(f_ptr, f_ind, fresh_out)
                    np.add.at(key, hit, -big)
                    reached.append(hit)
            for hit in reached:
                new = hit[~blocked[hit]]
                if new.size:
                    new = distinct_columns(new, scratch)
                    blocked[new] = True
                    seen.append(new)
                    pool[size:size + new.size] = new
                    size += new.size
            free_axons, free_neurons = max_axons - axons, max_neurons - neurons
            if free_neurons <= 0:
                break
            candidates = pool[:size]
            best, best_key, s = -1, None, key[candidates]
            if size:
                at = int(np.argmin(s))
                best, k = int(candidates[at]), int(s[at])
                if k >= assigned_above or k % big >= (free_axons + 1) * span or weight_of[best] > free_neurons:
                    # the best no longer fits: drop every candidate that does not (for good), then look again
                    fits = (s < assigned_above) & (s % big < (free_axons + 1) * span)
                    if heaviest > free_neurons:
                        fits &= weights[candidates] <= free_neurons
                    s = s[fits]
                    size = s.size
                    pool[:size] = candidates[fits]
                    candidates = pool[:size]
                    best = -1
                    if size:
                        at = int(np.argmin(s))
                        best, k = int(candidates[at]), int(s[at])
                if best >= 0:
                    best_key = (k // big, (k % big) // span, rank_of[best])
            step = 16
            # the key of the first untouched item that may fit (none that fits comes before it in
            # static order), or above all
            bound = static_key[pointer] if pointer < static.size else (done, 0, 0)
            if best_key is not None and best_key < bound:
                if best_key[:2] == (0, 0):  # it costs nothing: so do the next ones that cost nothing
                    riders = free_riders(candidates, s, span, weights, free_neurons, bound)
                    taken = np.asarray(riders[:-1], np.int64)  # the last one goes the ordinary way
                    members.extend(riders[:-1])
                    base[taken] = key[taken] = done
                    left -= taken.size
                    neurons += int(weights[taken].sum())
                    best = riders[-1]
                item = best
                continue
            while pointer < static.size:
                end = pointer + step
                ok = ~blocked[static[pointer:end]] & (static_fan_in[pointer:end] <= free_axons)
                if heaviest > free_neurons:
                    ok &= static_weight[pointer:end] <= free_neurons
                hit = np.flatnonzero(ok)
                if hit.size:
                    pointer += int(hit[0])
                    if best_key is None or static_key[pointer] < best_key:
                        best = int(static[pointer])
                    break
                pointer = min(end, static.size)
                step = min(2 * step, UNTOUCHED_CHUNK)
            item = best
        cores.append(members)
        for ids in seen:  # reset the keys of the items this core touched
            key[ids] = base[ids]
            blocked[ids] = base[ids] == done
        for keys in core_keys:
            in_core[keys] = False
        for outs in core_outs:
            fed[outs] = False
    return cores


def free_riders(ids: np.ndarray, s: np.ndarray, span: int, weights: np.ndarray, free_neurons: int,
                bound: tuple[int, int, int]) -> list[int]:
    """The items ``greedy_pack_python`` adds next, in order, while each brings no new axon and no new
    reader core: the candidates ``ids`` whose score ``s`` (new readers, new axons, rank as one
    integer) is below ``span``, by rank, each that still fits the free neuron slots, as long as
    its key stays below ``bound`` (the first untouched item that may fit). Adding such an item
    changes no other item's score, so the greedy choice after it is the next one of these."""
    zero = s < span
    order = np.argsort(s[zero], kind="stable")
    riders: list[int] = []
    limit = bound[2] if bound[:2] == (0, 0) else span  # an untouched item that costs nothing comes first
    for item, r in zip(ids[zero][order].tolist(), s[zero][order].tolist()):
        if r >= limit:
            break
        w = int(weights[item])
        if w > free_neurons:
            continue  # it will never fit this core again: it is dropped from the candidates
        riders.append(item)
        free_neurons -= w
        if free_neurons <= 0:
            break
    return riders


UNTOUCHED_CHUNK = 4096  # static-order entries checked per vectorized step of the pointer


COMPACT_MAX_ENTRIES = 2**25  # cores x keys of the count table of compact_pack (128 MiB of int32)


def compact_pack(reads: sp.csr_matrix, weights: np.ndarray, cores: list[list[int]], max_axons: int,
                 max_neurons: int, tries: int = 4) -> list[list[int]]:
    """Local search after ``greedy_pack``: try to empty one of the ``tries`` emptiest cores by
    moving each of its items to the other core where it adds the fewest axons; repeat while a core
    disappears. The result never has more cores. It keeps a (cores x keys) table of counts, so a
    packing whose table would have more than ``COMPACT_MAX_ENTRIES`` entries is returned as it is
    (memory stays linear in the program)."""
    reads = reads.tocsr()
    weights = np.asarray(weights, np.int64)
    K = len(cores)
    if K * reads.shape[1] > COMPACT_MAX_ENTRIES:
        return [list(m) for m in cores]
    count = np.zeros((K, reads.shape[1]), np.int32)  # readers of each key on each core
    neurons = np.zeros(K, np.int64)
    indptr, indices = reads.indptr.astype(np.int64), reads.indices.astype(np.int64)
    for c, members in enumerate(cores):
        if members:
            count[c] = np.bincount(gather_columns(indptr, indices, np.asarray(members, np.int64)), minlength=reads.shape[1])
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
    cores (an extra instance upstream). Axon counts never grow, core counts never change.

    Each live core visits its items in order (those moved onto it last): an item that reads an
    axon no other item of the core reads moves to the first other live core with room that
    already has all its axons. The loop runs compiled (``pack_kernel``) when numba is there;
    ``_free_shared_axons_python`` makes the same moves."""
    if not numba_available() or not reads.has_canonical_format:
        return _free_shared_axons_python(reads, weights, members_of, count, neurons, alive, max_neurons)
    from crossmap.passes.partition import pack_kernel

    flat = [i for members in members_of for i in members]
    ends = np.cumsum([len(members) for members in members_of], dtype=np.int64)
    moved, source, target = pack_kernel.free_shared_axons(
        reads.indptr.astype(np.int64), reads.indices.astype(np.int64), np.asarray(weights, np.int64), count, neurons,
        alive, np.int64(max_neurons), np.array(flat, np.int64), ends)
    for i, c, d in zip(moved.tolist(), source.tolist(), target.tolist()):
        members_of[c].remove(i)
        members_of[d].append(i)


def _free_shared_axons_python(reads: sp.csr_matrix, weights: np.ndarray, members_of: list[list[int]],
                              count: np.ndarray, neurons: np.ndarray, alive: np.ndarray, max_neurons: int) -> None:
    """``_free_shared_axons`` in numpy, for where numba is missing: the same moves."""
    indptr, indices = reads.indptr.astype(np.int64), reads.indices.astype(np.int64)
    # (keys x cores) whether the core has the axon: an item's keys are rows here, read at once
    # (the same columns of count are far apart)
    holds = np.ascontiguousarray((count > 0).T)
    for c in range(len(members_of)):
        if not alive[c]:
            continue
        items = np.asarray(members_of[c], np.int64)
        start = 0
        while start < items.size:
            # which of the items still to visit read an axon only they use on this core (the
            # counts change only when an item moves, so they are checked again only then)
            rest = items[start:]
            lengths = indptr[rest + 1] - indptr[rest]
            alone = np.bincount(np.repeat(np.arange(rest.size), lengths),
                                weights=count[c, gather_columns(indptr, indices, rest)] == 1, minlength=rest.size) > 0
            moved = False
            for h in np.flatnonzero(alone).tolist():
                i = int(rest[h])
                keys = indices[indptr[i]:indptr[i + 1]]
                hosts = alive & (neurons + weights[i] <= max_neurons) & holds[keys].all(axis=0)
                hosts[c] = False
                if not hosts.any():
                    continue
                d = int(np.argmax(hosts))
                count[c, keys] -= 1
                count[d, keys] += 1
                holds[keys, c] = count[c, keys] > 0
                holds[keys, d] = True
                neurons[c] -= weights[i]
                neurons[d] += weights[i]
                members_of[c].remove(i)
                members_of[d].append(i)
                start += h + 1
                moved = True
                break
            if not moved:
                break


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
    reads = reads.tocsr()
    return conflict_bound_of_rows(np.diff(reads.indptr), lambda rows: reads[rows], max_axons, limit)


def conflict_bound_of_rows(fan_in: np.ndarray, rows_of: Callable[[np.ndarray], sp.csr_matrix], max_axons: int,
                           limit: int = 2000) -> int:
    """``conflict_bound`` of items with axon counts ``fan_in`` whose reads ``rows_of(items)``
    gives for the few candidate items only (so the whole reads matrix need not exist at once)."""
    if fan_in.size == 0:
        return 0
    order = np.argsort(-fan_in, kind="stable")
    big = np.array([int(i) for i in order[:limit] if 2 * fan_in[i] > max_axons], np.int64)
    if big.size == 0:
        return 1
    # axons shared by every two of the candidates, all at once (at most limit x limit counts)
    rows = sp.csr_matrix(rows_of(big)).astype(np.int32)
    overlap = (rows @ rows.T).toarray()
    big_fan_in = fan_in[big].astype(np.int64)
    clique = np.zeros(big.size, np.int64)  # positions in big of the clique's items, the first ``size`` of them
    size = 0
    for p in range(big.size):
        members = clique[:size]
        if size and np.any(big_fan_in[members] + big_fan_in[p] - overlap[p, members] <= max_axons):
            continue
        clique[size] = p
        size += 1
    return max(size, 1)


def lower_bound(neurons: int, distinct_axons: int, max_axons: int, max_neurons: int) -> int:
    """Cores at least needed: every neuron takes a slot and every distinct axon appears on some core."""
    return max(math.ceil(neurons / max_neurons), math.ceil(distinct_axons / max_axons))

"""The compiled loop of ``crossmap.passes.partition.pack.greedy_pack`` (see its docstring):
imported only when a group is packed, as importing numba takes a few tenths of a second.

Each item's score is one integer, (new reader cores, new axons, rank), kept up to date as the open
core gains axons and readers. The items the core touches that still fit sit in a binary heap by
score; a score only decreases, so after each added item the lowered entries are sifted up in
order of position (or the heap is rebuilt when many changed). An item found not to fit is dropped
for good (its new axons shrink by at most what the core gains, and free neuron slots only shrink). The
best untouched item is the first in static order (reader cores, fan-in, rank) that is free,
untouched and fits: a pointer that only moves forward while a core fills, skipping assigned and
too heavy items through a segment tree of the free items' weights, and the rest of a run of equal
reader cores at once when an item has too many axons (the run is sorted by fan-in).
"""

import numba
import numpy as np

_NONE = np.iinfo(np.int64).max  # the weight of an assigned item in the segment tree: never fits
HEAPIFY_SHARE = 16  # a step that changes at least 1/16 of the heap rebuilds it rather than sifting each entry


@numba.njit(nogil=True, cache=True)
def _sift_up(heap, where, key, at):  # pragma: no cover
    """Move the entry at heap position ``at`` up to its place (its key was lowered)."""
    item = heap[at]
    k = key[item]
    while at > 0:
        parent = (at - 1) >> 1
        above = heap[parent]
        if key[above] <= k:
            break
        heap[at] = above
        where[above] = at
        at = parent
    heap[at] = item
    where[item] = at


@numba.njit(nogil=True, cache=True)
def _sift_down(heap, where, key, size, at):  # pragma: no cover
    """Move the entry at heap position ``at`` down to its place in ``heap[:size]``."""
    item = heap[at]
    k = key[item]
    while True:
        child = 2 * at + 1
        if child >= size:
            break
        if child + 1 < size and key[heap[child + 1]] < key[heap[child]]:
            child += 1
        if key[heap[child]] >= k:
            break
        heap[at] = heap[child]
        where[heap[at]] = at
        at = child
    heap[at] = item
    where[item] = at


@numba.njit(nogil=True, cache=True)
def _pop(heap, where, key, size):  # pragma: no cover
    """Remove the smallest entry of ``heap[:size]``; returns the new size."""
    where[heap[0]] = -1
    size -= 1
    if size:
        heap[0] = heap[size]
        _sift_down(heap, where, key, size, 0)
    return size


@numba.njit(nogil=True, cache=True)
def _set_leaf(tree, leaves, at, value):  # pragma: no cover
    """Set leaf ``at`` of the min segment tree and update its ancestors."""
    node = at + leaves
    tree[node] = value
    node >>= 1
    while node:
        low = min(tree[2 * node], tree[2 * node + 1])
        if tree[node] == low:
            break
        tree[node] = low
        node >>= 1


@numba.njit(nogil=True, cache=True)
def _first_at_most(tree, leaves, start, limit):  # pragma: no cover
    """The first leaf at or after ``start`` whose value is at most ``limit``, else ``leaves``."""
    if start >= leaves:
        return leaves
    node = start + leaves
    while tree[node] > limit:
        while node & 1:  # a right child: the next subtree to the right starts above it
            node >>= 1
        if node == 0:
            return leaves
        node += 1
    while node < leaves:
        node *= 2
        if tree[node] > limit:
            node += 1
    return node - leaves


@numba.njit(nogil=True, cache=True)
def _lower(ptr, ind, gained, first, last, by, key, assigned, touched, touched_list, n_touched, where, mark, step,
           dirty, n_dirty):  # pragma: no cover
    """Lower by ``by`` the keys of the free items of rows ``gained[first:last]`` of (``ptr``,
    ``ind``): the readers of the core's new keys, or the feeders of its new reader cores. An item
    touched for the first time is appended to ``touched_list``; the heap position of one already
    in the heap, to ``dirty`` (once per ``step``). Returns the new ``n_touched``, ``n_dirty``."""
    for j in range(first, last):
        row = gained[j]
        for e in range(ptr[row], ptr[row + 1]):
            other = ind[e]
            if assigned[other]:
                continue
            key[other] -= by
            if not touched[other]:
                touched[other] = True
                touched_list[n_touched] = other
                n_touched += 1
            elif where[other] >= 0 and mark[other] != step:
                mark[other] = step
                dirty[n_dirty] = where[other]
                n_dirty += 1
    return n_touched, n_dirty


@numba.njit(nogil=True, cache=True)
def greedy_pack(r_ptr, r_ind, k_ptr, k_ind, t_ptr, t_ind, f_ptr, f_ind, weights, rank, by_rank, static,
                max_axons, max_neurons):  # pragma: no cover
    """Items per core as (members, ends): core ``c`` holds ``members[ends[c - 1]:ends[c]]`` in the
    order they joined. ``r_*`` are the items' keys (CSR), ``k_*`` each key's readers, ``t_*`` each
    item's reader cores (distinct), ``f_*`` the items feeding each reader core; ``static`` the items
    by (reader cores, fan-in, rank) and ``by_rank`` by rank."""
    n = weights.shape[0]
    n_keys = k_ptr.shape[0] - 1
    n_targets = f_ptr.shape[0] - 1
    fan_in = np.empty(n, np.int64)
    widest = 0
    for i in range(n):
        fan_in[i] = r_ptr[i + 1] - r_ptr[i]
        widest = max(widest, fan_in[i])
    span = np.int64(n + 1)  # (new axons, rank) as one integer, lexicographic
    big = (widest + 1) * span  # (new reader cores, new axons, rank) as one integer
    base = np.empty(n, np.int64)  # the score on an empty core
    for i in range(n):
        base[i] = (t_ptr[i + 1] - t_ptr[i]) * big + fan_in[i] * span + rank[i]
    key = base.copy()

    # static order: the end of each run of equal reader cores, the items' weights in a segment tree
    run_end = np.empty(n, np.int64)
    for p in range(n - 1, -1, -1):
        if p == n - 1 or t_ptr[static[p] + 1] - t_ptr[static[p]] != t_ptr[static[p + 1] + 1] - t_ptr[static[p + 1]]:
            run_end[p] = p + 1
        else:
            run_end[p] = run_end[p + 1]
    leaves = 1
    while leaves < n:
        leaves *= 2
    tree = np.full(2 * leaves, _NONE, np.int64)
    for p in range(n):
        tree[leaves + p] = weights[static[p]]
    for node in range(leaves - 1, 0, -1):
        tree[node] = min(tree[2 * node], tree[2 * node + 1])
    static_at = np.empty(n, np.int64)
    for p in range(n):
        static_at[static[p]] = p

    assigned = np.zeros(n, np.bool_)
    touched = np.zeros(n, np.bool_)  # touched by the open core: scored by key, not by the static pointer
    touched_list = np.empty(n, np.int64)
    heap = np.empty(n, np.int64)
    where = np.full(n, -1, np.int64)  # heap position, or -1
    mark = np.full(n, -1, np.int64)  # the step that last lowered an entry of the heap
    dirty = np.empty(n, np.int64)  # the heap positions lowered in this step
    in_core = np.zeros(n_keys, np.bool_)
    core_keys = np.empty(n_keys + widest, np.int64)  # the open core's keys (a key an item reads twice, twice)
    fed = np.zeros(n_targets, np.bool_)
    core_outs = np.empty(n_targets, np.int64)
    members = np.empty(n, np.int64)
    ends = np.empty(n, np.int64)
    n_members = n_cores = 0
    seed = 0
    while n_members < n:
        while assigned[by_rank[seed]]:
            seed += 1
        item = by_rank[seed]
        n_touched = n_keys_in = n_outs = size = 0
        pointer = 0
        axons = neurons = 0
        while item >= 0:
            members[n_members] = item
            n_members += 1
            assigned[item] = True
            _set_leaf(tree, leaves, static_at[item], _NONE)
            if where[item] >= 0:
                size = _pop(heap, where, key, size)  # the chosen touched item is the heap's smallest
            neurons += weights[item]
            first_key = n_keys_in
            for j in range(r_ptr[item], r_ptr[item + 1]):
                if not in_core[r_ind[j]]:
                    core_keys[n_keys_in] = r_ind[j]
                    n_keys_in += 1
            for j in range(first_key, n_keys_in):
                in_core[core_keys[j]] = True
            axons += n_keys_in - first_key
            first_out = n_outs
            for j in range(t_ptr[item], t_ptr[item + 1]):
                if not fed[t_ind[j]]:
                    fed[t_ind[j]] = True
                    core_outs[n_outs] = t_ind[j]
                    n_outs += 1
            free_axons, free_neurons = max_axons - axons, max_neurons - neurons
            item = -1
            if free_neurons <= 0:
                break  # the core is full
            # lower the scores of the items reading a new key or feeding a new reader core
            newly = n_touched
            n_touched, n_dirty = _lower(k_ptr, k_ind, core_keys, first_key, n_keys_in, span, key, assigned, touched,
                                        touched_list, n_touched, where, mark, n_members, dirty, 0)
            n_touched, n_dirty = _lower(f_ptr, f_ind, core_outs, first_out, n_outs, big, key, assigned, touched,
                                        touched_list, n_touched, where, mark, n_members, dirty, n_dirty)
            old_size = size
            for j in range(newly, n_touched):  # the newly touched items that fit join the heap
                other = touched_list[j]
                if (key[other] % big) // span <= free_axons and weights[other] <= free_neurons:
                    heap[size] = other
                    where[other] = size
                    size += 1
            if HEAPIFY_SHARE * (n_dirty + size - old_size) >= size:
                for at in range(size // 2 - 1, -1, -1):
                    _sift_down(heap, where, key, size, at)
            else:
                # in order of position: a sift-up only moves entries above it
                for at in np.sort(dirty[:n_dirty]):
                    _sift_up(heap, where, key, at)
                for at in range(old_size, size):
                    _sift_up(heap, where, key, at)
            while size and ((key[heap[0]] % big) // span > free_axons or weights[heap[0]] > free_neurons):
                size = _pop(heap, where, key, size)  # it never fits this core again
            best = _NONE
            if size:
                item, best = heap[0], key[heap[0]]
            if pointer < n and base[static[pointer]] < best:
                while True:
                    pointer = _first_at_most(tree, leaves, pointer, free_neurons)
                    if pointer >= n:
                        break
                    other = static[pointer]
                    if touched[other]:
                        pointer += 1
                    elif fan_in[other] > free_axons:
                        pointer = run_end[pointer]
                    else:
                        if base[other] < best:
                            item = other
                        break
        ends[n_cores] = n_members
        n_cores += 1
        for j in range(n_touched):
            other = touched_list[j]
            touched[other] = False
            key[other] = base[other]
            where[other] = -1
        for j in range(n_keys_in):
            in_core[core_keys[j]] = False
        for j in range(n_outs):
            fed[core_outs[j]] = False
    return members, ends[:n_cores]


@numba.njit(nogil=True, cache=True)
def free_shared_axons(indptr, indices, weights, count, neurons, alive, max_neurons, first_items, first_ends):  # pragma: no cover
    """The moves of ``crossmap.passes.partition.pack._free_shared_axons`` as (item, from core, to
    core) in order, with ``count`` and ``neurons`` updated. Core ``c`` starts with the items
    ``first_items[first_ends[c - 1]:first_ends[c]]``; it visits them, then the items moved onto it
    from cores visited before, in the order they came: an item reading an axon no other item of
    the core reads goes to the first other live core with room that holds all its axons."""
    K = neurons.size
    capacity = first_items.size + 16
    moved_item = np.empty(capacity, np.int64)
    moved_from = np.empty(capacity, np.int64)
    moved_to = np.empty(capacity, np.int64)
    next_in = np.full(capacity, -1, np.int64)  # the next move onto the same core
    head = np.full(K, -1, np.int64)
    tail = np.full(K, -1, np.int64)
    n_moves = 0
    for c in range(K):
        if not alive[c]:
            continue
        start = 0 if c == 0 else first_ends[c - 1]
        position = start
        incoming = head[c]
        while True:
            if position < first_ends[c]:
                i = first_items[position]
                position += 1
            elif incoming >= 0:
                i = moved_item[incoming]
                incoming = next_in[incoming]
            else:
                break
            if not _reads_a_key_counted(indptr, indices, count, c, i, 1):  # no axon of its own here
                continue
            host = -1
            for d in range(K):
                if (d != c and alive[d] and neurons[d] + weights[i] <= max_neurons
                        and not _reads_a_key_counted(indptr, indices, count, d, i, 0)):
                    host = d
                    break
            if host < 0:
                continue
            for p in range(indptr[i], indptr[i + 1]):
                count[c, indices[p]] -= 1
                count[host, indices[p]] += 1
            neurons[c] -= weights[i]
            neurons[host] += weights[i]
            if n_moves == capacity:
                capacity *= 2
                moved_item = _grown(moved_item, capacity)
                moved_from = _grown(moved_from, capacity)
                moved_to = _grown(moved_to, capacity)
                next_in = _grown(next_in, capacity)
            moved_item[n_moves], moved_from[n_moves], moved_to[n_moves] = i, c, host
            next_in[n_moves] = -1
            if tail[host] >= 0:
                next_in[tail[host]] = n_moves
            else:
                head[host] = n_moves
            tail[host] = n_moves
            n_moves += 1
    return moved_item[:n_moves], moved_from[:n_moves], moved_to[:n_moves]


@numba.njit(nogil=True, cache=True)
def _grown(values, size):  # pragma: no cover
    out = np.full(size, -1, np.int64)
    out[:values.size] = values
    return out


@numba.njit(nogil=True, cache=True)
def _reads_a_key_counted(indptr, indices, count, core, item, times):  # pragma: no cover
    """Whether some axon that ``item`` reads has ``count[core, axon] == times``."""
    for p in range(indptr[item], indptr[item + 1]):
        if count[core, indices[p]] == times:
            return True
    return False

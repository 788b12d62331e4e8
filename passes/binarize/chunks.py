"""Fan-in above one core: which inputs each partial sum of a layer reads.

A neuron reading more axon lines than a core has is split into partial neurons, one per chunk of
its inputs, and a merge neuron that adds them. The chunking decides how many cores the layer
takes, three ways: the partial neurons' cores (how many partials share a core's axons), the merge
neurons' cores (each reads one line per partial) and, where the inputs are neurons, their copies
(a neuron's spike reaches one axon, so every line a reader core takes is one more source neuron).

- A dense layer (every neuron reads most inputs) deals its columns round-robin into as few equal
  chunks as fit a core: every neuron needs all of them anyway.
- A local layer (a convolution) is cut into equal runs of consecutive columns (channel groups,
  which stay local). More chunks mean fewer lines per partial neuron and more of them sharing a
  core's axons; the count with the fewest estimated cores wins (``estimated_cores``: neurons
  packed greedily in their order or in square tiles of positions, as the partition pass finds
  such groups, on a corner of a large layer and scaled to the whole).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

MAX_CHUNK_FACTOR = 4  # chunk counts tried: from the fewest that fit up to this many times it
TILES = (2, 4, 8)  # square tiles of positions tried as packing orders
SAMPLE_NEURONS = 4096  # neurons the estimate packs (a corner of a convolution's positions)


def input_chunks(w: sp.csr_matrix, bits: int, axons: int, neurons: int, *, shape: tuple[int, ...] = (),
                 parts: int = 1, copied_sources: bool = True) -> list[np.ndarray]:
    """Column sets of ``w`` (neurons, inputs) such that no neuron reads more than ``axons`` lines
    (``bits`` per input) in one; one set when the whole fan-in fits. ``shape``: the neurons'
    (channels, height, width) where they have one; ``parts``: partial neurons per neuron and chunk;
    ``copied_sources``: the inputs are neurons, copied once per line read."""
    csr = sp.csr_matrix(w)
    n, m = csr.shape
    per_row = np.diff(csr.indptr)
    if per_row.size == 0 or per_row.max() * bits <= axons:
        return [np.arange(m)]
    fewest = -(-int(per_row.max()) * bits // axons)
    if csr.nnz >= 0.5 * n * m:
        count = -(-m * bits // axons)
        return [np.arange(k, m, count) for k in range(count)]
    sample, sample_shape = _sample(n, shape)
    part = csr[sample]
    orders = _orders(sample.size, sample_shape)
    best: tuple[float, int, list[np.ndarray]] | None = None
    for count in range(fewest, MAX_CHUNK_FACTOR * fewest + 1):
        if count != fewest and m % count:
            continue  # equal runs that do not divide the inputs cut across channels
        bounds = np.linspace(0, m, count + 1).round().astype(np.int64)
        chunks = [np.arange(bounds[k], bounds[k + 1]) for k in range(count)]
        floor = -(-n * count * parts // neurons) + -(-n // max(1, min(neurons, axons // (count * parts))))
        if best is not None and floor >= best[0]:
            continue  # its partial neurons and merges alone take more cores than the best so far
        if any(np.diff(csr[:, c].indptr).max() * bits > axons for c in chunks):
            continue
        blocks = [sp.csr_matrix(part[:, c]) for c in chunks]
        cores = min(estimated_cores(blocks, order, bits, axons, neurons, parts=parts,
                                    copied_sources=copied_sources) for order in orders) * n / sample.size
        if best is None or (cores, count) < best[:2]:
            best = (cores, count, chunks)
    if best is None:  # no equal cut fits: cut before each column that would overflow a neuron
        return _consecutive(sp.csc_matrix(csr), bits, axons)
    return best[2]


def _sample(n: int, shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
    """The neurons the estimate packs, and their shape: for (channels, height, width) neurons a
    corner of about ``SAMPLE_NEURONS`` with every channel (at least the largest tile square),
    else the first ``SAMPLE_NEURONS``; all of them when there are fewer."""
    if len(shape) == 3 and int(np.prod(shape)) == n:
        c, h, w = shape
        side = max(max(TILES), int(np.ceil(np.sqrt(SAMPLE_NEURONS / max(c, 1)))))
        hh, ww = min(h, side), min(w, side)
        _, y, x = np.unravel_index(np.arange(n), shape)
        return np.flatnonzero((y < hh) & (x < ww)), (c, hh, ww)
    return np.arange(min(n, SAMPLE_NEURONS)), ()


def _orders(n: int, shape: tuple[int, ...]) -> list[np.ndarray]:
    """Neuron orders to pack in: as numbered and, for (channels, height, width) neurons, square
    tiles of positions, a tile's positions one after another with all their channels."""
    orders = [np.arange(n)]
    if len(shape) == 3 and int(np.prod(shape)) == n:
        c, h, w = shape
        ch, y, x = np.unravel_index(np.arange(n), shape)
        for tile in TILES:
            if tile < max(h, w):
                orders.append(np.lexsort((ch, x, y, x // tile, y // tile)))
    return orders


def _consecutive(csc: sp.csc_matrix, bits: int, budget: int) -> list[np.ndarray]:
    """Consecutive column runs, each cut before the column that would take some neuron above
    ``budget`` lines."""
    n, m = csc.shape
    need = np.zeros(n, np.int64)
    chunks, start = [], 0
    for col in range(m):
        rows = csc.indices[csc.indptr[col]:csc.indptr[col + 1]]
        if rows.size and (need[rows] + bits).max() > budget:
            chunks.append(np.arange(start, col))
            start, need = col, np.zeros(n, np.int64)
        need[rows] += bits
    chunks.append(np.arange(start, m))
    return [c for c in chunks if c.size]


def estimated_cores(blocks: list[sp.csr_matrix], order: np.ndarray, bits: int, axons: int, neurons: int, *,
                    parts: int = 1, copied_sources: bool = True) -> int:
    """Cores a split layer takes, from its weights on each chunk (``blocks``, one CSR matrix of
    neurons x the chunk's inputs each): its partial neurons packed greedily in ``order`` (a core
    closes when its lines or neurons would overflow), its merge neurons (one line per partial),
    and the copies of source neurons its partial cores' lines need."""
    n = blocks[0].shape[0]
    cores, lines = 0, 0
    for sub in blocks:
        current: set[int] = set()
        count = 0
        for row in order.tolist():
            row_cols = sub.indices[sub.indptr[row]:sub.indptr[row + 1]].tolist()
            if not row_cols:
                continue
            union = current.union(row_cols)
            if count + parts > neurons or len(union) * bits > axons:
                cores, lines = cores + 1, lines + len(current) * bits
                current, count = set(row_cols), parts
            else:
                current, count = union, count + parts
        if count:
            cores, lines = cores + 1, lines + len(current) * bits
    merge_lines = len(blocks) * parts
    cores += -(-n // max(1, min(neurons, axons // merge_lines)))
    if copied_sources:
        cores += -(-lines // neurons)
    return cores

"""Spike trains of a deployed network under construction, group by group.

``simulate_new`` runs the deterministic chip neuron (docs/chip-model.md, the same update as
``DeployedNetwork.simulate``) for the groups that have no train yet, reading the recorded trains of
the groups before them, so a binarize pass can calibrate each layer on the spikes the deployed
layers before it really produce.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from crossmap.chip import ChipSpec
from crossmap.deployed import INPUT, Lines, NeuronGroup


def simulate_new(chip: ChipSpec, groups: list[NeuronGroup], lines: list[Lines], trains: dict[str, np.ndarray],
                 spikes: np.ndarray, ticks: int) -> None:
    """Add to ``trains`` the spikes (ticks, batch, size) of every group without one, in order;
    ``spikes`` are the input spikes (batch, input ticks, channels)."""
    by_name = {g.name: g for g in groups}
    for group in groups:
        if group.name not in trains:
            incoming = [l for l in lines if l.target == group.name]
            delays = [None if l.source == INPUT else by_name[l.source].delay[l.source_index].astype(np.int64)
                      for l in incoming]
            trains[group.name] = simulate_group(chip, group, incoming, delays, trains, spikes, ticks)


def simulate_group(chip: ChipSpec, g: NeuronGroup, incoming: list[Lines], delays: list[np.ndarray | None],
                   trains: dict[str, np.ndarray], spikes: np.ndarray, ticks: int) -> np.ndarray:
    """Spikes (ticks, batch, size) of group ``g`` given its lines, the delay of the neuron each
    line reads (None for input lines) and its sources' trains."""
    from crossmap.passes.binarize.trains_kernel import run_group

    source, key_delay, key_channel, matrix = _wiring(g, incoming, delays, trains, spikes)
    # a tick's input to a neuron is at most the sum of its |weights|: int32 holds it on any real core
    wide = np.asarray(abs(matrix).sum(axis=0)).max(initial=0) >= 2 ** 31
    columns = matrix.tocsc()
    columns.sort_indices()
    neurons = [np.ascontiguousarray(a, np.int64) for a in (g.initial_v, g.alpha, g.leak, g.beta, g.reset_mode,
                                                           g.reset_value)]
    out = run_group(source, key_delay, key_channel, columns.indptr.astype(np.int64),
                    columns.indices.astype(np.int64), columns.data.astype(np.int64 if wide else np.int32), *neurons,
                    np.int64(chip.v_min), np.int64(chip.v_max), int(ticks), bool(np.all(g.reset_mode == 1)))
    return out.transpose(0, 2, 1)  # stored neuron-major: the next group reads it as it is


def _wiring(g: NeuronGroup, incoming: list[Lines], delays: list[np.ndarray | None], trains: dict[str, np.ndarray],
            spikes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, sp.csr_matrix]:
    """The group's input as (source, key delay, key channel, matrix). ``source`` (ticks, channels,
    batch; int8, -1 for a spike) stacks the input spikes and the trains of the source groups the lines read (zeros
    past a train's end); a key is a channel read with a delay (sorted by delay, then channel) and row
    k of ``matrix`` (keys, size; int64) the weight its spike adds to each neuron: the weights of every
    line that reads that channel with that delay, each stored synapse adding its line's type's weight."""
    blocks: dict[str, int] = {}
    parts: list[np.ndarray] = []
    width = 0
    for l in incoming:
        if l.source not in blocks:
            part = np.transpose(spikes, (1, 2, 0)) if l.source == INPUT else np.transpose(trains[l.source], (0, 2, 1))
            blocks[l.source] = width
            parts.append(part)
            width += part.shape[1]
    length = max((p.shape[0] for p in parts), default=0)
    source = np.zeros((length, width, spikes.shape[0]), np.int8)
    for part, offset in zip(parts, blocks.values()):
        np.negative(part, out=source[:part.shape[0], offset:offset + part.shape[1]], dtype=np.int8)
    codes, rows, cols, data = [], [], [], []
    lines = 0
    span = max(width, 1)
    for l, d in zip(incoming, delays):
        syn = sp.csr_matrix(l.synapses)
        counts = np.diff(syn.indptr)
        delay = np.zeros(l.num_lines, np.int64) if d is None else np.asarray(d, np.int64)
        codes.append(delay * span + np.asarray(l.source_index, np.int64) + blocks[l.source])
        rows.append(np.repeat(np.arange(lines, lines + l.num_lines), counts))
        cols.append(syn.indices)
        data.append(g.weight[syn.indices, np.repeat(np.asarray(l.axon_type), counts)].astype(np.int64))
        lines += l.num_lines
    empty = np.zeros(0, np.int64)
    keys, key_of = np.unique(np.concatenate(codes) if codes else empty, return_inverse=True)
    matrix = sp.csr_matrix((np.concatenate(data) if data else empty,
                            (key_of.reshape(-1)[np.concatenate(rows)] if rows else empty,
                             np.concatenate(cols) if cols else empty)), shape=(keys.size, g.size), dtype=np.int64)
    matrix.sum_duplicates()
    return source, keys // span, keys % span, matrix

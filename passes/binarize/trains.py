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
    batch, t_in, _ = spikes.shape
    feeds = []
    for l, delay in zip(incoming, delays):
        syn = l.synapses.tocoo()
        w = g.weight[syn.col, l.axon_type[syn.row]].astype(np.float32)
        matrix = sp.csr_matrix((w, (syn.row, syn.col)), shape=(l.num_lines, g.size))
        if l.source == INPUT:
            feeds.append((None, l.source_index, np.zeros(l.num_lines, np.int64), matrix))
        else:
            feeds.append((trains[l.source], l.source_index, delay, matrix))
    v = np.broadcast_to(g.initial_v.astype(np.int64), (batch, g.size)).copy()
    out = np.zeros((ticks, batch, g.size), bool)
    alpha, leak, beta = (np.asarray(a, np.int64) for a in (g.alpha, g.leak, g.beta))
    linear = bool(np.all(g.reset_mode == 1))  # reset by subtraction everywhere (rate coding): in place
    for t in range(ticks):
        acc = np.zeros((batch, g.size), np.float32)
        for train, index, delay, matrix in feeds:
            if train is None:
                if t >= t_in:
                    continue
                active = spikes[:, t, index]
            else:
                when = t - delay
                ok = when >= 0
                if not ok.any():
                    continue
                if ok.all() and (when == when[0]).all():  # one delay for all lines: a row gather
                    active = train[when[0]][:, index]
                else:
                    active = np.zeros((batch, index.size), bool)
                    active[:, ok] = train[when[ok], :, index[ok]].T
            if active.any():
                acc += np.asarray(matrix.T @ active.T.astype(np.float32)).T
        v += acc.astype(np.int64)
        np.clip(v, chip.v_min, chip.v_max, out=v)
        v += leak
        np.clip(v, chip.v_min, chip.v_max, out=v)
        fire = np.greater_equal(v, alpha, out=out[t])
        if linear:  # a neuron that fired is left at v - alpha >= 0, above any floor
            np.subtract(v, alpha, out=v, where=fire)
            np.maximum(v, -beta, out=v)
        else:
            reset = np.where(g.reset_mode == 0, g.reset_value, np.where(g.reset_mode == 1, v - g.alpha, v))
            v = np.where(fire, reset, np.where(v < -g.beta, -g.beta, v))
    return out

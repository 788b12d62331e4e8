"""Spike routing tables: which neuron (or input channel) feeds which axon after which delay, as
gathers over bit-packed spike rows, and the per-neuron costs behind the spike, hop and chip
crossing counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def _rows(arr: np.ndarray) -> np.ndarray:
    """(rows, 1) arrays as 1-D, so single-word rows gather and reduce as plain vectors."""
    return arr.reshape(-1) if arr.shape[1] == 1 else arr


@dataclass
class Fanin:
    """Source rows ``src`` OR-merged onto distinct destination rows ``dst``: ``src`` is sorted
    by destination and ``starts`` (None when every destination has one source) marks where each
    destination's run of sources begins."""

    src: np.ndarray
    dst: np.ndarray
    starts: np.ndarray | None

    @classmethod
    def build(cls, src: np.ndarray, dst: np.ndarray) -> "Fanin":
        """Group ``src -> dst`` pairs by destination."""
        order = np.argsort(dst, kind="stable")
        src, dst = src[order].astype(np.int64), dst[order].astype(np.int64)
        first = np.r_[True, dst[1:] != dst[:-1]] if dst.size else np.zeros(0, bool)
        if first.all():
            return cls(src, dst, None)
        starts = np.flatnonzero(first)
        return cls(src, dst[starts], starts)

    def deliver(self, spikes: np.ndarray, target: np.ndarray) -> None:
        """OR the source rows of ``spikes`` into the destination rows of ``target``; both are
        (rows, words) packed spike arrays of the same word type."""
        if self.dst.size == 0:
            return
        spikes, target = _rows(spikes), _rows(target)
        rows = np.take(spikes, self.src, axis=0)
        if self.starts is not None:
            rows = np.bitwise_or.reduceat(rows, self.starts, axis=0)
        target[self.dst] = np.take(target, self.dst, axis=0) | rows


@dataclass
class RouteGroup:
    """Spikes of neurons ``fanin.src`` (flat core * N + neuron) reach axons ``fanin.dst``
    (flat core * A + axon) ``delay`` ticks after they fire."""

    delay: int
    fanin: Fanin


@dataclass
class Routing:
    """Spike routes of a program and the costs of its spikes."""

    ring_size: int                 # the longest delay: slots of the axon ring buffer
    groups: list[RouteGroup]       # one per delay
    inputs: Fanin                  # input channel -> flat axon (core * A + axon)
    sender_costs: np.ndarray       # (C, N, 8) per spike sent: [1, hops, chip crossings, 0...] (padded for BLAS)
    port_core: np.ndarray          # neurons with an output port: core, neuron, port
    port_neuron: np.ndarray
    port_id: np.ndarray


def build_routing(program: Any, dtype: type = np.float64) -> Routing:
    """Routing tables of ``program`` (neurons with a target core; the input map; output ports)."""
    chip = program.chip
    C, A, N = program.crossbar.shape
    tcore = program.target_core.reshape(-1).astype(np.int64)
    routed = np.flatnonzero(tcore >= 0)
    dst = tcore[routed] * A + program.target_axon.reshape(-1)[routed]
    delay = program.target_delay.reshape(-1)[routed].astype(np.int64)
    groups = [RouteGroup(int(d), Fanin.build(routed[delay == d], dst[delay == d])) for d in np.unique(delay).tolist()]
    inputs = Fanin.build(program.input_channel, program.input_core.astype(np.int64) * A + program.input_axon)

    # per spike sent: 1 (a packet), |dx| + |dy| hops and the chip boundaries crossed x then y
    costs = np.zeros((C * N, 8), np.float64)
    sends = (tcore >= 0) | (program.output_port.reshape(-1) >= 0)
    costs[sends, 0] = 1
    src_xy = program.core_xy[routed // N].astype(np.int64)
    dst_xy = program.core_xy[tcore[routed]].astype(np.int64)
    costs[routed, 1] = np.abs(dst_xy - src_xy).sum(axis=1)
    chip_size = np.array([chip.mesh_x, chip.mesh_y])
    costs[routed, 2] = np.abs(dst_xy // chip_size - src_xy // chip_size).sum(axis=1)
    port_core, port_neuron = np.nonzero(program.output_port >= 0)
    return Routing(ring_size=int(delay.max()) if delay.size else 1, groups=groups, inputs=inputs,
                   sender_costs=costs.reshape(C, N, 8).astype(dtype), port_core=port_core, port_neuron=port_neuron,
                   port_id=program.output_port[port_core, port_neuron].astype(np.int64))

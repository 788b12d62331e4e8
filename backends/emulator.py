"""The fast emulator: the chip model of docs/chip-model.md, vectorized over cores and samples, bit for
bit equal to the ``reference`` backend (see its docstring for the rules).

Layout: membrane potentials ``V`` are (cores, batch, neurons). Axon activity lives in a ring
buffer of bit-packed rows, ``ring[(t + delay) % D]`` of (cores * axons, ceil(batch / 8)) bytes
with ``D`` the longest delay: a spike ORs its bit into its target's row (OR-merge), and the slot
of tick ``t`` is read and cleared at ``t``. Neuron spikes are packed the same way, one row per
neuron, so routing moves a few bytes per neuron (see ``routing.Fanin``).

Synaptic integration has three exact paths, chosen every tick from the measured activity (or
forced with ``path="dense"`` / ``path="event"`` / ``path="sparse"``):

- dense: ``S[c] = x[c]^T @ W_eff[c]`` as a float32 batched matmul over cores, with
  ``W_eff[c] = crossbar[c] * weight[c, :, axon_type[c]]`` (cores, axons, neurons); cores without
  an active axon are skipped. Exact: every partial sum is an integer below 2^24 (the chip spec
  checks ``A * max|w| < 2^24``).
- event: per core only the rows of ``W_eff`` of axons active in some sample are gathered (cores
  grouped by their count of such axons, padded to one of ``EVENT_WIDTHS``) and multiplied; cores
  without activity are skipped.
- sparse: per (core, sample) the active axons counted per axon type and neuron, then weighed
  (a numba kernel, see ``crossmap.backends.type_counts``); without numba, the rows of ``W_eff``
  of its active axons summed by torch's ``embedding_bag`` (``crossmap.backends.sparse``). Work
  in proportion to the active (axon, sample) pairs. ``auto`` takes it per block of cores where
  at most ``SPARSE_MAX_ACTIVE`` (``BAG_MAX_ACTIVE`` with torch's bags) of its busy cores' pairs
  are active, in batches of ``SPARSE_MIN_BATCH`` or more.

A block whose cores all rest is skipped: a core rests when on its last tick no axon was active
and its state came out unchanged without a spike, since while its axons stay idle every tick
repeats that one (cores with stochastic thresholds never rest: their draws change per tick).

All run over blocks of cores sized to stay in cache; inside a block everything is vectorized.
Stochastic synapses are left out of ``W_eff`` and added per active (axon, neuron, sample) from
the PRNG; stochastic thresholds are drawn only for neurons whose mask is non-zero.

Membrane potentials are held in float32, which is exact here: every intermediate value is an
integer with ``|V + S + leak| <= max|v| + A * max|w| + max|leak|`` and thresholds below
``2 * alpha_max``; when those bounds are below 2^24 (true for the TrueNorth spec) float32
represents every one of them exactly. Chips with larger ranges get float64 state (exact to 2^53).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crossmap import prng
from crossmap.errors import CrossmapError

from crossmap.backends import sparse, type_counts
from crossmap.backends.bits import pack, pack_rows, packed_width, unpack_float, wide
from crossmap.backends.common import RunSpec, prepare_run
from crossmap.backends.result import Result, make_result
from crossmap.backends.tables import Tables, get_tables

PATHS = ("auto", "dense", "event", "sparse")
# bytes of float32 (batch x neurons) state per block of cores
BLOCK_BYTES = 1 << 20
# auto: the event path when at most this fraction of (core, axon) pairs is active in some sample
EVENT_MAX_ACTIVE_AXONS = 0.25
# auto: the sparse path for blocks of cores with at most this fraction of the (axon, sample)
# pairs of their busy cores active, in batches of at least SPARSE_MIN_BATCH samples (smaller ones
# are cheap either way, and need not load numba or torch). On 2 CPUs (bench_emulator.py) numba's
# kernel beat the dense matmul up to about 70% active pairs, torch's bags up to about 20%.
SPARSE_MAX_ACTIVE = 0.6
BAG_MAX_ACTIVE = 0.15
SPARSE_MIN_BATCH = 32
# skip the ticks of resting cores (idle axons, state unchanged without a spike on their last tick)
SKIP_RESTING_CORES = True
_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], np.uint8)   # numpy < 2 has no bitwise_count
# the event path pads each core's active axons to the next of these widths (cores of one width
# share a matmul): fine steps keep the padding small, few steps keep the numpy calls few
EVENT_WIDTHS = np.array([8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2**62])


def run(program: Any, inputs: Any, ticks: int | None = None, **options: Any) -> Result:
    """Emulate ``program`` on input spikes (options: seed, sample_offset, record, and path =
    auto | dense | event | sparse, the synaptic integration path)."""
    path = options.pop("path", "auto")
    if path not in PATHS:
        raise CrossmapError(f"emulator option path = {path!r} is not one of {', '.join(PATHS)}")
    if path == "sparse" and not _sparse_available():
        raise CrossmapError("emulator option path = 'sparse' needs numba (its compiled kernel) or torch (its "
                            "embedding_bag), and neither is installed; install one (`pip install numba`) or use "
                            "path 'auto', 'dense' or 'event'")
    spec = prepare_run(program, inputs, ticks, options, "emulator")
    return _Run(program, get_tables(program), spec, path).execute()


def _sparse_available() -> bool:
    """Whether the sparse path can run: numba's kernel, else torch's embedding_bag."""
    return type_counts.available() or sparse.available()


class _Run:
    """One emulation: the state of a batch and the tick loop."""

    def __init__(self, program: Any, tables: Tables, spec: RunSpec, path: str) -> None:
        self.program, self.tab, self.spec, self.path = program, tables, spec, path
        C, A, N, B = tables.num_cores, tables.num_axons, tables.num_neurons, spec.batch
        self.shape = (C, A, N, B)
        words = packed_width(B)
        self.V = np.empty((C, B, N), tables.state_dtype)
        self.V[...] = program.initial_v[:, None, :]
        self.ring = np.zeros((tables.routing.ring_size, C * A, words), np.uint8)
        self.fired = np.zeros((C * N, words), np.uint8)   # this tick's spikes, packed per neuron
        self.port_counts = np.zeros((tables.routing.port_core.size, B), np.int64)  # in routing's port order
        self.sent = np.zeros((B, 8), np.float64)   # spikes sent, hops, chip crossings (, padding)
        self.events = np.zeros(B, np.float64)
        self.block = max(1, BLOCK_BYTES // (N * B * 4))
        nb = min(self.block, C)
        self.unpacked = np.empty((nb, A, words, 8), np.float32)
        self.S = np.empty((nb, B, N), np.float32)
        self.fire_buf = np.zeros((nb, 8 * words, N), bool)  # samples padded to whole bytes (stay False)
        self.f = np.empty((nb, B, N), tables.state_dtype)
        self.T = np.empty((nb, B, N), tables.state_dtype)
        self.samples = spec.sample_offset + np.arange(B, dtype=np.int64)
        # a core at rest: on its last tick no axon was active and its state came out unchanged
        # without a spike, so while its axons stay idle every tick repeats that one (the update
        # is deterministic without stochastic thresholds) and is skipped
        self.resting = np.zeros(C, bool)
        self.may_rest = np.full(C, SKIP_RESTING_CORES)
        self.may_rest[tables.sth_core] = False
        # input spikes packed per channel: (T, channels, bytes)
        self.inputs = np.ascontiguousarray(pack(spec.spikes, axis=0).transpose(1, 2, 0))
        self.recorded = np.zeros((spec.ticks, B, C, N), bool) if spec.record else None
        auto_max = SPARSE_MAX_ACTIVE if type_counts.available() else BAG_MAX_ACTIVE
        self.sparse_max = {"sparse": 1.0, "auto": auto_max}.get(path, -1.0)
        if path == "auto" and (B < SPARSE_MIN_BATCH or not _sparse_available()):
            self.sparse_max = -1.0

    # ------------------------------------------------------------------ tick loop
    def execute(self) -> Result:
        """Run every tick and assemble the result."""
        for t in range(self.spec.ticks):
            self.tick(t)
        return self.result()

    def tick(self, t: int) -> None:
        """Steps 1-5 of one tick for every core and sample."""
        tab = self.tab
        C, A, N, B = self.shape
        slot = self.ring[t % tab.routing.ring_size]
        if t < self.spec.input_ticks:
            tab.routing.inputs.deliver(wide(self.inputs[t]), wide(slot))
        words = wide(slot)  # (C, A): axons active in some sample
        active = (words[:, 0] != 0 if words.shape[1] == 1 else words.any(axis=1)).reshape(C, A)
        event = self.path == "event" or (self.path == "auto" and active.mean() <= EVENT_MAX_ACTIVE_AXONS)
        pairs = self.active_pairs(slot) if self.sparse_max >= 0 else None
        slot = slot.reshape(C, A, -1)
        stoch_syn = self.stochastic_synapses(slot, t)
        stoch_thr = self.stochastic_thresholds(t)
        idle = ~active.any(axis=1)
        resting = idle & self.resting   # stay as they are this tick: nothing to compute
        for c0 in range(0, C, self.block):
            c1 = min(C, c0 + self.block)
            if resting[c0:c1].all():
                continue
            S = self.S[: c1 - c0]
            if self.sparse_block(pairs, c0, c1):
                self.integrate_sparse(slot, c0, c1, S)
            elif event:
                self.integrate_event(slot, active, c0, c1, S)
            else:
                self.integrate_dense(slot, ~idle[c0:c1], c0, c1, S)
            self.add_stochastic(S, c0, c1, stoch_syn)
            check = idle[c0:c1] & self.may_rest[c0:c1]
            before = self.V[c0:c1][check] if check.any() else None   # a copy (boolean index)
            self.update_neurons(S, c0, c1, stoch_thr, t)
            self.resting[c0:c1] = False
            if before is not None:
                fired = self.fire_buf[: c1 - c0, :B][check].any(axis=(1, 2))
                same = (self.V[c0:c1][check] == before).all(axis=(1, 2))
                self.resting[c0 + np.flatnonzero(check)] = same & ~fired
        slot[...] = 0
        self.deliver(t)

    # ------------------------------------------------------------------ step 2: integration
    def integrate_dense(self, slot: np.ndarray, busy: np.ndarray, c0: int, c1: int, S: np.ndarray) -> None:
        """S = x^T W_eff for the block as float32 batched matmuls over its busy cores (those with an
        active axon; the others get S = 0, in a layered network most cores of a tick); counts
        synaptic events."""
        if busy.all():
            x = unpack_float(slot[c0:c1], self.shape[3], out=self.unpacked[: c1 - c0])    # (nb, A, B)
            np.matmul(x.transpose(0, 2, 1), self.tab.weights[c0:c1], out=S)
            self.events += np.matmul(self.tab.fanout[c0:c1], x).sum(axis=(0, 1), dtype=np.float64)
            return
        S.fill(0)
        cores = c0 + np.flatnonzero(busy)
        if cores.size == 0:
            return
        x = unpack_float(slot[cores], self.shape[3], out=self.unpacked[: cores.size])  # (busy, A, B)
        S[cores - c0] = np.matmul(x.transpose(0, 2, 1), self.tab.weights[cores])
        self.events += np.matmul(self.tab.fanout[cores], x).sum(axis=(0, 1), dtype=np.float64)

    def sparse_block(self, pairs: np.ndarray | None, c0: int, c1: int) -> bool:
        """Whether the block's busy cores have at most ``sparse_max`` of their (axon, sample) pairs
        active (``pairs``: active pairs per core, None when the sparse path is off)."""
        if pairs is None:
            return False
        block = pairs[c0:c1]
        total = block.sum()
        return bool(0 < total <= self.sparse_max * self.shape[1] * self.shape[3] * np.count_nonzero(block))

    def active_pairs(self, slot: np.ndarray) -> np.ndarray:
        """Active (axon, sample) pairs per core, (C,) int64: the set bits of each core's rows."""
        C = self.shape[0]
        bits = np.bitwise_count(slot) if hasattr(np, "bitwise_count") else _POPCOUNT[slot]
        return bits.reshape(C, -1).sum(axis=1, dtype=np.int64)

    def integrate_sparse(self, slot: np.ndarray, c0: int, c1: int, S: np.ndarray) -> None:
        """S of the block from the active (axon, sample) pairs alone (numba's type counts, else
        torch's bags of W_eff rows); counts synaptic events."""
        if type_counts.available():
            type_counts.integrate(self.tab.counts, slot, c0, c1, S, self.events)
            return
        B = self.shape[3]
        # unpacking along the bytes of the transposed block gives the (core, sample, axon) mask at once
        mask = np.unpackbits(slot[c0:c1].transpose(0, 2, 1), axis=1, count=B, bitorder="little")
        S[...] = sparse.bag_sums(self.tab.bag_tables(), mask.view(bool), np.arange(c0, c1), self.events)

    def integrate_event(self, slot: np.ndarray, active: np.ndarray, c0: int, c1: int, S: np.ndarray) -> None:
        """S from the gathered rows of axons active in some sample; idle cores are skipped."""
        S.fill(0)
        active = active[c0:c1]
        count = active.sum(axis=1)
        cores = np.flatnonzero(count)
        if cores.size == 0:
            return
        width = np.minimum(EVENT_WIDTHS[np.searchsorted(EVENT_WIDTHS, count[cores])], self.shape[1])
        for k in np.unique(width).tolist():
            sel = cores[width == k]
            rows, axons = np.nonzero(active[sel])                  # sorted by row
            position = np.arange(rows.size) - np.searchsorted(rows, np.arange(sel.size))[rows]
            index = np.zeros((sel.size, k), np.int64)              # padding reads axon 0 ...
            index[rows, position] = axons
            packed = slot[c0 + sel[:, None], index]                # (n, k, bytes)
            packed[np.arange(k)[None, :] >= count[sel][:, None]] = 0  # ... and is masked out
            x = unpack_float(packed, self.shape[3])                # (n, k, B)
            w = self.tab.weights[(c0 + sel)[:, None], index]      # (n, k, N)
            S[sel] = np.matmul(x.transpose(0, 2, 1), w)
            fan = np.take_along_axis(self.tab.fanout[c0 + sel, 0], index, axis=1)[:, None, :]
            self.events += np.matmul(fan, x).sum(axis=(0, 1), dtype=np.float64)

    def stochastic_synapses(self, slot: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This tick's stochastic synaptic inputs as (core, sample * N + neuron, +-1 or 0), sorted
        by core: every active (axon, connected stochastic neuron) pair draws once per sample."""
        tab = self.tab
        if tab.ssy_core.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        B, N = self.shape[3], self.shape[2]
        bits = np.unpackbits(slot[tab.ssy_core, tab.ssy_axon], axis=1, count=B, bitorder="little")
        pair, b = np.nonzero(bits)                                 # sorted by pair, so by core
        core, neuron, axon = tab.ssy_core[pair], tab.ssy_neuron[pair], tab.ssy_axon[pair]
        r = prng.draw(self.spec.seed, prng.SYNAPSE, self.samples[b], t, core, neuron, axon)
        hit = (r.astype(np.int64) % tab.synapse_prob_den) < tab.ssy_abs[pair]
        return core, b * N + neuron, np.where(hit, tab.ssy_sign[pair], np.float32(0))

    def add_stochastic(self, S: np.ndarray, c0: int, c1: int, stoch: tuple) -> None:
        """Add the block's share of the stochastic synaptic inputs to S."""
        core, offset, value = stoch
        if core.size == 0:
            return
        lo, hi = np.searchsorted(core, [c0, c1])
        if hi > lo:
            per_core = self.shape[3] * self.shape[2]
            np.add.at(S.reshape(-1), (core[lo:hi] - c0) * per_core + offset[lo:hi], value[lo:hi])

    def stochastic_thresholds(self, t: int) -> np.ndarray | None:
        """Thresholds alpha + (r & mask) of the neurons with a non-zero mask, (neurons, B)."""
        tab = self.tab
        if tab.sth_core.size == 0:
            return None
        r = prng.draw(self.spec.seed, prng.THRESHOLD, self.samples[None, :], t,
                      tab.sth_core[:, None], tab.sth_neuron[:, None], 0)
        return tab.sth_alpha[:, None] + (r.astype(np.int64) & tab.sth_mask[:, None])

    # ------------------------------------------------------------------ steps 2-4: neurons
    def update_neurons(self, S: np.ndarray, c0: int, c1: int, stoch_thr: np.ndarray | None, t: int) -> None:
        """Saturating integration, leak, threshold, reset and negative floor for a block, then
        record and pack its spikes."""
        tab = self.tab
        nb = c1 - c0
        V, fire = self.V[c0:c1], self.fire_buf[:nb, :self.shape[3]]
        V += S
        if tab.leak is not None:
            V += tab.leak[c0:c1]
        # both saturations and the negative floor as one clip (see tables.clip_bounds)
        np.minimum(V, tab.v_high[c0:c1], out=V)
        np.maximum(V, tab.v_low[c0:c1], out=V)
        alpha = tab.alpha[c0:c1]
        np.greater_equal(V, alpha, out=fire)
        if stoch_thr is not None:
            lo, hi = np.searchsorted(tab.sth_core, [c0, c1])
            if hi > lo:
                c, n = tab.sth_core[lo:hi] - c0, tab.sth_neuron[lo:hi]
                fire[c, :, n] = V[c, :, n] >= stoch_thr[lo:hi]
        # reset as arithmetic (masked stores are slow): V -= f * (to_value * V + offset) with f the
        # 0/1 spikes, offset = -reset_value (mode 0), alpha (mode 1), 0 (mode 2)
        f, T = self.f[:nb], self.T[:nb]
        np.copyto(f, fire)
        if tab.reset_modes == {1}:            # V -= f * alpha
            np.multiply(f, alpha, out=T)
        elif tab.reset_modes == {0} and tab.reset_to_zero:  # V -= f * V
            np.multiply(V, f, out=T)
        elif tab.reset_modes != {2}:
            np.multiply(V, tab.reset_to_value[c0:c1], out=T)
            T += tab.reset_offset[c0:c1]
            T *= f
        if tab.reset_modes != {2}:
            V -= T
        self.count_spikes(fire, f, c0, c1)
        N = self.shape[2]
        pack_rows(self.fire_buf[:nb], self.fired[c0 * N:c1 * N].reshape(nb, N, -1))
        if self.recorded is not None:
            self.recorded[t, :, c0:c1] = fire.transpose(1, 0, 2)

    def count_spikes(self, fire: np.ndarray, f: np.ndarray, c0: int, c1: int) -> None:
        """Add the block's spikes to the output ports and its spikes sent, hops and crossings."""
        routing = self.tab.routing
        # per core the sums stay below 2^24, exact in float32; the total adds up in float64
        self.sent += np.matmul(f, routing.sender_costs[c0:c1]).sum(axis=0, dtype=np.float64)
        lo, hi = np.searchsorted(routing.port_core, [c0, c1])
        if hi > lo:
            self.port_counts[lo:hi] += fire[routing.port_core[lo:hi] - c0, :, routing.port_neuron[lo:hi]]

    # ------------------------------------------------------------------ step 5: routing
    def deliver(self, t: int) -> None:
        """OR this tick's spikes into the ring slots of their arrival ticks."""
        routing = self.tab.routing
        fired = wide(self.fired)
        for group in routing.groups:
            group.fanin.deliver(fired, wide(self.ring[(t + group.delay) % routing.ring_size]))

    # ------------------------------------------------------------------ outcome
    def result(self) -> Result:
        """Port counts and activity counters."""
        tab, spec = self.tab, self.spec
        C, A, N, B = self.shape
        by_port = np.zeros((self.program.num_ports, B), np.int64)
        by_port[tab.routing.port_id] = self.port_counts
        port_counts = by_port.T  # (B, P), a transposed view
        spikes, hops, crossings = np.rint(self.sent[:, :3].T).astype(np.int64)
        activity = {
            "synaptic_events": np.rint(self.events).astype(np.int64),
            "neuron_updates": np.full(B, tab.neurons_in_use * spec.ticks, np.int64),
            "spikes": spikes,
            "hops": hops,
            "chip_crossings": crossings,
            "core_ticks": np.full(B, C * spec.ticks, np.int64),
        }
        return make_result(self.program, port_counts, activity, spec.ticks, "emulator", self.recorded)

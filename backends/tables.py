"""Static tables the fast emulator derives once per program: effective weights, neuron parameters
shaped to broadcast over (core, sample, neuron) state, the stochastic synapses and thresholds,
and the routing tables.

The tables of the last program are cached, keyed by a fingerprint of every array, so emulating a
program batch after batch builds them once (``clear_cache`` drops them).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossmap.program import ARRAY_FIELDS, RESET_LINEAR, RESET_TO_VALUE

from crossmap.backends.routing import Routing, build_routing
from crossmap.backends.sparse import BagTables
from crossmap.backends.type_counts import CountTables, count_tables

# W_eff is built this many bytes at a time
_BUILD_BYTES = 64 << 20
_FLOAT32_EXACT = 2**24


@dataclass
class Tables:
    """Everything static the emulator's tick loop reads. Per-neuron parameters are (C, 1, N) in
    the state's dtype, to broadcast over the batch."""

    num_cores: int
    num_axons: int
    num_neurons: int
    state_dtype: type
    weights: np.ndarray          # float32 (C, A, N): crossbar * weight[axon_type], 0 where stochastic
    fanout: np.ndarray           # float32 (C, 1, A): connected neurons per axon
    alpha: np.ndarray
    leak: np.ndarray | None      # None when every leak is 0
    v_low: np.ndarray            # bounds of one clip doing both saturations and the floor
    v_high: np.ndarray
    reset_modes: frozenset[int]  # modes that occur
    reset_to_value: np.ndarray   # 1 for reset mode 0, else 0
    reset_offset: np.ndarray     # -reset_value (mode 0), alpha (mode 1), 0 (mode 2)
    reset_to_zero: bool          # every reset value is 0
    neurons_in_use: int          # Program.used_neurons
    # stochastic thresholds, sorted by core
    sth_core: np.ndarray
    sth_neuron: np.ndarray
    sth_alpha: np.ndarray        # int64
    sth_mask: np.ndarray         # int64
    # stochastic synapses (core, axon, neuron), their weight's sign and magnitude, sorted by core
    ssy_core: np.ndarray
    ssy_axon: np.ndarray
    ssy_neuron: np.ndarray
    ssy_sign: np.ndarray         # float32
    ssy_abs: np.ndarray          # int64
    synapse_prob_den: int
    routing: Routing
    counts: CountTables = field(repr=False)   # the sparse path's tables (numba kernel)
    bags: BagTables | None = field(default=None, repr=False)   # the sparse path's tables without numba, built on first use

    def bag_tables(self) -> BagTables:
        """The tables of the sparse integration path (``crossmap.backends.sparse``)."""
        if self.bags is None:
            self.bags = BagTables(self.weights, self.fanout)
        return self.bags


_cache: dict[str, Any] = {"key": None, "tables": None}


def clear_cache() -> None:
    """Drop the cached tables of the last program."""
    _cache["key"], _cache["tables"] = None, None


def _fingerprint(program: Any) -> tuple:
    """Chip, sizes, and a CRC-32 of every array (bool arrays bit-packed first, which is faster)."""
    parts: list[Any] = [program.chip.to_json(), program.num_inputs, program.num_classes]
    for name in ARRAY_FIELDS:
        arr = np.ascontiguousarray(getattr(program, name))
        data = np.packbits(arr.reshape(-1)) if arr.dtype == bool else arr
        parts.append((name, arr.dtype.str, arr.shape, zlib.crc32(memoryview(data).cast("B"))))
    return tuple(parts)


def get_tables(program: Any) -> Tables:
    """The tables of ``program``, from the cache when its arrays are unchanged."""
    key = _fingerprint(program)
    if _cache["key"] != key:
        clear_cache()  # free the old weights before building new ones
        _cache["tables"] = build_tables(program)
        _cache["key"] = key
    return _cache["tables"]


def state_dtype(chip: Any) -> type:
    """float32 when every intermediate value (V + synaptic sum + leak, thresholds, the reset
    term) is an integer below 2^24 in magnitude, so float32 holds it exactly; else float64."""
    v = max(abs(chip.v_min), abs(chip.v_max))
    synaptic = chip.axons_per_core * max(abs(chip.weight_min), abs(chip.weight_max))
    leak = max(abs(chip.leak_min), abs(chip.leak_max))
    biggest = max(v + synaptic + leak, 2 * chip.alpha_max, chip.beta_max, 2 * v + chip.alpha_max)
    return np.float32 if biggest < _FLOAT32_EXACT else np.float64


def clip_bounds(program: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron (low, high) with ``clip(V + S + leak, low, high)`` equal to saturating after the
    synaptic sum, adding the leak, saturating again, then flooring at -beta.

    Saturating x to [lo, hi] and then x + leak again is one clip of x + leak to the intersection
    of [lo + leak, hi + leak] and [lo, hi] (or to the single value hi when leak > 0, lo when
    leak < 0, if they do not intersect). The floor max(V, -beta) before the threshold test only
    changes V < -beta <= 0 < alpha, which cannot fire, so it folds into the same clip."""
    chip = program.chip
    leak = program.leak.astype(np.int64)
    low = np.maximum(chip.v_min, chip.v_min + leak)
    high = np.minimum(chip.v_max, chip.v_max + leak)
    empty = low > high
    edge = np.where(leak > 0, chip.v_max, chip.v_min)
    low, high = np.where(empty, edge, low), np.where(empty, edge, high)
    floor = -program.beta.astype(np.int64)
    return np.maximum(low, floor), np.maximum(high, floor)


def effective_weights(program: Any) -> np.ndarray:
    """W_eff[c, a, n] = crossbar[c, a, n] * weight[c, n, axon_type[c, a]], 0 for stochastic synapses."""
    C, A, N = program.crossbar.shape
    out = np.empty((C, A, N), np.float32)
    step = max(1, _BUILD_BYTES // (A * N * 4))
    for c0 in range(0, C, step):  # in chunks of cores, to bound the temporaries
        c1 = min(C, c0 + step)
        rows = np.arange(c1 - c0)[:, None]
        types = program.axon_type[c0:c1]
        w = program.weight[c0:c1].transpose(0, 2, 1)[rows, types].astype(np.float32)     # (nb, A, N)
        keep = program.crossbar[c0:c1] & ~program.stochastic_synapse[c0:c1].transpose(0, 2, 1)[rows, types]
        np.multiply(w, keep, out=out[c0:c1])
    return out


def _stochastic(program: Any) -> dict[str, Any]:
    sth_core, sth_neuron = np.nonzero(program.threshold_mask > 0)
    cores, axons, neurons = [], [], []
    for c in np.flatnonzero(program.stochastic_synapse.any(axis=(1, 2))).tolist():  # once per program
        a, n = np.nonzero(program.stochastic_synapse[c].T[program.axon_type[c]] & program.crossbar[c])
        cores.append(np.full(a.size, c, np.int64))
        axons.append(a)
        neurons.append(n)
    ssy_core, ssy_axon, ssy_neuron = (np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
                                      for parts in (cores, axons, neurons))
    s = program.weight[ssy_core, ssy_neuron, program.axon_type[ssy_core, ssy_axon]].astype(np.int64)
    return dict(sth_core=sth_core.astype(np.int64), sth_neuron=sth_neuron.astype(np.int64),
                sth_alpha=program.alpha[sth_core, sth_neuron].astype(np.int64),
                sth_mask=program.threshold_mask[sth_core, sth_neuron].astype(np.int64),
                ssy_core=ssy_core, ssy_axon=ssy_axon, ssy_neuron=ssy_neuron,
                ssy_sign=np.sign(s).astype(np.float32), ssy_abs=np.abs(s))


def build_tables(program: Any) -> Tables:
    """Derive the emulator's tables from a (validated) program."""
    C, A, N = program.crossbar.shape
    dtype = state_dtype(program.chip)

    def row(arr: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(arr, dtype=dtype)[:, None, :]

    mode = program.reset_mode
    low, high = clip_bounds(program)
    in_use = program.used_neurons()
    fanout = program.crossbar.sum(axis=2, dtype=np.int32)   # connected neurons per axon, (C, A)
    offset = np.select([mode == RESET_TO_VALUE, mode == RESET_LINEAR], [-program.reset_value.astype(np.int64),
                                                                          program.alpha], 0)
    return Tables(
        num_cores=C, num_axons=A, num_neurons=N, state_dtype=dtype, weights=effective_weights(program),
        fanout=fanout.astype(np.float32)[:, None, :],
        alpha=row(program.alpha), leak=row(program.leak) if program.leak.any() else None,
        v_low=row(low), v_high=row(high), reset_modes=frozenset(np.unique(mode).tolist()),
        reset_to_value=row(mode == RESET_TO_VALUE), reset_offset=row(offset),
        reset_to_zero=not program.reset_value.any(), neurons_in_use=int(in_use.sum()),
        synapse_prob_den=int(program.chip.synapse_prob_den), routing=build_routing(program, dtype),
        counts=count_tables(program, fanout), **_stochastic(program))

"""The numpy emulator's sparse synaptic integration, compiled with numba: work in proportion to
the active (axon, sample) pairs, with no float weight table.

A neuron's synaptic sum is ``S[n] = sum_g weight[n, g] * count[g, n]`` where ``count[g, n]`` is
the number of active axons of type ``g`` connected to ``n``. Per core, every active
(axon, sample) pair, found from the set bits of the packed spike rows, adds the axon's 0/1
crossbar row to the byte counters of its sample and type (32 bytes per AVX2 add, the row and the
counters stay in cache); then per sample the counters are weighed by the core's per-type weights,
four types per pass. The counters are bytes when no type has more than 255 axons on the core (no
count can reach 256), else int32. Every product and sum is an integer below 2^24 (the chip spec
checks ``A * max|w| < 2^24``), so float32 gives the dense matmul's values exactly.

numba is optional: ``available()`` says whether this path can run; the kernels are compiled on
first use and cached on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from crossmap.compiled import numba_available
from crossmap.program import Program

# byte value -> the index of its lowest set bit (0 for 0, which is never looked up)
_LOWEST_BIT = np.array([0] + [(v & -v).bit_length() - 1 for v in range(1, 256)], np.uint8)
_GROUP = 4   # types weighed per pass over a sample's counters (as the kernel does)


def available() -> bool:
    """Whether numba (which compiles the kernel) can be imported here."""
    return numba_available()


@dataclass
class CountTables:
    """What the kernel reads for one program: the crossbar as 0/1 bytes (a view, no copy), axon
    types, per-type deterministic weights (stochastic synapses weigh 0 here; the emulator adds
    them from the PRNG), connected neurons per axon, and per core whether byte counters suffice."""

    crossbar: np.ndarray    # uint8 (C, A, N)
    axon_type: np.ndarray   # int32 (C, A)
    weight: np.ndarray      # float32 (C, G', N), G' the types padded to a multiple of 4 with zeros
    fanout: np.ndarray      # float64 (C, A)
    narrow: np.ndarray      # bool (C,): no type has more than 255 axons on the core
    scratch: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None   # the kernel's counters, reused


def count_tables(program: Program, fanout: np.ndarray) -> CountTables:
    """The kernel's tables of ``program``, whose connected neurons per axon are ``fanout`` (C, A)."""
    C, _, N = program.crossbar.shape
    G = program.weight.shape[2]
    padded = -(-G // _GROUP) * _GROUP
    weight = np.zeros((C, padded, N), np.float32)
    weight[:, :G] = (program.weight * ~program.stochastic_synapse).transpose(0, 2, 1)
    types = np.ascontiguousarray(program.axon_type, dtype=np.int32)
    population = np.bincount((np.arange(C)[:, None] * G + types).reshape(-1), minlength=C * G).reshape(C, G)
    return CountTables(crossbar=np.ascontiguousarray(program.crossbar).view(np.uint8), axon_type=types,
                       weight=weight, fanout=fanout.astype(np.float64),
                       narrow=population.max(axis=1) <= 255)


def integrate(tables: CountTables, slot: np.ndarray, c0: int, c1: int, S: np.ndarray, events: np.ndarray) -> None:
    """S[c - c0] (B, N) float32 of cores ``c0:c1`` from their packed spike rows ``slot``
    (C, A, bytes) (sample ``8 j + k`` in bit ``k`` of byte ``j``); adds the synaptic events per
    sample (active axons' connected neurons) to ``events`` (B,) float64."""
    B, N = S.shape[1], S.shape[2]
    key = (B, tables.weight.shape[1], N)
    if tables.scratch is None or tables.scratch[0].shape != key:
        # byte and int32 counters per (sample, type, neuron), all 0 between calls, and touched samples
        tables.scratch = (np.zeros(key, np.uint8), np.zeros(key, np.int32), np.zeros(B, np.bool_))
    narrow, wide, touched = tables.scratch
    _compiled()(slot, c0, c1, tables.crossbar, tables.axon_type, tables.weight, tables.fanout, tables.narrow,
                S, events, narrow, wide, touched, _LOWEST_BIT)


def _compiled() -> Callable[..., None]:
    """The kernel (numba imported here, on first use, not at start-up)."""
    from crossmap.backends import type_counts_kernel

    return type_counts_kernel.block_sums

"""The one counter-based PRNG of the chip model.

Every random bit in crossmap (stochastic thresholds, stochastic synapses, rate-coded inputs) is a
pure function of a counter, so every backend, batch size and core order gives the same bits:

    r = draw(seed, stream, sample, tick, core, neuron, axon)      # uint32

The counter words are folded in one at a time through the SplitMix64 finalizer:

    h = mix(seed + GOLDEN)
    for word in (stream, sample, tick, core, neuron, axon):
        h = mix(h ^ (word + GOLDEN))            # all arithmetic modulo 2^64
    r = h >> 32

with mix(z) = z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB;
z ^= z >> 31. Streams: THRESHOLD (axon = 0), SYNAPSE (axon = the active axon), INPUT (core = 0,
neuron = the input channel, axon = 0).
"""

from __future__ import annotations

import numpy as np

THRESHOLD = 0
SYNAPSE = 1
INPUT = 2

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    z = z ^ (z >> np.uint64(30))
    z = z * _M1
    z = z ^ (z >> np.uint64(27))
    z = z * _M2
    return z ^ (z >> np.uint64(31))


def draw(seed, stream, sample, tick, core, neuron, axon) -> np.ndarray:
    """uint32 random numbers for broadcastable integer counters (see the module docstring)."""
    with np.errstate(over="ignore"):
        h = _mix(np.asarray(seed, dtype=np.uint64) + _GOLDEN)
        for word in (stream, sample, tick, core, neuron, axon):
            h = _mix(h ^ (np.asarray(word).astype(np.uint64) + _GOLDEN))
    return (h >> np.uint64(32)).astype(np.uint32)

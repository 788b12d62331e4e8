"""The chip's counter-based PRNG (``crossmap.prng``) in torch int64 arithmetic, bit for bit.

torch has no full set of uint64 operations, so the SplitMix64 words live in int64: addition,
multiplication and XOR are the same bits modulo 2^64 in two's complement (torch's integer
arithmetic wraps on CPU and CUDA), constants at or above 2^63 are written as their negative
twins, and the logical right shift is an arithmetic shift with the sign-extended bits masked off.
"""

from __future__ import annotations

import torch

from crossmap.prng import _GOLDEN, _M1, _M2


def _signed(value: int) -> int:
    """``value`` modulo 2^64 as a signed 64-bit integer."""
    value %= 1 << 64
    return value - (1 << 64) if value >= 1 << 63 else value


GOLDEN = _signed(int(_GOLDEN))
M1 = _signed(int(_M1))
M2 = _signed(int(_M2))


def _shr(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 words holding uint64 bits."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    z = z ^ _shr(z, 30)
    z = z * M1
    z = z ^ _shr(z, 27)
    z = z * M2
    return z ^ _shr(z, 31)


def draw(seed: int, stream: int, sample: torch.Tensor | int, tick: int, core: torch.Tensor | int,
         neuron: torch.Tensor | int, axon: torch.Tensor | int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Random numbers in [0, 2^32) as int64, equal to ``crossmap.prng.draw`` on the same
    broadcastable counters (non-negative integers; tensors must be int64 on ``device``)."""
    h = _mix(torch.tensor(_signed(int(seed) + int(_GOLDEN)), dtype=torch.int64, device=device))
    for word in (stream, sample, tick, core, neuron, axon):
        if isinstance(word, torch.Tensor):
            h = _mix(h ^ (word + GOLDEN))
        else:
            h = _mix(h ^ _signed(int(word) + int(_GOLDEN)))
    return _shr(h, 32)

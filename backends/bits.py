"""Bit-packed spike rows: a row of ``batch`` spikes is stored in ``ceil(batch / 8)`` bytes, sample
``8 * j + k`` in bit ``k`` of byte ``j`` (numpy's little bit order), so routing spikes moves a few
bytes per neuron and the axon ring buffer is 8 times smaller than a bool one."""

from __future__ import annotations

import numpy as np

# byte value -> its 8 bits as float32 0/1, low bit first
_UNPACK_TABLE = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(np.float32)


def packed_width(batch: int) -> int:
    """Bytes per packed row of ``batch`` spikes."""
    return (batch + 7) // 8


def pack(spikes: np.ndarray, axis: int) -> np.ndarray:
    """Pack bool ``spikes`` along ``axis`` (that axis becomes bytes)."""
    return np.packbits(spikes, axis=axis, bitorder="little")


def pack_rows(spikes: np.ndarray, out: np.ndarray) -> None:
    """Pack bool ``spikes`` (cores, 8 * bytes, neurons) along the sample axis into
    ``out`` (cores, neurons, bytes). With neurons a multiple of 8 the shifts work on uint64 words
    holding 8 neurons' 0/1 bytes each, so no byte can carry into the next."""
    cores, samples, neurons = spikes.shape
    if neurons % 8 or samples % 8:
        out[...] = pack(spikes, axis=1).transpose(0, 2, 1)
        return
    words = spikes.view(np.uint64).reshape(cores, samples // 8, 8, neurons // 8)
    acc = words[:, :, 0, :].copy()
    for bit in range(1, 8):
        acc |= words[:, :, bit, :] << np.uint64(bit)
    out[...] = acc.view(np.uint8).reshape(cores, samples // 8, neurons).transpose(0, 2, 1)


def unpack_float(packed: np.ndarray, batch: int, out: np.ndarray | None = None) -> np.ndarray:
    """Packed rows (..., bytes) as float32 0/1 (..., batch); ``out`` may be a (..., bytes, 8)
    float32 buffer to fill. The result is a view of it, strided when batch is not a multiple of 8."""
    full = np.take(_UNPACK_TABLE, packed, axis=0, out=out, mode="clip")
    flat = full.reshape(packed.shape[:-1] + (packed.shape[-1] * 8,))
    return flat if flat.shape[-1] == batch else flat[..., :batch]


def wide(packed: np.ndarray) -> np.ndarray:
    """A C-contiguous (rows, bytes) uint8 array viewed as (rows, words) of the widest unsigned
    integer dividing its width, so gathers and ORs move whole words."""
    width = packed.shape[1]
    for size, dtype in ((8, np.uint64), (4, np.uint32), (2, np.uint16)):
        if width % size == 0:
            return packed.view(dtype)
    return packed

"""The compiled neuron update of ``crossmap.passes.binarize.trains`` (imported only when a group is
simulated, as importing numba takes a few tenths of a second). Synaptic input is summed in
integers: the weights are integers, so any order gives the same sums."""

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def run_group(source, key_delay, key_channel, indptr, key, weight, initial_v, alpha, leak, beta, reset_mode,
              reset_value, v_min, v_max, ticks, linear):  # pragma: no cover
    """Spikes (ticks, size, batch) of one group, neuron by neuron, all samples at once.

    ``source`` (source ticks, channels, batch) holds every spike the group can read as 0 or -1
    (int8); key k reads channel ``key_channel[k]`` ``key_delay[k]`` ticks late. Neuron j adds
    ``weight[i]`` (its integer type: the sums must fit it) for every spike of key ``key[i]``, i in
    ``indptr[j]:indptr[j + 1]``. Each tick: add the input, clip to [v_min, v_max], add the leak,
    clip, fire at v >= alpha, then reset (mode 0: to reset_value, 1: subtract alpha, 2: none) and
    floor a neuron that did not fire at -beta (with ``linear``, every neuron in mode 1, the floor
    applies after the subtraction too)."""
    source_ticks, batch = source.shape[0], source.shape[2]
    size = initial_v.shape[0]
    out = np.zeros((ticks, size, batch), np.bool_)
    v = np.empty((size, batch), np.int64)
    for j in range(size):
        v[j, :] = initial_v[j]
    acc = np.zeros(batch, weight.dtype)
    for t in range(ticks):
        for j in range(size):
            for i in range(indptr[j], indptr[j + 1]):
                k = key[i]
                when = t - key_delay[k]
                if when < 0 or when >= source_ticks:
                    continue
                w = weight[i]
                spikes = source[when, key_channel[k]]
                for b in range(batch):
                    acc[b] += w & spikes[b]
            vj = v[j]
            fired = out[t, j]
            top, lk, floor, mode, to = alpha[j], leak[j], -beta[j], reset_mode[j], reset_value[j]
            for b in range(batch):
                x = vj[b] + acc[b]
                acc[b] = 0
                x = min(max(x, v_min), v_max)
                x = min(max(x + lk, v_min), v_max)
                f = x >= top
                fired[b] = f
                if linear:
                    x = max(x - top if f else x, floor)
                elif mode == 0:
                    x = to if f else max(x, floor)
                elif mode == 1:
                    x = x - top if f else max(x, floor)
                else:
                    x = x if f else max(x, floor)
                vj[b] = x
    return out

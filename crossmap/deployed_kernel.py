"""The compiled kernel of ``DeployedNetwork.simulate``: imported only when a simulation runs with
numba present, as importing numba takes a few tenths of a second."""

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def add_line_events(active, indptr, indices, connected, axon_type, weight, acc):  # pragma: no cover
    """acc[b, j] += weight[j, axon_type[i]] for every active line i of sample b and every target j
    it has a (true) synapse to; ``active`` (B, lines) bool, the synapses as CSR arrays. Each
    synapse is read once for all the samples in which its line is active."""
    batch, lines = active.shape
    size = acc.shape[1]
    local = np.zeros((size, batch), np.int64)  # target-major: one synapse's samples are adjacent
    samples = np.empty(batch, np.int64)
    for i in range(lines):
        m = 0
        for b in range(batch):
            if active[b, i]:
                samples[m] = b
                m += 1
        if m == 0:
            continue
        k = axon_type[i]
        for p in range(indptr[i], indptr[i + 1]):
            if connected[p]:
                j = indices[p]
                w = weight[j, k]
                for q in range(m):
                    local[j, samples[q]] += w
    for j in range(size):
        for b in range(batch):
            acc[b, j] += local[j, b]

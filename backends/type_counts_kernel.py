"""The compiled kernel of ``crossmap.backends.type_counts`` (see its docstring): imported only
when the sparse path runs, as importing numba takes a few tenths of a second."""

import numba
from numba import float32, int64


@numba.njit(nogil=True, cache=True)
def core_sums(slot, crossbar, types, weight, fanout, S, events, acc, touched, lowest):  # pragma: no cover
    """S (B, N) of one core; ``acc`` (B, G', N) holds zeros on entry and on return."""
    A, N = crossbar.shape
    G = weight.shape[0]
    B = S.shape[0]
    for a in range(A):
        g = types[a]
        f = fanout[a]
        row = crossbar[a]
        for j in range(slot.shape[1]):
            byte = int64(slot[a, j])
            while byte:
                b = 8 * j + int64(lowest[byte])
                byte &= byte - 1
                if b >= B:   # padding bits of the last byte
                    break
                counts = acc[b, g]
                for n in range(N):
                    counts[n] += row[n]
                touched[b] = True
                events[b] += f
    for b in range(B):
        out = S[b]
        if not touched[b]:
            for n in range(N):
                out[n] = 0.0
            continue
        touched[b] = False
        counts = acc[b]
        for g in range(0, G, 4):
            w0, w1, w2, w3 = weight[g], weight[g + 1], weight[g + 2], weight[g + 3]
            k0, k1, k2, k3 = counts[g], counts[g + 1], counts[g + 2], counts[g + 3]
            if g == 0:
                for n in range(N):
                    out[n] = ((w0[n] * float32(k0[n]) + w1[n] * float32(k1[n]))
                              + (w2[n] * float32(k2[n]) + w3[n] * float32(k3[n])))
            else:
                for n in range(N):
                    out[n] += ((w0[n] * float32(k0[n]) + w1[n] * float32(k1[n]))
                               + (w2[n] * float32(k2[n]) + w3[n] * float32(k3[n])))
        counts[...] = 0

@numba.njit(nogil=True, cache=True)
def block_sums(slot, c0, c1, crossbar, types, weight, fanout, narrow, S, events, acc8, acc32, touched,
               lowest):  # pragma: no cover
    for c in range(c0, c1):
        if narrow[c]:
            core_sums(slot[c], crossbar[c], types[c], weight[c], fanout[c], S[c - c0], events, acc8, touched,
                      lowest)
        else:
            core_sums(slot[c], crossbar[c], types[c], weight[c], fanout[c], S[c - c0], events, acc32, touched,
                      lowest)

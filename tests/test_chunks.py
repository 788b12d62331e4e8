"""Fan-in above one core: the input chunks of partial sums (crossmap.passes.binarize.chunks)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from crossmap.passes.binarize.chunks import _orders, estimated_cores, input_chunks


def _conv(channels: int, filters: int, size: int, kernel: int) -> sp.csr_matrix:
    """Connectivity of a valid convolution: (filters, out, out) neurons x (channels, size, size) inputs."""
    out = size - kernel + 1
    rows, cols = [], []
    for f in range(filters):
        for y in range(out):
            for x in range(out):
                for c in range(channels):
                    for dy in range(kernel):
                        for dx in range(kernel):
                            rows.append((f * out + y) * out + x)
                            cols.append((c * size + y + dy) * size + x + dx)
    data = np.random.default_rng(0).standard_normal(len(rows))
    return sp.csr_matrix((data, (rows, cols)), shape=(filters * out * out, channels * size * size))


def _lines(w: sp.csr_matrix, chunk: np.ndarray, bits: int) -> int:
    return int(np.diff(w[:, chunk].indptr).max()) * bits


def test_a_layer_that_fits_one_core_is_one_chunk():
    w = sp.csr_matrix(np.ones((10, 60)))
    assert [c.tolist() for c in input_chunks(w, 4, 256, 256)] == [list(range(60))]


def test_a_dense_layer_is_dealt_round_robin_into_the_fewest_chunks():
    w = sp.csr_matrix(np.ones((30, 200)))
    chunks = input_chunks(w, 4, 256, 256)
    assert len(chunks) == 4  # 800 lines in cores of 256 axons
    assert sorted(np.concatenate(chunks).tolist()) == list(range(200))
    assert max(_lines(w, c, 4) for c in chunks) <= 256


def test_a_convolution_is_cut_into_whole_channels_that_tile_cores_best():
    w = _conv(channels=6, filters=16, size=14, kernel=5)  # 150 inputs x 4 lines a neuron
    shape = (16, 10, 10)
    chunks = input_chunks(w, 4, 256, 256, shape=shape)
    assert len(chunks) == 6 and all(c.size == 196 and c[0] % 196 == 0 for c in chunks)  # one channel each
    fewest = [np.arange(k * 392, (k + 1) * 392) for k in range(3)]  # two channels: 200 lines a neuron
    chosen = min(estimated_cores([w[:, c] for c in chunks], o, 4, 256, 256) for o in _orders(w.shape[0], shape))
    wide = min(estimated_cores([w[:, c] for c in fewest], o, 4, 256, 256) for o in _orders(w.shape[0], shape))
    assert chosen < 0.6 * wide  # 4x4 positions x 16 filters fill a core on one channel


@pytest.mark.parametrize("seed", range(4))
def test_every_chunk_fits_a_core_and_every_input_is_read_once(seed):
    rng = np.random.default_rng(seed)
    n, m = 40, 300
    w = sp.random(n, m, density=0.25, random_state=seed, format="csr")
    w = w + sp.csr_matrix((np.ones(n), (np.arange(n), rng.integers(0, m, n))), shape=(n, m))
    chunks = input_chunks(w, 3, 64, 32)
    assert max(_lines(sp.csr_matrix(w), c, 3) for c in chunks) <= 64
    assert sorted(np.concatenate(chunks).tolist()) == list(range(m))

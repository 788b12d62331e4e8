"""The compiled kernels of binarize_rate against the numpy forms they replace, on random instances.

Oracle: each plain function below is the numpy code the product ran before its kernel; the kernel's
result must be equal to it bit for bit (ties, duplicate sums, NaNs and infinities included), so the
compiled programs stay the same."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from crossmap.chip import ChipSpec
from crossmap.deployed import INPUT, Lines, NeuronGroup
from crossmap.passes.binarize import codes_kernel
from crossmap.passes.binarize.codes import _few_values, _subset_sums, assign_with_feedback
from crossmap.passes.binarize.trains import simulate_group

CHIP = ChipSpec.truenorth()


# ---- the plain forms ---------------------------------------------------------------------------

def plain_nearest(values: np.ndarray, rows: np.ndarray, sums: np.ndarray) -> np.ndarray:
    return np.argmin(np.abs(values[:, None] - sums[rows]), axis=1)


def plain_moments(values, weight, rows, sums, n):
    subset = plain_nearest(values, rows, sums)
    err = np.bincount(rows, weight * (values - sums[rows, subset]) ** 2, minlength=n)
    count = sums.shape[1]
    key = rows * count + subset
    mass = np.bincount(key, weight, minlength=n * count).reshape(n, count)
    moment = np.bincount(key, weight * values, minlength=n * count).reshape(n, count)
    return subset, err, mass, moment


def plain_few_values(w: sp.csr_matrix, rows: np.ndarray, bits: int) -> dict[int, np.ndarray]:
    pairs = np.unique(np.stack([rows.astype(np.float64), w.data]), axis=1)
    per_row = np.bincount(pairs[0].astype(np.int64), minlength=w.shape[0])
    out = {}
    starts = np.concatenate([[0], np.cumsum(per_row)])
    for row in np.flatnonzero((per_row > 0) & (per_row <= bits)):
        out[int(row)] = pairs[1, starts[row]:starts[row + 1]]
    return out


def plain_feedback_group(values, sums, x, damping):
    nearest = np.argmin(np.abs(values[:, :, None] - sums[:, None, :]), axis=2)
    if np.allclose(np.take_along_axis(sums, nearest, axis=1), values, rtol=0, atol=1e-12) or len(x) == 0:
        return nearest
    m = values.shape[1]
    h = x.T @ x / len(x)
    h += (damping * max(float(np.mean(np.diag(h))), 1e-12)) * np.eye(m)
    order = np.argsort(-np.diag(h), kind="stable")
    h = h[np.ix_(order, order)]
    try:
        u = np.linalg.cholesky(np.linalg.inv(h)).T
    except np.linalg.LinAlgError:
        return nearest
    v = values[:, order].copy()
    chosen = np.zeros_like(nearest)
    for i in range(m):
        pick = np.argmin(np.abs(v[:, i, None] - sums), axis=1)
        err = (v[:, i] - sums[np.arange(len(v)), pick]) / u[i, i]
        v[:, i + 1:] -= err[:, None] * u[i, i + 1:][None, :]
        chosen[:, order[i]] = pick
    return chosen


def plain_assign_with_feedback(w, sums, inputs, damping=0.01):
    w = sp.csr_matrix(w)
    w.sort_indices()
    subset = np.zeros(w.nnz, np.int64)
    x = np.asarray(inputs, np.float64)
    groups: dict[bytes, list[int]] = {}
    for row in range(w.shape[0]):
        cols = w.indices[w.indptr[row]:w.indptr[row + 1]]
        if cols.size:
            groups.setdefault(cols.tobytes(), []).append(row)
    for rows in groups.values():
        r = np.asarray(rows)
        cols = w.indices[w.indptr[r[0]]:w.indptr[r[0] + 1]]
        where = w.indptr[r][:, None] + np.arange(cols.size)[None, :]
        subset[where] = plain_feedback_group(w.data[where], sums[r], x[:, cols], damping)
    return subset


def plain_simulate_group(chip, g, incoming, delays, trains, spikes, ticks):
    batch, t_in, _ = spikes.shape
    feeds = []
    for l, delay in zip(incoming, delays):
        syn = l.synapses.tocoo()
        w = g.weight[syn.col, l.axon_type[syn.row]].astype(np.float32)
        matrix = sp.csr_matrix((w, (syn.row, syn.col)), shape=(l.num_lines, g.size))
        if l.source == INPUT:
            feeds.append((None, l.source_index, np.zeros(l.num_lines, np.int64), matrix))
        else:
            feeds.append((trains[l.source], l.source_index, delay, matrix))
    v = np.broadcast_to(g.initial_v.astype(np.int64), (batch, g.size)).copy()
    out = np.zeros((ticks, batch, g.size), bool)
    alpha, leak, beta = (np.asarray(a, np.int64) for a in (g.alpha, g.leak, g.beta))
    linear = bool(np.all(g.reset_mode == 1))
    for t in range(ticks):
        acc = np.zeros((batch, g.size), np.float32)
        for train, index, delay, matrix in feeds:
            if train is None:
                if t >= t_in:
                    continue
                active = spikes[:, t, index]
            else:
                when = t - delay
                ok = when >= 0
                if not ok.any():
                    continue
                if ok.all() and (when == when[0]).all():
                    active = train[when[0]][:, index]
                else:
                    active = np.zeros((batch, index.size), bool)
                    active[:, ok] = train[when[ok], :, index[ok]].T
            if active.any():
                acc += np.asarray(matrix.T @ active.T.astype(np.float32)).T
        v += acc.astype(np.int64)
        np.clip(v, chip.v_min, chip.v_max, out=v)
        v += leak
        np.clip(v, chip.v_min, chip.v_max, out=v)
        fire = np.greater_equal(v, alpha, out=out[t])
        if linear:
            np.subtract(v, alpha, out=v, where=fire)
            np.maximum(v, -beta, out=v)
        else:
            reset = np.where(g.reset_mode == 0, g.reset_value, np.where(g.reset_mode == 1, v - g.alpha, v))
            v = np.where(fire, reset, np.where(v < -g.beta, -g.beta, v))
    return out


# ---- random instances --------------------------------------------------------------------------

def random_codes(rng: np.random.Generator, n: int, bits: int, *, integer: bool) -> np.ndarray:
    """Per-row subset sums: integer codes (many equal sums and exact midpoints) or float ones."""
    if integer:
        c = rng.integers(-4, 5, (n, bits)).astype(np.float64)
    else:
        c = rng.standard_normal((n, bits))
    return np.ascontiguousarray(_subset_sums(c))


def random_values(rng: np.random.Generator, sums: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Values near, on and exactly between the row's sums, and random ones."""
    picks = sums[rows, rng.integers(0, sums.shape[1], rows.size)]
    other = sums[rows, rng.integers(0, sums.shape[1], rows.size)]
    kind = rng.integers(0, 4, rows.size)
    return np.where(kind == 0, picks, np.where(kind == 1, (picks + other) / 2,
                                               np.where(kind == 2, picks + 1e-3 * rng.standard_normal(rows.size),
                                                        3 * rng.standard_normal(rows.size))))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("integer", [True, False])
def test_codes_nearest_sums_and_moments_equal_the_plain_form(seed, integer):
    rng = np.random.default_rng(seed)
    n, bits = int(rng.integers(1, 40)), int(rng.integers(1, 5))
    sums = random_codes(rng, n, bits, integer=integer)
    rows = np.sort(rng.integers(0, n, int(rng.integers(0, 600))))
    values = random_values(rng, sums, rows)
    weight = rng.random(rows.size) + 1e-6
    np.testing.assert_array_equal(codes_kernel.nearest_subsets(values, rows, sums), plain_nearest(values, rows, sums))
    for got, want in zip(codes_kernel.assign_with_moments(values, weight, rows, sums, n),
                         plain_moments(values, weight, rows, sums, n)):
        np.testing.assert_array_equal(got, want)


def test_codes_nearest_sums_with_nans_and_infinities_equal_the_plain_form():
    rng = np.random.default_rng(7)
    sums = random_codes(rng, 6, 3, integer=True)
    sums[1, 3] = np.nan
    sums[2, 0] = np.inf
    sums[3, [2, 5]] = -np.inf
    rows = np.repeat(np.arange(6), 9)
    values = random_values(rng, sums, rows)
    values[::7] = np.nan
    values[3::11] = np.inf
    values[5::13] = -np.inf
    with np.errstate(invalid="ignore"):
        want = plain_nearest(values, rows, sums)
    np.testing.assert_array_equal(codes_kernel.nearest_subsets(values, rows, sums), want)


@pytest.mark.parametrize("seed", range(4))
def test_codes_feedback_sweep_equals_the_plain_loop(seed):
    rng = np.random.default_rng(seed)
    rows, m, count = int(rng.integers(1, 8)), int(rng.integers(1, 30)), 16
    sums = random_codes(rng, rows, 4, integer=bool(seed % 2)) / 3
    x = np.clip(rng.random((64, 3)) @ rng.random((3, m)), 0, 1)
    values = rng.standard_normal((rows, m))
    h = x.T @ x / len(x) + 0.01 * np.eye(m)
    order = np.argsort(-np.diag(h), kind="stable")
    u = np.linalg.cholesky(np.linalg.inv(h[np.ix_(order, order)])).T
    v = values[:, order].copy()
    want = np.zeros((rows, m), np.int64)
    for i in range(m):
        pick = np.argmin(np.abs(v[:, i, None] - sums), axis=1)
        err = (v[:, i] - sums[np.arange(rows), pick]) / u[i, i]
        v[:, i + 1:] -= err[:, None] * u[i, i + 1:][None, :]
        want[:, order[i]] = pick
    assert sums.shape[1] == count
    got = codes_kernel.feedback_sweep(values[:, order].copy(), sums, np.ascontiguousarray(u), order)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(4))
def test_codes_assign_with_feedback_equals_the_plain_form(seed):
    rng = np.random.default_rng(seed)
    n, m = 24, 40
    dense = rng.standard_normal((n, m)) * 0.1
    # shared column patterns (rows done together), rows of their own, an empty row, exact rows
    mask = np.where(np.arange(n)[:, None] % 3 == 0, np.arange(m)[None, :] % 2 == 0, rng.random((n, m)) < 0.4)
    mask[5] = False
    w = sp.csr_matrix(np.where(mask, dense, 0.0))
    k = rng.integers(-7, 8, (n, 4)).astype(np.float64)
    sums = _subset_sums(k) / rng.integers(20, 200, n)[:, None]
    exact_rows = [1, 2]
    for r in exact_rows:
        lo, hi = w.indptr[r], w.indptr[r + 1]
        w.data[lo:hi] = sums[r, rng.integers(0, 16, hi - lo)]
    x = np.clip(rng.random((80, 4)) @ rng.random((4, m)) / 2, 0, 1)
    np.testing.assert_array_equal(assign_with_feedback(w, sums, x), plain_assign_with_feedback(w, sums, x))
    np.testing.assert_array_equal(assign_with_feedback(w, sums, x[:0]), plain_assign_with_feedback(w, sums, x[:0]))


@pytest.mark.parametrize("seed", range(4))
def test_codes_few_values_equal_the_plain_form(seed):
    rng = np.random.default_rng(seed)
    n, m, bits = 30, 12, 4
    levels = rng.integers(1, 7, n)
    data = rng.integers(0, 6, (n, m)) * 0.25 - 0.6
    data = np.where(np.arange(6)[None, :].repeat(2, axis=1) < levels[:, None], data, data[:, :1])
    w = sp.csr_matrix(np.where(rng.random((n, m)) < 0.7, data, 0.0))
    w.sort_indices()
    rows = np.repeat(np.arange(n), np.diff(w.indptr))
    got, want = _few_values(w, rows, bits), plain_few_values(w, rows, bits)
    assert got.keys() == want.keys() and len(got) > 5
    for row in got:
        np.testing.assert_array_equal(got[row], want[row])
    w.data[::5] = 0.0  # stored zeros: the plain form, taken as it is
    got, want = _few_values(w, rows, bits), plain_few_values(w, rows, bits)
    assert got.keys() == want.keys()


def random_group(rng: np.random.Generator, name: str, size: int, *, linear: bool) -> NeuronGroup:
    """A group with random integer parameters (reset by subtraction everywhere, or mixed modes)."""
    mode = np.ones(size, np.int64) if linear else rng.integers(0, 3, size)
    return NeuronGroup.make(name, rng.integers(-CHIP.weight_max, CHIP.weight_max + 1, (size, CHIP.axon_types)),
                            alpha=rng.integers(1, 400, size), chip=CHIP, beta=rng.integers(0, 300, size),
                            leak=rng.integers(-20, 40, size), reset_mode=mode, reset_value=rng.integers(-50, 50, size),
                            initial_v=rng.integers(-300, 300, size), delay=rng.integers(1, 4, size))


def random_lines(rng: np.random.Generator, source: str, target: str, channels: int, size: int) -> Lines:
    """Lines reading random channels (some twice) with random types and synapses."""
    count = int(rng.integers(1, 2 * channels + 1))
    syn = sp.csr_matrix(rng.random((count, size)) < rng.uniform(0.05, 0.9))
    return Lines(source, target, rng.integers(0, channels, count), rng.integers(0, CHIP.axon_types, count), syn)


@pytest.mark.parametrize("seed", range(6))
def test_trains_group_simulation_equals_the_plain_form(seed):
    rng = np.random.default_rng(seed)
    batch, t_in, channels, ticks = int(rng.integers(1, 20)), int(rng.integers(1, 8)), 12, int(rng.integers(1, 14))
    spikes = rng.random((batch, t_in, channels)) < 0.3
    first = random_group(rng, "a", int(rng.integers(1, 30)), linear=True)
    second = random_group(rng, "b", int(rng.integers(1, 30)), linear=bool(seed % 2))
    trains = {}
    lines_a = [random_lines(rng, INPUT, "a", channels, first.size)]
    for g, incoming, delays in ((first, lines_a, [None]),):
        want = plain_simulate_group(CHIP, g, incoming, delays, trains, spikes, ticks)
        got = simulate_group(CHIP, g, incoming, delays, trains, spikes, ticks)
        np.testing.assert_array_equal(got, want)
        trains[g.name] = got
    lines_b = [random_lines(rng, INPUT, "b", channels, second.size), random_lines(rng, "a", "b", first.size, second.size),
               random_lines(rng, "a", "b", first.size, second.size)]
    delays_b = [None] + [first.delay[l.source_index].astype(np.int64) for l in lines_b[1:]]
    want = plain_simulate_group(CHIP, second, lines_b, delays_b, trains, spikes, ticks)
    got = simulate_group(CHIP, second, lines_b, delays_b, trains, spikes, ticks)
    assert got.shape == want.shape == (ticks, batch, second.size)
    np.testing.assert_array_equal(got, want)
    assert want.any() and not want.all()

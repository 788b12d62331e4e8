"""binarize_ttfs's level reassignment and readout counts against the numpy forms they replace.

Oracle: each plain function below is the code the product ran before; the faster form must give
the same result bit for bit on random instances (ties and exact midpoints included)."""

from __future__ import annotations

import numpy as np
import pytest

from crossmap.passes.binarize.ttfs import ReadoutCode, reassign_levels


def plain_reassign_levels(x, group, values, target):
    group = group.copy()
    residual = target - x @ values[group]
    norms = np.einsum("ij,ij->j", x, x)
    for i in np.argsort(-norms, kind="stable"):
        if norms[i] == 0:
            continue
        delta = values - values[group[i]]
        gain = 2 * delta * float(x[:, i] @ residual) - delta ** 2 * norms[i]
        best = int(np.argmax(gain))
        if gain[best] > 1e-12:
            residual -= delta[best] * x[:, i]
            group[i] = best
    return group


def plain_counts(code: ReadoutCode, levels: np.ndarray, ticks: int) -> np.ndarray:
    batch = levels.shape[0]
    total = np.zeros((batch, code.weights.shape[0]), np.int64)
    for tick in range(ticks + code.delay):
        arrived = (levels >= ticks + code.delay - tick) & (levels > 0)
        v = code.initial[None, :] + arrived.astype(np.int64) @ code.weights.T
        total += np.clip(v // code.threshold_step, 0, code.neurons)
    return total


@pytest.mark.parametrize("seed", range(8))
def test_ttfs_reassign_levels_equals_the_plain_form(seed):
    rng = np.random.default_rng(seed)
    samples, inputs, count = int(rng.integers(1, 300)), int(rng.integers(1, 60)), int(rng.integers(1, 5))
    x = (rng.random((samples, inputs)) < 0.3).astype(np.float64)
    x[:, rng.integers(0, inputs)] = 0.0  # an input that never spikes
    if seed % 2:
        x *= np.sqrt(np.where(rng.random(samples) < 0.5, 1.0, 0.1))[:, None]
    values = np.sort(rng.integers(-6, 7, count).astype(np.float64) / 4)  # equal gains happen
    group = rng.integers(0, count, inputs)
    target = x @ rng.standard_normal(inputs) if seed % 3 else np.rint(x @ rng.integers(-3, 4, inputs) / 2)
    np.testing.assert_array_equal(reassign_levels(x, group, values, target),
                                  plain_reassign_levels(x, group, values, target))


@pytest.mark.parametrize("seed", range(6))
def test_ttfs_readout_counts_equal_the_plain_form(seed):
    rng = np.random.default_rng(seed)
    ticks, delay = int(rng.integers(1, 10)), int(rng.integers(1, 4))
    levels = rng.integers(0, ticks + 1, (int(rng.integers(1, 80)), int(rng.integers(1, 40))))
    classes = int(rng.integers(1, 12))
    code = ReadoutCode(weights=rng.integers(-255, 256, (classes, levels.shape[1])),
                       initial=rng.integers(-3000, 3000, classes), threshold_step=int(rng.integers(1, 90)),
                       neurons=int(rng.integers(1, 33)), delay=delay)
    want = plain_counts(code, levels, ticks)
    np.testing.assert_array_equal(code.counts(levels, ticks), want)
    np.testing.assert_array_equal(code.counts(levels, ticks, code.arrivals(levels, ticks)), want)

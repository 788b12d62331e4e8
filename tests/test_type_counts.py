"""The sparse path's numba kernel (per-type counts of active axons, then weighed) against the
float32 matmul with W_eff, and the emulator's sparse path with and without it."""

import numpy as np
import pytest

import crossmap
from crossmap import ChipSpec
from crossmap.backends import emulator, type_counts
from crossmap.backends.bits import pack
from crossmap.backends.tables import build_tables, effective_weights
from crossmap.testing import random_inputs, random_program, small_chip

pytestmark = pytest.mark.skipif(not type_counts.available(), reason="numba is not installed")


def kernel_and_matmul(prog, x):
    """(S, events) from the kernel and from the matmul, for spikes ``x`` bool (C, A, B)."""
    C, A, B = x.shape
    N = prog.chip.neurons_per_core
    S = np.full((C, B, N), np.nan, np.float32)
    events = np.zeros(B)
    type_counts.integrate(build_tables(prog).counts, pack(x, axis=2), 0, C, S, events)
    xf = x.astype(np.float32)
    expected = np.matmul(xf.transpose(0, 2, 1), effective_weights(prog))
    fanout = prog.crossbar.sum(axis=2)
    return (S, events), (expected, np.einsum("ca,cab->b", fanout, x.astype(np.int64)))


@pytest.mark.parametrize("types", [1, 3, 4, 5, 9])
@pytest.mark.parametrize("batch", [1, 13, 64])
def test_kernel_equals_the_matmul_for_any_number_of_axon_types_and_samples(types, batch):
    chip = small_chip(axons_per_core=16, neurons_per_core=12, axon_types=types)
    prog = random_program(chip, 3, seed=types * 100 + batch, stochastic=True, density=0.5)
    rng = np.random.default_rng(batch)
    x = rng.random((3, 16, batch)) < 0.3
    (S, events), (expected, expected_events) = kernel_and_matmul(prog, x)
    np.testing.assert_array_equal(S, expected)
    np.testing.assert_array_equal(events, expected_events)


def test_a_core_with_more_than_255_axons_of_one_type_counts_past_a_byte():
    """Every axon of core 0 has type 0 and is active: counts reach 256, which byte counters cannot hold."""
    prog = random_program(ChipSpec.truenorth(), 2, seed=4, density=0.9)
    prog.axon_type[0] = 0
    A = prog.chip.axons_per_core
    x = np.zeros((2, A, 9), bool)
    x[0] = True
    x[1, ::3, ::2] = True
    assert build_tables(prog).counts.narrow.tolist() == [False, True]
    (S, events), (expected, expected_events) = kernel_and_matmul(prog, x)
    np.testing.assert_array_equal(S, expected)
    np.testing.assert_array_equal(events, expected_events)
    # called again with the same counters: they were left at zero
    (S2, _), _ = kernel_and_matmul(prog, x)
    np.testing.assert_array_equal(S2, expected)


def test_emulator_sparse_path_with_the_kernel_equals_the_reference():
    prog = random_program(small_chip(axons_per_core=32, neurons_per_core=16, axon_types=4), 4, seed=8,
                          stochastic=True, recurrent=True)
    spikes = random_inputs(prog, 40, seed=2, rate=0.2)
    expected = crossmap.emulate(prog, spikes, backend="reference", record=True, seed=5)
    got = crossmap.emulate(prog, spikes, record=True, seed=5, path="sparse")
    np.testing.assert_array_equal(got.spikes, expected.spikes)
    np.testing.assert_array_equal(got.synaptic_events, expected.synaptic_events)


def test_without_numba_the_sparse_path_sums_torch_bags(monkeypatch):
    pytest.importorskip("torch")
    used = []
    monkeypatch.setattr(type_counts, "available", lambda: False)
    monkeypatch.setattr(type_counts, "integrate", lambda *args: used.append(args))
    prog = random_program(small_chip(axons_per_core=32, neurons_per_core=16), 3, seed=9, stochastic=True)
    spikes = random_inputs(prog, 40, seed=3, rate=0.1)
    expected = crossmap.emulate(prog, spikes, backend="reference", record=True)
    got = crossmap.emulate(prog, spikes, record=True, path="sparse")
    np.testing.assert_array_equal(got.spikes, expected.spikes)
    assert used == []
    run = emulator._Run(prog, build_tables(prog), emulator.prepare_run(prog, spikes, None, {}, "emulator"), "auto")
    assert run.sparse_max == emulator.BAG_MAX_ACTIVE

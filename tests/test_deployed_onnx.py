"""DeployedNetwork.to_onnx: onnxruntime reproduces simulate() class counts exactly."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import scipy.sparse as sp
from crossmap.testing.binarize_nets import binary_inputs, state_for, step_mlp, with_input_threshold
from hypothesis import given, settings
from hypothesis import strategies as st

from crossmap.chip import ChipSpec
from crossmap.deployed import DeployedNetwork, Lines, NeuronGroup
from crossmap.encoding import encode
from crossmap.errors import CrossmapError
from crossmap.passes.binarize.deterministic import BinarizeDeterministic


def run_onnx(deployed, spikes, ticks=None):
    model = deployed.to_onnx(ticks=ticks)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"spikes": spikes.astype(np.float32)})[0]


def assert_same(deployed, spikes, ticks=None):
    expected = deployed.simulate(spikes, ticks=ticks)["class_counts"]
    got = run_onnx(deployed, spikes, ticks)
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)
    return expected


def deterministic(net, **options):
    state = state_for(net)
    BinarizeDeterministic(**options).run(state)
    return state.deployed


def test_single_tick_mlp_is_a_layered_graph():
    net = step_mlp([16, 12, 10, 6], seed=0, classes=3)
    deployed = deterministic(net, timed=False)  # timed neurons are not at rest: they export unrolled
    x = binary_inputs(64, 16)
    counts = assert_same(deployed, encode(deployed.encoding, x))
    assert np.array_equal(counts, net.evaluate(x))
    model = deployed.to_onnx()
    compares = [n for n in model.graph.node if n.op_type == "GreaterOrEqual"]
    assert len(compares) == len(deployed.groups)  # every group updated on exactly one tick


@pytest.mark.parametrize("levels", [(-1, 0, 1), (-2, -1, 0, 1, 2)])
def test_rate_encoding_over_several_ticks(levels):
    net = with_input_threshold(step_mlp([12, 10, 9], seed=3, levels=levels, classes=3))
    deployed = deterministic(step_mlp([12, 10, 9], seed=3, levels=levels, classes=3), encoding="rate", ticks=6)
    x = np.random.default_rng(1).random((40, 12))
    counts = assert_same(deployed, encode(deployed.encoding, x))
    assert counts.sum() > 0
    threshold = deterministic(net)
    assert_same(threshold, encode(threshold.encoding, x))


def test_longer_run_than_latency():
    deployed = deterministic(step_mlp([8, 6, 4], seed=2, classes=2), encoding="rate", ticks=3)
    x = np.random.default_rng(2).random((10, 8))
    assert_same(deployed, encode(deployed.encoding, x), ticks=deployed.latency() + 3 + 4)


def random_deployed(seed: int, recurrent: bool = False) -> DeployedNetwork:
    """A small deployed network exercising every rule: reset modes, leaks of both signs, floors,
    saturation (big weights, narrow membrane range), delays, initial potentials, several classes."""
    rng = np.random.default_rng(seed)
    chip = ChipSpec(axon_types=3, v_min=-300, v_max=299, alpha_max=400, beta_max=300)
    num_inputs, num_classes = int(rng.integers(2, 6)), 3
    groups, lines = [], []
    for k in range(int(rng.integers(1, 5))):
        n = int(rng.integers(1, 6))
        weight = np.where(rng.random((n, 3)) < 0.2, rng.integers(-255, 256, (n, 3)), rng.integers(-40, 41, (n, 3)))
        groups.append(NeuronGroup.make(
            f"g{k}", weight, rng.integers(1, 80, n), chip=chip, beta=rng.integers(0, 60, n),
            leak=rng.integers(-10, 11, n), reset_mode=rng.integers(0, 3, n), reset_value=rng.integers(-20, 21, n),
            initial_v=rng.integers(-30, 31, n), delay=rng.integers(1, 4, n),
            output_class=np.where(rng.random(n) < 0.6, rng.integers(0, num_classes, n), -1)))
        sources = ["input"] + [g.name for g in groups[:-1]] + ([groups[-1].name] if recurrent else [])
        for src in sources:
            if rng.random() < 0.3 and src != "input":
                continue
            n_src = num_inputs if src == "input" else groups[int(src[1:])].size
            m = int(rng.integers(1, 7))
            lines.append(Lines(src, f"g{k}", rng.integers(0, n_src, m), rng.integers(0, 3, m),
                               sp.csr_matrix(rng.random((m, n)) < 0.6)))
    return DeployedNetwork(chip=chip, num_inputs=num_inputs, groups=groups, lines=lines, num_classes=num_classes,
                           input_ticks=int(rng.integers(1, 5))).validate()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 100_000), recurrent=st.booleans())
def test_random_deployed_networks_match_simulate(seed, recurrent):
    deployed = random_deployed(seed, recurrent)
    rng = np.random.default_rng(seed + 1)
    spikes = rng.random((7, deployed.input_ticks, deployed.num_inputs)) < 0.5
    ticks = deployed.input_ticks + 6 if recurrent else None
    assert_same(deployed, spikes, ticks)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("seed", range(12))
def test_simulate_with_and_without_the_compiled_kernel(monkeypatch, seed, compiled):
    """Both integration paths of simulate match onnxruntime, also where the synapse matrices hold
    explicit false entries (which are no synapse)."""
    import crossmap.deployed

    monkeypatch.setattr(crossmap.deployed, "numba_available", lambda: compiled)
    deployed = random_deployed(seed, recurrent=seed % 2 == 1)
    rng = np.random.default_rng(seed + 7)
    for lines in deployed.lines:
        dense = lines.synapses.toarray()
        unset = np.argwhere(~dense)
        syn = sp.csr_matrix(dense)
        if unset.size:  # store some absent synapses explicitly as False
            pick = unset[rng.random(len(unset)) < 0.5]
            coo = sp.coo_matrix(dense)
            rows = np.concatenate([coo.row, pick[:, 0]])
            cols = np.concatenate([coo.col, pick[:, 1]])
            data = np.concatenate([coo.data, np.zeros(len(pick), bool)])
            syn = sp.csr_matrix((data, (rows, cols)), shape=dense.shape)
        lines.synapses = syn
    spikes = rng.random((9, deployed.input_ticks, deployed.num_inputs)) < 0.5
    assert_same(deployed, spikes, deployed.input_ticks + 6)


@pytest.mark.parametrize("seed", range(6))
def test_simulate_counts_are_the_recorded_spikes_summed(seed):
    deployed = random_deployed(seed, recurrent=seed % 2 == 0)
    spikes = np.random.default_rng(seed).random((5, deployed.input_ticks, deployed.num_inputs)) < 0.5
    result = deployed.simulate(spikes, ticks=deployed.input_ticks + 5, record=True, count=True)
    for name, recorded in result["spikes"].items():
        assert np.array_equal(result["spike_counts"][name], recorded.sum(axis=(0, 1)))


def test_stochastic_groups_are_refused():
    deployed = random_deployed(1)
    deployed.groups[0].threshold_mask[:] = 3
    with pytest.raises(CrossmapError, match="stochastic modes"):
        deployed.to_onnx()


@pytest.mark.parametrize("encoding, ticks", [("threshold", None), ("rate", 5)])
def test_stochastic_ensemble(encoding, ticks):
    from crossmap.passes.binarize.stochastic import BinarizeStochastic

    net = step_mlp([14, 10, 8], seed=9, classes=4, per_neuron_scale=False)
    for p in net.projections[:2]:
        p.weight = sp.csr_matrix(np.clip(p.weight.toarray() * 3.0, -1, 1) * 0.7)
    state = state_for(net, seed=3)
    BinarizeStochastic(ensemble=3, encoding=encoding, ticks=ticks).run(state)
    x = np.random.default_rng(4).random((30, 14))
    counts = assert_same(state.deployed, encode(state.deployed.encoding, x))
    assert counts.sum() > 0

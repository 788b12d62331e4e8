"""binarize_ttfs and the ttfs input encoding: one spike per hidden neuron on the tick of its level,
the deployed network equal to the pass's integer model, and the compiled program equal on the
emulator, the reference loop and the deployed network (reset floors and delays exercised)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from crossmap.testing.binarize_nets import state_for, with_input_threshold
from onnx import helper
from crossmap.testing.onnx_models import make_model

import crossmap
from crossmap.chip import ChipSpec
from crossmap.encoding import encode, make_encoding, ttfs_levels
from crossmap.errors import BinarizeError, InputError
from crossmap.ir import INPUT, Network, Population, Projection
from crossmap.passes.binarize.ttfs import BinarizeTtfs
from crossmap.verify import rebuild_deployed, verify

COUNTERS = ("class_counts", "predictions", "synaptic_events", "neuron_updates", "spike_count", "hops", "core_ticks")


def relu_mlp(sizes=(24, 12, 5), seed=0, depth_ok=True) -> Network:
    """A float MLP with ReLU hidden layers and a linear output, reading a Greater(x, 0.5) input."""
    rng = np.random.default_rng(seed)
    pops, projs, prev = [Population(INPUT, (sizes[0],))], [], INPUT
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        pops.append(Population(f"fc{i}", (b,), "identity" if last else "relu", bias=rng.standard_normal(b) * 0.1))
        projs.append(Projection(prev, f"fc{i}", sp.csr_matrix(rng.standard_normal((b, a)) * np.sqrt(2 / a))))
        prev = f"fc{i}"
    return with_input_threshold(Network(pops, projs, prev))


def onnx_mlp(sizes=(24, 10, 4), seed=0):
    """Greater(x, 0.5) -> Cast -> Gemm -> Relu -> Gemm, as models/mlp.onnx."""
    rng = np.random.default_rng(seed)
    inits = {"t": np.array(0.5, np.float32),
             "w0": (rng.standard_normal((sizes[0], sizes[1])) * 0.4).astype(np.float32),
             "b0": (rng.standard_normal(sizes[1]) * 0.1).astype(np.float32),
             "w1": (rng.standard_normal((sizes[1], sizes[2])) * 0.5).astype(np.float32),
             "b1": (rng.standard_normal(sizes[2]) * 0.1).astype(np.float32)}
    nodes = [helper.make_node("Greater", ["x", "t"], ["g"]),
             helper.make_node("Cast", ["g"], ["c"], to=1),
             helper.make_node("Gemm", ["c", "w0", "b0"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w1", "b1"], ["y"])]
    return make_model(nodes, ["N", sizes[0]], ["N", sizes[2]], inits)


def run_pass(net, x, **options):
    state = state_for(net, calibration=x)
    BinarizeTtfs(**options).run(state)
    return state.deployed, state.reports["binarize_ttfs"]


def test_ttfs_encoding_one_spike_per_channel_earlier_for_larger():
    enc = make_encoding("ttfs", channels=4, ticks=6, levels=4)
    x = np.array([[0.0, 0.3, 0.7, 1.0]])
    spikes = encode(enc, x)
    assert spikes.shape == (1, 6, 4)
    assert spikes.sum(axis=1).tolist() == [[0, 1, 1, 1]]
    ticks = [int(np.argmax(spikes[0, :, c])) for c in (1, 2, 3)]
    assert ticks == [3, 1, 0]  # levels 1, 3, 4 of 4 spike on ticks 4 - q
    assert ttfs_levels(enc, x).tolist() == [[0, 1, 3, 4]]
    inclusive = make_encoding("ttfs", channels=1, ticks=1, levels=[0.5], inclusive=True)
    assert encode(inclusive, np.array([[0.5]])).sum() == 1
    assert encode(make_encoding("ttfs", channels=1, ticks=1, levels=[0.5]), np.array([[0.5]])).sum() == 0


@pytest.mark.parametrize("bad", [dict(levels=[0.5, 0.2]), dict(levels=3, ticks=2), dict(levels=[])])
def test_ttfs_encoding_rejects_bad_levels(bad):
    with pytest.raises(InputError, match="ttfs"):
        make_encoding("ttfs", channels=2, **bad)


def test_hidden_neurons_fire_once_on_the_tick_of_their_level_and_deployed_equals_model():
    net = relu_mlp()
    x = np.random.default_rng(1).random((120, 24))
    deployed, report = run_pass(net, x, ticks=6, readout_neurons=4)
    assert report["deployed_equals_model"] is True
    assert deployed.encoding["kind"] == "ttfs" and deployed.input_ticks == 6 and deployed.latency() == 1
    out = deployed.simulate(encode(deployed.encoding, x), record=True)
    hidden = out["spikes"]["fc0"]  # (ticks, batch, neurons)
    assert hidden.sum(axis=0).max() <= 1  # reset to the floor: never a second spike
    fired = hidden[:6].any(axis=0)  # inside the window of 6 ticks
    assert 0 < fired.mean() < 1
    group = deployed.group("fc0")
    assert (group.reset_mode == 0).all() and (group.reset_value == -group.beta).all() and (group.leak > 0).all()
    readout = deployed.group("fc1")
    assert (readout.reset_mode == 2).all() and sorted(set(readout.output_class.tolist())) == list(range(5))


def test_levels_follow_the_float_activations():
    net = relu_mlp(sizes=(24, 16, 5), seed=2)
    x = np.random.default_rng(3).random((200, 24))
    deployed, report = run_pass(net, x, ticks=12, readout_neurons=6)
    hidden = report["layers"][0]
    assert hidden["role"] == "hidden" and hidden["level_error"] < 0.4
    assert report["agreement"] >= 0.5


def test_delay_shifts_the_readout_window_and_keeps_the_model():
    net = relu_mlp(seed=4)
    x = np.random.default_rng(5).random((80, 24))
    deployed, report = run_pass(net, x, ticks=5, readout_neurons=3, delay=3)
    assert report["deployed_equals_model"] is True
    assert deployed.latency() == 3 and (deployed.group("fc0").delay == 3).all()


def test_refuses_networks_it_cannot_map():
    x = np.random.default_rng(0).random((16, 24))
    with pytest.raises(BinarizeError, match="reads"):
        run_pass(relu_mlp(sizes=(24, 8, 8, 3)), x)  # a hidden layer reading a hidden layer
    plain = relu_mlp()
    unthresholded = Network([p for p in plain.populations if p.name != "x_spikes"],
                            [Projection(INPUT, p.target, p.weight) if p.source == "x_spikes" else p
                             for p in plain.projections if p.target != "x_spikes"], plain.output)
    with pytest.raises(BinarizeError, match="thresholded"):
        run_pass(unthresholded, x)
    with pytest.raises(BinarizeError, match="delay"):
        run_pass(plain, x, delay=16)


@pytest.mark.parametrize("delay", [1, 4])
def test_compiled_ttfs_program_emulator_equals_reference_and_deployed(tmp_path, delay):
    model = onnx_mlp()
    x = np.random.default_rng(7).random((40, 24)).astype(np.float32)
    chip = ChipSpec.truenorth().replace(axons_per_core=16, neurons_per_core=8, mesh_x=8, mesh_y=8)
    program = crossmap.compile(model, tmp_path / "p", chip=chip, calibration=x, pipeline=(
        f"binarize_ttfs{{ticks=5;readout_neurons=3;delay={delay}}},partition,place{{time_limit=1}},route,emit"))
    deployed_report = program.reports["binarize_ttfs"]
    assert deployed_report["deployed_equals_model"] is True
    spikes = encode(program.encoding, x)
    expected = crossmap.emulate(program, spikes, backend="reference", record=True)
    got = crossmap.emulate(program, spikes, record=True)
    for name in COUNTERS:
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
    assert np.array_equal(got.spikes, expected.spikes)
    # the deployed network: its own simulation and its ONNX export in onnxruntime (crossmap verify)
    deployed, _ = rebuild_deployed(program, model, calibration=x)
    simulated = deployed.simulate(spikes, ticks=program.total_ticks)["class_counts"]
    np.testing.assert_array_equal(got.class_counts, simulated)
    assert verify(program, model, inputs=x, calibration=x).ok
    assert program.latency >= delay

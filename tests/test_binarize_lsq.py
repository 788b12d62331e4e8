"""binarize_lsq: fitted rate-neuron layers for float models; errors reported, solvers ordered."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import scipy.sparse as sp
from crossmap.testing.binarize_nets import state_for
from onnx import helper
from crossmap.testing.onnx_models import make_model

from crossmap.chip import ChipSpec
from crossmap.encoding import encode
from crossmap.errors import BinarizeError
from crossmap.frontend import import_onnx
from crossmap.ir import INPUT, Network, Population, Projection
from crossmap.passes.binarize.lsq import BinarizeLsq


def float_mlp(sizes=(10, 12, 4), seed=0, hidden="relu") -> Network:
    """A float MLP with ``hidden`` activations and an identity output layer."""
    rng = np.random.default_rng(seed)
    pops, projs, prev = [Population(INPUT, (sizes[0],))], [], INPUT
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        pops.append(Population(f"fc{i}", (b,), "identity" if last else hidden, bias=rng.standard_normal(b) * 0.1))
        projs.append(Projection(prev, f"fc{i}", sp.csr_matrix(rng.standard_normal((b, a)) * np.sqrt(2 / a))))
        prev = f"fc{i}"
    return Network(pops, projs, prev)


def fit(net, calibration, seed=0, chip=None, **options):
    state = state_for(net, chip=chip, seed=seed, calibration=calibration)
    BinarizeLsq(**options).run(state)
    return state.deployed, state.reports["binarize_lsq"]


def calib(n=64, channels=10, seed=1):
    return np.random.default_rng(seed).random((n, channels))


def test_relu_mlp_is_fitted_and_reports_errors_and_agreement():
    net = float_mlp()
    deployed, report = fit(net, calib(), solver="round", ticks=24)
    assert deployed.encoding["kind"] == "rate" and deployed.input_ticks == 24
    assert [layer["layer"] for layer in report["layers"]] == ["fc0", "fc1"]
    for layer in report["layers"]:
        assert 0 <= layer["approximation_error"] < 0.5
        assert all(abs(v) <= 255 for v in layer["levels"])
    assert report["agreement"] >= 0.7
    assert all(g.reset_mode.tolist() == [1] * g.size for g in deployed.groups)
    # the deployed network runs the same in onnxruntime
    x = calib(16, seed=9)
    spikes = encode(deployed.encoding, x).astype(np.float32)
    session = ort.InferenceSession(deployed.to_onnx().SerializeToString(), providers=["CPUExecutionProvider"])
    assert np.array_equal(session.run(None, {"spikes": spikes})[0], deployed.simulate(spikes)["class_counts"])


def test_error_decreases_with_a_better_solver():
    net = float_mlp(seed=3)
    errors = {}
    for solver in ("round", "lp", "cpsat"):
        _, report = fit(net, calib(seed=4), solver=solver, time_limit=0.5, free=12)
        errors[solver] = report["layers"][0]["approximation_error"]  # same inputs for every solver
        assert report["layers"][0]["approximation_error_rounding"] == pytest.approx(errors["round"])
    assert errors["cpsat"] <= errors["lp"] <= errors["round"]
    assert errors["cpsat"] < errors["round"]


def test_same_seed_same_network():
    net = float_mlp(seed=5)
    a, _ = fit(net, calib(seed=6), solver="cpsat", time_limit=0.2, free=8)
    b, _ = fit(net, calib(seed=6), solver="cpsat", time_limit=0.2, free=8)
    for ga, gb in zip(a.groups, b.groups):
        assert np.array_equal(ga.weight, gb.weight) and np.array_equal(ga.initial_v, gb.initial_v)
    for la, lb in zip(a.lines, b.lines):
        assert np.array_equal(la.synapses.toarray(), lb.synapses.toarray())


def test_fan_in_is_limited_to_a_core():
    chip = ChipSpec(axons_per_core=16, neurons_per_core=16)
    net = float_mlp(sizes=(40, 6, 3), seed=2)
    deployed, report = fit(net, calib(channels=40), chip=chip, solver="round")
    assert report["layers"][0]["pruned_synapses"] > 0
    for g in deployed.groups:
        fan_in = sum(np.asarray(l.synapses.sum(axis=0)).ravel() for l in deployed.incoming(g.name))
        assert fan_in.max() <= 16


@pytest.mark.parametrize("hidden", ["sigmoid", "tanh", "identity", "hard_sigmoid"])
def test_other_activations_are_represented(hidden):
    net = float_mlp(seed=7, hidden=hidden)
    if hidden == "hard_sigmoid":
        net.populations[1].params = {"alpha": 0.2, "beta": 0.5}
    _, report = fit(net, calib(seed=8), solver="round", ticks=32)
    assert report["layers"][1]["approximation_error"] < 1.0
    assert report["agreement"] >= 0.5


def test_lenet_like_conv_and_max_pool_through_the_frontend():
    rng = np.random.default_rng(0)
    inits = {"cw": (rng.standard_normal((3, 1, 3, 3)) * 0.5).astype(np.float32),
             "cb": np.zeros(3, np.float32),
             "fw": (rng.standard_normal((4, 27)) * 0.3).astype(np.float32),
             "fb": np.zeros(4, np.float32)}
    mk = helper.make_node
    nodes = [mk("Conv", ["x", "cw", "cb"], ["c"], kernel_shape=[3, 3]), mk("Relu", ["c"], ["r"]),
             mk("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             mk("Flatten", ["p"], ["f"], axis=1), mk("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    model = make_model(nodes, ["N", 1, 8, 8], ["N", 4], inits)
    net = import_onnx(model)
    x = np.random.default_rng(1).random((48, 1, 8, 8)).astype(np.float32)
    deployed, report = fit(net, x, solver="lp", ticks=32)
    conv, pool, fc = report["layers"]
    assert [g.size for g in deployed.groups] == [108, 27, 4]
    assert conv["approximation_error"] < 0.3 and np.isfinite(pool["approximation_error"])
    assert pool["max_fan_in"] <= 8  # a 2x2 window on positive and negative axons
    assert report["agreement"] >= 0.6


def test_bad_inputs():
    net = float_mlp()
    with pytest.raises(BinarizeError, match="needs calibration inputs"):
        fit(net, None)
    with pytest.raises(BinarizeError, match="calibration inputs have 7 values per sample.*10"):
        fit(net, np.zeros((4, 7)))
    with pytest.raises(BinarizeError, match="solver='gurobi'; choose cpsat, lp or round"):
        fit(net, calib(), solver="gurobi")
    with pytest.raises(BinarizeError, match="lines_per_input=5"):
        fit(net, calib(), lines_per_input=5)
    with pytest.raises(BinarizeError, match="rate or threshold"):
        fit(net, calib(), encoding="spikes")


def test_a_model_that_thresholds_its_input_gets_the_threshold_encoding_by_default():
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Greater", ["x", "half"], ["g"]), helper.make_node("Cast", ["g"], ["s"], to=1),
             helper.make_node("Gemm", ["s", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"])]
    inits = {"half": np.array(0.5, np.float32), "w1": rng.standard_normal((10, 8)).astype(np.float32),
             "b1": np.zeros(8, np.float32), "w2": rng.standard_normal((8, 3)).astype(np.float32),
             "b2": np.zeros(3, np.float32)}
    net = import_onnx(make_model(nodes, ["N", 10], ["N", 3], inits))
    deployed, _ = fit(net, calib(), solver="round")
    assert deployed.encoding["kind"] == "threshold" and deployed.input_ticks == 16
    with pytest.raises(BinarizeError, match="thresholds its input itself"):
        fit(net, calib(), solver="round", encoding="rate")

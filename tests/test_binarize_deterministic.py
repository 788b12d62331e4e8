"""binarize_deterministic: exact on chip-ready step networks, clear errors on everything else."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from crossmap.testing.binarize_nets import binary_inputs, readout_matrix, state_for, step_mlp, step_pop, with_input_threshold

from crossmap.chip import ChipSpec
from crossmap.encoding import encode
from crossmap.errors import BinarizeError
from crossmap.ir import INPUT, Network, Population, Projection
from crossmap.passes.binarize.deterministic import BinarizeDeterministic


def deploy(net: Network, **options):
    state = state_for(net)
    BinarizeDeterministic(**options).run(state)
    return state.deployed, state.reports["binarize_deterministic"]


def class_counts(deployed, x):
    return deployed.simulate(encode(deployed.encoding, x))["class_counts"]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("levels", [(-1, 0, 1), (-2, -1, 0, 1, 2), (0, 1, 3)])
def test_step_mlp_with_readout_is_exact(seed, levels):
    net = step_mlp([20, 16, 12, 9], seed=seed, levels=levels, classes=3)
    deployed, report = deploy(net)
    x = binary_inputs(300, 20, seed=seed)
    assert np.array_equal(class_counts(deployed, x), net.evaluate(x))
    assert report["exact"] and all(layer["approximation_error"] < 1e-12 for layer in report["layers"])
    assert deployed.num_classes == 3 and report["readout"] == "y"


def test_last_step_layer_votes_one_neuron_per_class():
    net = step_mlp([16, 12, 5], seed=4, classes=None)
    deployed, _ = deploy(net)
    assert deployed.num_classes == 5
    x = binary_inputs(200, 16, seed=1)
    assert np.array_equal(class_counts(deployed, x), net.evaluate(x))


def test_spontaneous_neurons_are_timed_in_one_tick_without_a_bias_channel():
    net = step_mlp([10, 8, 7, 6], seed=3, classes=2, bias_range=4)
    deployed, report = deploy(net)
    assert not report["bias_channel"] and deployed.num_inputs == 10
    assert sum(layer["timed_neurons"] for layer in report["layers"]) > 0
    timed = [g for g in deployed.groups if (g.leak > 0).any()]
    assert timed and all((g.initial_v[g.leak > 0] <= 0).all() for g in timed)
    x = binary_inputs(200, 10, seed=4)
    assert np.array_equal(class_counts(deployed, x), net.evaluate(x))
    # through partition and the emulator, on a chip small enough to split every layer
    from crossmap import emulate
    from crossmap.passes.partition import Partition

    state = state_for(net, chip=ChipSpec(axons_per_core=32, neurons_per_core=3))
    BinarizeDeterministic().run(state)
    Partition().run(state)
    spikes = encode(state.deployed.encoding, x)
    assert np.array_equal(emulate(state.program, spikes).class_counts, net.evaluate(x))


def test_spontaneous_neurons_use_the_bias_channel_not_a_leak():
    net = step_mlp([10, 8, 6], seed=3, classes=2, bias_range=4)
    deployed, report = deploy(net, timed=False)
    assert report["bias_channel"] and deployed.encoding["bias_channel"]
    assert deployed.num_inputs == 11
    assert all((g.leak <= 0).all() for g in deployed.groups)
    # every spike comes from the one frame: a longer run adds nothing
    x = binary_inputs(100, 10, seed=2)
    spikes = encode(deployed.encoding, x)
    long = deployed.simulate(spikes, ticks=deployed.latency() + 6)["class_counts"]
    assert np.array_equal(long, net.evaluate(x))


def test_model_input_threshold_is_the_encoding():
    net = with_input_threshold(step_mlp([12, 10, 6], seed=5, classes=3), threshold=0.3)
    deployed, report = deploy(net)
    assert report["encoding"]["kind"] == "threshold" and report["encoding"]["threshold"] == pytest.approx(0.3)
    assert "x_spikes" not in [g.name for g in deployed.groups]
    x = np.random.default_rng(0).random((150, 12))
    assert np.array_equal(class_counts(deployed, x), net.evaluate(x))


def thermometer_net(seed: int) -> Network:
    """A step MLP on 12 values read through two encoders: a thermometer of three thresholds per
    value (a 1x1 conv: weight 2, bias -2t) and a plain x > 0.5 that the thermometer also makes."""
    net = step_mlp([36 + 12, 10, 6], seed=seed, classes=3)
    levels = np.array([0.25, 0.5, 0.75])
    therm = step_pop("x_levels", 36, -2.0 * np.repeat(levels, 12))
    plain = step_pop("x_spikes", 12, np.full(12, -0.5))
    hidden = net.projections[0].weight.tocsc()
    pops = [Population(INPUT, (12,)), therm, plain] + net.populations[1:]
    projs = [Projection(INPUT, "x_levels", sp.csr_matrix(np.tile(2.0 * np.eye(12), (3, 1)))),
             Projection(INPUT, "x_spikes", sp.identity(12, format="csr")),
             Projection("x_levels", "h0", sp.csr_matrix(hidden[:, :36])),
             Projection("x_spikes", "h0", sp.csr_matrix(hidden[:, 36:]))] + net.projections[1:]
    return Network(pops, projs, net.output)


def test_a_thermometer_code_is_the_encoding_with_shared_channels_merged():
    net = thermometer_net(seed=7)
    deployed, report = deploy(net)
    enc = report["encoding"]
    assert enc["channels"] == 12 and deployed.num_inputs == 36  # the plain encoder's channels are the 0.5 level
    assert enc["source"] == list(range(12)) * 3
    assert enc["threshold"] == [0.25] * 12 + [0.5] * 12 + [0.75] * 12
    assert not {"x_levels", "x_spikes"} & {g.name for g in deployed.groups}
    x = np.random.default_rng(1).random((200, 12))
    assert np.array_equal(class_counts(deployed, x), net.evaluate(x))


def test_encoders_of_both_comparisons_are_refused():
    net = thermometer_net(seed=7)
    net.population("x_spikes").params["inclusive"] = True
    with pytest.raises(BinarizeError, match="both x > t and x >= t"):
        deploy(net)


def test_rate_encoding_streams_frames_through_memoryless_neurons():
    net = step_mlp([12, 10, 8, 6], seed=6, classes=3)
    deployed, _ = deploy(net, encoding="rate", ticks=7)
    x = np.random.default_rng(3).random((60, 12))
    spikes = encode(deployed.encoding, x)
    assert spikes.shape == (60, 7, 13)
    expected = sum(net.evaluate(spikes[:, t, :12].astype(float)) for t in range(7))
    assert np.array_equal(deployed.simulate(spikes)["class_counts"], expected)


def test_esser_typed_inputs_get_one_axon_each():
    """Esser 2015 layout: input i has a fixed type, each neuron one sign per type."""
    rng = np.random.default_rng(0)
    n_in, n_out = 64, 24
    types = np.arange(n_in) % 4
    sign = rng.choice([-1.0, 1.0], (n_out, 4))
    w = (rng.random((n_out, n_in)) < 0.5) * sign[:, types]
    net = Network([Population(INPUT, (n_in,)), step_pop("h", n_out, rng.integers(-3, 1, n_out) - 0.5),
                   Population("y", (4,))],
                  [Projection(INPUT, "h", sp.csr_matrix(w)), Projection("h", "y", readout_matrix(n_out, 4))], "y")
    deployed, report = deploy(net)
    assert report["layers"][0]["scheme"] == "shared" and report["layers"][0]["lines"] == n_in
    x = binary_inputs(200, n_in)
    assert np.array_equal(class_counts(deployed, x), net.evaluate(x))


def test_probability_weights_threshold_at_one_half():
    rng = np.random.default_rng(1)
    p = rng.random((8, 10)) * rng.choice([-1, 1], (8, 10))
    net = Network([Population(INPUT, (10,)), step_pop("h", 8, -rng.random(8)), Population("y", (2,))],
                  [Projection(INPUT, "h", sp.csr_matrix(p)), Projection("h", "y", readout_matrix(8, 2))], "y")
    with pytest.raises(BinarizeError, match="weights=probability"):
        deploy(net)
    deployed, report = deploy(net, weights="probability")
    rounded = Network(net.populations, [Projection(INPUT, "h", sp.csr_matrix(np.sign(p) * (np.abs(p) > 0.5))),
                                        net.projections[1]], "y")
    x = binary_inputs(100, 10)
    assert np.array_equal(class_counts(deployed, x), rounded.evaluate(x))
    assert report["layers"][0]["approximation_error"] > 0 and not report["exact"]


def test_skip_connection_is_realigned_by_relays():
    rng = np.random.default_rng(2)
    w1 = rng.integers(-1, 2, (8, 10)).astype(float)
    w2 = rng.integers(-1, 2, (6, 8)).astype(float)
    w3a = rng.integers(-1, 2, (4, 6)).astype(float)
    w3b = rng.integers(-1, 2, (4, 10)).astype(float)  # layer 3 also reads the input directly
    pops = [Population(INPUT, (10,)), step_pop("a", 8, rng.integers(-2, 2, 8) + 0.5),
            step_pop("b", 6, rng.integers(-2, 2, 6) + 0.5), step_pop("c", 4, rng.integers(-2, 2, 4) + 0.5)]
    projs = [Projection(INPUT, "a", sp.csr_matrix(w1)), Projection("a", "b", sp.csr_matrix(w2)),
             Projection("b", "c", sp.csr_matrix(w3a)), Projection(INPUT, "c", sp.csr_matrix(w3b))]
    net = Network(pops, projs, "c")
    deployed, report = deploy(net)
    assert report["relay_groups"] >= 1
    x = binary_inputs(200, 10, seed=4)
    assert np.array_equal(class_counts(deployed, x), net.evaluate(x))


def test_voters_of_branches_of_different_depths_vote_on_the_same_tick():
    """A readout of two networks of different depths (a mixed ensemble): the shallow branch has
    neurons that fire with no input and would fire again after their tick; its voters are delayed
    to the deep branch's tick, and the class counts equal the float network's, deployed and on
    the emulator."""
    from crossmap import emulate
    from crossmap.passes.partition import Partition

    rng = np.random.default_rng(0)

    def weights(rows: int, cols: int) -> sp.csr_matrix:
        return sp.csr_matrix(rng.integers(-1, 2, (rows, cols)).astype(float))

    pops = [Population(INPUT, (10,)), step_pop("a1", 8, rng.integers(-2, 3, 8) + 0.5),
            step_pop("a2", 6, rng.integers(-2, 3, 6) + 0.5), step_pop("a3", 6, rng.integers(-2, 3, 6) + 0.5),
            step_pop("b1", 6, rng.integers(0, 3, 6) + 0.5),  # positive biases: firing with no input
            Population("y", (3,))]
    projs = [Projection(INPUT, "a1", weights(8, 10)), Projection("a1", "a2", weights(6, 8)),
             Projection("a2", "a3", weights(6, 6)), Projection(INPUT, "b1", weights(6, 10)),
             Projection("a3", "y", readout_matrix(6, 3)), Projection("b1", "y", readout_matrix(6, 3))]
    net = Network(pops, projs, "y")
    deployed, report = deploy(net)
    assert report["relay_groups"] >= 1, "b1 reads the input through a relay"
    x = binary_inputs(200, 10, seed=1)
    assert np.array_equal(class_counts(deployed, x), net.evaluate(x))
    state = state_for(net)
    BinarizeDeterministic().run(state)
    Partition().run(state)
    assert np.array_equal(emulate(state.program, encode(state.deployed.encoding, x)).class_counts, net.evaluate(x))


def test_max_pool_of_spikes_is_an_or_and_aliases_are_skipped():
    rng = np.random.default_rng(3)
    conv = rng.integers(-1, 2, (8, 12)).astype(float)
    pool = np.zeros((4, 8))
    pool[np.arange(8) // 2, np.arange(8)] = 1.0
    flat = sp.identity(4, format="csr")
    pops = [Population(INPUT, (12,)), step_pop("conv", 8, rng.integers(-1, 2, 8) - 0.5),
            Population("pool", (4,), "identity", reduce="max"), Population("flat", (4,)),
            step_pop("fc", 3, np.array([0.5, -0.5, -1.5]))]
    projs = [Projection(INPUT, "conv", sp.csr_matrix(conv)), Projection("conv", "pool", sp.csr_matrix(pool)),
             Projection("pool", "flat", flat), Projection("flat", "fc", sp.csr_matrix(rng.integers(-1, 2, (3, 4))))]
    net = Network(pops, projs, "fc")
    deployed, report = deploy(net)
    names = [g.name for g in deployed.groups]
    assert "flat" not in names and "pool" in names
    assert [layer["kind"] for layer in report["layers"]] == ["step", "or", "step"]
    x = binary_inputs(200, 12, seed=5)
    assert np.array_equal(class_counts(deployed, x), net.evaluate(x))


def test_inclusive_threshold_and_exact_ties():
    w = np.array([[1.0, 1.0, -1.0], [0.5, 0.5, 0.5]])
    pops = [Population(INPUT, (3,)), step_pop("h", 2, np.array([0.0, -0.5]), threshold=1.0, inclusive=True)]
    net = Network(pops, [Projection(INPUT, "h", sp.csr_matrix(w))], "h")
    deployed, _ = deploy(net)
    x = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], float)
    assert np.array_equal(class_counts(deployed, x), net.evaluate(x))
    timed, _ = deploy(net)  # one input tick: timed by initial_v and leak, no type needed
    assert timed.num_inputs == 3 and np.array_equal(class_counts(timed, x), net.evaluate(x))


# ------------------------------------------------------------------ bad input

def test_relu_layer_is_refused_with_lsq_remedy():
    net = step_mlp([6, 4, 2], seed=0)
    net.populations[1].activation = "relu"
    with pytest.raises(BinarizeError, match=r"layer 'h0' has activation 'relu'.*--binarize lsq"):
        deploy(net)


def test_float_output_is_refused():
    net = step_mlp([6, 4, 2], seed=0)
    net.populations[-1].activation = "sigmoid"
    with pytest.raises(BinarizeError, match=r"output layer 'h1' has activation 'sigmoid'"):
        deploy(net)


def test_not_few_level_weights_are_refused_then_rescaled_with_reported_error():
    rng = np.random.default_rng(0)
    net = step_mlp([10, 6, 2], seed=1)
    net.projections[0] = Projection(INPUT, "h0", sp.csr_matrix(rng.standard_normal((6, 10))))
    with pytest.raises(BinarizeError, match=r"layer 'h0': neuron 0.*rescale=true"):
        deploy(net)
    deployed, report = deploy(net, rescale=True)
    first = report["layers"][0]
    assert first["rescaled_neurons"] == 6 and 0 < first["approximation_error"] < 1
    assert not report["exact"]
    for g in deployed.groups:
        assert all(np.unique(row[row != 0]).size <= 4 for row in g.weight)


def test_too_many_levels_per_neuron():
    w = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, -1.0]])
    net = Network([Population(INPUT, (6,)), step_pop("h", 1, np.array([-0.5]))],
                  [Projection(INPUT, "h", sp.csr_matrix(w))], "h")
    with pytest.raises(BinarizeError, match=r"neuron 0 needs 6 distinct integer weights.*4 types"):
        deploy(net)


def test_weights_beyond_the_chip_range():
    w = np.array([[1.0, 300.0]])
    net = Network([Population(INPUT, (2,)), step_pop("h", 1, np.array([-0.5]))],
                  [Projection(INPUT, "h", sp.csr_matrix(w))], "h")
    with pytest.raises(BinarizeError, match=r"\|integer\| <= 255"):
        deploy(net)


def test_large_threshold_with_several_ticks_is_refused():
    w = np.full((1, 300), 1.0)
    net = Network([Population(INPUT, (300,)), step_pop("h", 1, np.array([-280.5]))],
                  [Projection(INPUT, "h", sp.csr_matrix(w))], "h")
    deployed, report = deploy(net)  # one frame: alpha = 281 is exact
    assert report["layers"][0]["one_shot_neurons"] == 1
    x = np.zeros((2, 300))
    x[0, :281] = 1
    x[1, :280] = 1
    assert class_counts(deployed, x).ravel().tolist() == [1, 0]
    with pytest.raises(BinarizeError, match=r"memoryless.*one input tick"):
        deploy(net, encoding="rate", ticks=4)


def test_spontaneous_neuron_without_a_free_type_is_refused():
    w = np.array([[-1.0, -2.0, -1.0]])
    net = Network([Population(INPUT, (3,)), step_pop("h", 1, np.array([2.5]))],
                  [Projection(INPUT, "h", sp.csr_matrix(w))], "h")
    with pytest.raises(BinarizeError, match=r"layer 'h': neuron 0 fires with zero input.*no axon type is left"):
        BinarizeDeterministic(timed=False).run(state_for(net, chip=ChipSpec(axon_types=2)))
    deployed, _ = deploy(net, timed=False)  # with 4 types the bias line gets its own type
    x = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], float)
    assert np.array_equal(class_counts(deployed, x), net.evaluate(x))


def test_unknown_encoding_and_conflicting_rate():
    net = step_mlp([6, 4, 2], seed=0)
    with pytest.raises(BinarizeError, match="unknown encoding 'poisson'"):
        deploy(net, encoding="poisson")
    with pytest.raises(BinarizeError, match="thresholds its input itself"):
        deploy(with_input_threshold(net), encoding="rate")


def test_chip_with_two_axon_types():
    chip = ChipSpec(axon_types=2)
    net = step_mlp([10, 8, 4], seed=7, levels=(-1, 0, 1))
    state = state_for(net, chip=chip)
    BinarizeDeterministic().run(state)
    x = binary_inputs(100, 10)
    assert np.array_equal(class_counts(state.deployed, x), net.evaluate(x))
    net3 = step_mlp([10, 8, 4], seed=7, levels=(-2, -1, 0, 1))
    with pytest.raises(BinarizeError, match="2 types"):
        BinarizeDeterministic().run(state_for(net3, chip=chip))


# ------------------------------------------------------------------ through the ONNX frontend

def test_chip_ready_onnx_model_matches_onnxruntime_on_float_images():
    """Greater(x, 0.5) encoding, Gemm + Greater + Cast layers, a 0/1 readout with 3 neurons per class."""
    from onnx import TensorProto, helper
    from crossmap.testing.onnx_models import make_model, run_onnxruntime

    from crossmap.frontend import import_onnx

    rng = np.random.default_rng(0)
    readout = np.zeros((12, 4), np.float32)
    readout[np.arange(12), np.arange(12) % 4] = 1.0
    inits = {"half": np.array(0.5, np.float32), "zero": np.array(0.0, np.float32),
             "w1": rng.choice([-1.0, 0.0, 1.0], (36, 20)).astype(np.float32),
             "b1": (rng.integers(-3, 3, 20) + 0.5).astype(np.float32),
             "w2": rng.choice([-2.0, 0.0, 2.0], (20, 12)).astype(np.float32),
             "b2": (rng.integers(-2, 4, 12) * 2 + 1.0).astype(np.float32), "r": readout}
    mk = helper.make_node
    nodes = [mk("Greater", ["x", "half"], ["g0"]), mk("Cast", ["g0"], ["s0"], to=TensorProto.FLOAT),
             mk("Flatten", ["s0"], ["f"], axis=1),
             mk("Gemm", ["f", "w1", "b1"], ["z1"]), mk("Greater", ["z1", "zero"], ["g1"]),
             mk("Cast", ["g1"], ["s1"], to=TensorProto.FLOAT),
             mk("Gemm", ["s1", "w2", "b2"], ["z2"]), mk("Greater", ["z2", "zero"], ["g2"]),
             mk("Cast", ["g2"], ["s2"], to=TensorProto.FLOAT), mk("MatMul", ["s2", "r"], ["y"])]
    model = make_model(nodes, ["N", 1, 6, 6], ["N", 4], inits)
    deployed, report = deploy(import_onnx(model))
    assert report["readout"] is not None and deployed.num_classes == 4
    assert report["encoding"]["threshold"] == pytest.approx(0.5)
    x = np.random.default_rng(1).random((300, 1, 6, 6)).astype(np.float32)
    assert np.array_equal(class_counts(deployed, x), run_onnxruntime(model, x))


# ------------------------------------------------------------------ random step networks

from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), inclusive=st.booleans(), depth=st.integers(1, 3),
       types=st.integers(2, 4))
def test_random_step_networks_are_exact(seed, inclusive, depth, types):
    """Random few-level weights (per-neuron power-of-two scales), thresholds and biases on dyadic
    grids, strict or inclusive steps, 2 to 4 axon types: simulate == float evaluate."""
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(3, 12)) for _ in range(depth + 1)]
    pops, projs, prev = [Population(INPUT, (sizes[0],))], [], INPUT
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        per_neuron = [np.sort(rng.choice(np.arange(-3, 4), size=types, replace=False)) for _ in range(b)]
        k = np.stack([rng.choice(np.append(vals, 0), a) for vals in per_neuron])
        scale = 2.0 ** rng.integers(-2, 3, (b, 1))
        bias = rng.integers(-6, 7, b) * 0.5 * scale[:, 0]
        pops.append(step_pop(f"l{i}", b, bias, threshold=float(rng.integers(-2, 3)) * 0.25, inclusive=inclusive))
        projs.append(Projection(prev, f"l{i}", sp.csr_matrix(k * scale)))
        prev = f"l{i}"
    net = Network(pops, projs, prev)
    state = state_for(net, chip=ChipSpec(axon_types=types))
    try:
        BinarizeDeterministic().run(state)
    except BinarizeError as exc:  # the one documented gap: no type left for the bias line
        assert "fires with zero input" in str(exc) and "no axon type is left" in str(exc)
        assume(False)
    x = binary_inputs(64, sizes[0], seed=seed)
    assert np.array_equal(class_counts(state.deployed, x), net.evaluate(x))

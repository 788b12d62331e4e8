"""Rate-coded conversion of float networks (binarize_rate) and ``--binarize auto``.

Oracles: the compiled program's class spike counts equal the deployed network's simulation sample
by sample; the deployed network's predictions agree with the float network's on a tiny task."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import crossmap
from crossmap.chip import ChipSpec
from crossmap.compiler import auto_binarize
from crossmap.encoding import encode
from crossmap.errors import BinarizeError, InputError
from crossmap.frontend import import_onnx
from crossmap.passes.binarize.codes import fit_codes

from crossmap.testing.onnx_models import binary_mlp, mlp

SMALL_CHIP = ChipSpec.truenorth().replace(axons_per_core=64, neurons_per_core=32, mesh_x=16, mesh_y=16)


def _agreement(program, network, x) -> float:
    counts = crossmap.emulate(program, encode(program.encoding, x)).class_counts
    return float(np.mean(np.argmax(counts, axis=1) == np.argmax(network.evaluate(x), axis=1)))


@pytest.fixture(scope="module")
def float_mlp(tmp_path_factory):
    path = tmp_path_factory.mktemp("rate") / "mlp.onnx"
    onnx.save(mlp((40, 24, 6), seed=3), str(path))
    return path


def test_auto_picks_rate_for_float_and_deterministic_for_step_networks(float_mlp):
    assert auto_binarize(import_onnx(str(float_mlp))) == "rate"
    assert auto_binarize(import_onnx(binary_mlp((16, 8, 4)))) == "deterministic"


def _probability_mlp(sizes: tuple[int, ...] = (16, 8, 4)) -> onnx.ModelProto:
    """A step MLP whose weights are real values in [-1, 1] (connection probabilities x sign)."""
    model = binary_mlp(sizes)
    rng = np.random.default_rng(5)
    for init in model.graph.initializer:
        if init.name.endswith(".weight"):
            values = rng.uniform(-1.0, 1.0, size=tuple(init.dims)).astype(np.float32)
            init.CopyFrom(onnx.numpy_helper.from_array(values, init.name))
    return model


def test_auto_samples_step_networks_with_real_valued_weights(tmp_path):
    model = _probability_mlp()
    assert auto_binarize(import_onnx(model)) == "stochastic"
    path = tmp_path / "prob.onnx"
    onnx.save(model, str(path))
    messages: list[str] = []
    auto = crossmap.compile(path, chip=SMALL_CHIP, progress=messages.append)
    sampled = crossmap.compile(path, chip=SMALL_CHIP, binarize="stochastic")
    assert any("binarize auto: stochastic" in m and "--ensemble" in m for m in messages)
    assert auto.metadata["pipeline"] == sampled.metadata["pipeline"]
    spikes = np.random.default_rng(0).random((32, 16)) > 0.5
    np.testing.assert_array_equal(crossmap.emulate(auto, spikes).class_counts,
                                  crossmap.emulate(sampled, spikes).class_counts)
    with pytest.raises(BinarizeError, match="not integer multiples"):
        crossmap.compile(path, chip=SMALL_CHIP, binarize="deterministic")


def test_auto_compiles_step_networks_exactly_as_before(tmp_path):
    path = tmp_path / "bmlp.onnx"
    onnx.save(binary_mlp((16, 8, 4)), str(path))
    auto = crossmap.compile(path, chip=SMALL_CHIP)
    exact = crossmap.compile(path, chip=SMALL_CHIP, binarize="deterministic")
    assert auto.metadata["pipeline"] == exact.metadata["pipeline"]
    spikes = np.random.default_rng(0).random((32, 16)) > 0.5
    np.testing.assert_array_equal(crossmap.emulate(auto, spikes).class_counts,
                                  crossmap.emulate(exact, spikes).class_counts)


def test_float_mlp_compiles_with_no_options_and_program_equals_deployed(float_mlp):
    x = np.random.default_rng(1).random((48, 40)).astype(np.float32)
    program = crossmap.compile(float_mlp, chip=SMALL_CHIP, calibration=x, ticks=16)
    assert program.metadata["pipeline"].startswith("binarize_rate")
    assert program.encoding["kind"] == "regular"
    from crossmap.pipeline import CompileState, parse_pipeline, run_pipeline

    state = run_pipeline(parse_pipeline(program.metadata["pipeline"].rsplit(",emit", 1)[0]),
                         CompileState(chip=SMALL_CHIP, network=import_onnx(str(float_mlp)), calibration=x))
    spikes = encode(program.encoding, x)
    want = state.deployed.simulate(spikes, ticks=program.total_ticks)["class_counts"]
    np.testing.assert_array_equal(crossmap.emulate(program, spikes).class_counts, want)


def test_conversion_agrees_with_float_on_a_tiny_task(float_mlp):
    rng = np.random.default_rng(2)
    calibration, test = rng.random((128, 40)), rng.random((200, 40))
    network = import_onnx(str(float_mlp))
    program = crossmap.compile(float_mlp, calibration=calibration.astype(np.float32), ticks=32)
    assert _agreement(program, network, test) >= 0.9


def test_samples_scoring_below_the_calibration_set_still_spike_for_their_class(float_mlp):
    rng = np.random.default_rng(2)
    calibration, dim = rng.random((128, 40)), 0.6 * rng.random((200, 40))  # dimmer than any calibration sample
    network = import_onnx(str(float_mlp))
    program = crossmap.compile(float_mlp, calibration=calibration.astype(np.float32), ticks=32)
    counts = crossmap.emulate(program, encode(program.encoding, dim)).class_counts
    assert int(np.sum(counts.max(axis=1) == 0)) == 0  # no sample left to the tie of all-zero counts
    assert _agreement(program, network, dim) >= 0.9


@pytest.mark.parametrize("partials, per_chunk", [("offset", 1), ("signed", 2)])
def test_fan_in_above_one_core_is_split_into_partial_sums(tmp_path, partials, per_chunk):
    path = tmp_path / "wide.onnx"
    onnx.save(mlp((100, 20, 5), seed=4), str(path))  # 100 inputs x 4 lines > 64 axons a core
    rng = np.random.default_rng(3)
    program = crossmap.compile(path, chip=SMALL_CHIP, calibration=rng.random((128, 100)).astype(np.float32),
                               pipeline=f"binarize_rate{{partials={partials};ticks=32}},partition,place,route,emit")
    hidden = program.reports["binarize_rate"]["layers"][0]
    assert hidden["chunks"] > 1 and any(g.endswith("/part0") for g in hidden["groups"])
    part0 = program.group_names.index(hidden["groups"][0])  # one neuron (offset) or a +/- pair (signed) a chunk
    assert int(np.sum(program.neuron_group == part0)) == per_chunk * 20
    assert hidden["relative_error"] < 0.1  # the merged values keep the float layer's
    assert _agreement(program, import_onnx(str(path)), rng.random((200, 100))) >= 0.85


def test_a_large_negative_bias_leaks_out_over_the_run(tmp_path):
    """A neuron held far below zero by its bias until all its input has come in would be left
    with too few ticks to fire its count; spread over the run, the bias costs no spikes."""
    path = tmp_path / "biased.onnx"
    model = mlp((30, 12, 4), seed=5)
    for init in model.graph.initializer:
        if init.name == "fc0.bias":  # the hidden bias: far below zero, the weights lifted to match
            init.CopyFrom(onnx.numpy_helper.from_array(np.full(12, -6.0, np.float32), init.name))
        elif init.name == "fc0.weight":
            w = onnx.numpy_helper.to_array(init)
            init.CopyFrom(onnx.numpy_helper.from_array((np.abs(w) + 0.4).astype(np.float32), init.name))
    onnx.save(model, str(path))
    x = np.random.default_rng(4).random((128, 30)).astype(np.float32)
    errors = {}
    for spread in ("true", "false"):
        program = crossmap.compile(path, calibration=x, pipeline=f"binarize_rate{{spread={spread};ticks=32}},"
                                                                  f"partition,place,route,emit")
        errors[spread] = program.reports["binarize_rate"]["layers"][0]["relative_error"]
    assert errors["true"] < 0.1 and errors["false"] > 3 * errors["true"]


def test_weight_codes_are_four_bit_sums_of_the_type_weights():
    rng = np.random.default_rng(0)
    import scipy.sparse as sp

    w = rng.standard_normal((12, 30)) * 0.1
    codes = fit_codes(sp.csr_matrix(w), np.ones(30), np.full(12, np.inf), bits=4, weight_max=255)
    assert np.abs(codes.k).max() <= 255
    realized = codes.realized().toarray()
    assert np.linalg.norm(realized - w) / np.linalg.norm(w) < 0.15  # 15 levels a neuron


def test_rounding_with_error_feedback_keeps_the_drive_on_the_calibration_inputs():
    import scipy.sparse as sp

    rng = np.random.default_rng(1)
    # correlated inputs (a few shared factors), a dense layer and a sparse one (two column patterns)
    x = np.clip(rng.random((300, 4)) @ rng.random((4, 40)) / 2, 0, 1)
    dense = sp.csr_matrix(rng.standard_normal((16, 40)) * 0.1)
    sparse = sp.csr_matrix(np.where(np.arange(40)[None, :] % 2 == np.arange(16)[:, None] % 2, dense.toarray(), 0))
    for w in (dense, sparse):
        plain = fit_codes(w, np.mean(x ** 2, axis=0), np.full(16, np.inf), bits=4, weight_max=255)
        fed = fit_codes(w, np.mean(x ** 2, axis=0), np.full(16, np.inf), bits=4, weight_max=255, inputs=x)
        np.testing.assert_array_equal(fed.k, plain.k)  # the same codes, other choices among their sums
        drive_error = [np.linalg.norm(x @ (c.realized() - w).T) for c in (plain, fed)]
        assert drive_error[1] < 0.5 * drive_error[0]


@pytest.mark.parametrize("option, message", [("floor=-1", r"floor=-1.0; choose a value in \[0, 10\]"),
                                             ("bits=5", r"bits=5; need 1 to 4"),
                                             ("partials=pairs", r"partials='pairs'; choose offset or signed"),
                                             ("percentile=20", r"percentile=20.0; choose a value in \[50, 100\]")])
def test_options_out_of_range_get_clear_errors(float_mlp, option, message):
    x = np.random.default_rng(0).random((8, 40)).astype(np.float32)
    with pytest.raises(BinarizeError, match=message):
        crossmap.compile(float_mlp, calibration=x, pipeline=f"binarize_rate{{{option}}},partition,place,route,emit")


def test_unsupported_layers_get_clear_errors(tmp_path):
    path = tmp_path / "tanh.onnx"
    onnx.save(mlp((10, 6, 3), activation="Tanh"), str(path))
    with pytest.raises(BinarizeError, match="activation 'tanh'.*binarize lsq"):
        crossmap.compile(path, calibration=np.random.default_rng(0).random((8, 10)).astype(np.float32))
    relu = tmp_path / "relu.onnx"
    onnx.save(mlp((10, 6, 3)), str(relu))
    with pytest.raises(InputError, match="calibration samples have 7 values.*takes 10"):
        crossmap.compile(relu, calibration=np.zeros((8, 7), np.float32))


def test_cli_calibration_and_data_files(float_mlp, tmp_path, capsys):
    from crossmap.cli import main

    rng = np.random.default_rng(5)
    x = rng.random((64, 40)).astype(np.float32)
    network = import_onnx(str(float_mlp))
    y = np.argmax(network.evaluate(x), axis=1)
    np.savez(tmp_path / "cal.npz", x=x)
    np.savez(tmp_path / "test.npz", x=x, y=y)
    np.save(tmp_path / "test.npy", x)
    out = tmp_path / "prog"
    assert main(["compile", str(float_mlp), "-o", str(out), "--calibration", str(tmp_path / "cal.npz"),
                 "--ticks", "16", "-q"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["run", str(out), "--data", str(tmp_path / "test.npz"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    program = crossmap.load(out)
    want = np.argmax(crossmap.emulate(program, crossmap.encode(program, x)).class_counts, axis=1)
    assert summary["samples"] == 64 and summary["accuracy"] == pytest.approx(np.mean(want == y))
    assert main(["run", str(out), "--data", str(tmp_path / "test.npy"), "-q"]) == 0
    assert "no labels" in capsys.readouterr().out
    assert main(["run", str(out), "--data", str(tmp_path / "missing.npz")]) != 0
    assert "does not exist" in capsys.readouterr().err
    np.savez(tmp_path / "bad.npz", x=x[:, :7])
    assert main(["compile", str(float_mlp), "-o", str(tmp_path / "p2"), "--calibration", str(tmp_path / "bad.npz")]) != 0
    assert "7 values" in capsys.readouterr().err and not (tmp_path / "p2").exists()


def test_missing_calibration_for_a_float_model_is_a_warning(float_mlp):
    with pytest.warns(UserWarning, match="no calibration data.*costs accuracy.*--calibration"):
        crossmap.compile(float_mlp, ticks=8)


def _tiny_cnn(seed: int = 0, extra_outputs: bool = False) -> onnx.ModelProto:
    """Conv 3@3x3 on (1, 8, 8), BatchNorm, ReLU, MaxPool 2, Flatten, Gemm 27 -> 4 (+ a Softmax output)."""
    from onnx import TensorProto, helper

    from crossmap.testing.onnx_models import make_model

    rng = np.random.default_rng(seed)
    inits = {"w": (rng.standard_normal((3, 1, 3, 3)) * 0.5).astype(np.float32),
             "b": (rng.standard_normal(3) * 0.1).astype(np.float32),
             "scale": (1 + 0.2 * rng.standard_normal(3)).astype(np.float32),
             "shift": (0.1 * rng.standard_normal(3)).astype(np.float32),
             "mean": (0.1 * rng.standard_normal(3)).astype(np.float32), "var": np.full(3, 0.8, np.float32),
             "fw": (rng.standard_normal((4, 27)) * 0.3).astype(np.float32),
             "fb": (rng.standard_normal(4) * 0.1).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["n"]),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    model = make_model(nodes, ["N", 1, 8, 8], ["N", 4], inits)
    if extra_outputs:
        model.graph.node.append(helper.make_node("Softmax", ["y"], ["probabilities"], axis=1))
        model.graph.node.append(helper.make_node("ArgMax", ["y"], ["label"], axis=1, keepdims=0))
        model.graph.output.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 4]))
        model.graph.output.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]))
        onnx.checker.check_model(model)
    return model


def test_cnn_with_batch_norm_and_max_pooling_agrees_with_float(tmp_path):
    path = tmp_path / "cnn.onnx"
    onnx.save(_tiny_cnn(), str(path))
    rng = np.random.default_rng(6)
    program = crossmap.compile(path, calibration=rng.random((128, 1, 8, 8)).astype(np.float32), ticks=32)
    assert any("/max" in layer["layer"] for layer in program.reports["binarize_rate"]["layers"])  # expanded
    assert _agreement(program, import_onnx(str(path)), rng.random((200, 1, 8, 8))) >= 0.85


def test_several_outputs_take_the_class_scores_with_a_message(tmp_path):
    path = tmp_path / "heads.onnx"
    onnx.save(_tiny_cnn(extra_outputs=True), str(path))
    with pytest.warns(UserWarning, match="compiling 'y'.*--output-name"):
        network = import_onnx(str(path))
    assert network.metadata["output_name"] == "y"
    assert import_onnx(str(path), output="probabilities").metadata["output_name"] == "probabilities"
    from crossmap.errors import ModelError

    with pytest.raises(ModelError, match="no output 'logits'.*'probabilities'"):
        import_onnx(str(path), output="logits")


def test_drive_correction_cancels_a_systematic_input_error():
    import scipy.sparse as sp

    from crossmap.passes.binarize.rate import drive_correction

    rng = np.random.default_rng(0)
    w = sp.csr_matrix(rng.standard_normal((5, 12)))
    exact = rng.random((64, 12))
    deployed = exact + 0.1  # every deployed input reads 0.1 too high
    output = rng.random((64, 5)) - 0.3
    np.testing.assert_allclose(drive_correction(w, deployed, exact, output), -0.1 * np.asarray(w.sum(axis=1)).ravel())
    noisy = exact + 0.1 * rng.standard_normal(exact.shape)  # only the mean over active samples is cancelled
    active = output > 0
    error = (noisy - exact) @ w.toarray().T
    want = -np.array([error[active[:, j], j].mean() for j in range(5)])
    np.testing.assert_allclose(drive_correction(w, noisy, exact, output), want)


def _one_spike_drive(net, group) -> np.ndarray:
    """(source neurons, neurons) membrane change one spike of each source neuron gives ``group``."""
    g = net.group(group)
    rows = []
    for lines in net.incoming(group):
        syn = lines.synapses.tocoo()
        drive = np.zeros((lines.source_index.max() + 1, g.size))
        np.add.at(drive, (lines.source_index[syn.row], syn.col), g.weight[syn.col, lines.axon_type[syn.row]])
        rows.append(drive)
    return np.vstack(rows)


def test_one_input_spike_drives_a_neuron_at_most_gain_thresholds(tmp_path):
    from crossmap.pipeline import CompileState
    from crossmap.passes.binarize.rate import BinarizeRate

    path = tmp_path / "cnn.onnx"
    onnx.save(_tiny_cnn(seed=1), str(path))
    x = np.random.default_rng(7).random((128, 1, 8, 8)).astype(np.float32)
    state = BinarizeRate(ticks=16).run(CompileState(chip=ChipSpec.truenorth(), network=import_onnx(str(path)),
                                                    calibration=x))
    hidden = [entry["layer"] for entry in state.reports["binarize_rate"]["layers"]
              if not entry["output"] and entry["chunks"] == 1]
    assert any("/max" in name for name in hidden)
    for name in hidden:
        top = np.abs(_one_spike_drive(state.deployed, name)).max(axis=0)
        assert np.all(top <= 1.1 * state.deployed.group(name).alpha + 1), name


def test_default_calibration_of_28x28_models_is_the_bundled_training_sample():
    from crossmap.compiler import calibration_inputs
    from crossmap.datasets import load_calibration_sample, sample_path

    network = import_onnx(mlp((784, 8, 4), seed=0))
    x = calibration_inputs(network)
    np.testing.assert_array_equal(x.reshape(len(x), -1), load_calibration_sample().reshape(len(x), -1))
    assert x.shape == (256, 784) and 0 <= x.min() and x.max() <= 1
    with np.load(sample_path().with_name("mnist_calibration.npz")) as bundle:
        assert bundle["indices"].max() >= 10000  # positions in the 60,000 training images

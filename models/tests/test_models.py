"""The committed model zoo: every ONNX model loads in onnxruntime with the declared shapes,
follows the chip-ready contract, and classifies the bundled MNIST sample."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from crossmap.datasets import load_sample

ort = pytest.importorskip("onnxruntime")

MODELS = Path(__file__).resolve().parents[1]
STEP_MODELS = ["esser2015_small", "esser2015_binary", "esser2015_large", "esser2015_large_w2", "eedn_cnn",
               "eedn_groups", "eedn_groups_s6", "eedn_groups_ft", "eedn_groups_s4_ft",
               "eedn_groups_s5_ft", "eedn_levels3", "eedn_spikes2", "eedn_spikes2_s91", "eedn_spikes2_s93",
               "eedn_spikes2_s94", "eedn_spikes2_s95", "eedn_spikes2_s97", "eedn_spikes4"]
# thermometer input codes: the thresholds of each pixel
THREE_LEVELS = (0.25, 0.5, 0.75)
LEVEL_MODELS = {"eedn_levels3": THREE_LEVELS, "eedn_spikes2": THREE_LEVELS, "eedn_spikes2_s94": THREE_LEVELS,
                "eedn_spikes2_s95": THREE_LEVELS, "eedn_spikes2_s97": THREE_LEVELS, "eedn_spikes2_s91": THREE_LEVELS,
                "eedn_spikes4": THREE_LEVELS, "eedn_spikes2_s93": tuple(k / 8 for k in range(1, 8))}
SPIKE_LEVEL_MODELS = {"eedn_spikes2": 2, "eedn_spikes2_s93": 2, "eedn_spikes2_s94": 2, "eedn_spikes2_s95": 2,
                      "eedn_spikes2_s97": 2, "eedn_spikes2_s91": 2, "eedn_spikes4": 4}  # --spike-levels
FLOAT_MODELS = ["mlp", "lenet", "esser2015_small_prob", "ttfs_mlp"]
ALL = STEP_MODELS + FLOAT_MODELS


def load(name: str) -> onnx.ModelProto:
    """A committed model."""
    path = MODELS / f"{name}.onnx"
    if not path.is_file():
        pytest.fail(f"{path} is missing; train it with python models/train_{name.removesuffix('_prob')}.py")
    return onnx.load(str(path))


def weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers by name, and the float weights that ``Cast`` nodes make of int8 initializers
    (``common.store_integer_weights_as_int8``) by their output name."""
    found = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Cast" and node.input[0] in found:
            found[node.output[0]] = found[node.input[0]].astype(np.float32)
    return found


@pytest.fixture(scope="module")
def sample():
    return load_sample()


@pytest.fixture
def recipes():
    """torch and the recipes' shared module ``models/common.py`` (the test is skipped without torch)."""
    torch = pytest.importorskip("torch")
    import common

    return torch, common


@pytest.mark.parametrize("name", ALL)
def test_loads_with_declared_shapes_and_classifies_sample(name, sample):
    model = load(name)
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.name == "x" and inp.shape[1:] == [1, 28, 28] and isinstance(inp.shape[0], str)
    assert out.name == "y" and out.shape[1:] == [10]
    images, labels = sample
    y = session.run(None, {"x": images})[0]
    assert y.shape == (len(images), 10)
    accuracy = float((y.argmax(1) == labels).mean())
    recorded = float({p.key: p.value for p in model.metadata_props}["crossmap.test_accuracy"])
    assert accuracy >= recorded - 0.05, f"{name}: {accuracy:.3f} on the sample, {recorded:.3f} recorded"


def layer_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The Gemm and Conv layers of a step network, without a thermometer code's input Conv."""
    return [n for n in graph.node if n.op_type in ("Gemm", "Conv") and n.input[0] != "x"]


@pytest.mark.parametrize("name", [n for n in ALL if n not in LEVEL_MODELS])
def test_threshold_input_encoding_comes_first(name):
    graph = load(name).graph
    first, second = graph.node[0], graph.node[1]
    assert first.op_type == "Greater" and first.input[0] == "x"
    assert float(weights(load(name))[first.input[1]]) == 0.5
    assert second.op_type == "Cast" and second.input[0] == first.output[0]
    assert onnx.helper.get_attribute_value(second.attribute[0]) == onnx.TensorProto.FLOAT


@pytest.mark.parametrize("name", sorted(LEVEL_MODELS))
def test_thermometer_input_encoding_comes_first(name):
    """A 1x1 Conv of x (weight 1, bias -t per threshold t) -> Greater(h, 0) -> Cast named x_levels."""
    model = load(name)
    graph, w = model.graph, weights(model)
    conv, step, cast = graph.node[:3]
    assert conv.op_type == "Conv" and conv.input[0] == "x"
    assert (w[conv.input[1]] == 1).all() and w[conv.input[1]].shape == (len(LEVEL_MODELS[name]), 1, 1, 1)
    np.testing.assert_array_equal(w[conv.input[2]], -np.array(LEVEL_MODELS[name], np.float32))
    assert step.op_type == "Greater" and step.input[0] == conv.output[0] and float(w[step.input[1]]) == 0.0
    assert cast.op_type == "Cast" and cast.output[0] == "x_levels"


@pytest.mark.parametrize("name", STEP_MODELS)
def test_step_models_have_integer_weights_and_a_readout(name):
    model = load(name)
    w = weights(model)
    graph = model.graph
    readout = graph.node[-1]
    assert readout.op_type == "MatMul" and readout.output[0] == "y"
    matrix = w[readout.input[1]]
    assert set(np.unique(matrix)) <= {0.0, 1.0} and (matrix.sum(1) == 1).all()
    layers = layer_nodes(graph)
    for node in layers:
        weight = w[node.input[1]]
        assert set(np.unique(weight)) <= {-1.0, 0.0, 1.0}, node.name
        bias = w[node.input[2]]
        assert np.all(bias - np.floor(bias) == 0.5), "biases are half-integers: exact integer thresholds"
    # every layer is followed by a step: Greater(h, 0) -> Cast
    consumers = {i: n for n in graph.node for i in n.input}
    for node in layers:
        step = consumers[node.output[0]]
        assert step.op_type == "Greater" and float(w[step.input[1]]) == 0.0


@pytest.mark.parametrize("name", ["esser2015_small", "esser2015_binary", "esser2015_large", "esser2015_large_w2",
                                  "esser2015_small_prob"])
def test_patch_models_fit_a_core_and_respect_axon_types(name):
    model = load(name)
    meta = {p.key: p.value for p in model.metadata_props}
    types = json.loads(meta["crossmap.axon_types"])
    w = weights(model)
    for key, type_string in types.items():
        weight = w[key]
        line_type = np.array([int(c) for c in type_string])
        assert len(line_type) == weight.shape[0]
        assert (np.count_nonzero(weight, axis=0) <= 256).all(), "every neuron reads <= 256 axons"
        for t in range(4):
            rows = weight[line_type == t]
            # all connections of one neuron on one axon type share a sign
            assert not ((rows > 0).any(0) & (rows < 0).any(0)).any()


def test_cnn_filters_fit_a_core():
    model = load("eedn_cnn")
    w = weights(model)
    for node in (n for n in model.graph.node if n.op_type == "Conv"):
        fan_in = int(np.prod(w[node.input[1]].shape[1:]))
        assert 2 * fan_in <= 256, f"{node.name}: {fan_in} inputs x 2 signs"


def assert_one_sign_per_axon_type(weight: np.ndarray, types: np.ndarray) -> None:
    """Conv weights (out, in, k, k) whose nonzero weights of one output channel on lines of one
    axon type (``types``, (in, k, k)) share a sign, as the chip's one weight per type requires."""
    for t in range(4):
        on_type = weight[:, types == t]  # (out, lines of type t)
        assert not ((on_type > 0).any(1) & (on_type < 0).any(1)).any(), "one sign per neuron and axon type"


def assert_core_shaped_filters(convs, specs) -> None:
    """Every filter of these ``CoreConv`` layers (specs (cin, cout, k, stride, pad, groups)) reads
    at most 256 lines with one sign per (neuron, axon type)."""
    from train_eedn_groups import line_types

    for conv, (cin, _, k, stride, pad, groups) in zip(convs, specs, strict=True):
        weight = conv.weight().detach().numpy()
        assert cin // groups * k * k <= 256
        assert_one_sign_per_axon_type(weight, line_types(weight.shape[1], k, stride, pad))


@pytest.mark.parametrize("name", ["eedn_groups", "eedn_groups_s6", "eedn_levels3"])
def test_core_shaped_cnn_reads_at_most_a_core_per_filter_with_one_sign_per_axon_type(name):
    from train_eedn_groups import LAYERS, line_types

    model = load(name)
    w = weights(model)
    convs = layer_nodes(model.graph)
    assert len(convs) == len(LAYERS)
    for node, (_, k, stride, pad, groups) in zip(convs, LAYERS):
        weight = w[node.input[1]]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["group"] == groups and weight.shape[2:] == (k, k)
        assert int(np.prod(weight.shape[1:])) <= 256, f"{node.name}: a filter reads at most 256 lines"
        assert_one_sign_per_axon_type(weight, line_types(weight.shape[1], k, stride, pad))


def test_core_shaped_cnn_recipe_integer_type_weights_and_ternary_first_layer(recipes, sample):
    """``--levels 3 --free-first``: c1 has free ternary weights (a + and a - axon per pixel), every
    other layer one integer weight in -3..3 per (neuron, axon type); the export equals torch."""
    torch, common = recipes
    from train_eedn_groups import EednGroups, line_types

    torch.manual_seed(0)
    net = EednGroups(None, levels=3, free_first=True)
    with torch.no_grad():  # spread the latent per-type weights over the whole integer range
        for conv in net.convs[1:]:
            conv.sign.uniform_(-3.49, 3.49)
    net.constrain()
    first = net.convs[0].weight().detach().numpy()
    assert set(np.unique(first)) <= {-1.0, 0.0, 1.0} and (first > 0).any() and (first < 0).any()
    seen = set()
    for conv, (_, _, k, stride, pad, _) in zip(net.convs[1:], net.specs[1:]):
        weight = conv.weight().detach().numpy()
        seen |= set(np.unique(weight).tolist())
        types = line_types(weight.shape[1], k, stride, pad)
        for t in range(4):
            on_type = weight[:, types == t]
            top = np.where(on_type != 0, on_type, -np.inf).max(1)
            bottom = np.where(on_type != 0, on_type, np.inf).min(1)
            used = on_type.any(1)
            assert np.array_equal(top[used], bottom[used]), "one weight per neuron and axon type"
    assert seen == {-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0}

    images, _ = sample
    net.eval()
    with torch.no_grad():
        expected = net(common.binarize_input(torch.from_numpy(images[:20]))).numpy()
    model = net.to_onnx({}, "probe")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"x": images[:20]})[0], expected)


@pytest.mark.parametrize("levels", [2, 4])
def test_core_shaped_cnn_spike_levels_export_lines_per_neuron_and_equal_torch(recipes, sample, levels):
    """``--spike-levels L``: every hidden unit is L neurons with one filter and rising
    thresholds, read by the next layer with one weight per line; from c2 on the layers have L times
    the groups so a filter still reads at most 256 lines with one sign per axon type; the voters
    have one line (480 of them at L = 4, so that they split into 8 groups); onnxruntime's class
    counts equal torch's exactly, and the units take all L + 1 values."""
    torch, common = recipes
    from train_eedn_groups import LAYERS, EednGroups

    torch.manual_seed(2)
    net = EednGroups(None, spike_levels=levels)
    assert [spec[5] for spec in net.specs] == [LAYERS[0][4]] + [layer[4] * levels for layer in LAYERS[1:]]
    assert net.specs[-1][1] == {2: 500, 4: 480}[levels]
    images, _ = sample
    x = common.binarize_input(torch.from_numpy(images[:60]))
    common.recalibrate_batchnorm(net, x)
    with torch.no_grad():  # shifts as training leaves them: at shift 0 a mean over 60 images can be an
        for conv in net.convs:  # integer sum, and float32 then decides that tie either way
            conv.norm.bn.bias.uniform_(-0.2, 0.2)
    net.eval()
    with torch.no_grad():
        expected = net(x).numpy()
        values = net.convs[1](net.convs[0](x).index_select(1, net.order1))
    assert set(np.unique(values.numpy())) == set(range(levels + 1))
    model = net.to_onnx({}, "probe")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"x": images[:60]})[0], expected)

    assert_spike_lines_per_hidden_neuron(model, net.specs, levels)


def assert_spike_lines_per_hidden_neuron(model: onnx.ModelProto, specs, levels: int) -> None:
    """The layers of a ``--spike-levels L`` export (specs (cin, cout, k, stride, pad, groups) of its
    units): a hidden unit's L neurons share one filter and their thresholds rise; all L lines of
    an input unit carry the unit's weight and axon type; a filter reads at most 256 lines with one
    sign per axon type; the voters have one line."""
    from train_eedn_groups import line_types

    w = weights(model)
    for i, (node, (_, cout, k, stride, pad, groups)) in enumerate(zip(layer_nodes(model.graph), specs, strict=True)):
        weight, bias = w[node.input[1]], w[node.input[2]]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        lines_out = levels if i < len(specs) - 1 else 1
        assert attrs["group"] == groups and weight.shape[2:] == (k, k)
        assert weight.shape[0] == cout * lines_out and int(np.prod(weight.shape[1:])) <= 256, node.name
        for line in range(1, lines_out):  # a unit's neurons: one filter, each threshold above the last
            np.testing.assert_array_equal(weight[line::lines_out], weight[0::lines_out])
            higher, lower = bias[line::lines_out], bias[line - 1::lines_out]
            assert (higher <= lower).all() and (higher < lower).any()
        if i:  # all lines of an input unit carry the unit's weight and axon type
            for line in range(1, levels):
                np.testing.assert_array_equal(weight[:, line::levels], weight[:, 0::levels])
            types = np.repeat(line_types(weight.shape[1] // levels, k, stride, pad), levels, axis=0)
            assert_one_sign_per_axon_type(weight, types)


@pytest.mark.parametrize("name", SPIKE_LEVEL_MODELS)
def test_committed_spike_level_cnns_have_their_lines_per_hidden_neuron(recipes, name):
    """The committed ``--spike-levels`` networks have the structure of the recipe's export."""
    from train_eedn_groups import EednGroups

    levels = SPIKE_LEVEL_MODELS[name]
    net = EednGroups(None, input_thresholds=LEVEL_MODELS[name], spike_levels=levels)
    assert_spike_lines_per_hidden_neuron(load(name), net.specs, levels)


def test_core_shaped_cnn_full_layout_has_a_ternary_full_resolution_first_layer_and_typed_others(recipes):
    """``--layout full``: c1 is 3x3 stride 1 at 28x28 with free ternary weights (no line types fit
    a stride-1 kernel), then 2x2 stride-2 layers whose filters read at most 256 lines with one
    sign per (neuron, axon type), down to the same 1x1 map of voters as the base layout."""
    torch, _ = recipes
    from train_eedn_groups import LAYOUTS, EednGroups

    torch.manual_seed(1)
    net = EednGroups(None, layout="full")
    assert net.specs == [(cin, *layer) for cin, layer in zip([1, 64, 128, 256, 512, 512, 512], LAYOUTS["full"])]
    first = net.convs[0].weight().detach().numpy()
    assert first.shape == (64, 1, 3, 3) and set(np.unique(first)) == {-1.0, 0.0, 1.0}
    assert_core_shaped_filters(net.convs[1:], net.specs[1:])
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="choose one of"):
        EednGroups(None, layout="tall")


def test_core_shaped_cnn_wide_layout_doubles_the_channels_and_keeps_every_filter_core_shaped(recipes):
    """``--layout wide``: twice the base's channels from c2 on, in twice the groups, so every
    filter still reads at most 256 lines with one sign per (neuron, axon type); 1,000 voters,
    100 per class."""
    torch, _ = recipes
    from train_eedn_groups import LAYOUTS, EednGroups

    torch.manual_seed(2)
    net = EednGroups(None, layout="wide")
    base = EednGroups(None, layout="base")
    assert [spec[1] for spec in net.specs[1:]] == [2 * spec[1] for spec in base.specs[1:]]
    assert net.specs[0] == base.specs[0] and len(LAYOUTS["wide"]) == len(LAYOUTS["base"])
    assert_core_shaped_filters(net.convs, net.specs)
    assert np.array_equal(np.bincount(net.classes), np.full(10, 100))
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_thermometer_input_gives_one_channel_per_threshold_in_order(recipes):
    torch, common = recipes
    assert common.thermometer(1) == (0.5,) and common.thermometer(3) == (0.25, 0.5, 0.75)
    x = torch.tensor([0.1, 0.3, 0.6, 0.9]).view(1, 1, 2, 2)
    levels = common.binarize_input(x, common.thermometer(3))
    assert levels.shape == (1, 3, 2, 2)
    assert levels.view(3, 4).tolist() == [[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]]
    assert torch.equal(common.binarize_input(x), levels[:, 1:2])


def test_training_distortions_keep_the_image_when_zero_and_move_rotate_it_otherwise(recipes, sample):
    """``warp``: no distortion leaves the image; a move of whole pixels is a shift; a quarter turn
    of the square image is ``rot90``. ``warp_images`` draws within the limits it is given."""
    torch, common = recipes
    x = torch.from_numpy(sample[0][:16])
    n = x.shape[0]
    ones, zeros = torch.ones(n), torch.zeros(n)
    torch.testing.assert_close(common.warp(x, zeros, ones, torch.zeros(n, 2)), x, atol=1e-5, rtol=0)
    moved = common.warp(x, zeros, ones, torch.tensor([[2.0, -1.0]]).repeat(n, 1))  # 2 right, 1 up
    expected = torch.zeros_like(x)
    expected[:, :, :-1, 2:] = x[:, :, 1:, :-2]
    torch.testing.assert_close(moved, expected, atol=1e-5, rtol=0)
    turned = common.warp(x, torch.full((n,), np.pi / 2), ones, torch.zeros(n, 2))
    quarter = [torch.rot90(x, k, dims=(2, 3)) for k in (1, -1)]
    assert min(float((turned - q).abs().max()) for q in quarter) < 1e-4
    generator = torch.Generator().manual_seed(0)
    torch.testing.assert_close(common.warp_images(x, 0, 0, 0, generator), x, atol=1e-5, rtol=0)
    distorted = common.warp_images(x, 2, 15, 0.15, generator)
    assert distorted.shape == x.shape and not torch.allclose(distorted, x)
    assert torch.equal(common.augment_images(x, 0, generator), x), "no shift and no warp: the images as given"


def test_elastic_fields_are_smooth_bounded_and_a_constant_field_is_a_move(recipes, sample):
    """``elastic_field`` has the asked shape and strength and is smooth (neighbouring pixels move
    alike); ``warp`` with a constant field equals a move; ``warp_images`` with a field changes the
    image without wiping it out."""
    torch, common = recipes
    x = torch.from_numpy(sample[0][:8])
    n = x.shape[0]
    ones, zeros = torch.ones(n), torch.zeros(n)
    constant = torch.tensor([1.0, 2.0]).expand(n, 28, 28, 2)
    moved = common.warp(x, zeros, ones, torch.tensor([[1.0, 2.0]]).repeat(n, 1))
    torch.testing.assert_close(common.warp(x, zeros, ones, torch.zeros(n, 2), constant), moved, atol=1e-5, rtol=0)
    field = common.elastic_field(64, 28, 34.0, 4.0, torch.Generator().manual_seed(1))
    assert field.shape == (64, 28, 28, 2)
    assert 0.5 < float(field.std()) < 3.0, "alpha 34, sigma 4: displacements of about a pixel or two"
    step = float((field[:, 1:] - field[:, :-1]).abs().mean())
    assert step < 0.3 * float(field.abs().mean()), "smooth: neighbours move nearly alike"
    weak = common.elastic_field(64, 28, 3.4, 4.0, torch.Generator().manual_seed(1))
    torch.testing.assert_close(weak * 10, field, atol=1e-4, rtol=1e-4)
    bent = common.warp_images(x, 0, 0, 0, torch.Generator().manual_seed(2), 34.0)
    assert not torch.allclose(bent, x) and float((bent - x).abs().mean()) < float(x.mean())


def test_distillation_targets_mix_labels_with_the_teachers_softened_probabilities(recipes, sample):
    """``soft_targets``: without a teacher the labels as given; with one, rows that sum to 1, the
    one-hot labels at ``--distill 0``, the teacher's softmax(logits / T) at 1, and the mix between.
    ``fit``'s losses take either (``cross_entropy`` accepts class probabilities)."""
    import argparse

    torch, common = recipes
    x = common.binarize_input(torch.from_numpy(sample[0][:32]))
    y = torch.from_numpy(sample[1][:32].astype(np.int64))
    assert torch.equal(common.soft_targets(argparse.Namespace())(x, y), y)
    assert torch.equal(common.soft_targets(argparse.Namespace(teacher=None))(x, y), y)
    teacher = str(MODELS / "lenet.onnx")
    session = ort.InferenceSession(teacher, providers=["CPUExecutionProvider"])
    logits = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])

    def targets(alpha: float, temperature: float = 2.0) -> torch.Tensor:
        args = argparse.Namespace(teacher=teacher, distill=alpha, teacher_temperature=temperature)
        return common.soft_targets(args)(x, y)

    onehot = torch.nn.functional.one_hot(y, 10).float()
    torch.testing.assert_close(targets(0.0), onehot)
    torch.testing.assert_close(targets(1.0, 3.0), torch.softmax(logits / 3.0, 1))
    mixed = targets(0.25)
    torch.testing.assert_close(mixed.sum(1), torch.ones(32))
    torch.testing.assert_close(mixed, 0.75 * onehot + 0.25 * torch.softmax(logits / 2.0, 1))
    assert (targets(1.0, 3.0).max(1).values < targets(1.0, 1.0).max(1).values).all(), "a higher T softens"
    loss = torch.nn.functional.cross_entropy(torch.zeros(32, 10), mixed)
    assert abs(float(loss) - np.log(10)) < 1e-5


@pytest.mark.parametrize("recipe, options", [
    ("train_lenet", ["--width", "2", "--shift", "1", "--rotate", "10"]),
    ("train_esser2015_binary", ["--teacher", str(MODELS / "lenet.onnx"), "--distill", "0.7"]),
    ("train_eedn_groups", ["--layout", "full", "--val", "100"]),
    ("train_eedn_groups", ["--layout", "wide", "--val", "100"]),
    ("train_eedn_groups", ["--input-levels", "3", "--val", "100"]),
])
def test_recipes_train_and_export_a_checked_model_on_the_bundled_sample(recipes, sample, recipe, options, tmp_path,
                                                                        monkeypatch, capsys):
    """A recipe end to end on the 300 bundled images (one epoch): the options parse, training runs
    (with a teacher, with distortions), and the export passes its onnxruntime check against torch
    and records the command."""
    import importlib

    torch, common = recipes
    images, labels = sample
    data = {"xtr": images, "ytr": labels.astype(np.int64), "xte": images[:100], "yte": labels[:100].astype(np.int64)}
    monkeypatch.setattr(common, "load_data", lambda args: data)
    out = tmp_path / "m.onnx"
    monkeypatch.setattr(sys, "argv", [f"{recipe}.py", "--epochs", "1", "--out", str(out), *options])
    torch.set_num_threads(1)
    importlib.import_module(recipe).main()
    printed = capsys.readouterr().out
    assert "predictions differing from torch: 0" in printed
    model = onnx.load(str(out))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["crossmap.command"].endswith(" ".join(options))
    if recipe == "train_lenet":
        assert weights(model)["conv1.weight"].shape == (12, 1, 5, 5)
    if options[:2] == ["--layout", "full"]:
        assert weights(model)["c1.weight"].shape == (64, 1, 3, 3)
    if options[:2] == ["--layout", "wide"]:
        assert weights(model)["c7.weight"].shape == (1000, 256, 1, 1)
    if options[:2] == ["--input-levels", "3"]:  # a thermometer code: c1 reads three channels per pixel
        assert weights(model)["c1.weight"].shape == (128, 3, 4, 4)
        assert weights(model)["input_levels.bias"].tolist() == [-0.25, -0.5, -0.75]


def run_recipe(common, recipe: str, argv: list[str], data: dict, monkeypatch) -> None:
    """Run a recipe's ``main`` with ``argv`` on ``data`` instead of MNIST."""
    import importlib

    monkeypatch.setattr(common, "load_data", lambda args: data)
    monkeypatch.setattr(sys, "argv", [f"{recipe}.py", *argv])
    importlib.import_module(recipe).main()


def test_core_shaped_cnn_fine_tunes_from_its_export_with_frozen_norms(recipes, sample, tmp_path, monkeypatch,
                                                                       capsys):
    """``--init FILE --epochs 0 --finetune 1``: the loaded network predicts exactly what the file
    does before fine-tuning, the fine-tuned export still equals torch, and the metadata records the
    frozen-norm epochs; a file of another layout is refused with the layer that differs."""
    torch, common = recipes
    from train_eedn_groups import EednGroups, load_exported

    torch.set_num_threads(1)
    images, labels = sample
    data = {"xtr": images, "ytr": labels.astype(np.int64), "xte": images[:100], "yte": labels[:100].astype(np.int64)}
    first, tuned = tmp_path / "first.onnx", tmp_path / "tuned.onnx"
    run_recipe(common, "train_eedn_groups", ["--epochs", "1", "--val", "100", "--input-levels", "3",
                                             "--out", str(first)], data, monkeypatch)
    run_recipe(common, "train_eedn_groups", ["--epochs", "0", "--finetune", "1", "--val", "100", "--input-levels",
                                             "3", "--init", str(first), "--out", str(tuned)], data, monkeypatch)
    printed = capsys.readouterr().out
    assert f"started from {first}: predicts what the file does on all 100 test images" in printed
    assert "epoch   0/1 (as loaded)  val acc" in printed and "epoch   1/1 (frozen norms)" in printed
    assert "predictions differing from torch: 0" in printed
    meta = {p.key: p.value for p in onnx.load(str(tuned)).metadata_props}
    assert meta["crossmap.finetune_epochs"] == "1" and meta["crossmap.epochs"] == "0"

    net = EednGroups(None, input_thresholds=(0.25, 0.5, 0.75))
    x, y = torch.from_numpy(images[:200]), torch.from_numpy(labels[:200].astype(np.int64))
    load_exported(net, common.onnx_initializers(onnx.load(str(first))), x, y)
    exported = weights(onnx.load(str(first)))
    for i, conv in enumerate(net.convs):  # the same integer weights and thresholds as the file
        np.testing.assert_array_equal(conv.weight().detach().numpy(), exported[f"c{i + 1}.weight"])
        np.testing.assert_array_equal(common.integer_bias(conv.norm.threshold()), exported[f"c{i + 1}.bias"])
    with pytest.raises(SystemExit, match="--init: layer c1 has weight .*give the --layout and --input-levels"):
        load_exported(EednGroups(None), common.onnx_initializers(onnx.load(str(first))), x, y)
    with pytest.raises(SystemExit, match="--init .*missing.onnx: no such file"):
        run_recipe(common, "train_eedn_groups", ["--epochs", "0", "--finetune", "1", "--init",
                                                 str(tmp_path / "missing.onnx")], data, monkeypatch)
    with pytest.raises(SystemExit, match="--epochs 0 --finetune 0: give a positive number of epochs"):
        run_recipe(common, "train_eedn_groups", ["--epochs", "0"], data, monkeypatch)
    for levels in ("0", "3"):  # 256 channels do not split into 2 x 3 groups
        with pytest.raises(SystemExit, match=rf"--spike-levels {levels}: .*choose one of \[1, 2, 4, 8\]"):
            run_recipe(common, "train_eedn_groups", ["--spike-levels", levels], data, monkeypatch)
    with pytest.raises(SystemExit, match="--init with --spike-levels 2: only networks of one spike line"):
        load_exported(EednGroups(None, spike_levels=2), common.onnx_initializers(onnx.load(str(first))), x, y)


def test_frozen_norms_train_at_fixed_thresholds(recipes):
    """``freeze_batchnorm``: in training mode the step neurons then use the running statistics
    (the deployed thresholds), which forward passes no longer move, while the shift still learns."""
    torch, common = recipes
    from train_eedn_groups import EednGroups

    torch.manual_seed(3)
    net = EednGroups(None)
    x = common.binarize_input(torch.rand(64, 1, 28, 28))
    common.recalibrate_batchnorm(net, x)
    net.eval()
    with torch.no_grad():
        deployed = net(x)
    net.train()
    common.freeze_batchnorm(net)
    before = [conv.norm.bn.running_mean.clone() for conv in net.convs]
    out = net(x)
    assert torch.equal(out, deployed)
    assert all(torch.equal(b, conv.norm.bn.running_mean) for b, conv in zip(before, net.convs))
    out.sum().backward()
    assert any(conv.norm.bn.bias.grad is not None and conv.norm.bn.bias.grad.abs().sum() > 0 for conv in net.convs)
    net.train()
    with torch.no_grad():
        assert not torch.equal(net(x[:7]), deployed[:7]), "batch statistics move the thresholds"


def test_patch_network_loads_its_export_exactly_and_refuses_another_layout(recipes, sample):
    """``patchnet.load_exported`` on the committed ``esser2015_large.onnx``: the same integer
    weights and thresholds, the same predictions as onnxruntime; a file of another width is
    refused with the layer that differs."""
    torch, common = recipes
    from patchnet import load_exported
    from train_esser2015_large import build

    images, labels = sample
    arrays = common.onnx_initializers(load("esser2015_large"))
    x, y = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
    net = build("binary", None)
    load_exported(net, arrays, x, y)
    for k, layer in enumerate(net.layers, start=1):
        weight, bias = layer.export("binary")
        np.testing.assert_array_equal(weight, arrays[f"l{k}.weight"])
        np.testing.assert_array_equal(bias, arrays[f"l{k}.bias"])
    expected = common.onnx_predict(load("esser2015_large"), images)
    np.testing.assert_array_equal(common.predict(net, images), expected)
    with pytest.raises(SystemExit, match="--init: layer l1 has weight .*--width and --hidden"):
        load_exported(build("binary", None, width=2), arrays, x, y)


def test_boosting_adds_the_ensembles_weighted_outputs_to_the_networks_in_the_loss(recipes, sample, tmp_path,
                                                                                 monkeypatch, capsys):
    """``--boost FILE ...``: ``boost_offsets`` is zeros without it, and ``--boost-weight`` times
    the files' summed onnxruntime outputs on the undistorted images with it; ``fit`` hands the loss
    the network's outputs plus those offsets, image by image; a recipe trains with it; a missing
    file, and a recipe that learns its loss scale (the CNNs), are refused."""
    import argparse

    torch, common = recipes
    images, labels = sample
    files = [str(MODELS / "lenet.onnx"), str(MODELS / "esser2015_binary.onnx")]
    summed = sum(ort.InferenceSession(f, providers=["CPUExecutionProvider"]).run(None, {"x": images})[0] for f in files)
    assert torch.equal(common.boost_offsets(argparse.Namespace(), images, labels), torch.zeros(300, 10))
    offsets = common.boost_offsets(argparse.Namespace(boost=files, boost_weight=0.5), images, labels)
    np.testing.assert_allclose(offsets.numpy(), 0.5 * summed, rtol=1e-6, atol=1e-5)
    assert "boosting 2 networks: together" in capsys.readouterr().out

    seen = []
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    torch.nn.init.zeros_(model[1].weight)  # outputs 0 (and lr 0 keeps them): the loss sees the offsets alone
    torch.nn.init.zeros_(model[1].bias)

    def loss(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(torch.cat([scores.detach(), y[:, None].float()], 1))
        return torch.nn.functional.cross_entropy(scores, y)

    data = {"xtr": images, "ytr": labels.astype(np.int64), "xte": images[:50], "yte": labels[:50].astype(np.int64)}
    args = argparse.Namespace(epochs=1, batch_size=64, seed=3, boost=files, boost_weight=0.5)
    common.fit(model, data, args, loss, torch.optim.SGD(model.parameters(), lr=0.0))
    rows = torch.cat(seen).numpy()
    expected = np.concatenate([0.5 * summed, labels[:, None]], 1)
    order = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731  (rows in a canonical order: the batches are shuffled)
    np.testing.assert_allclose(order(rows), order(expected), rtol=1e-5, atol=1e-4)

    out = tmp_path / "boosted.onnx"
    run_recipe(common, "train_esser2015_large", ["--epochs", "1", "--boost", files[1], "--boost-weight", "0.05",
                                                 "--out", str(out)], data, monkeypatch)
    assert "predictions differing from torch: 0" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--boost: this recipe learns the scale .* boost a patch network instead"):
        run_recipe(common, "train_eedn_groups", ["--epochs", "1", "--boost", files[1]], data, monkeypatch)
    with pytest.raises(SystemExit, match="--boost .*missing.onnx: no such file"):
        run_recipe(common, "train_esser2015_large", ["--epochs", "1", "--boost", str(tmp_path / "missing.onnx")],
                   data, monkeypatch)


def test_recipes_name_the_missing_mnist_files_instead_of_a_traceback(recipes, tmp_path, monkeypatch):
    """``load_data`` turns the loader's error (no files, no network) into an exit with its message."""
    import argparse

    from crossmap import datasets

    _, common = recipes

    def offline(*args, **kwargs):
        raise OSError("no network here")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", offline)
    args = argparse.Namespace(data_dir=str(tmp_path), train_limit=None, seed=0, name="mlp")
    with pytest.raises(SystemExit, match="mlp: MNIST file train-images-idx3-ubyte.* not found in .*no network here"):
        common.load_data(args)


def test_ttfs_recipe_exports_a_sparse_clip_network_that_binarize_ttfs_maps(recipes, sample, tmp_path, monkeypatch):
    """train_ttfs_mlp on the bundled images: the hidden fan-in is limited, the activation is a
    Clip(0, 1), and binarize_ttfs maps the export with its deployed network equal to its model."""
    import importlib

    from crossmap.chip import ChipSpec
    from crossmap.frontend import import_onnx
    from crossmap.passes.binarize.ttfs import BinarizeTtfs
    from crossmap.pipeline import CompileState

    torch, common = recipes
    images, labels = sample
    data = {"xtr": images, "ytr": labels.astype(np.int64), "xte": images[:100], "yte": labels[:100].astype(np.int64)}
    monkeypatch.setattr(common, "load_data", lambda args: data)
    out = tmp_path / "ttfs.onnx"
    monkeypatch.setattr(sys, "argv", ["train_ttfs_mlp.py", "--epochs", "2", "--dense-epochs", "1", "--hidden", "16",
                                      "--fan-in", "40", "--val", "100", "--out", str(out)])
    torch.set_num_threads(1)
    importlib.import_module("train_ttfs_mlp").main()
    model = onnx.load(str(out))
    assert ((weights(model)["fc1.weight"] != 0).sum(axis=0) <= 40).all()
    assert "Clip" in [node.op_type for node in model.graph.node]
    state = CompileState(chip=ChipSpec.truenorth(), network=import_onnx(model), calibration=images[:64])
    BinarizeTtfs(ticks=4, readout_neurons=4).run(state)
    assert state.reports["binarize_ttfs"]["deployed_equals_model"] is True

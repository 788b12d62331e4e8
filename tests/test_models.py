"""The committed model zoo: every ONNX model loads in onnxruntime with the declared shapes,
follows the chip-ready contract, and classifies the bundled MNIST sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from crossmap.datasets import load_sample

ort = pytest.importorskip("onnxruntime")

MODELS = Path(__file__).resolve().parents[1] / "models"
STEP_MODELS = ["esser2015_small", "esser2015_binary", "esser2015_large", "eedn_cnn", "eedn_groups"]
FLOAT_MODELS = ["mlp", "lenet", "esser2015_small_prob"]
ALL = STEP_MODELS + FLOAT_MODELS


def load(name: str) -> onnx.ModelProto:
    """A committed model."""
    path = MODELS / f"{name}.onnx"
    if not path.is_file():
        pytest.fail(f"{path} is missing; train it with python models/train_{name.removesuffix('_prob')}.py")
    return onnx.load(str(path))


def weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers by name."""
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.fixture(scope="module")
def sample():
    return load_sample()


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


@pytest.mark.parametrize("name", ALL)
def test_threshold_input_encoding_comes_first(name):
    graph = load(name).graph
    first, second = graph.node[0], graph.node[1]
    assert first.op_type == "Greater" and first.input[0] == "x"
    assert float(weights(load(name))[first.input[1]]) == 0.5
    assert second.op_type == "Cast" and second.input[0] == first.output[0]
    assert onnx.helper.get_attribute_value(second.attribute[0]) == onnx.TensorProto.FLOAT


@pytest.mark.parametrize("name", STEP_MODELS)
def test_step_models_have_integer_weights_and_a_readout(name):
    model = load(name)
    w = weights(model)
    graph = model.graph
    readout = graph.node[-1]
    assert readout.op_type == "MatMul" and readout.output[0] == "y"
    matrix = w[readout.input[1]]
    assert set(np.unique(matrix)) <= {0.0, 1.0} and (matrix.sum(1) == 1).all()
    layers = [n for n in graph.node if n.op_type in ("Gemm", "Conv")]
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


@pytest.mark.parametrize("name", ["esser2015_small", "esser2015_binary", "esser2015_large", "esser2015_small_prob"])
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


def test_core_shaped_cnn_reads_at_most_a_core_per_filter_with_one_sign_per_axon_type():
    import sys
    sys.path.insert(0, str(MODELS))
    from train_eedn_groups import LAYERS, line_types

    model = load("eedn_groups")
    w = weights(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == len(LAYERS)
    for node, (_, k, stride, pad, groups) in zip(convs, LAYERS):
        weight = w[node.input[1]]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["group"] == groups and weight.shape[2:] == (k, k)
        assert int(np.prod(weight.shape[1:])) <= 256, f"{node.name}: a filter reads at most 256 lines"
        types = line_types(weight.shape[1], k, stride, pad)
        for t in range(4):
            on_type = weight[:, types == t]  # (out, lines of type t)
            assert not ((on_type > 0).any(1) & (on_type < 0).any(1)).any(), "one sign per neuron and axon type"

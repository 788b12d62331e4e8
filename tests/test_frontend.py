"""The ONNX frontend on small inline models: every import is compared with onnxruntime running
the original model (within 1e-4 of the output's scale), and the structure of the lowered network
(populations, activations, folded layers) is checked where it matters."""

import numpy as np
import pytest
import scipy.sparse as sp
from onnx import TensorProto, helper

from crossmap.frontend import compare_with_onnxruntime, import_onnx
from crossmap.ir import Network

from crossmap.testing import onnx_models as om

mk = helper.make_node
RNG = np.random.default_rng(1234)
TOL = 1e-4


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def check(model, x=None, batch=5, kind="normal") -> Network:
    """Import ``model`` and compare with onnxruntime on ``x`` (or random inputs)."""
    net = import_onnx(model)
    if x is None:
        x = om.random_inputs(model, batch, seed=int(RNG.integers(1 << 30)), kind=kind)
    result = compare_with_onnxruntime(model, net, x)
    assert result["max_rel_error"] <= TOL, result
    return net


def layer_kinds(net):
    return [(p.activation, p.reduce) for p in net.layers]


# ---------------------------------------------------------------- whole networks

def test_mlp_matches_onnxruntime_and_has_one_population_per_layer():
    model = om.mlp((20, 16, 12, 5))
    net = check(model, batch=32)
    assert [p.name for p in net.layers] == ["fc0", "fc1", "fc2"]
    assert layer_kinds(net) == [("relu", "sum"), ("relu", "sum"), ("identity", "sum")]
    assert net.output == "fc2" and net.population("fc0").shape == (16,)
    assert net.projections[0].weight.shape == (16, 20)
    assert net.metadata["batch"] == "dynamic" and net.metadata["input_shape"] == [20]
    assert net.metadata["input_name"] == "x" and net.metadata["output_name"] == "y"
    assert len(net.metadata["sha256"]) == 64 and net.metadata["opset"] == 17


def test_softmax_at_the_output_is_dropped_and_recorded():
    model = om.mlp((12, 8, 4), softmax=True)
    net = check(model, batch=16)
    assert net.metadata["output_ops"] == [{"op": "Softmax", "name": "softmax"}]
    x = om.random_inputs(model, 16, seed=3)
    expected = om.run_onnxruntime(model, x)
    np.testing.assert_array_equal(net.evaluate(x).argmax(axis=1), expected.argmax(axis=1))


def test_lenet5_with_max_pooling_on_a_few_hundred_samples():
    model = om.lenet5()
    x = om.random_inputs(model, 256, seed=5, kind="uniform")
    net = check(model, x)
    assert [p.name for p in net.layers] == ["conv1", "pool1", "conv2", "pool2", "fc1", "fc2", "fc3"]
    assert layer_kinds(net)[:2] == [("relu", "sum"), ("identity", "max")]
    assert net.population("conv1").shape == (6, 28, 28) and net.population("pool2").shape == (16, 5, 5)
    assert net.fan_in("conv2").max() == 150 and net.fan_in("fc1").max() == 400
    assert set(net.fan_in("pool1")) == {4}


def test_lenet5_on_real_digits():
    from crossmap.datasets import load_sample

    images, _ = load_sample()  # the bundled 300-image MNIST sample
    for pool in ("MaxPool", "AveragePool"):
        model = om.lenet5(seed=11, pool=pool, softmax=True)
        check(model, images.astype(np.float32))


def test_lenet5_with_average_pooling():
    model = om.lenet5(pool="AveragePool", softmax=True, batch=1)
    net = check(model, batch=1, kind="uniform")
    assert net.population("pool1").reduce == "sum"
    assert np.allclose(net.incoming("pool1")[0].weight.data, 0.25)


def test_binary_mlp_steps_are_exact():
    model = om.binary_mlp()
    x = om.random_inputs(model, 64, seed=2, kind="binary")
    net = import_onnx(model)
    assert [p.activation for p in net.layers] == ["step", "step"]
    assert all(p.params == {"threshold": 0.0, "inclusive": False} for p in net.layers)
    for proj in net.projections:
        assert set(np.unique(proj.weight.data)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(net.evaluate(x), om.run_onnxruntime(model, x))


def test_binary_mlp_with_linear_output():
    check(om.binary_mlp((16, 8, 4), output_step=False), kind="binary", batch=16)


# ---------------------------------------------------------------- Gemm and MatMul

@pytest.mark.parametrize("attrs, c_shape", [
    ({}, (6,)),
    ({"transB": 1}, (1, 6)),
    ({"alpha": 0.5, "beta": 2.0}, (6,)),
    ({"alpha": -1.5, "transB": 1}, ()),
    ({"beta": 0.25}, None),
])
def test_gemm_attributes(attrs, c_shape):
    w = rand(6, 4) if attrs.get("transB") else rand(4, 6)
    inits = {"w": w}
    inputs = ["x", "w"]
    if c_shape is not None:
        inits["c"] = rand(*c_shape) if c_shape else np.array(0.7, np.float32)
        inputs.append("c")
    model = om.make_model([mk("Gemm", inputs, ["y"], **attrs)], ["N", 4], None, inits)
    check(model)


def test_gemm_bias_with_a_row_per_sample_of_a_fixed_batch():
    c = np.tile(rand(1, 3), (2, 1))  # (M, N) with equal rows
    model = om.make_model([mk("Gemm", ["x", "w", "c"], ["y"])], [2, 4], None, {"w": rand(4, 3), "c": c})
    check(model, batch=2)


def test_matmul_plus_bias_is_one_projection():
    model = om.make_model([mk("MatMul", ["x", "w"], ["m"]), mk("Add", ["m", "b"], ["y"])], ["N", 5], None,
                          {"w": rand(5, 3), "b": rand(3)})
    net = check(model)
    assert len(net.layers) == 1 and len(net.projections) == 1


def test_matmul_on_the_last_axis_of_a_3d_sample_and_constant_on_the_left():
    model = om.make_model([mk("MatMul", ["x", "w"], ["a"]), mk("MatMul", ["v", "a"], ["y"])], ["N", 3, 4], None,
                          {"w": rand(4, 2), "v": rand(5, 3)})
    net = check(model)
    assert net.population(net.output).shape == (5, 2)


# ---------------------------------------------------------------- convolution

@pytest.mark.parametrize("shape, w_shape, attrs", [
    ((3, 7, 6), (4, 3, 3, 3), {}),
    ((3, 7, 6), (4, 3, 3, 2), {"strides": [2, 1], "pads": [1, 0, 2, 1]}),
    ((3, 9, 9), (2, 3, 3, 3), {"dilations": [2, 2], "pads": [2, 2, 2, 2]}),
    ((3, 7, 6), (4, 3, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((3, 7, 6), (4, 3, 2, 2), {"auto_pad": "SAME_LOWER"}),
    ((3, 7, 6), (4, 3, 3, 3), {"auto_pad": "VALID", "strides": [2, 3]}),
    ((4, 6, 6), (6, 2, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),
    ((4, 6, 6), (4, 1, 3, 3), {"group": 4}),  # depthwise
    ((4, 6, 6), (8, 1, 3, 3), {"group": 4, "strides": [2, 2]}),  # depthwise with multiplier
    ((2, 11), (3, 2, 4), {"pads": [1, 2], "strides": [2]}),  # 1-d
    ((2, 4, 5, 4), (3, 2, 2, 3, 2), {"pads": [1, 0, 1, 0, 1, 1]}),  # 3-d
])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_matches_onnxruntime(shape, w_shape, attrs, bias):
    inits = {"w": rand(*w_shape)}
    inputs = ["x", "w"]
    if bias:
        inits["b"] = rand(w_shape[0])
        inputs.append("b")
    model = om.make_model([mk("Conv", inputs, ["y"], **attrs)], ["N", *shape], None, inits)
    net = check(model)
    assert net.projections[0].weight.nnz <= np.prod(w_shape) * np.prod(net.population(net.output).shape[1:])


def test_depthwise_conv_connects_each_channel_to_itself_only():
    model = om.make_model([mk("Conv", ["x", "w"], ["y"], group=3)], ["N", 3, 5, 5], None, {"w": rand(3, 1, 3, 3)})
    net = check(model)
    w = net.projections[0].weight.tocoo()
    assert np.array_equal(w.row // 9, w.col // 25)  # output channel == input channel


def test_batchnorm_after_conv_is_folded_into_the_conv():
    c = 4
    inits = {"w": rand(c, 2, 3, 3), "b": rand(c), "scale": rand(c), "shift": rand(c), "mean": rand(c),
             "var": np.abs(rand(c)) + 0.5}
    nodes = [mk("Conv", ["x", "w", "b"], ["c"], name="conv"),
             mk("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["n"], name="bn", epsilon=1e-3),
             mk("Relu", ["n"], ["y"], name="relu")]
    net = check(om.make_model(nodes, ["N", 2, 6, 6], None, inits))
    assert [p.name for p in net.layers] == ["conv"] and net.layers[0].activation == "relu"
    assert net.layers[0].source_nodes == ["conv", "bn", "relu"]


def test_input_normalization_and_batchnorm_before_a_conv_fold_into_it():
    inits = {"mean": np.array([0.5], np.float32), "std": np.array([0.25], np.float32), "s": rand(1), "t": rand(1),
             "m": rand(1), "v": np.ones(1, np.float32), "w": rand(3, 1, 3, 3)}
    nodes = [mk("Sub", ["x", "mean"], ["a"]), mk("Div", ["a", "std"], ["b"]),
             mk("BatchNormalization", ["b", "s", "t", "m", "v"], ["c"]),
             mk("Conv", ["c", "w"], ["d"], pads=[1, 1, 1, 1], name="conv"), mk("Tanh", ["d"], ["y"])]
    net = check(om.make_model(nodes, ["N", 1, 5, 5], None, inits), kind="uniform")
    assert len(net.layers) == 1 and net.output == "conv"


def test_conv_then_conv_without_activation_keeps_two_layers():
    nodes = [mk("Conv", ["x", "w1"], ["a"], name="c1"), mk("Conv", ["a", "w2"], ["y"], name="c2")]
    net = check(om.make_model(nodes, ["N", 1, 8, 8], None, {"w1": rand(2, 1, 3, 3), "w2": rand(2, 2, 3, 3)}))
    assert [p.name for p in net.layers] == ["c1", "c2"]
    assert net.fan_in("c2").max() == 18  # not the 5x5 receptive field of the composed convolutions


# ---------------------------------------------------------------- pooling

@pytest.mark.parametrize("op, attrs", [
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [3, 2], "strides": [2, 2], "ceil_mode": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1,
                     "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("MaxPool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ("MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 2]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("MaxPool", {"kernel_shape": [2, 3], "auto_pad": "SAME_LOWER"}),
    ("GlobalAveragePool", {}),
    ("GlobalMaxPool", {}),
])
def test_pooling_matches_onnxruntime(op, attrs):
    model = om.make_model([mk(op, ["x"], ["y"], name="pool", **attrs)], ["N", 3, 7, 8], None)
    net = check(model)
    assert net.population("pool").reduce == ("max" if "Max" in op else "sum")


def test_conv_maxpool_relu_keeps_the_relu_on_the_pool_population():
    nodes = [mk("Conv", ["x", "w", "b"], ["c"], name="conv"),
             mk("MaxPool", ["c"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             mk("Relu", ["p"], ["y"], name="relu")]
    net = check(om.make_model(nodes, ["N", 1, 6, 6], None, {"w": rand(2, 1, 3, 3), "b": rand(2)}))
    assert [(p.name, p.activation, p.reduce) for p in net.layers] == [("conv", "identity", "sum"),
                                                                       ("pool", "relu", "max")]


def test_maxpool_after_batchnorm_with_negative_scale_stays_exact():
    inits = {"w": rand(2, 1, 3, 3), "s": np.array([-1.5, 2.0], np.float32), "t": rand(2), "m": rand(2),
             "v": np.ones(2, np.float32)}
    nodes = [mk("Conv", ["x", "w"], ["c"]), mk("Relu", ["c"], ["r"]),
             mk("BatchNormalization", ["r", "s", "t", "m", "v"], ["n"]),
             mk("MaxPool", ["n"], ["y"], kernel_shape=[2, 2])]
    check(om.make_model(nodes, ["N", 1, 6, 6], None, inits))


# ---------------------------------------------------------------- activations

@pytest.mark.parametrize("op, attrs, kind", [
    ("Relu", {}, "relu"), ("LeakyRelu", {"alpha": 0.1}, "leaky_relu"), ("Sigmoid", {}, "sigmoid"),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, "hard_sigmoid"), ("Tanh", {}, "tanh"), ("Sign", {}, "sign"),
])
def test_activations(op, attrs, kind):
    nodes = [mk("Gemm", ["x", "w", "b"], ["g"], name="fc"), mk(op, ["g"], ["y"], **attrs)]
    net = check(om.make_model(nodes, ["N", 6], None, {"w": rand(6, 5), "b": rand(5)}))
    assert [p.activation for p in net.layers] == [kind]


@pytest.mark.parametrize("bounds", [(0.0, 6.0), (-0.5, None), (None, 0.3)])
def test_clip(bounds):
    inits = {"w": rand(6, 5)}
    names = []
    for key, value in zip(("lo", "hi"), bounds):
        if value is not None:
            inits[key] = np.array(value, np.float32)
        names.append(key if value is not None else "")
    nodes = [mk("MatMul", ["x", "w"], ["g"]), mk("Clip", ["g", *names], ["y"])]
    net = check(om.make_model(nodes, ["N", 6], None, inits))
    assert net.layers[0].activation == "clip"


@pytest.mark.parametrize("slope_shape", [(1,), (3, 1, 1)])
def test_prelu(slope_shape):
    model = om.make_model([mk("PRelu", ["x", "s"], ["y"])], ["N", 3, 4, 4], None, {"s": rand(*slope_shape)})
    net = check(model)
    alpha = net.layers[0].params["alpha"]
    assert np.ndim(alpha) == (0 if slope_shape == (1,) else 1)


@pytest.mark.parametrize("op, inclusive", [("Greater", False), ("GreaterOrEqual", True), ("Less", False),
                                            ("LessOrEqual", True)])
def test_comparison_and_cast_is_a_step(op, inclusive):
    nodes = [mk("Gemm", ["x", "w"], ["g"], name="fc"), mk(op, ["g", "t"], ["c"]),
             mk("Cast", ["c"], ["y"], to=TensorProto.FLOAT)]
    # integer weights and inputs put some sums exactly on the threshold: >= and > must differ there
    w = RNG.integers(-2, 3, size=(8, 6)).astype(np.float32)
    model = om.make_model(nodes, ["N", 8], None, {"w": w, "t": np.array(1.0, np.float32)})
    x = RNG.integers(0, 2, size=(64, 8)).astype(np.float32)
    net = import_onnx(model)
    np.testing.assert_array_equal(net.evaluate(x), om.run_onnxruntime(model, x))
    assert net.layers[0].activation == "step"


def test_step_with_constant_on_the_left_and_per_neuron_thresholds():
    t = np.arange(5, dtype=np.float32) - 2
    nodes = [mk("Gemm", ["x", "w"], ["g"]), mk("Greater", ["t", "g"], ["c"]), mk("Not", ["c"], ["n"]),
             mk("Where", ["n", "hi", "lo"], ["y"])]
    inits = {"w": RNG.integers(-2, 3, size=(4, 5)).astype(np.float32), "t": t,
             "hi": np.array(1.0, np.float32), "lo": np.array(-1.0, np.float32)}
    model = om.make_model(nodes, ["N", 4], None, inits)
    x = RNG.integers(0, 2, size=(64, 4)).astype(np.float32)
    np.testing.assert_array_equal(import_onnx(model).evaluate(x), om.run_onnxruntime(model, x))


# ---------------------------------------------------------------- arithmetic with constants

def test_scaling_and_shifting_fold_into_the_projection():
    nodes = [mk("Mul", ["two", "x"], ["a"]), mk("Sub", ["one", "a"], ["b"]), mk("Neg", ["b"], ["c"]),
             mk("MatMul", ["c", "w"], ["d"], name="fc"), mk("Div", ["d", "k"], ["e"]),
             mk("Add", ["e", "bias"], ["f"]), mk("Relu", ["f"], ["y"])]
    inits = {"two": np.array(2.0, np.float32), "one": rand(5), "w": rand(5, 4), "k": rand(4) + 3,
             "bias": rand(1, 4)}
    net = check(om.make_model(nodes, ["N", 5], None, inits))
    assert len(net.layers) == 1 and net.layers[0].name == "fc"


def test_residual_add_of_two_branches():
    nodes = [mk("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], name="c1"), mk("Relu", ["a"], ["r"]),
             mk("Conv", ["r", "w2"], ["b"], pads=[1, 1, 1, 1], name="c2"), mk("Add", ["b", "r"], ["s"]),
             mk("Relu", ["s"], ["y"])]
    net = check(om.make_model(nodes, ["N", 2, 5, 5], None, {"w1": rand(2, 2, 3, 3), "w2": rand(2, 2, 3, 3)}))
    assert [p.name for p in net.layers] == ["c1", "c2"]
    assert net.fan_in("c2").max() == 18  # the skip connection joins the conv's own synapses


def test_add_with_broadcast_of_a_network_tensor():
    nodes = [mk("ReduceMean", ["x", "ax"], ["m"], keepdims=1), mk("Sub", ["x", "m"], ["d"]),
             mk("Relu", ["d"], ["y"])]
    check(om.make_model(nodes, ["N", 3, 4], None, {"ax": np.array([2], np.int64)}, opset=18))


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean"])
def test_reductions_over_feature_axes(op):
    nodes = [mk(op, ["x", "ax"], ["y"], keepdims=0)]
    check(om.make_model(nodes, ["N", 3, 4, 5], None, {"ax": np.array([1, -1], np.int64)}, opset=18))


# ---------------------------------------------------------------- moving elements

def test_flatten_reshape_squeeze_unsqueeze_are_free():
    nodes = [mk("Flatten", ["x"], ["f"], axis=1), mk("Reshape", ["f", "s"], ["r"]),
             mk("Unsqueeze", ["r", "ax"], ["u"]), mk("Squeeze", ["u", "ax"], ["q"]), mk("Identity", ["q"], ["i"]),
             mk("Dropout", ["i"], ["d"]), mk("Gemm", ["d", "w"], ["y"], transB=1, name="fc")]
    inits = {"s": np.array([0, -1], np.int64), "ax": np.array([1], np.int64), "w": rand(3, 24)}
    net = check(om.make_model(nodes, ["N", 2, 3, 4], None, inits))
    assert len(net.layers) == 1 and net.projections[0].source == "input"


def test_transpose_relabels_neurons():
    nodes = [mk("Conv", ["x", "w"], ["c"]), mk("Relu", ["c"], ["r"]), mk("Transpose", ["r"], ["t"], perm=[0, 2, 3, 1]),
             mk("Flatten", ["t"], ["f"]), mk("Gemm", ["f", "g"], ["y"], transB=1)]
    net = check(om.make_model(nodes, ["N", 1, 5, 5], None, {"w": rand(3, 1, 2, 2), "g": rand(4, 48)}))
    assert len(net.layers) == 2


def test_transpose_at_the_output_is_fused_into_the_last_population():
    nodes = [mk("Conv", ["x", "w"], ["c"], name="conv"), mk("Sigmoid", ["c"], ["s"]),
             mk("Transpose", ["s"], ["y"], perm=[0, 2, 1])]
    net = check(om.make_model(nodes, ["N", 2, 6], None, {"w": rand(3, 2, 2)}))
    assert [p.name for p in net.layers] == ["conv", "Transpose_2"]  # a sigmoid cannot absorb the permutation


def test_concat_of_two_branches_slice_split_and_pad():
    nodes = [mk("Conv", ["x", "w1"], ["a"], name="c1"), mk("Relu", ["a"], ["ra"]),
             mk("Conv", ["x", "w2"], ["b"], name="c2"), mk("Sigmoid", ["b"], ["sb"]),
             mk("Concat", ["ra", "sb"], ["cat"], axis=1),
             mk("Pad", ["cat", "pads", "pv"], ["p"], mode="constant"),
             mk("Slice", ["p", "st", "en", "axs"], ["sl"]),
             mk("Split", ["sl"], ["s1", "s2"], axis=1, num_outputs=2),
             mk("Concat", ["s2", "s1"], ["c2cat"], axis=1),
             mk("Conv", ["c2cat", "w3"], ["y"], name="c3")]
    inits = {"w1": rand(2, 1, 3, 3), "w2": rand(2, 1, 3, 3), "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
             "pv": np.array(0.5, np.float32), "st": np.array([1], np.int64), "en": np.array([5], np.int64),
             "axs": np.array([2], np.int64), "w3": rand(1, 4, 2, 2)}
    model = om.make_model(nodes, ["N", 1, 6, 6], None, inits, opset=18)
    net = check(model)
    assert [p.name for p in net.layers] == ["c1", "c2", "c3"]
    assert {p.source for p in net.incoming("c3")} == {"c1", "c2"}


def test_dynamic_batch_reshape_through_shape_ops():
    nodes = [mk("Shape", ["x"], ["sh"]), mk("Gather", ["sh", "zero"], ["n"], axis=0),
             mk("Unsqueeze", ["n", "ax"], ["n1"]), mk("Concat", ["n1", "minus1"], ["target"], axis=0),
             mk("Reshape", ["x", "target"], ["r"]), mk("Gemm", ["r", "w"], ["y"], transB=1)]
    inits = {"zero": np.array(0, np.int64), "ax": np.array([0], np.int64), "minus1": np.array([-1], np.int64),
             "w": rand(2, 12)}
    net = check(om.make_model(nodes, ["batch", 3, 4], None, inits))
    assert net.metadata["folded_nodes"] >= 1


def test_static_batch_of_one():
    model = om.mlp((6, 4, 3), batch=1)
    net = check(model, batch=1)
    assert net.metadata["batch"] == 1
    assert net.evaluate(np.zeros((7, 6))).shape == (7, 3)  # the network itself takes any batch


def test_constant_subgraphs_are_folded():
    nodes = [mk("Constant", [], ["k"], value=helper.make_tensor("k", TensorProto.FLOAT, [4, 3], rand(12).tolist())),
             mk("Transpose", ["k"], ["kt"]), mk("Mul", ["kt", "two"], ["w"]), mk("MatMul", ["x", "w"], ["y"])]
    net = check(om.make_model(nodes, ["N", 3], None, {"two": np.array(2.0, np.float32)}))
    assert net.metadata["folded_nodes"] == 3


def test_older_opsets_are_converted():
    model = om.mlp((6, 5, 3), opset=9)
    net = check(model)
    assert net.metadata["original_opset"] == 9 and net.metadata["opset"] == 17


def test_double_input_model():
    nodes = [mk("Gemm", ["x", "w"], ["y"])]
    model = om.make_model(nodes, ["N", 3], None, {"w": rand(3, 2).astype(np.float64)},
                          input_type=TensorProto.DOUBLE, output_type=TensorProto.DOUBLE)
    net = import_onnx(model)
    x = rand(4, 3).astype(np.float64)
    np.testing.assert_allclose(net.evaluate(x), om.run_onnxruntime(model, x), rtol=1e-12)
    assert net.metadata["input_dtype"] == "float64"


def test_import_from_path_and_bytes_agree(tmp_path):
    model = om.lenet5(seed=3)
    path = tmp_path / "lenet.onnx"
    path.write_bytes(model.SerializeToString())
    a, b = import_onnx(str(path)), import_onnx(path.read_bytes())
    assert a.metadata["sha256"] == b.metadata["sha256"]
    assert a.metadata["source"] == str(path)
    x = om.random_inputs(model, 4, kind="uniform")
    np.testing.assert_array_equal(a.evaluate(x), b.evaluate(x))


def coo_conv_matrix(w, groups, out_pos, tap, in_pos, n_in, n_out):
    """The convolution matrix from (row, column, value) triples, as scipy canonicalizes them."""
    out_channels, per_group, _ = w.shape
    m = np.arange(out_channels)[:, None, None]
    c_local = np.arange(per_group)[None, :, None]
    c_in = (m // (out_channels // groups)) * per_group + c_local
    rows = np.broadcast_to(m * n_out + out_pos[None, None, :], (out_channels, per_group, out_pos.size))
    cols = np.broadcast_to(c_in * n_in + in_pos[None, None, :], rows.shape)
    data = w[m, c_local, tap[None, None, :]]
    return sp.csr_matrix((data.reshape(-1), (rows.reshape(-1), cols.reshape(-1))),
                         shape=(out_channels * n_out, per_group * groups * n_in))


@pytest.mark.parametrize("seed", range(40))
def test_convolution_matrices_are_built_in_canonical_order(seed):
    from crossmap.frontend.ops_linear import conv_matrix
    from crossmap.frontend.windows import Window

    rng = np.random.default_rng(seed)
    dims = int(rng.integers(1, 4))
    groups, per_group = int(rng.choice([1, 2, 3])), int(rng.integers(1, 4))
    out_channels = groups * int(rng.integers(1, 4))
    spatial = tuple(int(v) for v in rng.integers(3, 7, dims))
    kernel = tuple(int(v) for v in rng.integers(1, 4, dims))
    attrs = {"strides": [int(v) for v in rng.integers(1, 3, dims)], "dilations": [int(v) for v in rng.integers(1, 2, dims)],
             "pads": [int(v) for v in rng.integers(0, 3, 2 * dims)]}
    window = Window.from_attributes(spatial, kernel, attrs)
    out_pos, tap, in_pos, _ = window.taps()
    keep = in_pos >= 0
    w = rng.normal(size=(out_channels, per_group, int(np.prod(kernel))))
    w[rng.random(w.shape) < 0.2] = 0.0  # explicit zeros stay, as in the triples
    args = (w, groups, out_pos[keep], tap[keep], in_pos[keep], int(np.prod(spatial)), int(np.prod(window.out_shape)))
    fast, plain = conv_matrix(*args), coo_conv_matrix(*args)
    assert fast.shape == plain.shape
    for name in ("indptr", "indices", "data"):
        assert np.array_equal(getattr(fast, name), getattr(plain, name)), name
        assert getattr(fast, name).dtype == getattr(plain, name).dtype, name

"""Models the frontend must refuse, each with one clear CrossmapError: broken files, interfaces
outside the single-float-input contract, and unsupported nodes (all of them listed at once)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from crossmap.errors import CrossmapError, ModelError, UnsupportedModelError
from crossmap.frontend import SUPPORTED_OPS, import_onnx

from crossmap.testing import onnx_models as om

mk = helper.make_node


def rand(*shape):
    return np.random.default_rng(7).standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------- files

def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        import_onnx(tmp_path / "nope.onnx")


def test_file_that_is_not_onnx(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\xff\xfe this is a text file, not a protobuf \x00\x01")
    with pytest.raises(ModelError, match="do not parse as an ONNX model.*truncated"):
        import_onnx(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelError, match="no ONNX graph"):
        import_onnx(path)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_file(tmp_path, keep):
    data = om.lenet5().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelError, match="model '.*cut.onnx'"):
        import_onnx(path)


def test_missing_external_data(tmp_path):
    model = om.mlp((300, 40, 4))
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
              size_threshold=0)
    assert import_onnx(path).population("fc0").shape == (40,)  # loads while the data file is there
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelError, match="tensor 'fc0.weight' keeps its data in external file 'weights.bin'"):
        import_onnx(path)


def test_checker_failure_is_a_model_error():
    model = om.mlp((4, 3))
    model.graph.node[0].input[1] = "no_such_tensor"
    with pytest.raises(ModelError, match="ONNX checker rejects it"):
        import_onnx(model)


def test_inconsistent_shapes_fail_in_shape_inference():
    model = om.make_model([mk("Gemm", ["x", "w"], ["y"])], ["N", 4], ["N", 3], {"w": rand(4, 3)})
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(rand(5, 3), "w"))
    with pytest.raises(ModelError, match="shape inference fails"):
        import_onnx(model)


def test_wrong_argument_type():
    with pytest.raises(ModelError, match="needed a path"):
        import_onnx(42)


# ---------------------------------------------------------------- interface

def test_integer_input():
    model = om.make_model([mk("Cast", ["x"], ["y"], to=TensorProto.FLOAT)], ["N", 3], ["N", 3],
                          input_type=TensorProto.INT64)
    with pytest.raises(ModelError, match="input 'x' has element type INT64.*float"):
        import_onnx(model)


def test_several_inputs():
    graph = helper.make_graph([mk("Add", ["a", "b"], ["y"])], "g",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3]) for n in "ab"],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelError, match=r"has 2 inputs \['a', 'b'\].*exactly 1"):
        import_onnx(model)


def test_several_outputs():
    graph = helper.make_graph([mk("Relu", ["x"], ["y"]), mk("Neg", ["x"], ["z"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3]) for n in "yz"])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.warns(UserWarning, match=r"has 2 outputs \['y', 'z'\]; compiling 'y'"):
        assert import_onnx(model).metadata["output_name"] == "y"
    assert import_onnx(model, output="z").metadata["output_name"] == "z"
    with pytest.raises(ModelError, match=r"no output 'w'; its outputs: \['y', 'z'\]"):
        import_onnx(model, output="w")


def test_symbolic_feature_size_needs_input_shape():
    model = om.make_model([mk("Relu", ["x"], ["y"])], ["N", 3, "H"], None)
    with pytest.raises(ModelError, match="axis 2 has no fixed size.*input_shape"):
        import_onnx(model)
    net = import_onnx(model, input_shape=(3, 5))
    assert net.input.shape == (3, 5)
    with pytest.raises(ModelError, match=r"input_shape \(4, 5\) does not fit"):
        import_onnx(model, input_shape=(4, 5))


def test_input_without_batch_axis():
    model = om.make_model([mk("Relu", ["x"], ["y"])], [7], None)
    with pytest.raises(ModelError, match="rank 1.*batch"):
        import_onnx(model)


def test_output_that_does_not_depend_on_the_input():
    model = om.make_model([mk("Shape", ["x"], ["s"]), mk("Cast", ["s"], ["y"], to=TensorProto.FLOAT)],
                          [2, 3], None)
    with pytest.raises(ModelError, match="does not depend on the input"):
        import_onnx(model)


# ---------------------------------------------------------------- unsupported nodes

def test_every_unsupported_node_is_listed_in_one_error():
    nodes = [mk("Gemm", ["x", "w"], ["a"], name="fc"), mk("Exp", ["a"], ["e"], name="exp"),
             mk("Softmax", ["x"], ["s"], name="inner_softmax"), mk("Gemm", ["s", "w"], ["b"], name="fc_b"),
             mk("Gemm", ["x", "w"], ["c"], name="fc_c"), mk("Mul", ["a", "c"], ["m"], name="product"),
             mk("Foo", ["m"], ["f"], name="custom", domain="com.example"),
             mk("Add", ["e", "f"], ["t"], name="sum"), mk("Add", ["t", "b"], ["y"], name="sum2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              initializer=[onnx.numpy_helper.from_array(rand(4, 4), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    with pytest.raises(UnsupportedModelError) as info:
        import_onnx(model)
    text = str(info.value)
    found = {(n["name"], n["op"], n["domain"]) for n in info.value.nodes}
    assert found == {("exp", "Exp", "ai.onnx"), ("inner_softmax", "Softmax", "ai.onnx"),
                     ("product", "Mul", "ai.onnx"), ("custom", "Foo", "com.example")}
    assert "node 'exp': op Exp (domain ai.onnx, opset 17)" in text
    assert "node 'custom': op Foo (domain com.example, opset 1)" in text
    assert "not linear" in text and "only at the output" in text
    assert "supported ops: " + ", ".join(SUPPORTED_OPS) in text
    assert "(3 node(s) of supported ops" in text  # fc_b, sum, sum2 read unsupported outputs
    assert isinstance(info.value, ModelError) and isinstance(info.value, CrossmapError)


def test_softmax_over_part_of_the_sample_at_the_output():
    model = om.make_model([mk("Softmax", ["x"], ["y"], axis=2, name="sm")], ["N", 3, 4], None)
    with pytest.raises(UnsupportedModelError, match="over axis 2 of a sample of shape \\(3, 4\\) treats parts"):
        import_onnx(model)


def test_softmax_over_the_batch_axis():
    model = om.make_model([mk("Gemm", ["x", "w"], ["g"]), mk("Softmax", ["g"], ["y"], axis=0)], [4, 3], None,
                          {"w": rand(3, 2)})
    with pytest.raises(UnsupportedModelError, match="axis 0 mixes the samples"):
        import_onnx(model)


def test_argmax_at_the_output_is_dropped():
    model = om.make_model([mk("Gemm", ["x", "w"], ["g"]), mk("ArgMax", ["g"], ["y"], axis=1, keepdims=0)], ["N", 3],
                          None, {"w": rand(3, 5)}, output_type=TensorProto.INT64)
    net = import_onnx(model)
    x = rand(9, 3)
    np.testing.assert_array_equal(net.apply_output_ops(net.evaluate(x)), om.run_onnxruntime(model, x))


def test_gemm_with_transposed_input():
    model = om.make_model([mk("Gemm", ["x", "w"], ["y"], transA=1)], [3, 4], None, {"w": rand(3, 2)})
    with pytest.raises(UnsupportedModelError, match="transA=1 puts the batch on axis 1"):
        import_onnx(model)


def test_reshape_that_mixes_samples():
    model = om.make_model([mk("Reshape", ["x", "s"], ["r"]), mk("Relu", ["r"], ["y"])], ["N", 4], None,
                          {"s": np.array([1, -1], np.int64)})
    with pytest.raises(UnsupportedModelError, match="op Reshape .*mixes samples"):
        import_onnx(model)


def test_transpose_that_moves_the_batch_axis():
    model = om.make_model([mk("Transpose", ["x"], ["t"], perm=[1, 0]), mk("Relu", ["t"], ["y"])], [2, 3], None)
    with pytest.raises(UnsupportedModelError, match="axis 0 no longer holds the samples"):
        import_onnx(model)


def test_weights_that_depend_on_the_input():
    model = om.make_model([mk("MatMul", ["x", "x"], ["y"])], ["N", 3, 3], None)
    with pytest.raises(UnsupportedModelError, match="both depend on the network input"):
        import_onnx(model)


def test_comparison_used_as_a_number():
    model = om.make_model([mk("Greater", ["x", "t"], ["g"]), mk("Not", ["g"], ["n"]),
                           mk("Cast", ["n"], ["c"], to=TensorProto.INT32), mk("Cast", ["c"], ["y"], to=TensorProto.FLOAT)],
                          ["N", 3], None, {"t": np.array(0.0, np.float32)})
    with pytest.raises(UnsupportedModelError, match="Cast to INT32"):
        import_onnx(model)


def test_training_mode_batchnorm():
    inits = {k: np.ones(2, np.float32) for k in ("s", "b", "m", "v")}
    node = mk("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"], training_mode=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 3])],
                              initializer=[onnx.numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedModelError, match="training_mode=1"):
        import_onnx(model)


def test_constant_that_differs_between_samples():
    model = om.make_model([mk("Add", ["x", "c"], ["y"])], [2, 3], None, {"c": rand(2, 3)})
    with pytest.raises(UnsupportedModelError, match="differs between the samples"):
        import_onnx(model)


def test_folding_a_huge_constant_is_refused_before_it_is_made():
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [2**16, 2**16])
    nodes = [helper.make_node("Constant", [], ["s"], value=shape),
             helper.make_node("ConstantOfShape", ["s"], ["big"]),
             helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
             helper.make_node("Add", ["x", "total"], ["y"])]
    graph = helper.make_graph(nodes, "huge", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(UnsupportedModelError, match=r"ConstantOfShape.*4,294,967,296 elements"):
        import_onnx(model)

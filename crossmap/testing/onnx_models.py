"""Small ONNX models built inline for the tests (no files, no downloads).

Every builder returns an ``onnx.ModelProto`` that passes ``onnx.checker`` and runs in onnxruntime.
Weights come from a seeded numpy generator, so a builder called twice gives the same model.

- ``mlp``: Gemm + Relu layers, a linear output layer, optional Softmax.
- ``lenet5``: the classic LeNet-5 on (1, 28, 28) inputs (conv-relu-pool twice, three Gemm layers).
- ``binary_mlp``: a "chip-ready" network: integer ternary weights, integer biases, and step
  activations written the way torch exports ``(x > 0).float()`` (Greater against a constant, then
  Cast to float). Inputs are meant to be binary (0/1).
- ``make_model`` / ``node_model``: wrap hand-written nodes into a checked model.
- ``random_inputs``: float32 inputs of a model's input shape.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def make_model(nodes: Sequence[onnx.NodeProto], input_shape: Sequence[Any], output_shape: Sequence[Any] | None,
               initializers: dict[str, np.ndarray] | None = None, opset: int = OPSET,
               input_name: str = "x", output_name: str = "y", input_type: int = TensorProto.FLOAT,
               output_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """A checked model from ``nodes`` with one input and one output; ``initializers`` maps names
    to numpy arrays. Shapes may hold strings (symbolic dims) or None (unknown); ``output_shape=None`` lets
    shape inference fill in the output."""
    inits = [numpy_helper.from_array(np.asarray(v), name=k) for k, v in (initializers or {}).items()]
    output = (helper.make_tensor_value_info(output_name, output_type, list(output_shape))
              if output_shape is not None else helper.make_empty_tensor_value_info(output_name))
    graph = helper.make_graph(
        list(nodes), "crossmap_test",
        [helper.make_tensor_value_info(input_name, input_type, list(input_shape))], [output],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="crossmap-tests")
    model.ir_version = 8
    if output_shape is None:  # let shape inference fill in the output's type
        model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


def node_model(op: str, input_shape: Sequence[Any], initializers: dict[str, np.ndarray] | None = None,
               extra_inputs: Sequence[str] = (), opset: int = OPSET, **attrs: Any) -> onnx.ModelProto:
    """A one-node model ``y = op(x, *extra_inputs)`` with attributes ``attrs``."""
    node = helper.make_node(op, ["x", *extra_inputs], ["y"], name=f"{op.lower()}0", **attrs)
    return make_model([node], input_shape, None, initializers, opset=opset)


def _he(rng: np.random.Generator, fan_in: int, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def mlp(sizes: Sequence[int] = (784, 128, 10), seed: int = 0, activation: str = "Relu", softmax: bool = False,
        batch: Any = "N", opset: int = OPSET) -> onnx.ModelProto:
    """A multilayer perceptron: Gemm(transB=1) + ``activation`` per hidden layer, a linear output
    layer, and a Softmax at the end when asked. Input (batch, sizes[0]), output (batch, sizes[-1])."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], {}
    current = "x"
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        inits[f"fc{i}.weight"] = _he(rng, n_in, (n_out, n_in))
        inits[f"fc{i}.bias"] = (0.1 * rng.standard_normal(n_out)).astype(np.float32)
        last = i == len(sizes) - 2
        out = "y" if last and not softmax else f"fc{i}_out"
        nodes.append(helper.make_node("Gemm", [current, f"fc{i}.weight", f"fc{i}.bias"], [out], name=f"fc{i}",
                                      transB=1))
        current = out
        if not last:
            nodes.append(helper.make_node(activation, [current], [f"act{i}_out"], name=f"act{i}"))
            current = f"act{i}_out"
    if softmax:
        nodes.append(helper.make_node("Softmax", [current], ["y"], name="softmax", axis=-1))
    return make_model(nodes, [batch, sizes[0]], [batch, sizes[-1]], inits, opset=opset)


def lenet5(seed: int = 0, pool: str = "MaxPool", batch: Any = "N", softmax: bool = False,
           opset: int = OPSET) -> onnx.ModelProto:
    """LeNet-5 for (1, 28, 28) images: Conv 6@5x5 pad 2, Relu, ``pool`` 2x2; Conv 16@5x5, Relu,
    ``pool`` 2x2; Flatten; Gemm 400-120 Relu, 120-84 Relu, 84-10 (then Softmax when asked)."""
    rng = np.random.default_rng(seed)
    inits = {
        "conv1.weight": _he(rng, 25, (6, 1, 5, 5)), "conv1.bias": (0.1 * rng.standard_normal(6)).astype(np.float32),
        "conv2.weight": _he(rng, 150, (16, 6, 5, 5)), "conv2.bias": (0.1 * rng.standard_normal(16)).astype(np.float32),
        "fc1.weight": _he(rng, 400, (120, 400)), "fc1.bias": (0.1 * rng.standard_normal(120)).astype(np.float32),
        "fc2.weight": _he(rng, 120, (84, 120)), "fc2.bias": (0.1 * rng.standard_normal(84)).astype(np.float32),
        "fc3.weight": _he(rng, 84, (10, 84)), "fc3.bias": (0.1 * rng.standard_normal(10)).astype(np.float32),
    }
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "conv1.weight", "conv1.bias"], ["c1"], name="conv1", kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
        mk("Relu", ["c1"], ["r1"], name="relu1"),
        mk(pool, ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        mk("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], name="conv2", kernel_shape=[5, 5]),
        mk("Relu", ["c2"], ["r2"], name="relu2"),
        mk(pool, ["r2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
        mk("Flatten", ["p2"], ["f"], name="flatten", axis=1),
        mk("Gemm", ["f", "fc1.weight", "fc1.bias"], ["g1"], name="fc1", transB=1),
        mk("Relu", ["g1"], ["r3"], name="relu3"),
        mk("Gemm", ["r3", "fc2.weight", "fc2.bias"], ["g2"], name="fc2", transB=1),
        mk("Relu", ["g2"], ["r4"], name="relu4"),
        mk("Gemm", ["r4", "fc3.weight", "fc3.bias"], ["logits" if softmax else "y"], name="fc3", transB=1),
    ]
    if softmax:
        nodes.append(mk("Softmax", ["logits"], ["y"], name="softmax", axis=1))
    return make_model(nodes, [batch, 1, 28, 28], [batch, 10], inits, opset=opset)


def binary_mlp(sizes: Sequence[int] = (64, 32, 10), seed: int = 0, output_step: bool = True,
               batch: Any = "N", opset: int = OPSET) -> onnx.ModelProto:
    """A chip-ready MLP: every layer is ``step(W x + b)`` with W in {-1, 0, 1}, integer b, and the
    step written as ``Cast(Greater(z, 0), to=FLOAT)``; with ``output_step=False`` the last layer is
    linear. Fan-in stays within one core (sizes[i] <= 256 for the defaults)."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], {"zero": np.array(0.0, dtype=np.float32)}
    current = "x"
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        inits[f"fc{i}.weight"] = rng.choice(np.array([-1.0, 0.0, 1.0], dtype=np.float32), size=(n_out, n_in),
                                            p=[0.4, 0.2, 0.4])
        inits[f"fc{i}.bias"] = rng.integers(-2, 3, size=n_out).astype(np.float32)
        last = i == len(sizes) - 2
        z = "y" if last and not output_step else f"z{i}"
        nodes.append(helper.make_node("Gemm", [current, f"fc{i}.weight", f"fc{i}.bias"], [z], name=f"fc{i}",
                                      transB=1))
        if last and not output_step:
            break
        nodes.append(helper.make_node("Greater", [z, "zero"], [f"gt{i}"], name=f"step{i}"))
        out = "y" if last else f"h{i}"
        nodes.append(helper.make_node("Cast", [f"gt{i}"], [out], name=f"cast{i}", to=TensorProto.FLOAT))
        current = out
    return make_model(nodes, [batch, sizes[0]], [batch, sizes[-1]], inits, opset=opset)


def input_shape(model: onnx.ModelProto) -> tuple[int, ...]:
    """The per-sample input shape (dims after the batch) of a single-input model."""
    inits = {t.name for t in model.graph.initializer}
    value = next(v for v in model.graph.input if v.name not in inits)
    return tuple(d.dim_value for d in value.type.tensor_type.shape.dim[1:])


def random_inputs(model: onnx.ModelProto, batch: int = 8, seed: int = 0, kind: str = "normal") -> np.ndarray:
    """Float32 inputs of shape (batch, *input shape): ``normal`` values, ``uniform`` in [0, 1),
    or ``binary`` 0/1."""
    rng = np.random.default_rng(seed)
    shape = (batch, *input_shape(model))
    if kind == "uniform":
        return rng.random(shape).astype(np.float32)
    if kind == "binary":
        return (rng.random(shape) < 0.5).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def run_onnxruntime(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The model's single output on ``x``, computed by onnxruntime on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def torch_export(module: Any, example: Any, dynamic_batch: bool = True, opset: int = OPSET,
                 fold_constants: bool = True) -> onnx.ModelProto:
    """Export a torch module (put in eval mode) with the TorchScript exporter (dynamo=False) at
    ``opset``; with ``fold_constants=False`` BatchNormalization stays a separate node."""
    import io
    import warnings

    import torch

    module = module.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=opset, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}} if dynamic_batch
                          else None, do_constant_folding=fold_constants)
    return onnx.load_from_string(buffer.getvalue())

"""The ONNX frontend: ``import_onnx`` turns an ONNX model into the float Network IR.

Steps: parse (a path, bytes or ModelProto; external tensor data is read from next to the file),
``onnx.checker``, conversion to opset 17 with ``onnx.version_converter`` when the model is older,
strict shape inference, then a walk over the nodes the output depends on.

Decisions (the contract a model must meet):

- One float input of shape (batch, ...) and one output. The batch axis may be static or dynamic;
  every other size must be fixed (or given with ``input_shape``). No op may mix samples: ops
  that move data are checked by running them on element ids (for two batch sizes when the batch
  is dynamic), so e.g. ``x.view(x.size(0), -1)`` works and ``Reshape(x, [1, -1])`` does not.
- Constant subgraphs (also ``Shape`` of network tensors) are folded with onnx's reference
  evaluator. Weights, biases, scales and thresholds must be constants.
- Linear ops (Gemm, MatMul, Conv, AveragePool, ReduceSum/Mean, BatchNormalization, Add/Sub/Mul/
  Div/Neg with constants, Add/Sub/Sum of branches, Concat, Slice, Split, Pad, Transpose, reshapes)
  build up a pending affine function of populations; an activation (Relu, LeakyRelu, PRelu,
  Sigmoid, HardSigmoid, Tanh, Sign, Clip, or a comparison with Cast to float as ``step``) or a
  max pool turns it into a population. A weight layer is composed into the pending function only
  when that is a (scaled) selection of neurons (reshapes, BN, input normalization), so two
  convolutions without an activation between them stay two layers and fan-in never grows.
- A population is named after the first weight node folded into it (Gemm, Conv, ...), else after
  the node that made it; ``source_nodes`` lists every ONNX node folded in.
- Softmax / LogSoftmax / ArgMax at the output, over the whole sample, are dropped and listed in
  ``metadata["output_ops"]`` (``Network.apply_output_ops`` replays them); the class is the
  argmax of the output population.
- A node that cannot be lowered does not stop the walk: one ``UnsupportedModelError`` lists them
  all (name, op, domain, opset, why; also on ``error.nodes``) with the supported ops.
- After the walk, an identity population that its only consumer merely relabels (scaled
  permutation, e.g. MaxPool then Relu) is merged into it (``optimize.fuse_relabels``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from crossmap.errors import CrossmapError, ModelError
from crossmap.ir import Network
from crossmap.frontend import ops_activation, ops_linear, ops_pool, ops_shape  # noqa: F401  (register the handlers)
from crossmap.frontend.compare import compare_with_onnxruntime
from crossmap.frontend.loading import TARGET_OPSET, ModelSource, load_model
from crossmap.frontend.lowering import HANDLERS, Lowerer
from crossmap.frontend.optimize import fuse_relabels
from crossmap.frontend.output import TAIL_OPS

SUPPORTED_OPS = sorted(set(HANDLERS) | set(TAIL_OPS) | {"Constant"})

__all__ = ["import_onnx", "compare_with_onnxruntime", "SUPPORTED_OPS", "TARGET_OPSET"]


def import_onnx(model: ModelSource, input_shape: Sequence[int] | None = None, fuse: bool = True,
                output: str | None = None) -> Network:
    """Import ``model`` (a path, bytes, or onnx.ModelProto) as a float Network.

    ``input_shape`` (per sample, without the batch axis) fixes symbolic input dimensions. With
    ``fuse`` identity populations that are only relabelled by their consumer are merged into it.
    ``output`` names the output to import when the model has several (default: the class scores).
    The network's metadata records the model's sha256, opsets, input/output names, input shape and
    the output ops that were dropped (``output_ops``)."""
    loaded = load_model(model, input_shape, output)
    try:
        lowerer = Lowerer(loaded)
        network = lowerer.run()
        if fuse:
            fuse_relabels(network)
    except CrossmapError:
        raise
    except Exception as exc:  # a model that passes the checker but breaks the lowering in a way not foreseen
        raise ModelError(f"model {loaded.source}: cannot be imported ({type(exc).__name__}: {str(exc)[:200]}); "
                         f"remedy: check that onnx.checker and onnxruntime accept it, and report it if they "
                         f"do") from None
    check_finite_network(network, loaded.source)
    network.metadata.update({
        "source": loaded.path,
        "sha256": loaded.sha256,
        "opset": loaded.opset,
        "original_opset": loaded.original_opset,
        "producer": f"{loaded.original.producer_name} {loaded.original.producer_version}".strip(),
        "input_name": loaded.input_name,
        "input_dtype": loaded.input_dtype,
        "output_name": loaded.output_name,
        "input_shape": list(loaded.sample_shape),
        "batch": loaded.batch if loaded.batch is not None else "dynamic",
        "folded_nodes": lowerer.folded,
        "class_from": "argmax of the output population",
    })
    network.validate()
    return network


def check_finite_network(network: Network, source: str) -> None:
    """Refuse a network whose weights or biases hold NaN or infinity after constant folding,
    naming the layer (e.g. a division by a zero constant)."""
    for pop in network.populations:
        if pop.bias is not None and not np.all(np.isfinite(pop.bias)):
            raise ModelError(f"model {source}: layer {pop.name!r} (from nodes {list(pop.source_nodes)[:3]}) has a "
                             f"non-finite bias after constant folding; crossmap needs finite weights and biases; "
                             f"remedy: fix the model so it computes no NaN or infinity from its constants")
    for proj in network.projections:
        if not np.all(np.isfinite(proj.weight.data)):
            raise ModelError(f"model {source}: the weights from {proj.source!r} to {proj.target!r} hold NaN or "
                             f"infinity after constant folding; crossmap needs finite weights; remedy: fix the "
                             f"model so it computes no NaN or infinity from its constants")

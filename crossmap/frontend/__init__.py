"""The ONNX frontend: ``import_onnx`` turns an ONNX model into the float Network IR.

The model is parsed, checked with ``onnx.checker``, converted up to opset 17 when older, and
shape-inferred. Constant subgraphs are folded with onnx's reference evaluator; linear ops are
lowered to sparse projections (Conv and pooling as explicit connectivity, BatchNormalization and
scaling folded into the projection before them); activations and max pooling make populations.
A node that cannot be lowered does not stop the walk: one ``UnsupportedModelError`` lists them
all, with the supported ops.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..ir import Network
from . import ops_activation, ops_linear, ops_pool, ops_shape  # noqa: F401  (register the handlers)
from .compare import compare_with_onnxruntime
from .loading import TARGET_OPSET, load_model
from .lowering import HANDLERS, Lowerer
from .optimize import fuse_relabels
from .output import TAIL_OPS

SUPPORTED_OPS = sorted(set(HANDLERS) | set(TAIL_OPS) | {"Constant"})

__all__ = ["import_onnx", "compare_with_onnxruntime", "SUPPORTED_OPS", "TARGET_OPSET"]


def import_onnx(model: Any, input_shape: Sequence[int] | None = None, fuse: bool = True) -> Network:
    """Import ``model`` (a path, bytes, or onnx.ModelProto) as a float Network.

    ``input_shape`` (per sample, without the batch axis) fixes symbolic input dimensions. With
    ``fuse`` identity populations that are only relabelled by their consumer are merged into it.
    The network's metadata records the model's sha256, opsets, input/output names, input shape and
    the output ops that were dropped (``output_ops``)."""
    loaded = load_model(model, input_shape)
    lowerer = Lowerer(loaded)
    network = lowerer.run()
    if fuse:
        fuse_relabels(network)
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

"""Reading an ONNX model: parse, external data, checker, opset conversion, shape inference, and the
single float input / single output contract."""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypeAlias

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, version_converter

from crossmap.errors import ModelError

# what a model may be given as: a path to an .onnx file, its bytes, or the parsed model
ModelSource: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | onnx.ModelProto"

# Models older than this are converted up to it with onnx.version_converter, so the lowering
# only ever sees the operator semantics of opset TARGET_OPSET and later.
TARGET_OPSET = 17
DEFAULT_DOMAINS = ("", "ai.onnx")
FLOAT_TYPES = {TensorProto.FLOAT: "float32", TensorProto.DOUBLE: "float64", TensorProto.FLOAT16: "float16",
               TensorProto.BFLOAT16: "bfloat16"}


@dataclass
class LoadedModel:
    """A checked, opset-converted, shape-inferred model and what is known about its interface."""

    model: onnx.ModelProto  # converted and shape-inferred: what the lowering reads
    original: onnx.ModelProto  # as given: what onnxruntime should run for comparisons
    source: str  # for messages: the quoted path, or <ModelProto> / <bytes>
    path: str  # the file's path, or <ModelProto> / <bytes>
    sha256: str
    original_opset: int
    opset: int
    input_name: str
    input_dtype: str
    output_name: str
    sample_shape: tuple[int, ...]  # per-sample input shape (no batch axis)
    batch: int | None  # static batch size, or None when the batch axis is dynamic

    @property
    def opsets(self) -> dict[str, int]:
        """Opset version per domain of the converted model."""
        return {o.domain: o.version for o in self.model.opset_import}


def load_model(model: ModelSource, input_shape: Sequence[int] | None = None, output: str | None = None) -> LoadedModel:
    """Read ``model`` (path, bytes or ModelProto) and check it; ``input_shape`` (per sample, no
    batch axis) fixes symbolic input dimensions; ``output`` names the output to compile when the
    model has several (default: its class scores, see ``_interface``). Every failure is a
    ``ModelError``."""
    try:
        return _load_model(model, input_shape, output)
    except ModelError:
        raise
    except RecursionError:
        raise ModelError(f"model {_name(model)}: nested too deeply to read; remedy: re-export the model") from None
    except Exception as exc:  # onnx's checker, converter and inference raise many kinds
        raise ModelError(f"model {_name(model)}: cannot be read ({type(exc).__name__}: {_first_line(exc)[:200]}); "
                         f"remedy: check that onnx.checker.check_model accepts it, or re-export it") from None


def _name(model: ModelSource) -> str:
    return repr(str(model)) if isinstance(model, (str, os.PathLike)) else f"<{type(model).__name__}>"


def _load_model(model: ModelSource, input_shape: Sequence[int] | None, output: str | None = None) -> LoadedModel:
    original, source, digest = _read(model)
    if not original.graph.node and not original.graph.input and not original.graph.output:
        raise ModelError(f"model {source}: the file holds no ONNX graph (no nodes, inputs or outputs); it is "
                         f"not an ONNX model or is empty; remedy: pass a model saved with onnx.save or "
                         f"torch.onnx.export")
    try:
        onnx.checker.check_model(original)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise ModelError(f"model {source}: the ONNX checker rejects it: {_first_line(exc)}; remedy: re-export "
                         f"the model, or repair it so that onnx.checker.check_model passes") from None
    original_opset = _default_opset(original)
    newest = onnx.defs.onnx_opset_version()
    if original_opset > newest:
        raise ModelError(f"model {source}: imports opset {original_opset} of the standard operators, the installed "
                         f"onnx {onnx.__version__} knows opsets up to {newest}; remedy: export the model with opset "
                         f"{TARGET_OPSET} to {newest}")
    _check_finite(original, source)
    converted = original
    if 0 < original_opset < TARGET_OPSET:
        try:
            converted = version_converter.convert_version(original, TARGET_OPSET)
        except Exception as exc:  # the converter raises plain RuntimeError / ConvertError
            raise ModelError(f"model {source}: cannot convert opset {original_opset} to {TARGET_OPSET}: "
                             f"{_first_line(exc)}; remedy: re-export the model with opset >= {TARGET_OPSET}") from None
    try:
        inferred = onnx.shape_inference.infer_shapes(converted, check_type=True, strict_mode=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError) as exc:
        raise ModelError(f"model {source}: shape inference fails, so tensor shapes cannot be resolved: "
                         f"{_first_line(exc)}; remedy: fix the model's shapes, or export it with fixed "
                         f"input sizes") from None
    input_value, output_value = _interface(inferred, source, output)
    dtype = _input_dtype(input_value, source)
    shape, batch = _input_shape(input_value, source, input_shape)
    path = str(model) if isinstance(model, (str, os.PathLike)) else source
    return LoadedModel(model=inferred, original=original, source=source, path=path, sha256=digest,
                       original_opset=original_opset, opset=_default_opset(inferred), input_name=input_value.name,
                       input_dtype=dtype, output_name=output_value.name, sample_shape=shape, batch=batch)


def _read(model: ModelSource) -> tuple[onnx.ModelProto, str, str]:
    """The parsed model, a printable name of where it came from, and the sha256 of its bytes."""
    if isinstance(model, onnx.ModelProto):
        data = model.SerializeToString()
        return _parse(data, "<ModelProto>", None), "<ModelProto>", hashlib.sha256(data).hexdigest()
    if isinstance(model, (bytes, bytearray)):
        data = bytes(model)
        return _parse(data, "<bytes>", None), "<bytes>", hashlib.sha256(data).hexdigest()
    if not isinstance(model, (str, os.PathLike)):
        raise ModelError(f"model: got a {type(model).__name__}, needed a path to an .onnx file, its bytes, or an "
                         f"onnx.ModelProto; remedy: pass the model file's path")
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist or is not a file; remedy: check the path")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"model file {str(path)!r} cannot be read ({exc.strerror}); remedy: check its "
                         f"permissions") from None
    return _parse(data, repr(str(path)), path.parent), repr(str(path)), hashlib.sha256(data).hexdigest()


def _parse(data: bytes, source: str, base_dir: Path | None) -> onnx.ModelProto:
    """Parse protobuf bytes and load external tensor data from ``base_dir``."""
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"model {source}: {len(data)} bytes that do not parse as an ONNX model ({exc}); the file "
                         f"is not ONNX or is truncated; remedy: re-export or re-download the model") from None
    external = [t for t in _all_tensors(model) if t.data_location == TensorProto.EXTERNAL]
    if external:
        if base_dir is None:
            raise ModelError(f"model {source}: tensor {external[0].name!r} (and {len(external) - 1} more) keeps its "
                             f"data in an external file, but the model was given without a path; remedy: pass "
                             f"the .onnx file's path so the data files next to it can be read")
        for tensor in external:
            info = {e.key: e.value for e in tensor.external_data}
            location = base_dir / info.get("location", "")
            if not location.is_file():
                raise ModelError(f"model {source}: tensor {tensor.name!r} keeps its data in external file "
                                 f"{info.get('location', '')!r}, which does not exist in {str(base_dir)!r}; "
                                 f"remedy: put the data file next to the model, or save the model with "
                                 f"onnx.save(..., save_as_external_data=False)")
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(base_dir))
        except (OSError, ValueError, onnx.checker.ValidationError) as exc:
            raise ModelError(f"model {source}: cannot read its external tensor data: {_first_line(exc)}; remedy: "
                             f"check the data files next to the model") from None
    return model


def _all_tensors(model: onnx.ModelProto) -> list[TensorProto]:
    """Initializers and Constant-node tensors of the main graph."""
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        tensors.extend(a.t for a in node.attribute if a.type == onnx.AttributeProto.TENSOR)
    return tensors


def _check_finite(model: onnx.ModelProto, source: str) -> None:
    """Refuse float initializers and Constant tensors holding NaN or infinity, naming the node
    that uses them: a network with such a weight or bias has no chip equivalent."""
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    tensors = [(t, users.get(t.name, [])) for t in model.graph.initializer]
    for node in model.graph.node:
        tensors.extend((a.t, [node]) for a in node.attribute if a.type == onnx.AttributeProto.TENSOR)
    for tensor, nodes in tensors:
        if tensor.data_type not in FLOAT_TYPES:
            continue
        try:
            values = to_numpy(tensor)
        except Exception as exc:  # malformed tensor data: raw bytes that do not fit the shape
            raise ModelError(f"model {source}: tensor {tensor.name!r} cannot be read ({_first_line(exc)}); remedy: "
                             f"re-export the model") from None
        bad = ~np.isfinite(values.astype(np.float64, copy=False))
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            node = (f"node {nodes[0].name or '(unnamed)'!r} ({nodes[0].op_type})" if nodes
                    else "no node (unused)")
            raise ModelError(f"model {source}: tensor {tensor.name!r} used by {node} holds {int(bad.sum())} "
                             f"non-finite value(s) ({values[where]} at {list(where)}); crossmap needs finite "
                             f"weights and biases; remedy: fix the training or the export so the network has no "
                             f"NaN or infinity")


def _default_opset(model: onnx.ModelProto) -> int:
    """The model's version of the standard ONNX operator set (0 when it imports none)."""
    return next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 0)


class OutputChoice(UserWarning):
    """A model with several outputs: which one crossmap compiles."""


def _interface(model: onnx.ModelProto, source: str,
               chosen: str | None = None) -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    """The one real input (not an initializer) and the output to compile: the only one, the one
    named ``chosen``, or of several (a classifier's label and probabilities, or logits and softmax)
    the class scores: the first float tensor of shape (batch, classes > 1) that no Softmax makes
    (else the first such tensor), with a warning naming it."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    outputs = list(model.graph.output)
    if len(inputs) != 1:
        raise ModelError(f"model {source}: has {len(inputs)} inputs {[v.name for v in inputs]}, crossmap needs "
                         f"exactly 1 (the samples); remedy: export the network with a single input, turning the "
                         f"others into initializers")
    names = [v.name for v in outputs]
    if chosen is not None:
        if chosen not in names:
            raise ModelError(f"model {source}: has no output {chosen!r}; its outputs: {names}; remedy: choose one "
                             f"of those (--output-name NAME)")
        return inputs[0], outputs[names.index(chosen)]
    if len(outputs) == 1:
        return inputs[0], outputs[0]
    scores = [v for v in outputs if _is_scores(v)]
    if not scores:
        raise ModelError(f"model {source}: has {len(outputs)} outputs {names} and none is a float tensor of shape "
                         f"(batch, classes); remedy: choose the class scores with --output-name NAME, or export the "
                         f"network with only its class scores as output")
    made_by = {out: node.op_type for node in model.graph.node for out in node.output}
    plain = [v for v in scores if made_by.get(v.name) != "Softmax"]
    pick = (plain or scores)[0]
    warnings.warn(OutputChoice(f"model {source} has {len(outputs)} outputs {names}; compiling {pick.name!r} (the "
                               f"class scores); choose another with --output-name NAME"), stacklevel=3)
    return inputs[0], pick


def _is_scores(value: onnx.ValueInfoProto) -> bool:
    """A float tensor of rank 2 or more whose last dimension is a fixed size above 1."""
    if not value.type.HasField("tensor_type") or value.type.tensor_type.elem_type not in FLOAT_TYPES:
        return False
    dims = value.type.tensor_type.shape.dim
    return len(dims) >= 2 and dims[-1].HasField("dim_value") and dims[-1].dim_value > 1


def _input_dtype(value: onnx.ValueInfoProto, source: str) -> str:
    """The numpy name of the input's float element type."""
    if not value.type.HasField("tensor_type"):
        raise ModelError(f"model {source}: input {value.name!r} is not a tensor; crossmap needs one float tensor "
                         f"of shape (batch, ...); remedy: export the network with a tensor input")
    elem = value.type.tensor_type.elem_type
    if elem not in FLOAT_TYPES:
        name = TensorProto.DataType.Name(elem) if elem in TensorProto.DataType.values() else str(elem)
        raise ModelError(f"model {source}: input {value.name!r} has element type {name}, crossmap needs a float "
                         f"input (float32, float64, float16); remedy: export the network so it takes float "
                         f"features, moving index lookups (e.g. embeddings) out of the model")
    return FLOAT_TYPES[elem]


def _input_shape(value: onnx.ValueInfoProto, source: str,
                 override: Sequence[int] | None) -> tuple[tuple[int, ...], int | None]:
    """Per-sample input shape and static batch size (None when dynamic)."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        if override is None:
            raise ModelError(f"model {source}: input {value.name!r} has no shape; crossmap needs (batch, ...) with "
                             f"fixed sizes after the batch; remedy: pass input_shape=(...) (per sample) or export "
                             f"with a fixed input shape")
        return tuple(int(d) for d in override), None
    dims = list(tensor.shape.dim)
    if len(dims) < 2:
        raise ModelError(f"model {source}: input {value.name!r} has rank {len(dims)}, crossmap needs (batch, "
                         f"features...) with the batch first; remedy: export the network with a batch axis")
    batch = dims[0].dim_value if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None
    sample = [dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None for dim in dims[1:]]
    if override is not None:
        override = tuple(int(d) for d in override)
        if len(override) != len(sample) or any(s is not None and s != o for s, o in zip(sample, override)):
            raise ModelError(f"model {source}: input_shape {override} does not fit input {value.name!r} of shape "
                             f"{_dims_text(dims)} (per sample {_dims_text(dims[1:])}); remedy: give one size "
                             f"per axis after the batch, keeping the fixed ones")
        return override, batch
    if any(s is None for s in sample):
        axis = 1 + sample.index(None)
        raise ModelError(f"model {source}: input {value.name!r} has shape {_dims_text(dims)}; axis {axis} has no "
                         f"fixed size, and crossmap needs fixed sizes for every axis but the batch; remedy: pass "
                         f"input_shape=(...) (per sample) or export with fixed sizes")
    return tuple(int(s) for s in sample), batch


def _dims_text(dims: Sequence[onnx.TensorShapeProto.Dimension]) -> str:
    parts = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
    return "(" + ", ".join(parts) + ")"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def to_numpy(tensor: TensorProto) -> np.ndarray:
    """A TensorProto's values as a numpy array."""
    return onnx.numpy_helper.to_array(tensor)

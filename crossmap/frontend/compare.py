"""Checking an imported network against onnxruntime running the original model."""

from __future__ import annotations

from typing import Any

import numpy as np

from crossmap.errors import InputError, ModelError
from crossmap.frontend.loading import ModelSource
from crossmap.ir import Network


def onnxruntime_outputs(model: ModelSource, x: np.ndarray) -> np.ndarray:
    """The model's single output on ``x`` (batch first), computed by onnxruntime on the CPU."""
    import onnxruntime as ort

    from crossmap.frontend.loading import _read

    proto, source, _ = _read(model)
    try:
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"model {source}: onnxruntime cannot load it: {str(exc).splitlines()[0]}; remedy: check "
                         f"the model with onnx.checker and onnxruntime") from None
    info = session.get_inputs()[0]
    dtype = {"tensor(double)": np.float64, "tensor(float16)": np.float16}.get(info.type, np.float32)
    try:
        return session.run(None, {info.name: np.asarray(x).astype(dtype)})[0]
    except Exception as exc:
        raise InputError(f"model {source}: onnxruntime rejects inputs of shape {np.shape(x)}: "
                         f"{str(exc).splitlines()[0]}; remedy: pass (batch, *input shape)") from None


def compare_with_onnxruntime(model: ModelSource, network: Network, x: np.ndarray) -> dict[str, Any]:
    """Run ``network`` (output ops replayed) and onnxruntime on ``x``; return the largest absolute
    error, the error relative to the output's largest magnitude, and whether the classes agree."""
    expected = np.asarray(onnxruntime_outputs(model, x), dtype=np.float64).reshape(len(x), -1)
    raw = network.evaluate(x)
    got = np.asarray(network.apply_output_ops(raw), dtype=np.float64).reshape(len(x), -1)
    if got.shape != expected.shape:
        raise ValueError(f"network output {got.shape} and onnxruntime output {expected.shape} differ in shape")
    error = float(np.max(np.abs(got - expected))) if got.size else 0.0
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    return {
        "samples": int(len(x)),
        "max_abs_error": error,
        "max_rel_error": error / scale if scale > 0 else error,
        "classes_agree": float(np.mean(np.argmax(raw, axis=1) == np.argmax(expected, axis=1)))
        if expected.shape[1] > 1 else None,
    }

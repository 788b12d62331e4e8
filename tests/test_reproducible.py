"""The same model, options and seed give byte-identical program directories, report included:
no report field may depend on the clock."""

from __future__ import annotations

import json

import numpy as np
import onnx

import crossmap
from crossmap.testing import small_chip
from crossmap.testing.onnx_models import mlp


def files(directory) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_lsq_program_directories_are_byte_identical_report_included(tmp_path):
    path = tmp_path / "float.onnx"
    onnx.save(mlp((16, 12, 4), seed=2), str(path))
    calibration = np.random.default_rng(0).random((64, 16)).astype(np.float32)
    for name in ("a", "b"):
        crossmap.compile(path, tmp_path / name, chip=small_chip(), binarize="lsq", calibration=calibration,
                         time_limit=2, seed=3)
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert "report.json" in a and a == b
    text = json.dumps(json.loads(a["report.json"]))
    assert "seconds" not in text and "cpu" not in text.lower()

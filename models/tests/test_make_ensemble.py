"""models/make_ensemble.py: copies joined in one model add their votes, shifted copies read
translated images, and the joined model compiles to a chip program equal to onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import crossmap
from crossmap.datasets import load_sample
from crossmap.verify import verify

from crossmap.testing.onnx_models import run_onnxruntime

import common
from make_ensemble import ensemble_copies, join, parse_shifts, shifted


def conv_member(seed: int, thresholds: tuple[float, ...] = (0.5,)) -> onnx.ModelProto:
    """A chip-ready step CNN: threshold encoding (a thermometer code with several ``thresholds``),
    one 4x4 stride-2 conv with weights in {-1, 0, 1} and half-integer biases, a step, and a
    readout of its 2 x 14 x 14 voters."""
    rng = np.random.default_rng(seed)
    builder = common.GraphBuilder(f"member{seed}")
    h = builder.encode_input(thresholds)
    weight = rng.choice(np.array([-1.0, 0.0, 1.0], np.float32), size=(2, len(thresholds), 4, 4), p=[0.3, 0.3, 0.4])
    bias = (rng.integers(-3, 1, size=2) - 0.5).astype(np.float32)
    h = builder.step(builder.conv(h, weight, bias, "c1", stride=2, pad=1), name="c1.spikes")
    counts = builder.readout(builder.flatten(h), np.arange(2 * 14 * 14) % 10)
    return builder.model(counts, [10], {})


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return load_sample()[0][:40]


def test_shifted_moves_pixels_with_zero_fill():
    x = np.arange(28 * 28, dtype=np.float32).reshape(1, 1, 28, 28)
    down_left = shifted(x, (2, -1))
    assert (down_left[0, 0, 2:, :27] == x[0, 0, :26, 1:]).all()
    assert (down_left[0, 0, :2] == 0).all() and (down_left[0, 0, :, 27] == 0).all()
    assert (shifted(x, (0, 0)) == x).all()


def test_joined_copies_sum_the_votes_of_each_member_on_its_shifted_image(images):
    members = [conv_member(0), conv_member(1)]
    shifts = [(0, 0), (1, -1), (0, 0)]
    model = join([members[0], members[0], members[1]], "ens", shifts)
    want = sum(run_onnxruntime(m, shifted(images, s)) for m, s in zip([members[0], members[0], members[1]], shifts))
    np.testing.assert_array_equal(run_onnxruntime(model, images), want)
    assert run_onnxruntime(model, images).sum() > 0  # the members vote


def test_copies_are_shift_major_and_counted():
    shifts = parse_shifts("0,0 0,1 -1,0")
    assert shifts == [(0, 0), (0, 1), (-1, 0)]
    assert ensemble_copies(["a", "b"], 5, shifts) == [("a", (0, 0)), ("b", (0, 0)), ("a", (0, 1)), ("b", (0, 1)),
                                                       ("a", (-1, 0))]
    with pytest.raises(SystemExit, match="7 copies asked for, 2 members x 3 shifts give 6"):
        ensemble_copies(["a", "b"], 7, shifts)
    with pytest.raises(SystemExit, match="rows,columns"):
        parse_shifts("0;1")
    with pytest.raises(SystemExit, match="smaller than the 28-pixel image"):
        parse_shifts("0,28")


def test_a_shifted_ensemble_compiles_to_a_program_equal_to_onnxruntime(images, tmp_path):
    model = join([conv_member(0), conv_member(0)], "ens", [(0, 0), (-1, 1)])
    path = tmp_path / "ens.onnx"
    onnx.save(model, str(path))
    program = crossmap.compile(path, tmp_path / "out", seed=0)
    report = verify(program, path, inputs=images, limit=len(images))
    assert report.ok, report.detail


def test_a_thermometer_member_keeps_its_own_encoding_and_compiles_equal_to_onnxruntime(images, tmp_path):
    levels = common.thermometer(3)
    members = [conv_member(0), conv_member(2, levels)]
    model = join(members, "ens", [(0, 0), (0, 0)])
    np.testing.assert_array_equal(run_onnxruntime(model, images), sum(run_onnxruntime(m, images) for m in members))
    path = tmp_path / "ens.onnx"
    onnx.save(model, str(path))
    program = crossmap.compile(path, tmp_path / "out", seed=0)
    # 784 pixels at 0.5 (shared by both members) and at 0.25 and 0.75 (the thermometer member's own)
    assert program.num_inputs == 3 * 784 and program.encoding["channels"] == 784
    report = verify(program, path, inputs=images, limit=len(images))
    assert report.ok, report.detail
    with pytest.raises(SystemExit, match="only members with the plain threshold encoding can be shifted"):
        join(members, "ens", [(0, 0), (1, 0)])

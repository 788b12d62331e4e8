"""The capacity check after import: a network that cannot fit the chip stops before binarization,
with the layer, the numbers and the remedy; lower bounds never refuse a network that fits."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import crossmap
from crossmap.chip import ChipSpec
from crossmap.errors import ResourceError
from crossmap.frontend import import_onnx
from crossmap.frontend.ops_linear import dense_csr
from crossmap.passes.binarize.capacity import check_plan_capacity, layer_needs
from crossmap.testing.onnx_models import binary_mlp, mlp

# a truenorth core (256 x 256) on a 2 x 2 mesh: 4 cores, 1,024 neuron slots
FOUR_CORES = ChipSpec.named("truenorth").replace(mesh_x=2, mesh_y=2)


def passes_run(model, chip, **options) -> list[str]:
    """Compile and return the progress lines naming the passes that ran (the compile must fail)."""
    lines: list[str] = []
    with pytest.raises(ResourceError) as caught:
        crossmap.compile(model, chip=chip, progress=lines.append, **options)
    return [line for line in lines if line.startswith("pass ")], str(caught.value)


def test_a_float_mlp_too_wide_for_the_board_stops_before_binarizing():
    ran, message = passes_run(mlp((64, 1200, 10)), FOUR_CORES)
    assert ran == []  # not even the binarize pass started
    # 1,200 hidden neurons; 10 outputs x 8 copies plus 19 chunks of their 1,200 x 4 lines, a partial each
    assert "binarize_rate makes at least 1,470 chip neurons" in message
    assert "at least 6 cores" in message and "has 4" in message
    assert "'fc0'" in message and "1,200 neurons" in message
    assert "--chip truenorth-auto" in message and "narrower layers" in message


def test_partial_sums_count_towards_the_neurons():
    # 300 inputs x 4 lines = 1,200 lines: 5 chunks of at most 256, at least a partial neuron per chunk
    needs = {need.name: need for need in layer_needs(import_onnx(mlp((300, 40, 10))), "rate", FOUR_CORES)}
    assert needs["fc0"].chunks == 5 and needs["fc0"].fan_in == 300
    assert needs["fc0"].chip_neurons == 40 + 40 * 5
    assert needs["fc1"].chunks == 1 and needs["fc1"].chip_neurons == 10 * 8  # output copies
    with pytest.raises(ResourceError, match=r"'fc0': 180 neurons reading 300 inputs x 4 lines each, cut into 5 "
                                            r"partial sums of at most 256 lines"):
        check_plan_capacity(import_onnx(mlp((300, 180, 10))), "rate", FOUR_CORES)


def test_the_check_is_a_lower_bound_of_the_compiled_program():
    model = mlp((300, 40, 10))
    bound = sum(need.chip_neurons for need in layer_needs(import_onnx(model), "rate", FOUR_CORES))
    program = crossmap.compile(model, chip="truenorth", calibration=np.random.default_rng(0).random((16, 300)))
    assert program.num_cores * 256 >= bound
    assert int(np.count_nonzero(program.used_neurons())) >= bound


def test_a_growing_board_skips_the_core_count_and_the_ensemble_multiplies_it():
    model = binary_mlp((64, 300, 10))
    net = import_onnx(model)
    assert check_plan_capacity(net, "deterministic", FOUR_CORES, grow_board=True)
    check_plan_capacity(net, "deterministic", FOUR_CORES)  # 310 neurons fit 4 cores
    with pytest.raises(ResourceError, match=r"binarize_stochastic makes at least 1,240 chip neurons"):
        check_plan_capacity(net, "stochastic", FOUR_CORES, ensemble=4)


def test_fan_in_beyond_a_core_stops_the_exact_methods_only():
    net = import_onnx(binary_mlp((400, 16, 10)))
    with pytest.raises(ResourceError, match=r"layer 'fc0': a neuron reads \d+ inputs .* 256 axons.*--binarize lsq"):
        check_plan_capacity(net, "deterministic", FOUR_CORES)
    assert [need.name for need in check_plan_capacity(net, "lsq", FOUR_CORES)] == ["fc0", "fc1"]


def test_dense_csr_equals_scipy():
    rng = np.random.default_rng(1)
    for shape in [(3, 5), (0, 4), (4, 0), (6, 6)]:
        for density in (0.0, 0.4, 1.0):
            m = rng.normal(size=shape) * (rng.random(shape) < density)
            a, b = dense_csr(m), sp.csr_matrix(m)
            assert a.has_canonical_format and a.shape == b.shape
            assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
            assert np.array_equal(a.data, b.data)

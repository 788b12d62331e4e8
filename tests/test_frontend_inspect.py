"""``crossmap inspect``: the layer table, its JSON form, chip limits, and errors."""

import json

import numpy as np
import onnx
import pytest

from crossmap.chip import ChipSpec
from crossmap.cli import main
from crossmap.commands.inspect import population_table
from crossmap.frontend import import_onnx

from crossmap.testing import onnx_models as om


@pytest.fixture
def lenet_path(tmp_path):
    path = tmp_path / "lenet.onnx"
    onnx.save(om.lenet5(softmax=True), str(path))
    return path


def test_table_lists_layers_fan_in_and_core_fit(lenet_path, capsys):
    assert main(["inspect", str(lenet_path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert "6x28x28" in rows["conv1"] and "relu" in rows["conv1"] and "4704" in rows["conv1"]
    assert "identity (max)" in rows["pool1"]
    assert "no (400 > 256)" in rows["fc1"] and "400 / 400.0" in rows["fc1"]
    assert "150 / 150.0" in rows["conv2"] and "yes" in rows["conv2"]
    assert "dropped at the output: Softmax (softmax)" in out
    assert "7 layers, 8094 neurons" in out
    assert "must be split by the partition pass: fc1" in out


def test_json_output(lenet_path, capsys):
    assert main(["inspect", str(lenet_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    layers = {row["name"]: row for row in report["layers"]}
    assert report["limits"] == {"axons_per_core": 256, "neurons_per_core": 256}
    assert layers["conv2"]["fan_in_max"] == 150 and layers["conv2"]["fits_core"] is True
    assert layers["fc1"]["fits_core"] is False and layers["fc3"]["output"] is True
    assert layers["pool2"]["fan_out_max"] == 120 and layers["conv1"]["min_cores"] == 19
    assert report["totals"]["synapses"] == sum(row["synapses"] for row in report["layers"])
    assert report["metadata"]["sha256"] == __import__("hashlib").sha256(lenet_path.read_bytes()).hexdigest()


def test_chip_with_fewer_axons(lenet_path, tmp_path, capsys):
    chip = tmp_path / "small.json"
    chip.write_text(ChipSpec.truenorth().replace(name="small", axons_per_core=128).to_json())
    assert main(["inspect", str(lenet_path), "--json", "--chip", str(chip)]) == 0
    layers = {row["name"]: row for row in json.loads(capsys.readouterr().out)["layers"]}
    assert layers["conv2"]["fits_core"] is False and layers["fc2"]["fits_core"] is True


def test_population_table_matches_the_network():
    net = import_onnx(om.mlp((30, 20, 5)))
    rows = population_table(net, ChipSpec.truenorth())
    assert [r["name"] for r in rows] == ["input", "fc0", "fc1"]
    fc0 = net.incoming("fc0")[0].weight
    assert rows[1]["fan_in_mean"] == pytest.approx(fc0.nnz / 20)
    assert rows[0]["fan_out_max"] == int(np.max(np.bincount(fc0.indices, minlength=30)))


def test_symbolic_sizes_with_input_shape(tmp_path, capsys):
    path = tmp_path / "sym.onnx"
    model = om.make_model([onnx.helper.make_node("Relu", ["x"], ["y"])], ["N", "C"], None)
    onnx.save(model, str(path))
    assert main(["inspect", str(path)]) == 4
    assert "axis 1 has no fixed size" in capsys.readouterr().err
    assert main(["inspect", str(path), "--input-shape", "7"]) == 0
    assert main(["inspect", str(path), "--input-shape", "seven"]) == 2


def test_bad_model_is_one_line_error(tmp_path, capsys):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a model at all")
    assert main(["inspect", str(path)]) == 4
    err = capsys.readouterr().err
    assert err.startswith("crossmap inspect: error: model ") and "remedy" in err

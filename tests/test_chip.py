"""ChipSpec: the TrueNorth defaults, JSON round trips, impossible values, names, utilization."""

import json

import numpy as np
import pytest

from crossmap.chip import ChipSpec, EnergyModel
from crossmap.errors import ChipSpecError
from crossmap.program import Program
from crossmap.testing import small_chip


def test_truenorth_defaults():
    chip = ChipSpec.truenorth()
    assert (chip.axons_per_core, chip.neurons_per_core, chip.axon_types) == (256, 256, 4)
    assert (chip.weight_min, chip.weight_max, chip.leak_min, chip.leak_max) == (-255, 255, -255, 255)
    assert (chip.alpha_min, chip.alpha_max, chip.beta_min, chip.beta_max) == (1, 2**18 - 1, 0, 2**18 - 1)
    assert (chip.v_min, chip.v_max, chip.delay_min, chip.delay_max) == (-(2**19), 2**19 - 1, 1, 15)
    assert (chip.mesh_x, chip.mesh_y, chip.cores_per_chip, chip.max_cores) == (64, 64, 4096, 4096)
    assert chip.synapse_prob_den == 256


def test_board_geometry():
    chip = ChipSpec.truenorth(board_x=2, board_y=3)
    assert (chip.grid_x, chip.grid_y, chip.max_cores) == (128, 192, 6 * 4096)
    assert chip.chip_of(0, 0) == 0 and chip.chip_of(64, 0) == 1 and chip.chip_of(63, 64) == 2
    np.testing.assert_array_equal(chip.chip_of(np.array([127, 0]), np.array([191, 130])), [5, 4])


@pytest.mark.parametrize("chip", [
    ChipSpec.truenorth(),
    small_chip(),
    ChipSpec(name="custom", axons_per_core=128, delay_max=7, board_x=3,
             energy=EnergyModel(synaptic_event_pj=1.5, hop_pj=0.25)),
])
def test_json_round_trip(chip):
    text = chip.to_json()
    assert json.loads(text)["name"] == chip.name
    assert ChipSpec.from_json(text) == chip
    assert ChipSpec.from_dict(chip.to_dict()) == chip


def test_missing_keys_take_defaults():
    chip = ChipSpec.from_dict({"name": "half", "axons_per_core": 128, "energy": {"hop_pj": 1.0}})
    assert chip.axons_per_core == 128 and chip.neurons_per_core == 256
    assert chip.energy.hop_pj == 1.0 and chip.energy.synaptic_event_pj == EnergyModel().synaptic_event_pj


@pytest.mark.parametrize("changes, message", [
    ({"axons_per_core": 0}, "axons_per_core = 0 must be an integer >= 1"),
    ({"delay_min": 0}, "delay_min = 0 must be an integer >= 1"),
    ({"weight_min": 10, "weight_max": 5}, "weight_min = 10 is above weight_max = 5"),
    ({"delay_min": 9, "delay_max": 3}, "delay_min = 9 is above delay_max = 3"),
    ({"v_min": 5}, "membrane range [5, 524287] must contain 0"),
    ({"beta_min": -1}, "beta_min = -1 must be >= 0"),
    ({"v_max": 2**32}, "exceeds the 32-bit state range"),
    ({"axon_types": 200}, "axon_types = 200"),
    ({"axons_per_core": 65536, "weight_max": 300}, "beyond float32's exact integers"),
    ({"axons_per_core": 70000}, "axons_per_core = 70000 is above 65536"),
    ({"mesh_x": 10**9}, "mesh_x = 1000000000 is above 4096"),
])
def test_impossible_values(changes, message):
    with pytest.raises(ChipSpecError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        ChipSpec.truenorth().replace(**changes)
    assert "'truenorth'" in str(info.value)  # names the spec


@pytest.mark.parametrize("data, message", [
    ({"axons": 3}, "unknown fields ['axons']"),
    ({"axons_per_core": 2.5}, "'axons_per_core' = 2.5 must be an integer"),
    ({"axons_per_core": True}, "must be an integer"),
    ({"energy": {"hop_pj": -1}}, "energy.hop_pj = -1 must be a finite number in [0, 1e+12]"),
    ({"energy": {"hop_pj": float("nan")}}, "energy.hop_pj = nan must be a finite number"),
    ({"energy": {"spike_pj": float("inf")}}, "energy.spike_pj = inf must be a finite number"),
    ({"name": {"a": 1}}, "field 'name'"),
    ({"energy": {"warp_pj": 1}}, "field 'energy' must be an object with keys from"),
    ([1, 2], "must be a JSON object, got list"),
])
def test_bad_dicts(data, message):
    with pytest.raises(ChipSpecError) as info:
        ChipSpec.from_dict(data)
    assert message in str(info.value)


def test_bad_json_text():
    with pytest.raises(ChipSpecError, match="not valid JSON"):
        ChipSpec.from_json("{axons_per_core: 3")


def test_named_chips(tmp_path):
    assert ChipSpec.named("truenorth") == ChipSpec.truenorth()
    assert ChipSpec.named("truenorth-2x3") == ChipSpec.truenorth(2, 3)
    path = tmp_path / "chip.json"
    path.write_text(small_chip().to_json())
    assert ChipSpec.named(str(path)) == small_chip()
    with pytest.raises(ChipSpecError, match="does not exist"):
        ChipSpec.named(str(tmp_path / "none.json"))
    with pytest.raises(ChipSpecError, match="unknown chip 'loihi'; available: 'truenorth'"):
        ChipSpec.named("loihi")
    with pytest.raises(ChipSpecError, match="only exists when compiling"):
        ChipSpec.named("truenorth-auto")


def test_utilization_counts_used_resources():
    chip = small_chip()  # 8 axons x 8 neurons per core, 4 x 4 cores per chip on a 2 x 2 board
    prog = Program.empty(chip, 3, num_inputs=1, num_classes=1)
    prog.core_xy = np.array([[0, 0], [1, 0], [5, 5]], np.int32)  # chips 0, 0 and 3
    prog.crossbar[0, 0, :3] = True   # axon 0 of core 0: 3 synapses
    prog.crossbar[2, 7, 1] = True    # axon 7 of core 2: 1 synapse
    prog.target_core[0, 0], prog.target_axon[0, 0] = 2, 7
    prog.output_port[2, 1] = 0
    prog.port_class = np.zeros(1, np.int32)
    prog.validate()
    used = chip.utilization(prog)
    # used neurons: core 0's neurons 0-2 (synapses; neuron 0 also routes) and core 2's neuron 1 (synapse, output)
    assert used == {"cores": (3, 64), "axons": (2, 24), "neurons": (4, 24), "synapses": (4, 192), "chips": (2, 4)}

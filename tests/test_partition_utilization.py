"""Utilization tables per core and per layer."""

from __future__ import annotations

import numpy as np

from crossmap.chip import ChipSpec
from crossmap.program import Program
from crossmap.utilization import SPLITTERS, core_table, format_table, layer_table

CHIP = ChipSpec.truenorth().replace(axons_per_core=16, neurons_per_core=8)


def hand_program():
    """Core 0: layer 'a' neuron 0 twice (a copy) and neuron 1; core 1: 'b' neuron 0 and a splitter."""
    prog = Program.empty(CHIP, 2, num_inputs=3, num_classes=2, group_names=["a", "b"], core_labels=["a", "b"])
    prog.crossbar[0, [0, 1], 0] = True
    prog.crossbar[0, [0, 1], 1] = True
    prog.crossbar[0, 2, 2] = True
    prog.neuron_group[0, :3] = 0
    prog.neuron_index[0, :3] = [0, 0, 1]
    prog.target_core[0, :2] = 1
    prog.target_axon[0, :2] = [0, 1]
    prog.crossbar[1, [0, 1], 0] = True
    prog.neuron_group[1, 0] = 1
    prog.neuron_index[1, 0] = 0
    prog.output_port[1, 0] = 0
    prog.crossbar[1, 5, 3] = True  # a splitter reading axon 5, sending to core 0
    prog.target_core[1, 3] = 0
    prog.port_class = np.array([1], np.int32)
    prog.input_channel = np.array([0, 1, 2], np.int32)
    prog.input_core = np.zeros(3, np.int32)
    prog.input_axon = np.array([0, 1, 2], np.int32)
    return prog.validate()


def test_core_table_counts():
    rows = core_table(hand_program())
    assert [r["label"] for r in rows] == ["a", "b"]
    assert (rows[0]["axons_used"], rows[0]["neurons_used"], rows[0]["synapses_used"]) == (3, 3, 5)
    assert (rows[1]["axons_used"], rows[1]["neurons_used"], rows[1]["synapses_used"]) == (3, 2, 3)
    assert rows[0]["axons"] == 16 and rows[0]["neurons"] == 8 and rows[0]["synapses"] == 128
    assert rows[0]["input_axons"] == 3 and rows[1]["output_ports"] == 1 and rows[1]["splitter_neurons"] == 1
    assert rows[0]["neuron_utilization"] == round(3 / 8, 4)


def test_layer_table_counts_copies_and_splitters():
    rows = {r["layer"]: r for r in layer_table(hand_program())}
    assert set(rows) == {"a", "b", SPLITTERS}
    a = rows["a"]
    assert (a["cores"], a["neurons_used"], a["distinct_neurons"], a["copies"]) == (1, 3, 2, 1)
    assert (a["axons_used"], a["synapses_used"], a["axons"]) == (3, 5, 16)
    assert (rows["b"]["axons_used"], rows["b"]["synapses_used"]) == (2, 2)
    assert (rows[SPLITTERS]["neurons_used"], rows[SPLITTERS]["axons_used"]) == (1, 1)


def test_tables_agree_with_chip_utilization_on_a_partitioned_program():
    from tests.test_partition import partition, three_layer

    state = partition(three_layer(), fanout="splitter", solver=False)
    program = state.program
    cores = core_table(program)
    layers = layer_table(program)
    totals = CHIP.utilization(program)
    assert sum(r["synapses_used"] for r in cores) == totals["synapses"][0]
    assert sum(r["axons_used"] for r in cores) == totals["axons"][0]
    assert sum(r["synapses_used"] for r in layers) == totals["synapses"][0]
    assert sum(r["neurons_used"] for r in layers) == sum(r["neurons_used"] for r in cores)
    assert [r["layer"] for r in layers][:3] == ["a", "b", "out"]
    assert all(r["axons_used"] <= r["axons"] and r["neurons_used"] <= r["neurons"] for r in cores + layers)


def test_format_table():
    text = format_table(core_table(hand_program()), ["core", "label", "axons_used", "neuron_utilization"])
    lines = text.splitlines()
    assert lines[0].split() == ["core", "label", "axons_used", "neuron_utilization"]
    assert lines[1].split() == ["0", "a", "3", "37.5%"]
    assert format_table([]) == "(empty)"

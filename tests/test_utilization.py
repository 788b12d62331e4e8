"""Utilization of a program: which neurons it uses, and the report's tables per core and per layer
agree with the chip's totals."""

from __future__ import annotations

import numpy as np

from crossmap.chip import ChipSpec
from crossmap.program import Program
from crossmap.report import SPLITTERS, core_table, layer_table

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


def test_used_neurons_implement_a_deployed_neuron_have_a_synapse_or_send_spikes():
    prog = hand_program()
    used = prog.used_neurons()
    assert np.flatnonzero(used[0]).tolist() == [0, 1, 2]  # neuron 2 has a group and a synapse, no target
    assert np.flatnonzero(used[1]).tolist() == [0, 3]  # an output and a splitter
    prog.crossbar[1, 7, 5] = True  # a synapse alone makes a neuron used
    prog.target_core[1, 6] = 0  # and so does a target alone
    assert np.flatnonzero(prog.used_neurons()[1]).tolist() == [0, 3, 5, 6]
    assert CHIP.utilization(prog)["neurons"] == (7, 16)


def test_core_table_counts():
    rows = core_table(hand_program())
    assert [r["layer"] for r in rows] == ["a", "b"]
    assert (rows[0]["axons"], rows[0]["neurons"], rows[0]["synapses"]) == (3, 3, 5)
    assert (rows[1]["axons"], rows[1]["neurons"], rows[1]["synapses"]) == (3, 2, 3)
    assert [(r["x"], r["y"], r["chip"]) for r in rows] == [(0, 0, 0), (1, 0, 0)]


def test_layer_table_counts_copies_and_splitters():
    rows = {r["layer"]: r for r in layer_table(hand_program())}
    assert set(rows) == {"a", "b", SPLITTERS}
    a = rows["a"]
    assert (a["cores"], a["neurons"], a["copies"]) == (1, 3, 1)
    assert (a["axons"], a["synapses"], a["axons_available"], a["neurons_available"]) == (3, 5, 16, 8)
    assert (rows["b"]["axons"], rows["b"]["synapses"]) == (2, 2)
    assert (rows[SPLITTERS]["neurons"], rows[SPLITTERS]["axons"], rows[SPLITTERS]["copies"]) == (1, 1, 0)


def test_tables_agree_with_chip_utilization_on_a_partitioned_program():
    from tests.test_partition import partition, three_layer

    state = partition(three_layer(), fanout="splitter", solver=False)
    program = state.program
    cores = core_table(program)
    layers = layer_table(program)
    totals = CHIP.utilization(program)
    assert sum(r["synapses"] for r in cores) == totals["synapses"][0]
    assert sum(r["axons"] for r in cores) == totals["axons"][0]
    assert sum(r["neurons"] for r in cores) == totals["neurons"][0] == state.reports["partition"]["chip_neurons"]
    assert sum(r["synapses"] for r in layers) == totals["synapses"][0]
    assert sum(r["neurons"] for r in layers) == totals["neurons"][0]
    assert [r["layer"] for r in layers][:3] == ["a", "b", "out"]
    assert all(r["axons"] <= CHIP.axons_per_core and r["neurons"] <= CHIP.neurons_per_core for r in cores)
    assert all(r["axons"] <= r["axons_available"] and r["neurons"] <= r["neurons_available"] for r in layers)

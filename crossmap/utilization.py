"""Utilization tables of a program: per core and per layer, axons, neurons and synapses used
against what the cores offer. Used by ``crossmap report``.

A neuron is *used* when it implements a deployed neuron (provenance ``neuron_group`` >= 0), or
sends its spikes somewhere (a target core or an output port, e.g. a splitter). An axon is used
when some neuron of its core has a synapse on it, and a synapse is a set crossbar bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SPLITTERS = "(splitters)"


def used_neurons(program: Any) -> np.ndarray:
    """(cores, N) bool: neurons that implement a deployed neuron or send spikes."""
    return (program.neuron_group >= 0) | (program.target_core >= 0) | (program.output_port >= 0)


def _ratio(used: int, available: int) -> float:
    return round(used / available, 4) if available else 0.0


def core_table(program: Any) -> list[dict[str, Any]]:
    """One row per core: its label, position, and axons / neurons / synapses used and available,
    plus the input-map axons, output ports and splitter (or relay) neurons it holds."""
    chip = program.chip
    A, N = chip.axons_per_core, chip.neurons_per_core
    neurons = used_neurons(program)
    axons = program.crossbar.any(axis=2)
    synapses = program.crossbar.sum(axis=(1, 2))
    inputs = np.bincount(program.input_core, minlength=program.num_cores) if program.num_cores else np.zeros(0, int)
    helpers = neurons & (program.neuron_group < 0)
    rows = []
    for c in range(program.num_cores):
        label = program.core_labels[c] if program.core_labels else ""
        row = {"core": c, "label": label, "x": int(program.core_xy[c, 0]), "y": int(program.core_xy[c, 1]),
               "axons_used": int(axons[c].sum()), "axons": A,
               "neurons_used": int(neurons[c].sum()), "neurons": N,
               "synapses_used": int(synapses[c]), "synapses": A * N,
               "input_axons": int(inputs[c]), "output_ports": int((program.output_port[c] >= 0).sum()),
               "splitter_neurons": int(helpers[c].sum())}
        row["axon_utilization"] = _ratio(row["axons_used"], A)
        row["neuron_utilization"] = _ratio(row["neurons_used"], N)
        row["synapse_utilization"] = _ratio(row["synapses_used"], A * N)
        rows.append(row)
    return rows


def layer_table(program: Any) -> list[dict[str, Any]]:
    """One row per deployed group (in ``program.group_names`` order), then one for splitter or
    relay neurons if any: the cores it occupies, its chip neurons (and how many are extra copies),
    the axons its neurons read, its synapses, and what its cores offer in total (a core shared by
    two layers counts for both)."""
    chip = program.chip
    A, N = chip.axons_per_core, chip.neurons_per_core
    neurons = used_neurons(program)
    names = list(program.group_names) + [SPLITTERS]
    rows = []
    for g, name in enumerate(names):
        mask = (program.neuron_group == g) if name != SPLITTERS else (neurons & (program.neuron_group < 0))
        if name == SPLITTERS and not mask.any():
            continue
        cores = np.flatnonzero(mask.any(axis=1))
        axons_used = synapses_used = 0
        for c in cores:
            columns = program.crossbar[c][:, mask[c]]
            axons_used += int(columns.any(axis=1).sum())
            synapses_used += int(columns.sum())
        count = int(mask.sum())
        distinct = np.unique(program.neuron_index[mask]).size if name != SPLITTERS else count
        row = {"layer": name, "cores": int(cores.size), "neurons_used": count, "distinct_neurons": int(distinct),
               "copies": count - int(distinct), "neurons": int(cores.size) * N,
               "axons_used": axons_used, "axons": int(cores.size) * A,
               "synapses_used": synapses_used, "synapses": int(cores.size) * A * N}
        row["axon_utilization"] = _ratio(axons_used, row["axons"])
        row["neuron_utilization"] = _ratio(count, row["neurons"])
        row["synapse_utilization"] = _ratio(synapses_used, row["synapses"])
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Rows as an aligned plain-text table (all keys of the first row unless ``columns``);
    ``*_utilization`` columns are shown as percentages."""
    if not rows:
        return "(empty)"
    columns = columns or list(rows[0])
    cells = [[str(c) for c in columns]] + [[_cell(c, r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(line, widths)))
             for line in cells]
    return "\n".join(lines)


def _cell(column: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1%}" if column.endswith("_utilization") else f"{value:g}"
    return str(value)

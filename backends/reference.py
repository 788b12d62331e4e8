"""The reference backend: docs/chip-model.md written out as plain Python loops over samples, ticks,
cores, neurons and axons. It is slow and meant to be read; the fast ``emulator`` must equal it
bit for bit.

Each sample starts with every membrane potential ``V`` at ``initial_v``. Tick ``t`` of sample ``s``
(the PRNG's sample counter is ``sample_offset`` + the index in the batch; ``core`` is the core's
index in the program, ``neuron`` its index in the core):

1. Axon ``i`` of core ``c`` is active if an external input spike of tick ``t`` (through the input
   map) or a neuron spike fired at ``t - d`` with delay ``d`` targets it. Several sources on one
   axon merge as OR: the axon is active once.
2. Every neuron ``j``: ``V += sum`` over active axons ``i`` with ``crossbar[i, j] = 1`` of
   ``s = weight[j, axon_type[i]]``; then ``V`` saturates to ``[v_min, v_max]``.
   When ``stochastic_synapse[j, axon_type[i]]`` is set, the synapse adds ``sign(s)`` instead of
   ``s`` if ``r mod synapse_prob_den < |s|`` (probability ``|s| / 256`` on the default chip, where
   ``r mod 256 = r & 0xFF``) and 0 otherwise, with
   ``r = prng.draw(seed, SYNAPSE, sample, t, core, neuron, i)``.
3. ``V += leak``; saturate.
4. ``threshold = alpha + (r & threshold_mask)`` with ``r = prng.draw(seed, THRESHOLD, sample, t,
   core, neuron, 0)`` (just ``alpha`` when the mask is 0). If ``V >= threshold`` the neuron fires
   and resets by its mode: 0 ``V = reset_value``, 1 ``V -= alpha``, 2 none. Else if
   ``V < -beta``: ``V = -beta``.
5. A spike of a neuron with a target core is delivered at ``t + delay`` to ``(target_core,
   target_axon)``; a spike of a neuron with an output port is counted on that port at ``t``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from crossmap import prng

from crossmap.backends.common import prepare_run
from crossmap.backends.result import Result, make_result


def _saturate(v: int, lo: int, hi: int) -> int:
    return lo if v < lo else hi if v > hi else v


def run(program: Any, inputs: Any, ticks: int | None = None, **options: Any) -> Result:
    """Emulate ``program`` on input spikes with plain loops (options: seed, sample_offset, record)."""
    spec = prepare_run(program, inputs, ticks, options, "reference")
    chip = program.chip
    C, A, N = program.num_cores, chip.axons_per_core, chip.neurons_per_core
    crossbar = program.crossbar.tolist()
    axon_type = program.axon_type.tolist()
    weight = program.weight.tolist()
    stochastic = program.stochastic_synapse.tolist()
    alpha, beta, leak = program.alpha.tolist(), program.beta.tolist(), program.leak.tolist()
    reset_mode, reset_value = program.reset_mode.tolist(), program.reset_value.tolist()
    initial_v, mask = program.initial_v.tolist(), program.threshold_mask.tolist()
    target_core, target_axon = program.target_core.tolist(), program.target_axon.tolist()
    target_delay, output_port = program.target_delay.tolist(), program.output_port.tolist()
    xy = program.core_xy.tolist()
    input_map = list(zip(program.input_channel.tolist(), program.input_core.tolist(), program.input_axon.tolist()))
    spikes_in = spec.spikes.tolist()
    neuron_group = program.neuron_group.tolist()
    in_use = [[neuron_group[c][j] >= 0 or any(crossbar[c][i][j] for i in range(A)) or target_core[c][j] >= 0
               or output_port[c][j] >= 0 for j in range(N)] for c in range(C)]

    batch = spec.batch
    port_counts = np.zeros((batch, program.num_ports), np.int64)
    activity = {key: np.zeros(batch, np.int64) for key in
                ("synaptic_events", "neuron_updates", "spikes", "hops", "chip_crossings", "core_ticks")}
    recorded = np.zeros((spec.ticks, batch, C, N), bool) if spec.record else None

    for b in range(batch):
        sample = spec.sample_offset + b
        V = [list(row) for row in initial_v]
        pending: dict[int, set[tuple[int, int]]] = defaultdict(set)  # tick -> {(core, axon)}
        for t in range(spec.ticks):
            # 1. active axons: neuron spikes arriving now, OR external inputs of this tick
            active = pending.pop(t, set())
            if t < spec.input_ticks:
                for channel, core, axon in input_map:
                    if spikes_in[b][t][channel]:
                        active.add((core, axon))
            active_axons = [sorted(i for (core, i) in active if core == c) for c in range(C)]
            fired = []
            for c in range(C):
                activity["core_ticks"][b] += 1
                for j in range(N):
                    if in_use[c][j]:
                        activity["neuron_updates"][b] += 1
                    # 2. synaptic integration
                    total = 0
                    for i in active_axons[c]:
                        if not crossbar[c][i][j]:
                            continue
                        activity["synaptic_events"][b] += 1
                        g = axon_type[c][i]
                        s = weight[c][j][g]
                        if stochastic[c][j][g]:
                            r = int(prng.draw(spec.seed, prng.SYNAPSE, sample, t, c, j, i))
                            if r % chip.synapse_prob_den < abs(s):
                                total += (s > 0) - (s < 0)
                        else:
                            total += s
                    v = _saturate(V[c][j] + total, chip.v_min, chip.v_max)
                    # 3. leak
                    v = _saturate(v + leak[c][j], chip.v_min, chip.v_max)
                    # 4. threshold, reset, negative floor
                    threshold = alpha[c][j]
                    if mask[c][j]:
                        threshold += int(prng.draw(spec.seed, prng.THRESHOLD, sample, t, c, j, 0)) & mask[c][j]
                    if v >= threshold:
                        fired.append((c, j))
                        if reset_mode[c][j] == 0:
                            v = reset_value[c][j]
                        elif reset_mode[c][j] == 1:
                            v -= alpha[c][j]
                    elif v < -beta[c][j]:
                        v = -beta[c][j]
                    V[c][j] = v
            # 5. deliver this tick's spikes
            for c, j in fired:
                if recorded is not None:
                    recorded[t, b, c, j] = True
                if target_core[c][j] >= 0:
                    tc = target_core[c][j]
                    pending[t + target_delay[c][j]].add((tc, target_axon[c][j]))
                    activity["spikes"][b] += 1
                    (x0, y0), (x1, y1) = xy[c], xy[tc]
                    activity["hops"][b] += abs(x1 - x0) + abs(y1 - y0)
                    activity["chip_crossings"][b] += (abs(x1 // chip.mesh_x - x0 // chip.mesh_x)
                                                      + abs(y1 // chip.mesh_y - y0 // chip.mesh_y))
                elif output_port[c][j] >= 0:
                    port_counts[b, output_port[c][j]] += 1
                    activity["spikes"][b] += 1
    return make_result(program, port_counts, activity, spec.ticks, "reference", recorded)

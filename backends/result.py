"""What a backend returns: output counts, predictions, activity counters and the energy estimate.

Activity counters, each an int64 array with one value per sample, summed over all ticks of the run:

- ``synaptic_events``: pairs (active axon, connected neuron) per tick, i.e. for every tick and core
  the sum over active axons ``i`` of the number of neurons ``j`` with ``crossbar[i, j] = 1``. A
  stochastic synapse counts whether or not its draw adds anything; a connected synapse of weight 0
  counts too (the crossbar is read either way).
- ``neuron_updates``: neurons in use times ticks. A neuron is in use when it implements a deployed
  neuron, has at least one connected synapse or has a target (a core axon or an output port), as
  ``Program.used_neurons`` says; unused neurons are taken to be power-gated. The value is the same for every sample.
- ``spikes``: spikes sent, i.e. firings of neurons that have a target (core axon or output port).
  Firings of neurons without a target are not counted: they send no packet. External input spikes
  are not counted.
- ``hops``: for every spike routed to a core axon, ``|dx| + |dy|`` between the mesh positions of the
  source and the target core (dimension-ordered routing, x first then y). Spikes on output ports
  and external input spikes travel 0 hops.
- ``chip_crossings``: for every spike routed to a core axon, the chip boundaries its x-then-y route
  crosses: ``|cx1 - cx0| + |cy1 - cy0|`` with ``cx = x // mesh_x`` and ``cy = y // mesh_y``.
- ``core_ticks``: every core of the program counts each tick (for static power): cores x ticks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossmap.chip import EnergyModel

ACTIVITY_KEYS = ("synaptic_events", "neuron_updates", "spikes", "hops", "chip_crossings", "core_ticks")
# activity counter -> EnergyModel field (picojoules per event), and its name in the breakdown
ENERGY_COSTS = {
    "synaptic_events": ("synaptic_event_pj", "synaptic_events"),
    "neuron_updates": ("neuron_update_pj", "neuron_updates"),
    "spikes": ("spike_pj", "spikes"),
    "hops": ("hop_pj", "hops"),
    "chip_crossings": ("chip_crossing_pj", "chip_crossings"),
    "core_ticks": ("static_core_tick_pj", "static"),
}


@dataclass
class Result:
    """The outcome of emulating a batch of samples (see the module docstring for the counters).

    ``port_counts`` (batch, P) and ``class_counts`` (batch, num_classes) are int64 spike counts;
    ``predictions`` (batch,) is the class with the most spikes, ties to the lowest class (class 0
    when no output spiked). ``spikes`` holds every neuron's spikes per tick, bool
    (ticks, batch, cores, neurons), when the run was asked to ``record``; otherwise None.
    """

    port_counts: np.ndarray
    class_counts: np.ndarray
    predictions: np.ndarray
    synaptic_events: np.ndarray
    neuron_updates: np.ndarray
    spike_count: np.ndarray
    hops: np.ndarray
    chip_crossings: np.ndarray
    core_ticks: np.ndarray
    ticks: int
    backend: str
    energy_model: EnergyModel = field(default_factory=EnergyModel)
    spikes: np.ndarray | None = None

    @property
    def batch(self) -> int:
        """Number of samples."""
        return int(self.port_counts.shape[0])

    def activity(self) -> dict[str, np.ndarray]:
        """The activity counters by name, each (batch,) int64."""
        return {
            "synaptic_events": self.synaptic_events,
            "neuron_updates": self.neuron_updates,
            "spikes": self.spike_count,
            "hops": self.hops,
            "chip_crossings": self.chip_crossings,
            "core_ticks": self.core_ticks,
        }

    def energy(self) -> dict[str, np.ndarray]:
        """Energy per sample in joules, (batch,) float64 each: one entry per cost of the chip's
        energy model (``synaptic_events``, ``neuron_updates``, ``spikes``, ``hops``,
        ``chip_crossings``, ``static``) and their sum ``total``."""
        out: dict[str, np.ndarray] = {}
        total = np.zeros(self.batch, np.float64)
        for key, counts in self.activity().items():
            cost_field, name = ENERGY_COSTS[key]
            joules = counts.astype(np.float64) * getattr(self.energy_model, cost_field) * 1e-12
            out[name] = joules
            total += joules
        out["total"] = total
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-able means per sample: activity, energy in joules with its breakdown, the class
        spike counts and how often each class was predicted."""
        n = max(self.batch, 1)
        energy = self.energy()
        return {
            "backend": self.backend,
            "samples": self.batch,
            "ticks": int(self.ticks),
            "activity_per_sample": {k: float(v.sum()) / n for k, v in self.activity().items()},
            "energy_per_sample_j": float(energy["total"].sum()) / n,
            "energy_activity": f"measured: the activity counted while emulating these {self.batch} samples",
            "energy_breakdown_j": {k: float(v.sum()) / n for k, v in energy.items() if k != "total"},
            "class_counts_per_sample": (self.class_counts.sum(axis=0) / n).tolist(),
            "prediction_histogram": np.bincount(self.predictions, minlength=self.class_counts.shape[1]).tolist(),
        }


def make_result(program: Any, port_counts: np.ndarray, activity: dict[str, np.ndarray], ticks: int,
                backend: str, spikes: np.ndarray | None = None) -> Result:
    """Assemble a ``Result``: class counts from the ports' classes, predictions by argmax."""
    import scipy.sparse as sp

    port_counts = np.asarray(port_counts, dtype=np.int64)
    batch, ports = port_counts.shape
    votes = sp.csr_matrix((np.ones(ports, np.int64), (program.port_class, np.arange(ports))),
                          shape=(program.num_classes, ports))  # class x port: 1 where the port votes
    class_counts = np.ascontiguousarray((votes @ port_counts.T).T, dtype=np.int64)
    predictions = np.argmax(class_counts, axis=1).astype(np.int64)  # first maximum: ties to the lowest class
    counters = {k: np.asarray(activity[k], dtype=np.int64).reshape(batch) for k in ACTIVITY_KEYS}
    return Result(port_counts=port_counts, class_counts=class_counts, predictions=predictions,
                  synaptic_events=counters["synaptic_events"], neuron_updates=counters["neuron_updates"],
                  spike_count=counters["spikes"], hops=counters["hops"], chip_crossings=counters["chip_crossings"],
                  core_ticks=counters["core_ticks"], ticks=int(ticks), backend=backend,
                  energy_model=program.chip.energy, spikes=spikes)

"""The ``partition`` pass: deployed network -> logical cores (a Program with provisional
coordinates) and the logical core graph with expected spike traffic.

Every neuron goes on a core of at most N neurons whose neurons together read at most A axons
(an axon is one source with one axon type; neurons on a core share it). A neuron whose spikes
must reach several axons is copied (``fanout=copy``), feeds splitter neurons
(``fanout=splitter``; one extra hop, the layers are realigned by delaying later groups), or the
pass tries copies, splitters, and a per-group choice between them, and keeps the result with
the fewest cores, then the least traffic (``fanout=auto``; the report's ``fanout`` says which won).
Packing is greedy for every size (structural order, fewest new axons first) and improved with
CP-SAT on groups of at most ``solver_max_items`` neurons whose greedy packing is above their
lower bound, within ``time_limit`` (deterministic time, one worker, fixed seed); since the
solver's objective is local to a group, the pass also keeps the plain greedy result and returns
whichever is better for the whole network. Traffic is measured by simulating the deployed network on the
calibration inputs. With ``board=auto`` a network that needs more cores than the chip's board has
goes on the smallest board of such chips that holds it (``crossmap compile --chip truenorth-auto``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from crossmap.chip import smallest_board
from crossmap.deployed import DeployedNetwork
from crossmap.encoding import encode
from crossmap.errors import CrossmapError, PipelineError, ResourceError
from crossmap.memory import release_free_memory
from crossmap.parallel import in_background
from crossmap.passes.partition.build import Built, build_program
from crossmap.passes.partition.keys import GroupKeys, KeySpace, group_keys, topological_groups
from crossmap.passes.partition.pack import conflict_bound_of_rows
from crossmap.passes.partition.plan import (FANOUT_MODES, PackOptions, Plan, check_capacity, input_groups,
                                            plan_partition)
from crossmap.pipeline import CompileState


BOARD_MODES = ("fixed", "auto")
SIMULATED_STATES = 1 << 23  # neuron states (samples x neurons) the traffic simulation holds at once
# networks with this many neurons (from, to) measure their traffic in a spare process while the
# greedy packing runs: smaller ones are quick, larger ones would hold two big working sets at once
BACKGROUND_TRAFFIC_NEURONS = (10_000, 500_000)


@dataclass
class Partition:
    """Cut the deployed network into logical cores (see the module docstring)."""

    fanout: str = "copy"
    solver: bool = True
    time_limit: float = 5.0
    solver_max_items: int = 48
    merge_groups: bool = True
    traffic_samples: int = 32
    board: str = "fixed"  # or "auto": grow the board to the smallest one that holds the cores

    name: ClassVar[str] = "partition"
    reads: ClassVar[tuple[str, ...]] = ("deployed",)
    produces: ClassVar[tuple[str, ...]] = ("program", "core_graph")

    def run(self, state: CompileState) -> CompileState:
        """Write ``state.program``, ``state.core_graph`` and ``state.reports['partition']``."""
        self._check_options()
        net = state.deployed
        if net is None:
            raise PipelineError("pass 'partition' needs a deployed network, and none was made; put a binarize pass "
                                "(binarize_deterministic, binarize_stochastic or binarize_lsq) before it")
        if net.chip != state.chip:
            net = dataclasses.replace(net, chip=state.chip)
        net.validate()
        space, keys = group_keys(net)
        release_free_memory()
        check_capacity(net, keys, grow_board=self.board == "auto")  # before the slow work
        topo = topological_groups(net)
        state.log(f"partition: {net.num_neurons} neurons in {len(net.groups)} groups; measuring traffic")
        # the greedy packing does not read the traffic: with a spare process it is measured meanwhile
        traffic = in_background(measure_rates, (net, state.calibration, state.seed, self.traffic_samples),
                                enabled=state.jobs > 1 and
                                BACKGROUND_TRAFFIC_NEURONS[0] <= net.num_neurons <= BACKGROUND_TRAFFIC_NEURONS[1])
        key_rates = functools.cache(lambda: _key_rates(space, keys, *traffic.result()[:2], net))
        if not traffic.forked:
            key_rates()  # now, as the traffic is known

        input_fed = input_groups(net)
        if "deployed" in state.last_reads:  # the synapses are in the keys now, and nothing later reads them
            state.deployed = None
            net = net.without_synapses()
        release_free_memory()  # the simulation's state, and the synapses when they went
        modes = ["copy", "splitter", "mixed"] if self.fanout == "auto" else [self.fanout]
        solver_runs = [False, True] if self.solver else [False]
        candidates: list[dict[str, Any]] = []
        errors: list[ResourceError] = []
        best: tuple[Plan, Built] | None = None
        memo: dict = {}  # greedy packings per group, shared by the runs without and with the solver
        for mode in modes:
            solver_wanted = True
            for use_solver in solver_runs:
                if use_solver and not solver_wanted:
                    break  # no group qualified for the solver: the same packing as the greedy one
                options = PackOptions(mode=mode, solver=use_solver, solver_max_items=self.solver_max_items,
                                      time_limit=self.time_limit / len(modes), merge_groups=self.merge_groups,
                                      seed=state.seed, log=state.log, jobs=state.jobs)
                state.log(f"partition: packing with fanout={mode}{' and CP-SAT' if use_solver else ''}")
                try:
                    # only the solver weighs axons by their traffic
                    plan = plan_partition(net, space, keys, topo, key_rates() if use_solver else {}, options, memo)
                    solver_wanted = plan.solver_wanted
                    rates, input_rate, _ = traffic.result()
                    if mode == modes[-1] and (use_solver or not self.solver or not solver_wanted):
                        memo.clear()  # no packing follows: its memory goes to laying out the program
                        key_rates().clear()
                    release_free_memory()  # the packing's scratch, before the program is laid out
                    if use_solver and not plan.solver_runs:
                        break  # no group went to the solver: the same packing as the greedy one
                    built = build_program(self._on_board(net, len(plan.cores)), plan, space, keys, topo, rates,
                                          input_rate, input_fed)
                except ResourceError as exc:
                    if self.fanout != "auto":
                        raise
                    errors.append(exc)
                    candidates.append({"fanout": mode, "solver": use_solver, "error": str(exc)})
                    break
                candidates.append({"fanout": mode, "solver": use_solver, "cores": built.program.num_cores,
                                   "traffic": round(built.traffic, 6), "latency": built.program.latency})
                score = (built.program.num_cores, built.traffic)
                if best is None or score < (best[1].program.num_cores, best[1].traffic):
                    best = (plan, built)
        if best is None:
            raise errors[0]
        plan, built = best
        traffic_source = traffic.result()[2]
        state.chip = built.program.chip
        state.program = built.program
        state.core_graph = built.graph
        state.reports[self.name] = _report(self, net, plan, built, keys, candidates, traffic_source)
        return state

    def _on_board(self, net: DeployedNetwork, cores: int) -> DeployedNetwork:
        """``net`` on the smallest board of its chips holding ``cores`` cores when ``board=auto``
        and its own board is too small; else ``net`` unchanged."""
        chip = net.chip
        if self.board != "auto" or cores <= chip.max_cores:
            return net
        bx, by = smallest_board(chip, cores)
        return dataclasses.replace(net, chip=chip.replace(board_x=bx, board_y=by))

    def _check_options(self) -> None:
        if self.board not in BOARD_MODES:
            raise PipelineError(f"pass 'partition' option board={self.board!r} is unknown; choose one of "
                                f"{', '.join(BOARD_MODES)}")
        if self.fanout not in FANOUT_MODES:
            raise PipelineError(f"pass 'partition' option fanout={self.fanout!r} is unknown; choose one of "
                                f"{', '.join(FANOUT_MODES)}")
        if self.time_limit < 0 or self.solver_max_items < 0 or self.traffic_samples < 1:
            raise PipelineError(f"pass 'partition': time_limit = {self.time_limit} and solver_max_items = "
                                f"{self.solver_max_items} must be >= 0 and traffic_samples = {self.traffic_samples} "
                                f">= 1")


def calibration_spikes(net: DeployedNetwork, calibration: np.ndarray | None, seed: int,
                       samples: int) -> tuple[np.ndarray, str]:
    """Input spikes (batch, ticks, channels) to measure traffic on, and where they came from: the
    encoded calibration inputs, or a fixed random 0/1 input (seeded) when there are none."""
    if calibration is not None:
        spikes = np.asarray(encode(net.encoding, np.asarray(calibration)[:samples]))
        if spikes.ndim == 2:
            spikes = spikes[:, None, :]
        return spikes.astype(bool), "calibration"
    rng = np.random.default_rng(seed)
    return rng.random((samples, int(net.input_ticks), int(net.num_inputs))) < 0.5, "random"


def measure_rates(net: DeployedNetwork, calibration: np.ndarray | None, seed: int,
                  samples: int) -> tuple[dict[str, np.ndarray], np.ndarray, str]:
    """Expected spikes per sample of every neuron (by group name) and every input channel, from
    ``DeployedNetwork.simulate``; stochastic networks count one spike per neuron and sample."""
    spikes, source = calibration_spikes(net, calibration, seed, samples)
    input_rate = spikes.sum(axis=1).mean(axis=0).astype(np.float64)
    totals = {g.name: np.zeros(g.size, np.int64) for g in net.groups}
    chunk = max(1, SIMULATED_STATES // max(1, net.num_neurons))  # samples at once: bounded memory
    try:
        for start in range(0, spikes.shape[0], chunk):
            counts = net.simulate(spikes[start:start + chunk], count=True)["spike_counts"]
            for name, total in counts.items():
                totals[name] += total
    except CrossmapError:
        return {g.name: np.ones(g.size) for g in net.groups}, input_rate, "unit (stochastic network)"
    rates = {name: total / spikes.shape[0] for name, total in totals.items()}
    return rates, input_rate, f"simulate ({source} input, {spikes.shape[0]} samples)"


def _key_rates(space: KeySpace, keys: list[GroupKeys], rates: dict[str, np.ndarray], input_rate: np.ndarray,
               net: DeployedNetwork) -> dict[int, float]:
    """Expected spikes per sample on each axon key."""
    flat = np.concatenate([input_rate] + [rates[g.name] for g in net.groups])
    out: dict[int, float] = {}
    for gk in keys:
        for key, source in zip(gk.keys.tolist(), space.source_of(gk.keys).tolist()):
            out[key] = float(flat[source])
    return out


def _global_reads(keys: list[GroupKeys], every: np.ndarray, rows: np.ndarray) -> sp.csr_matrix:
    """Rows ``rows`` of all groups' reads stacked in group order, with columns numbered by their
    position in ``every`` (the network's sorted distinct keys)."""
    starts = np.cumsum([0] + [gk.reads.shape[0] for gk in keys])
    group = np.searchsorted(starts, rows, side="right") - 1
    parts = []
    for g, row in zip(group.tolist(), (rows - starts[group]).tolist()):
        reads = keys[g].reads
        cols = reads.indices[reads.indptr[row]:reads.indptr[row + 1]]
        parts.append(np.searchsorted(every, keys[g].keys[cols]))
    indptr = np.concatenate([[0], np.cumsum([p.size for p in parts])])
    indices = np.concatenate(parts + [np.zeros(0, np.int64)])
    return sp.csr_matrix((np.ones(indices.size, bool), indices, indptr), shape=(rows.size, every.size))


def _report(p: Partition, net: DeployedNetwork, plan: Plan, built: Built, keys: list[GroupKeys],
            candidates: list[dict[str, Any]], traffic_source: str) -> dict[str, Any]:
    chip = net.chip
    every = np.unique(np.concatenate([gk.keys for gk in keys] + [np.zeros(0, np.int64)]))
    distinct = every.size
    neuron_bound = math.ceil(net.num_neurons / chip.neurons_per_core)
    axon_bound = math.ceil(distinct / chip.axons_per_core)
    clique_bound = conflict_bound_of_rows(np.concatenate([gk.fan_in for gk in keys] + [np.zeros(0, np.int64)]),
                                          lambda rows: _global_reads(keys, every, rows), chip.axons_per_core)
    bound = max(neuron_bound, axon_bound, clique_bound)
    prog, graph = built.program, built.graph
    shifts = {g.name: s for g, s in zip(net.groups, built.shifts) if s}
    return {
        "fanout": plan.mode,
        "fanout_option": p.fanout,
        "cores": prog.num_cores,
        "lower_bound": {"cores": bound, "neurons": neuron_bound, "axons": axon_bound, "conflicts": clique_bound},
        "gap": prog.num_cores - bound,
        "neurons": net.num_neurons,
        "distinct_axons": int(distinct),
        "chip_neurons": int(np.count_nonzero(prog.used_neurons())),
        "copies": built.copies,
        "splitter_neurons": built.splitter_neurons,
        "splitter_cores": sum(1 for c in plan.cores if not c.members),
        "delay": {"group_shifts": shifts, "added_latency": built.output_shift, "delays_changed": built.delays_changed},
        "latency": int(prog.latency),
        "traffic": {"source": traffic_source, "spikes_per_sample": round(built.traffic, 6),
                    "between_cores": round(float(sum(d["traffic"] for _, _, d in graph.edges(data=True))), 6),
                    "input": round(float(sum(d["input_traffic"] for _, d in graph.nodes(data=True))), 6)},
        "groups": plan.group_rows,
        "solver": plan.solver_runs,
        "candidates": candidates,
    }

"""Stage 5, ``route``: dimension-ordered (x first, then y) routes for every routed neuron, the spike
load per directed mesh link, chip crossings, hops, and the latency in ticks from input to output;
the core-to-core traffic the routes carry becomes part of the program (``Program.traffic``).

Delays are a property of each neuron (set by the earlier stages); this pass checks them against
the chip's delay range and, when ``hops_per_tick`` models a router speed, against the ticks a
route needs. A route that would need a longer delay than the neuron has is an error: nothing is
truncated silently.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from crossmap.errors import PipelineError, ProgramError, ResourceError
from crossmap.mesh import directed_traffic, program_connections
from crossmap.pipeline import CompileState
from crossmap.program import CoreTraffic, Program
from crossmap.routes import latency_ticks, route_summary, route_table


@dataclass
class Route:
    """Routing options. ``hops_per_tick``: mesh hops a spike travels per tick (0: any distance
    within its delay, the chip model of docs/chip-model.md). ``hottest``: links listed in the report."""

    hops_per_tick: int = 0
    hottest: int = 10

    name: ClassVar[str] = "route"
    reads: ClassVar[tuple[str, ...]] = ("program",)
    produces: ClassVar[tuple[str, ...]] = ("traffic",)

    def run(self, state: CompileState) -> CompileState:
        """Check every route's delay, set ``state.program.traffic`` and write ``state.reports['route']``."""
        if self.hops_per_tick < 0 or self.hottest < 0:
            raise PipelineError(f"pass 'route': hops_per_tick = {self.hops_per_tick} and hottest = {self.hottest} "
                                f"must be >= 0")
        program = state.program
        if program is None:
            raise PipelineError("pass 'route' needs a placed program; put 'partition' and 'place' before 'route'")
        table = route_table(program)
        check_delays(program, table, self.hops_per_tick)
        if state.core_graph is not None:
            traffic = CoreTraffic(*directed_traffic(state.core_graph), measured=True)
        else:
            traffic = CoreTraffic(*program_connections(program), measured=False)
        report: dict[str, Any] = {"traffic": traffic.kind}
        report.update(route_summary(program, traffic.src, traffic.dst, traffic.spikes, self.hottest))
        latency = latency_ticks(program)
        report["latency_ticks"] = latency
        report["program_latency"] = int(program.latency)
        if latency is not None and latency > program.latency:
            raise ProgramError(f"route: the longest chain of delays from an input to an output port takes "
                               f"{latency} ticks but program.latency is {program.latency}; outputs after tick "
                               f"{program.latency} would be lost. The partition pass must set latency = {latency}")
        if latency is not None and latency < program.latency:
            message = (f"route: program.latency = {program.latency} ticks, but the longest input-to-output chain "
                       f"of delays takes {latency}; the emulator runs {program.latency - latency} idle ticks")
            warnings.warn(message, UserWarning, stacklevel=2)
            report["warnings"] = [message]
        program.traffic = traffic
        state.reports["route"] = report
        return state


def check_delays(program: Program, table: dict[str, np.ndarray], hops_per_tick: int) -> None:
    """Raise ``ResourceError`` for a delay outside the chip's range or shorter than its route."""
    chip = program.chip
    delay = table["delay"]
    bad = np.nonzero((delay < chip.delay_min) | (delay > chip.delay_max))[0]
    if bad.size:
        k = int(bad[0])
        raise ResourceError(f"route: neuron {int(table['neuron'][k])} of core {int(table['core'][k])} has delay "
                            f"{int(delay[k])}, the chip allows {chip.delay_min}..{chip.delay_max} ticks "
                            f"({bad.size} neurons out of range); insert relay neurons or use a chip spec with a "
                            f"wider delay range")
    if hops_per_tick <= 0:
        return
    hops = np.abs(table["dx"]) + np.abs(table["dy"])
    need = np.ceil(hops / hops_per_tick).astype(np.int64)
    short = np.nonzero(need > delay)[0]
    if short.size:
        k = int(short[np.argmax(need[short] - delay[short])])
        remedy = ("raise the neuron's delay" if need[k] <= chip.delay_max else
                  f"no delay fits (the chip allows up to {chip.delay_max}): place the cores closer or add a relay")
        raise ResourceError(f"route: neuron {int(table['neuron'][k])} of core {int(table['core'][k])} has delay "
                            f"{int(delay[k])} ticks but its route of {int(hops[k])} hops needs "
                            f"{int(need[k])} at {hops_per_tick} hops per tick ({short.size} routes too slow); "
                            f"{remedy}")

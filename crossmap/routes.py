"""Routes on the board mesh, shared by the route pass and the report: the relative target (dx, dy,
axon, delay) of every routed neuron, the spike load of every directed link under dimension-ordered
(x first, then y) routing, and the latency of a program in ticks (the longest chain of delays
from an input axon to an output port).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np

from crossmap.chip import ChipSpec
from crossmap.errors import ProgramError

if TYPE_CHECKING:
    from crossmap.program import Program


def route_table(program: Program) -> dict[str, np.ndarray]:
    """Every routed neuron as arrays ``core``, ``neuron``, ``dx``, ``dy``, ``axon``, ``delay``:
    the target is (dx, dy) cores away from the source on the board mesh."""
    core, neuron = np.nonzero(program.target_core >= 0)
    target = program.target_core[core, neuron]
    xy = program.core_xy.astype(np.int64)
    return {
        "core": core.astype(np.int64),
        "neuron": neuron.astype(np.int64),
        "dx": xy[target, 0] - xy[core, 0],
        "dy": xy[target, 1] - xy[core, 1],
        "axon": program.target_axon[core, neuron].astype(np.int64),
        "delay": program.target_delay[core, neuron].astype(np.int64),
    }


@dataclass
class LinkLoads:
    """Spikes per tick on each directed link of the board mesh. ``east[y, x]`` is the link
    (x, y) -> (x+1, y), ``west[y, x]`` the link (x+1, y) -> (x, y), ``north[y, x]`` the link
    (x, y) -> (x, y+1), ``south[y, x]`` the link (x, y+1) -> (x, y)."""

    east: np.ndarray  # (H, W-1)
    west: np.ndarray
    north: np.ndarray  # (H-1, W)
    south: np.ndarray

    @property
    def count(self) -> int:
        """Number of directed links on the board."""
        return sum(a.size for a in (self.east, self.west, self.north, self.south))

    def values(self) -> np.ndarray:
        """All link loads, flat."""
        return np.concatenate([a.reshape(-1) for a in (self.east, self.west, self.north, self.south)])

    def undirected(self) -> tuple[np.ndarray, np.ndarray]:
        """Load of each horizontal (H, W-1) and vertical (H-1, W) mesh edge, both directions summed."""
        return self.east + self.west, self.north + self.south

    def hottest(self, count: int = 10) -> list[dict[str, Any]]:
        """The ``count`` most loaded links as dicts with ``from``, ``to`` and ``load``."""
        rows = []
        for name, arr, step in (("east", self.east, (1, 0)), ("west", self.west, (-1, 0)),
                                ("north", self.north, (0, 1)), ("south", self.south, (0, -1))):
            ys, xs = np.nonzero(arr > 0)
            for y, x, load in zip(ys.tolist(), xs.tolist(), arr[ys, xs].tolist()):
                src = (x + 1, y) if name == "west" else ((x, y + 1) if name == "south" else (x, y))
                dst = (src[0] + step[0], src[1] + step[1])
                rows.append({"from": list(src), "to": list(dst), "load": float(load)})
        rows.sort(key=lambda r: (-r["load"], r["from"], r["to"]))
        return rows[:count]


def link_loads(chip: ChipSpec, core_xy: np.ndarray, src: np.ndarray, dst: np.ndarray, traffic: np.ndarray,
               ticks: int) -> LinkLoads:
    """Per-link spikes per tick when ``traffic[e]`` spikes per sample go from core ``src[e]`` to
    core ``dst[e]`` along x-then-y routes and a sample lasts ``ticks`` ticks."""
    width, height = chip.grid_x, chip.grid_y
    xy = np.asarray(core_xy, np.int64)
    x1, y1 = xy[src, 0], xy[src, 1]
    x2, y2 = xy[dst, 0], xy[dst, 1]
    t = np.asarray(traffic, np.float64)
    # difference arrays: a route adds t to a run of links; cumulative sums recover the loads
    east = np.zeros((height, width + 1))
    west = np.zeros((height, width + 1))
    north = np.zeros((height + 1, width))
    south = np.zeros((height + 1, width))
    go = x2 > x1
    np.add.at(east, (y1[go], x1[go]), t[go])
    np.add.at(east, (y1[go], x2[go]), -t[go])
    go = x2 < x1
    np.add.at(west, (y1[go], x2[go]), t[go])
    np.add.at(west, (y1[go], x1[go]), -t[go])
    go = y2 > y1  # the y leg runs in the target's column
    np.add.at(north, (y1[go], x2[go]), t[go])
    np.add.at(north, (y2[go], x2[go]), -t[go])
    go = y2 < y1
    np.add.at(south, (y2[go], x2[go]), t[go])
    np.add.at(south, (y1[go], x2[go]), -t[go])
    scale = 1.0 / max(1, int(ticks))
    tiny = 1e-9 * (float(np.abs(t).sum()) + 1.0)  # rounding left over by the cumulative sums

    def settle(arr: np.ndarray) -> np.ndarray:
        return np.where(np.abs(arr) < tiny, 0.0, arr) * scale

    return LinkLoads(east=settle(np.cumsum(east, axis=1)[:, :width - 1]),
                     west=settle(np.cumsum(west, axis=1)[:, :width - 1]),
                     north=settle(np.cumsum(north, axis=0)[:height - 1, :]),
                     south=settle(np.cumsum(south, axis=0)[:height - 1, :]))


def chip_crossing_links(chip: ChipSpec, loads: LinkLoads) -> float:
    """Spikes per tick on links that leave a chip."""
    horizontal, vertical = loads.undirected()
    xs = np.arange(chip.grid_x - 1)
    ys = np.arange(chip.grid_y - 1)
    h_cross = (xs + 1) % chip.mesh_x == 0
    v_cross = (ys + 1) % chip.mesh_y == 0
    return float(horizontal[:, h_cross].sum() + vertical[v_cross, :].sum())


def latency_ticks(program: Program) -> int | None:
    """Ticks from an input spike to the last output spike it can cause: the longest chain of
    delays from an axon driven by an input channel to a neuron with an output port (a neuron
    fires in the tick its axons are active; an output is recorded in the tick it fires).
    None when no output port is reachable from the inputs. Raises ``ProgramError`` when a loop of
    neurons reachable from the inputs makes the chain unbounded."""
    C = program.num_cores
    if C == 0:
        return None
    arrival = np.full((C, program.chip.axons_per_core), -1, np.int64)  # latest arrival tick per axon
    arrival[program.input_core, program.input_axon] = 0
    fire = np.full(program.target_core.shape, -1, np.int64)
    graph = nx.DiGraph()
    graph.add_nodes_from(range(C))
    routed = program.target_core >= 0
    src_core = np.nonzero(routed)[0]
    pairs = np.unique(src_core * C + program.target_core[routed].astype(np.int64))  # (source, target) core pairs
    graph.add_edges_from(zip((pairs // C).tolist(), (pairs % C).tolist()))
    condensed = nx.condensation(graph)
    for component in nx.topological_sort(condensed):
        members = sorted(condensed.nodes[component]["members"])
        cyclic = len(members) > 1 or graph.has_edge(members[0], members[0])
        # without a loop, sweeps settle within one more than the longest chain of neurons here
        limit = int(routed[members].sum()) + 1
        for round_ in range(limit + 1 if cyclic else 1):
            changed = False
            for core in members:
                changed |= _fire_and_send(program, core, arrival, fire)
            if not cyclic or not changed:
                break
            if round_ == limit:
                raise ProgramError(f"cores {members[:8]} form a loop of neurons reachable from the inputs; "
                                   f"the input-to-output latency is unbounded. Break the loop or set "
                                   f"program.latency by hand and skip the route pass")
    outputs = fire[program.output_port >= 0]
    reached = outputs[outputs >= 0]
    return int(reached.max()) if reached.size else None


def _fire_and_send(program: Program, core: int, arrival: np.ndarray, fire: np.ndarray) -> bool:
    """Update the latest firing tick of ``core``'s neurons from its axons' arrival ticks and
    push them to the target axons; True when some target axon's arrival tick grew."""
    times = arrival[core]
    active = times >= 0
    if not active.any():
        return False
    latest = np.where(program.crossbar[core][active], times[active][:, None], -1).max(axis=0)
    fire[core] = np.maximum(fire[core], latest)
    sending = (program.target_core[core] >= 0) & (fire[core] >= 0)
    if not sending.any():
        return False
    tc = program.target_core[core][sending]
    ta = program.target_axon[core][sending]
    when = fire[core][sending] + program.target_delay[core][sending]
    before = arrival[tc, ta].copy()
    np.maximum.at(arrival, (tc, ta), when)
    return bool((arrival[tc, ta] > before).any())


def route_summary(program: Program, src: np.ndarray, dst: np.ndarray, traffic: np.ndarray,
                  hottest: int = 10) -> dict[str, Any]:
    """Hop, crossing and link-load figures of a placed program whose cores send ``traffic[e]``
    spikes per sample from ``src[e]`` to ``dst[e]``."""
    chip = program.chip
    table = route_table(program)
    hops = np.abs(table["dx"]) + np.abs(table["dy"])
    xy = program.core_xy.astype(np.int64)
    chip_of = chip.chip_of(xy[:, 0], xy[:, 1])
    crossing_routes = chip_of[table["core"]] != chip_of[program.target_core[table["core"], table["neuron"]]]
    src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
    traffic = np.asarray(traffic, np.float64)
    edge_hops = np.abs(xy[src] - xy[dst]).sum(axis=1) if src.size else np.zeros(0)
    cx, cy = xy[:, 0] // chip.mesh_x, xy[:, 1] // chip.mesh_y
    edge_crossings = (np.abs(cx[src] - cx[dst]) + np.abs(cy[src] - cy[dst])) if src.size else np.zeros(0)
    ticks = max(1, program.total_ticks)
    loads = link_loads(chip, xy, src, dst, traffic, ticks)
    values = loads.values()
    used = values[values > 0]
    return {
        "connections": int(hops.size),
        "hops_total": int(hops.sum()),
        "hops_mean": float(hops.mean()) if hops.size else 0.0,
        "hops_max": int(hops.max()) if hops.size else 0,
        "max_abs_dx": int(np.abs(table["dx"]).max()) if hops.size else 0,
        "max_abs_dy": int(np.abs(table["dy"]).max()) if hops.size else 0,
        "chip_crossing_connections": int(crossing_routes.sum()),
        "delay_range_used": [int(table["delay"].min()), int(table["delay"].max())] if hops.size else None,
        "spikes_per_sample": float(traffic.sum()),
        "spike_hops_per_sample": float(np.dot(traffic, edge_hops)),
        "chip_crossings_per_sample": float(np.dot(traffic, edge_crossings)),
        "ticks": ticks,
        "links_total": loads.count,
        "links_used": int(used.size),
        "link_load_max": float(values.max()) if values.size else 0.0,
        "link_load_mean": float(values.mean()) if values.size else 0.0,
        "link_load_mean_used": float(used.mean()) if used.size else 0.0,
        "chip_boundary_load": chip_crossing_links(chip, loads),
        "hottest_links": loads.hottest(hottest),
    }

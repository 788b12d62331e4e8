"""What a user reads about a compiled program: resources used per layer and per core, placement
cost against its bound and against random and row-major placements, link loads, latency and an
energy estimate per sample; as text tables, JSON, pictures (PNG and SVG) and one HTML page.

Figures come from the program and what it carries: the passes' reports (``Program.reports``: the
place pass's cost, bound and reference placements, the route pass's link loads and latency) and
the core traffic the compiler measured (``Program.traffic``), which the link loads and the energy
estimate need. A program without them (saved by hand, or compiled without place and route) still
gets a report: the cheap figures are computed from the program (placement cost, reference
placements, link loads, latency, with routed neurons standing in for traffic), the placement lower
bound is left out. Pictures and the HTML page are in ``crossmap.report_pictures``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crossmap.errors import ProgramError
from crossmap.jsonio import jsonable
from crossmap.mesh import (Mesh, default_crossing_penalty, edges_from_arrays, placement_cost, program_connections,
                           random_cells, row_major_cells)
from crossmap.program import CoreTraffic, Program
from crossmap.routes import latency_ticks, route_summary

SPLITTERS = "(splitters)"  # the layer row of neurons that implement no deployed neuron


# ---------------------------------------------------------------------------------------- data
def build_report(program: Program, source: str = "", hottest: int = 10) -> dict[str, Any]:
    """Every figure of the report as one JSON-able dict."""
    reports = program.reports
    chip = program.chip
    traffic = program_traffic(program)
    util = chip.utilization(program)
    out: dict[str, Any] = {
        "program": {
            "path": source,
            "chip": chip.name,
            "board": f"{chip.board_x} x {chip.board_y} chips of {chip.mesh_x} x {chip.mesh_y} cores",
            "cores": program.num_cores,
            "inputs": int(program.num_inputs),
            "classes": int(program.num_classes),
            "input_ticks": int(program.input_ticks),
            "latency_ticks": int(program.latency),
            "ticks_per_sample": int(program.total_ticks),
            "pipeline": program.metadata.get("pipeline"),
            "has_compiler_report": bool(reports),
        },
        "resources": {k: {"used": u, "available": a, "fraction": (u / a if a else 0.0)} for k, (u, a) in util.items()},
        "layers": layer_table(program),
        "cores": core_table(program),
        "placement": placement_figures(program, traffic),
        "routing": routing_figures(program, traffic, hottest),
        "energy": energy_estimate(program, traffic),
        "passes": {name: _summary(rep) for name, rep in sorted(reports.items()) if name not in ("place", "route")},
    }
    return jsonable(out)


def program_traffic(program: Program) -> CoreTraffic:
    """The program's core traffic; the routed neurons per core pair when it carries none."""
    if program.traffic is not None:
        return program.traffic
    return CoreTraffic(*program_connections(program), measured=False)


def core_layers(program: Program) -> list[str]:
    """The layer of each core: the deployed group most of its neurons come from, else its label."""
    names = list(program.group_names)
    layers = []
    for c in range(program.num_cores):
        groups = program.neuron_group[c]
        groups = groups[(groups >= 0) & (groups < len(names))]
        if groups.size:
            layers.append(names[int(np.bincount(groups).argmax())])
        elif program.core_labels:
            layers.append(str(program.core_labels[c]))
        else:
            layers.append("-")
    return layers


def core_table(program: Program) -> list[dict[str, Any]]:
    """One row per core: position, chip, layer, and axons, neurons (``Program.used_neurons``) and
    synapses used; a core offers ``chip.axons_per_core`` axons and ``chip.neurons_per_core`` neurons."""
    axons = np.count_nonzero(program.crossbar.any(axis=2), axis=1)
    neurons = np.count_nonzero(program.used_neurons(), axis=1)
    synapses = np.count_nonzero(program.crossbar.reshape(program.num_cores, -1), axis=1)
    layers = core_layers(program)
    xy = program.core_xy
    chips = program.chip.chip_of(xy[:, 0], xy[:, 1])
    return [{"core": c, "x": int(xy[c, 0]), "y": int(xy[c, 1]), "chip": int(chips[c]), "layer": layers[c],
             "axons": int(axons[c]), "neurons": int(neurons[c]), "synapses": int(synapses[c])}
            for c in range(program.num_cores)]


def layer_table(program: Program) -> list[dict[str, Any]]:
    """One row per deployed group (in ``program.group_names`` order), then one for the used
    neurons that implement no deployed neuron (splitters) if any: the cores it occupies, its
    chip neurons (``copies``: how many are extra copies of a deployed neuron), the axons its
    neurons read and its synapses, and what its cores offer (a core shared by two layers counts
    for both)."""
    chip = program.chip
    A, N = chip.axons_per_core, chip.neurons_per_core
    used = program.used_neurons()
    rows = []
    for g, name in enumerate(list(program.group_names) + [SPLITTERS]):
        mask = (program.neuron_group == g) if name != SPLITTERS else (used & (program.neuron_group < 0))
        if name == SPLITTERS and not mask.any():
            continue
        cores = np.flatnonzero(mask.any(axis=1))
        axons = synapses = 0
        for c in cores:
            columns = program.crossbar[c][:, mask[c]]
            axons += int(columns.any(axis=1).sum())
            synapses += int(columns.sum())
        neurons = int(mask.sum())
        distinct = int(np.unique(program.neuron_index[mask]).size) if name != SPLITTERS else neurons
        rows.append({"layer": name, "cores": int(cores.size), "axons": axons, "neurons": neurons,
                     "copies": neurons - distinct, "synapses": synapses,
                     "axons_available": int(cores.size) * A, "neurons_available": int(cores.size) * N,
                     "synapses_available": int(cores.size) * A * N})
    return rows


def placement_figures(program: Program, traffic: CoreTraffic) -> dict[str, Any]:
    """Placement cost of the program's core_xy, its lower bound, and the costs of random and
    row-major placements: from the place pass's report when the program carries one, else the
    cost and the reference placements computed from the program (no lower bound)."""
    place = program.reports.get("place")
    if place:
        out = {key: place.get(key) for key in ("traffic", "lower_bound", "random", "row_major", "ratio_to_bound",
                                               "ratio_to_random", "chip_crossing_penalty")}
        out["cost"] = place.get("objective")
        out["pass"] = {k: v for k, v in place.items() if k != "stages"}
        out["stages"] = place.get("stages", [])
        return out
    chip = program.chip
    mesh = Mesh(chip, default_crossing_penalty(chip))
    n = program.num_cores
    edges = edges_from_arrays(n, traffic.src, traffic.dst, traffic.spikes)
    cost = placement_cost(mesh, edges, mesh.cell(program.core_xy[:, 0], program.core_xy[:, 1]).astype(np.int64))
    random = placement_cost(mesh, edges, random_cells(mesh, n, 0))
    row_major = placement_cost(mesh, edges, row_major_cells(mesh, n))
    return {
        "traffic": traffic.kind,
        "cost": cost,
        "lower_bound": None,
        "random": random,
        "row_major": row_major,
        "ratio_to_bound": None,
        "ratio_to_random": cost / random if random > 0 else None,
        "chip_crossing_penalty": mesh.penalty,
    }


def routing_figures(program: Program, traffic: CoreTraffic, hottest: int) -> dict[str, Any]:
    """Hops, crossings, link loads and the latency in ticks: the route pass's report when the
    program carries one listing ``hottest`` links, else computed from the program and traffic."""
    route = program.reports.get("route")
    if route and "links_used" in route and len(route.get("hottest_links", [])) == min(hottest, route["links_used"]):
        return dict(route)
    out: dict[str, Any] = {"traffic": traffic.kind}
    out.update(route_summary(program, traffic.src, traffic.dst, traffic.spikes, hottest))
    try:
        out["latency_ticks"] = latency_ticks(program)
    except ProgramError as exc:  # a loop: report it rather than fail the whole report
        out["latency_ticks"] = None
        out["latency_note"] = str(exc)
    out["program_latency"] = int(program.latency)
    return out


def energy_estimate(program: Program, traffic: CoreTraffic) -> dict[str, Any]:
    """Energy per sample from the chip's per-event costs: core-to-core spikes, their synaptic
    events (each spike reaches its axon's connected neurons), router hops and chip crossings from
    the measured traffic; neuron updates (every used neuron, every tick) and static power of the
    used cores from the program. Without measured traffic only the activity-independent parts
    are given. Input spikes from outside and output spikes are not counted."""
    chip, energy = program.chip, program.chip.energy
    ticks = program.total_ticks
    used_neurons = int(np.count_nonzero(program.used_neurons()))
    counts: dict[str, float | None] = {
        "neuron_updates": float(used_neurons * ticks),
        "core_ticks": float(program.num_cores * ticks),
        "spikes": None, "synaptic_events": None, "hops": None, "chip_crossings": None,
    }
    measured = traffic.measured
    if measured:
        src, dst, spikes = traffic.src, traffic.dst, traffic.spikes
        xy = program.core_xy.astype(np.int64)
        cx, cy = xy[:, 0] // chip.mesh_x, xy[:, 1] // chip.mesh_y
        counts["spikes"] = float(spikes.sum())
        counts["hops"] = float(np.dot(spikes, np.abs(xy[src] - xy[dst]).sum(axis=1))) if src.size else 0.0
        counts["chip_crossings"] = float(np.dot(spikes, np.abs(cx[src] - cx[dst]) + np.abs(cy[src] - cy[dst]))) \
            if src.size else 0.0
        counts["synaptic_events"] = float(np.dot(spikes, _mean_fanout(program, src, dst)))
    cost = {"neuron_updates": energy.neuron_update_pj, "core_ticks": energy.static_core_tick_pj,
            "spikes": energy.spike_pj, "synaptic_events": energy.synaptic_event_pj, "hops": energy.hop_pj,
            "chip_crossings": energy.chip_crossing_pj}
    breakdown = {k: (counts[k] * cost[k] * 1e-6 if counts[k] is not None else None) for k in counts}
    known = [v for v in breakdown.values() if v is not None]
    source = ((program.reports.get("partition") or {}).get("traffic") or {})
    how = f"; {source['source']}" if isinstance(source, dict) and isinstance(source.get("source"), str) else ""
    return {
        "complete": measured,
        "activity": (f"compile-time calibration traffic (spikes per sample between cores, measured by the "
                     f"compiler on its calibration inputs{how}), not the activity of any dataset you run; "
                     f"'crossmap run' measures that" if measured else
                     "none measured: only the activity-independent parts (neuron updates, static power)"),
        "note": ("from the traffic measured at compile time on the calibration inputs" if measured else
                 "no measured traffic (the program carries none): spikes, synaptic events, hops and "
                 "crossings are unknown; run 'crossmap run' for measured activity"),
        "counts_per_sample": counts,
        "pj_per_event": cost,
        "uj_per_sample": breakdown,
        "total_uj_per_sample": float(sum(known)),
    }


def _mean_fanout(program: Program, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """For each (src, dst) core pair: the mean number of neurons a spike from src reaches in dst."""
    fanout = program.crossbar.sum(axis=2)  # (C, A)
    core, neuron = np.nonzero(program.target_core >= 0)
    tc = program.target_core[core, neuron].astype(np.int64)
    per_spike = fanout[tc, program.target_axon[core, neuron]].astype(np.float64)
    n = program.num_cores
    keys, inverse = np.unique(core.astype(np.int64) * n + tc, return_inverse=True)
    mean = np.bincount(inverse, weights=per_spike, minlength=keys.size) / np.maximum(
        np.bincount(inverse, minlength=keys.size), 1)
    pair = np.asarray(src, np.int64) * n + np.asarray(dst, np.int64)
    where = np.minimum(np.searchsorted(keys, pair), max(keys.size - 1, 0))
    found = keys.size > 0
    return np.where(keys[where] == pair, mean[where], 0.0) if found else np.zeros(pair.size)


def _summary(report: Any) -> Any:
    """A pass report without bulky lists (more than 20 entries)."""
    if isinstance(report, dict):
        return {k: _summary(v) for k, v in report.items() if not (isinstance(v, list) and len(v) > 20)}
    return report


# ---------------------------------------------------------------------------------------- text
def format_value(value: Any) -> str:
    """A number or value for a text table: thousands separators, at most 3 decimals."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e6 or abs(value) < 1e-3:
            return f"{value:.3e}"
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def text_table(headers: list[str], rows: list[list[Any]]) -> str:
    """Rows under headers, columns aligned (numbers right, text left)."""
    cells = [[format_value(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) and rows != []
               for i in range(len(headers))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _used(used: int, available: int) -> str:
    return f"{used:,} / {available:,} ({100.0 * used / available:.1f}%)" if available else f"{used:,} / 0"


def format_text(report: dict[str, Any], max_cores: int = 20) -> str:
    """The report as text tables."""
    p, out = report["program"], []
    res = report["resources"]
    out.append(f"program {p['path'] or '(in memory)'}: chip {p['chip']}, {p['board']}")
    out.append(f"  cores {_used(res['cores']['used'], res['cores']['available'])}, chips "
               f"{res['chips']['used']} of {res['chips']['available']}; ticks per sample {p['ticks_per_sample']} "
               f"({p['input_ticks']} input + {p['latency_ticks']} latency)")
    if p.get("pipeline"):
        out.append(f"  pipeline: {p['pipeline']}")
    if not p["has_compiler_report"]:
        out.append("  (no report.json: figures computed from the program; traffic = routed neurons per core pair; "
                   "no placement lower bound)")
    out += ["", "resources", text_table(["resource", "used", "available", "use %"],
                                        [[k, v["used"], v["available"], round(100.0 * v["fraction"], 1)] for k, v in res.items()])]
    out += ["", "utilization per layer", text_table(
        ["layer", "cores", "axons", "neurons", "copies", "synapses"],
        [[r["layer"], r["cores"], _used(r["axons"], r["axons_available"]), _used(r["neurons"], r["neurons_available"]),
          r["copies"], _used(r["synapses"], r["synapses_available"])] for r in report["layers"]])]
    cores = report["cores"]
    shown = cores if max_cores < 0 else cores[:max_cores]
    title = "utilization per core" + (f" (first {len(shown)} of {len(cores)}; --all-cores shows all)"
                                      if len(shown) < len(cores) else "")
    out += ["", title, text_table(["core", "x", "y", "chip", "layer", "axons", "neurons", "synapses"],
                                  [[r["core"], r["x"], r["y"], r["chip"], r["layer"], r["axons"], r["neurons"],
                                    r["synapses"]] for r in shown])]
    out += ["", *_placement_text(report["placement"])]
    out += ["", *_routing_text(report["routing"])]
    out += ["", *_energy_text(report["energy"])]
    for name, rep in report.get("passes", {}).items():
        scalars = {k: v for k, v in rep.items() if isinstance(v, (int, float, str, bool)) or v is None} \
            if isinstance(rep, dict) else {}
        if scalars:
            out += ["", f"pass {name}", text_table(["field", "value"], [[k, v] for k, v in scalars.items()])]
    return "\n".join(out) + "\n"


def _placement_text(pl: dict[str, Any]) -> list[str]:
    cost = pl["cost"]

    def ratio(v: float | None) -> float | None:
        return v / cost if (v is not None and cost) else None

    rows = [["placed (this program)", cost, 1.0 if cost else None],
            ["lower bound", pl["lower_bound"], ratio(pl["lower_bound"])],
            ["random placement", pl["random"], ratio(pl["random"])],
            ["row-major placement", pl["row_major"], ratio(pl["row_major"])]]
    lines = [f"placement cost = sum of traffic x (hops + {format_value(pl['chip_crossing_penalty'])} x chip crossings); "
             f"traffic: {pl['traffic']}",
             text_table(["placement", "cost", "vs placed"], rows)]
    info = pl.get("pass")
    if info:
        lines.append(f"  place pass: method {info.get('method')}, strategy {info.get('strategy')} (start "
                     f"{info.get('start')}), solver {info.get('solver_status')}, optimal {format_value(info.get('optimal'))}, "
                     f"gap to bound {format_value(info.get('gap'))}, windows {info.get('windows_tried')} "
                     f"({info.get('windows_improved')} improved), budget {format_value(info.get('time_budget_s'))} s")
        for w in info.get("warnings") or []:
            lines.append(f"  warning: {w}")
    return lines


def _routing_text(rt: dict[str, Any]) -> list[str]:
    lines = [f"routing (x then y); traffic: {rt['traffic']}",
             text_table(["figure", "value"], [
                 ["connections (routed neurons)", rt["connections"]],
                 ["hops per connection, mean", rt["hops_mean"]],
                 ["hops per connection, max", rt["hops_max"]],
                 ["connections crossing chips", rt["chip_crossing_connections"]],
                 ["spikes per sample", rt["spikes_per_sample"]],
                 ["spike hops per sample", rt["spike_hops_per_sample"]],
                 ["chip crossings per sample", rt["chip_crossings_per_sample"]],
                 ["link load max (spikes/link/tick)", rt["link_load_max"]],
                 ["link load mean, all links", rt["link_load_mean"]],
                 ["link load mean, used links", rt["link_load_mean_used"]],
                 ["links used / total", f"{rt['links_used']:,} / {rt['links_total']:,}"],
                 ["latency (ticks, longest delay chain)", rt["latency_ticks"]],
                 ["program latency (ticks)", rt["program_latency"]]])]
    if rt.get("latency_note"):
        lines.append(f"  latency: {rt['latency_note']}")
    if rt["hottest_links"]:
        lines += ["hottest links", text_table(["from", "to", "spikes/tick"], [
            [f"({a['from'][0]}, {a['from'][1]})", f"({a['to'][0]}, {a['to'][1]})", a["load"]]
            for a in rt["hottest_links"]])]
    return lines


def _energy_text(en: dict[str, Any]) -> list[str]:
    rows = [[k, en["counts_per_sample"][k], en["pj_per_event"][k], en["uj_per_sample"][k]]
            for k in en["counts_per_sample"]]
    return [f"energy per sample (estimate, {en['note']})",
            f"  activity: {en.get('activity', '-')}",
            text_table(["event", "count", "pJ each", "uJ"], rows),
            f"  total {format_value(en['total_uj_per_sample'])} uJ per sample" + ("" if en["complete"] else
                                                                           " (activity-independent part only)")]

"""What a user reads about a compiled program: resources used per layer and per core, placement
cost against its bound and against random and row-major placements, link loads, latency and an
energy estimate per sample; as text tables, JSON, pictures (PNG and SVG) and one HTML page.

Figures come from the program itself, so a program without ``report.json`` still gets a report.
The compiler's ``report.json`` adds the measured traffic (spikes per sample between cores), which
the link loads and the energy estimate need, and the passes' own reports. Pictures and the HTML
page are in ``crossmap.report_pictures``.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from crossmap.errors import ProgramError
from crossmap.passes.place.bound import placement_lower_bound
from crossmap.passes.place.cost import (Mesh, default_crossing_penalty, edges_from_arrays, placement_cost,
                             program_connections, random_cells, row_major_cells)
from crossmap.passes.route.routes import latency_ticks, route_summary

REPORT_FILE = "report.json"
MEASURED = "spikes per sample"


# ---------------------------------------------------------------------------------------- JSON
def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays, tuples and paths turned into JSON types
    (non-finite floats become None)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str):
        return value
    return str(value)


def dumps(value: Any, indent: int = 0) -> str:
    """JSON with sorted keys, one key per line, but lists of scalars (or of short lists of
    scalars, like edges) on one line each so big reports stay compact."""
    value = jsonable(value)
    pad = "  " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{pad}{json.dumps(k)}: {dumps(value[k], indent + 1)}" for k in sorted(value)]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        items = [pad + dumps(v, indent + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return json.dumps(value, separators=(", ", ": "))


def report_json(reports: dict[str, Any]) -> str:
    """The text of ``report.json`` for the passes' reports."""
    return dumps(reports) + "\n"


def load_reports(directory: str | Path) -> dict[str, Any]:
    """The passes' reports saved beside a program, or {} when there are none (a corrupt file
    is ignored with a warning: everything else is recomputed from the program)."""
    path = Path(directory) / REPORT_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        warnings.warn(f"{path}: not valid JSON ({exc}); reporting from the program alone", UserWarning, stacklevel=2)
        return {}
    return data if isinstance(data, dict) else {}


# ---------------------------------------------------------------------------------------- data
def build_report(program: Any, reports: dict[str, Any] | None = None, source: str = "",
                 hottest: int = 10) -> dict[str, Any]:
    """Every figure of the report as one JSON-able dict."""
    reports = reports or {}
    chip = program.chip
    src, dst, traffic, measured = report_traffic(program, reports)
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
        "placement": placement_figures(program, src, dst, traffic, measured, reports.get("place")),
        "routing": routing_figures(program, src, dst, traffic, measured, hottest),
        "energy": energy_estimate(program, src, dst, traffic, measured),
        "passes": {name: _summary(rep) for name, rep in sorted(reports.items()) if name not in ("place", "route")},
    }
    return jsonable(out)


def report_traffic(program: Any, reports: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(src, dst, traffic, measured) of a program: the route report's traffic when it was
    measured, else the routed neurons per core pair."""
    route = reports.get("route") or {}
    edges = route.get("edges")
    if route.get("traffic") == MEASURED and isinstance(edges, list):
        arr = np.asarray(edges, dtype=np.float64).reshape(-1, 3)
        ok = (arr[:, 0] >= 0) & (arr[:, 0] < program.num_cores) & (arr[:, 1] >= 0) & (arr[:, 1] < program.num_cores)
        arr = arr[ok]
        return arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2], True
    src, dst, count = program_connections(program)
    return src, dst, count, False


def core_layers(program: Any) -> list[str]:
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


def _core_usage(program: Any) -> dict[str, np.ndarray]:
    return {
        "axons": np.count_nonzero(program.crossbar.any(axis=2), axis=1),
        "neurons": np.count_nonzero((program.target_core >= 0) | (program.output_port >= 0), axis=1),
        "synapses": np.count_nonzero(program.crossbar.reshape(program.num_cores, -1), axis=1),
    }


def core_table(program: Any) -> list[dict[str, Any]]:
    """One row per core: position, chip, layer, and axons, neurons, synapses used."""
    usage = _core_usage(program)
    layers = core_layers(program)
    chip = program.chip
    xy = program.core_xy
    chips = chip.chip_of(xy[:, 0], xy[:, 1])
    return [{"core": c, "x": int(xy[c, 0]), "y": int(xy[c, 1]), "chip": int(chips[c]), "layer": layers[c],
             "axons": int(usage["axons"][c]), "neurons": int(usage["neurons"][c]),
             "synapses": int(usage["synapses"][c])} for c in range(program.num_cores)]


def layer_table(program: Any) -> list[dict[str, Any]]:
    """One row per layer (in order of first core): cores, and axons, neurons, synapses used of
    those available on its cores."""
    usage = _core_usage(program)
    chip = program.chip
    rows: dict[str, dict[str, Any]] = {}
    for c, layer in enumerate(core_layers(program)):
        row = rows.setdefault(layer, {"layer": layer, "cores": 0, "axons": 0, "neurons": 0, "synapses": 0})
        row["cores"] += 1
        for key in ("axons", "neurons", "synapses"):
            row[key] += int(usage[key][c])
    for row in rows.values():
        row["axons_available"] = row["cores"] * chip.axons_per_core
        row["neurons_available"] = row["cores"] * chip.neurons_per_core
        row["synapses_available"] = row["cores"] * chip.axons_per_core * chip.neurons_per_core
    return list(rows.values())


def _recorded_bound(place: dict[str, Any] | None, edges: int, cost: float) -> float | None:
    """The place pass's lower bound when it placed the same graph (same edge count, same cost of
    the final placement), which saves solving the LP again; else None."""
    if not place or place.get("lower_bound") is None or place.get("edges") != edges:
        return None
    objective = float(place.get("objective", -1.0))
    return float(place["lower_bound"]) if abs(objective - cost) <= 1e-9 * max(1.0, abs(cost)) else None


def placement_figures(program: Any, src: np.ndarray, dst: np.ndarray, traffic: np.ndarray, measured: bool,
                      place: dict[str, Any] | None) -> dict[str, Any]:
    """Placement cost of the program's core_xy, its lower bound, and random and row-major
    placements' costs (recomputed), with the place pass's own report when there is one."""
    chip = program.chip
    penalty = (place or {}).get("chip_crossing_penalty")
    mesh = Mesh(chip, default_crossing_penalty(chip) if penalty is None else float(penalty))
    n = program.num_cores
    edges = edges_from_arrays(n, src, dst, traffic)
    cells = mesh.cell(program.core_xy[:, 0], program.core_xy[:, 1]).astype(np.int64)
    cost = placement_cost(mesh, edges, cells)
    bound = _recorded_bound(place, edges.u.size, cost)
    if bound is None:
        bound, _ = placement_lower_bound(mesh, edges)
    random = placement_cost(mesh, edges, random_cells(mesh, n, 0))
    row_major = placement_cost(mesh, edges, row_major_cells(mesh, n))
    out = {
        "traffic": MEASURED if measured else "routed neurons per core pair (no traffic measured)",
        "cost": cost,
        "lower_bound": bound,
        "random": random,
        "row_major": row_major,
        "ratio_to_bound": cost / bound if bound > 0 else None,
        "ratio_to_random": cost / random if random > 0 else None,
        "chip_crossing_penalty": mesh.penalty,
    }
    if place:
        out["pass"] = {k: v for k, v in place.items() if k != "stages"}
        out["stages"] = place.get("stages", [])
    return out


def routing_figures(program: Any, src: np.ndarray, dst: np.ndarray, traffic: np.ndarray, measured: bool,
                    hottest: int) -> dict[str, Any]:
    """Hops, crossings, link loads (recomputed) and the latency in ticks."""
    out: dict[str, Any] = {"traffic": MEASURED if measured else "routed neurons per core pair (no traffic measured)"}
    out.update(route_summary(program, src, dst, traffic, hottest))
    try:
        out["latency_ticks"] = latency_ticks(program)
    except ProgramError as exc:  # a loop: report it rather than fail the whole report
        out["latency_ticks"] = None
        out["latency_note"] = str(exc)
    out["program_latency"] = int(program.latency)
    return out


def energy_estimate(program: Any, src: np.ndarray, dst: np.ndarray, traffic: np.ndarray,
                    measured: bool) -> dict[str, Any]:
    """Energy per sample from the chip's per-event costs: core-to-core spikes, their synaptic
    events (each spike reaches its axon's connected neurons), router hops and chip crossings from
    the measured traffic; neuron updates (every used neuron, every tick) and static power of the
    used cores from the program. Without measured traffic only the activity-independent parts
    are given. Input spikes from outside and output spikes are not counted."""
    chip, energy = program.chip, program.chip.energy
    ticks = program.total_ticks
    used_neurons = int(np.count_nonzero((program.target_core >= 0) | (program.output_port >= 0)))
    counts: dict[str, float | None] = {
        "neuron_updates": float(used_neurons * ticks),
        "core_ticks": float(program.num_cores * ticks),
        "spikes": None, "synaptic_events": None, "hops": None, "chip_crossings": None,
    }
    if measured:
        xy = program.core_xy.astype(np.int64)
        cx, cy = xy[:, 0] // chip.mesh_x, xy[:, 1] // chip.mesh_y
        counts["spikes"] = float(traffic.sum())
        counts["hops"] = float(np.dot(traffic, np.abs(xy[src] - xy[dst]).sum(axis=1))) if src.size else 0.0
        counts["chip_crossings"] = float(np.dot(traffic, np.abs(cx[src] - cx[dst]) + np.abs(cy[src] - cy[dst]))) \
            if src.size else 0.0
        counts["synaptic_events"] = float(np.dot(traffic, _mean_fanout(program, src, dst)))
    cost = {"neuron_updates": energy.neuron_update_pj, "core_ticks": energy.static_core_tick_pj,
            "spikes": energy.spike_pj, "synaptic_events": energy.synaptic_event_pj, "hops": energy.hop_pj,
            "chip_crossings": energy.chip_crossing_pj}
    breakdown = {k: (counts[k] * cost[k] * 1e-6 if counts[k] is not None else None) for k in counts}
    known = [v for v in breakdown.values() if v is not None]
    return {
        "complete": measured,
        "note": ("from the traffic measured at compile time" if measured else
                 "no measured traffic (report.json missing or without it): spikes, synaptic events, hops and "
                 "crossings are unknown; run 'crossmap run' for measured activity"),
        "counts_per_sample": counts,
        "pj_per_event": cost,
        "uj_per_sample": breakdown,
        "total_uj_per_sample": float(sum(known)),
    }


def _mean_fanout(program: Any, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
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
        out.append("  (no report.json: figures recomputed from the program; traffic = routed neurons per core pair)")
    out += ["", "resources", text_table(["resource", "used", "available", "use %"],
                                        [[k, v["used"], v["available"], round(100.0 * v["fraction"], 1)] for k, v in res.items()])]
    out += ["", "utilization per layer", text_table(
        ["layer", "cores", "axons", "neurons", "synapses"],
        [[r["layer"], r["cores"], _used(r["axons"], r["axons_available"]), _used(r["neurons"], r["neurons_available"]),
          _used(r["synapses"], r["synapses_available"])] for r in report["layers"]])]
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
            text_table(["event", "count", "pJ each", "uJ"], rows),
            f"  total {format_value(en['total_uj_per_sample'])} uJ per sample" + ("" if en["complete"] else
                                                                           " (activity-independent part only)")]

"""Placement quality and time: the place pass's search against random and row-major placements and
the lower bound, on synthetic core graphs that resemble compiled models (conv-like: layers of
spatial tiles x channel groups with halo traffic; mlp-like: chains of layers with fan-in 3) of 10,
100, 1000 and 4096 cores, and on compiled programs given with --program (their report.json
traffic, else routed neurons per core pair).

    python benchmarks/bench_place.py [--sizes 10 100 1000 4096] [--time-limit 30] [--program DIR ...]

Targets: cost <= 0.5 x random's, <= 1.3 x the lower bound on model-like graphs, 4096 cores in
under 60 s. The lower bound is the best of the star bound and the LP bound (``placement_bound``);
the ``bound`` column says which. ``vs_one_hop`` compares with the plain bound "every edge costs at
least one hop" (the sum of the edge weights); ``bound_vs_one_hop`` is how far above that plain
bound every placement must be (a graph with cores of more than 4 neighbours cannot have all its
edges one hop long). The budget per graph is the pass's own: min(time limit, 0.5 s + 0.02 s per core).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from crossmap.chip import ChipSpec
from crossmap.mesh import (Edges, Mesh, default_crossing_penalty, edges_from_arrays, edges_from_graph,
                           placement_cost, random_cells, row_major_cells)
from crossmap.passes.place import Place
from crossmap.passes.place.bound import placement_lower_bound
from crossmap.passes.place.search import search
from crossmap.testing.placement import conv_like_graph, mlp_like_graph


def measure(name: str, mesh: Mesh, edges: Edges, place: Place, seed: int = 0,
            points: np.ndarray | None = None) -> dict:
    """Run the search with the pass's budget (and the pass's spatial start when ``points`` are
    given) and collect the figures of one row."""
    n = edges.num_nodes
    budget = min(place.time_limit, 0.5 + place.seconds_per_core * n)
    start = time.perf_counter()
    result = search(mesh, edges, budget, reproducible=place.reproducible, seed=seed, method=place.method,
                    points=points)
    seconds = time.perf_counter() - start
    bound, bound_kind = placement_lower_bound(mesh, edges)
    one_hop = float(edges.w.sum())
    random = placement_cost(mesh, edges, random_cells(mesh, n, seed))
    row_major = placement_cost(mesh, edges, row_major_cells(mesh, n))
    return {"graph": name, "cores": n, "edges": int(edges.u.size), "budget_s": budget, "seconds": seconds,
            "cost": result.cost, "heuristic": result.heuristic_cost, "lower_bound": bound,
            "bound": bound_kind.split(":")[0], "random": random,
            "row_major": row_major, "vs_bound": result.cost / bound if bound else None,
            "vs_random": result.cost / random if random else None,
            "one_hop": one_hop, "vs_one_hop": result.cost / one_hop if one_hop else None,
            "bound_vs_one_hop": bound / one_hop if one_hop else None,
            "vs_row_major": result.cost / row_major if row_major else None,
            "strategy": f"{result.strategy}/{result.start}",
            "windows": f"{result.windows_improved}/{result.windows_tried}"}


def program_edges(directory: str) -> tuple[Mesh, Edges, str, np.ndarray | None]:
    """Mesh and edges of a compiled program (its measured traffic, else routed neurons), and the
    image positions of its cores when the place pass recorded the input shape."""
    from crossmap.mesh import program_connections
    from crossmap.passes.place.geometry import input_positions
    from crossmap.program import load

    program = load(directory)
    shape = (program.reports.get("place") or {}).get("input_shape")
    points = input_positions(program, tuple(shape)) if shape else None
    traffic = program.traffic
    if traffic is not None and traffic.measured:
        edges = edges_from_arrays(program.num_cores, traffic.src, traffic.dst, traffic.spikes)
    else:
        edges = edges_from_arrays(program.num_cores, *program_connections(program))
    return Mesh(program.chip, default_crossing_penalty(program.chip)), edges, Path(directory).name, points


def main() -> int:
    """Print the table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10, 100, 1000, 4096])
    parser.add_argument("--kinds", nargs="+", default=["conv", "mlp"], choices=["conv", "mlp"])
    parser.add_argument("--time-limit", type=float, default=30.0, help="the place pass's time_limit")
    parser.add_argument("--program", nargs="*", default=[], help="compiled program directories to place again")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args()
    place = Place(time_limit=args.time_limit)
    chip = ChipSpec.truenorth()
    rows = []
    for n in args.sizes:
        for kind in args.kinds:
            graph = conv_like_graph(n) if kind == "conv" else mlp_like_graph(n, layers=4, fan_in=3)
            mesh = Mesh(chip, default_crossing_penalty(chip))
            rows.append(measure(f"{kind}-{n}", mesh, edges_from_graph(graph, n), place))
            print_row(rows[-1], header=len(rows) == 1)
    for directory in args.program:
        mesh, edges, name, points = program_edges(directory)
        rows.append(measure(name, mesh, edges, place, points=points))
        print_row(rows[-1], header=len(rows) == 1)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


COLUMNS = [("graph", 12, ""), ("cores", 6, "d"), ("edges", 7, "d"), ("budget_s", 8, ".1f"), ("seconds", 8, ".1f"),
           ("cost", 11, ".0f"), ("lower_bound", 11, ".0f"), ("random", 11, ".0f"), ("row_major", 11, ".0f"),
           ("bound", 5, ""), ("vs_bound", 8, ".3f"), ("vs_one_hop", 10, ".3f"), ("bound_vs_one_hop", 16, ".3f"),
           ("vs_random", 9, ".3f"), ("vs_row_major", 12, ".3f"), ("strategy", 16, ""), ("windows", 7, "")]


def print_row(row: dict, header: bool) -> None:
    """One aligned table row (with the header first)."""
    if header:
        print("  ".join(name.ljust(width) if not spec else name.rjust(width) for name, width, spec in COLUMNS))
    cells = []
    for name, width, spec in COLUMNS:
        value = row[name]
        if value is None:
            cells.append("-".rjust(width))
        elif spec:
            cells.append(format(value, spec).rjust(width))
        else:
            cells.append(str(value).ljust(width))
    print("  ".join(cells))
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())

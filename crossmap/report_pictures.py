"""Pictures of a compiled program for ``crossmap report --pictures``: a mesh heatmap of core
utilization and a map of link loads (PNG and SVG, matplotlib's Agg backend), and one
self-contained HTML page with the pictures inlined as SVG and the text report's tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crossmap.program import Program
from crossmap.report import format_text, format_value, program_traffic
from crossmap.routes import link_loads

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from crossmap.chip import ChipSpec


def write_pictures(program: Program, report: dict[str, Any], directory: str | Path) -> dict[str, Path]:
    """Write ``utilization.png/.svg``, ``link_load.png/.svg`` and ``report.html`` (pictures
    inlined) into ``directory``. Returns the paths by file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    chip = program.chip
    plt.rcParams["svg.hashsalt"] = "crossmap"
    paths: dict[str, Path] = {}

    util = np.full((chip.grid_y, chip.grid_x), np.nan)
    usage = [r["neurons"] / chip.neurons_per_core for r in report["cores"]]
    util[program.core_xy[:, 1], program.core_xy[:, 0]] = usage
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    image = ax.imshow(util, origin="lower", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="neurons used / neurons per core")
    _chip_grid(ax, chip)
    _zoom(ax, program)
    ax.set_title(f"core utilization ({program.num_cores} cores; empty cells blank)")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    paths.update(_save(fig, directory / "utilization"))
    plt.close(fig)

    traffic = program_traffic(program)
    loads = link_loads(chip, program.core_xy, traffic.src, traffic.dst, traffic.spikes, program.total_ticks)
    horizontal, vertical = loads.undirected()
    segments, values = [], []
    for (ys, xs), (dx, dy), arr in (((np.nonzero(horizontal > 0)), (1, 0), horizontal),
                                    ((np.nonzero(vertical > 0)), (0, 1), vertical)):
        for y, x in zip(ys.tolist(), xs.tolist()):
            segments.append([(x, y), (x + dx, y + dy)])
            values.append(arr[y, x])
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    ax.scatter(program.core_xy[:, 0], program.core_xy[:, 1], s=4, c="0.6", marker="s", linewidths=0)
    if segments:
        lines = LineCollection(segments, cmap="inferno_r", linewidths=2)
        lines.set_array(np.asarray(values))
        ax.add_collection(lines)
        fig.colorbar(lines, ax=ax, label="spikes per tick (both directions)")
    _chip_grid(ax, chip)
    _zoom(ax, program)
    ax.set_aspect("equal")
    ax.set_title(f"link load (busiest directed link {format_value(report['routing']['link_load_max'])} spikes/tick)")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    paths.update(_save(fig, directory / "link_load"))
    plt.close(fig)

    html = directory / "report.html"
    html.write_text(format_html(report, {name: paths[f"{name}.svg"].read_text() for name in ("utilization", "link_load")}))
    paths["report.html"] = html
    return paths


def _zoom(ax: Axes, program: Program) -> None:
    """Show the used part of the board (a margin of one core), or all of it when empty."""
    chip = program.chip
    if program.num_cores == 0:
        x0, x1, y0, y1 = 0, chip.grid_x - 1, 0, chip.grid_y - 1
    else:
        xy = program.core_xy
        x0, x1 = max(0, int(xy[:, 0].min()) - 1), min(chip.grid_x - 1, int(xy[:, 0].max()) + 1)
        y0, y1 = max(0, int(xy[:, 1].min()) - 1), min(chip.grid_y - 1, int(xy[:, 1].max()) + 1)
    ax.set_xlim(x0 - 0.5, x1 + 0.5)
    ax.set_ylim(y0 - 0.5, y1 + 0.5)


def _chip_grid(ax: Axes, chip: ChipSpec) -> None:
    for x in range(1, chip.board_x):
        ax.axvline(x * chip.mesh_x - 0.5, color="red", linewidth=0.8)
    for y in range(1, chip.board_y):
        ax.axhline(y * chip.mesh_y - 0.5, color="red", linewidth=0.8)


def _save(fig: Figure, stem: Path) -> dict[str, Path]:
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    fig.savefig(png, dpi=110, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(svg, bbox_inches="tight", metadata={"Date": None, "Creator": None})
    return {png.name: png, svg.name: svg}


def format_html(report: dict[str, Any], svgs: dict[str, str]) -> str:
    """One self-contained HTML page: the text report's tables and the pictures inlined as SVG."""
    from html import escape

    def inline(svg: str) -> str:
        start = svg.find("<svg")
        return svg[start:] if start >= 0 else ""

    text = format_text(report, max_cores=-1)
    p = report["program"]
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>crossmap report {escape(str(p['path']))}</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}pre{background:#f6f6f6;padding:1em;"
        "overflow-x:auto;font-size:12px}figure{display:inline-block;margin:0 1em 1em 0}svg{max-width:520px;"
        "height:auto}</style></head><body>\n"
        f"<h1>crossmap report</h1><p>{escape(str(p['path']))}: {p['cores']} cores, chip {escape(p['chip'])} "
        f"({escape(p['board'])})</p>\n"
        f"<figure>{inline(svgs['utilization'])}<figcaption>core utilization</figcaption></figure>\n"
        f"<figure>{inline(svgs['link_load'])}<figcaption>link load</figcaption></figure>\n"
        f"<h2>tables</h2><pre>{escape(text)}</pre>\n"
        "</body></html>\n")

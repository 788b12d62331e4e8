"""``crossmap inspect MODEL.onnx``: import a model and print its layers, sizes, fan-in and fan-out,
and whether each layer's fan-in fits the axons of one core."""

from __future__ import annotations

import argparse
import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from crossmap.chip import ChipSpec
from crossmap.errors import InputError

if TYPE_CHECKING:
    from crossmap.ir import Network


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``inspect`` subcommand."""
    p = sub.add_parser("inspect", help="import an ONNX model and print its layers, fan-in/out and core fit")
    p.add_argument("model", help="ONNX model file")
    p.add_argument("--chip", default="truenorth", help="chip name (truenorth, truenorth-2x2) or JSON file")
    p.add_argument("--input-shape", default=None,
                   help="per-sample input shape for models with symbolic sizes, e.g. 1,28,28")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def population_table(network: Network, chip: ChipSpec) -> list[dict[str, Any]]:
    """One row per population: shape, activation, neurons, fan-in and fan-out (max, mean),
    incoming synapses, and whether the largest fan-in fits one core's axons."""
    rows = []
    for pop in network.populations:
        fan_in, fan_out = network.fan_in(pop.name), network.fan_out(pop.name)
        is_input = pop.name == network.input.name
        max_in = int(fan_in.max(initial=0))
        rows.append({
            "name": pop.name,
            "shape": list(pop.shape),
            "activation": "input" if is_input else pop.activation,
            "reduce": pop.reduce,
            "neurons": pop.size,
            "fan_in_max": max_in,
            "fan_in_mean": float(fan_in.mean()) if fan_in.size else 0.0,
            "fan_out_max": int(fan_out.max(initial=0)),
            "fan_out_mean": float(fan_out.mean()) if fan_out.size else 0.0,
            "synapses": int(sum(p.synapses for p in network.incoming(pop.name))),
            "fits_core": None if is_input else max_in <= chip.axons_per_core,
            "min_cores": None if is_input else math.ceil(pop.size / chip.neurons_per_core),
            "output": pop.name == network.output,
        })
    return rows


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise InputError(f"--input-shape {text!r}: needed positive sizes separated by commas (per sample, without "
                         f"the batch), e.g. 1,28,28")
    return shape


def run(args: argparse.Namespace) -> int:
    """Import the model and print the layer table (or JSON)."""
    from crossmap.frontend import import_onnx

    chip = ChipSpec.named(args.chip)
    network = import_onnx(args.model, input_shape=_parse_shape(args.input_shape))
    rows = population_table(network, chip)
    layers = [r for r in rows if r["activation"] != "input"]
    too_wide = [r["name"] for r in layers if not r["fits_core"]]
    totals = {"layers": len(layers), "neurons": network.neurons, "synapses": network.synapses,
              "layers_over_axon_limit": too_wide}
    meta = network.metadata
    if args.json:
        print(json.dumps({"model": args.model, "metadata": meta, "chip": chip.name,
                          "limits": {"axons_per_core": chip.axons_per_core, "neurons_per_core": chip.neurons_per_core},
                          "layers": rows, "totals": totals}, indent=2, default=_json_default))
        return 0
    batch = meta.get("batch")
    print(f"model {args.model}  (sha256 {str(meta.get('sha256', ''))[:12]}, opset {meta.get('original_opset')}"
          + (f" -> {meta.get('opset')}" if meta.get("opset") != meta.get("original_opset") else "") + ")")
    print(f"  input {meta.get('input_name')!r}: {meta.get('input_dtype')} (batch {batch}, "
          f"{', '.join(map(str, meta.get('input_shape', [])))})   output {meta.get('output_name')!r} = population "
          f"{network.output!r}")
    if meta.get("output_ops"):
        dropped = ", ".join(f"{op['op']} ({op['name']})" for op in meta["output_ops"])
        print(f"  dropped at the output: {dropped}; the class is the argmax of the output population")
    print(f"  chip {chip.name}: {chip.axons_per_core} axons and {chip.neurons_per_core} neurons per core")
    header = ("layer", "shape", "activation", "neurons", "fan-in max/mean", "fan-out max/mean", "synapses",
              f"fan-in <= {chip.axons_per_core}", "cores >=")
    table = [header]
    for r in rows:
        activation = r["activation"] + (" (max)" if r["reduce"] == "max" else "")
        fits = "-" if r["fits_core"] is None else ("yes" if r["fits_core"] else f"no ({r['fan_in_max']} > "
                                                                                f"{chip.axons_per_core})")
        table.append((r["name"] + (" *" if r["output"] else ""), "x".join(map(str, r["shape"])) or "()", activation,
                      str(r["neurons"]), f"{r['fan_in_max']} / {r['fan_in_mean']:.1f}",
                      f"{r['fan_out_max']} / {r['fan_out_mean']:.1f}", str(r["synapses"]), fits,
                      "-" if r["min_cores"] is None else str(r["min_cores"])))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  " + "  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths))).rstrip())
    print(f"  total: {totals['layers']} layers, {totals['neurons']} neurons, {totals['synapses']} synapses  "
          f"(* = output)")
    if too_wide:
        print(f"  {len(too_wide)} layer(s) need more than {chip.axons_per_core} axons per neuron and must be split "
              f"by the partition pass: {', '.join(too_wide)}")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")

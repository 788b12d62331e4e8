"""``crossmap info``: print the chip spec."""

from __future__ import annotations

import argparse

from crossmap.chip import ChipSpec


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``info`` subcommand."""
    p = sub.add_parser("info", help="print the chip spec (limits and energy costs)")
    p.add_argument("--chip", default="truenorth", help="chip name (truenorth, truenorth-2x2) or JSON file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the chip spec as a table or JSON."""
    chip = ChipSpec.named(args.chip)
    if args.json:
        print(chip.to_json())
        return 0
    print(f"chip {chip.name}: {chip.board_x} x {chip.board_y} chip(s) of {chip.mesh_x} x {chip.mesh_y} cores "
          f"= {chip.max_cores} cores")
    rows = [("axons per core", chip.axons_per_core), ("neurons per core", chip.neurons_per_core),
            ("axon types", chip.axon_types), ("weight", f"{chip.weight_min}..{chip.weight_max}"),
            ("leak", f"{chip.leak_min}..{chip.leak_max}"), ("threshold alpha", f"{chip.alpha_min}..{chip.alpha_max}"),
            ("negative threshold beta", f"{chip.beta_min}..{chip.beta_max}"),
            ("membrane potential", f"{chip.v_min}..{chip.v_max}"), ("delay (ticks)", f"{chip.delay_min}..{chip.delay_max}")]
    for key, value in rows:
        print(f"  {key:<26}{value}")
    print("energy per event (pJ):")
    for key, value in chip.energy.__dict__.items():
        print(f"  {key:<26}{value:g}")
    return 0

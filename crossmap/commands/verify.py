"""``crossmap verify OUT MODEL.onnx``: emulator vs onnxruntime on the deployed model (and, with
``--against-model``, vs the original model's predicted classes)."""

from __future__ import annotations

import argparse
import json

from crossmap.commands.arguments import bounded_int
from crossmap.limits import MAX_SAMPLES


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``verify`` subcommand."""
    p = sub.add_parser("verify", help="check the emulated program against onnxruntime on the deployed model")
    p.add_argument("program", help="compiled program directory")
    p.add_argument("model", help="the ONNX model it was compiled from")
    p.add_argument("--limit", type=bounded_int(1, MAX_SAMPLES), default=64, help="samples to compare (default 64)")
    p.add_argument("--against-model", action="store_true",
                   help="also run MODEL.onnx itself and compare its predicted classes with the emulator's "
                        "(catches a binarize pass that changes the network; exact for step networks)")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="with --against-model: the fraction of samples allowed to predict another class "
                        "(default 0; approximate passes such as lsq need some)")
    p.add_argument("--any-model", action="store_true",
                   help="compare even when MODEL is not the model the program was compiled from (its sha256 "
                        "differs from the manifest's); differences are then expected")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Verify and print the verdict; exit code 1 on a mismatch."""
    from crossmap.program import load
    from crossmap.verify import verify

    report = verify(load(args.program), args.model, limit=args.limit, against_model=args.against_model,
                    tolerance=args.tolerance, any_model=args.any_model)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0 if report.ok else 1
    if report.model_note:
        print(f"note: {report.model_note}")
    if report.matching == report.samples:
        print(f"OK: the emulator equals {report.reference} on all {report.samples} samples")
    else:
        print(f"MISMATCH on {report.samples - report.matching} of {report.samples} samples "
              f"(first: sample {report.first_bad_sample}); reference: {report.reference}")
        if report.diverging_group:
            print(f"  first diverging layer: {report.diverging_group}, cores {report.diverging_cores[:10]}")
        print(f"  {report.detail}")
    if report.model_agreeing is not None:
        verdict = "OK" if report.model_ok else "MISMATCH"
        line = (f"{verdict}: the original model predicts the emulator's class on {report.model_agreeing} of "
                f"{report.samples} samples (tolerance {100 * report.tolerance:g}%)")
        if report.first_model_disagreement is not None:
            line += f"; first disagreement: sample {report.first_model_disagreement}"
        print(line)
    return 0 if report.ok else 1

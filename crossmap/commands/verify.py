"""``crossmap verify OUT MODEL.onnx``: emulator vs onnxruntime on the deployed model."""

from __future__ import annotations

import argparse
import json

from ..program import load
from ..verify import verify


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``verify`` subcommand."""
    p = sub.add_parser("verify", help="check the emulated program against onnxruntime on the deployed model")
    p.add_argument("program", help="compiled program directory")
    p.add_argument("model", help="the ONNX model it was compiled from")
    p.add_argument("--limit", type=int, default=64, help="samples to compare (default 64)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Verify and print the verdict; exit code 1 on a mismatch."""
    report = verify(load(args.program), args.model, limit=args.limit)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    elif report.ok:
        print(f"OK: the emulator equals {report.reference} on all {report.samples} samples")
    else:
        print(f"MISMATCH on {report.samples - report.matching} of {report.samples} samples "
              f"(first: sample {report.first_bad_sample}); reference: {report.reference}")
        if report.diverging_group:
            print(f"  first diverging layer: {report.diverging_group}, cores {report.diverging_cores[:10]}")
        print(f"  {report.detail}")
    return 0 if report.ok else 1

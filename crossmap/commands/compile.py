"""``crossmap compile MODEL.onnx -o OUT``: run the compiler pipeline and write the program."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

from crossmap.compiler import BINARIZE_METHODS, MissingCalibration, compile as compile_model, stderr_progress
from crossmap.commands.arguments import bounded_int, positive_float
from crossmap.limits import MAX_ENSEMBLE, MAX_SEED, MAX_TICKS, MAX_WORKERS


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``compile`` subcommand."""
    p = sub.add_parser("compile", help="compile an ONNX model to core configurations")
    p.add_argument("model", help="ONNX model file")
    p.add_argument("-o", "--output", required=True, help="output program directory (must not exist)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.add_argument("--chip", default="truenorth", help="chip name (truenorth, truenorth-2x2), JSON file, or truenorth-auto: "
                                                         "the smallest board of TrueNorth chips that holds the program")
    p.add_argument("--binarize", default="auto", choices=BINARIZE_METHODS,
                   help="binarization method (default auto: deterministic for chip-ready step networks, "
                        "stochastic for step networks with real-valued weights, rate for float networks)")
    p.add_argument("--ensemble", type=bounded_int(1, MAX_ENSEMBLE), default=None, help="ensemble copies (stochastic binarization)")
    p.add_argument("--encoding", default=None, help="input encoding: threshold, rate or regular")
    p.add_argument("--ticks", type=bounded_int(1, MAX_TICKS), default=None, help="input ticks per sample (rate coding: more ticks, more precision)")
    p.add_argument("--calibration", default=None, metavar="FILE",
                   help="calibration samples of the model's input (.npz with x, or .npy), e.g. 256 training samples; "
                        "float models are calibrated on them")
    p.add_argument("--output-name", dest="output_name", default=None, metavar="NAME",
                   help="the model output to compile when it has several (default: the class scores)")
    p.add_argument("--pipeline", default=None, help="full pipeline spec (overrides --binarize and friends)")
    p.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0, help="seed of every random choice (default 0)")
    p.add_argument("--time-limit", type=positive_float, default=None, help="solver time limit per pass, seconds")
    p.add_argument("--jobs", type=bounded_int(1, MAX_WORKERS), default=None,
                   help="processes for independent packing work (default: every core; the program is the same)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compile and print a summary."""
    start = time.perf_counter()
    calibration = None
    if args.calibration is not None:
        from crossmap.datasets import load_arrays

        calibration = load_arrays(args.calibration)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MissingCalibration)
        program = compile_model(args.model, args.output, chip=args.chip, binarize=args.binarize,
                                ensemble=args.ensemble, encoding=args.encoding, ticks=args.ticks,
                                pipeline=args.pipeline, seed=args.seed, time_limit=args.time_limit,
                                overwrite=args.force, calibration=calibration,
                                output_name=args.output_name, jobs=args.jobs,
                                progress=None if args.quiet else stderr_progress)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    used = program.chip.utilization(program)
    summary = {
        "output": str(args.output),
        "cores": used["cores"][0],
        "chips": used["chips"][0],
        "neurons": used["neurons"][0],
        "axons": used["axons"][0],
        "synapses": used["synapses"][0],
        "input_ticks": program.input_ticks,
        "latency_ticks": program.latency,
        "pipeline": program.metadata.get("pipeline"),
        "seconds": round(time.perf_counter() - start, 2),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"compiled {args.model} -> {args.output} in {summary['seconds']} s")
        print(f"  cores {summary['cores']} of {used['cores'][1]} ({summary['chips']} chip(s)), neurons "
              f"{summary['neurons']}, axons {summary['axons']}, synapses {summary['synapses']}")
        print(f"  ticks: {program.input_ticks} input + {program.latency} latency")
        print(f"  pipeline: {summary['pipeline']}")
        print(f"  next: crossmap report {args.output}   |   crossmap run {args.output} --dataset mnist",
              file=sys.stdout)
    return 0

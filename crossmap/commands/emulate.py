"""``crossmap emulate``: run a program directory or a shipped example on given or random input
spikes and print per-sample class counts, predictions, activity and energy."""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from crossmap.errors import InputError
from crossmap.program import load
from crossmap.commands.arguments import bounded_int
from crossmap.limits import MAX_SAMPLES, MAX_TICKS

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
SHOWN_SAMPLES = 20


def available_examples() -> list[str]:
    """Names of the example programs shipped with crossmap."""
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(p.name for p in EXAMPLES_DIR.iterdir() if (p / "manifest.json").is_file())


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``emulate`` subcommand."""
    p = sub.add_parser("emulate", help="emulate a program on input spikes (a file, random, or an example's own)")
    p.add_argument("program", nargs="?", help="compiled program directory")
    p.add_argument("--example", help=f"a shipped example program instead ({', '.join(available_examples())})")
    p.add_argument("--inputs", help="input spikes .npy: bool or 0/1 integers, (batch, ticks, channels) or "
                                    "(batch, channels)")
    p.add_argument("--random", type=bounded_int(1, MAX_SAMPLES), metavar="N", help="N samples of random input spikes")
    p.add_argument("--rate", type=float, default=0.2, help="spike probability of --random inputs (default 0.2)")
    p.add_argument("--seed", type=bounded_int(0, 2**64 - 1), default=None,
                   help="seed of --random inputs and of the chip's stochastic modes (default: the program's seed)")
    p.add_argument("--ticks", type=bounded_int(1, 2 * MAX_TICKS), default=None, help="ticks to run (default: input ticks + latency)")
    p.add_argument("--backend", default="emulator", choices=["emulator", "reference", "torch"])
    p.add_argument("--device", default=None, help="torch backend: cpu (default), cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _program_dir(args: argparse.Namespace) -> Path:
    if args.program and args.example:
        raise InputError("give either a PROGRAM_DIR or --example NAME, not both")
    if args.example:
        names = available_examples()
        if args.example not in names:
            raise InputError(f"unknown example {args.example!r}; available examples: {', '.join(names) or 'none'}")
        return EXAMPLES_DIR / args.example
    if not args.program:
        raise InputError(f"give a program directory or --example NAME (available: {', '.join(available_examples())})")
    return Path(args.program)


def _load_npy(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{what} file {str(path)!r} does not exist; pass an existing .npy file") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{what} file {str(path)!r} is not a readable .npy array ({exc}); save the spikes with "
                         f"numpy.save") from None


def _inputs(args: argparse.Namespace, program: Any, directory: Path) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Input spikes, labels if known, and where they came from."""
    if args.inputs is not None and args.random is not None:
        raise InputError("give either --inputs FILE.npy or --random N, not both")
    if args.inputs is not None:
        return _load_npy(Path(args.inputs), "inputs"), None, args.inputs
    if args.random is not None:
        if args.random < 1 or not 0.0 <= args.rate <= 1.0:
            raise InputError(f"--random {args.random} --rate {args.rate}: need N >= 1 and a rate in [0, 1]")
        from crossmap.testing import random_inputs

        seed = args.seed if args.seed is not None else int(program.metadata.get("seed", 0))
        return random_inputs(program, args.random, seed, args.rate), None, f"random (rate {args.rate}, seed {seed})"
    own = directory / "inputs.npy"
    if own.is_file():
        labels = directory / "labels.npy"
        return _load_npy(own, "inputs"), _load_npy(labels, "labels") if labels.is_file() else None, str(own)
    raise InputError(f"program {str(directory)!r} ships no inputs.npy; give --inputs FILE.npy or --random N")


def run(args: argparse.Namespace) -> int:
    """Emulate and print the per-sample table and the means."""
    from crossmap import emulate

    directory = _program_dir(args)
    program = load(directory)
    spikes, labels, source = _inputs(args, program, directory)
    options: dict[str, Any] = {} if args.seed is None else {"seed": args.seed}
    if args.device is not None:
        if args.backend != "torch":
            raise InputError("--device chooses where the torch backend runs; add --backend torch")
        options["device"] = args.device
    result = emulate(program, spikes, ticks=args.ticks, backend=args.backend, **options)
    energy = result.energy()
    activity = result.activity()
    samples = []
    for b in range(result.batch):
        row = {"class_counts": result.class_counts[b].tolist(), "prediction": int(result.predictions[b]),
               "activity": {k: int(v[b]) for k, v in activity.items()}, "energy_j": float(energy["total"][b])}
        if labels is not None and b < len(labels):
            row["label"] = int(labels[b])
        samples.append(row)
    summary = result.summary()
    summary.update(program=str(directory), inputs=source, cores=program.num_cores)
    if labels is not None and len(labels) == result.batch:
        summary["accuracy"] = float(np.mean(result.predictions == labels))
    if args.json:
        print(json.dumps({"summary": summary, "samples": samples}, indent=2))
        return 0
    _print_text(summary, samples)
    return 0


def _print_text(summary: dict[str, Any], samples: list[dict[str, Any]]) -> None:
    print(f"{summary['program']}: {summary['cores']} cores, {summary['samples']} samples x {summary['ticks']} ticks "
          f"on the {summary['backend']} backend; inputs: {summary['inputs']}")
    with_labels = "label" in samples[0]
    print(f"  {'sample':>6}  {'prediction':>10}" + (f"  {'label':>5}" if with_labels else "")
          + f"  {'spikes':>8}  {'energy uJ':>10}  class counts")
    for b, row in enumerate(samples[:SHOWN_SAMPLES]):
        label = f"  {row['label']:>5}" if with_labels else ""
        print(f"  {b:>6}  {row['prediction']:>10}{label}  {row['activity']['spikes']:>8}  "
              f"{row['energy_j'] * 1e6:>10.4f}  {row['class_counts']}")
    if len(samples) > SHOWN_SAMPLES:
        print(f"  ... {len(samples) - SHOWN_SAMPLES} more samples (use --json for all)")
    if "accuracy" in summary:
        print(f"accuracy {100 * summary['accuracy']:.2f}%")
    print("mean per sample:")
    for key, value in summary["activity_per_sample"].items():
        print(f"  {key:<16}{value:>14.1f}")
    print(f"  energy {summary['energy_per_sample_j'] * 1e6:.4f} uJ, from the activity measured on these "
          f"{summary['samples']} samples:")
    for key, value in summary["energy_breakdown_j"].items():
        print(f"    {key:<16}{value * 1e6:>12.4f} uJ")

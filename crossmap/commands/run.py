"""``crossmap run OUT --dataset mnist``: emulated inference on a dataset: accuracy, spikes, energy."""

from __future__ import annotations

import argparse
import json

from crossmap.commands.arguments import bounded_int
from crossmap.limits import MAX_BATCH, MAX_SAMPLES, MAX_WORKERS


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand."""
    p = sub.add_parser("run", help="emulate a compiled program on a dataset")
    p.add_argument("program", help="compiled program directory")
    p.add_argument("--dataset", default="mnist", choices=["mnist", "sample"],
                   help="mnist (IDX files) or sample (the small MNIST sample bundled with crossmap)")
    p.add_argument("--data", default=None, metavar="FILE",
                   help="your own samples instead of --dataset: .npz with x (and optional integer labels y), or .npy; "
                        "encoded as the program's input encoding says")
    p.add_argument("--data-dir", default=None, help="MNIST directory (default: $CROSSMAP_DATA_DIR or the cache)")
    p.add_argument("--split", default="test", choices=["test", "train"])
    p.add_argument("--limit", type=bounded_int(1, MAX_SAMPLES), default=None, help="use N samples (a fixed random subset: MNIST copies may be sorted by label)")
    p.add_argument("--batch-size", type=bounded_int(1, MAX_BATCH), default=256)
    p.add_argument("--backend", default="emulator", choices=["emulator", "reference", "torch"],
                   help="emulator (vectorized numpy), torch (CPU or CUDA, see --device) or reference (slow loops)")
    p.add_argument("--device", default=None,
                   help="torch backend: cpu (default), cuda or cuda:N")
    p.add_argument("--precision", default=None, choices=["float32", "tf32", "bfloat16"],
                   help="torch backend: matmul input format, all exact for the chip's integer weights "
                        "(default float32; tf32 and bfloat16 use CUDA tensor cores)")
    p.add_argument("--workers", type=bounded_int(1, MAX_WORKERS), default=1,
                   help="emulate batches in N processes (same figures, about N times the throughput on N cores)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="shard the batches over a Ray cluster at ADDRESS (without one: a local Ray on this "
                        "machine's CPUs); same figures as one process")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run and print accuracy, spikes and energy per sample, and throughput."""
    from crossmap.errors import InputError

    options = {k: v for k, v in (("device", args.device), ("precision", args.precision)) if v is not None}
    if options and args.backend != "torch":
        raise InputError(f"--device and --precision choose where the torch backend runs; add --backend torch "
                         f"(the {args.backend} backend runs on the CPU)")
    if args.ray is not None and args.workers != 1:
        raise InputError("give --workers N or --ray, not both: with --ray every CPU of the cluster runs a worker")
    from crossmap.program import load
    from crossmap.runner import run_dataset

    program = load(args.program)
    show = None if not (args.quiet or args.json) else False
    if args.data is not None:
        from crossmap.datasets import load_arrays
        from crossmap.runner import run_arrays

        x, y = load_arrays(args.data)
        if args.limit:
            x, y = x[:args.limit], (y[:args.limit] if y is not None else None)
        summary = run_arrays(program, x, y, batch_size=args.batch_size, backend=args.backend, show_progress=show,
                             name=args.data, workers=args.workers, backend_options=options, ray_address=args.ray)
    else:
        summary = run_dataset(program, args.dataset, data_dir=args.data_dir, split=args.split, limit=args.limit,
                              batch_size=args.batch_size, backend=args.backend, workers=args.workers,
                              show_progress=show, backend_options=options, ray_address=args.ray)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    if summary["accuracy"] is None:
        counts = ", ".join(f"{k}: {v}" for k, v in enumerate(summary["class_counts"]))
        print(f"{summary['samples']} samples of {summary['dataset']} (no labels): predicted classes {counts}")
    else:
        print(f"{summary['samples']} samples of {summary['dataset']}: accuracy {100 * summary['accuracy']:.2f}%")
    print(f"  spikes per sample {summary['spikes_per_sample']:.1f}, synaptic events per sample "
          f"{summary['synaptic_events_per_sample']:.1f}, ticks {summary['ticks']}")
    print(f"  energy per sample {summary['energy_per_sample_uj']:.4f} uJ, from the activity measured on these "
          f"{summary['samples']} samples (crossmap report estimates from compile-time calibration traffic):")
    for key, value in summary["energy_breakdown_uj"].items():
        print(f"    {key:<16}{value:.4f} uJ")
    where = f"{summary['workers']} Ray CPUs" if summary["ray"] else f"{summary['workers']} process(es)"
    print(f"  throughput {summary['samples_per_second']:.1f} samples/s ({summary['seconds']:.1f} s) on the "
          f"{summary['backend']} backend, {where}")
    return 0

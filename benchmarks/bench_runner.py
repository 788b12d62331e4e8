"""Dataset runs side by side: thread counts and where the batches run.

    python benchmarks/bench_runner.py PROGRAM_DIR [--samples 1000] [--data-dir DIR] [--ray] [--rounds N]
                                      [--backend emulator]

Emulates the first ``--samples`` MNIST test images (a fixed random subset) with ``run_arrays``:

- one process with the BLAS and torch libraries' default thread counts (what a process that sets
  nothing gets: OpenBLAS starts a thread per CPU);
- one process with the runner's chosen counts (``crossmap.runner.thread_counts``: one BLAS thread);
- two forked worker processes (``--workers 2``);
- with ``--ray``: a local Ray of 2 CPUs, timed twice: a plain ``crossmap run --ray`` (``ray.init``
  inside the run, the driver emulating batches meanwhile and all along), then on a running cluster
  (``--ray ADDRESS`` of a running cluster), against the two forked workers and one process.

Every run must give the same figures (asserted). Prints images per second and the ratios, from
the best time of each variant over ``--rounds`` runs (the forked runs first: forking a process
that has run Ray can hang).
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager

import numpy as np

import crossmap
from crossmap import runner
from crossmap.runner import load_dataset, run_arrays

FIGURES = ("accuracy", "spikes_per_sample", "synaptic_events_per_sample", "energy_per_sample_uj",
           "activity_per_sample", "energy_breakdown_uj")


@contextmanager
def library_default_threads():
    """Run without the runner's thread choice: the libraries' own defaults."""
    from threadpoolctl import threadpool_limits

    saved = runner.thread_counts
    runner.thread_counts = lambda processes: (None, None)
    original_limits = runner.limit_threads
    runner.limit_threads = lambda processes: None
    try:
        with threadpool_limits(None):
            yield
    finally:
        runner.thread_counts, runner.limit_threads = saved, original_limits


def time_ray(timed, images: np.ndarray, args: argparse.Namespace) -> None:
    """A plain ``--ray`` run (import ray and ray.init inside), then one on the running cluster."""
    from crossmap.ray_runner import RayBatches

    local = {}
    original_iter = RayBatches.__iter__

    def counting_iter(self):   # how many batches the driver emulated
        yield from original_iter(self)
        local["batches"] = self.local

    RayBatches.__iter__ = counting_iter
    try:
        timed("Ray, 2 CPUs, with start-up (--ray)", ray_address="local")   # import ray and ray.init inside
        import ray

        ray.shutdown()
        print(f"    ({local['batches']} of {-(-len(images) // args.batch_size)} batches emulated by the driver)")
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        timed("Ray, 2 CPUs, cluster running (--ray ADDRESS)", ray_address="local")
    finally:
        RayBatches.__iter__ = original_iter
        if "ray" in sys.modules:
            sys.modules["ray"].shutdown()


def main() -> int:
    """Time the variants and print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("program")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--backend", default="emulator", choices=["emulator", "torch"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--ray", action="store_true", help="also time a local Ray of 2 CPUs")
    p.add_argument("--skip-default", action="store_true", help="skip the library-default-threads run")
    p.add_argument("--rounds", type=int, default=1,
                   help="time the 2-process and the Ray runs this many times each; report the best of each "
                        "(the machine is shared: a competing job in one run then spoils no ratio)")
    args = p.parse_args()
    program = crossmap.load(args.program)
    images, labels = load_dataset("mnist", args.data_dir, "test", args.samples)
    common = dict(batch_size=args.batch_size, backend=args.backend, show_progress=False)
    print(f"{args.program}: {program.num_cores} cores, {program.total_ticks} ticks; {len(images)} MNIST test images, "
          f"batch {args.batch_size}, backend {args.backend}")
    runs: dict[str, dict] = {}

    def timed(name: str, **options) -> None:
        start = time.perf_counter()
        summary = run_arrays(program, images, labels, **common, **options)
        seconds = time.perf_counter() - start
        summary["wall"] = min(seconds, runs[name]["wall"]) if name in runs else seconds   # the best of the rounds
        runs[name] = summary
        print(f"  {name:<44} {len(images) / seconds:9.1f} images/s  ({seconds:.1f} s)", flush=True)

    if not args.skip_default:
        with library_default_threads():
            timed("1 process, library default threads")
    timed("1 process, chosen threads (1 BLAS thread)")
    for _ in range(args.rounds):
        timed("2 worker processes (--workers 2)", workers=2)
    for _ in range(args.rounds if args.ray else 0):   # after every fork: forking a process that ran Ray can hang
        time_ray(timed, images, args)
    first = next(iter(runs.values()))
    for name, summary in runs.items():
        for key in FIGURES:
            assert summary[key] == first[key], (name, key)
    print("  every run gave the same figures")
    chosen = runs["1 process, chosen threads (1 BLAS thread)"]["wall"]
    if not args.skip_default:
        print(f"  chosen / default threads speed-up: {runs['1 process, library default threads']['wall'] / chosen:.2f}x")
    pool = runs["2 worker processes (--workers 2)"]["wall"]
    if args.ray:
        for name in ("Ray, 2 CPUs, with start-up (--ray)", "Ray, 2 CPUs, cluster running (--ray ADDRESS)"):
            print(f"  {name}: overhead against 2 forked workers {100 * (runs[name]['wall'] / pool - 1):+.1f}%, "
                  f"against 1 process {100 * (runs[name]['wall'] / chosen - 1):+.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Emulator throughput: random programs of 16, 256 and 4096 TrueNorth cores at batch 1 and 64 and
input activity 5% and 50%, dense path vs event path, in synaptic events per second; the dense
path's time per tick against a plain float32 numpy matmul of the same shapes (C, B, A) x (C, A, N)
measured in the same run; and the peak memory of 4096 cores at batch 64.

    python benchmarks/bench_emulator.py [--threads N] [--ticks T] [--quick] [--program DIR [--samples N]]

Input channel k drives axon k of every core, so every axon is driven at the given rate and the
activity is at least that rate (neuron spikes add to it; the table prints the measured fraction of active
(axon, sample) pairs). ``--threads`` sets the BLAS threads before numpy loads (default 1: the
emulator's own work is single-threaded, and the matmul it is compared with runs under the same
setting). Targets: dense <= 1.5x the matmul at 4096 cores batch 64;
event faster than dense at 5% activity; 4096 cores at batch 64 under 4 GiB.

``--program DIR`` also emulates a compiled program on the first ``--samples`` MNIST test images
(batch 256; needs the data, see crossmap.datasets), per path, beside a plain float32 matmul over
all its cores for each of its ticks: in a layered network most cores of a tick have no active
axon, and the dense path skips them.
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS threads (default 1; 0 keeps the library default, which on a shared, loaded "
                        "machine makes OpenBLAS spin and the timings noise)")
    p.add_argument("--ticks", type=int, default=None,
                   help="ticks of the long timed run (default 12, 6 at 4096 cores; the short run has a third)")
    p.add_argument("--quick", action="store_true", help="16 and 256 cores only")
    p.add_argument("--program", default=None, help="also time this compiled program directory on MNIST")
    p.add_argument("--samples", type=int, default=512, help="MNIST test images for --program (default 512)")
    return p.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None and ARGS.threads:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

from crossmap import ChipSpec, CrossmapError, emulate  # noqa: E402
from crossmap.backends import tables  # noqa: E402
from crossmap.testing import random_program  # noqa: E402


def bench_program(cores: int, ticks: int, seed: int = 1):
    """A random TrueNorth program with 256 input channels: channel k drives axon k of every core."""
    chip = ChipSpec.truenorth()
    A = chip.axons_per_core
    prog = random_program(chip, cores, seed, density=0.25, num_inputs=A, input_ticks=ticks, latency=0)
    pairs = np.arange(cores * A, dtype=np.int32)
    prog.input_channel, prog.input_core, prog.input_axon = pairs % A, pairs // A, pairs % A
    return prog.validate()


def input_spikes(prog, batch: int, ticks: int, rate: float, seed: int = 2) -> np.ndarray:
    """Bernoulli(rate) spikes (batch, ticks, channels), drawn in bytes to keep memory low."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (batch, ticks, prog.num_inputs), dtype=np.uint8) < int(round(rate * 256))


def timed(fn, repeats: int = 1) -> float:
    """Best wall time of ``repeats`` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def plain_matmul_seconds(prog, batch: int, rate: float) -> float:
    """Time of one float32 np.matmul (C, B, A) x (C, A, N), on the emulator's own W_eff."""
    weights = tables.get_tables(prog).weights
    C, A, N = weights.shape
    rng = np.random.default_rng(3)
    x = (rng.integers(0, 256, (C, batch, A), dtype=np.uint8) < int(round(rate * 256))).astype(np.float32)
    out = np.empty((C, batch, N), np.float32)
    np.matmul(x, weights, out=out)  # warm up
    return timed(lambda: np.matmul(x, weights, out=out), repeats=2)


def peak_memory(cores: int, batch: int, ticks: int) -> tuple[float, float]:
    """(traced peak bytes of one emulation including its tables, process max RSS bytes)."""
    prog = bench_program(cores, ticks)
    spikes = input_spikes(prog, batch, ticks, 0.5)
    tables.clear_cache()
    tracemalloc.start()
    emulate(prog, spikes, ticks=ticks, path="dense")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def per_tick_seconds(prog, spikes, short: int, long: int, path: str, repeats: int):
    """Marginal seconds per tick, (t(long ticks) - t(short ticks)) / (long - short), the fixed
    per-call seconds (checks, table lookup, allocation, result), and the long run's Result."""
    runs = {}

    def go(ticks):
        runs[ticks] = emulate(prog, spikes[:, :ticks], ticks=ticks, path=path)

    t_short = timed(lambda: go(short), repeats)
    t_long = timed(lambda: go(long), repeats)
    tick = max(t_long - t_short, 1e-9) / (long - short)
    return tick, max(t_short - short * tick, 0.0), runs[long]


def bench_compiled(directory: str, samples: int) -> None:
    """Samples per second of a compiled program on MNIST per path, against a plain all-cores
    matmul per tick; the paths' predictions must agree."""
    import crossmap
    from crossmap.datasets import load_mnist
    from crossmap.encoding import encode

    prog = crossmap.load(directory)
    images, _ = load_mnist("test")
    spikes = encode(prog.encoding, images[:samples].reshape(samples, -1))
    batch = min(256, samples)
    emulate(prog, spikes[:1])  # build the tables
    predictions, seconds = {}, {}
    for path in ("dense", "event", "auto"):
        start = time.perf_counter()
        predictions[path] = np.concatenate([emulate(prog, spikes[lo:lo + batch], path=path).predictions
                                            for lo in range(0, samples, batch)])
        seconds[path] = time.perf_counter() - start
    matmul = plain_matmul_seconds(prog, batch, 0.5) * prog.total_ticks * -(-samples // batch)
    print(f"compiled program {directory}: {prog.num_cores} cores, {prog.total_ticks} ticks, {samples} samples "
          f"at batch {batch}")
    for path in seconds:
        print(f"  {path:>5}: {samples / seconds[path]:8.1f} samples/s  ({seconds[path]:.1f} s)")
    print(f"  plain all-cores matmul for every tick: {matmul:.1f} s  (dense / matmul "
          f"{seconds['dense'] / matmul:.2f})")
    assert all(np.array_equal(predictions["dense"], p) for p in predictions.values())


def main() -> int:
    """Run the grid and print the table."""
    args = ARGS or argparse.Namespace(threads=1, ticks=None, quick=False, program=None, samples=512)
    if args.program:
        bench_compiled(args.program, args.samples)
    sizes = [16, 256] if args.quick else [16, 256, 4096]
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "library default")
    print(f"emulator benchmark: numpy {np.__version__}, BLAS threads {threads}, {os.cpu_count()} CPUs")
    print("s/tick = marginal time of one more tick; setup = fixed time per emulate call (dense path)")
    header = (f"{'cores':>5} {'batch':>5} {'input':>5} {'active':>6} {'dense s/tick':>12} {'event s/tick':>12} "
              f"{'dense ev/s':>10} {'event ev/s':>10} {'event/dense':>11} {'setup s':>8} {'matmul s':>9} "
              f"{'dense/matmul':>12}")
    print(header)
    print("-" * len(header))
    start = time.perf_counter()
    for cores in sizes:
        short, long = (2, 6) if cores >= 4096 else (4, 12)
        if args.ticks:
            short, long = max(1, args.ticks // 3), args.ticks
        repeats = 2 if cores >= 4096 else 3
        prog = bench_program(cores, long)
        tables.clear_cache()
        for batch in (1, 64):
            for rate in (0.05, 0.5):
                spikes = input_spikes(prog, batch, long, rate)
                emulate(prog, spikes[:, :1], ticks=1)  # build the tables
                tick, setup, results = {}, {}, {}
                for path in ("dense", "event"):
                    tick[path], setup[path], results[path] = per_tick_seconds(prog, spikes, short, long, path, repeats)
                events = results["dense"].synaptic_events.sum() / long  # per tick
                synapses = float(prog.crossbar.sum()) * batch
                matmul = plain_matmul_seconds(prog, batch, rate)
                print(f"{cores:>5} {batch:>5} {rate:>5.0%} {events / synapses:>6.1%} {tick['dense']:>12.4f} "
                      f"{tick['event']:>12.4f} {events / tick['dense']:>10.3g} {events / tick['event']:>10.3g} "
                      f"{tick['event'] / tick['dense']:>11.2f} {setup['dense']:>8.3f} {matmul:>9.4f} "
                      f"{tick['dense'] / matmul:>12.2f}", flush=True)
                assert np.array_equal(results["dense"].spike_count, results["event"].spike_count)
        del prog
        tables.clear_cache()
    if not args.quick:
        peak, rss = peak_memory(4096, 64, 2)
        print(f"peak memory, 4096 cores at batch 64 (2 ticks): traced {peak / 2**30:.2f} GiB during emulate "
              f"(tables + state); process max RSS {rss / 2**30:.2f} GiB (includes the program and inputs)")
    print(f"total benchmark time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CrossmapError as error:  # missing MNIST files and the like: the message, not a traceback
        sys.exit(f"{os.path.basename(sys.argv[0])}: {error}")

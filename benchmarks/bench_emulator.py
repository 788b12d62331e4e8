"""Emulator throughput per backend and integration path, side by side in one run, against a plain
float32 matmul of the same shape.

    python benchmarks/bench_emulator.py [--quick]                    # CPU: the grid and the shipped example
    python benchmarks/bench_emulator.py --backend torch --device cuda --program ensemble [--quick]
    python benchmarks/bench_emulator.py --program DIR [--samples N]  # a compiled program on MNIST

Grid: synthetic programs of 64, 1,024 and 4,096 TrueNorth cores (``--quick``: 64 and 1,024)
driven at 5%, 10%, 20% and 50% input activity, batch 64. Input channel k drives axon k of every
core and no neuron targets a core, so the measured fraction of active (axon, sample) pairs is the
input rate. Per backend and path: the marginal seconds of one more tick, core-ticks per second,
and the ratio to one float32 matmul (C, B, A) x (C, A, N) on the same device (numpy's on the CPU,
torch's bmm on CUDA), measured in the same run; then the peak memory of the largest size.

Programs: ``--program bars`` (the shipped two-core example), ``ensemble`` (a synthetic program of
the fifteen-network ensemble's shape: 8,311 cores in 15 parallel six-layer networks, 784 input
channels, 7 ticks, about 15% of the neurons firing per layer; built directly, without the
25-minute compile) or a compiled program directory (on MNIST test images). Images per second per
backend and path (on CUDA also per matmul precision), every result checked equal to the first,
core-ticks per second, and the time of a float32 matmul over all cores for every tick.

``--threads`` sets the BLAS and torch CPU threads before numpy loads (default 1; 0 keeps the
library defaults). Targets: on 2 CPU cores the sparse path >= 3x faster than the float32 matmul
at 5% and 10% activity and never more than 10% slower than dense at 50%; on one H200, at least
2,000 images/s on the ensemble program.
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS and torch CPU threads (default 1; 0 keeps the library defaults)")
    p.add_argument("--quick", action="store_true", help="a short run: smaller grid, fewer samples")
    p.add_argument("--backend", default="all", choices=["all", "numpy", "torch"],
                   help="backends to time (default all: the numpy emulator and torch)")
    p.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")
    p.add_argument("--program", default=None,
                   help="bars, ensemble, or a compiled program directory (default: the grid, then bars)")
    p.add_argument("--samples", type=int, default=None, help="images for --program (default 4096; quick 1024)")
    p.add_argument("--batch", type=int, default=None,
                   help="batch size for --program (default 256 on the CPU, 512 on CUDA)")
    p.add_argument("--data-dir", default=None, help="MNIST directory for a compiled program")
    return p.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None and ARGS.threads:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import dataclasses  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

from crossmap import ChipSpec, CrossmapError, emulate  # noqa: E402
from crossmap.backends import tables  # noqa: E402
from crossmap.program import Program  # noqa: E402
from crossmap.testing import random_program  # noqa: E402

GRID_BATCH = 64


# ---------------------------------------------------------------------- programs
def grid_program(cores: int, ticks: int, seed: int = 1) -> Program:
    """A random TrueNorth program with 256 input channels: channel k drives axon k of every core;
    no neuron targets a core (so activity is the input rate), a fifth drive output ports."""
    chip = ChipSpec.truenorth()
    A = chip.axons_per_core
    prog = random_program(chip, cores, seed, density=0.25, num_inputs=A, input_ticks=ticks, latency=0,
                          routed_fraction=0.0)
    pairs = np.arange(cores * A, dtype=np.int32)
    prog.input_channel, prog.input_core, prog.input_axon = pairs % A, pairs // A, pairs % A
    return prog.validate()


def binary_weights(prog: Program) -> Program:
    """A copy of ``prog`` with every weight +-1 (its sign; 0 -> +1), as in binary networks."""
    return dataclasses.replace(prog, weight=np.where(prog.weight < 0, -1, 1).astype(prog.weight.dtype))


ENSEMBLE_LAYERS = (224, 152, 96, 56, 24, 2)   # cores per layer of one network (554; 15 networks: 8,310 + 1)


def ensemble_program(networks: int = 15, layers: tuple[int, ...] = ENSEMBLE_LAYERS, seed: int = 0) -> Program:
    """A synthetic program of the fifteen-network ensemble's shape: ``networks`` parallel networks
    of len(layers) layers, 784 input channels on the first layer, delay 1 between layers, every
    neuron of a layer targeting one axon of the next (the last layer's an output port), 10
    classes; one spare core pads the count to 8,311. Random crossbars (density 0.25), weights +-1
    by axon type, thresholds 3 or 4 and reset to 0: about 15% of the neurons fire when 15-20% of
    their axons are active."""
    chip = ChipSpec.truenorth().replace(board_x=3)   # 3 chips of 4,096 cores side by side
    A, N, G = chip.axons_per_core, chip.neurons_per_core, chip.axon_types
    rng = np.random.default_rng(seed)
    per_net = sum(layers)
    C = networks * per_net + 1
    prog = Program.empty(chip, C, num_inputs=784, num_classes=10)
    positions = rng.choice(chip.grid_x * chip.grid_y, size=C, replace=False)
    prog.core_xy = np.stack([positions % chip.grid_x, positions // chip.grid_x], axis=1).astype(np.int32)
    for c0 in range(0, C, 256):
        prog.crossbar[c0:c0 + 256] = rng.random((min(256, C - c0), A, N), dtype=np.float32) < 0.25
    prog.axon_type = rng.integers(0, G, (C, A)).astype(np.int32)
    prog.weight = rng.choice(np.array([-1, 1], np.int32), (C, N, G))
    prog.alpha = rng.integers(3, 5, (C, N)).astype(np.int32)
    channels, cores, axons, ports = [], [], [], 0
    port = np.full((C, N), -1, np.int32)
    for net in range(networks):
        first = net * per_net + np.cumsum((0,) + layers)   # first core of each layer
        for k, size in enumerate(layers):
            layer = np.arange(first[k], first[k] + size)
            if k == 0:   # every axon of the first layer reads a random pixel
                cores.append(np.repeat(layer, A))
                axons.append(np.tile(np.arange(A), size))
                channels.append(rng.integers(0, 784, size * A))
            if k + 1 < len(layers):   # neuron i of the layer -> axon i mod (next layer's axons)
                nxt = np.arange(first[k + 1], first[k + 1] + layers[k + 1])
                flat = np.arange(size * N) % (nxt.size * A)
                prog.target_core[layer] = nxt[flat // A].reshape(size, N)
                prog.target_axon[layer] = (flat % A).reshape(size, N)
                prog.target_delay[layer] = 1
            else:        # the last layer votes: 10 ports per core
                port[layer, :10] = ports + np.arange(size * 10).reshape(size, 10)
                ports += size * 10
    prog.output_port = port
    prog.port_class = (np.arange(ports) % 10).astype(np.int32)
    prog.input_channel = np.concatenate(channels).astype(np.int32)
    prog.input_core = np.concatenate(cores).astype(np.int32)
    prog.input_axon = np.concatenate(axons).astype(np.int32)
    prog.input_ticks = 1
    prog.latency = len(layers)
    prog.metadata = {"seed": seed, "generator": "benchmarks/bench_emulator.py ensemble_program"}
    return prog.validate()


def input_spikes(num_inputs: int, batch: int, ticks: int, rate: float, seed: int = 2) -> np.ndarray:
    """Bernoulli(rate) spikes (batch, ticks, channels), drawn in bytes to keep memory low."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (batch, ticks, num_inputs), dtype=np.uint8) < int(round(rate * 256))


# ---------------------------------------------------------------------- timing
def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA timings)."""
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def timed(fn, repeats: int = 1, device: str = "cpu") -> float:
    """Best wall time of ``repeats`` calls."""
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def matmul_seconds(weights: np.ndarray, batch: int, rate: float, device: str, repeats: int = 2) -> float:
    """Seconds of one float32 matmul (C, B, A) x (C, A, N) on ``weights``: numpy's on the CPU,
    torch's bmm (IEEE float32) on CUDA."""
    C, A, N = weights.shape
    if device == "cpu":
        rng = np.random.default_rng(3)
        x = (rng.integers(0, 256, (C, batch, A), dtype=np.uint8) < int(round(rate * 256))).astype(np.float32)
        out = np.empty((C, batch, N), np.float32)
        np.matmul(x, weights, out=out)  # warm up
        return timed(lambda: np.matmul(x, weights, out=out), repeats)
    import torch
    from crossmap.backends.torch_emulator import _matmul_precision

    generator = torch.Generator(device=device).manual_seed(3)
    xt = (torch.rand((C, batch, A), device=device, generator=generator) < rate).float()
    wt = torch.from_numpy(weights).to(device)
    with _matmul_precision(torch.device(device), "float32"):
        torch.bmm(xt, wt)
        return timed(lambda: torch.bmm(xt, wt), repeats, device)


def variants(backend: str, device: str) -> list[tuple[str, str, dict]]:
    """(label, backend, options) of the backends and paths to time."""
    out = []
    if backend in ("all", "numpy") and device == "cpu":
        out += [(f"numpy {path}", "emulator", {"path": path}) for path in ("dense", "event", "sparse", "auto")]
    if backend in ("all", "torch"):
        out += [(f"torch {path}", "torch", {"path": path, "device": device}) for path in ("dense", "sparse", "auto")]
    return out


def per_tick_seconds(prog, spikes, short: int, long: int, backend: str, options: dict, repeats: int):
    """Marginal seconds per tick, (t(long ticks) - t(short ticks)) / (long - short), and the long
    run's Result."""
    runs = {}

    def go(ticks):
        runs[ticks] = emulate(prog, spikes[:, :ticks], ticks=ticks, backend=backend, **options)

    go(1)  # build the tables
    t_short = timed(lambda: go(short), repeats)
    t_long = timed(lambda: go(long), repeats)
    return max(t_long - t_short, 1e-9) / (long - short), runs[long]


def integration_seconds(prog: Program, spikes: np.ndarray, path: str, device: str, repeats: int) -> float:
    """Seconds of the torch backend's synaptic integration (the path alone: no neuron update, no
    routing) of one tick over every core, on the input spikes of tick 0."""
    from crossmap.backends.common import prepare_run
    from crossmap.backends.torch_emulator import TorchEmulator, _Run

    emulator = TorchEmulator(prog, device=device, path=path, tables=tables.get_tables(prog))
    tab = emulator.tab
    run = _Run(prog, tab, prepare_run(prog, spikes[:, :1], 1, {}, "torch"), path)
    slot = run.ring[0]
    slot.index_add_(0, tab.input_dst, run.inputs[0].index_select(0, tab.input_src))
    x = slot.clamp_(max=1.0).view(tab.C, tab.A, run.B)
    active = x.sum(dim=(1, 2)).cpu().numpy()

    def go():
        for c0 in range(0, tab.C, run.block):
            c1 = min(tab.C, c0 + run.block)
            run.integrate(x[c0:c1], active[c0:c1], c0)

    go()
    return timed(go, repeats, device)


def numpy_integration_seconds(prog: Program, spikes: np.ndarray, path: str, repeats: int) -> float:
    """Seconds of the numpy emulator's synaptic integration (the path alone) of one tick over
    every core, on the input spikes of tick 0; ``auto`` chooses per block as a run does."""
    from crossmap.backends import emulator
    from crossmap.backends.bits import wide
    from crossmap.backends.common import prepare_run

    tab = tables.get_tables(prog)
    run = emulator._Run(prog, tab, prepare_run(prog, spikes[:, :1], 1, {}, "emulator"), path)
    C, A, N, B = run.shape
    flat = run.ring[0]
    tab.routing.inputs.deliver(wide(run.inputs[0]), wide(flat))
    pairs = run.active_pairs(flat)
    slot = flat.reshape(C, A, -1)
    busy = pairs > 0

    def go():
        for c0 in range(0, C, run.block):
            c1 = min(C, c0 + run.block)
            S = run.S[: c1 - c0]
            if path == "sparse" or (path == "auto" and run.sparse_block(pairs, c0, c1)):
                run.integrate_sparse(slot, c0, c1, S)
            else:
                run.integrate_dense(slot, busy[c0:c1], c0, c1, S)

    go()
    return timed(go, repeats)


def clear_caches() -> None:
    """Drop both backends' cached tables."""
    tables.clear_cache()
    if "crossmap.backends.torch_emulator" in sys.modules:
        sys.modules["crossmap.backends.torch_emulator"].clear_cache()


def bench_grid(args: argparse.Namespace) -> None:
    """The synthetic grid: per-tick seconds per backend and path against the matmul."""
    sizes = [64, 1024] if args.quick else [64, 1024, 4096]
    rates = [0.05, 0.10, 0.20, 0.50]
    todo = variants(args.backend, args.device)
    print(f"grid: batch {GRID_BATCH}, device {args.device}; s/tick = marginal seconds of one more tick; "
          f"x matmul = matmul seconds / s/tick (above 1: faster than the float32 matmul)")
    header = f"{'cores':>5} {'active':>6} {'matmul s':>9} " + " ".join(f"{label:>22}" for label, _, _ in todo)
    print(header)
    print("-" * len(header))
    integration: list[str] = []
    for cores in sizes:
        short, long = (1, 3) if cores >= 4096 else (2, 6)
        repeats = 1 if cores >= 4096 or args.quick else 2
        prog = grid_program(cores, long)
        clear_caches()
        weights = tables.get_tables(prog).weights
        for rate in rates:
            spikes = input_spikes(prog.num_inputs, GRID_BATCH, long, rate)
            matmul = matmul_seconds(weights, GRID_BATCH, rate, args.device)
            cells, first = [], None
            for label, backend, options in todo:
                tick, result = per_tick_seconds(prog, spikes, short, long, backend, options, repeats)
                if first is None:
                    first = result
                else:
                    assert np.array_equal(first.port_counts, result.port_counts), label
                    assert np.array_equal(first.synaptic_events, result.synaptic_events), label
                cells.append(f"{tick:8.4f} {cores / tick:7.0f} {matmul / tick:5.2f}x")
            active = first.synaptic_events.sum() / long / (float(prog.crossbar.sum()) * GRID_BATCH)
            print(f"{cores:>5} {active:>6.1%} {matmul:>9.4f} " + " ".join(f"{c:>22}" for c in cells), flush=True)
            for kind, variant in (("full", prog), ("+-1", binary_weights(prog))):
                for name, backend in (("numpy", "numpy"), ("torch", "torch")):
                    if args.backend not in ("all", backend) or (backend == "numpy" and args.device != "cpu"):
                        continue
                    if backend == "numpy":
                        integ = {path: numpy_integration_seconds(variant, spikes, path, repeats + 1)
                                 for path in ("dense", "sparse", "auto")}
                    else:
                        integ = {path: integration_seconds(variant, spikes, path, args.device, repeats + 1)
                                 for path in ("dense", "sparse", "auto")}
                    integration.append(f"{cores:>5} {kind:>7} {active:>6.1%} {name:>7} {matmul:>9.4f} " + " ".join(
                        f"{integ[p]:>10.4f} {matmul / integ[p]:>6.2f}x" for p in integ)
                        + f" {integ['dense'] / integ['sparse']:>13.2f} {integ['auto'] / integ['dense']:>10.2f}")
                    clear_caches()
        del prog, weights
        clear_caches()
    print("cells: s/tick, core-ticks/s, x matmul")
    if integration:
        print(f"synaptic integration alone (one tick, every core; seconds and x matmul; weights: the grid's full "
              f"range, or the same crossbars with weights +-1 as in binary networks):\n"
              f"{'cores':>5} {'weights':>7} {'active':>6} {'backend':>7} {'matmul s':>9} {'dense':>18} {'sparse':>18} "
              f"{'auto':>18} {'dense/sparse':>13} {'auto/dense':>10}")
        print("\n".join(integration))
    size = sizes[-1]
    peak, rss = peak_memory(size, args)
    print(f"peak memory, {size} cores at batch {GRID_BATCH} (3 ticks, 50%): traced {peak / 2**30:.2f} GiB in the numpy "
          f"emulator (tables + state); process max RSS so far {rss / 2**30:.2f} GiB")


def peak_memory(cores: int, args: argparse.Namespace) -> tuple[float, float]:
    """(traced peak bytes of one numpy emulation including its tables, process max RSS bytes)."""
    prog = grid_program(cores, 3)
    spikes = input_spikes(prog.num_inputs, GRID_BATCH, 3, 0.5)
    clear_caches()
    tracemalloc.start()
    emulate(prog, spikes, ticks=3, path="dense")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    clear_caches()
    return peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


# ---------------------------------------------------------------------- whole programs
def program_inputs(args: argparse.Namespace, samples: int) -> tuple[Program, np.ndarray, str]:
    """The program of ``--program`` and its input spikes."""
    from crossmap.testing import bars_samples

    name = args.program or "bars"
    if name == "bars":
        from crossmap.testing import bars_program
        return bars_program(), bars_samples(samples, seed=1)[0], "the shipped bars example (random bars)"
    if name == "ensemble":
        start = time.perf_counter()
        prog = ensemble_program()
        spikes = input_spikes(784, samples, 1, 0.19)   # like thresholded MNIST: 19% of pixels on
        return prog, spikes, f"synthetic ensemble-shaped program (built in {time.perf_counter() - start:.0f} s), " \
                             f"random inputs at 19%"
    import crossmap
    from crossmap.datasets import load_mnist
    from crossmap.encoding import encode

    prog = crossmap.load(name)
    images, _ = load_mnist("test", data_dir=args.data_dir, limit=samples, seed=0)
    return prog, encode(prog.encoding, images.reshape(len(images), -1)), "MNIST test images"


def bench_program(args: argparse.Namespace) -> None:
    """Images per second of one program per backend, path (and CUDA precision), results checked equal."""
    samples = args.samples or (1024 if args.quick else 4096)
    cuda = args.device.startswith("cuda")
    batch = args.batch or (512 if cuda else 256)
    prog, spikes, source = program_inputs(args, samples)
    samples = len(spikes)
    batch = min(batch, samples)
    todo = variants(args.backend, args.device)
    if cuda:   # auto is dense on CUDA; the matmul precisions side by side instead
        todo = [(f"torch dense {p}", "torch", {"path": "dense", "device": args.device, "precision": p})
                for p in ("float32", "tf32", "bfloat16")]
    if not cuda and args.backend in ("all", "numpy"):
        todo.append(("numpy auto, no rest skip", "emulator", {"path": "auto", "every_core": True}))
    if prog.num_cores > 1000 and not cuda and not args.quick:
        todo = [t for t in todo if t[0] != "torch sparse"]
    print(f"program: {prog.num_cores} cores, {prog.total_ticks} ticks, {samples} samples at batch {batch}; "
          f"inputs: {source}; device {args.device}")
    reference = None
    clear_caches()
    start = time.perf_counter()
    shared = tables.get_tables(prog)   # built once, shared by every variant
    print(f"  tables built in {time.perf_counter() - start:.1f} s", flush=True)
    for label, backend, options in todo:
        start = time.perf_counter()
        try:
            run = prepared(prog, backend, options, shared)
            run(spikes[:min(batch, 8)], 0)   # build and move the tables
        except CrossmapError as error:
            print(f"  {label:<22} not run: {error}")
            continue
        setup = time.perf_counter() - start
        if cuda:
            import torch
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        results = [run(spikes[lo:lo + batch], lo) for lo in range(0, samples, batch)]
        seconds = time.perf_counter() - start
        counts = np.concatenate([r.port_counts for r in results])
        events = np.concatenate([r.synaptic_events for r in results])
        if reference is None:
            reference = counts, events
        same = np.array_equal(reference[0], counts) and np.array_equal(reference[1], events)
        memory = (f"GPU peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if cuda else
                  f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")
        print(f"  {label:<22} {samples / seconds:9.1f} images/s  {samples * prog.total_ticks * prog.num_cores / seconds:10.3g}"
              f" core-ticks/s  ({seconds:.1f} s; setup {setup:.1f} s; {memory}; "
              f"{'equal to ' + todo[0][0] if same else 'DIFFERENT from ' + todo[0][0]})", flush=True)
        assert same, f"{label} differs from {todo[0][0]}"
        del results, run
        if "crossmap.backends.torch_emulator" in sys.modules:
            sys.modules["crossmap.backends.torch_emulator"].clear_cache()
        if cuda:
            torch.cuda.empty_cache()
    if prog.num_cores * GRID_BATCH < 2**22 or cuda:
        weights = shared.weights
        matmul = matmul_seconds(weights, batch, 0.2, args.device) * prog.total_ticks * -(-samples // batch)
        print(f"  a float32 matmul over all {prog.num_cores} cores for every tick: {samples / matmul:9.1f} images/s "
              f"({matmul:.1f} s)")
    if reference is None:
        return
    activity = mean_activity(prog, reference[1])
    print(f"  activity: {activity:.1%} of (axon, sample) pairs active per core-tick on average")


def mean_activity(prog: Program, events: np.ndarray) -> float:
    """Mean fraction of active (axon, sample) pairs per core and tick, estimated from the synaptic
    events per sample ``events`` and the mean count of neurons per axon."""
    fan = float(prog.crossbar.sum()) / prog.num_cores / prog.chip.axons_per_core
    return float(events.mean()) / fan / (prog.num_cores * prog.chip.axons_per_core * prog.total_ticks)


def prepared(prog: Program, backend: str, options: dict, shared: tables.Tables):
    """A run function ``(spikes, sample_offset) -> Result`` with the backend prepared once (on
    the numpy tables ``shared``)."""
    if backend == "torch":
        from crossmap.backends.torch_emulator import TorchEmulator

        options = dict(options)
        emulator = TorchEmulator(prog, path=options.pop("path"), tables=shared, **options)
        return lambda spikes, offset: emulator.run(spikes, sample_offset=offset)
    options = dict(options)
    if options.pop("every_core", False):   # the numpy emulator without skipping resting cores
        from crossmap.backends import emulator

        def every_core(spikes, offset):
            emulator.SKIP_RESTING_CORES = False
            try:
                return emulate(prog, spikes, backend=backend, sample_offset=offset, **options)
            finally:
                emulator.SKIP_RESTING_CORES = True
        return every_core
    return lambda spikes, offset: emulate(prog, spikes, backend=backend, sample_offset=offset, **options)


def main() -> int:
    """The grid (unless a program is named), then the program."""
    args = ARGS or argparse.Namespace(threads=1, quick=True, backend="all", device="cpu", program=None,
                                      samples=None, batch=None, data_dir=None)
    if args.backend in ("all", "torch"):
        import torch
        if args.threads:
            torch.set_num_threads(args.threads)
        tinfo = f"torch {torch.__version__} ({torch.get_num_threads()} CPU threads"
        tinfo += f", {torch.cuda.get_device_name(0)})" if args.device.startswith("cuda") else ")"
    else:
        tinfo = "no torch"
    print(f"emulator benchmark: numpy {np.__version__}, BLAS threads "
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'library default')}, {tinfo}, {os.cpu_count()} CPUs")
    start = time.perf_counter()
    if args.program is None:
        bench_grid(args)
    bench_program(args)
    print(f"total benchmark time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CrossmapError as error:  # missing MNIST files and the like: the message, not a traceback
        sys.exit(f"{os.path.basename(sys.argv[0])}: {error}")

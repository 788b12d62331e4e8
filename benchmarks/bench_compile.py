"""Compile time and memory at scale: seconds per stage and peak memory for the shipped models and
for synthetic block networks of about 100, 1,000, 4,000 and 8,000 cores, and the growth exponent
of time and memory against cores fitted on the synthetic series (time ~ cores^k).

Each case runs in a fresh process, so its peak resident memory is its own; seconds are wall time
per stage (import, binarize, partition, place, route, emit; a synthetic network starts at
partition). On a shared machine compare the figures of one run with each other, not with another
run's. Run: ``python benchmarks/bench_compile.py`` (``--quick``: 100 and 1,000 cores and the small
shipped models; ``--models a,b`` and ``--cores 100,1000`` choose the cases; ``--json`` prints the
rows as JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
SYNTHETIC_CORES = (100, 1000, 4000, 8000)
QUICK_CORES = (100, 1000)
QUICK_MODELS = ("esser2015_binary", "esser2015_large")
BLOCK = 256  # neurons per block: one core's worth


def peak_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def block_network(cores: int, seed: int = 0):
    """A layered binary network of about ``cores`` cores, built like the core-shaped networks of
    Esser et al.: ``layers`` layers of ``blocks`` blocks of 256 neurons, each neuron reading 128
    neurons of its own block of the layer below (the first layer: 128 of its block's 256 input
    channels), and per block 10 readout neurons (one per class) reading 128 neurons of the last
    layer's block. Every block fills one core."""
    from crossmap.chip import ChipSpec
    from crossmap.deployed import INPUT, DeployedNetwork, Lines, NeuronGroup
    import scipy.sparse as sp

    chip = ChipSpec.named("truenorth")
    layers = 4
    blocks = max(1, round(cores / (layers + 0.5)))
    rng = np.random.default_rng(seed)
    width = blocks * BLOCK
    groups, lines = [], []

    def group(name: str, size: int, **kw) -> NeuronGroup:
        weight = rng.integers(-1, 2, (size, chip.axon_types))
        weight[:, 0] = 1
        return NeuronGroup.make(name, weight, alpha=kw.pop("alpha", 8), chip=chip, layer=name, **kw)

    def connect(source: str, target: str, per_block: int, fan_in: int) -> Lines:
        """Each of the ``per_block`` target neurons of block b reads ``fan_in`` sources of block b."""
        picks = np.argsort(rng.random((blocks * per_block, BLOCK)), axis=1)[:, :fan_in]
        block = np.arange(blocks * per_block) // per_block
        src = (block[:, None] * BLOCK + picks).reshape(-1).astype(np.int64)
        tgt = np.repeat(np.arange(blocks * per_block), fan_in)
        types = src % chip.axon_types
        base = src * chip.axon_types + types
        uniq, row = np.unique(base, return_inverse=True)
        syn = sp.csr_matrix((np.ones(row.size, bool), (row.reshape(-1), tgt)), shape=(uniq.size, blocks * per_block))
        return Lines(source, target, uniq // chip.axon_types, uniq % chip.axon_types, syn)

    previous = INPUT
    for layer in range(layers):
        name = f"layer{layer + 1}"
        groups.append(group(name, width))
        lines.append(connect(previous, name, BLOCK, 128))
        previous = name
    groups.append(group("readout", 10 * blocks, output_class=np.arange(10 * blocks) % 10))
    lines.append(connect(previous, "readout", 10, 128))
    return DeployedNetwork(chip, width, groups, lines, num_classes=10).validate()


def run_case(kind: str, name: str, queue: multiprocessing.Queue) -> None:
    """Compile one case stage by stage (in a child process) and put its row on ``queue``."""
    try:
        queue.put(_compile_case(kind, name))
    except Exception as exc:  # a failed case is a row with its error, the others still run
        queue.put({"case": name, "error": f"{type(exc).__name__}: {exc}"})


def _compile_case(kind: str, name: str) -> dict:
    from crossmap.chip import ChipSpec
    from crossmap.compiler import calibration_inputs, default_pipeline
    from crossmap.pipeline import CompileState, parse_pipeline

    seconds: dict[str, float] = {}
    memory: dict[str, float] = {}
    passes = parse_pipeline(default_pipeline())
    for p in passes:
        if p.name == "partition":
            p.board = "auto"
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        if kind == "model":
            from crossmap.frontend import import_onnx

            network = import_onnx(str(MODELS_DIR / f"{name}.onnx"))
            state = CompileState(chip=ChipSpec.named("truenorth"), network=network,
                                 calibration=calibration_inputs(network), output_dir=Path(tmp) / "out")
            seconds["import"] = time.perf_counter() - start
            memory["import"] = peak_mb()
        else:
            net = block_network(int(name))
            state = CompileState(chip=net.chip, deployed=net, output_dir=Path(tmp) / "out")
            passes = [p for p in passes if not p.name.startswith("binarize")]
            seconds["build"] = time.perf_counter() - start
            memory["build"] = peak_mb()
        for p in passes:
            clock = time.perf_counter()
            state = p.run(state) or state
            stage = "binarize" if p.name.startswith("binarize") else p.name
            seconds[stage] = time.perf_counter() - clock
            memory[stage] = peak_mb()
    total = sum(v for k, v in seconds.items() if k != "build")
    return {"case": name if kind == "model" else f"synthetic {name}", "kind": kind, "target": name,
            "cores": int(state.program.num_cores), "seconds": {k: round(v, 2) for k, v in seconds.items()},
            "total_s": round(total, 2), "peak_mb": round(max(memory.values()), 1),
            "peak_mb_after": {k: round(v, 1) for k, v in memory.items()}}


def measure(kind: str, name: str) -> dict:
    """One case in a fresh process (so its peak memory is its own)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=run_case, args=(kind, name, queue))
    child.start()
    row = queue.get()
    child.join()
    return row


def growth_exponent(rows: list[dict], key: str) -> float | None:
    """The slope of log(``key``) against log(cores) over the synthetic rows (least squares)."""
    points = [(r["cores"], r[key]) for r in rows if r.get("kind") == "synthetic" and "error" not in r and r[key] > 0]
    if len(points) < 2:
        return None
    x = np.log([p[0] for p in points])
    y = np.log([p[1] for p in points])
    return float(np.polyfit(x, y, 1)[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 cores and the small shipped models")
    parser.add_argument("--models", help="comma-separated shipped model names (default: every model that compiles "
                                         "with the default pipeline; 'none' for none)")
    parser.add_argument("--cores", help="comma-separated synthetic sizes (default 100,1000,4000,8000; 'none')")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    args = parser.parse_args(argv)
    if args.models:
        models = [] if args.models == "none" else args.models.split(",")
    elif args.quick:
        models = list(QUICK_MODELS)
    else:
        models = sorted(p.stem for p in MODELS_DIR.glob("*.onnx"))
    if args.cores:
        sizes = [] if args.cores == "none" else [int(c) for c in args.cores.split(",")]
    else:
        sizes = list(QUICK_CORES if args.quick else SYNTHETIC_CORES)
    rows = []
    cases = [("model", m) for m in models] + [("synthetic", str(c)) for c in sizes]
    for kind, name in cases:
        row = measure(kind, name)
        rows.append(row)
        if not args.json:
            if "error" in row:
                print(f"{row['case']:24s} error: {row['error']}", flush=True)
                continue
            stages = " ".join(f"{k} {v:.1f}" for k, v in row["seconds"].items())
            print(f"{row['case']:24s} cores {row['cores']:5d}  total {row['total_s']:7.1f} s  peak "
                  f"{row['peak_mb']:7.0f} MB  ({stages})", flush=True)
    time_k = growth_exponent(rows, "total_s")
    memory_k = growth_exponent(rows, "peak_mb")
    if args.json:
        print(json.dumps({"rows": rows, "time_exponent": time_k, "memory_exponent": memory_k}, indent=2))
    else:
        fmt = lambda k: "n/a" if k is None else f"{k:.2f}"  # noqa: E731
        print(f"growth exponent on the synthetic series (time ~ cores^k): time {fmt(time_k)}, "
              f"peak memory {fmt(memory_k)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

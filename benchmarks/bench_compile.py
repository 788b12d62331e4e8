"""Compile time and memory at scale: seconds per stage (CPU and wall) and peak memory for the
shipped models and for synthetic block networks of about 100, 1,000, 4,000 and 8,000 cores, and the
growth exponent of time and memory against cores fitted on the synthetic series (time ~ cores^k).

Each case runs in a fresh process, so its peak resident memory is its own; seconds are per stage
(import, binarize, partition, place, route, emit; a synthetic network starts at partition), run as
``crossmap compile`` runs them (every core for independent work, inputs freed once read). CPU
seconds (this process and its finished worker processes) are the figure to compare on a shared
machine; wall seconds also count waiting for it; ``process`` is the whole child process on the wall
clock, interpreter start and module imports included, as a user waits for ``crossmap compile``.
``--baseline DIR`` also compiles every case with another crossmap source tree (for instance
``git archive COMMIT | tar -x -C DIR``), case by case, alternating, and prints both side by side:
cores, placement cost and CPU seconds, with the ratio. Run: ``python benchmarks/bench_compile.py``
(``--quick``: 100 and 1,000 cores and the small shipped models; ``--models a,b`` and ``--cores
100,1000`` choose the cases; ``--json`` prints the rows as JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
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


def _cpu() -> float:
    """CPU seconds of this process and of its finished (reaped) worker processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _compile_case(kind: str, name: str) -> dict:
    import dataclasses

    from crossmap.chip import ChipSpec
    from crossmap.compiler import auto_binarize, calibration_inputs, default_pipeline
    from crossmap.pipeline import CompileState, parse_pipeline

    # as crossmap.compile runs: every core for independent work, inputs freed once no pass reads them
    # (a baseline tree without these options runs without them)
    known = {f.name for f in dataclasses.fields(CompileState)}
    runs_as = {k: v for k, v in {"jobs": os.cpu_count() or 1, "release_inputs": True}.items() if k in known}

    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    memory: dict[str, float] = {}
    passes = parse_pipeline(default_pipeline())
    for p in passes:
        if p.name == "partition":
            p.board = "auto"
    with tempfile.TemporaryDirectory() as tmp:
        start, start_cpu = time.perf_counter(), _cpu()
        if kind == "model":
            from crossmap.frontend import import_onnx

            network = import_onnx(str(MODELS_DIR / f"{name}.onnx"))
            passes = parse_pipeline(default_pipeline(auto_binarize(network)))  # as crossmap.compile
            for p in passes:
                if p.name == "partition":
                    p.board = "auto"
            state = CompileState(chip=ChipSpec.named("truenorth"), network=network,
                                 calibration=calibration_inputs(network), output_dir=Path(tmp) / "out", **runs_as)
            seconds["import"] = time.perf_counter() - start
            cpu["import"] = _cpu() - start_cpu
            memory["import"] = peak_mb()
        else:
            net = block_network(int(name))
            state = CompileState(chip=net.chip, deployed=net, output_dir=Path(tmp) / "out", **runs_as)
            passes = [p for p in passes if not p.name.startswith("binarize")]
            seconds["build"] = time.perf_counter() - start
            cpu["build"] = _cpu() - start_cpu
            memory["build"] = peak_mb()
        for p in passes:
            clock, clock_cpu = time.perf_counter(), _cpu()
            state = p.run(state) or state
            stage = "binarize" if p.name.startswith("binarize") else p.name
            seconds[stage] = time.perf_counter() - clock
            cpu[stage] = _cpu() - clock_cpu
            memory[stage] = peak_mb()
    total = sum(v for k, v in seconds.items() if k != "build")
    total_cpu = sum(v for k, v in cpu.items() if k != "build")
    return {"case": name if kind == "model" else f"synthetic {name}", "kind": kind, "target": name,
            "cores": int(state.program.num_cores), "placement_cost": float(state.reports["place"]["objective"]),
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
            "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
            "total_s": round(total, 2), "total_cpu_s": round(total_cpu, 2), "peak_mb": round(max(memory.values()), 1),
            "peak_mb_after": {k: round(v, 1) for k, v in memory.items()}}


def shadow_tree(source: Path, into: Path) -> Path:
    """A directory that imports as the crossmap of source tree ``source`` (its ``crossmap/``, with
    ``passes/`` and ``backends/`` inside it, as an installed crossmap has them), built of links."""
    package = into / "crossmap"
    package.mkdir(parents=True)
    for entry in (source / "crossmap").iterdir():
        (package / entry.name).symlink_to(entry.resolve())
    for sub in ("passes", "backends"):
        if (source / sub).is_dir() and not (package / sub).exists():
            (package / sub).symlink_to((source / sub).resolve())
    return into


def measure(kind: str, name: str, path: Path | None = None) -> dict:
    """One case in a fresh process (so its peak memory is its own), with the crossmap found first
    on ``path`` when given."""
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = str(path) + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, str(Path(__file__).resolve()), "--case", f"{kind}:{name}"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    process = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        return {"case": name, "kind": kind, "error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    row = json.loads(lines[-1])
    row["process_s"] = round(process, 2)
    return row


def run_one(spec: str) -> int:
    """Compile the case ``kind:name`` and print its row as one JSON line (the child process)."""
    kind, name = spec.split(":", 1)
    try:
        row = _compile_case(kind, name)
    except Exception as exc:  # a failed case is a row with its error, the others still run
        row = {"case": name, "kind": kind, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(row))
    return 0


def growth_exponent(rows: list[dict], key: str) -> float | None:
    """The slope of log(``key``) against log(cores) over the synthetic rows (least squares)."""
    points = [(r["cores"], r[key]) for r in rows
              if r.get("kind") == "synthetic" and "error" not in r and r.get(key, 0) > 0]
    if len(points) < 2:
        return None
    x = np.log([p[0] for p in points])
    y = np.log([p[1] for p in points])
    return float(np.polyfit(x, y, 1)[0])


def _line(row: dict) -> str:
    if "error" in row:
        return f"{row['case']:24s} error: {row['error']}"
    stages = " ".join(f"{k} {v:.1f}" for k, v in row["cpu_seconds"].items())
    return (f"{row['case']:24s} cores {row['cores']:5d}  CPU {row['total_cpu_s']:7.1f} s  wall {row['total_s']:7.1f} s  "
            f"process {row.get('process_s', float('nan')):7.1f} s  "
            f"peak {row['peak_mb']:6.0f} MB  cost {row['placement_cost']:.6g}  (CPU s: {stages})")


def comparison_table(old_rows: list[dict], rows: list[dict]) -> str:
    """A markdown table of each case with the baseline and now: cores, placement cost, CPU seconds."""
    out = ["| case | cores before | cores now | placement cost before | now | CPU s before | now | ratio | "
           "peak MB before | now |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for old, new in zip(old_rows, rows):
        if "error" in old or "error" in new:
            out.append(f"| {new['case']} | {old.get('error', '')} | {new.get('error', '')} | | | | | | | |")
            continue
        ratio = old["total_cpu_s"] / new["total_cpu_s"] if new["total_cpu_s"] else float("nan")
        out.append(f"| {new['case']} | {old['cores']} | {new['cores']} | {old['placement_cost']:.6g} | "
                   f"{new['placement_cost']:.6g} | {old['total_cpu_s']:.1f} | {new['total_cpu_s']:.1f} | "
                   f"{ratio:.2f}x | {old['peak_mb']:.0f} | {new['peak_mb']:.0f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 cores and the small shipped models")
    parser.add_argument("--models", help="comma-separated shipped model names (default: every model that compiles "
                                         "with the default pipeline; 'none' for none)")
    parser.add_argument("--cores", help="comma-separated synthetic sizes (default 100,1000,4000,8000; 'none')")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    parser.add_argument("--baseline", type=Path, help="another crossmap source tree to compile every case with too")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # kind:name, run in a child process
    args = parser.parse_args(argv)
    if args.case:
        return run_one(args.case)
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
    rows, old_rows = [], []
    cases = [("model", m) for m in models] + [("synthetic", str(c)) for c in sizes]
    with tempfile.TemporaryDirectory() as tmp:
        baseline = shadow_tree(args.baseline.resolve(), Path(tmp)) if args.baseline else None
        for kind, name in cases:
            if baseline is not None:
                old_rows.append(measure(kind, name, baseline))
            row = measure(kind, name)
            rows.append(row)
            if not args.json:
                print(_line(row) + (f"\n{'  baseline':24s} " + _line(old_rows[-1])[25:] if baseline else ""), flush=True)
    time_k, cpu_k, memory_k = (growth_exponent(rows, k) for k in ("total_s", "total_cpu_s", "peak_mb"))
    result = {"rows": rows, "time_exponent": time_k, "cpu_exponent": cpu_k, "memory_exponent": memory_k}
    if baseline is not None:
        result.update({"baseline_rows": old_rows, "baseline_cpu_exponent": growth_exponent(old_rows, "total_cpu_s"),
                       "baseline_memory_exponent": growth_exponent(old_rows, "peak_mb")})
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    fmt = lambda k: "n/a" if k is None else f"{k:.2f}"  # noqa: E731
    print(f"growth exponent on the synthetic series (time ~ cores^k): CPU {fmt(cpu_k)}, wall {fmt(time_k)}, "
          f"peak memory {fmt(memory_k)}")
    if baseline is not None:
        print(f"baseline: CPU {fmt(result['baseline_cpu_exponent'])}, peak memory "
              f"{fmt(result['baseline_memory_exponent'])}")
        print(comparison_table(old_rows, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Partition figures on synthetic chip-sized networks: cores against the lower bound, copies,
traffic and wall time. Run: python benchmarks/bench_partition.py [--solver]

With ``--onnx MODEL.onnx`` it times the partition pass of a real model (binarized
deterministically, on a board that grows to fit) twice, side by side: as it runs, where the run
with CP-SAT reuses the greedy packings of the groups whose readers did not change, and with every
group packed afresh in each run; the two programs must be equal."""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import scipy.sparse as sp

from crossmap.chip import ChipSpec
from crossmap.deployed import INPUT, DeployedNetwork, Lines, NeuronGroup
import crossmap.passes.partition as partition_pass
from crossmap.passes.partition import Partition
from crossmap.pipeline import CompileState, parse_pipeline

CHIP = ChipSpec.truenorth()


def _group(rng, name, size, **kw):
    weight = rng.integers(-2, 3, (size, CHIP.axon_types))
    return NeuronGroup.make(name, weight, alpha=kw.pop("alpha", 3), chip=CHIP, **kw)


def _lines(rng, source, target, src_idx, tgt_idx, n_target, types):
    """One line per (source, target) pair listed; lines of one source and type are merged."""
    src_idx, tgt_idx = np.asarray(src_idx), np.asarray(tgt_idx)
    base = src_idx * CHIP.axon_types + types[src_idx]
    uniq, row = np.unique(base, return_inverse=True)
    syn = sp.csr_matrix((np.ones(row.size, bool), (row.reshape(-1), tgt_idx)), shape=(uniq.size, n_target))
    return Lines(source, target, uniq // CHIP.axon_types, uniq % CHIP.axon_types, syn)


def conv_net(seed=0, c1=8, c2=16):
    """28x28 -> conv 3x3 x c1 (26x26) -> conv 3x3 stride 2 x c2 (12x12) -> 90 readout neurons over
    4x4 blocks of c2 channels (<= 256 inputs each), 10 classes."""
    rng = np.random.default_rng(seed)
    px_types = (np.arange(784) % 4)
    s1, t1 = [], []
    for c in range(c1):
        for y in range(26):
            for x in range(26):
                n = (c * 26 + y) * 26 + x
                for dy in range(3):
                    for dx in range(3):
                        if rng.random() < 0.7:
                            s1.append((y + dy) * 28 + x + dx)
                            t1.append(n)
    s2, t2 = [], []
    for c in range(c2):
        for y in range(12):
            for x in range(12):
                n = (c * 12 + y) * 12 + x
                for ci in range(c1):
                    for dy in range(3):
                        for dx in range(3):
                            if rng.random() < 0.6:
                                s2.append((ci * 26 + 2 * y + dy) * 26 + 2 * x + dx)
                                t2.append(n)
    s3, t3 = [], []
    for k in range(10):
        for b in range(9):
            by, bx = divmod(b, 3)
            n = k * 9 + b
            for c in range(min(c2, 16)):
                for y in range(4):
                    for x in range(4):
                        if rng.random() < 0.5:
                            s3.append((c * 12 + 4 * by + y) * 12 + 4 * bx + x)
                            t3.append(n)
    groups = [_group(rng, "conv1", c1 * 26 * 26), _group(rng, "conv2", c2 * 144),
              _group(rng, "readout", 90, output_class=np.repeat(np.arange(10), 9))]
    lines = [_lines(rng, INPUT, "conv1", s1, t1, groups[0].size, px_types),
             _lines(rng, "conv1", "conv2", s2, t2, groups[1].size, np.arange(groups[0].size) % 4),
             _lines(rng, "conv2", "readout", s3, t3, 90, np.arange(groups[1].size) % 4)]
    return DeployedNetwork(CHIP, 784, groups, lines, num_classes=10).validate()


def patch_net(seed=0):
    """Esser et al. 2015 layout: 4 overlapping 16x16 patches of 28x28 (offsets 0 and 12), 256
    neurons each; a second layer of 4 cores each reading 64 neurons of every patch core; 40 readout
    neurons (10 classes) each reading half of one hidden core."""
    rng = np.random.default_rng(seed)
    px_types = (np.arange(784) % 4)
    s1, t1 = [], []
    for p, (r, c) in enumerate([(0, 0), (0, 12), (12, 0), (12, 12)]):
        pixels = (np.arange(r, r + 16)[:, None] * 28 + np.arange(c, c + 16)[None, :]).reshape(-1)
        for j in range(256):
            keep = pixels[rng.random(256) < 0.5]
            s1 += keep.tolist()
            t1 += [p * 256 + j] * keep.size
    s2, t2 = [], []
    for core in range(4):
        sources = np.concatenate([np.arange(p * 256 + core * 64, p * 256 + core * 64 + 64) for p in range(4)])
        for j in range(256):
            keep = sources[rng.random(256) < 0.5]
            s2 += keep.tolist()
            t2 += [core * 256 + j] * keep.size
    s3, t3 = [], []
    for k in range(40):  # readout k reads half of the neurons of hidden core k % 4
        keep = (k % 4) * 256 + np.flatnonzero(rng.random(256) < 0.5)
        s3 += keep.tolist()
        t3 += [k] * keep.size
    groups = [_group(rng, "patch", 1024), _group(rng, "hidden", 1024),
              _group(rng, "out", 40, output_class=np.arange(40) % 10)]
    lines = [_lines(rng, INPUT, "patch", s1, t1, 1024, px_types),
             _lines(rng, "patch", "hidden", s2, t2, 1024, np.arange(1024) % 4),
             _lines(rng, "hidden", "out", s3, t3, 40, np.arange(1024) % 4)]
    return DeployedNetwork(CHIP, 784, groups, lines, num_classes=10).validate()


def compare_memo(model: str) -> None:
    """Time the partition of ``model`` with the greedy packings shared between its runs and
    without, and check that both give the same program."""
    from crossmap.compiler import calibration_inputs, default_pipeline
    from crossmap.frontend import import_onnx

    network = import_onnx(model)
    state = CompileState(chip=CHIP, network=network, calibration=calibration_inputs(network))
    passes = parse_pipeline(default_pipeline())
    partition = next(p for p in passes if p.name == "partition")
    partition.board = "auto"
    for p in passes[:passes.index(partition)]:
        state = p.run(state) or state
    plan = partition_pass.plan_partition
    results = {}
    for name, planner in (("shared", plan), ("afresh", lambda *a: plan(*a[:6]))):
        partition_pass.plan_partition = planner
        run = copy.copy(state)
        run.reports = {}
        start = time.perf_counter()
        run = partition.run(run)
        results[name] = (time.perf_counter() - start, run.program)
    partition_pass.plan_partition = plan
    (shared, program), (afresh, reference) = results["shared"], results["afresh"]
    print(f"{model}: {program.num_cores} cores; partition {shared:.1f} s with the greedy packings shared, "
          f"{afresh:.1f} s packed afresh ({afresh / shared:.2f}x); programs equal: "
          f"{program.checksum() == reference.checksum()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--solver", action="store_true", help="also run CP-SAT on small groups")
    parser.add_argument("--onnx", help="time the partition of this model with and without reusing packings")
    args = parser.parse_args()
    if args.onnx:
        compare_memo(args.onnx)
        return
    nets = [("patch (Esser 2015 layout)", patch_net), ("conv 8/16 (lowered 3x3 convs)", conv_net),
            ("conv 16/32 (lowered 3x3 convs)", lambda: conv_net(c1=16, c2=32))]
    for name, make in nets:
        net = make()
        for fanout in ("copy", "splitter", "auto"):
            state = CompileState(chip=CHIP, deployed=net)
            start = time.perf_counter()
            state = Partition(fanout=fanout, solver=args.solver, time_limit=10.0).run(state)
            took = time.perf_counter() - start
            r = state.reports["partition"]
            print(f"{name:28s} fanout={fanout:8s} -> {r['fanout']:8s} neurons={r['neurons']:5d} cores={r['cores']:4d} "
                  f"bound={r['lower_bound']['cores']:4d} (neurons {r['lower_bound']['neurons']}, axons "
                  f"{r['lower_bound']['axons']}) copies={r['copies']:5d} splitters={r['splitter_neurons']:5d} "
                  f"traffic={r['traffic']['spikes_per_sample']:9.1f} latency={r['latency']} time={took:.2f}s")
            print("    candidates:", [(c["fanout"], c.get("cores")) for c in r["candidates"]])
            for row in r["groups"]:
                print(f"    {row['group']:8s} {row['fanout']:8s} neurons={row['neurons']:5d} instances={row['instances']:5d} "
                      f"fan_in_max={row['fan_in_max']:3d} cores={row['cores']:3d} bound={row['lower_bound']:3d}")


if __name__ == "__main__":
    main()

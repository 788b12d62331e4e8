"""Binarization: exactness and speed of binarize_deterministic on chip-ready step networks, and
the accuracy binarize_lsq keeps on MNIST for a ReLU MLP and a small LeNet (trained here with torch
for two epochs on 30,000 shuffled training images) with each solver.

    python benchmarks/bench_binarize.py [--data-dir DIR] [--test N] [--skip-lsq] [--time-limit S]

Part 1 needs no data: random step MLPs (ternary weights times per-neuron scales, biases that make
some neurons fire without input) of growing size; it prints the time, the axon scheme, and whether
the deployed class counts equal the float network's on 500 binary inputs. Part 2 prints float and
deployed accuracy on N shuffled test images (rate coding, 32 ticks) and the float/deployed
agreement.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from crossmap.chip import ChipSpec
from crossmap.encoding import encode
from crossmap.errors import CrossmapError
from crossmap.pipeline import CompileState


def deterministic_part() -> None:
    """Exactness and time of the deterministic mapping on random step MLPs."""
    from crossmap.testing.binarize_nets import binary_inputs, step_mlp

    from crossmap.passes.binarize.deterministic import BinarizeDeterministic

    print("binarize_deterministic on random step MLPs (500 binary inputs)")
    print(f"{'sizes':>22} {'neurons':>8} {'seconds':>8} {'schemes':>16} {'lines':>7} {'exact':>6}")
    for sizes in ([64, 64, 10], [256, 256, 100, 10], [784, 512, 256, 50]):
        net = step_mlp(sizes, seed=1, classes=10 if sizes[-1] % 10 == 0 else None)
        state = CompileState(chip=ChipSpec(), network=net)
        start = time.perf_counter()
        BinarizeDeterministic().run(state)
        seconds = time.perf_counter() - start
        x = binary_inputs(500, sizes[0])
        deployed = state.deployed
        exact = np.array_equal(deployed.simulate(encode(deployed.encoding, x))["class_counts"], net.evaluate(x))
        layers = state.reports["binarize_deterministic"]["layers"]
        schemes = "/".join(layer["scheme"] for layer in layers)
        lines = sum(layer["lines"] for layer in layers)
        print(f"{str(sizes):>22} {deployed.num_neurons:>8} {seconds:>8.2f} {schemes:>16} {lines:>7} {str(exact):>6}")


def train(kind: str, data_dir: str | None):
    """A float model trained for two epochs, as a crossmap Network."""
    import io

    import torch

    from crossmap.datasets import load_mnist
    from crossmap.frontend import import_onnx

    torch.manual_seed(0)
    torch.set_num_threads(2)
    x, y = load_mnist("train", data_dir=data_dir)
    pick = np.random.default_rng(0).permutation(len(y))[:30000]
    xt, yt = torch.from_numpy(x[pick]).reshape(-1, 784), torch.from_numpy(y[pick])
    if kind == "mlp":
        model = torch.nn.Sequential(torch.nn.Linear(784, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10))
    else:
        model = torch.nn.Sequential(torch.nn.Unflatten(1, (1, 28, 28)), torch.nn.Conv2d(1, 6, 5), torch.nn.ReLU(),
                                    torch.nn.MaxPool2d(2), torch.nn.Conv2d(6, 12, 5), torch.nn.ReLU(),
                                    torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(192, 10))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(2):
        order = torch.randperm(len(yt))
        for lo in range(0, len(yt), 100):
            idx = order[lo:lo + 100]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    buffer = io.BytesIO()
    torch.onnx.export(model, torch.zeros(1, 784), buffer, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    return import_onnx(buffer.getvalue()), x[np.random.default_rng(1).permutation(len(y))[:256]]


def lsq_part(data_dir: str | None, n_test: int, time_limit: float) -> None:
    """Float vs deployed accuracy of binarize_lsq with each solver."""
    from crossmap.datasets import load_mnist
    from crossmap.passes.binarize.lsq import BinarizeLsq

    xte, yte = load_mnist("test", data_dir=data_dir)
    pick = np.random.default_rng(2).permutation(len(yte))[:n_test]
    xte, yte = xte[pick].reshape(n_test, -1), yte[pick]
    print(f"\nbinarize_lsq on MNIST ({n_test} shuffled test images, rate coding, 32 ticks, time_limit {time_limit} s)")
    print(f"{'model':>6} {'solver':>7} {'seconds':>8} {'float acc':>10} {'deployed acc':>13} {'agreement':>10} "
          f"{'layer errors':>30}")
    for kind in ("mlp", "lenet"):
        net, calibration = train(kind, data_dir)
        float_acc = float((net.evaluate(xte).argmax(1) == yte).mean())
        for solver in ("round", "lp", "cpsat"):
            state = CompileState(chip=ChipSpec(), network=net, calibration=calibration)
            start = time.perf_counter()
            BinarizeLsq(solver=solver, time_limit=time_limit).run(state)
            seconds = time.perf_counter() - start
            deployed = state.deployed
            counts = deployed.simulate(encode(deployed.encoding, xte))["class_counts"]
            pred = counts.argmax(1)
            layers = state.reports["binarize_lsq"]["layers"]
            errors = " ".join(f"{layer['approximation_error']:.3f}" for layer in layers)
            print(f"{kind:>6} {solver:>7} {seconds:>8.1f} {float_acc:>10.4f} {float((pred == yte).mean()):>13.4f} "
                  f"{float((pred == net.evaluate(xte).argmax(1)).mean()):>10.4f} {errors:>30}")


def main() -> None:
    """Run both parts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="MNIST IDX directory (default: crossmap's lookup)")
    parser.add_argument("--test", type=int, default=1000, help="test images for the lsq part")
    parser.add_argument("--skip-lsq", action="store_true", help="only the deterministic part")
    parser.add_argument("--time-limit", type=float, default=20.0, help="lsq solver time limit (s)")
    args = parser.parse_args()
    deterministic_part()
    if not args.skip_lsq:
        lsq_part(args.data_dir, args.test, args.time_limit)


if __name__ == "__main__":
    try:
        main()
    except CrossmapError as error:  # missing MNIST files and the like: the message, not a traceback
        sys.exit(f"{Path(sys.argv[0]).name}: {error}")

"""A user's float model on the emulated chip with default options (``--binarize auto``, which picks
the rate conversion for float networks), beside its float accuracy: accuracy vs input ticks, cores,
the cores its weight code needs at full crossbar use, energy per image and compile time.

    python benchmarks/bench_float.py [--models models/mlp.onnx ...] [--ticks 8 16 32 64] [--limit N]
        [--split test|train] [--calibration FILE] [--workers W] [--data-dir DIR]

Float accuracy is onnxruntime on the same images. Calibration: the compiler's default (the bundled
MNIST sample for 28x28 models) unless --calibration gives an .npz/.npy of samples. ``weight cores``
is the crossbar area the 4-bit code needs with every core's 256 x 256 crossbar full: the sum over
the model's layers of synapses x lines per input / (axons x neurons per core); ``cores / weight
cores`` is the packing overhead (partial sums, merges, copies for fan-out).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from crossmap.compiler import compile as compile_model
from crossmap.datasets import load_arrays
from crossmap.frontend import import_onnx
from crossmap.runner import load_dataset, run_arrays

ROOT = Path(__file__).resolve().parents[1]


def float_accuracy(model: str, x: np.ndarray, y: np.ndarray) -> float:
    """onnxruntime accuracy of the ONNX model on images ``x``."""
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    shape = [d if isinstance(d, int) else -1 for d in session.get_inputs()[0].shape]
    out = session.run(None, {name: x.reshape([len(x)] + shape[1:]).astype(np.float32)})[0]
    out = out.reshape(len(x), -1)
    pred = out[:, 0].astype(np.int64) if out.shape[1] == 1 else np.argmax(out, axis=1)
    return float(np.mean(pred == y))


def weight_cores(model: str, bits: int = 4, axons: int = 256, neurons: int = 256) -> float:
    """Cores the model's synapses need as ``bits``-line codes on full crossbars."""
    network = import_onnx(model)
    synapses = sum(p.synapses for p in network.projections if network.population(p.target).reduce == "sum")
    return synapses * bits / (axons * neurons)


def main() -> None:
    """Compile each model at each tick count, emulate, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=[str(ROOT / "models" / "mlp.onnx"),
                                                        str(ROOT / "models" / "lenet.onnx")])
    parser.add_argument("--ticks", nargs="+", type=int, default=[8, 16, 32, 64])
    parser.add_argument("--limit", type=int, default=None, help="N images (a seeded random subset), default all")
    parser.add_argument("--split", default="test", choices=["test", "train"])
    parser.add_argument("--calibration", default=None, help=".npz (x) or .npy calibration samples")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    x, y = load_dataset("mnist", args.data_dir, args.split, args.limit)
    calibration = load_arrays(args.calibration)[0] if args.calibration else None
    print(f"MNIST {args.split}, {len(x)} images; default options except --ticks")
    print(f"{'model':<16}{'float':>8}{'ticks':>6}{'chip':>8}{'diff':>7}{'cores':>7}{'w.cores':>8}{'ratio':>6}"
          f"{'latency':>8}{'uJ/img':>9}{'compile s':>10}{'run s':>8}")
    for model in args.models:
        fl = float_accuracy(model, x, y)
        need = weight_cores(model)
        for ticks in args.ticks:
            start = time.perf_counter()
            program = compile_model(model, None, ticks=ticks, calibration=calibration)
            compile_s = time.perf_counter() - start
            result = run_arrays(program, x, y, workers=args.workers, show_progress=False)
            acc = result["accuracy"]
            print(f"{Path(model).stem:<16}{100 * fl:>7.2f}%{ticks:>6}{100 * acc:>7.2f}%{100 * (acc - fl):>+7.2f}"
                  f"{program.num_cores:>7}{need:>8.1f}{program.num_cores / need:>6.1f}"
                  f"{program.latency:>8}"
                  f"{result['energy_per_sample_uj']:>9.2f}{compile_s:>10.1f}{result['seconds']:>8.1f}", flush=True)


if __name__ == "__main__":
    main()

"""Time-to-first-spike coding against rate coding on the same float MLPs, side by side in one run.

    python benchmarks/bench_ttfs.py --data-dir ../shared/data/mnist [--test N] [--models mlp ttfs_mlp]
        [--ticks K] [--rate METHOD] [--rate-ticks T] [--workers W]

For each model (``models/NAME.onnx``) it compiles two programs with the same calibration inputs
(``--calibration`` training images, a seeded random subset of the training set, never test
images): ``binarize_ttfs`` (one spike per hidden neuron, K window ticks) and the rate-coded
``binarize_METHOD`` (default ``lsq``: rate neurons over T ticks, the model's binary input repeated
on every tick). Both run on the same ``--test`` test images (default all 10,000); the table gives
accuracy (and the float model's in onnxruntime), ticks per image (input + latency), neuron spikes
and synaptic events per image, energy per image in the chip energy model, cores, and the ratios
rate / TTFS of spikes and energy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

import crossmap  # noqa: E402
from crossmap.datasets import load_mnist  # noqa: E402
from crossmap.frontend.compare import onnxruntime_outputs  # noqa: E402
from crossmap.runner import run_arrays  # noqa: E402


def compile_and_run(model: Path, binarize: str, options: str, calibration: np.ndarray, images: np.ndarray,
                    labels: np.ndarray, workers: int, out: Path) -> dict:
    """Compile ``model`` with ``binarize_<binarize>{options}`` and emulate it on the images."""
    spec = f"binarize_{binarize}" + (f"{{{options}}}" if options else "") + ",partition,place,route,emit"
    start = time.perf_counter()
    program = crossmap.compile(str(model), out, pipeline=spec, calibration=calibration, overwrite=True)
    seconds = time.perf_counter() - start
    figures = run_arrays(program, images, labels, workers=workers, show_progress=False)
    figures.update(compile_seconds=seconds, pipeline=spec, input_ticks=program.input_ticks, latency=program.latency)
    return figures


def main() -> None:
    """Parse options, compile and run every (model, coding) pair, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="MNIST IDX directory")
    parser.add_argument("--models", nargs="+", default=["mlp", "ttfs_mlp"], help="names of models/NAME.onnx")
    parser.add_argument("--test", type=int, default=None, help="test images (a seeded subset; default all 10,000)")
    parser.add_argument("--calibration", type=int, default=2000, help="training images used for calibration")
    parser.add_argument("--ticks", type=int, default=8, help="TTFS window K")
    parser.add_argument("--readout-neurons", type=int, default=32, help="TTFS thermometer neurons per class")
    parser.add_argument("--rate", default="lsq", help="the rate-coded binarize method (lsq, or another registered one)")
    parser.add_argument("--rate-ticks", type=int, default=16, help="ticks of the rate-coded program")
    parser.add_argument("--rate-options", default="", help="extra options of the rate method, e.g. 'solver=round'")
    parser.add_argument("--workers", type=int, default=1, help="emulating processes")
    args = parser.parse_args()

    images, labels = load_mnist("test", data_dir=args.data_dir, limit=args.test, seed=0 if args.test else None)
    calibration, _ = load_mnist("train", data_dir=args.data_dir, limit=args.calibration, seed=1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = ROOT / "models" / f"{name}.onnx"
            scores = np.asarray(onnxruntime_outputs(str(model), images)).reshape(len(images), -1)
            float_acc = float(np.mean(scores.argmax(axis=1) == labels))
            rate_options = ";".join(o for o in (f"ticks={args.rate_ticks}", args.rate_options) if o)
            ttfs = compile_and_run(model, "ttfs", f"ticks={args.ticks};readout_neurons={args.readout_neurons}",
                                   calibration, images, labels, args.workers, Path(tmp) / f"{name}_ttfs")
            print(f"{name} ttfs: {100 * ttfs['accuracy']:.2f}% ({ttfs['compile_seconds']:.0f} s compile, "
                  f"{ttfs['seconds']:.0f} s run)", flush=True)
            rate = compile_and_run(model, args.rate, rate_options, calibration, images, labels, args.workers,
                                   Path(tmp) / f"{name}_rate")
            print(f"{name} {args.rate}: {100 * rate['accuracy']:.2f}% ({rate['compile_seconds']:.0f} s compile, "
                  f"{rate['seconds']:.0f} s run)", flush=True)
            rows.append((name, float_acc, ttfs, rate))
    print(f"\n{len(images)} test images, calibration on {args.calibration} training images")
    print("| model | coding | chip acc | float acc | ticks | spikes/image | synaptic events/image | uJ/image | cores |")
    print("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for name, float_acc, ttfs, rate in rows:
        for label, f in ((f"TTFS (binarize_ttfs, K={args.ticks})", ttfs),
                         (f"rate ({args.rate}, {args.rate_ticks} ticks)", rate)):
            print(f"| {name} | {label} | {100 * f['accuracy']:.2f}% | {100 * float_acc:.2f}% | "
                  f"{f['input_ticks']}+{f['latency']} | {f['spikes_per_sample']:.1f} | "
                  f"{f['synaptic_events_per_sample']:.0f} | {f['energy_per_sample_uj']:.3f} | {f['cores']} |")
    print()
    for name, float_acc, ttfs, rate in rows:
        print(f"{name}: TTFS - float = {100 * (ttfs['accuracy'] - float_acc):+.2f} points; rate - TTFS accuracy = "
              f"{100 * (rate['accuracy'] - ttfs['accuracy']):+.2f} points; spikes rate / TTFS = "
              f"{rate['spikes_per_sample'] / max(ttfs['spikes_per_sample'], 1e-9):.2f}x; synaptic events rate / TTFS "
              f"= {rate['synaptic_events_per_sample'] / max(ttfs['synaptic_events_per_sample'], 1e-9):.2f}x; "
              f"energy rate / TTFS = {rate['energy_per_sample_uj'] / max(ttfs['energy_per_sample_uj'], 1e-9):.2f}x")


if __name__ == "__main__":
    sys.exit(main())

"""The MNIST results table: every shipped model compiled, emulated on the MNIST test set, with
ensembles of 1, 4, 16 and 64 copies where the model is a probabilistic one (sampled copies) and
of the separately trained copies shipped for the CNN (joined by models/make_ensemble.py), printed
beside the papers' figures. Copies beyond the trained ones read the image shifted by one
pixel (make_ensemble's --shifts; shift-major: 16 copies of 4 trained networks are each network
unshifted and shifted right, left, down); every program compiles for the smallest board of
TrueNorth chips that holds it (``--chip truenorth-auto``).

    python benchmarks/mnist_table.py --data-dir ../shared/data/mnist            # all 10,000 images
    python benchmarks/mnist_table.py --data-dir ../shared/data/mnist --limit 1000 --models esser2015_small

Columns: test accuracy of the emulated chip program, float accuracy of the ONNX model (onnxruntime)
on the same images, cores, input ticks + latency, estimated energy per image (chip energy model of
crossmap/chip.py), and the compile and emulation times. Targets: one copy of the small network
>= 95.98% in one tick; >= 99.42% with no more than 16 copies.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import crossmap
from crossmap.datasets import load_mnist
from crossmap.errors import CrossmapError
from crossmap.runner import run_arrays

MODELS = Path(__file__).resolve().parents[1] / "models"
sys.path.insert(0, str(MODELS))

# the fifteen committed networks that held training images out, best first by accuracy on them
# (python models/rank_members.py; models/README.md)
ENSEMBLE_15 = ["eedn_levels3", "eedn_groups_s4_ft", "eedn_spikes4", "eedn_spikes2", "eedn_spikes2_s94",
               "eedn_spikes2_s95", "esser2015_large_w2", "eedn_spikes2_s93", "eedn_spikes2_s97", "eedn_groups_ft",
               "eedn_groups_s6", "eedn_groups_s5_ft", "eedn_groups_s1", "eedn_groups_s3", "eedn_groups_s2"]

# (row name, model files (globs separated by spaces; several files: an ensemble of them), binarization,
#  ensembles, paper figure)
ROWS = [
    ("esser2015_small", "esser2015_small.onnx", "deterministic", [1], "Esser 2015: 92.7% (1 copy)"),
    ("esser2015_small_prob", "esser2015_small_prob.onnx", "stochastic", [1, 4, 16, 64],
     "Esser 2015: 92.7% (1), 99.42% (64 copies, larger net)"),
    ("esser2015_binary", "esser2015_binary.onnx", "deterministic", [1], "1605.07740: 95.98% (1 small copy, 1 tick)"),
    ("esser2015_large", "esser2015_large.onnx", "deterministic", [1], "1605.07740: 99.45% (large)"),
    ("esser2015_large_w2", "esser2015_large_w2.onnx", "deterministic", [1, 5],
     "(twice as wide, trained with distortions; 5: read shifted by a pixel 4 ways)"),
    ("eedn_cnn", "eedn_cnn.onnx", "deterministic", [1], "Esser 2016 (trinary CNN)"),
    ("eedn_groups", "eedn_groups.onnx eedn_groups_s[0-9].onnx", "deterministic", [1, 2, 3, 4, 6, 16], "Esser 2016 (trinary CNN)"),
    ("eedn_groups_s6", "eedn_groups_s6.onnx", "deterministic", [1], "(trained with rotations and scaling)"),
    ("eedn_levels3", "eedn_levels3.onnx", "deterministic", [1], "(three input levels, frozen-norm epochs)"),
    ("eedn_spikes2", "eedn_spikes2.onnx", "deterministic", [1], "(two spike lines per hidden neuron)"),
    ("eedn_spikes2_s93", "eedn_spikes2_s93.onnx", "deterministic", [1], "(the same, seven input levels)"),
    ("eedn_spikes2_s94", "eedn_spikes2_s94.onnx", "deterministic", [1], "(the same recipe, seed 94, 20 + 4 epochs)"),
    ("eedn_spikes2_s95", "eedn_spikes2_s95.onnx", "deterministic", [1], "(the same recipe, seed 95, 20 + 4 epochs)"),
    ("eedn_spikes2_s97", "eedn_spikes2_s97.onnx", "deterministic", [1], "(the same recipe, seed 97, 20 + 4 epochs)"),
    ("eedn_spikes4", "eedn_spikes4.onnx", "deterministic", [1], "(four spike lines per hidden neuron)"),
    ("ensemble15", " ".join(f"{n}.onnx" for n in ENSEMBLE_15), "deterministic", [15],
     "(15 separately trained networks; Esser 2015: 99.42% with 64 copies)"),
    ("ensemble16", " ".join(f"{n}.onnx" for n in ENSEMBLE_15 + ["eedn_spikes2_s91"]), "deterministic", [16],
     "(the 16 best by held-out accuracy, models/rank_members.py --top 16)"),
    ("mixed", "eedn_groups_s6.onnx esser2015_large_w2.onnx", "deterministic", [2], "(a CNN and a patch network)"),
    # the float models threshold their input themselves (Greater on the input), so lsq keeps that encoding
    ("mlp", "mlp.onnx", "lsq", [1], "Mern 2018: layer-wise lsq"),
    ("lenet", "lenet.onnx", "lsq", [1], "Mern 2018: layer-wise lsq"),
]


def float_accuracy(path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the ONNX model itself in onnxruntime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    correct = 0
    for lo in range(0, len(images), 1000):
        y = session.run(None, {name: images[lo:lo + 1000].astype(np.float32)})[0]
        correct += int((y.argmax(1) == labels[lo:lo + 1000]).sum())
    return correct / len(images)


SHIFTS = [(0, 0), (0, 1), (0, -1), (1, 0), (-1, 0)]  # copies beyond the trained members read shifted images


def joined(members: list[Path], copies: int, directory: Path) -> Path:
    """An ensemble ONNX of ``copies`` copies of the trained ``members``, shift-major
    (models/make_ensemble.py), written to ``directory``."""
    import onnx
    from make_ensemble import ensemble_copies, join

    chosen = ensemble_copies([onnx.load(str(m)) for m in members], copies, SHIFTS)
    path = directory / "ensemble.onnx"
    onnx.save(join([m for m, _ in chosen], f"ensemble_of_{copies}", [s for _, s in chosen]), str(path))
    return path



def main() -> int:
    """Compile, emulate and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="MNIST directory (or $CROSSMAP_DATA_DIR)")
    parser.add_argument("--limit", type=int, default=None, help="a fixed random subset of N test images (default all 10,000)")
    parser.add_argument("--models", default=None, help="comma-separated row names (default all)")
    parser.add_argument("--ensembles", default=None,
                        help="comma-separated ensemble sizes for the stochastic rows and the rows of trained copies")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--workers", type=int, default=1, help="emulating processes (same figures, faster on N cores)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    args = parser.parse_args()
    images, labels = load_mnist("test", data_dir=args.data_dir, limit=args.limit, seed=0 if args.limit else None)
    wanted = set(args.models.split(",")) if args.models else None
    rows = []
    header = (f"{'model':<22}{'binarize':<14}{'copies':>6}{'chip acc':>10}{'float acc':>10}{'cores':>7}"
              f"{'ticks':>7}{'uJ/image':>10}{'compile s':>10}{'emulate s':>10}  paper")
    print(header)
    print("-" * len(header))
    for name, file, method, ensembles, paper in ROWS:
        # several files (globs, separated by spaces): separately trained copies, in the order given
        if wanted and name not in wanted:
            continue
        matches = {pattern: sorted(MODELS.glob(pattern)) for pattern in file.split()}
        missing = [pattern for pattern, paths in matches.items() if not paths]
        if missing:
            print(f"{name:<22}(missing {' '.join(missing)}; train it with models/train_*.py)")
            continue
        members = [path for paths in matches.values() for path in paths]
        if args.ensembles and (method == "stochastic" or len(members) > 1):
            ensembles = [int(e) for e in args.ensembles.split(",")]
        if method == "deterministic":
            ensembles = [k for k in ensembles if k <= len(members) * len(SHIFTS)]
        member_float = None
        for copies in ensembles:
            with tempfile.TemporaryDirectory() as tmp:
                path = members[0] if method == "stochastic" or copies == 1 else joined(members, copies, Path(tmp))
                if path != members[0]:
                    float_acc = float_accuracy(path, images, labels)
                else:  # the row's own file: measured once, not once per sampled ensemble size
                    if member_float is None:
                        member_float = float_accuracy(path, images, labels)
                    float_acc = member_float
                start = time.perf_counter()
                program = crossmap.compile(path, Path(tmp) / "p", chip="truenorth-auto", binarize=method,
                                           ensemble=copies if method == "stochastic" else None,
                                           encoding="threshold" if method == "lsq" else None, seed=0)
                compile_s = time.perf_counter() - start
            summary = run_arrays(program, images, labels, batch_size=args.batch_size, name="mnist/test",
                                 workers=args.workers)
            row = {"model": name, "binarize": method, "copies": copies, "accuracy": summary["accuracy"],
                   "float_accuracy": float_acc, "cores": program.num_cores,
                   "chips": program.chip.board_x * program.chip.board_y, "input_ticks": program.input_ticks,
                   "latency": program.latency, "energy_uj": summary["energy_per_sample_uj"],
                   "compile_s": compile_s, "emulate_s": summary["seconds"], "images": len(images), "paper": paper}
            rows.append(row)
            ticks = f"{program.input_ticks}+{program.latency}"
            print(f"{name:<22}{method:<14}{copies:>6}{100 * row['accuracy']:>9.2f}%{100 * float_acc:>9.2f}%"
                  f"{program.num_cores:>7}{ticks:>7}{row['energy_uj']:>10.3f}{compile_s:>10.1f}"
                  f"{row['emulate_s']:>10.1f}  {paper}", flush=True)
    print(f"\n{len(images)} MNIST test images; energy from the chip energy model (crossmap info).")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CrossmapError as error:  # missing MNIST files and the like: the message, not a traceback
        sys.exit(f"{Path(sys.argv[0]).name}: {error}")

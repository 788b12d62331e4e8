"""Esser et al. 2015's small network, trained with probabilistic synapses and neurons.

4 input cores over the overlapping 16x16 patches at offsets (0|12, 0|12), 64 neurons each; one
output core reading the 256 hidden spikes, 10 classes x 25 neurons. Training: connection
probabilities p in [0, 1] times a sign per (neuron, axon type); a neuron's output is its spike
probability under a Gaussian approximation of its summed input. Test: connections p > 1/2, step
neurons (one deterministic copy); also sampled copies for ensembles.

Usage: python models/train_esser2015_small.py [--epochs E] [--out models/esser2015_small.onnx]
Writes <out> (binary connections) and <out stem>_prob.onnx (expected weights p * sign).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import common
from patchnet import PatchNet, class_of_outputs, patch_index

OFFSETS = [(0, 0), (0, 12), (12, 0), (12, 12)]


def build(mode: str, floor: float | None = 0.5) -> PatchNet:
    """4 patch cores x 64 neurons -> 1 output core of 10 x 25 neurons."""
    return PatchNet([(patch_index(OFFSETS), 64), (np.arange(256)[None, :], 250)], class_of_outputs(1, 25), mode, floor)


def ensemble_accuracy(model: PatchNet, data: dict, copies: int, seed: int) -> tuple[float, float]:
    """Mean single-copy accuracy and the accuracy of summed counts over ``copies`` sampled copies."""
    torch.manual_seed(seed)
    model.eval()
    model.set_eval_mode("sample")
    x = common.binarize_input(torch.from_numpy(data["xte"]))
    total = torch.zeros(len(x), 10)
    singles = []
    with torch.no_grad():
        for _ in range(copies):
            counts = model(x)  # one sampled connectivity for the whole test set: one chip copy
            singles.append(float((counts.argmax(1).numpy() == data["yte"]).mean()))
            total += counts
    model.set_eval_mode("round")
    return float(np.mean(singles)), float((total.argmax(1).numpy() == data["yte"]).mean())


def main() -> None:
    """Train, evaluate, export."""
    args = common.parse_args("esser2015_small", epochs=15, lr=0.02, min_threshold="0.5", extra=lambda p: p.add_argument(
        "--temperature", type=float, default=1.0, help="logit scale on the expected spike counts"))
    common.setup(args)
    data = common.load_data(args)
    model = build("prob", args.min_threshold)
    optimizer = torch.optim.Adam(common.param_groups(model, args.lr))
    loss = lambda counts, y: torch.nn.functional.cross_entropy(args.temperature * counts, y)  # noqa: E731
    result = common.fit(model, data, args, loss, optimizer, after_step=model.constrain)
    single, ensemble = ensemble_accuracy(model, data, 16, args.seed)
    print(f"sampled copies: mean single-copy accuracy {100 * single:.2f}%, 16-copy ensemble {100 * ensemble:.2f}%")
    model.set_eval_mode("expected")
    expected_pred = common.predict(model, data["xte"])
    model.set_eval_mode("round")
    torch_pred = common.predict(model, data["xte"])
    meta = common.training_metadata(args, result, sampled_single_copy_accuracy=f"{single:.4f}",
                                    sampled_16_copy_accuracy=f"{ensemble:.4f}")
    common.save_checked(model.to_onnx("binary", meta, args.name), args.out, data, torch_pred, "binary connections")
    out = Path(args.out)
    common.save_checked(model.to_onnx("expected", meta, args.name + "_prob"), out.with_name(out.stem + "_prob.onnx"),
                        data, expected_pred, "expected weights")
    print(common.trained_line(args, result))


if __name__ == "__main__":
    main()

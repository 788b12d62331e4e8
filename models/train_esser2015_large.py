"""A large network of the Esser et al. 2015 kind: 3,824 neurons in 32 cores, every neuron reading
at most 256 lines (one core's axons).

Layer 1: 16 cores over the 16x16 patches at offsets (0|4|8|12, 0|4|8|12), 128 neurons each.
Layer 2: 8 cores of 192 neurons; core 2q + h (q = 2 * r0 + c0 in 0..3, h in 0..1) reads half h
(64 neurons) of each of the 4 patches at offsets (4 r0 + 8 a, 4 c0 + 8 b), a, b in {0, 1}, so
every layer-2 core sees the whole image. Output: 8 cores, core g reads the 192 neurons of
layer-2 core g and has 30 neurons (3 per class); the readout sums 24 neurons per class.

--mode binary (default): binary connections learned with a straight-through estimator, as in
esser2015_binary. --mode prob: probabilistic synapses and neurons, as in esser2015_small (also
writes <out stem>_prob.onnx with the expected weights p * sign).

Usage: python models/train_esser2015_large.py [--epochs E] [--mode binary|prob] [--out models/esser2015_large.onnx]
       [--shift PX --rotate DEG --scale F]  (training distortions, as in train_eedn_groups.py; default none)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import common
from patchnet import PatchNet, block_index, class_of_outputs, patch_index
from train_esser2015_small import ensemble_accuracy


def build(mode: str, floor: float | None) -> PatchNet:
    """16 patch cores x 128 -> 8 cores x 192 -> 8 output cores x 30 (3 per class)."""
    offsets = [(4 * r, 4 * c) for r in range(4) for c in range(4)]
    groups = []
    for r0 in range(2):
        for c0 in range(2):
            patches = [(r0 + 2 * a) * 4 + (c0 + 2 * b) for a in range(2) for b in range(2)]
            groups += [[2 * p + half for p in patches] for half in range(2)]
    output_index = np.arange(8 * 192).reshape(8, 192)
    layers = [(patch_index(offsets), 128), (block_index(groups, 64), 192), (output_index, 30)]
    return PatchNet(layers, class_of_outputs(8, 3), mode, floor)


def main() -> None:
    """Train, evaluate, export."""
    def extra(parser):
        parser.add_argument("--mode", choices=["binary", "prob"], default="binary")
        parser.add_argument("--temperature", type=float, default=0.5, help="logit scale on the spike counts")
        common.add_distortion_args(parser, shift=0)

    args = common.parse_args("esser2015_large", epochs=15, lr=0.01, min_threshold="none", extra=extra)
    common.setup(args)
    data = common.load_data(args)
    floor = args.min_threshold if args.mode == "binary" or args.min_threshold is not None else 0.5
    model = build(args.mode, floor)
    print(f"{model.neuron_count()} neurons, mode {args.mode}", flush=True)
    optimizer = torch.optim.Adam(common.param_groups(model, args.lr, factor=1.0 if args.mode == "binary" else 10.0))
    loss = lambda counts, y: torch.nn.functional.cross_entropy(args.temperature * counts, y)  # noqa: E731
    result = common.fit(model, data, args, loss, optimizer, after_step=model.constrain, max_shift=args.shift)
    torch_pred = common.predict(model, data["xte"])
    extra_meta = {"mode": args.mode}
    if args.mode == "prob":
        single, ensemble = ensemble_accuracy(model, data, 16, args.seed)
        print(f"sampled copies: mean single-copy accuracy {100 * single:.2f}%, 16-copy ensemble {100 * ensemble:.2f}%")
        extra_meta.update(sampled_single_copy_accuracy=f"{single:.4f}", sampled_16_copy_accuracy=f"{ensemble:.4f}")
    meta = common.training_metadata(args, result, **extra_meta)
    common.save_checked(model.to_onnx("binary", meta, args.name), args.out, data, torch_pred, "binary connections")
    if args.mode == "prob":
        model.set_eval_mode("expected")
        expected_pred = common.predict(model, data["xte"])
        out = Path(args.out)
        common.save_checked(model.to_onnx("expected", meta, args.name + "_prob"),
                            out.with_name(out.stem + "_prob.onnx"), data, expected_pred, "expected weights")
    print(f"trained {args.epochs} epochs in {result['train_seconds']:.0f} s")


if __name__ == "__main__":
    main()

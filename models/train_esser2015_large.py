"""A large network of the Esser et al. 2015 kind: 3,824 neurons in 32 cores, every neuron reading
at most 256 lines (one core's axons).

Layer 1: 16 cores over the 16x16 patches at offsets (0|4|8|12, 0|4|8|12), 128 neurons each.
Layer 2: 8 cores of 192 neurons; core 2q + h (q = 2 * r0 + c0 in 0..3, h in 0..1) reads half h
(64 neurons) of each of the 4 patches at offsets (4 r0 + 8 a, 4 c0 + 8 b), a, b in {0, 1}, so
every layer-2 core sees the whole image. Output: 8 cores, core g reads the 192 neurons of
layer-2 core g and has 30 neurons (3 per class); the readout sums 24 neurons per class.
--width 2: 256 neurons per patch core (4 slices of 64), so 16 layer-2 and 16 output cores
(48 cores, 7,648 neurons; 48 voters per class); --width 4: 512 neurons per patch (two cores
reading the same 256 pixels), 32 layer-2 and 32 output cores (96 cores, 15,296 neurons). --hidden N:
N neurons per layer-2 core (192).

--mode binary (default): binary connections learned with a straight-through estimator, as in
esser2015_binary. --mode prob: probabilistic synapses and neurons, as in esser2015_small (also
writes <out stem>_prob.onnx with the expected weights p * sign).

--init FILE.onnx --epochs 0 --finetune N: fine-tune an exported binary network (weights and
thresholds loaded exactly, then N epochs with frozen batch norms: the chip's thresholds).

Usage: python models/train_esser2015_large.py [--epochs E] [--mode binary|prob] [--out models/esser2015_large.onnx]
       [--width 1|2|4] [--hidden N] [--shift PX --rotate DEG --scale F --elastic A]  (training distortions; default none)
       [--finetune N] [--init FILE.onnx]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import common
from patchnet import PatchNet, block_index, class_of_outputs, load_exported, patch_index
from train_esser2015_small import ensemble_accuracy


def build(mode: str, floor: float | None, width: int = 1, hidden: int = 192) -> PatchNet:
    """16 patch cores x 128 width -> 8 width cores x ``hidden`` -> 8 width output cores x 30 (3 per class)."""
    offsets = [(4 * r, 4 * c) for r in range(4) for c in range(4)]
    slices = 2 * width  # 64-neuron slices of a patch core
    groups = []
    for r0 in range(2):
        for c0 in range(2):
            patches = [(r0 + 2 * a) * 4 + (c0 + 2 * b) for a in range(2) for b in range(2)]
            groups += [[slices * p + part for p in patches] for part in range(slices)]
    cores = 8 * width
    output_index = np.arange(cores * hidden).reshape(cores, hidden)
    layers = [(patch_index(offsets), 128 * width), (block_index(groups, 64), hidden), (output_index, 30)]
    return PatchNet(layers, class_of_outputs(cores, 3), mode, floor)


def main() -> None:
    """Train, evaluate, export."""
    def extra(parser):
        parser.add_argument("--mode", choices=["binary", "prob"], default="binary")
        parser.add_argument("--temperature", type=float, default=0.5, help="logit scale on the spike counts")
        parser.add_argument("--width", type=int, default=1, choices=(1, 2, 4),
                            help="neurons per patch x 128 (a core has 256: width 4 takes two cores a patch), "
                                 "layer-2 and output cores x 8")
        parser.add_argument("--hidden", type=int, default=192, help="neurons per layer-2 core (at most 256)")
        parser.add_argument("--init", default=None,
                            help="start from this ONNX file, exported by this recipe (--mode binary) with the same "
                                 "--width and --hidden (with --epochs 0 --finetune N: fine-tune a trained network; "
                                 "keep its --seed and --val so that its held-out images stay held out)")
        common.add_distortion_args(parser, shift=0)

    args = common.parse_args("esser2015_large", epochs=15, lr=0.01, min_threshold="none", extra=extra)
    common.setup(args)
    data = common.load_data(args)
    floor = args.min_threshold if args.mode == "binary" or args.min_threshold is not None else 0.5
    if not 1 <= args.hidden <= 256:
        raise SystemExit(f"--hidden {args.hidden}: a core has 256 neurons (and an output core 256 axons)")
    model = build(args.mode, floor, args.width, args.hidden)
    print(f"{model.neuron_count()} neurons, mode {args.mode}", flush=True)
    if args.init is not None:
        common.start_from(model, args.init, data, load_exported)
    optimizer = torch.optim.Adam(common.param_groups(model, args.lr, factor=1.0 if args.mode == "binary" else 10.0))
    loss = lambda counts, y: torch.nn.functional.cross_entropy(args.temperature * counts, y)  # noqa: E731
    result = common.fit(model, data, args, loss, optimizer, after_step=model.constrain)
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
    print(common.trained_line(args, result))


if __name__ == "__main__":
    main()

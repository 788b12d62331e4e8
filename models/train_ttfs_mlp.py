"""An MLP 784-256-10 trained for time-to-first-spike coding (``binarize_ttfs``), after YOSO
(Srivatsa et al. 2020): the network is trained with the activation a TTFS hidden neuron computes,
then converted.

A TTFS hidden neuron spikes once on a window of K ticks; its value is min(K, round(z / step)) steps
(the tick of its spike, earlier = larger), so the hidden activation is ``Clip(z, 0, 1)`` rounded to
K levels (straight-through gradient). Each hidden neuron reads at most ``--fan-in`` pixels (a chip
core has 256 axons): after ``--dense-epochs`` epochs every neuron keeps its strongest inputs
(|w| times the pixel's spread) and training goes on with that mask. The epoch kept is the best on
``--val`` held-out training images.

ONNX: x -> Greater(x, 0.5) -> Cast -> Flatten -> Gemm(784x256, masked) + bias -> Clip(0, 1)
-> Gemm(256x10) + bias -> logits ``y``. The exported hidden activation is the unrounded Clip;
``binarize_ttfs`` rounds it to K levels with the step 1 / K it reads from the Clip.

Usage: python models/train_ttfs_mlp.py [--epochs E] [--ticks K] [--out models/ttfs_mlp.onnx]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

import common


class RoundLevels(torch.autograd.Function):
    """x rounded to multiples of 1 / K forward, identity backward."""

    @staticmethod
    def forward(ctx, x, levels: int):  # type: ignore[override]
        return torch.round(x * levels) / levels

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad, None


class TtfsMLP(nn.Module):
    """784 -> hidden (Clip(0, 1) on K levels, sparse fan-in) -> 10."""

    def __init__(self, hidden: int, levels: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, hidden), nn.Linear(hidden, 10)
        self.levels = levels
        self.register_buffer("mask", torch.ones(hidden, 784))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, with the hidden activation on K levels as the chip computes it."""
        z = nn.functional.linear(x.flatten(1), self.fc1.weight * self.mask, self.fc1.bias)
        return self.fc2(RoundLevels.apply(torch.clamp(z, 0.0, 1.0), self.levels))

    def limit_fan_in(self, x: torch.Tensor, fan_in: int) -> None:
        """Keep each hidden neuron's ``fan_in`` strongest inputs: |w| times the spread of the
        binarized pixel on training images ``x``."""
        p = common.binarize_input(x).flatten(1).mean(0)
        importance = self.fc1.weight.detach().abs() * torch.sqrt(p * (1 - p) + 1e-6)[None, :]
        keep = importance.topk(min(fan_in, 784), dim=1).indices
        self.mask.zero_()
        self.mask.scatter_(1, keep, 1.0)

    def to_onnx(self, metadata: dict[str, str], name: str):
        """The ONNX graph with the threshold input encoding and the Clip activation."""
        builder = common.GraphBuilder(name)
        h = builder.flatten(builder.encode_input())
        with torch.no_grad():
            weight = (self.fc1.weight * self.mask).T.numpy()
            h = builder.gemm(h, weight, self.fc1.bias.numpy(), "fc1")
            h = builder.op("Clip", [h, builder.const("clip_min", np.array(0.0, np.float32)),
                                    builder.const("clip_max", np.array(1.0, np.float32))])
            builder.gemm(h, self.fc2.weight.T.numpy(), self.fc2.bias.numpy(), "fc2")
        builder.nodes[-1].output[0] = "y"
        return builder.model("y", [10], metadata)


def options(parser: argparse.ArgumentParser) -> None:
    """The recipe's own options."""
    parser.add_argument("--hidden", type=int, default=256, help="hidden neurons (at most 256: the readout's fan-in)")
    parser.add_argument("--ticks", type=int, default=8, help="K, the levels of a hidden activation (binarize_ttfs ticks)")
    parser.add_argument("--fan-in", type=int, default=256, help="inputs per hidden neuron (a core's axons)")
    parser.add_argument("--dense-epochs", type=int, default=2, help="epochs before the fan-in is limited")


def main() -> None:
    """Train densely, limit the fan-in, train on, keep the best held-out epoch, export."""
    args = common.parse_args("ttfs_mlp", epochs=8, lr=0.003, extra=options, val=5000)
    common.setup(args)
    data = common.load_data(args)
    model = TtfsMLP(args.hidden, args.ticks)
    total = args.epochs
    dense = min(args.dense_epochs, total)
    if dense:
        args.epochs = dense
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-5)
        common.fit(model, data, args, nn.functional.cross_entropy, optimizer)
    kept, _ = common.heldout_split(len(data["ytr"]), args.seed, args.val) if args.val else (slice(None), None)
    model.limit_fan_in(torch.from_numpy(data["xtr"][kept]), args.fan_in)
    print(f"fan-in limited to {args.fan_in} inputs per hidden neuron", flush=True)
    args.epochs = total - dense
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-5)
    result = common.fit(model, data, args, nn.functional.cross_entropy, optimizer)
    args.epochs = total
    meta = common.training_metadata(args, result, weights="float", hidden_levels=str(args.ticks),
                                    fan_in=str(args.fan_in))
    common.save_checked(model.to_onnx(meta, args.name), args.out, data, common.predict(model, data["xte"]),
                        "float (Clip, unrounded)")
    print(common.trained_line(args, result))


if __name__ == "__main__":
    main()

"""An Eedn-style CNN (Esser et al. 2016): trinary weights {-1, 0, 1}, binary step neurons, grouped
convolutions so that every filter reads at most 128 input lines (each input needs two axons on
chip, one per sign: 2 x 128 = 256 axons, one core).

Layers (channels at width 1; every conv is followed by a step neuron):
  c1  4x4 conv,            1 ->  64, stride 2, pad 1          14x14, fan-in  16
  c2  3x3 conv, groups 8,  64 ->  96, stride 1, pad 1         14x14, fan-in  72
  c3  4x4 conv, groups 12, 96 -> 192, stride 2, pad 1           7x7, fan-in 128
  c4  1x1 conv, groups 2, 192 -> 192                            7x7, fan-in  96
  out 3x3 conv, groups 32, 192 -> 320, stride 2, pad 1          4x4, fan-in  54
The 5,120 output neurons vote: output channel c counts for class c % 10 (512 votes per class);
the readout sums the spikes per class.

Training: latent weights in [-1, 1], ternarised in the forward pass (|w| <= 1/2 -> 0) with a
straight-through gradient; batch norm (scale fixed at 1) in front of each step, folded into an
integer threshold at export; straight-through step gradient where |z| < 1; optional random
shifts of up to --shift pixels (default 0). Batch-norm statistics are recomputed exactly over
10,000 training images after every epoch (binary networks move faster than a running average).

Usage: python models/train_eedn_cnn.py [--epochs E] [--out models/eedn_cnn.onnx]
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import common

# (out channels, kernel, stride, pad, groups) at width 1
LAYERS = [(64, 4, 2, 1, 1), (96, 3, 1, 1, 8), (192, 4, 2, 1, 12), (192, 1, 1, 0, 2), (320, 3, 2, 1, 32)]
MAX_FAN_IN = 128


class TernaryConv(nn.Module):
    """A grouped conv with ternary weights followed by a foldable batch norm and a step."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, pad: int, groups: int, floor: float | None,
                 shift: float = 0.0) -> None:
        super().__init__()
        fan_in = (cin // groups) * k * k
        if fan_in > MAX_FAN_IN or cin % groups or cout % groups:
            raise ValueError(f"conv {cin}->{cout} k{k} groups {groups}: fan-in {fan_in} (max {MAX_FAN_IN}), "
                             f"channels must divide by the groups")
        self.stride, self.pad, self.groups = stride, pad, groups
        self.weight = nn.Parameter(torch.empty(cout, cin // groups, k, k).uniform_(-1.0, 1.0))
        self.norm = common.ThresholdNorm(cout, floor, spatial=True, shift=shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes of the layer."""
        w = common.quantize(self.weight, "ternary")
        s = nn.functional.conv2d(x, w, stride=self.stride, padding=self.pad, groups=self.groups)
        return common.step(self.norm(s))

    def constrain(self) -> None:
        """Latent weights in [-1, 1]; threshold floor."""
        with torch.no_grad():
            self.weight.clamp_(-1.0, 1.0)
        self.norm.constrain()


class EednCNN(nn.Module):
    """The CNN of ternary convolutions and step neurons, with the class readout."""

    def __init__(self, width: float, floor: float | None) -> None:
        super().__init__()
        self.specs, cin, size = [], 1, 28
        for k_out, k, stride, pad, groups in LAYERS:
            cout = k_out if len(self.specs) == len(LAYERS) - 1 else int(round(k_out * width / groups)) * groups
            self.specs.append((cin, cout, k, stride, pad, groups))
            cin, size = cout, (size + 2 * pad - k) // stride + 1
        shifts = [0.0] * (len(self.specs) - 1) + [common.OUTPUT_SHIFT]
        self.convs = nn.ModuleList(TernaryConv(*spec, floor, shift) for spec, shift in zip(self.specs, shifts))
        channels = self.specs[-1][1]
        common.add_vote_readout(self, np.repeat(np.arange(channels) % 10, size * size))  # (c, h, w) order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spike counts per class."""
        for conv in self.convs:
            x = conv(x)
        return x.flatten(1) @ self.readout

    def constrain(self) -> None:
        """Project parameters into range."""
        for conv in self.convs:
            conv.constrain()

    def to_onnx(self, metadata: dict[str, str], name: str):
        """Chip-ready ONNX: encoding, Conv (ternary, integer-threshold bias) + step, readout."""
        builder = common.GraphBuilder(name)
        h = builder.encode_input()
        with torch.no_grad():
            for k, (conv, (_, _, _, stride, pad, groups)) in enumerate(zip(self.convs, self.specs), start=1):
                weight = common.quantize(conv.weight, "ternary").numpy()
                bias = common.integer_bias(conv.norm.threshold())
                h = builder.step(builder.conv(h, weight, bias, f"c{k}", stride=stride, pad=pad, group=groups),
                                 name=f"c{k}.spikes")
        counts = builder.readout(builder.flatten(h), self.classes)
        return builder.model(counts, [10], metadata)


def main() -> None:
    """Train, evaluate, export."""
    def extra(parser):
        parser.add_argument("--width", type=float, default=1.0, help="channel multiplier of the hidden layers")
        common.add_distortion_args(parser, shift=0)

    args = common.parse_args("eedn_cnn", epochs=12, lr=0.01, batch_size=200, min_threshold="none", extra=extra)
    common.setup(args)
    data = common.load_data(args)
    model = EednCNN(args.width, args.min_threshold)
    common.train_vote_network(model, args, data, "ternary weights", weights="ternary")


if __name__ == "__main__":
    main()

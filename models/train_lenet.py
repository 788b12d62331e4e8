"""LeNet-5 with ReLU and average pooling on threshold-encoded (binarized) MNIST, for the lsq path.

ONNX: x -> Greater(x, 0.5) -> Cast -> Conv 5x5 1->6 pad 2 -> Relu -> AveragePool 2 -> Conv 5x5
6->16 -> Relu -> AveragePool 2 -> Flatten (400) -> Gemm 120 -> Relu -> Gemm 84 -> Relu -> Gemm 10
-> logits ``y`` (batch, 10). Float weights; the class is the argmax of ``y``.

--width K: K times the channels and the hidden neurons (a stronger float network, e.g. a teacher
for the binary recipes' --teacher); the distortion options as in the binary recipes.

Usage: python models/train_lenet.py [--epochs E] [--out models/lenet.onnx] [--width K]
       [--shift PX --rotate DEG --scale F --elastic A]
"""

from __future__ import annotations

import torch
from torch import nn

import common


class LeNet(nn.Module):
    """LeNet-5 (ReLU, average pooling), ``width`` times the channels and hidden neurons."""

    def __init__(self, width: int = 1) -> None:
        super().__init__()
        c1, c2, h1, h2 = 6 * width, 16 * width, 120 * width, 84 * width
        self.conv1, self.conv2 = nn.Conv2d(1, c1, 5, padding=2), nn.Conv2d(c1, c2, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(25 * c2, h1), nn.Linear(h1, h2), nn.Linear(h2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        x = nn.functional.avg_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.avg_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(x)))

    def to_onnx(self, metadata: dict[str, str], name: str):
        """The ONNX graph with the threshold input encoding."""
        b = common.GraphBuilder(name)
        h = b.encode_input()
        with torch.no_grad():
            for k, conv in enumerate((self.conv1, self.conv2), start=1):
                h = b.op("Relu", [b.conv(h, conv.weight.numpy(), conv.bias.numpy(), f"conv{k}",
                                         pad=conv.padding[0])])
                h = b.op("AveragePool", [h], kernel_shape=[2, 2], strides=[2, 2])
            h = b.flatten(h)
            for k, fc in enumerate((self.fc1, self.fc2, self.fc3), start=1):
                h = b.gemm(h, fc.weight.T.numpy(), fc.bias.numpy(), f"fc{k}")
                if k < 3:
                    h = b.op("Relu", [h])
        b.nodes[-1].output[0] = "y"
        return b.model("y", [10], metadata)


def main() -> None:
    """Train, evaluate, export."""
    def extra(parser):
        parser.add_argument("--width", type=int, default=1, choices=range(1, 9), metavar="K",
                            help="channels and hidden neurons x K (1 to 8)")
        common.add_distortion_args(parser, shift=0)

    common.train_float("lenet", lambda args: LeNet(args.width), extra)


if __name__ == "__main__":
    main()

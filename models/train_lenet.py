"""LeNet-5 with ReLU and average pooling on threshold-encoded (binarized) MNIST, for the lsq path.

ONNX: x -> Greater(x, 0.5) -> Cast -> Conv 5x5 1->6 pad 2 -> Relu -> AveragePool 2 -> Conv 5x5
6->16 -> Relu -> AveragePool 2 -> Flatten (400) -> Gemm 120 -> Relu -> Gemm 84 -> Relu -> Gemm 10
-> logits ``y`` (batch, 10). Float weights; the class is the argmax of ``y``.

Usage: python models/train_lenet.py [--epochs E] [--out models/lenet.onnx]
"""

from __future__ import annotations

import torch
from torch import nn

import common


class LeNet(nn.Module):
    """LeNet-5 (ReLU, average pooling)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

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
    common.train_float("lenet", LeNet)


if __name__ == "__main__":
    main()

"""A float ReLU MLP 784-256-10 on threshold-encoded (binarized) MNIST, for the lsq path.

ONNX: x -> Greater(x, 0.5) -> Cast -> Flatten -> Gemm(784x256) + bias -> Relu -> Gemm(256x10)
+ bias -> logits ``y`` (batch, 10). Float weights; the class is the argmax of ``y``.

Usage: python models/train_mlp.py [--epochs E] [--out models/mlp.onnx]
"""

from __future__ import annotations

import torch
from torch import nn

import common


class MLP(nn.Module):
    """784 -> hidden (ReLU) -> 10."""

    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, hidden), nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))

    def to_onnx(self, metadata: dict[str, str], name: str):
        """The ONNX graph with the threshold input encoding."""
        builder = common.GraphBuilder(name)
        h = builder.flatten(builder.encode_input())
        with torch.no_grad():
            h = builder.op("Relu", [builder.gemm(h, self.fc1.weight.T.numpy(), self.fc1.bias.numpy(), "fc1")])
            builder.gemm(h, self.fc2.weight.T.numpy(), self.fc2.bias.numpy(), "fc2")
        builder.nodes[-1].output[0] = "y"
        return builder.model("y", [10], metadata)


def main() -> None:
    """Train, evaluate, export."""
    common.train_float("mlp", lambda args: MLP())


if __name__ == "__main__":
    main()

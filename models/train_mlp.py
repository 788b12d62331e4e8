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
            y = builder.gemm(h, self.fc2.weight.T.numpy(), self.fc2.bias.numpy(), "fc2")
        builder.nodes[-1].output[0] = "y"
        return builder.model("y", [10], metadata)


def main() -> None:
    """Train, evaluate, export."""
    args = common.parse_args("mlp", epochs=10, lr=0.003)
    common.setup(args)
    data = common.load_data(args)
    model = MLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-5)
    result = common.fit(model, data, args, nn.functional.cross_entropy, optimizer)
    meta = common.training_metadata(args, result, weights="float")
    common.save_checked(model.to_onnx(meta, args.name), args.out, data, common.predict(model, data["xte"]), "float")
    print(f"trained {args.epochs} epochs in {result['train_seconds']:.0f} s")


if __name__ == "__main__":
    main()

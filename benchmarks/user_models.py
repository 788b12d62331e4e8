"""Float MNIST models trained the way a new user would, to check that the default conversion
generalizes to models crossmap has never seen: a 784-300-10 ReLU MLP and a small CNN with batch
norm and max pooling, both on raw [0, 1] pixels (no input thresholding), exported with
``torch.onnx.export``.

    python benchmarks/user_models.py --out DIR [--epochs 2] [--data-dir DIR] [--seed S] [--hidden H]
        [--widths C1 C2 F] [--pool max|avg]

Trains on 55,000 training images in a seeded random order (the other 5,000 are held out for
choosing settings; MNIST copies may be sorted by label),
prints the onnxruntime test accuracy of each exported model, and writes ``DIR/user_mlp.onnx``,
``DIR/user_cnn.onnx`` and ``DIR/calibration.npz`` (256 held-out training images).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from crossmap.datasets import load_mnist


def mlp(hidden: int = 300) -> nn.Module:
    """784 -> hidden (ReLU) -> 10."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def cnn(widths: tuple[int, int, int] = (8, 16, 64), pool: str = "max") -> nn.Module:
    """Conv c1@5x5 + BN + ReLU + pool 2, Conv c2@5x5 + BN + ReLU + pool 2, FC f, FC 10 (default
    8, 16, 64 and max pooling)."""
    c1, c2, f = widths
    layer = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
    return nn.Sequential(nn.Conv2d(1, c1, 5), nn.BatchNorm2d(c1), nn.ReLU(), layer(2),
                         nn.Conv2d(c1, c2, 5), nn.BatchNorm2d(c2), nn.ReLU(), layer(2),
                         nn.Flatten(), nn.Linear(16 * c2, f), nn.ReLU(), nn.Linear(f, 10))


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, seed: int = 0) -> None:
    """Adam, batch 64, cross-entropy."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xt))
        for lo in range(0, len(xt), 64):
            idx = order[lo:lo + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()


def main() -> None:
    """Train, export and score both models."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0, help="training seed (the data split stays fixed)")
    parser.add_argument("--hidden", type=int, default=300, help="the MLP's hidden width")
    parser.add_argument("--widths", type=int, nargs=3, default=[8, 16, 64], help="the CNN's conv1, conv2, fc widths")
    parser.add_argument("--pool", default="max", choices=["max", "avg"], help="the CNN's pooling")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x, y = load_mnist("train", data_dir=args.data_dir)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order].reshape(-1, 1, 28, 28).astype(np.float32), y[order]
    xt, yt = load_mnist("test", data_dir=args.data_dir)
    xt = xt.reshape(-1, 1, 28, 28).astype(np.float32)
    np.savez(out / "calibration.npz", x=x[55000:55256], y=y[55000:55256])
    import onnxruntime as ort

    makers = (("user_mlp", lambda: mlp(args.hidden)), ("user_cnn", lambda: cnn(tuple(args.widths), args.pool)))
    for name, make in makers:
        torch.manual_seed(args.seed)
        model = make()
        start = time.perf_counter()
        train(model, x[:55000], y[:55000].astype(np.int64), args.epochs, args.seed)
        path = out / f"{name}.onnx"
        torch.onnx.export(model, torch.zeros(1, 1, 28, 28), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=13, dynamo=False)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        pred = np.argmax(session.run(None, {"x": xt})[0], axis=1)
        held = np.argmax(session.run(None, {"x": x[55000:]})[0], axis=1)
        print(f"{name}: test {100 * np.mean(pred == yt):.2f}%, held-out {100 * np.mean(held == y[55000:]):.2f}%, "
              f"{time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()

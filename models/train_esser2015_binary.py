"""Esser et al. 2015's small network with binary crossbars learned directly (arXiv 1605.07740
style): the same 4 patch cores x 64 neurons -> 1 output core of 10 x 25 neurons as
esser2015_small, but connections are {0, 1} in the forward pass (latent value > 1/2) with a
straight-through gradient, and neurons are steps on a batch-normalised sum (straight-through
gradient where |z| < 1). The batch norm (scale fixed at 1) folds into an integer threshold, kept
>= 1 during training (a neuron needs input to fire).

Usage: python models/train_esser2015_binary.py [--epochs E] [--out models/esser2015_binary.onnx]
"""

from __future__ import annotations

import torch

import common
from train_esser2015_small import build


def main() -> None:
    """Train, evaluate, export."""
    def extra(parser):
        parser.add_argument("--temperature", type=float, default=0.5, help="logit scale on the spike counts")
        parser.add_argument("--threshold-lr-factor", type=float, default=1.0, help="BN shift lr / weight lr")

    args = common.parse_args("esser2015_binary", epochs=15, lr=0.01, min_threshold="none", extra=extra)
    common.setup(args)
    data = common.load_data(args)
    model = build("binary", args.min_threshold)
    optimizer = torch.optim.Adam(common.param_groups(model, args.lr, factor=args.threshold_lr_factor))
    loss = lambda counts, y: torch.nn.functional.cross_entropy(args.temperature * counts, y)  # noqa: E731
    result = common.fit(model, data, args, loss, optimizer, after_step=model.constrain)
    torch_pred = common.predict(model, data["xte"])
    meta = common.training_metadata(args, result)
    common.save_checked(model.to_onnx("binary", meta, args.name), args.out, data, torch_pred, "binary connections")
    print(common.trained_line(args, result))


if __name__ == "__main__":
    main()

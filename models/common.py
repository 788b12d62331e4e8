"""Shared pieces of the training recipes: arguments, data, straight-through estimators, the
training loop, an ONNX graph builder for the chip-ready contract, and onnxruntime checks.

Every recipe imports this file as ``common`` (run the recipes as ``python models/train_<name>.py``).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from crossmap.datasets import load_mnist
from crossmap.errors import CrossmapError

OPSET = 17
IR_VERSION = 8


# ---------------------------------------------------------------- arguments, data, loop

def parse_args(name: str, epochs: int, lr: float, batch_size: int = 100,
               extra: Callable[[argparse.ArgumentParser], None] | None = None,
               min_threshold: str | None = None, val: int = 0) -> argparse.Namespace:
    """The common command line of a recipe: epochs, output path, data dir, seed, threads."""
    parser = argparse.ArgumentParser(description=f"train {name} on MNIST and export it as ONNX")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / f"{name}.onnx"))
    parser.add_argument("--data-dir", default=None, help="MNIST IDX directory (default: crossmap's lookup)")
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads, at most 2 (default 1: on a shared machine 2 threads can be far slower)")
    parser.add_argument("--train-limit", type=int, default=None, help="train on the first N images (smoke tests)")
    parser.add_argument("--val", type=int, default=val,
                        help="hold out N training images and keep the epoch with the best accuracy on them "
                             "(binary networks' test accuracy swings by a percent from epoch to epoch)")
    if min_threshold is not None:
        parser.add_argument("--min-threshold", default=min_threshold,
                            help="lowest real firing threshold of a step neuron (0.5: every neuron needs an "
                                 "integer input >= 1 to fire), or 'none' (neurons may fire without input)")
    parser.add_argument("--finetune", type=int, default=0,
                        help="after the schedule, N more epochs with every batch norm frozen at statistics over "
                             "all training images: the step neurons then train with the thresholds the chip uses")
    parser.add_argument("--finetune-lr", type=float, default=None,
                        help="peak learning rate of the --finetune epochs, cosine to 0 (default: --lr / 50)")
    parser.add_argument("--teacher", default=None,
                        help="distil from this ONNX model (same input contract): train on targets mixing the "
                             "labels with the teacher's softened class probabilities (--distill, --teacher-temperature)")
    parser.add_argument("--distill", type=float, default=0.5, help="weight of the teacher's probabilities in the targets")
    parser.add_argument("--teacher-temperature", type=float, default=2.0, help="softening of the teacher's logits")
    parser.add_argument("--boost", nargs="+", default=None, metavar="FILE.onnx",
                        help="train as the next member of the ensemble of these networks (ONNX models of the same "
                             "contract): the loss sees the network's outputs plus --boost-weight times the sum of "
                             "theirs on the undistorted training image, so the network learns where they are weak")
    parser.add_argument("--boost-weight", type=float, default=1.0, help="weight of the --boost ensemble's outputs")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if args.teacher is not None and not Path(args.teacher).is_file():
        raise SystemExit(f"--teacher {args.teacher}: no such file; give an ONNX model trained on MNIST")
    missing = [path for path in args.boost or [] if not Path(path).is_file()]
    if missing:
        raise SystemExit(f"--boost {' '.join(missing)}: no such file; give trained networks' ONNX files")
    if not 0.0 <= args.distill <= 1.0 or args.teacher_temperature <= 0:
        raise SystemExit(f"--distill {args.distill} must be in [0, 1] and --teacher-temperature "
                         f"{args.teacher_temperature} above 0")
    if args.epochs < 0 or args.finetune < 0 or args.epochs + args.finetune == 0:
        raise SystemExit(f"--epochs {args.epochs} --finetune {args.finetune}: give a positive number of epochs")
    if min_threshold is not None:
        args.min_threshold = None if args.min_threshold.lower() == "none" else float(args.min_threshold)
    args.name = name
    args.command = "python models/" + Path(sys.argv[0]).name + " " + " ".join(sys.argv[1:])
    return args


ELASTIC_SIGMA = 4.0  # pixels: the smoothing of the elastic fields (Simard et al. 2003)


def add_distortion_args(parser: argparse.ArgumentParser, shift: int) -> None:
    """The training-distortion options: ``--shift`` (default ``shift`` pixels), ``--rotate``,
    ``--scale`` and ``--elastic`` (``augment_images``)."""
    parser.add_argument("--shift", type=float, default=shift,
                        help="random shifts of up to this many pixels (whole pixels unless the value has a "
                             "fraction or --rotate, --scale or --elastic is given)")
    parser.add_argument("--rotate", type=float, default=0.0,
                        help="random rotations of up to this many degrees (with --scale: affine distortions of "
                             "the grey image before the threshold, shifts then real-valued)")
    parser.add_argument("--scale", type=float, default=0.0, help="random scaling by 1 +- this fraction")
    parser.add_argument("--elastic", type=float, default=0.0,
                        help=f"strength alpha of random elastic distortions (smoothed over {ELASTIC_SIGMA:g} pixels; "
                             "Simard et al. 2003 use 34)")


def setup(args: argparse.Namespace) -> None:
    """Thread count and seeds."""
    torch.set_num_threads(max(1, min(args.threads, 2)))
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)


def load_data(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """MNIST float images (n, 1, 28, 28) in [0, 1] and int64 labels, train and test (missing
    files: the loader's message and exit, not a traceback)."""
    try:
        xtr, ytr = load_mnist("train", data_dir=args.data_dir)
        xte, yte = load_mnist("test", data_dir=args.data_dir)
    except CrossmapError as error:
        raise SystemExit(f"{args.name}: {error}") from None
    if args.train_limit:
        keep = np.random.default_rng(args.seed).permutation(len(ytr))[: args.train_limit]
        xtr, ytr = xtr[keep], ytr[keep]
    return {"xtr": xtr, "ytr": ytr, "xte": xte, "yte": yte}


def heldout_split(count: int, seed: int, val: int) -> tuple[np.ndarray, np.ndarray]:
    """The training images a recipe trains on and the ``val`` it holds out (``--val``): the last
    ``val`` of a shuffle of ``count`` images seeded by the recipe's ``--seed``."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed + 12345)).numpy()
    return order[:-val], order[-val:]


def binarize_input(x: torch.Tensor, thresholds: tuple[float, ...] = (0.5,)) -> torch.Tensor:
    """The chip's threshold input encoding: a pixel spikes when its value is above 0.5; with
    several ``thresholds`` (a thermometer code) each channel becomes one channel per threshold,
    in threshold order."""
    if len(thresholds) == 1:
        return (x > thresholds[0]).float()
    return torch.cat([(x > t).float() for t in thresholds], dim=1)


def input_thresholds(model: torch.nn.Module) -> tuple[float, ...]:
    """The thresholds of a model's input encoding (``input_thresholds`` attribute, default 0.5)."""
    return tuple(getattr(model, "input_thresholds", (0.5,)))


def thermometer(levels: int) -> tuple[float, ...]:
    """``levels`` evenly spaced input thresholds k / (levels + 1): (0.5,) for one level, (0.25,
    0.5, 0.75) for three."""
    if levels < 1:
        raise SystemExit(f"--input-levels {levels}: give at least one threshold level")
    return tuple((k + 1) / (levels + 1) for k in range(levels))


def shift_images(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Random translations by up to ``max_shift`` pixels in each axis (zero fill), one per image."""
    if max_shift <= 0:
        return x
    n = x.shape[0]
    pad = torch.nn.functional.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(28)[None, :])[:, None, :, None].expand(n, x.shape[1], 28, pad.shape[3])
    out = torch.gather(pad, 2, rows)
    cols = (dx[:, None] + torch.arange(28)[None, :])[:, None, None, :].expand(n, x.shape[1], 28, 28)
    return torch.gather(out, 3, cols)


def warp(x: torch.Tensor, angle: torch.Tensor, factor: torch.Tensor, move: torch.Tensor,
         field: torch.Tensor | None = None) -> torch.Tensor:
    """Per image: rotate by ``angle`` (radians) about the centre, scale by ``factor`` and move by
    ``move`` (n, 2: pixels right, pixels down); then move each pixel by ``field`` (n, height,
    width, 2, in pixels, the same axes) when given; bilinear, zero fill."""
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    shift = -2 * move / x.shape[-1]  # the grid maps output to input positions, in units of half the image
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    if field is not None:
        grid = grid - 2 * field / x.shape[-1]
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def elastic_field(n: int, size: int, alpha: float, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Random smooth displacement fields (n, size, size, 2) in pixels, as in Simard et al. 2003:
    uniform noise in [-1, 1] per pixel and axis, blurred by a Gaussian of ``sigma`` pixels and
    scaled by ``alpha``."""
    radius = int(math.ceil(3 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    taps = taps / taps.sum()
    noise = torch.rand(n * 2, 1, size, size, generator=generator) * 2 - 1
    noise = torch.nn.functional.conv2d(noise, taps.view(1, 1, 1, -1), padding=(0, radius))
    noise = torch.nn.functional.conv2d(noise, taps.view(1, 1, -1, 1), padding=(radius, 0))
    return (alpha * noise).view(n, 2, size, size).permute(0, 2, 3, 1)


def warp_images(x: torch.Tensor, max_shift: float, rotate: float, scale: float,
                generator: torch.Generator, elastic: float = 0.0) -> torch.Tensor:
    """Random distortions (``warp``), one per image: a rotation by up to ``rotate`` degrees, a
    scaling by a factor in [1 - scale, 1 + scale], a translation by up to ``max_shift`` pixels per
    axis and, with ``elastic`` > 0, an elastic field of that strength (``elastic_field``), applied
    to the grey image before the input threshold."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(rotate)
    factor = 1 + (torch.rand(n, generator=generator) * 2 - 1) * scale
    move = (1 - torch.rand(n, 2, generator=generator) * 2) * max_shift
    field = elastic_field(n, x.shape[-1], elastic, ELASTIC_SIGMA, generator) if elastic > 0 else None
    return warp(x, angle, factor, move, field)


def augment_images(x: torch.Tensor, max_shift: float, generator: torch.Generator, rotate: float = 0.0,
                   scale: float = 0.0, elastic: float = 0.0) -> torch.Tensor:
    """Training distortions: whole-pixel shifts (``shift_images``) when ``max_shift`` is a whole
    number and no rotation, scaling or elastic field is asked for, else ``warp_images``."""
    if rotate > 0 or scale > 0 or elastic > 0 or max_shift != int(max_shift):
        return warp_images(x, max_shift, rotate, scale, generator, elastic)
    return shift_images(x, int(max_shift), generator)


@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Class predictions of ``model`` (in eval mode) on float images; ties go to the lowest class."""
    model.eval()
    out = []
    for lo in range(0, len(x), batch):
        scores = model(binarize_input(torch.from_numpy(x[lo:lo + batch]), input_thresholds(model)))
        out.append(scores.argmax(1).numpy())
    return np.concatenate(out)


def param_groups(model: torch.nn.Module, lr: float, fast: tuple[str, ...] = ("bias", "theta"),
                 factor: float = 10.0) -> list[dict]:
    """Optimizer groups: thresholds and biases (in units of integer sums) learn ``factor`` times faster."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    quick = [p for n, p in named if n.rsplit(".", 1)[-1] in fast]
    slow = [p for n, p in named if n.rsplit(".", 1)[-1] not in fast]
    return [{"params": slow, "lr": lr}, {"params": quick, "lr": factor * lr}]


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, x: torch.Tensor, batch: int = 500) -> None:
    """Replace the running statistics of every batch norm by exact averages over ``x`` (binarized
    images) under the current weights. Binary networks move fast; a running average lags behind
    and flips many step neurons at test time."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for lo in range(0, len(x), batch):
        model(x[lo:lo + batch])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    if hasattr(model, "constrain"):
        model.constrain()


def fit(model: torch.nn.Module, data: dict[str, np.ndarray], args: argparse.Namespace,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        optimizer: torch.optim.Optimizer, after_step: Callable[[], None] | None = None) -> dict[str, float]:
    """Train for ``args.epochs`` with a one-cycle learning-rate schedule, printing loss, train and
    test accuracy and time per epoch. Training images are distorted as the recipe's options
    (``add_distortion_args``) ask; recipes without them train on the images as given. With
    ``args.finetune`` > 0, that many epochs follow with every batch norm frozen
    (``freeze_batchnorm``) at a cosine learning rate from ``args.finetune_lr`` (default lr / 50).
    With no epochs of its own (``--epochs 0``, a network loaded with ``--init``) the model as
    given is a candidate too, as epoch 0.
    With ``args.val`` > 0 the last ``val`` images of a fixed shuffle of the training set are held
    out and the model ends in the state of the epoch with the best accuracy on them (ties: the
    later epoch). Returns the final test accuracy, the training time and the chosen epoch."""
    xtr, ytr = torch.from_numpy(data["xtr"]), torch.from_numpy(data["ytr"])
    offsets = boost_offsets(args, data["xtr"], data["ytr"])
    val = int(getattr(args, "val", 0) or 0)
    if val >= len(ytr):
        raise SystemExit(f"--val {val} would hold out all {len(ytr)} training images; give a smaller --val "
                         f"(or --val 0) with --train-limit {len(ytr)}")
    if val:
        kept, held_out = heldout_split(len(ytr), args.seed, val)
        xval, yval = data["xtr"][held_out], data["ytr"][held_out]
        xtr, ytr, offsets = xtr[kept], ytr[kept], offsets[kept]
    n = len(ytr)
    batches = math.ceil(n / args.batch_size)
    finetune = int(getattr(args, "finetune", 0) or 0)
    epochs = args.epochs + finetune
    if args.epochs:
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=args.epochs * batches,
            pct_start=0.15, anneal_strategy="cos", div_factor=10.0, final_div_factor=100.0, cycle_momentum=False)
    peaks = [(getattr(args, "finetune_lr", None) or g["lr"] / 50) for g in optimizer.param_groups]
    generator = torch.Generator().manual_seed(args.seed)
    distortion = {"max_shift": getattr(args, "shift", 0), "rotate": getattr(args, "rotate", 0.0),
                  "scale": getattr(args, "scale", 0.0), "elastic": getattr(args, "elastic", 0.0)}
    targets = soft_targets(args)
    thresholds = input_thresholds(model)
    start = time.perf_counter()
    test_acc, best = 0.0, (-1.0, 0, None)
    if val and not args.epochs:  # a loaded network (--init) competes as it is, as epoch 0
        val_acc = float((predict(model, xval) == yval).mean())
        best = (val_acc, 0, copy.deepcopy(model.state_dict()))
        print(f"epoch   0/{epochs} (as loaded)  val acc {100 * val_acc:.2f}%", flush=True)
    for epoch in range(1, epochs + 1):
        frozen = epoch > args.epochs
        if epoch == args.epochs + 1 and args.epochs:  # statistics over all training images, frozen from here
            # on (a network loaded with --init and no epochs of its own keeps its exported thresholds)
            recalibrate_batchnorm(model, binarize_input(xtr, thresholds))
        model.train()
        if frozen:
            freeze_batchnorm(model)
        order = torch.randperm(n, generator=generator)
        total_loss, correct = 0.0, 0
        for b, lo in enumerate(range(0, n, args.batch_size)):
            if frozen:  # cosine from the peak to 0 over the fine-tuning steps
                done = ((epoch - args.epochs - 1) * batches + b) / (finetune * batches)
                for group, peak in zip(optimizer.param_groups, peaks):
                    group["lr"] = peak * 0.5 * (1.0 + math.cos(math.pi * done))
            idx = order[lo:lo + args.batch_size]
            grey = augment_images(xtr[idx], generator=generator, **distortion)
            scores = model(binarize_input(grey, thresholds))
            loss = loss_fn(scores + offsets[idx], targets(grey, ytr[idx]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if not frozen:
                scheduler.step()
            if after_step is not None:
                after_step()
            total_loss += float(loss.detach()) * len(idx)
            correct += int((scores.argmax(1) == ytr[idx]).sum())
        if not frozen:
            recalibrate_batchnorm(model, binarize_input(xtr[order[:10000]], thresholds))
        test_acc = float((predict(model, data["xte"]) == data["yte"]).mean())
        line = (f"epoch {epoch:3d}/{epochs}{' (frozen norms)' if frozen else ''}  loss {total_loss / n:.4f}  "
                f"train acc {100 * correct / n:.2f}%  test acc {100 * test_acc:.2f}%")
        if val:
            val_acc = float((predict(model, xval) == yval).mean())
            line += f"  val acc {100 * val_acc:.2f}%"
            if val_acc >= best[0]:
                best = (val_acc, epoch, copy.deepcopy(model.state_dict()))
        print(f"{line}  [{time.perf_counter() - start:.0f} s]", flush=True)
    if val:
        model.load_state_dict(best[2])
        test_acc = float((predict(model, data["xte"]) == data["yte"]).mean())
        print(f"kept epoch {best[1]} (val acc {100 * best[0]:.2f}%): test acc {100 * test_acc:.2f}%", flush=True)
    return {"test_accuracy": test_acc, "train_seconds": time.perf_counter() - start,
            "epoch": best[1] if val else epochs}


def start_from(model: torch.nn.Module, path: str, data: dict[str, np.ndarray],
               load: Callable[[torch.nn.Module, dict[str, np.ndarray], torch.Tensor, torch.Tensor], None]) -> None:
    """``--init``: ``load(model, initializers, x, y)`` the network exported to ``path`` (on 10,000
    training images), then check that the model predicts what the file predicts (onnxruntime) on
    every test image."""
    if not Path(path).is_file():
        raise SystemExit(f"--init {path}: no such file; give an ONNX model exported by this recipe")
    exported = onnx.load(path)
    keep = np.random.default_rng(0).permutation(len(data["ytr"]))[:10000]
    load(model, onnx_initializers(exported), torch.from_numpy(data["xtr"][keep]), torch.from_numpy(data["ytr"][keep]))
    differing = int((predict(model, data["xte"]) != onnx_predict(exported, data["xte"])).sum())
    if differing:
        raise SystemExit(f"--init {path}: the loaded network differs from the file on {differing} test images")
    print(f"started from {path}: predicts what the file does on all {len(data['yte'])} test images", flush=True)


def exported_layer(arrays: dict[str, np.ndarray], name: str, shape: tuple[int, ...],
                   options: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer weights (of ``shape``) and firing thresholds (a neuron fires iff its sum exceeds
    -bias) of layer ``name`` in the initializers of an exported network (``--init``); a missing
    layer or another shape ends the run naming the layer and the recipe ``options`` to match."""
    weight, bias = arrays.get(f"{name}.weight"), arrays.get(f"{name}.bias")
    if weight is None or bias is None or weight.shape != shape:
        found = "no such layer" if weight is None else f"weight {weight.shape}"
        raise SystemExit(f"--init: layer {name} has {found}, this recipe's layer is {shape}; give the {options} "
                         f"the file was trained with")
    return torch.from_numpy(np.array(weight)), torch.from_numpy(-bias.astype(np.float64)).float()


INIT_MARGIN = 0.1  # latent distance from the rounding point of a weight loaded with --init


def loaded_connections(weight: torch.Tensor) -> torch.Tensor:
    """Latent connection probabilities for integer weights loaded with ``--init``: 1/2 +-
    ``INIT_MARGIN`` (connected or not), close enough to 1/2 that fine-tuning can flip them."""
    return 0.5 + INIT_MARGIN * torch.where(weight != 0, 1.0, -1.0)


def loaded_signs(per_type: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """Latent signs +-``INIT_MARGIN`` from the summed loaded weights of each (neuron, axon type);
    a type without any connection keeps the sign of ``current``."""
    return INIT_MARGIN * torch.where(per_type != 0, torch.sign(per_type), torch.sign(current))


def freeze_batchnorm(model: torch.nn.Module) -> None:
    """Put every batch norm of ``model`` in eval mode: the step neurons then fire at the fixed
    thresholds of the deployed network (running statistics and learned shift) while the shift and
    the weights keep training. Binary networks trained with batch statistics see a threshold that
    moves with every batch, and the chip's fixed one only at test time."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def boost_offsets(args: argparse.Namespace, x: np.ndarray, y: np.ndarray) -> torch.Tensor:
    """What the loss adds to the network's outputs for each training image ``x``: zeros, or with
    ``--boost FILE ...`` the sum of the files' outputs (class counts) on the undistorted image
    times ``--boost-weight``, computed once in onnxruntime. Training the sum makes the network the
    next member of that ensemble: images the ensemble already classifies with a wide margin give
    little gradient, its errors and near misses the most."""
    if getattr(args, "boost", None) is None:
        return torch.zeros(len(x), 10)
    start, outputs = time.perf_counter(), np.zeros((len(x), 10), np.float32)
    for path in args.boost:
        scores = onnx_outputs(path, x, threads=max(1, getattr(args, "threads", 1)))
        if scores.shape != outputs.shape:
            raise SystemExit(f"--boost {path}: outputs of shape {scores.shape[1:]}, not the 10 class scores")
        outputs += scores
    print(f"boosting {len(args.boost)} networks: together {100 * float((outputs.argmax(1) == y).mean()):.2f}% on the "
          f"{len(x)} training images [{time.perf_counter() - start:.0f} s]", flush=True)
    return torch.from_numpy(args.boost_weight * outputs.astype(np.float32))


def soft_targets(args: argparse.Namespace) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training targets for a batch (spike images, labels): the labels themselves, or with
    ``--teacher`` class probabilities (1 - a) onehot(label) + a softmax(teacher logits / T)
    (knowledge distillation, Hinton et al. 2015), which ``cross_entropy`` takes as targets."""
    if getattr(args, "teacher", None) is None:
        return lambda x, y: y
    session = onnx_session(args.teacher, threads=max(1, getattr(args, "threads", 1)))
    name = session.get_inputs()[0].name
    alpha, temperature = args.distill, args.teacher_temperature

    def targets(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = torch.from_numpy(session.run(None, {name: x.numpy().astype(np.float32)})[0])
        onehot = torch.nn.functional.one_hot(y, logits.shape[1]).float()
        return (1 - alpha) * onehot + alpha * torch.softmax(logits / temperature, dim=1)

    return targets


def add_vote_readout(module: torch.nn.Module, classes: np.ndarray) -> None:
    """Give a conv network of voting neurons its fixed 0/1 class readout (buffer ``readout``,
    neurons x 10, neuron i counts for ``classes[i]``), ``module.classes``, and the learned scale
    ``log_scale`` of the spike counts in the loss."""
    module.classes = classes
    readout = np.zeros((len(classes), 10), np.float32)
    readout[np.arange(len(classes)), classes] = 1.0
    module.register_buffer("readout", torch.from_numpy(readout))
    module.log_scale = torch.nn.Parameter(torch.tensor(np.log(0.1), dtype=torch.float32))


def train_vote_network(model: torch.nn.Module, args: argparse.Namespace, data: dict[str, np.ndarray],
                       label: str, **meta: object) -> None:
    """The CNN recipes' training and export: Adam, cross-entropy on the scaled class counts
    (``add_vote_readout``), ``fit``, then the checked ONNX export with ``meta`` recorded. Refuses
    ``--boost``: the learned scale would multiply the ensemble's counts too, and grow until they
    decide every image (two boosted CNNs' test accuracy fell to 20% and 73% within 6 epochs)."""
    if getattr(args, "boost", None):
        raise SystemExit("--boost: this recipe learns the scale of the class counts in its loss, and with an "
                         "ensemble's counts added the scale grows until they decide every image and the network "
                         "stops learning; boost a patch network instead (train_esser2015_large.py, fixed "
                         "--temperature)")
    print("layers (cin, cout, k, stride, pad, groups):", model.specs, flush=True)
    optimizer = torch.optim.Adam(param_groups(model, args.lr, factor=1.0))

    def loss(counts: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(model.log_scale.exp() * counts, y)

    result = fit(model, data, args, loss, optimizer, after_step=model.constrain)
    torch_pred = predict(model, data["xte"])
    metadata = training_metadata(args, result, layers=model.specs, **meta)
    save_checked(model.to_onnx(metadata, args.name), args.out, data, torch_pred, label)
    print(trained_line(args, result))


# ---------------------------------------------------------------- straight-through estimators

class StepSTE(torch.autograd.Function):
    """Forward: 1 where z > 0 else 0. Backward: the gradient passes where |z| < 1 (hard tanh)."""

    @staticmethod
    def forward(ctx, z):  # type: ignore[override]
        ctx.save_for_backward(z)
        return (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (z,) = ctx.saved_tensors
        return grad * (z.abs() < 1).to(grad.dtype)


class RoundSTE(torch.autograd.Function):
    """Forward: a function of the latent value (given by ``kind``). Backward: identity."""

    @staticmethod
    def forward(ctx, w, kind: str):  # type: ignore[override]
        if kind == "binary":  # {0, 1}: connected when the latent probability exceeds 1/2
            return (w > 0.5).to(w.dtype)
        if kind == "sign":  # {-1, +1}
            return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
        if kind == "ternary":  # {-1, 0, +1}: zero inside the dead zone |w| <= 1/2
            return (torch.sign(w) * (w.abs() > 0.5)).to(w.dtype)
        if kind == "integer":  # the nearest integer
            return torch.round(w)
        raise ValueError(kind)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad, None


def step(z: torch.Tensor) -> torch.Tensor:
    """Binary step neuron with a straight-through gradient."""
    return StepSTE.apply(z)


def quantize(w: torch.Tensor, kind: str) -> torch.Tensor:
    """``binary``, ``sign``, ``ternary`` or ``integer`` values of a latent weight with a straight-through gradient."""
    return RoundSTE.apply(w, kind)


OUTPUT_SHIFT = -1.28  # initial BN shift of output (voting) neurons: P(z > 0) ~ 10% at the start


class ThresholdNorm(torch.nn.Module):
    """Batch norm with its scale fixed at 1 in front of a step neuron: in eval the neuron fires
    iff its integer sum s exceeds the threshold c = running_mean - shift * running_std (see
    ``threshold``). ``constrain`` keeps c >= ``floor`` (default 1/2: the neuron needs an integer sum
    >= 1 to fire, so it is silent without input) by lowering the shift. Features on dimension 1.
    ``shift`` is the initial BN shift: -1.28 makes a neuron fire for ~10% of the inputs at the
    start (output neurons voting for one of 10 classes learn much faster from there)."""

    def __init__(self, features: int, floor: float | None = 0.5, spatial: bool = False, shift: float = 0.0) -> None:
        super().__init__()
        self.bn = (torch.nn.BatchNorm2d if spatial else torch.nn.BatchNorm1d)(features)
        self.bn.weight.requires_grad_(False)
        with torch.no_grad():
            self.bn.bias.fill_(shift)
        self.floor = floor

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """The batch-normalised sum; its sign decides firing."""
        return self.bn(s)

    def threshold(self) -> np.ndarray:
        """c per neuron (float64): the neuron fires iff s > c."""
        return bn_threshold(self.bn)

    @torch.no_grad()
    def load(self, sums: torch.Tensor, threshold: torch.Tensor) -> None:
        """Statistics measured on ``sums`` (integer sums, features on dimension 1) and the shift
        that makes the eval-mode threshold exactly ``threshold`` (per feature): how a network
        loaded from its export (``--init``) keeps its deployed thresholds."""
        dims = [d for d in range(sums.dim()) if d != 1]
        mean, var = sums.mean(dims), sums.var(dims, unbiased=False).clamp(min=1.0)
        self.bn.running_mean.copy_(mean)
        self.bn.running_var.copy_(var)
        self.bn.bias.copy_((mean - threshold) / torch.sqrt(var + self.bn.eps))

    def constrain(self) -> None:
        """Lower the shift where the threshold would fall below the floor."""
        if self.floor is None:
            return
        with torch.no_grad():
            std = torch.sqrt(self.bn.running_var + self.bn.eps)
            self.bn.bias.copy_(torch.minimum(self.bn.bias, (self.bn.running_mean - self.floor) / std))


def bn_threshold(bn: torch.nn.BatchNorm1d | torch.nn.BatchNorm2d) -> np.ndarray:
    """The integer-sum threshold of ``step(BN(s))`` in eval mode: the neuron fires iff s > c.

    Requires a positive BN scale (the recipes fix it at 1)."""
    var = bn.running_var.detach().double().numpy()
    mean = bn.running_mean.detach().double().numpy()
    scale = bn.weight.detach().double().numpy() if bn.affine else np.ones_like(mean)
    shift = bn.bias.detach().double().numpy() if bn.affine else np.zeros_like(mean)
    if np.any(scale <= 0):
        raise ValueError("BN scale must be positive to fold into a threshold")
    return mean - shift * np.sqrt(var + bn.eps) / scale


def integer_bias(threshold: np.ndarray) -> np.ndarray:
    """For integer sums s, ``s > c`` equals ``s + b > 0`` with b = -floor(c) - 0.5 (a half-integer,
    so no sum ever sits exactly on the decision boundary). The integer firing threshold is -b + 0.5."""
    return (-np.floor(threshold) - 0.5).astype(np.float32)


# ---------------------------------------------------------------- ONNX building

class GraphBuilder:
    """Builds a chip-ready ONNX graph with onnx.helper from numpy weights."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def const(self, name: str, value: np.ndarray | float) -> str:
        """Add an initializer (float32 unless given an integer array) and return its name."""
        array = np.asarray(value)
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        """Add one node with a single output; return the output name."""
        self.count += 1
        out = name or f"{op_type.lower()}_{self.count}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{op_type}_{self.count}", **attrs))
        return out

    def encode_input(self, thresholds: tuple[float, ...] = (0.5,)) -> str:
        """x -> Greater(x, 0.5) -> Cast(FLOAT) named ``x_spikes``: the threshold input encoding. With
        several thresholds (a thermometer code): a 1x1 Conv with one output channel per threshold
        (weight 1, bias -t), then a step, named ``x_levels`` (channels in ``binarize_input``'s order)."""
        if len(thresholds) > 1:
            weight = np.ones((len(thresholds), 1, 1, 1), np.float32)
            bias = -np.asarray(thresholds, np.float32)
            return self.step(self.conv("x", weight, bias, "input_levels"), name="x_levels")
        half = self.const("input_threshold", np.array(0.5, np.float32))
        spikes = self.op("Greater", ["x", half])
        return self.op("Cast", [spikes], name="x_spikes", to=TensorProto.FLOAT)

    def step(self, h: str, name: str) -> str:
        """Greater(h, 0) -> Cast(FLOAT): a step neuron layer."""
        if "step_zero" not in {t.name for t in self.initializers}:
            self.const("step_zero", np.array(0.0, np.float32))
        fired = self.op("Greater", [h, "step_zero"])
        return self.op("Cast", [fired], name=name, to=TensorProto.FLOAT)

    def flatten(self, h: str) -> str:
        """Flatten to (batch, features)."""
        return self.op("Flatten", [h], axis=1)

    def gemm(self, h: str, weight: np.ndarray, bias: np.ndarray | None, prefix: str) -> str:
        """h @ weight (+ bias); weight is (inputs, outputs)."""
        inputs = [h, self.const(f"{prefix}.weight", weight)]
        if bias is not None:
            inputs.append(self.const(f"{prefix}.bias", bias))
        return self.op("Gemm", inputs, name=f"{prefix}.out")

    def conv(self, h: str, weight: np.ndarray, bias: np.ndarray | None, prefix: str, *, stride: int = 1,
             pad: int = 0, group: int = 1) -> str:
        """A 2-D convolution, weight (out, in/group, k, k)."""
        inputs = [h, self.const(f"{prefix}.weight", weight)]
        if bias is not None:
            inputs.append(self.const(f"{prefix}.bias", bias))
        k = weight.shape[-1]
        return self.op("Conv", inputs, name=f"{prefix}.out", kernel_shape=[k, k], strides=[stride, stride],
                       pads=[pad] * 4, group=group)

    def readout(self, spikes: str, classes: np.ndarray, num_classes: int = 10) -> str:
        """The class readout: spikes (batch, n) @ a fixed 0/1 matrix (n, classes) -> counts ``y``."""
        matrix = np.zeros((len(classes), num_classes), np.float32)
        matrix[np.arange(len(classes)), classes] = 1.0
        return self.op("MatMul", [spikes, self.const("readout.weight", matrix)], name="y")

    def model(self, output: str, output_shape: list, metadata: dict[str, str]) -> onnx.ModelProto:
        """The checked ModelProto with input ``x`` (batch, 1, 28, 28) and the given output."""
        graph = helper.make_graph(
            self.nodes, self.name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 28, 28])],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch"] + output_shape)],
            self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="crossmap-models")
        model.ir_version = IR_VERSION
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model, full_check=True)
        return model


def onnx_session(model: onnx.ModelProto | str, threads: int = 0):
    """An onnxruntime CPU session of an ONNX model (or file) on ``threads`` threads, at most 2
    (0: onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = options.inter_op_num_threads = max(1, min(threads, 2))
    source = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnx_outputs(model: onnx.ModelProto | str, x: np.ndarray, batch: int = 1000, threads: int = 0) -> np.ndarray:
    """The first output of an ONNX model (or file) on the images ``x``, in onnxruntime (``threads``
    0: its default)."""
    session = onnx_session(model, threads)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[lo:lo + batch]})[0] for lo in range(0, len(x), batch)])


def onnx_predict(model: onnx.ModelProto, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Class predictions of an ONNX model with onnxruntime (argmax, ties to the lowest class)."""
    return onnx_outputs(model, x, batch).argmax(1)


def onnx_initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The initializers of an ONNX model by name, int8-stored weights (``NAME_int8``) back as
    float32 under ``NAME``."""
    arrays = {}
    for tensor in model.graph.initializer:
        values = numpy_helper.to_array(tensor)
        if tensor.name.endswith("_int8") and values.dtype == np.int8:
            arrays[tensor.name[:-len("_int8")]] = values.astype(np.float32)
        else:
            arrays[tensor.name] = values
    return arrays


INT8_MIN_SIZE = 1 << 16  # weight tensors at least this large are stored as int8 when their values allow


def store_integer_weights_as_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every large initializer whose values are integers in -128..127 stored as int8
    (``NAME_int8``) and cast back to float by a ``Cast`` node (output ``NAME``) placed in front of
    its first reader: the same network in a quarter of the bytes (the wide patch network's dense
    Gemm weights are 64 MiB as float32)."""
    graph = model.graph
    casts: dict[str, onnx.NodeProto] = {}
    for tensor in list(graph.initializer):
        values = numpy_helper.to_array(tensor)
        if (values.size < INT8_MIN_SIZE or values.dtype != np.float32 or not np.array_equal(values, np.round(values))
                or np.abs(values).max() > 127):
            continue
        graph.initializer.remove(tensor)
        graph.initializer.append(numpy_helper.from_array(values.astype(np.int8), tensor.name + "_int8"))
        casts[tensor.name] = helper.make_node("Cast", [tensor.name + "_int8"], [tensor.name],
                                              name=tensor.name + "_cast", to=TensorProto.FLOAT)
    nodes = []
    for node in graph.node:
        nodes.extend(casts.pop(name) for name in node.input if name in casts)
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model, full_check=True)
    return model


def save_checked(model: onnx.ModelProto, path: str | Path, data: dict[str, np.ndarray],
                 reference: np.ndarray | None, label: str, reference_name: str = "torch") -> float:
    """Run ``model`` with onnxruntime on the 10,000 test images, compare its predictions with
    ``reference`` (by default the torch model's), save it, and return its test accuracy. Large
    integer weights are stored as int8 (``store_integer_weights_as_int8``) before the check."""
    model = store_integer_weights_as_int8(model)
    pred = onnx_predict(model, data["xte"])
    acc = float((pred == data["yte"]).mean())
    line = f"{label}: onnxruntime test accuracy {100 * acc:.2f}% on {len(pred)} images"
    if reference is not None:
        line += f"; predictions differing from {reference_name}: {int((pred != reference).sum())}"
    print(line, flush=True)
    entry = model.metadata_props.add()
    entry.key, entry.value = "crossmap.test_accuracy", f"{acc:.4f}"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    print(f"wrote {path} ({Path(path).stat().st_size / 1024:.0f} KiB)", flush=True)
    return acc


def trained_line(args: argparse.Namespace, result: dict[str, float]) -> str:
    """The recipes' last line: epochs (and frozen-norm epochs) and training time."""
    finetuned = f" + {args.finetune} with frozen norms" if getattr(args, "finetune", 0) else ""
    return f"trained {args.epochs} epochs{finetuned} in {result['train_seconds']:.0f} s"


def training_metadata(args: argparse.Namespace, result: dict[str, float], **extra: object) -> dict[str, str]:
    """ONNX metadata recording how a model was trained."""
    meta = {"crossmap.model": args.name, "crossmap.command": args.command.strip(),
            "crossmap.epochs": str(args.epochs), "crossmap.train_seconds": f"{result['train_seconds']:.0f}",
            "crossmap.torch_test_accuracy": f"{result['test_accuracy']:.4f}",
            "crossmap.kept_epoch": str(result.get("epoch", args.epochs))}
    if getattr(args, "finetune", 0):
        meta["crossmap.finetune_epochs"] = str(args.finetune)
    meta.update({f"crossmap.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return meta


def train_float(name: str, make_model: Callable[[argparse.Namespace], torch.nn.Module],
                extra: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """The recipe of the float models (mlp, lenet): Adam with cross-entropy, then a checked ONNX
    export; ``make_model(args)`` builds the torch module (after the seed is set) with ``to_onnx``;
    ``extra`` adds the recipe's own options."""
    args = parse_args(name, epochs=10, lr=0.003, extra=extra)
    setup(args)
    data = load_data(args)
    model = make_model(args)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-5)
    result = fit(model, data, args, torch.nn.functional.cross_entropy, optimizer)
    meta = training_metadata(args, result, weights="float")
    save_checked(model.to_onnx(meta, args.name), args.out, data, predict(model, data["xte"]), "float")
    print(trained_line(args, result))

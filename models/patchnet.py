"""Patch networks in the style of Esser et al. 2015: layers of step neurons grouped in cores; the
neurons of a core read the same <= 256 input lines (its axons), through binary connections, with
a sign per (neuron, axon type) as on a TrueNorth core.

Weight of line i into neuron j = connection[i, j] * sign[j, type(i)], connection in {0, 1} on the
chip and, in probabilistic training, a probability in [0, 1].

Axon types: an image pixel (r, c) has type 2 * (r % 2) + (c % 2); a hidden line i has type i % 4.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

from common import (OUTPUT_SHIFT, GraphBuilder, ThresholdNorm, exported_layer, integer_bias, loaded_connections,
                    loaded_signs, quantize, step)

TYPES = 4


def pixel_types() -> np.ndarray:
    """Axon type of each of the 784 pixels (row-major): 2 * (row % 2) + (col % 2)."""
    r, c = np.divmod(np.arange(784), 28)
    return (2 * (r % 2) + (c % 2)).astype(np.int64)


def line_types(n: int) -> np.ndarray:
    """Axon type of each of ``n`` hidden lines: i % 4."""
    return (np.arange(n) % TYPES).astype(np.int64)


def patch_index(offsets: list[tuple[int, int]], size: int = 16) -> np.ndarray:
    """(cores, size * size) pixel numbers read by the core over the size x size patch at each offset."""
    rows = []
    for r, c in offsets:
        rr, cc = np.meshgrid(np.arange(r, r + size), np.arange(c, c + size), indexing="ij")
        rows.append((rr * 28 + cc).ravel())
    return np.array(rows, np.int64)


def block_index(groups: list[list[int]], block: int) -> np.ndarray:
    """(cores, len(groups[0]) * block) line numbers: core g reads the blocks of ``block``
    consecutive lines listed in groups[g]."""
    return np.array([np.concatenate([np.arange(b * block, (b + 1) * block) for b in blocks]) for blocks in groups],
                    np.int64)


def class_of_outputs(cores: int, per_class: int, classes: int = 10) -> np.ndarray:
    """Class of each output neuron: core-major, then class-major blocks of ``per_class`` neurons."""
    return np.tile(np.repeat(np.arange(classes), per_class), cores)


class CoreLayer(nn.Module):
    """Cores of step neurons with binary (or probabilistic) connections and a sign per axon type.

    ``index`` (cores, fan_in) lists the input lines of each core; each core has ``neurons``
    neurons, so the layer's output has cores * neurons lines (core-major).

    mode ``prob``: Esser 2015 training; connections are Bernoulli(p), inputs are spike
    probabilities, and the output is P(sum + bias > 0) under a Gaussian approximation.
    mode ``binary``: connections p > 1/2 (straight-through), step neurons on a batch-normalised
    sum (straight-through), the batch norm folded into an integer threshold at export.
    ``floor``: the real threshold (-bias) is kept >= floor, e.g. 1/2 so that every neuron needs
    an integer sum >= 1 to fire; None lets neurons fire without input (a positive leak on chip).
    """

    def __init__(self, index: np.ndarray, neurons: int, line_type: np.ndarray, mode: str,
                 floor: float | None = 0.5, shift: float = 0.0) -> None:
        super().__init__()
        if mode not in ("prob", "binary"):
            raise ValueError(mode)
        cores, fan_in = index.shape
        self.mode, self.neurons, self.n_in, self.floor = mode, neurons, len(line_type), floor
        self.register_buffer("index", torch.from_numpy(index))
        self.register_buffer("types", torch.from_numpy(line_type[index]))  # (cores, fan_in)
        self.p = nn.Parameter(torch.rand(cores, fan_in, neurons))
        sign = torch.ones(cores, TYPES, neurons)
        sign[torch.rand(cores, TYPES, neurons).argsort(1) >= TYPES // 2] = -1.0  # two + and two - types
        self.sign = nn.Parameter(sign * 0.1)
        if mode == "prob":
            self.bias = nn.Parameter(torch.full((cores * neurons,), -0.5))
        else:
            self.threshold = ThresholdNorm(cores * neurons, floor, shift=shift)
        self.eval_mode = "round"

    def signs(self) -> torch.Tensor:
        """(cores, fan_in, neurons) sign of each possible connection, from its axon type."""
        s = quantize(self.sign, "sign")
        return torch.gather(s, 1, self.types[:, :, None].expand(-1, -1, self.neurons))

    def _apply(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Sums (batch, cores * neurons) of inputs (batch, n_in) through core weights."""
        return torch.einsum("bcf,cfn->bcn", x[:, self.index], weight).reshape(len(x), -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spike probabilities (prob training) or spikes."""
        p, s = self.p.clamp(0.0, 1.0), self.signs()
        if self.mode == "binary":
            return step(self.threshold(self._apply(x, quantize(p, "binary") * s)))
        if self.training:
            mean = self._apply(x, p * s) + self.bias
            var = (self._apply(x, p) - self._apply(x * x, p * p)).clamp_min(0.0)
            return torch.special.ndtr(mean / torch.sqrt(var + 0.25))
        if self.eval_mode == "expected":
            weight = p * s
        elif self.eval_mode == "sample":
            weight = torch.bernoulli(p) * s
        else:
            weight = (p > 0.5).float() * s
        return (self._apply(x, weight) + self.bias > 0).float()

    def constrain(self) -> None:
        """Keep parameters in range after an optimizer step."""
        with torch.no_grad():
            self.p.clamp_(0.0, 1.0)
            self.sign.clamp_(-1.0, 1.0)
            if self.mode == "binary":
                self.threshold.constrain()
            elif self.floor is not None:
                self.bias.clamp_(max=-self.floor)

    def dense(self, weight: torch.Tensor) -> np.ndarray:
        """The (n_in, cores * neurons) matrix of per-core weights (zeros where not connected)."""
        cores, fan_in, neurons = weight.shape
        out = np.zeros((self.n_in, cores * neurons), np.float32)
        for c in range(cores):
            out[self.index[c].numpy(), c * neurons:(c + 1) * neurons] = weight[c].numpy()
        return out

    def export(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(weight (n_in, n_out), bias) for ONNX. ``binary``: weights in {-1, 0, 1} and a
        half-integer bias (the integer threshold is 1/2 - bias); ``expected`` (prob mode only):
        weights p * sign and the trained bias."""
        with torch.no_grad():
            p, s = self.p.clamp(0.0, 1.0), self.signs()
            if kind == "expected":
                return self.dense(p * s), self.bias.numpy().astype(np.float32)
            threshold = -self.bias.double().numpy() if self.mode == "prob" else self.threshold.threshold()
            return self.dense((p > 0.5).float() * s), integer_bias(threshold)


class PatchNet(nn.Module):
    """A stack of CoreLayers followed by the fixed class readout (spike counts per class)."""

    def __init__(self, layers: list[tuple[np.ndarray, int]], classes: np.ndarray, mode: str,
                 floor: float | None = 0.5) -> None:
        super().__init__()
        modules, line_type = [], pixel_types()
        for k, (index, neurons) in enumerate(layers):
            shift = OUTPUT_SHIFT if k == len(layers) - 1 else 0.0
            modules.append(CoreLayer(index, neurons, line_type, mode, floor, shift))
            line_type = line_types(index.shape[0] * neurons)
        self.layers = nn.ModuleList(modules)
        readout = np.zeros((len(classes), 10), np.float32)
        readout[np.arange(len(classes)), classes] = 1.0
        self.register_buffer("readout", torch.from_numpy(readout))
        self.classes = classes

    def neuron_count(self) -> int:
        """Number of step neurons (hidden and output)."""
        return sum(layer.index.shape[0] * layer.neurons for layer in self.layers)

    def set_eval_mode(self, mode: str) -> None:
        """How a prob-mode network runs in eval: ``round`` (p > 1/2), ``expected``, ``sample``."""
        for layer in self.layers:
            layer.eval_mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spike counts (or expected counts in prob training) per class."""
        h = x.reshape(len(x), -1)
        for layer in self.layers:
            h = layer(h)
        return h @ self.readout

    def constrain(self) -> None:
        """Project all parameters back into range."""
        for layer in self.layers:
            layer.constrain()

    def to_onnx(self, kind: str, metadata: dict[str, str], name: str):
        """The chip-ready ONNX graph: threshold encoding, Gemm (zeros outside a neuron's core
        inputs) + step layers, class readout."""
        builder = GraphBuilder(name)
        h = builder.flatten(builder.encode_input())
        types, line_type = {}, pixel_types()
        for k, layer in enumerate(self.layers, start=1):
            weight, bias = layer.export(kind)
            h = builder.step(builder.gemm(h, weight, bias, f"l{k}"), name=f"l{k}.spikes")
            types[f"l{k}.weight"] = "".join(str(int(t)) for t in line_type)
            line_type = line_types(weight.shape[1])
        counts = builder.readout(h, self.classes)
        meta = dict(metadata)
        meta["crossmap.axon_types"] = json.dumps(types)
        meta["crossmap.weights"] = kind
        return builder.model(counts, [10], meta)


@torch.no_grad()
def load_exported(model: PatchNet, arrays: dict[str, np.ndarray], x: torch.Tensor, y: torch.Tensor) -> None:
    """Start a binary-mode ``model`` from the initializers ``arrays`` of a network of the same
    layout exported by its recipe (``--init``): latent connections and signs near their rounding
    points (``loaded_connections``, ``loaded_signs``), so that fine-tuning can flip them; each
    threshold norm's statistics measured on the grey images ``x`` with the shift that keeps the
    file's threshold exactly. ``y`` is unused (the loss scale is a fixed option here)."""
    del y
    h = (x.reshape(len(x), -1) > 0.5).float()
    for k, layer in enumerate(model.layers, start=1):
        if layer.mode != "binary":
            raise SystemExit("--init loads binary networks only (--mode binary)")
        cores, fan_in, neurons = layer.p.shape
        weight, threshold = exported_layer(arrays, f"l{k}", (layer.n_in, cores * neurons), "--width and --hidden")
        dense = weight.reshape(layer.n_in, cores, neurons).permute(1, 0, 2)
        w = torch.gather(dense, 1, layer.index[:, :, None].expand(-1, -1, neurons))  # (cores, fan_in, neurons)
        if int((dense != 0).sum()) != int((w != 0).sum()):
            raise SystemExit(f"--init: layer l{k} connects lines outside its cores' inputs; not this recipe's layout")
        layer.p.copy_(loaded_connections(w))
        per_type = torch.stack([(w * (layer.types == t)[:, :, None]).sum(1) for t in range(TYPES)], dim=1)
        layer.sign.copy_(loaded_signs(per_type, layer.sign))
        s = layer._apply(h, quantize(layer.p, "binary") * layer.signs())
        layer.threshold.load(s, threshold)
        h = (s > threshold).float()

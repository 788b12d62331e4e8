"""Small float networks built inline from crossmap.ir dataclasses for the binarization tests.

Scales and biases are dyadic (multiples of powers of two) so that float64 sums are exact and the
float network decides every threshold comparison exactly as integer arithmetic does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

from crossmap.chip import ChipSpec
from crossmap.ir import INPUT, Network, Population, Projection
from crossmap.pipeline import CompileState


def step_pop(name: str, n: int, bias: np.ndarray | None, threshold: float = 0.0, inclusive: bool = False,
             reduce: str = "sum") -> Population:
    """A population of step neurons."""
    return Population(name, (n,), "step", {"threshold": threshold, "inclusive": inclusive},
                      bias=None if bias is None else np.asarray(bias, np.float64), reduce=reduce)


def readout_matrix(n: int, classes: int) -> sp.csr_matrix:
    """(classes, n) 0/1 matrix: neuron i votes for class i % classes."""
    r = np.zeros((classes, n))
    r[np.arange(n) % classes, np.arange(n)] = 1.0
    return sp.csr_matrix(r)


def step_mlp(sizes: Sequence[int], seed: int = 0, levels: Sequence[int] = (-1, 0, 1), classes: int | None = None,
             per_neuron_scale: bool = True, bias_range: int = 3) -> Network:
    """A step MLP: weights scale_j * levels, dyadic biases (some neurons fire with zero input).
    With ``classes`` the last layer is followed by a 0/1 readout into that many classes."""
    rng = np.random.default_rng(seed)
    pops = [Population(INPUT, (sizes[0],))]
    projs = []
    prev = INPUT
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        k = rng.choice(np.asarray(levels, np.float64), size=(n_out, n_in))
        scale = 2.0 ** rng.integers(-3, 3, size=(n_out, 1)) if per_neuron_scale else np.full((n_out, 1), 0.25)
        bias = (rng.integers(-bias_range, bias_range + 1, n_out) + rng.choice([0.0, 0.5], n_out)) * scale[:, 0]
        name = f"h{i}"
        pops.append(step_pop(name, n_out, bias))
        projs.append(Projection(prev, name, sp.csr_matrix(k * scale)))
        prev = name
    if classes is not None:
        pops.append(Population("y", (classes,)))
        projs.append(Projection(prev, "y", readout_matrix(sizes[-1], classes)))
        prev = "y"
    return Network(pops, projs, prev)


def with_input_threshold(net: Network, threshold: float = 0.5) -> Network:
    """``net`` with a Greater(x, threshold) step population between the input and its first layer."""
    n = net.input.size
    enc = step_pop("x_spikes", n, np.zeros(n), threshold=threshold)
    pops = [net.populations[0], enc] + net.populations[1:]
    projs = [Projection(INPUT, "x_spikes", sp.identity(n, format="csr"))]
    for p in net.projections:
        projs.append(Projection("x_spikes" if p.source == INPUT else p.source, p.target, p.weight))
    return Network(pops, projs, net.output)


def state_for(net: Network, chip: ChipSpec | None = None, seed: int = 0,
              calibration: np.ndarray | None = None) -> CompileState:
    """A compile state holding ``net``."""
    return CompileState(chip=chip or ChipSpec(), seed=seed, network=net, calibration=calibration)


def binary_inputs(n: int, channels: int, seed: int = 0, p: float = 0.5) -> np.ndarray:
    """(n, channels) float 0/1 inputs."""
    return (np.random.default_rng(seed).random((n, channels)) < p).astype(np.float64)

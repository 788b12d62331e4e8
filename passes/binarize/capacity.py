"""Whether a network can fit the chip, decided from the binarization plan before any heavy work.

``check_plan_capacity`` runs right after import: it plans the network as the chosen binarize pass
will (``plan_network``), counts for every layer the fewest chip neurons that pass can make of it,
and the widest fan-in a neuron of it must read, and raises ``ResourceError`` when the neurons need
more cores than the board has (unless the board may grow) or a neuron reads more inputs than a
core has axons (for the exact methods, which cannot prune or split fan-in). The counts are lower
bounds, so a network that passes the check may still fail later, never the reverse:

- ``deterministic``, ``lsq``, ``ttfs``: one chip neuron per layer neuron;
- ``stochastic``: one per neuron and sampled copy (``ensemble``);
- ``rate``: a neuron reading more lines (inputs x ``bits``) than a core has axons is cut into k >=
  ceil(lines / axons) chunks, each at least one partial neuron, plus the merge neuron;
  output neurons have ``output_copies`` copies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from crossmap.chip import ChipSpec, smallest_board
from crossmap.errors import CrossmapError, ResourceError
from crossmap.ir import Network

EXACT_METHODS = ("deterministic", "stochastic")  # fan-in must fit a core as it is


@dataclass
class LayerNeed:
    """The least a layer needs on the chip under one binarization method."""

    name: str
    neurons: int  # float neurons of the layer
    chip_neurons: int  # lower bound of the chip neurons made of it
    fan_in: int  # the most inputs one neuron reads
    chunks: int = 1  # partial sums per neuron (rate), 1 when it fits a core


def row_fan_in(blocks: list[sp.spmatrix], size: int) -> np.ndarray:
    """Inputs (nonzero weights) each of ``size`` neurons reads over its input blocks."""
    total = np.zeros(size, np.int64)
    for block in blocks:
        csr = sp.csr_matrix(block)
        if csr.nnz and not np.all(csr.data != 0):
            csr = csr.copy()
            csr.eliminate_zeros()
        total += np.diff(csr.indptr)
    return total


def layer_needs(network: Network, method: str, chip: ChipSpec, *, ensemble: int = 1, bits: int = 4,
                output_copies: int = 8) -> list[LayerNeed]:
    """Per planned layer, the fewest chip neurons ``method`` makes of it and its widest fan-in
    (raises the plan's own ``BinarizeError`` when the network does not plan for that method)."""
    from crossmap.passes.binarize.analysis import plan_network

    if method == "rate":
        from crossmap.passes.binarize.maxpool import expand_max_pools

        network = expand_max_pools(network)
    plan = plan_network(network, allow_logits=method in ("lsq", "rate", "ttfs"), method=method)
    needs = []
    for layer in plan.layers:
        n = layer.size
        fan_in = int(row_fan_in(layer.blocks, n).max(initial=0))
        chunks = 1
        output = bool((layer.output_class >= 0).any())
        if method == "stochastic":
            chip_neurons = n * max(1, ensemble)
        elif method == "rate":
            chunks = max(1, math.ceil(fan_in * bits / chip.axons_per_core))
            copies = output_copies if output else 1
            chip_neurons = n * copies + (n * chunks if chunks > 1 else 0)
        else:
            chip_neurons = n
        needs.append(LayerNeed(layer.name, n, chip_neurons, fan_in, chunks))
    return needs


def check_plan_capacity(network: Network, method: str, chip: ChipSpec, *, grow_board: bool = False,
                        ensemble: int = 1, bits: int = 4, output_copies: int = 8) -> list[LayerNeed]:
    """Raise ``ResourceError`` when ``network`` binarized by ``method`` cannot fit ``chip`` (see the
    module docstring): it names the layers, the numbers and the remedies. Returns the layer needs.
    A network the method cannot plan passes silently: the binarize pass reports that itself."""
    try:
        needs = layer_needs(network, method, chip, ensemble=ensemble, bits=bits, output_copies=output_copies)
    except CrossmapError:
        return []
    A, N = chip.axons_per_core, chip.neurons_per_core
    if method in EXACT_METHODS:
        wide = [need for need in needs if need.fan_in > A]
        if wide:
            worst = max(wide, key=lambda need: need.fan_in)
            raise ResourceError(
                f"layer {worst.name!r}: a neuron reads {worst.fan_in} inputs (fan-in) and a core has {A} axons "
                f"(axons_per_core); binarize_{method} maps every input to its own axon, so "
                f"{', '.join(repr(need.name) for need in wide)} cannot map exactly. Remedies: make the layer "
                f"grouped or block-sparse so each neuron reads at most {A} inputs, or binarize with --binarize "
                f"lsq (prunes fan-in) or --binarize rate (splits it into partial sums)")
    total = sum(need.chip_neurons for need in needs)
    cores = math.ceil(total / N)
    if grow_board or cores <= chip.max_cores:
        return needs
    bx, by = smallest_board(chip, cores)
    widest = sorted(needs, key=lambda need: -need.chip_neurons)[:3]
    parts = []
    for need in widest:
        how = f"{need.neurons:,} neurons"
        if need.chunks > 1:
            how += (f" reading {need.fan_in:,} inputs x {bits} lines each, cut into {need.chunks} partial sums "
                    f"of at most {A} lines")
        parts.append(f"{need.name!r}: {how} -> {need.chip_neurons:,} chip neurons, at least "
                     f"{math.ceil(need.chip_neurons / N):,} cores")
    narrower = (f"narrower layers (fan-in under {A // bits} inputs needs no partial sums)" if method == "rate"
                else "narrower layers")
    raise ResourceError(
        f"binarize_{method} makes at least {total:,} chip neurons, so the program needs at least {cores:,} cores "
        f"({N} neurons per core); the board of chip spec {chip.name!r} ({chip.board_x} x {chip.board_y} chips of "
        f"{chip.mesh_x} x {chip.mesh_y} cores) has {chip.max_cores:,}. Largest layers: {'; '.join(parts)}. "
        f"Remedies: compile with --chip truenorth-auto (the smallest board that fits is at least {bx} x {by} chips: "
        f"--chip truenorth-{bx}x{by}), or {narrower}")

"""Synthetic core graphs that resemble compiled models, for placement tests and benchmarks.

``conv_like_graph`` builds a stack of convolution-like layers: each layer is a grid of spatial tiles
times channel groups; a core reads the tiles of the previous layer under its receptive field (its
own tile heavily, the neighbouring tiles' halos lightly), from every channel group. Pooling halves
the tile grid and multiplies the channel groups by four; small fully connected layers end it.
``mlp_like_graph`` is a chain of layers where each core reads a few cores of the layer before.
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np


def _conv_layer_shapes(num_cores: int) -> list[tuple[int, int]]:
    """(tiles per side, channel groups) of each conv-like layer, then (1, k) fully connected."""
    shapes: list[tuple[int, int]] = []
    remaining = num_cores
    side = max(1, int(math.sqrt(num_cores / 4)))
    groups = 1
    while remaining > 0 and side > 1:
        fit = min(groups, remaining // (side * side))
        if fit < 1:
            side //= 2
            continue
        shapes.append((side, fit))
        remaining -= side * side * fit
        if len(shapes) % 2 == 0:
            side //= 2
            groups *= 4
    while remaining > 0:  # fully connected tail, shrinking
        width = max(1, min(remaining, max(1, remaining // 2) if remaining > 2 else remaining))
        shapes.append((1, width))
        remaining -= width
    return shapes


def conv_like_graph(num_cores: int, seed: int = 0) -> nx.DiGraph:
    """A layered core graph with spatial (conv-like) locality; edge attr 'traffic' in spikes/sample."""
    rng = np.random.default_rng(seed)
    graph = nx.DiGraph()
    previous: list[tuple[int, int, int, int]] = []  # (core, tile x, tile y, group) of layer L-1
    prev_side = 0
    core = 0
    for layer, (side, groups) in enumerate(_conv_layer_shapes(num_cores)):
        current = []
        for gy in range(side):
            for gx in range(side):
                for g in range(groups):
                    graph.add_node(core, layer=layer, neurons=256, axons=256, synapses=0)
                    current.append((core, gx, gy, g))
                    core += 1
        for dst, x, y, _ in current:
            for src, px, py, _ in previous:
                if side == 1:  # fully connected: from everything, light traffic each
                    traffic = rng.lognormal(0.0, 0.3) * 4.0 / max(1, len(previous))
                else:
                    # tile (x, y) of this layer covers tiles [x*r, (x+1)*r) of the previous one
                    ratio = prev_side / side
                    cx, cy = (x + 0.5) * ratio - 0.5, (y + 0.5) * ratio - 0.5
                    reach = max(abs(px - cx), abs(py - cy))
                    if reach > ratio / 2 + 0.51:
                        continue
                    main = reach <= ratio / 2
                    traffic = rng.lognormal(0.0, 0.3) * (10.0 if main else 2.0)
                graph.add_edge(src, dst, traffic=float(traffic))
        previous, prev_side = current, side
    return graph


def mlp_like_graph(num_cores: int, layers: int = 4, fan_in: int = 3, seed: int = 0) -> nx.DiGraph:
    """A chain of ``layers`` layers; each core reads ``fan_in`` consecutive cores of the previous
    layer (at its relative position), with lognormal traffic."""
    rng = np.random.default_rng(seed)
    graph = nx.DiGraph()
    sizes = [num_cores // layers + (1 if i < num_cores % layers else 0) for i in range(layers)]
    sizes = [s for s in sizes if s > 0]
    start = 0
    prev: list[int] = []
    for layer, size in enumerate(sizes):
        current = list(range(start, start + size))
        for node in current:
            graph.add_node(node, layer=layer, neurons=256, axons=256, synapses=0)
        for i, dst in enumerate(current):
            if not prev:
                continue
            centre = int((i + 0.5) * len(prev) / size)
            lo = max(0, min(len(prev) - fan_in, centre - fan_in // 2))
            for src in prev[lo:lo + fan_in]:
                graph.add_edge(src, dst, traffic=float(rng.lognormal(0.0, 0.5) * 5.0))
        prev = current
        start += size
    return graph

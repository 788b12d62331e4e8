"""Random valid programs and input spikes for testing backends, and the shipped example program.

``random_program`` draws programs that exercise every rule of the chip model: all reset modes,
leaks of both signs, negative floors, saturation (big weights against a small membrane range),
delays over the whole allowed range, OR-merges (several neurons or input channels on one axon),
output ports with several ports per class, feed-forward or recurrent targets, and, when asked,
stochastic thresholds and synapses. Use it with a small chip such as ``small_chip()``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from crossmap.chip import ChipSpec
from crossmap.program import Program


def small_chip(**changes: Any) -> ChipSpec:
    """A tiny chip for fast tests: 8 axons x 8 neurons, 3 axon types, a narrow membrane range
    (saturation happens), 4 x 4 cores per chip on a 2 x 2 board (routes cross chips)."""
    base = dict(name="small-test", axons_per_core=8, neurons_per_core=8, axon_types=3, v_min=-300, v_max=299,
                alpha_max=400, beta_max=300, mesh_x=4, mesh_y=4, board_x=2, board_y=2)
    base.update(changes)
    return ChipSpec(**base)


def _mix_in(rng: np.random.Generator, small: np.ndarray, lo: int, hi: int, fraction: float) -> np.ndarray:
    """``small`` with a random ``fraction`` of its entries replaced by draws from [lo, hi]."""
    big = rng.integers(lo, hi + 1, small.shape)
    return np.where(rng.random(small.shape) < fraction, big, small)


def random_program(chip: ChipSpec, cores: int, seed: int, *, recurrent: bool = False, stochastic: bool = False,
                   density: float = 0.4, num_inputs: int | None = None, num_classes: int = 3,
                   input_ticks: int = 3, routed_fraction: float = 0.6, output_fraction: float = 0.2,
                   latency: int | None = None, reset_modes: tuple[int, ...] = (0, 1, 2),
                   reset_values: bool = True) -> Program:
    """A random valid program of ``cores`` cores on ``chip`` (see the module docstring).

    ``density`` is the crossbar fill; each neuron targets a core axon with probability
    ``routed_fraction`` (a later core when feed-forward, any core including its own when
    ``recurrent``), an output port with probability ``output_fraction``, else nothing.
    ``latency`` defaults to the longest delay path for feed-forward programs and to twice the
    longest delay for recurrent ones. Neurons draw their reset mode from ``reset_modes``; without
    ``reset_values`` every reset value is 0."""
    rng = np.random.default_rng(seed)
    A, N, G = chip.axons_per_core, chip.neurons_per_core, chip.axon_types
    C = cores
    num_inputs = A if num_inputs is None else num_inputs
    scale = max(1, min(16, chip.weight_max, -chip.weight_min))

    def clip(arr: np.ndarray, lo: int, hi: int) -> np.ndarray:
        return np.clip(arr, lo, hi).astype(np.int32)

    positions = rng.choice(chip.grid_x * chip.grid_y, size=C, replace=False)
    prog = Program.empty(chip, C, num_inputs=num_inputs, num_classes=num_classes)
    prog.core_xy = np.stack([positions % chip.grid_x, positions // chip.grid_x], axis=1).astype(np.int32)
    step = max(1, (16 << 20) // (A * N))  # draw the crossbar in chunks: big programs stay small in memory
    for c0 in range(0, C, step):
        prog.crossbar[c0:c0 + step] = rng.random((min(step, C - c0), A, N), dtype=np.float32) < density
    prog.axon_type = rng.integers(0, G, (C, A)).astype(np.int32)
    prog.weight = clip(_mix_in(rng, rng.integers(-scale, scale + 1, (C, N, G)), chip.weight_min, chip.weight_max,
                               0.15), chip.weight_min, chip.weight_max)
    prog.alpha = clip(_mix_in(rng, rng.integers(1, 3 * scale + 1, (C, N)), chip.alpha_min, chip.alpha_max, 0.1),
                      chip.alpha_min, chip.alpha_max)
    prog.beta = clip(_mix_in(rng, rng.integers(0, 4 * scale + 1, (C, N)), chip.beta_min, chip.beta_max, 0.1),
                     chip.beta_min, chip.beta_max)
    prog.leak = clip(_mix_in(rng, rng.integers(-3, 4, (C, N)), chip.leak_min, chip.leak_max, 0.1),
                     chip.leak_min, chip.leak_max)
    prog.reset_mode = rng.choice(np.asarray(reset_modes, np.int32), (C, N)).astype(np.int32)
    values = rng.integers(-2 * scale, 2 * scale + 1, (C, N))
    prog.reset_value = clip(values if reset_values else 0 * values, chip.v_min, chip.v_max)
    extremes = rng.choice([chip.v_min, chip.v_max], (C, N))
    prog.initial_v = clip(np.where(rng.random((C, N)) < 0.1, extremes, rng.integers(-scale, scale + 1, (C, N))),
                          chip.v_min, chip.v_max)
    if stochastic:
        bits = rng.integers(1, 6, (C, N))
        masks = np.minimum((1 << bits) - 1, chip.alpha_max)
        prog.threshold_mask = np.where(rng.random((C, N)) < 0.4, masks, 0).astype(np.int32)
        prog.stochastic_synapse = rng.random((C, N, G)) < 0.3

    kind = rng.random((C, N))
    core_index = np.repeat(np.arange(C)[:, None], N, axis=1)
    if recurrent:
        target = rng.integers(0, C, (C, N))
    else:  # a later core, so the core graph is acyclic
        target = core_index + 1 + (rng.random((C, N)) * (C - 1 - core_index)).astype(np.int64)
    routable = target < C
    routed = (kind < routed_fraction) & routable
    to_port = ~routed & (kind >= 1 - output_fraction)
    if not to_port.any():  # at least one output
        to_port[C - 1, 0], routed[C - 1, 0] = True, False
    prog.target_core = np.where(routed, target, -1).astype(np.int32)
    prog.target_axon = np.where(routed, rng.integers(0, A, (C, N)), 0).astype(np.int32)
    prog.target_delay = rng.integers(chip.delay_min, chip.delay_max + 1, (C, N)).astype(np.int32)
    ports = np.flatnonzero(to_port.reshape(-1))
    port_of = np.full(C * N, -1, np.int32)
    port_of[ports] = rng.permutation(ports.size)
    prog.output_port = port_of.reshape(C, N)
    # every class gets ports while there are enough; the rest vote for random classes (ensembles)
    classes = np.concatenate([np.arange(min(num_classes, ports.size)),
                              rng.integers(0, num_classes, max(0, ports.size - num_classes))])
    prog.port_class = rng.permutation(classes).astype(np.int32)

    # input map: every channel drives one or two axons; some axons get several channels (OR)
    copies = rng.integers(1, 3, num_inputs)
    prog.input_channel = np.repeat(np.arange(num_inputs), copies).astype(np.int32)
    prog.input_core = rng.integers(0, C, prog.input_channel.size).astype(np.int32)
    prog.input_axon = rng.integers(0, A, prog.input_channel.size).astype(np.int32)

    prog.input_ticks = input_ticks
    if latency is None:
        latency = 2 * chip.delay_max if recurrent else _longest_delay_path(prog)
    prog.latency = latency
    prog.metadata = {"seed": int(seed), "generator": "crossmap.testing.random_program"}
    return prog.validate()


def _longest_delay_path(prog: Program) -> int:
    """Ticks from the first core to the last spike along feed-forward routes (cores in index order)."""
    arrival = np.zeros(prog.num_cores, np.int64)
    for c in range(prog.num_cores):
        routed = prog.target_core[c] >= 0
        for tc, d in zip(prog.target_core[c][routed].tolist(), prog.target_delay[c][routed].tolist()):
            arrival[tc] = max(arrival[tc], arrival[c] + d)
    return int(arrival.max()) if arrival.size else 0


def random_inputs(program: Program, batch: int, seed: int, rate: float = 0.3, ticks: int | None = None) -> np.ndarray:
    """Bernoulli(``rate``) input spikes, bool (batch, ticks, num_inputs); ticks defaults to the
    program's input ticks."""
    rng = np.random.default_rng(seed)
    ticks = program.input_ticks if ticks is None else ticks
    return rng.random((batch, ticks, program.num_inputs)) < rate


# ---------------------------------------------------------------------- the shipped example
BARS_SIZE = 4
BARS_TICKS = 4


def bars_samples(count: int, seed: int, on: float = 0.8, off: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Noisy 4 x 4 images of one horizontal (class 0) or vertical (class 1) bar as spike trains:
    bool (count, 4 ticks, 16 pixels) with bar pixels spiking at rate ``on`` and the rest at
    ``off``; and the labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    spikes = np.zeros((count, BARS_TICKS, BARS_SIZE * BARS_SIZE), bool)
    for k, label in enumerate(labels.tolist()):
        image = np.zeros((BARS_SIZE, BARS_SIZE), bool)
        line = int(rng.integers(BARS_SIZE))
        if label == 0:
            image[line, :] = True
        else:
            image[:, line] = True
        rate = np.where(image.reshape(-1), on, off)
        spikes[k] = rng.random((BARS_TICKS, rate.size)) < rate
    return spikes, labels.astype(np.int64)


def bars_program(chip: ChipSpec | None = None) -> Program:
    """A hand-built two-core spiking classifier of horizontal vs vertical bars on 4 x 4 pixels.

    Core 0 holds 8 detectors, one per row and per column: each sums its 4 pixels (weight 1),
    leaks 1 per tick, floors at 0 and fires at 3 (reset to 0). Their spikes reach core 1 one tick
    later, rows on axons 0-3 (type 0) and columns on axons 4-7 (type 1). Core 1 holds an ensemble
    of two voters per class: "horizontal" weighs rows +2 and columns -1, "vertical" the reverse,
    with thresholds 2 and 3; each voter writes its own output port."""
    chip = chip or ChipSpec.truenorth()
    n = BARS_SIZE
    prog = Program.empty(chip, 2, num_inputs=n * n, num_classes=2)
    prog.core_xy = np.array([[0, 0], [1, 0]], np.int32)
    pixels = np.arange(n * n).reshape(n, n)
    for k in range(n):
        prog.crossbar[0, pixels[k, :], k] = True        # row detector k
        prog.crossbar[0, pixels[:, k], n + k] = True    # column detector k
    detectors = np.arange(2 * n)
    prog.weight[0, detectors, 0] = 1
    prog.alpha[0, detectors] = 3
    prog.leak[0, detectors] = -1
    prog.target_core[0, detectors] = 1
    prog.target_axon[0, detectors] = detectors
    prog.target_delay[0, detectors] = 1
    prog.axon_type[1, n:2 * n] = 1
    voters = np.arange(4)
    prog.crossbar[1][np.ix_(np.arange(2 * n), voters)] = True
    prog.weight[1, [0, 2], 0], prog.weight[1, [0, 2], 1] = 2, -1   # horizontal voters
    prog.weight[1, [1, 3], 0], prog.weight[1, [1, 3], 1] = -1, 2   # vertical voters
    prog.alpha[1, voters] = [2, 2, 3, 3]
    prog.output_port[1, voters] = voters
    prog.port_class = np.array([0, 1, 0, 1], np.int32)
    prog.input_channel = np.arange(n * n, dtype=np.int32)
    prog.input_core = np.zeros(n * n, np.int32)
    prog.input_axon = np.arange(n * n, dtype=np.int32)
    prog.input_ticks = BARS_TICKS
    prog.latency = 1
    prog.core_labels = ["bar detectors", "class voters"]
    prog.metadata = {"seed": 0, "generator": "crossmap.testing.bars_program",
                     "description": "horizontal (class 0) vs vertical (class 1) bars on 4x4 pixels"}
    return prog.validate()


def _npy_bytes(arr: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, arr, allow_pickle=False)
    return buffer.getvalue()


def write_bars_example(directory: str | Path, overwrite: bool = False) -> Path:
    """Save the bars example program with 16 sample inputs (inputs.npy) and their labels
    (labels.npy); ``crossmap/examples/bars`` is written by this function (rerun it when the
    program format changes), and the hostile-input tests corrupt copies of it."""
    spikes, labels = bars_samples(16, seed=0)
    extra = {"inputs.npy": _npy_bytes(spikes), "labels.npy": _npy_bytes(labels)}
    return bars_program().save(directory, overwrite=overwrite, extra_files=extra)

"""Where on the input image each core's spikes come from: a placement start for networks whose
layers keep the image's layout (convolutions, patches).

An input channel that is pixel (h, w) of a (C, H, W) input sits at (h / H, w / W). A core that
reads input channels sits at the mean position of those channels; a core that reads other cores
sits at the mean position of its source neurons' cores, input lines counted too; positions flow
forward until nothing changes. Cores of successive layers over the same part of the image then
share a position, so spreading the positions over the board puts a layer's cores beside the cores
they read and feed.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from crossmap.program import Program


def input_positions(program: Program, input_shape: tuple[int, ...] | None, rounds: int = 100) -> np.ndarray | None:
    """(cores, 2) positions in [0, 1)^2 of each core's sources on the input image, or None when the
    input is not an image (fewer than two spatial axes of size > 1) or no core reads it. Channels
    beyond the image (a bias channel) have no position; cores no input reaches sit in the middle."""
    if input_shape is None or len(input_shape) < 2 or min(input_shape[-2:]) < 2:
        return None
    height, width = int(input_shape[-2]), int(input_shape[-1])
    image = int(np.prod(input_shape))
    n = program.num_cores
    channel = np.asarray(program.input_channel, np.int64)
    on_image = channel < image
    if not on_image.any():
        return None
    pixel = channel[on_image] % (height * width)
    where = np.stack([pixel // width / height, pixel % width / width], 1)
    core = np.asarray(program.input_core, np.int64)[on_image]
    base = np.zeros((n, 2))
    count = np.zeros(n)
    np.add.at(base, core, where)
    np.add.at(count, core, 1.0)
    target = np.asarray(program.target_core).reshape(-1)
    source = np.repeat(np.arange(n), program.target_core.shape[1])
    routed = target >= 0
    reads = sp.csr_matrix((np.ones(int(routed.sum())), (target[routed], source[routed])), shape=(n, n))
    known = count > 0
    position = np.where(known[:, None], base / np.maximum(count, 1.0)[:, None], 0.0)
    for _ in range(rounds):
        total = reads @ np.where(known[:, None], position, 0.0) + base
        weight = reads @ known.astype(np.float64) + count
        now_known = weight > 0
        now = np.where(now_known[:, None], total / np.maximum(weight, 1e-12)[:, None], 0.0)
        settled = np.array_equal(now_known, known) and np.allclose(now, position, atol=1e-9)
        position, known = now, now_known
        if settled:
            break
    position[~known] = 0.5
    return position

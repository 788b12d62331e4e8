"""Sliding-window geometry shared by Conv and the pooling ops: output sizes, padding, and for
every output position and kernel tap the input position it reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from crossmap.frontend.values import Unsupported


@dataclass
class Window:
    """A window op over spatial dims: kernel, strides, dilations, pads (begin, end), output size."""

    in_shape: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    out_shape: tuple[int, ...]

    @classmethod
    def from_attributes(cls, in_shape: Sequence[int], kernel: Sequence[int], attrs: dict[str, Any],
                        ceil_mode: bool = False) -> "Window":
        """Geometry from ONNX attributes ``strides``, ``dilations``, ``pads``, ``auto_pad``."""
        n = len(in_shape)
        in_shape, kernel = tuple(int(v) for v in in_shape), tuple(int(v) for v in kernel)
        strides = tuple(attrs.get("strides") or [1] * n)
        dilations = tuple(attrs.get("dilations") or [1] * n)
        pads = list(attrs.get("pads") or [0] * (2 * n))
        auto_pad = attrs.get("auto_pad", "NOTSET") or "NOTSET"
        if len(kernel) != n or len(strides) != n or len(dilations) != n or len(pads) != 2 * n:
            raise Unsupported(f"kernel {kernel}, strides {strides}, dilations {dilations} or pads {pads} do not fit "
                              f"{n} spatial dims")
        span = [d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out = [-(-i // s) for i, s in zip(in_shape, strides)]
            total = [max(0, (o - 1) * s + sp - i) for o, s, sp, i in zip(out, strides, span, in_shape)]
            begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
            return cls(in_shape, kernel, strides, dilations, tuple(begin),
                       tuple(t - b for t, b in zip(total, begin)), tuple(out))
        if auto_pad == "VALID":
            pads = [0] * (2 * n)
        elif auto_pad != "NOTSET":
            raise Unsupported(f"auto_pad {auto_pad!r} is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")
        begin, end = pads[:n], pads[n:]
        out = []
        for i, s, sp, b, e in zip(in_shape, strides, span, begin, end):
            room = i + b + e - sp
            if room < 0:
                raise Unsupported(f"the window (span {sp}) is larger than the padded input ({i + b + e})")
            size = (-(-room // s) if ceil_mode else room // s) + 1
            if ceil_mode and (size - 1) * s >= i + b:  # the last window would start in the end padding
                size -= 1
            out.append(size)
        return cls(in_shape, kernel, strides, dilations, tuple(begin), tuple(end), tuple(out))

    def taps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For every (output position, kernel tap) pair, flattened: output index, tap index, input
        index (-1 when it falls in the padding), and whether it lies inside the explicit padding
        (counts for AveragePool's count_include_pad)."""
        n = len(self.in_shape)
        out_idx = np.indices(self.out_shape).reshape(n, -1)  # (n, O)
        tap_idx = np.indices(self.kernel).reshape(n, -1)  # (n, K)
        strides = np.array(self.strides)[:, None, None]
        dil = np.array(self.dilations)[:, None, None]
        begin = np.array(self.pads_begin)[:, None, None]
        pos = out_idx[:, :, None] * strides - begin + tap_idx[:, None, :] * dil  # (n, O, K)
        size = np.array(self.in_shape)[:, None, None]
        end = np.array(self.pads_end)[:, None, None]
        valid = np.all((pos >= 0) & (pos < size), axis=0)
        padded = np.all((pos >= -begin) & (pos < size + end), axis=0)
        flat_in = np.ravel_multi_index(tuple(np.clip(pos, 0, size - 1)), self.in_shape) if n else np.zeros_like(valid)
        flat_in = np.where(valid, flat_in, -1)
        n_out, n_tap = out_idx.shape[1], tap_idx.shape[1]
        out_flat = np.repeat(np.arange(n_out), n_tap)
        tap_flat = np.tile(np.arange(n_tap), n_out)
        return out_flat, tap_flat, flat_in.reshape(-1), padded.reshape(-1)

"""What both backends share: checking the input spikes and the run options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from crossmap.errors import CrossmapError, InputError
from crossmap.limits import MAX_TICKS

COMMON_OPTIONS = ("seed", "sample_offset", "record")


@dataclass(frozen=True)
class RunSpec:
    """A checked run: spikes bool (batch, T, num_inputs), the number of ticks and the options."""

    spikes: np.ndarray
    ticks: int
    seed: int
    sample_offset: int
    record: bool

    @property
    def batch(self) -> int:
        """Number of samples."""
        return int(self.spikes.shape[0])

    @property
    def input_ticks(self) -> int:
        """Ticks that carry input spikes (T)."""
        return int(self.spikes.shape[1])


def check_spikes(program: Any, inputs: Any) -> np.ndarray:
    """Input spikes as bool (batch, T, num_inputs); wrong shape, dtype or values -> ``InputError``."""
    want = f"(batch, ticks, {program.num_inputs}) or (batch, {program.num_inputs})"
    try:
        spikes = np.asarray(inputs)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"input spikes could not be read as an array ({exc}); pass a numpy array of shape "
                         f"{want} with 0/1 or bool values") from None
    if spikes.dtype != bool and not np.issubdtype(spikes.dtype, np.integer):
        raise InputError(f"input spikes have dtype {spikes.dtype}; expected bool or integer 0/1 spikes of shape "
                         f"{want}. Encode real-valued data into spikes first (e.g. x > threshold, or a rate "
                         f"code), then pass the result as bool")
    if spikes.ndim == 2:
        spikes = spikes[:, None, :]
    if spikes.ndim != 3 or spikes.shape[2] != program.num_inputs:
        raise InputError(f"input spikes have shape {tuple(np.shape(inputs))}; the program has "
                         f"{program.num_inputs} input channels, so the shape must be {want}")
    if spikes.shape[0] == 0 or spikes.shape[1] == 0:
        raise InputError(f"input spikes have shape {tuple(np.shape(inputs))}: no samples or no ticks; pass at "
                         f"least one sample with at least one tick, shape {want}")
    if spikes.dtype != bool:
        bad = (spikes != 0) & (spikes != 1)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputError(f"input spikes must be 0 or 1; found {int(spikes[where])} at (sample, tick, channel) "
                             f"= {where} ({int(bad.sum())} such values). Threshold or rate-encode the data first")
        spikes = spikes.astype(bool)
    return spikes


def _int_option(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < lo or \
            (hi is not None and value > hi):
        upper = f" and <= {hi}" if hi is not None else ""
        raise InputError(f"option {name} = {value!r} must be an integer >= {lo}{upper}")
    return int(value)


def prepare_run(program: Any, inputs: Any, ticks: Any, options: dict[str, Any], backend: str,
                extra_options: tuple[str, ...] = ()) -> RunSpec:
    """Check inputs, ticks and options of one run (options: seed, sample_offset, record)."""
    known = COMMON_OPTIONS + extra_options
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise CrossmapError(f"backend {backend!r} has no option {', '.join(unknown)}; its options are: "
                            f"{', '.join(known)}")
    spikes = check_spikes(program, inputs)
    total = program.total_ticks if ticks is None else _int_option("ticks", ticks, 1, 2 * MAX_TICKS)
    if spikes.shape[1] > total:
        raise InputError(f"input spikes cover {spikes.shape[1]} ticks but the run is {total} ticks long; pass "
                         f"ticks >= {spikes.shape[1]} or trim the inputs to at most {total} ticks")
    seed = options.get("seed", program.metadata.get("seed", 0))
    seed = _int_option("seed", seed, 0, 2**64 - 1)
    offset = _int_option("sample_offset", options.get("sample_offset", 0), 0)
    record = options.get("record", False)
    if not isinstance(record, (bool, np.bool_)):
        raise InputError(f"option record = {record!r} must be True or False")
    return RunSpec(spikes=spikes, ticks=total, seed=seed, sample_offset=offset, record=bool(record))

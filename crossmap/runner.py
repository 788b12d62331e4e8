"""Emulated inference over a dataset in batches, with a progress bar: accuracy, activity, energy."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .errors import InputError


def load_dataset(name: str, data_dir: str | None = None, split: str = "test",
                 limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of ``mnist`` (IDX files; with ``limit`` a seeded random subset) or
    ``sample`` (the bundled MNIST sample)."""
    from .datasets import load_mnist, load_sample

    if name == "sample":
        images, labels = load_sample()
        return (images[:limit], labels[:limit]) if limit else (images, labels)
    if name == "mnist":
        # a seeded random subset: some copies of MNIST are sorted by label, so the first N would not do
        return load_mnist(split=split, data_dir=data_dir, limit=limit, seed=0 if limit else None)
    raise InputError(f"unknown dataset {name!r}; available: mnist, sample")


def run_dataset(program: Any, dataset: str = "mnist", *, data_dir: str | None = None, split: str = "test",
                limit: int | None = None, batch_size: int = 256, backend: str = "emulator",
                show_progress: bool | None = None) -> dict[str, Any]:
    """Emulate ``program`` on a dataset; return accuracy, mean activity and energy per sample."""
    images, labels = load_dataset(dataset, data_dir, split, limit)
    return run_arrays(program, images, labels, batch_size=batch_size, backend=backend,
                      show_progress=show_progress, name=f"{dataset}/{split}" if dataset == "mnist" else dataset)


def run_arrays(program: Any, images: np.ndarray, labels: np.ndarray, *, batch_size: int = 256,
               backend: str = "emulator", show_progress: bool | None = None, name: str = "arrays") -> dict[str, Any]:
    """Emulate ``program`` on float inputs with labels; the summary of ``run_dataset``."""
    from . import emulate
    from .encoding import encode
    from .progress import Progress

    if batch_size < 1:
        raise InputError(f"batch size {batch_size} must be >= 1")
    n = len(images)
    if n == 0:
        raise InputError("the dataset selection is empty; raise --limit or check the data directory")
    flat = images.reshape(n, -1)
    from .encoding import data_channels

    channels = data_channels(program.encoding, program.num_inputs)  # without the always-on bias channel
    if flat.shape[1] != channels:
        raise InputError(f"the dataset has {flat.shape[1]} values per sample, the program takes "
                         f"{channels} input channels; use a dataset that matches the model")
    bar = Progress(n, "emulating", show_progress, unit="samples")
    correct = 0
    totals: dict[str, float] = {}
    energy: dict[str, float] = {}
    start = time.perf_counter()
    for lo in range(0, n, batch_size):
        hi = min(lo + batch_size, n)
        spikes = encode(program.encoding, flat[lo:hi], sample_offset=lo)
        result = emulate(program, spikes, backend=backend, sample_offset=lo)
        correct += int((result.predictions == labels[lo:hi]).sum())
        for key, value in result.activity().items():
            totals[key] = totals.get(key, 0.0) + float(np.sum(value))
        for key, value in result.energy().items():
            energy[key] = energy.get(key, 0.0) + float(np.sum(value))
        bar.update(hi - lo, f"acc {100 * correct / hi:.2f}%")
    bar.close()
    seconds = time.perf_counter() - start
    return {
        "dataset": name,
        "samples": n,
        "accuracy": correct / n,
        "ticks": program.total_ticks,
        "spikes_per_sample": totals.get("spikes", 0.0) / n,
        "synaptic_events_per_sample": totals.get("synaptic_events", 0.0) / n,
        "activity_per_sample": {k: v / n for k, v in totals.items()},
        "energy_per_sample_uj": energy.get("total", 0.0) / n * 1e6,
        "energy_breakdown_uj": {k: v / n * 1e6 for k, v in energy.items() if k != "total"},
        "cores": program.num_cores,
        "seconds": seconds,
        "samples_per_second": n / seconds if seconds > 0 else float("inf"),
    }

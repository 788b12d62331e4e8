"""Emulated inference over a dataset in batches, with a progress bar: accuracy, activity, energy."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from crossmap.errors import InputError


def load_dataset(name: str, data_dir: str | None = None, split: str = "test",
                 limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of ``mnist`` (IDX files; with ``limit`` a seeded random subset) or
    ``sample`` (the bundled MNIST sample)."""
    from crossmap.datasets import load_mnist, load_sample

    if name == "sample":
        images, labels = load_sample()
        return (images[:limit], labels[:limit]) if limit else (images, labels)
    if name == "mnist":
        # a seeded random subset: some copies of MNIST are sorted by label, so the first N would not do
        return load_mnist(split=split, data_dir=data_dir, limit=limit, seed=0 if limit else None)
    raise InputError(f"unknown dataset {name!r}; available: mnist, sample")


def run_dataset(program: Any, dataset: str = "mnist", *, data_dir: str | None = None, split: str = "test",
                limit: int | None = None, batch_size: int = 256, backend: str = "emulator",
                show_progress: bool | None = None, workers: int = 1) -> dict[str, Any]:
    """Emulate ``program`` on a dataset (in ``workers`` processes); return accuracy, mean
    activity and energy per sample."""
    images, labels = load_dataset(dataset, data_dir, split, limit)
    return run_arrays(program, images, labels, batch_size=batch_size, backend=backend, show_progress=show_progress,
                      name=f"{dataset}/{split}" if dataset == "mnist" else dataset, workers=workers)


def run_arrays(program: Any, images: np.ndarray, labels: np.ndarray, *, batch_size: int = 256,
               backend: str = "emulator", show_progress: bool | None = None, name: str = "arrays",
               workers: int = 1) -> dict[str, Any]:
    """Emulate ``program`` on float inputs with labels; the summary of ``run_dataset``. With
    ``workers`` > 1 the batches run in that many processes; every figure is the same as with one
    (each batch is emulated on its own, stochastic draws keyed by the sample index)."""
    from crossmap.encoding import data_channels
    from crossmap.progress import Progress

    if batch_size < 1:
        raise InputError(f"batch size {batch_size} must be >= 1")
    if workers < 1:
        raise InputError(f"workers {workers} must be >= 1 (the number of emulating processes)")
    n = len(images)
    if n == 0:
        raise InputError("the dataset selection is empty; raise --limit or check the data directory")
    flat = images.reshape(n, -1)
    channels = data_channels(program.encoding, program.num_inputs)  # without the always-on bias channel
    if flat.shape[1] != channels:
        raise InputError(f"the dataset has {flat.shape[1]} values per sample, the program takes "
                         f"{channels} input channels; use a dataset that matches the model")
    bar = Progress(n, "emulating", show_progress, unit="samples")
    correct, done = 0, 0
    totals: dict[str, float] = {}
    energy: dict[str, float] = {}
    start = time.perf_counter()
    for size, (hits, activity, joules) in _batches(program, flat, labels, batch_size, backend, workers):
        correct, done = correct + hits, done + size
        for key, value in activity.items():
            totals[key] = totals.get(key, 0.0) + value
        for key, value in joules.items():
            energy[key] = energy.get(key, 0.0) + value
        bar.update(size, f"acc {100 * correct / done:.2f}%")
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
        "workers": workers,
    }


Figures = tuple[int, dict[str, float], dict[str, float]]  # correct, activity sums, energy sums
_job: dict[str, Any] = {}  # what forked workers emulate: set before the pool starts


def _emulate_batch(lo: int) -> Figures:
    """Correct predictions, summed activity and summed energy of the batch starting at ``lo``."""
    from crossmap import emulate
    from crossmap.encoding import encode

    program, flat, labels, size, backend = (_job[k] for k in ("program", "flat", "labels", "size", "backend"))
    hi = min(lo + size, len(flat))
    result = emulate(program, encode(program.encoding, flat[lo:hi], sample_offset=lo), backend=backend,
                     sample_offset=lo)
    return (int((result.predictions == labels[lo:hi]).sum()),
            {k: float(np.sum(v)) for k, v in result.activity().items()},
            {k: float(np.sum(v)) for k, v in result.energy().items()})


def _limit_blas_threads(threads: int) -> None:
    """Cap this process's BLAS threads: workers that each ran a thread per CPU would oversubscribe
    the machine (OpenBLAS threads spin while they wait; on 2 CPUs, 2 workers emulated a 2,794-core
    ensemble at a quarter of the speed)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads, user_api="blas")


def _batches(program: Any, flat: np.ndarray, labels: np.ndarray, size: int, backend: str,
             workers: int) -> Iterator[tuple[int, Figures]]:
    """(batch size, figures) of every batch in order, emulated here or in ``workers`` forked processes."""
    starts = list(range(0, len(flat), size))
    sizes = [min(size, len(flat) - lo) for lo in starts]
    _job.update(program=program, flat=flat, labels=labels, size=size, backend=backend)
    try:
        if workers == 1 or len(starts) == 1 or "fork" not in mp.get_all_start_methods():
            yield from zip(sizes, map(_emulate_batch, starts))
            return
        if backend == "emulator":  # built once here, shared with the forked workers
            from crossmap.backends.tables import get_tables
            get_tables(program)
        processes = min(workers, len(starts))
        with ProcessPoolExecutor(processes, mp_context=mp.get_context("fork"), initializer=_limit_blas_threads,
                                 initargs=(max(1, (os.cpu_count() or 1) // processes),)) as pool:
            yield from zip(sizes, pool.map(_emulate_batch, starts))
    finally:
        _job.clear()

"""Emulated inference over a dataset in batches, with a progress bar: accuracy, activity, energy."""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from crossmap.errors import InputError

if TYPE_CHECKING:
    from crossmap.backends.result import Result
    from crossmap.program import Program

BackendOptions = dict[str, str | int | float | bool | None]  # keyword options of an emulator backend
RunBatch = Callable[[np.ndarray, int], "Result"]  # (spikes, sample offset) -> the batch's result


def load_dataset(name: str, data_dir: str | None = None, split: str = "test",
                 limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of ``mnist`` (IDX files; with ``limit`` a seeded random subset) or
    ``sample`` (the bundled MNIST sample)."""
    from crossmap.datasets import load_mnist, load_sample

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise InputError(f"limit {limit!r} must be a positive number of samples, or None for all")
    if name == "sample":
        images, labels = load_sample()
        return (images[:limit], labels[:limit]) if limit else (images, labels)
    if name == "mnist":
        # a seeded random subset: some copies of MNIST are sorted by label, so the first N would not do
        return load_mnist(split=split, data_dir=data_dir, limit=limit, seed=0 if limit else None)
    raise InputError(f"unknown dataset {name!r}; available: mnist, sample")


def run_dataset(program: Program, dataset: str = "mnist", *, data_dir: str | None = None, split: str = "test",
                limit: int | None = None, batch_size: int = 256, backend: str = "emulator",
                show_progress: bool | None = None, workers: int = 1, backend_options: BackendOptions | None = None,
                ray_address: str | None = None) -> dict[str, Any]:
    """Emulate ``program`` on a dataset (in ``workers`` processes, or over Ray with
    ``ray_address``, see ``run_arrays``); return accuracy, mean activity and energy per sample."""
    images, labels = load_dataset(dataset, data_dir, split, limit)
    return run_arrays(program, images, labels, batch_size=batch_size, backend=backend, show_progress=show_progress,
                      name=f"{dataset}/{split}" if dataset == "mnist" else dataset, workers=workers,
                      backend_options=backend_options, ray_address=ray_address)


def run_arrays(program: Program, images: np.ndarray, labels: np.ndarray | None, *, batch_size: int = 256,
               backend: str = "emulator", show_progress: bool | None = None, name: str = "arrays",
               workers: int = 1, backend_options: BackendOptions | None = None,
               ray_address: str | None = None) -> dict[str, Any]:
    """Emulate ``program`` on float inputs with labels (or None: accuracy None, the summary counts
    the predicted classes); the summary of ``run_dataset``.

    With ``workers`` > 1 the batches run in that many forked processes; with ``ray_address``
    (``"local"`` starts a local Ray, anything else is the address of a running cluster) they run
    as Ray tasks, one per CPU of the cluster (the front batches here while Ray starts). Every
    figure is the same as in one process: each batch is emulated on its own, stochastic draws
    keyed by the sample index, and the sums add up batch by batch in the same order.
    ``backend_options`` go to the backend (for ``torch``: device, precision, path). Every
    emulating process runs one BLAS thread (and, for torch on the CPU, cpu_count / processes
    torch threads): see ``thread_counts``."""
    from crossmap.encoding import data_channels
    from crossmap.progress import Progress

    if batch_size < 1:
        raise InputError(f"batch size {batch_size} must be >= 1")
    if workers < 1:
        raise InputError(f"workers {workers} must be >= 1 (the number of emulating processes)")
    options = dict(backend_options or {})
    if workers > 1 and str(options.get("device", "cpu")).startswith("cuda"):
        raise InputError(f"workers {workers} with device {options['device']!r}: one process drives the GPU; "
                         f"use --workers 1 (raise --batch-size to keep the GPU busy)")
    n = len(images)
    if n == 0:
        raise InputError("the dataset selection is empty; raise --limit or check the data directory")
    flat = images.reshape(n, -1)
    channels = data_channels(program.encoding, program.num_inputs)  # without the always-on bias channel
    if flat.shape[1] != channels:
        raise InputError(f"the dataset has {flat.shape[1]} values per sample, the program takes "
                         f"{channels} input channels; use a dataset that matches the model")
    if labels is not None and len(labels) != n:
        raise InputError(f"{len(labels)} labels for {n} samples; give one label per sample")
    job = Job(program, flat, labels, batch_size, backend, options)
    sharded = None
    if ray_address is not None:
        from crossmap.ray_runner import RayBatches
        sharded = RayBatches(job, ray_address)
        batches, processes = iter(sharded), 0
    else:
        batches, processes = _batches(job, workers), min(workers, len(job.starts))
    bar = Progress(n, "emulating", show_progress, unit="samples")
    correct, done = 0, 0
    predicted = np.zeros(program.num_classes, np.int64)
    totals: dict[str, float] = {}
    energy: dict[str, float] = {}
    start = time.perf_counter()
    for size, (hits, activity, joules, classes) in batches:
        correct, done = correct + hits, done + size
        predicted += classes
        for key, value in activity.items():
            totals[key] = totals.get(key, 0.0) + value
        for key, value in joules.items():
            energy[key] = energy.get(key, 0.0) + value
        bar.update(size, f"acc {100 * correct / done:.2f}%" if labels is not None else "")
    bar.close()
    seconds = time.perf_counter() - start
    if sharded is not None:
        processes = sharded.cpus
    return {
        "dataset": name,
        "samples": n,
        "accuracy": correct / n if labels is not None else None,
        "class_counts": predicted.tolist(),
        "ticks": program.total_ticks,
        "spikes_per_sample": totals.get("spikes", 0.0) / n,
        "synaptic_events_per_sample": totals.get("synaptic_events", 0.0) / n,
        "activity_per_sample": {k: v / n for k, v in totals.items()},
        "energy_per_sample_uj": energy.get("total", 0.0) / n * 1e6,
        "energy_activity": f"measured: the activity counted while emulating these {n} samples of {name}",
        "energy_breakdown_uj": {k: v / n * 1e6 for k, v in energy.items() if k != "total"},
        "cores": program.num_cores,
        "seconds": seconds,
        "samples_per_second": n / seconds if seconds > 0 else float("inf"),
        "backend": backend,
        "workers": workers if ray_address is None else processes,
        "ray": ray_address,
    }


Figures = tuple[int, dict[str, float], dict[str, float], np.ndarray]  # correct, activity, energy, class counts


class Job:
    """What every emulating process runs: the program, the flat inputs and labels, the batch size,
    the backend and its options; ``emulate_batch(lo)`` does the batch starting at ``lo``. The
    backend is prepared once per process (for torch: its tables moved to the device)."""

    def __init__(self, program: Program, flat: np.ndarray, labels: np.ndarray | None, size: int, backend: str,
                 options: BackendOptions) -> None:
        self.program, self.flat, self.labels, self.size = program, flat, labels, size
        self.backend, self.options = backend, options
        self.key = uuid.uuid4().hex   # names this job in the processes that run its batches
        self.starts = list(range(0, len(flat), size))
        self.processes = 1   # emulating processes running this job (sets each one's threads)
        self._run: RunBatch | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_run": None}  # a prepared backend stays in its process

    def sizes(self) -> list[int]:
        """Samples of every batch."""
        return [min(self.size, len(self.flat) - lo) for lo in self.starts]

    def runner(self) -> RunBatch:
        """This process's run function ``(spikes, sample_offset) -> Result``."""
        if self._run is None:
            if self.backend == "torch":
                from crossmap.backends.torch_emulator import TorchEmulator

                options = dict(self.options)
                path = options.pop("path", "auto")
                emulator = TorchEmulator(self.program, path=path, **options)
                if self.processes > 1:
                    limit_threads(self.processes)
                self._run = lambda spikes, offset: emulator.run(spikes, sample_offset=offset)
            else:
                from crossmap import emulate

                self._run = lambda spikes, offset: emulate(self.program, spikes, backend=self.backend,
                                                           sample_offset=offset, **self.options)
        return self._run

    def emulate_batch(self, lo: int) -> Figures:
        """Correct predictions (0 without labels), summed activity, summed energy and predicted class
        counts of the batch starting at ``lo``."""
        from crossmap.encoding import encode

        hi = min(lo + self.size, len(self.flat))
        spikes = encode(self.program.encoding, self.flat[lo:hi], sample_offset=lo)
        result = self.runner()(spikes, lo)
        classes = self.program.num_classes
        return (int((result.predictions == self.labels[lo:hi]).sum()) if self.labels is not None else 0,
                {k: float(np.sum(v)) for k, v in result.activity().items()},
                {k: float(np.sum(v)) for k, v in result.energy().items()},
                np.bincount(result.predictions, minlength=classes)[:classes])


def thread_counts(processes: int) -> tuple[int | None, int | None]:
    """(BLAS threads, torch threads) for each of ``processes`` emulating processes on this machine.

    BLAS gets one thread: the numpy emulator's matmuls are small (one block of cores) and
    interleaved with single-threaded numpy work, so extra BLAS threads only spin and fight the
    Python loop (on a busy 2-CPU machine one process ran 7.2 images/s with the OpenBLAS default
    and 80.7 with one thread). torch's large batched matmuls do use threads: cpu_count / processes."""
    return 1, max(1, (os.cpu_count() or 1) // max(1, processes))


def limit_threads(processes: int) -> None:
    """Set this process's BLAS (and, when torch is loaded, torch) threads to ``thread_counts``."""
    import sys

    from threadpoolctl import threadpool_limits

    blas, torch_threads = thread_counts(processes)
    threadpool_limits(blas, user_api="blas")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(torch_threads)


def _limit_blas_threads(threads: int) -> None:
    """Cap this process's BLAS threads."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads, user_api="blas")


_job: dict[str, Job] = {}  # what forked workers emulate: set before the pool starts


def _worker_init(processes: int, job: Job | None = None) -> None:
    """Set a worker's thread counts; a spawned worker (no fork) also receives its job here."""
    limit_threads(processes)
    if job is not None:
        _job["job"] = job


def _start_method() -> str:
    """``fork``, unless this process runs Ray: forking a process that holds Ray's threads and
    sockets can hang the child, so such a process spawns its workers instead."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        return "spawn"
    return "fork"


def _worker_batch(lo: int) -> Figures:
    return _job["job"].emulate_batch(lo)


@contextmanager
def _threads_in_this_process(backend: str) -> Iterator[None]:
    """``thread_counts(1)`` for the block; the caller's BLAS and torch threads are restored after."""
    import sys

    from threadpoolctl import threadpool_limits

    blas, torch_threads = thread_counts(1)
    if backend == "torch":
        importlib.import_module("torch")
    torch = sys.modules.get("torch") if torch_threads is not None else None
    old = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(blas, user_api="blas"):
        if torch is not None:
            torch.set_num_threads(torch_threads)
        try:
            yield
        finally:
            if torch is not None and old is not None:
                torch.set_num_threads(old)


def _batches(job: Job, workers: int) -> Iterator[tuple[int, Figures]]:
    """(batch size, figures) of every batch in order, emulated here or in ``workers`` forked processes
    (spawned ones in a process that runs Ray)."""
    sizes = job.sizes()
    if workers == 1 or len(job.starts) == 1 or "fork" not in mp.get_all_start_methods():
        with _threads_in_this_process(job.backend):
            yield from zip(sizes, map(job.emulate_batch, job.starts))
        return
    if job.backend == "emulator":  # built once here, shared with the forked workers
        from crossmap.backends.tables import get_tables
        get_tables(job.program)
    processes = min(workers, len(job.starts))
    job.processes = processes
    _job["job"] = job
    method = _start_method()
    try:
        with ProcessPoolExecutor(processes, mp_context=mp.get_context(method), initializer=_worker_init,
                                 initargs=(processes, job if method == "spawn" else None)) as pool:
            yield from zip(sizes, pool.map(_worker_batch, job.starts))
    finally:
        _job.clear()

"""Emulating a dataset over a Ray cluster: the batches are split into contiguous shards, one Ray
task per shard (one CPU each), and the figures come back batch by batch in order, so the sums are
the same as in one process.

Connecting costs seconds (a local ``ray.init`` starts a dozen processes: 4-5 s on 2 busy CPUs),
so the batches at the front are emulated here, in a thread of this process, while the main
thread connects; once Ray is up the rest go to the cluster and this process only waits. Every
batch is emulated once, either here or in a Ray task, on its own (stochastic draws keyed by the
sample index), so where it ran changes no figure. Each Ray worker prepares the backend once per
run (``Job.key``), not once per task.

Ray is optional (``pip install 'crossmap[ray]'``) and imported only here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from crossmap.errors import CrossmapError

# shards per CPU of the cluster: several keep the CPUs busy to the end (Ray hands the next shard
# to whichever worker is free) while each task still carries a few batches
SHARDS_PER_CPU = 8


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise CrossmapError("--ray needs Ray, which is not installed; install it with `pip install "
                            "'crossmap[ray]'` (or `pip install ray`), or run without --ray") from None
    return ray


def connect(address: str) -> Any:
    """The ray module, initialized: a local Ray for ``"local"``, else the cluster at ``address``
    (a Ray already initialized in this process is used as it is)."""
    ray = _ray()
    if not ray.is_initialized():
        try:
            if address == "local":
                ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            else:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise CrossmapError(f"could not connect to the Ray cluster at {address!r} ({exc}); start one with "
                                f"`ray start --head`, or give --ray without an address for a local Ray") from None
    return ray


_prepared: dict[str, Any] = {}   # in a Ray worker: Job.key -> the prepared run function of that job


def _run_shard(job: Any, starts: list[int], processes: int) -> list[Any]:
    """The figures of the batches starting at ``starts``, run in a Ray worker; the backend is
    prepared on the worker's first shard of the job and kept for its next ones."""
    from crossmap.runner import limit_threads

    if job.key not in _prepared:
        _prepared.clear()   # one job at a time: drop the previous run's tables
        limit_threads(processes)
        job.processes = processes
        _prepared[job.key] = job.runner()
    job._run = _prepared[job.key]
    return [job.emulate_batch(lo) for lo in starts]


class RayBatches:
    """The batches of ``job`` on the Ray cluster at ``address`` (``"local"``: a local Ray), the
    front ones emulated here while Ray starts. Iterate for (batch size, figures) in batch order;
    ``cpus`` (the cluster's CPUs) and ``local`` (batches emulated here) are set as it runs."""

    def __init__(self, job: Any, address: str) -> None:
        self.job, self.address = job, address
        self.cpus = 0
        self.local = 0
        self._lock = threading.Lock()
        self._next = 0                   # the first batch nobody has taken
        self._stop = False               # set when Ray takes the rest
        self._local_results: list[Any] = []
        self._local_error: BaseException | None = None

    def _emulate_front(self) -> None:
        """Emulate batches from the front here until Ray takes the rest (thread body)."""
        from crossmap.runner import _threads_in_this_process

        try:
            with _threads_in_this_process(self.job.backend):
                while True:
                    with self._lock:
                        if self._stop or self._next >= len(self.job.starts):
                            return
                        index = self._next
                        self._next += 1
                    self._local_results.append(self.job.emulate_batch(self.job.starts[index]))
        except BaseException as exc:  # re-raised in the main thread
            self._local_error = exc

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        job = self.job
        sizes = job.sizes()
        front = threading.Thread(target=self._emulate_front, name="crossmap-front-batches", daemon=True)
        front.start()
        tasks: list[tuple[int, int, Any]] = []
        ray = None
        try:
            ray = connect(self.address)   # in the main thread: Ray's processes live as long as it does
            self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            with self._lock:
                self._stop = True
                first = self._next
            rest = len(job.starts) - first
            if rest:
                job_ref = ray.put(job)
                remote = ray.remote(num_cpus=1)(_run_shard)
                shards = min(rest, self.cpus * SHARDS_PER_CPU)
                bounds = [first + round(k * rest / shards) for k in range(shards + 1)]
                tasks = [(lo, hi, remote.remote(job_ref, job.starts[lo:hi], self.cpus))
                         for lo, hi in zip(bounds[:-1], bounds[1:])]
        finally:
            with self._lock:
                self._stop = True
            front.join()
        if self._local_error is not None:
            self._cancel(ray, tasks)
            raise self._local_error
        self.local = len(self._local_results)
        yield from zip(sizes, self._local_results)
        try:
            for lo, hi, task in tasks:
                yield from zip(sizes[lo:hi], ray.get(task))
        except BaseException:  # an error or an interrupted run: stop the rest
            self._cancel(ray, tasks)
            raise

    @staticmethod
    def _cancel(ray: Any, tasks: list[tuple[int, int, Any]]) -> None:
        for _, _, task in tasks:
            ray.cancel(task)

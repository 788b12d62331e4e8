"""Emulating a dataset over a Ray cluster: the batches are split into contiguous shards, one Ray
task per shard (one CPU each), and the figures come back batch by batch in order, so the sums are
the same as in one process.

Connecting costs seconds (a local ``ray.init`` starts a dozen processes: 4-5 s on 2 busy CPUs),
and a Ray worker's first task starts it, so batches are emulated here too, in a thread of this
process, from the first one on while the main thread connects, until Ray's first task has
finished: the thread and the Ray tasks take the next batches from one counter. Every batch is emulated once, either here
or in a Ray task, on its own (stochastic draws keyed by the sample index), so where it ran
changes no figure. Each Ray worker prepares the backend once per
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


def shard_size(left: int, cpus: int, largest: int) -> int:
    """Batches for the next Ray task when ``left`` batches are not taken yet: ``largest`` while
    many are left, then fewer, down to one, so the cluster's CPUs run out of work together
    (the last tasks are short; a long last task would keep one CPU busy while the others idle)."""
    return max(1, min(largest, -(-left // (4 * cpus))))


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
    """The batches of ``job`` on the Ray cluster at ``address`` (``"local"``: a local Ray) and in
    this process. Iterate for (batch size, figures) in batch order; ``cpus`` (the cluster's CPUs)
    and ``local`` (batches emulated here) are set as it runs.

    Both take the next batches from one counter: a thread here takes one at a time from the
    start, while Ray connects and its workers start, until the first Ray task has finished (then
    the cluster's CPUs are busy and this process only waits); Ray tasks take runs of ``shard``
    batches, two tasks per cluster CPU in flight, topped up as tasks finish."""

    def __init__(self, job: Any, address: str) -> None:
        self.job, self.address = job, address
        self.cpus = 0
        self.local = 0
        self._ready = threading.Condition()   # guards the fields below
        self._next = 0                   # the first batch nobody has taken
        self._stop = False               # set when Ray has finished a task, or the run ends or fails
        self._here: dict[int, Any] = {}  # batch index -> figures emulated here, until yielded
        self._local_error: BaseException | None = None

    def _take(self, count: int) -> range:
        """The next ``count`` (or fewer) batches nobody has taken, now taken."""
        with self._ready:
            lo = self._next
            self._next = min(len(self.job.starts), lo + count)
            return range(lo, self._next)

    def _emulate_here(self) -> None:
        """Emulate the next batch here while any is left (thread body)."""
        from crossmap.runner import _threads_in_this_process

        try:
            with _threads_in_this_process(self.job.backend):
                while not self._stop:
                    taken = self._take(1)
                    if not taken:
                        return
                    figures = self.job.emulate_batch(self.job.starts[taken[0]])
                    with self._ready:
                        self._here[taken[0]] = figures
                        self.local += 1
                        self._ready.notify_all()
        except BaseException as exc:  # re-raised in the main thread
            with self._ready:
                self._local_error = exc
                self._ready.notify_all()

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        job = self.job
        sizes = job.sizes()
        here = threading.Thread(target=self._emulate_here, name="crossmap-front-batches", daemon=True)
        here.start()
        ray: Any = None
        owner: dict[int, tuple[Any, int]] = {}   # batch index -> (its Ray task, position in the task)
        running: list[Any] = []                  # tasks submitted and not known to be finished
        left: dict[Any, int] = {}                # task -> its batches not yet yielded

        def top_up(shard: int) -> None:
            finished, _ = ray.wait(running, num_returns=len(running), timeout=0) if running else ([], [])
            for task in finished:
                running.remove(task)
            if finished and not self._stop:   # Ray's workers are up: this process stops taking batches
                with self._ready:
                    self._stop = True
            while len(running) < 2 * self.cpus:
                with self._ready:
                    left_over = len(job.starts) - self._next
                taken = self._take(shard_size(left_over, self.cpus, shard))
                if not taken:
                    return
                task = remote.remote(job_ref, [job.starts[i] for i in taken], self.cpus)
                running.append(task)
                owner.update((i, (task, k)) for k, i in enumerate(taken))
                left[task] = len(taken)

        try:
            ray = connect(self.address)   # in the main thread: Ray's processes live as long as it does
            self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            job_ref = ray.put(job)
            remote = ray.remote(num_cpus=1)(_run_shard)
            shard = max(1, -(-len(job.starts) // (self.cpus * SHARDS_PER_CPU)))
            top_up(shard)
            results: dict[Any, list[Any]] = {}
            for index, size in enumerate(sizes):
                while index not in owner:   # taken here (or about to be)
                    with self._ready:
                        if self._local_error is not None:
                            raise self._local_error
                        if index in self._here:
                            break
                        self._ready.wait(0.05)
                    top_up(shard)
                if index in owner:
                    task, position = owner.pop(index)
                    while task not in results:
                        done, _ = ray.wait([task], timeout=0.05)
                        if done:
                            results[task] = ray.get(task)
                        top_up(shard)
                    figures = results[task][position]
                    left[task] -= 1
                    if not left[task]:
                        del results[task], left[task]
                    yield size, figures
                else:
                    with self._ready:
                        figures = self._here.pop(index)
                    yield size, figures
        except BaseException:  # an error or an interrupted run: stop the rest
            if ray is not None:
                for task in running:
                    ray.cancel(task)
            raise
        finally:
            with self._ready:
                self._stop = True
            here.join()

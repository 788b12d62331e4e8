"""Emulating a dataset over a Ray cluster: the batches are split into contiguous shards, one Ray
task per shard (one CPU each), and the figures come back batch by batch in order, so the sums are
the same as in one process.

Ray is optional (``pip install 'crossmap[ray]'``) and imported only here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from crossmap.errors import CrossmapError

# shards per CPU of the cluster: more than one keeps the progress moving and the CPUs busy while
# a slow shard finishes; few keep Ray's per-task cost small
SHARDS_PER_CPU = 4


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


def _run_shard(job: Any, starts: list[int], processes: int) -> list[Any]:
    """The figures of the batches starting at ``starts``, run in a Ray worker."""
    from crossmap.runner import limit_threads

    limit_threads(processes)
    job.processes = processes
    return [job.emulate_batch(lo) for lo in starts]


def ray_batches(job: Any, address: str) -> tuple[Iterator[tuple[int, Any]], int]:
    """(iterator of (batch size, figures) in batch order, CPUs used) with the batches of ``job``
    run as Ray tasks on the cluster at ``address`` (``"local"``: a local Ray)."""
    ray = connect(address)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    sizes = job.sizes()
    shards = min(len(job.starts), cpus * SHARDS_PER_CPU)
    bounds = [round(k * len(job.starts) / shards) for k in range(shards + 1)]
    remote = ray.remote(num_cpus=1)(_run_shard)
    job_ref = ray.put(job)
    tasks = [remote.remote(job_ref, job.starts[bounds[k]:bounds[k + 1]], cpus) for k in range(shards)]

    def results() -> Iterator[tuple[int, Any]]:
        try:
            for k, task in enumerate(tasks):
                yield from zip(sizes[bounds[k]:bounds[k + 1]], ray.get(task))
        except BaseException:  # an error or an interrupted run: stop the rest
            for task in tasks:
                ray.cancel(task)
            raise

    return results(), cpus

"""Batches sharded over a local Ray of 2 CPUs and emulated in this process too (from the start,
while Ray connects): the same figures, batch by batch, as one process."""

import threading

import numpy as np
import pytest

from crossmap import ray_runner
from crossmap.errors import CrossmapError
from crossmap.runner import Job
from crossmap.testing import random_inputs, random_program, small_chip


def _job(backend: str, options: dict) -> Job:
    """A job of 13 batches of 4 samples of a random program with stochastic rules."""
    prog = random_program(small_chip(), 4, 21, recurrent=True, stochastic=True, density=0.5, input_ticks=3,
                          latency=5, num_inputs=12)
    x = random_inputs(prog, 50, 2, 0.4)[:, 0, :]
    return Job(prog, x, np.arange(50) % prog.num_classes, 4, backend, options)


def test_batches_here_and_on_ray_give_the_figures_of_one_process(monkeypatch):
    ray = pytest.importorskip("ray")
    job = _job("torch", {"path": "sparse"})
    expected = [job.emulate_batch(lo) for lo in job.starts]
    four_here, ray_took = threading.Event(), threading.Event()
    original, original_take = Job.emulate_batch, ray_runner.RayBatches._take
    sharded = ray_runner.RayBatches(_job("torch", {"path": "sparse"}), "local")

    def counting(self, lo):   # here: 4 batches, then the next ones once Ray has taken some
        if threading.current_thread().name == "crossmap-front-batches" and lo >= 4 * self.size:
            four_here.set()
            assert ray_took.wait(60)
        return original(self, lo)

    def take(self, count):
        if threading.current_thread() is threading.main_thread():
            ray_took.set()
        return original_take(self, count)

    real_connect = ray_runner.connect

    def slow_connect(address):   # Ray "starts" only after this process did 4 batches
        assert four_here.wait(60)
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        return real_connect(address)

    monkeypatch.setattr(Job, "emulate_batch", counting)
    monkeypatch.setattr(ray_runner.RayBatches, "_take", take)
    monkeypatch.setattr(ray_runner, "connect", slow_connect)
    try:
        got = list(sharded)
    finally:
        ray.shutdown()
    assert sharded.cpus == 2 and 5 <= sharded.local < len(job.starts)
    assert [size for size, _ in got] == job.sizes()
    for (_, (hits, activity, energy, classes)), (hits0, activity0, energy0, classes0) in zip(got, expected):
        assert (hits, activity, energy) == (hits0, activity0, energy0)
        np.testing.assert_array_equal(classes, classes0)


def test_a_failed_connection_stops_the_front_batches_and_says_so(monkeypatch):
    def refuse(address):
        raise CrossmapError(f"could not connect to the Ray cluster at {address!r}")

    monkeypatch.setattr(ray_runner, "connect", refuse)
    sharded = ray_runner.RayBatches(_job("emulator", {}), "10.0.0.1:6379")
    with pytest.raises(CrossmapError, match="could not connect to the Ray cluster at '10.0.0.1:6379'"):
        list(sharded)
    assert sharded._stop and sharded._next <= len(sharded.job.starts)


def test_a_process_running_ray_spawns_its_workers_instead_of_forking(monkeypatch):
    import sys
    import types

    from crossmap import runner

    fake = types.ModuleType("ray")
    fake.is_initialized = lambda: True   # forking a process that holds Ray's threads can hang the child
    monkeypatch.setitem(sys.modules, "ray", fake)
    assert runner._start_method() == "spawn"
    job = _job("emulator", {})
    expected = [job.emulate_batch(lo) for lo in job.starts]
    got = list(runner._batches(_job("emulator", {}), 2))
    for (_, (hits, activity, energy, classes)), (hits0, activity0, energy0, classes0) in zip(got, expected):
        assert (hits, activity, energy) == (hits0, activity0, energy0)
        np.testing.assert_array_equal(classes, classes0)


def test_shards_shrink_to_one_batch_as_the_batches_run_out():
    sizes = []
    left = 40
    while left:
        size = ray_runner.shard_size(left, cpus=2, largest=3)
        sizes.append(size)
        left -= size
    assert sizes[0] == 3 and sizes[-1] == 1
    assert sizes == sorted(sizes, reverse=True)
    assert ray_runner.shard_size(1000, cpus=2, largest=3) == 3
    assert ray_runner.shard_size(5, cpus=2, largest=3) == 1

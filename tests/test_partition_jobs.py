"""Packing with several processes gives the same program as with one."""

from __future__ import annotations

import os

import numpy as np
import pytest

import crossmap.parallel as parallel
import crossmap.passes.partition as partition_module
import crossmap.passes.partition.plan as plan_module
from crossmap.errors import InputError
from crossmap.compiler import check_jobs
from crossmap.passes.partition import Partition
from crossmap.parallel import in_background, run_tasks
from crossmap.pipeline import CompileState
from crossmap.program import ARRAY_FIELDS

from test_partition import three_layer



def packed(net, jobs: int, fanout: str):
    state = CompileState(chip=net.chip, deployed=net, seed=3, jobs=jobs)
    return Partition(fanout=fanout, time_limit=1.0).run(state)


@pytest.mark.parametrize("fanout", ["copy", "auto"])
def test_two_jobs_give_the_program_of_one(monkeypatch, fanout):
    monkeypatch.setattr(plan_module, "PARALLEL_MIN_SYNAPSES", 0)  # every group's candidates in processes
    monkeypatch.setattr(partition_module, "BACKGROUND_TRAFFIC_NEURONS", (0, 10**9))  # the traffic in a process
    monkeypatch.setattr(parallel, "BACKGROUND_MAX_RESIDENT", 1 << 62)
    calls = []
    real = plan_module.run_tasks

    def counting(function, shared, tasks, jobs):
        calls.append((len(tasks), jobs))
        return real(function, shared, tasks, jobs)

    monkeypatch.setattr(plan_module, "run_tasks", counting)
    net = three_layer(seed=5)
    one, two = packed(net, 1, fanout), packed(net, 2, fanout)
    assert any(tasks >= 2 and jobs == 2 for tasks, jobs in calls)  # some group really went to two processes
    for name in ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(one.program, name), getattr(two.program, name), err_msg=name)
    assert one.reports["partition"] == two.reports["partition"]
    assert one.reports["partition"]["traffic"]["spikes_per_sample"] > 0


def test_tasks_come_back_in_order_whatever_the_jobs():
    shared = (np.arange(10),)
    tasks = [(k,) for k in range(7)]
    want = [int((shared[0] * k).sum()) for k in range(7)]
    for jobs in (1, 2, 3):
        assert run_tasks(lambda a, k: int((a * k).sum()), shared, tasks, jobs) == want


def _total(values: np.ndarray, scale: int) -> int:
    if scale < 0:
        raise ValueError(f"negative scale {scale}")
    return int(values.sum()) * scale


def _where(values: np.ndarray) -> tuple[int, int]:
    return os.getpid(), int(values.sum())


@pytest.mark.parametrize("enabled", [False, True])
def test_background_work_gives_its_answer_or_its_error(enabled, monkeypatch):
    monkeypatch.setattr(parallel, "BACKGROUND_MAX_RESIDENT", 1 << 62)  # this test process may be large
    values = np.arange(100)
    assert in_background(_total, (values, 3), enabled=enabled).result() == 3 * 4950
    pending = in_background(_where, (values,), enabled=enabled)
    pid, total = pending.result()
    assert total == 4950 and (pid != os.getpid()) == enabled == pending.forked
    waiting = in_background(_total, (values, -1), enabled=enabled)
    with pytest.raises(ValueError, match="negative scale -1"):
        waiting.result()


def test_a_large_process_does_its_background_work_itself(monkeypatch):
    monkeypatch.setattr(parallel, "BACKGROUND_MAX_RESIDENT", 1)
    pid, total = in_background(_where, (np.arange(10),)).result()
    assert (pid, total) == (os.getpid(), 45)


def test_jobs_must_be_a_positive_count():
    assert check_jobs(None) >= 1 and check_jobs(3) == 3
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InputError, match="jobs"):
            check_jobs(bad)

"""binarize_deterministic with several processes gives the deployed network and program of one."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from crossmap.testing.binarize_nets import readout_matrix, state_for, step_pop

import crossmap.passes.binarize.deterministic as deterministic
from crossmap.errors import BinarizeError
from crossmap.ir import INPUT, Network, Population, Projection
from crossmap.passes.binarize.deterministic import BinarizeDeterministic
from crossmap.passes.partition import Partition
from crossmap.parallel import iter_tasks
from crossmap.program import ARRAY_FIELDS


def two_member_ensemble(seed: int = 0) -> Network:
    """Two branches of different depths voting together: relays, timed neurons, a readout."""
    rng = np.random.default_rng(seed)

    def weights(rows: int, cols: int, levels: tuple[int, ...] = (-1, 0, 1)) -> sp.csr_matrix:
        return sp.csr_matrix(rng.choice(np.array(levels, float), (rows, cols)))

    pops = [Population(INPUT, (24,)), step_pop("a1", 20, rng.integers(-2, 3, 20) + 0.5),
            step_pop("a2", 16, rng.integers(-2, 3, 16) + 0.5), step_pop("a3", 12, rng.integers(-2, 3, 12) + 0.5),
            step_pop("b1", 18, rng.integers(0, 3, 18) + 0.5), step_pop("b2", 12, rng.integers(-2, 3, 12) + 0.5),
            Population("y", (3,))]
    projs = [Projection(INPUT, "a1", weights(20, 24, (-2, -1, 0, 1, 2))), Projection("a1", "a2", weights(16, 20)),
             Projection("a2", "a3", weights(12, 16)), Projection(INPUT, "b1", weights(18, 24)),
             Projection("b1", "b2", weights(12, 18, (-1, 0, 3))), Projection(INPUT, "b2", weights(12, 24)),
             Projection("a3", "y", readout_matrix(12, 3)), Projection("b2", "y", readout_matrix(12, 3))]
    return Network(pops, projs, "y")


def binarized(net: Network, jobs: int, **options):
    state = state_for(net, seed=3)
    state.jobs = jobs
    return BinarizeDeterministic(**options).run(state)


def assert_same_deployed(one, two) -> None:
    a, b = one.deployed, two.deployed
    assert [g.name for g in a.groups] == [g.name for g in b.groups]
    for ga, gb in zip(a.groups, b.groups):
        for field, value in vars(ga).items():
            other = getattr(gb, field)
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, other, err_msg=f"{ga.name}.{field}")
                assert value.dtype == other.dtype
            else:
                assert value == other, (ga.name, field)
    assert len(a.lines) == len(b.lines)
    for la, lb in zip(a.lines, b.lines):
        assert (la.source, la.target) == (lb.source, lb.target)
        for field in ("source_index", "axon_type"):
            np.testing.assert_array_equal(getattr(la, field), getattr(lb, field))
        assert (la.synapses != lb.synapses).nnz == 0 and la.synapses.shape == lb.synapses.shape
    assert a.encoding == b.encoding and a.num_inputs == b.num_inputs
    assert one.reports == two.reports


@pytest.mark.parametrize("timed", [True, False])
def test_two_jobs_give_the_deployed_network_and_program_of_one(monkeypatch, timed):
    monkeypatch.setattr(deterministic, "PARALLEL_MIN_SYNAPSES", 0)  # every network in processes
    calls = []
    real = deterministic.iter_tasks

    def counting(function, shared, tasks, jobs):
        calls.append((len(tasks), jobs))
        return real(function, shared, tasks, jobs)

    monkeypatch.setattr(deterministic, "iter_tasks", counting)
    net = two_member_ensemble()
    one, two = binarized(net, 1, timed=timed), binarized(net, 2, timed=timed)
    assert calls == [(5, 1), (5, 2)]
    assert_same_deployed(one, two)
    assert one.reports["binarize_deterministic"]["relay_groups"] >= 1
    Partition(time_limit=1.0).run(one)
    Partition(time_limit=1.0).run(two)
    for name in ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(one.program, name), getattr(two.program, name), err_msg=name)


def test_a_small_network_stays_in_this_process(monkeypatch):
    calls = []
    real = deterministic.iter_tasks
    monkeypatch.setattr(deterministic, "iter_tasks", lambda f, s, t, jobs: calls.append(jobs) or real(f, s, t, jobs))
    binarized(two_member_ensemble(), 2)
    assert calls == [1]


def test_the_first_failing_layer_is_reported_whatever_the_jobs(monkeypatch):
    """b1 (the fourth layer) has a neuron with six weights and a2 one beyond the chip's range:
    a2 fails first, with one process or two."""
    monkeypatch.setattr(deterministic, "PARALLEL_MIN_SYNAPSES", 0)
    net = two_member_ensemble(seed=1)
    projections = {(p.source, p.target): p for p in net.projections}
    wide = projections[(INPUT, "b1")].weight.toarray()
    wide[0, :6] = [1, 2, 3, 4, 5, -1]
    far = projections[("a1", "a2")].weight.toarray()
    far[2, :2] = [1.0, 300.0]
    projections[(INPUT, "b1")] = Projection(INPUT, "b1", sp.csr_matrix(wide))
    projections[("a1", "a2")] = Projection("a1", "a2", sp.csr_matrix(far))
    net = Network(net.populations, list(projections.values()), net.output)
    messages = []
    for jobs in (1, 2):
        with pytest.raises(BinarizeError) as info:
            binarized(net, jobs)
        messages.append(str(info.value))
    assert messages[0] == messages[1] and "'a2'" in messages[0]
    far[2, :2] = [1.0, 0.0]  # now only b1 fails, when its lines are typed
    projections[("a1", "a2")] = Projection("a1", "a2", sp.csr_matrix(far))
    net = Network(net.populations, list(projections.values()), net.output)
    for jobs in (1, 2):
        with pytest.raises(BinarizeError, match=r"layer 'b1': neuron 0 needs 6 distinct integer weights"):
            binarized(net, jobs)


def test_iter_tasks_yields_in_order_and_raises_in_turn():
    def square_or_fail(offset, k):
        if k == 4:
            raise ValueError("four")
        return (offset + k) ** 2

    for jobs in (1, 2, 3):
        results = iter_tasks(square_or_fail, (1,), [(k,) for k in range(6)], jobs)
        assert [next(results) for _ in range(4)] == [1, 4, 9, 16]
        with pytest.raises(ValueError, match="four"):
            next(results)
        results.close()

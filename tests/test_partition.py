"""The partition pass: partitioned programs emulate exactly like the deployed network, resources
are checked, bounds are reported and the output is deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crossmap
from crossmap.chip import ChipSpec
from crossmap.deployed import INPUT, DeployedNetwork, Lines, NeuronGroup
from crossmap.errors import PipelineError, ResourceError, UnsupportedModelError
from crossmap.passes.partition import Partition
from crossmap.pipeline import CompileState, parse_pipeline

CHIP = ChipSpec.truenorth().replace(axons_per_core=16, neurons_per_core=8)


def lines(rng, source, target, n_source, n_target, count, density, types=4):
    """Random lines: ``count`` axons from random source neurons, random types and synapses."""
    idx = rng.integers(0, n_source, count)
    syn = rng.random((count, n_target)) < density
    return Lines(source, target, idx, rng.integers(0, types, count), sp.csr_matrix(syn))


def group(rng, name, size, chip=CHIP, **kw):
    """A group with random small weights and thresholds."""
    kw.setdefault("alpha", rng.integers(1, 4, size))
    kw.setdefault("delay", rng.integers(1, 3, size))
    return NeuronGroup.make(name, rng.integers(-3, 5, (size, chip.axon_types)), chip=chip, **kw)


def three_layer(seed=0, ticks=3, **group_kw):
    """input(12) -> a(24) -> b(16) -> out(6 neurons, 3 classes), with a skip a -> out."""
    rng = np.random.default_rng(seed)
    a = group(rng, "a", 24, **group_kw)
    b = group(rng, "b", 16)
    out = group(rng, "out", 6, output_class=[0, 1, 2, 0, 1, 2])
    net = DeployedNetwork(CHIP, 12, [a, b, out], [
        lines(rng, INPUT, "a", 12, 24, 14, 0.3),
        lines(rng, "a", "b", 24, 16, 20, 0.25),
        lines(rng, "b", "out", 16, 6, 14, 0.5),
        lines(rng, "a", "out", 24, 6, 6, 0.5),
    ], num_classes=3, input_ticks=ticks)
    return net.validate()


def partition(net, **options):
    state = CompileState(chip=net.chip, deployed=net, seed=3)
    options.setdefault("time_limit", 1.0)
    return Partition(**options).run(state)


def assert_exact(net, state, seed=1, batch=12):
    """The emulated program's class counts equal DeployedNetwork.simulate's."""
    rng = np.random.default_rng(seed)
    spikes = rng.random((batch, net.input_ticks, net.num_inputs)) < 0.4
    want = net.simulate(spikes)["class_counts"]
    got = crossmap.emulate(state.program, spikes).class_counts
    assert want.sum() > 0, "the test network should spike"
    np.testing.assert_array_equal(got, want)


def check_limits(program):
    """Every core within A axons and N neurons, by construction of the arrays."""
    assert program.crossbar.shape[1:] == (CHIP.axons_per_core, CHIP.neurons_per_core)
    program.validate()


@pytest.mark.parametrize("fanout", ["copy", "splitter", "auto"])
def test_three_layer_network_is_exact(fanout):
    net = three_layer()
    state = partition(net, fanout=fanout)
    check_limits(state.program)
    assert state.program.num_cores >= 6
    assert_exact(net, state)
    report = state.reports["partition"]
    if report["fanout"] == "copy":
        assert report["copies"] > 0 and report["splitter_neurons"] == 0
    else:
        assert report["splitter_neurons"] > 0


def test_splitters_shift_later_layers_and_add_latency():
    net = three_layer(delay=1)  # every 'a' neuron has delay 1: a splitter hop cannot be absorbed
    state = partition(net, fanout="splitter")
    report = state.reports["partition"]
    assert report["delay"]["group_shifts"].get("b", 0) >= 1
    assert report["delay"]["added_latency"] >= 1
    assert state.program.latency == net.latency() + report["delay"]["added_latency"]
    assert_exact(net, state)


def test_splitter_hop_absorbed_by_long_delays():
    net = three_layer(delay=3)
    state = partition(net, fanout="splitter")
    report = state.reports["partition"]
    assert report["delay"]["group_shifts"].get("b", 0) == 0
    assert_exact(net, state)


def test_splitter_into_a_leaky_group_is_refused_and_auto_falls_back():
    rng = np.random.default_rng(5)
    a = group(rng, "a", 16, delay=1)
    b = group(rng, "b", 12, leak=1, alpha=5, output_class=[0, 1] * 6)  # positive leak: never at rest
    net = DeployedNetwork(CHIP, 10, [a, b], [lines(rng, INPUT, "a", 10, 16, 12, 0.4),
                                             lines(rng, "a", "b", 16, 12, 16, 0.3)], num_classes=2).validate()
    with pytest.raises(ResourceError, match="group 'b'.*not at rest.*fanout=copy"):
        partition(net, fanout="splitter")
    state = partition(net, fanout="auto")
    assert state.reports["partition"]["fanout"] == "copy"
    assert "error" in state.reports["partition"]["candidates"][1]
    assert_exact(net, state)


def test_fan_out_beyond_a_core_uses_several_splitter_sets():
    """Each 'a' neuron reaches 10 axons (5 cores x 2 types) > N = 8 splitters a set."""
    rng = np.random.default_rng(9)
    a = group(rng, "a", 2, delay=2)
    b = group(rng, "b", 40, output_class=np.arange(40) % 4)
    both = Lines("a", "b", np.array([0, 0, 1, 1]), np.array([0, 1, 2, 3]), sp.csr_matrix(np.ones((4, 40), bool)))
    net = DeployedNetwork(CHIP, 5, [a, b], [lines(rng, INPUT, "a", 5, 2, 5, 0.8), both], num_classes=4,
                          input_ticks=4).validate()
    state = partition(net, fanout="splitter")
    report = state.reports["partition"]
    assert report["splitter_neurons"] == 20
    assert report["copies"] == 2  # one extra instance per 'a' neuron: two splitter sets of <= 8
    assert report["delay"]["added_latency"] == 0  # delay 2 absorbs the splitter hop
    assert_exact(net, state)
    copy = partition(net, fanout="copy")
    assert copy.reports["partition"]["copies"] == 18
    assert_exact(net, copy)


def test_repeated_lines_need_separate_axons():
    """Two lines from the same neuron with the same type onto one target neuron add twice."""
    rng = np.random.default_rng(2)
    a = group(rng, "a", 4, delay=1)
    out = NeuronGroup.make("out", np.array([[2, 0, 0, 0], [1, 0, 0, 0]]), alpha=4, chip=CHIP, output_class=[0, 1])
    twice = Lines("a", "out", np.array([0, 0, 1]), np.array([0, 0, 0]), sp.csr_matrix(np.ones((3, 2), bool)))
    net = DeployedNetwork(CHIP, 6, [a, out], [lines(rng, INPUT, "a", 6, 4, 8, 0.6), twice], num_classes=2,
                          input_ticks=2).validate()
    state = partition(net)
    program = state.program
    core = int(np.flatnonzero((program.neuron_group == 1).any(axis=1))[0])
    assert program.crossbar[core].any(axis=1).sum() >= 3
    assert_exact(net, state)


def test_output_neuron_that_also_feeds_a_layer():
    rng = np.random.default_rng(7)
    a = group(rng, "a", 8, output_class=[0, 1] * 4, delay=2)  # delay 2: room for a splitter hop
    b = group(rng, "b", 6, output_class=[1, 0, 1, 0, 1, 0])
    net = DeployedNetwork(CHIP, 8, [a, b], [lines(rng, INPUT, "a", 8, 8, 10, 0.4),
                                            lines(rng, "a", "b", 8, 6, 8, 0.5)], num_classes=2,
                          input_ticks=3).validate()
    for fanout in ("copy", "splitter"):
        state = partition(net, fanout=fanout)
        assert state.program.num_ports == 14
        assert_exact(net, state)
    net.groups[0].delay[:] = 1  # now 'b' would run a tick behind 'a', but outputs share one window
    with pytest.raises(ResourceError, match="output groups must share one shift"):
        partition(net, fanout="splitter")


def test_multicast_inputs_reach_every_core_that_reads_them():
    rng = np.random.default_rng(4)
    a = group(rng, "a", 30, output_class=np.arange(30) % 3)
    net = DeployedNetwork(CHIP, 6, [a], [lines(rng, INPUT, "a", 6, 30, 10, 0.5)], num_classes=3,
                          input_ticks=4).validate()
    state = partition(net)
    program = state.program
    assert program.num_cores == 4
    assert np.bincount(program.input_channel).max() >= 4  # one channel on all four cores
    assert "copies" in state.reports["partition"] and state.reports["partition"]["copies"] == 0
    assert_exact(net, state)


def test_patches_pack_one_core_each_and_meet_the_bound():
    """Esser-style layout: 4 overlapping 4x4 patches of a 6x6 image, 8 neurons per patch."""
    rng = np.random.default_rng(8)
    pixels = np.arange(36).reshape(6, 6)
    patches = [pixels[y:y + 4, x:x + 4].reshape(-1) for y in (0, 2) for x in (0, 2)]
    neurons = 32
    order = rng.permutation(neurons)  # patch of each neuron, shuffled so the order does not help
    src, tgt = [], []
    for n in range(neurons):
        for p in patches[order[n] % 4]:
            src.append(p)
            tgt.append(n)
    syn = sp.csr_matrix((np.ones(len(src), bool), (np.arange(len(src)), tgt)), shape=(len(src), neurons))
    a = group(rng, "a", neurons, output_class=np.arange(neurons) % 2)
    net = DeployedNetwork(CHIP, 36, [a], [Lines(INPUT, "a", np.array(src), np.zeros(len(src), int), syn)],
                          num_classes=2).validate()
    state = partition(net, solver=False)
    report = state.reports["partition"]
    assert report["lower_bound"] == {"cores": 4, "neurons": 4, "axons": 3, "conflicts": 4}
    assert report["cores"] == 4 and report["gap"] == 0
    assert_exact(net, state)


def test_fan_in_beyond_axons_is_a_resource_error():
    rng = np.random.default_rng(0)
    a = group(rng, "wide", 3)
    full = Lines(INPUT, "wide", np.arange(20), np.zeros(20, int), sp.csr_matrix(np.ones((20, 3), bool)))
    net = DeployedNetwork(CHIP, 20, [a], [full], num_classes=1).validate()
    with pytest.raises(ResourceError, match=r"group 'wide'.*reads 20 distinct axons.*has 16.*block-sparse.*binarize_lsq"):
        partition(net)


def test_too_many_cores_for_the_board():
    chip = CHIP.replace(mesh_x=2, mesh_y=2)
    rng = np.random.default_rng(0)
    a = group(rng, "a", 40, chip=chip)
    net = DeployedNetwork(chip, 4, [a], [lines(rng, INPUT, "a", 4, 40, 4, 0.5)], num_classes=1).validate()
    with pytest.raises(ResourceError, match=r"partition: the program needs 5 cores or more: the deployed network has "
                                            r"40 neurons.*has 4.*'a'.*truenorth-auto.*smallest board that fits is at "
                                            r"least 2 x 1"):
        partition(net)


def test_a_network_too_big_for_the_board_stops_before_packing(monkeypatch):
    chip = CHIP.replace(mesh_x=2, mesh_y=2)
    rng = np.random.default_rng(0)
    wide, narrow = group(rng, "wide", 30, chip=chip), group(rng, "narrow", 6, chip=chip)
    net = DeployedNetwork(chip, 4, [wide, narrow], [lines(rng, INPUT, "wide", 4, 30, 4, 0.5),
                                                   lines(rng, "wide", "narrow", 30, 6, 8, 0.5)],
                          num_classes=1).validate()
    packing = crossmap.passes.partition.plan_partition

    def no_packing(*args, **kwargs):
        raise AssertionError("packed before checking the capacity")

    monkeypatch.setattr(crossmap.passes.partition, "plan_partition", no_packing)
    with pytest.raises(ResourceError, match=r"needs 5 cores or more.*36 neurons.*has 4.*'wide'.*30 neurons, at least 4 "
                                            r"cores.*truenorth-auto"):
        partition(net)
    monkeypatch.setattr(crossmap.passes.partition, "plan_partition", packing)
    assert partition(net, board="auto").program.num_cores >= 5


def test_recurrent_network_is_refused():
    rng = np.random.default_rng(0)
    a, b = group(rng, "a", 4), group(rng, "b", 4)
    net = DeployedNetwork(CHIP, 4, [a, b], [lines(rng, INPUT, "a", 4, 4, 4, 0.5), lines(rng, "a", "b", 4, 4, 4, 0.5),
                                            lines(rng, "b", "a", 4, 4, 4, 0.5)], num_classes=1).validate()
    with pytest.raises(UnsupportedModelError, match="recurrent.*'a'"):
        partition(net)


def test_unknown_fanout_and_missing_deployed():
    with pytest.raises(PipelineError, match="fanout='many'.*copy, splitter, auto"):
        Partition(fanout="many").run(CompileState(chip=CHIP))
    with pytest.raises(PipelineError, match="needs a deployed network.*binarize"):
        Partition().run(CompileState(chip=CHIP))


def test_pipeline_spec_options():
    (p,) = parse_pipeline("partition{fanout=auto;time_limit=0.5;solver=false}", given=("deployed",))
    assert (p.fanout, p.time_limit, p.solver) == ("auto", 0.5, False)


def test_report_bounds_and_program_metadata():
    net = three_layer()
    state = partition(net)
    report = state.reports["partition"]
    N, A = CHIP.neurons_per_core, CHIP.axons_per_core
    assert report["lower_bound"]["neurons"] == -(-net.num_neurons // N)
    assert report["cores"] == state.program.num_cores >= report["lower_bound"]["cores"]
    assert report["gap"] == report["cores"] - report["lower_bound"]["cores"]
    assert sum(r["neurons"] for r in report["groups"]) == net.num_neurons
    program = state.program
    assert program.group_names == ["a", "b", "out"]
    assert len(program.core_labels) == program.num_cores
    for label in program.core_labels:
        assert set(label.split("+")) <= {"a", "b", "out", "splitters"}
    assert program.input_ticks == net.input_ticks and program.encoding == net.encoding
    # provenance: every deployed neuron is on the chip at least once
    for g, grp in enumerate(net.groups):
        assert set(program.neuron_index[program.neuron_group == g].tolist()) == set(range(grp.size))
    # axons used per core never exceed A, neurons never exceed N (arrays have those shapes) and
    # the report's figures agree with the arrays
    assert int(program.crossbar.any(axis=2).sum(axis=1).max()) <= A


def test_core_graph_traffic_matches_simulation():
    net = three_layer(ticks=2)
    state = partition(net, traffic_samples=16)
    graph, program = state.core_graph, state.program
    assert sorted(graph.nodes) == list(range(program.num_cores))
    for c in graph.nodes:
        node = graph.nodes[c]
        assert node["neurons"] <= CHIP.neurons_per_core and node["axons"] <= CHIP.axons_per_core
        assert node["synapses"] == int(program.crossbar[c].sum())
    # expected spikes per sample leaving each core == the sum over its routed neurons of their
    # simulated spike counts (same random input the pass uses)
    rng = np.random.default_rng(3)
    spikes = rng.random((16, net.input_ticks, net.num_inputs)) < 0.5
    rec = net.simulate(spikes, record=True)["spikes"]
    rate = {name: s.sum(axis=0).mean(axis=0) for name, s in rec.items()}
    for c in graph.nodes:
        routed = (program.target_core[c] >= 0) & (program.neuron_group[c] >= 0)
        want = sum(rate[net.groups[program.neuron_group[c, j]].name][program.neuron_index[c, j]]
                   for j in np.flatnonzero(routed))
        sent = sum(d["traffic"] for _, _, d in graph.out_edges(c, data=True)) + graph.nodes[c]["local_traffic"]
        assert sent == pytest.approx(want)
    channel_rate = spikes.sum(axis=1).mean(axis=0)
    for c in graph.nodes:
        want = channel_rate[program.input_channel[program.input_core == c]].sum()
        assert graph.nodes[c]["input_traffic"] == pytest.approx(want)


def test_rate_coded_calibration_inputs_drive_the_traffic_figures():
    from crossmap.encoding import encode, make_encoding

    net = three_layer(ticks=5)
    net.encoding = make_encoding("rate", channels=12, ticks=5, seed=2)
    x = np.random.default_rng(0).random((10, 12))
    state = CompileState(chip=CHIP, deployed=net, calibration=x)
    state = Partition(time_limit=1.0).run(state)
    report = state.reports["partition"]
    assert report["traffic"]["source"].startswith("simulate (calibration input, 10 samples")
    spikes = encode(net.encoding, x)
    program = state.program
    channel_rate = spikes.sum(axis=1).mean(axis=0)
    assert report["traffic"]["input"] == pytest.approx(channel_rate[program.input_channel].sum())
    want = net.simulate(spikes)["class_counts"]
    np.testing.assert_array_equal(crossmap.emulate(program, spikes).class_counts, want)


def test_stochastic_groups_are_partitioned_with_unit_traffic():
    rng = np.random.default_rng(3)
    a = group(rng, "a", 12, threshold_mask=3, stochastic_synapse=[True, False, False, False])
    out = group(rng, "out", 4, output_class=[0, 1, 0, 1])
    net = DeployedNetwork(CHIP, 6, [a, out], [lines(rng, INPUT, "a", 6, 12, 8, 0.4),
                                              lines(rng, "a", "out", 12, 4, 10, 0.5)], num_classes=2).validate()
    state = partition(net)
    report = state.reports["partition"]
    assert report["traffic"]["source"].startswith("unit")
    program = state.program
    on_chip = program.neuron_group == 0
    assert (program.threshold_mask[on_chip] == 3).all()
    assert program.stochastic_synapse[on_chip][:, 0].all() and not program.stochastic_synapse[on_chip][:, 1:].any()
    # traffic counts one spike per routed neuron and sample
    routed = int(((program.target_core >= 0) & (program.neuron_group >= 0)).sum())
    assert report["traffic"]["spikes_per_sample"] == pytest.approx(routed)


def test_determinism_same_checksum():
    net = three_layer(seed=11)
    first = partition(net, fanout="auto").program.checksum()
    second = partition(three_layer(seed=11), fanout="auto").program.checksum()
    assert first == second


def test_solver_never_worse_than_greedy():
    net = three_layer(seed=4)
    greedy = partition(net, solver=False).program.num_cores
    state = partition(net, solver=True, time_limit=2.0)
    assert state.program.num_cores <= greedy
    assert any(c["solver"] for c in state.reports["partition"]["candidates"]), "small groups go to CP-SAT"
    assert_exact(net, state)


def test_solver_beats_greedy_on_a_small_group():
    """13 neurons over 19 inputs: greedy needs 3 cores of 16 axons, CP-SAT finds 2."""
    rows = [[2, 6, 11, 17], [3, 9, 14, 18], [0, 3, 6, 7, 12, 16, 18], [7, 8, 12, 13, 16, 18], [1, 3, 11, 12, 13, 16],
            [4, 5, 12, 13, 14], [1, 2, 6, 14], [2, 4, 6, 8, 10], [2, 13, 15], [2, 4, 8, 9, 11, 13, 15, 16],
            [0, 2, 4, 6, 12], [0, 2, 4, 6, 8, 17], [3, 4, 5, 7, 11, 14, 15, 17, 18]]
    src = np.concatenate([np.array(r) for r in rows])
    tgt = np.repeat(np.arange(13), [len(r) for r in rows])
    syn = sp.csr_matrix((np.ones(src.size, bool), (src, tgt)), shape=(19, 13))
    rng = np.random.default_rng(1)
    a = group(rng, "a", 13, output_class=np.arange(13) % 2)
    net = DeployedNetwork(CHIP, 19, [a], [Lines(INPUT, "a", np.arange(19), np.zeros(19, int), syn)],
                          num_classes=2).validate()
    assert partition(net, solver=False).program.num_cores == 3
    state = partition(net, solver=True, time_limit=5.0)
    report = state.reports["partition"]
    assert report["cores"] == 2 == report["lower_bound"]["cores"]
    assert report["solver"][0]["greedy_cores"] == 3 and report["solver"][0]["cores"] == 2
    assert_exact(net, state)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), fanout=st.sampled_from(["copy", "splitter", "auto"]),
       merge=st.booleans())
def test_random_networks_are_exact(seed, fanout, merge):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, 20, 3)
    inputs = int(rng.integers(4, 14))
    groups = [group(rng, f"g{i}", int(n), delay=rng.integers(1, 4, int(n)), leak=rng.integers(-1, 1, int(n)),
                    reset_mode=rng.integers(0, 3, int(n)), beta=rng.integers(0, 3, int(n)))
              for i, n in enumerate(sizes)]
    last = groups[-1]
    last.output_class = (np.arange(last.size) % 3).astype(np.int32)
    wires = [lines(rng, INPUT, "g0", inputs, sizes[0], int(rng.integers(4, 12)), 0.4),
             lines(rng, "g0", "g1", sizes[0], sizes[1], int(rng.integers(4, 14)), 0.35),
             lines(rng, "g1", "g2", sizes[1], sizes[2], int(rng.integers(4, 14)), 0.35),
             lines(rng, "g0", "g2", sizes[0], sizes[2], int(rng.integers(1, 5)), 0.35)]
    net = DeployedNetwork(CHIP, inputs, groups, wires, num_classes=3, input_ticks=int(rng.integers(1, 4))).validate()
    try:
        state = partition(net, fanout=fanout, merge_groups=merge, solver=False)
    except ResourceError as exc:  # splitters can be impossible to realign (leaky groups); copies never
        assert fanout == "splitter" and "fanout=copy" in str(exc)
        return
    check_limits(state.program)
    rng2 = np.random.default_rng(seed + 1)
    spikes = rng2.random((8, net.input_ticks, inputs)) < 0.5
    want = net.simulate(spikes)["class_counts"]
    np.testing.assert_array_equal(crossmap.emulate(state.program, spikes).class_counts, want)


def test_bins_merge_into_an_unrelated_network_only_to_share_axons():
    from crossmap.passes.partition.plan import MergeHosts, Plan

    plan = Plan(mode="copy")
    core = plan.new_core()
    plan.cores[core].members.append((1, 0, 1))
    plan.cores[core].neurons = 1
    plan.cores[core].keys |= {1, 2}
    plan.key_cores.update({1: [core], 2: [core]})
    plan.join_family(core, 1)  # the core holds a group of family 1; the bins below are of family 0
    assert MergeHosts(plan, 1, None, 8, 8).best({5}, 1) == 0  # without families: any core with room
    apart = MergeHosts(plan, 1, 0, 8, 8)
    assert apart.best({5}, 1) == -1  # nothing shared: keep the networks apart
    assert apart.best({1, 5}, 1) == 0  # a shared axon: merge
    assert MergeHosts(plan, 1, 1, 8, 8).best({5}, 1) == 0  # the same family


def test_merge_host_is_the_core_sharing_most_axons_then_the_fullest_then_the_first():
    from crossmap.passes.partition.plan import MergeHosts, Plan

    rng = np.random.default_rng(7)
    A, N = 12, 10
    for trial in range(30):
        plan = Plan(mode="copy")
        families = rng.integers(0, 3, 25)
        for c in range(25):
            plan.new_core()
            keys = set(rng.choice(30, int(rng.integers(0, A + 1)), replace=False).tolist())
            plan.cores[c].keys |= keys
            plan.cores[c].neurons = int(rng.integers(0, N + 1))
            for k in keys:
                plan.key_cores.setdefault(k, []).append(c)
            plan.join_family(c, int(families[c]))
            if rng.random() < 0.2:
                plan.join_family(c, int(families[c]) + 1)  # two networks on one core
        family = int(rng.integers(0, 3))
        bin_keys = set(rng.choice(30, int(rng.integers(1, 8)), replace=False).tolist())
        need = int(rng.integers(1, 5))
        want, want_score = -1, None  # every core scanned in turn
        for c, core in enumerate(plan.cores):
            shared = len(bin_keys & core.keys)
            if (core.neurons + need > N or max(core.axons, len(bin_keys)) > A
                    or core.axons + len(bin_keys) - shared > A):
                continue
            if not shared and plan.core_family[c] != family:
                continue
            score = (-shared, N - core.neurons, c)
            if want_score is None or score < want_score:
                want, want_score = c, score
        assert MergeHosts(plan, 25, family, A, N).best(bin_keys, need) == want, trial


def local_chain(size=40, taps=2):
    """input(size) -> a(size) -> b(size) -> out, each neuron reading the 2 taps + 1 nearest
    neurons of the layer before (a 1-D convolution): a neuron of ``a`` is read by several cores."""
    rng = np.random.default_rng(4)
    near = sp.csr_matrix(np.abs(np.subtract.outer(np.arange(size), np.arange(size))) <= taps)
    a = group(rng, "a", size, alpha=np.ones(size, np.int64))
    b = group(rng, "b", size, alpha=np.ones(size, np.int64))
    out = group(rng, "out", 6, output_class=[0, 1, 2, 0, 1, 2])
    net = DeployedNetwork(CHIP, size, [a, b, out], [
        Lines(INPUT, "a", np.arange(size), np.zeros(size, np.int64), near),
        Lines("a", "b", np.arange(size), np.zeros(size, np.int64), near),
        lines(rng, "b", "out", size, 6, 14, 0.5),
    ], num_classes=3, input_ticks=1)
    return net.validate()


def test_copies_split_by_reader_make_a_sparser_core_graph(monkeypatch):
    """Each copy of a neuron packed with its reader's other inputs (partition_plan's per_reader
    items): exact, and fewer core-to-core links than keeping a neuron's copies together."""
    from crossmap.passes.partition import plan as partition_plan
    net = local_chain()
    state = partition(net, fanout="copy", solver=False)
    assert_exact(net, state)
    original = partition_plan._pack_group

    def together(*args, per_reader=False, **kwargs):
        return [] if per_reader else original(*args, **kwargs)

    monkeypatch.setattr(partition_plan, "_pack_group", together)
    kept_together = partition(net, fanout="copy", solver=False)
    assert_exact(net, kept_together)
    assert state.core_graph.number_of_edges() < kept_together.core_graph.number_of_edges()


def _jobs(rows: list[tuple[int, int, int, int]]):
    """Jobs from (source, kind, core, key) rows, already in order."""
    from crossmap.passes.partition.wiring import Jobs
    source, kind, core, key = (np.array(c, np.int64) for c in zip(*rows))
    return Jobs(source, kind, core, key, np.full(source.size, -1, np.int64))


def test_aimed_instances_take_the_jobs_of_their_reader():
    from crossmap.passes.partition.wiring import DIRECT, PORT, Instances, assign_jobs
    jobs = [(0, 0), (3, 10), (5, 11), (7, 12)]  # a port, then direct jobs (core, key)
    rows = [(s, PORT if c == 0 else DIRECT, c, k) for s in (5, 6) for c, k in jobs]
    aims = [-1, 7, 3, -1] + [-1] * 4
    instances = Instances(np.repeat([5, 6], 4), np.zeros(8, np.int64), np.arange(8), np.array(aims))
    assigned = assign_jobs(instances, _jobs(rows))
    assert [jobs[j % 4] for j in assigned[:4]] == [(0, 0), (7, 12), (3, 10), (5, 11)]
    assert assigned[4:].tolist() == [4, 5, 6, 7]


def plain_assign(instances, jobs) -> list[int]:
    """The job of each instance, neuron by neuron: an aimed instance takes the first direct job to
    its core still free, the others the free jobs in order."""
    result = []
    for source in np.unique(instances.source).tolist():
        mine = np.flatnonzero(instances.source == source).tolist()
        free = np.flatnonzero(jobs.source == source).tolist()
        chosen = []
        for i in mine:
            aim = int(instances.aim[i])
            match = next((j for j in free if aim >= 0 and jobs.kind[j] == 1 and jobs.core[j] == aim), None)
            if match is not None:
                free.remove(match)
            chosen.append(match)
        rest = iter(free)
        result += [j if j is not None else next(rest, -1) for j in chosen]
    return result


def test_job_assignment_matches_a_plain_walk():
    from crossmap.passes.partition.wiring import Instances, assign_jobs
    rng = np.random.default_rng(3)
    for _ in range(20):
        rows, sources, aims = [], [], []
        for source in range(12):
            jobs = rng.integers(0, 6)
            port = rng.random() < 0.3
            cores = np.sort(rng.integers(0, 4, jobs))
            rows += [(source, 0, 0, 0)] * port + [(source, 1, int(c), k) for k, c in enumerate(cores)]
            count = int(port) + jobs + int(rng.integers(-1, 2))
            sources += [source] * max(count, 1)
            aims += rng.choice([-1, 0, 1, 2, 3], max(count, 1)).tolist()
        if not rows:
            continue
        n = len(sources)
        instances = Instances(np.array(sources), np.zeros(n, np.int64), np.arange(n), np.array(aims))
        jobs = _jobs(rows)
        assert assign_jobs(instances, jobs).tolist() == plain_assign(instances, jobs)


def test_the_solver_run_reuses_the_greedy_packings(monkeypatch):
    """The run with CP-SAT packs again only the groups whose readers changed, and gives the
    program it gives when it packs every group afresh."""
    import crossmap.passes.partition as partition_pass
    from crossmap.passes.partition import plan as partition_plan
    net = three_layer(seed=4)
    packed = []
    pack_group = partition_plan._pack_group
    monkeypatch.setattr(partition_plan, "_pack_group", lambda *a, **k: packed.append(a[3]) or pack_group(*a, **k))
    shared = partition(net, solver=True, time_limit=2.0)
    shared_packs = len(packed)
    plan = partition_plan.plan_partition
    monkeypatch.setattr(partition_pass, "plan_partition", lambda *a: plan(*a[:6]))  # a new memo per run
    packed.clear()
    fresh = partition(net, solver=True, time_limit=2.0)
    assert shared.program.checksum() == fresh.program.checksum()
    assert 0 < shared_packs < len(packed)


def test_no_second_packing_when_no_group_qualifies_for_the_solver(monkeypatch):
    """The greedy run says whether any group would go to CP-SAT; when none would, the run with
    the solver (which would pack the same) is skipped, and the program is the greedy one."""
    import crossmap.passes.partition as partition_pass
    net = three_layer(seed=4)
    runs = []
    plan = partition_pass.plan_partition
    monkeypatch.setattr(partition_pass, "plan_partition", lambda *a: runs.append(a[5].solver) or plan(*a))
    none_small = partition(net, solver=True, solver_max_items=0)
    assert runs == [False]
    greedy = partition(net, solver=False)
    assert none_small.program.checksum() == greedy.program.checksum()
    runs.clear()
    partition(net, solver=True, solver_max_items=10_000, time_limit=2.0)
    assert runs == [False, True]


def test_packing_progress_lines_say_how_far_and_how_long():
    from crossmap.passes.partition.plan import PackProgress

    lines = []
    progress = PackProgress(100, "partition (fanout=copy)", lines.append, every=0.0)
    progress.group("out", 10)
    progress.group("hidden", 90)
    progress.done()
    assert lines[0].startswith("partition (fanout=copy): 0/100 neurons packed (0%), now group 'out' (10 neurons)")
    assert "10/100 neurons packed (10%), now group 'hidden'" in lines[1] and "s left" in lines[1]
    assert lines[2].startswith("partition (fanout=copy): 100 neurons packed in")


def test_a_compile_logs_every_stage():
    lines = []
    state = CompileState(chip=CHIP, deployed=three_layer(), seed=0, progress=lines.append)
    from crossmap.passes.place import Place

    state = Place().run(Partition(time_limit=1.0).run(state))
    text = "\n".join(lines)
    assert "measuring traffic" in text and "packing with fanout=copy" in text and "place: best start" in text

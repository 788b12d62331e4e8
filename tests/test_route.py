"""The route pass: relative targets, hops, link loads, chip crossings and latency on hand-made
programs, and its errors."""

import networkx as nx
import numpy as np
import pytest

from crossmap.chip import ChipSpec
from crossmap.errors import ProgramError, ResourceError
from crossmap.pipeline import CompileState, parse_pipeline
from crossmap.program import Program
from crossmap.routes import latency_ticks, link_loads, route_table


def chip() -> ChipSpec:
    """8 x 8 cells in 2 x 2 chips of 4 x 4."""
    return ChipSpec(name="route-test", axons_per_core=4, neurons_per_core=4, mesh_x=4, mesh_y=4, board_x=2, board_y=2)


def three_cores() -> Program:
    """core 0 at (0,0) feeds core 1 at (3,2) and core 2 at (5,2) (other chip); core 1 feeds core 2;
    core 2 neuron 0 is the output. Input channel 0 drives core 0 axon 0."""
    spec = chip()
    p = Program.empty(spec, 3, num_inputs=1, num_classes=1)
    p.core_xy = np.array([[0, 0], [3, 2], [5, 2]], np.int32)
    p.crossbar[0, 0, 0] = p.crossbar[0, 0, 1] = True
    p.crossbar[1, 0, 0] = True
    p.crossbar[2, 0, 0] = p.crossbar[2, 1, 0] = True
    p.target_core[0, 0], p.target_axon[0, 0], p.target_delay[0, 0] = 1, 0, 2
    p.target_core[0, 1], p.target_axon[0, 1], p.target_delay[0, 1] = 2, 1, 1
    p.target_core[1, 0], p.target_axon[1, 0], p.target_delay[1, 0] = 2, 0, 3
    p.output_port[2, 0] = 0
    p.port_class = np.zeros(1, np.int32)
    p.input_channel = np.zeros(1, np.int32)
    p.input_core = np.zeros(1, np.int32)
    p.input_axon = np.zeros(1, np.int32)
    p.latency = 5  # 2 (core 0 -> 1) + 3 (core 1 -> 2)
    return p.validate()


def traffic_graph() -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_edge(0, 1, traffic=4.0)
    g.add_edge(0, 2, traffic=2.0)
    g.add_edge(1, 2, traffic=3.0)
    return g


def run_route(program: Program, graph=None, spec: str = "route") -> dict:
    state = CompileState(chip=program.chip, program=program, core_graph=graph)
    return parse_pipeline(spec, given=("program",))[0].run(state).reports["route"]


def test_route_table_gives_relative_targets():
    table = route_table(three_cores())
    rows = sorted(zip(*(table[k].tolist() for k in ("core", "neuron", "dx", "dy", "axon", "delay"))))
    assert rows == [(0, 0, 3, 2, 0, 2), (0, 1, 5, 2, 1, 1), (1, 0, 2, 0, 0, 3)]


def test_hops_crossings_and_link_loads_by_hand():
    program = three_cores()
    report = run_route(program, traffic_graph())
    assert report["connections"] == 3
    assert report["hops_total"] == 5 + 7 + 2
    assert report["hops_max"] == 7
    assert report["chip_crossing_connections"] == 2
    assert report["spike_hops_per_sample"] == pytest.approx(4 * 5 + 2 * 7 + 3 * 2)
    assert report["chip_crossings_per_sample"] == pytest.approx(2 + 3)
    assert report["ticks"] == 6  # 1 input tick + 5 latency
    # links (0,0)->(1,0)->(2,0)->(3,0) carry 4 + 2 spikes per sample: 1 spike per tick
    assert report["link_load_max"] == pytest.approx(1.0)
    top = report["hottest_links"][:3]
    assert [(link["from"], link["to"]) for link in top] == [([0, 0], [1, 0]), ([1, 0], [2, 0]), ([2, 0], [3, 0])]
    assert report["links_used"] == 5 + 2 + 2 + 2  # east y=0: 5 links; north x=3: 2; north x=5: 2; east y=2: 2
    # links leaving chip 0: (3,0)->(4,0) with 2 spikes and (3,2)->(4,2) with 3, over 6 ticks
    assert report["chip_boundary_load"] == pytest.approx(5 / 6)
    assert report["latency_ticks"] == 5 == report["program_latency"]
    traffic = program.traffic  # the routed traffic is part of the program
    assert traffic.measured and "edges" not in report
    assert list(zip(traffic.src.tolist(), traffic.dst.tolist(), traffic.spikes.tolist())) == \
        [(0, 1, 4.0), (0, 2, 2.0), (1, 2, 3.0)]


def test_link_loads_match_a_step_by_step_walk():
    spec = chip()
    rng = np.random.default_rng(0)
    for _ in range(20):
        xy = rng.integers(0, 8, (6, 2))
        src, dst = rng.integers(0, 6, 10), rng.integers(0, 6, 10)
        traffic = rng.random(10)
        loads = link_loads(spec, xy, src, dst, traffic, ticks=3)
        walked = {}
        for s, d, t in zip(src, dst, traffic):
            x, y = xy[s]
            while x != xy[d][0]:
                step = 1 if xy[d][0] > x else -1
                walked[(x, y, x + step, y)] = walked.get((x, y, x + step, y), 0) + t
                x += step
            while y != xy[d][1]:
                step = 1 if xy[d][1] > y else -1
                walked[(x, y, x, y + step)] = walked.get((x, y, x, y + step), 0) + t
                y += step
        expected = sorted((k, v / 3) for k, v in walked.items() if v > 0)
        got = sorted(((h["from"][0], h["from"][1], h["to"][0], h["to"][1]), h["load"])
                     for h in loads.hottest(1000))
        assert [k for k, _ in got] == [k for k, _ in expected]
        assert np.allclose([v for _, v in got], [v for _, v in expected])


def test_without_core_graph_routes_count_neurons():
    report = run_route(three_cores())
    assert report["traffic"].startswith("routed neurons")
    assert report["spikes_per_sample"] == 3


def test_delay_outside_the_chip_range_is_an_error():
    p = three_cores()
    p.target_delay[1, 0] = 16  # beyond delay_max = 15, not validated on purpose
    with pytest.raises(ResourceError, match="neuron 0 of core 1 has delay 16.*1..15"):
        run_route(p)


def test_route_slower_than_its_delay_is_an_error_not_truncated():
    # at one hop per tick, core 0 -> core 2 (7 hops) needs 7 ticks but has delay 1
    with pytest.raises(ResourceError, match="delay 1 ticks but its route of 7 hops needs 7"):
        run_route(three_cores(), spec="route{hops_per_tick=1}")
    report = run_route(three_cores(), spec="route{hops_per_tick=8}")  # fast enough
    assert report["hops_max"] == 7


def test_latency_shorter_than_the_program_says_is_an_error():
    p = three_cores()
    p.latency = 4
    with pytest.raises(ProgramError, match="takes 5 ticks but program.latency is 4"):
        run_route(p)
    p.latency = 7
    with pytest.warns(UserWarning, match="2 idle ticks"):
        report = run_route(p)
    assert report["latency_ticks"] == 5


def test_latency_takes_the_longest_chain_and_detects_loops():
    p = three_cores()
    assert latency_ticks(p) == 5
    p.target_delay[0, 1] = 9  # the direct path 0 -> 2 now arrives at 9
    assert latency_ticks(p) == 9
    p.target_core[2, 1], p.target_axon[2, 1], p.target_delay[2, 1] = 2, 2, 1  # a loop, not reachable
    assert latency_ticks(p) == 9
    p.crossbar[2, 0, 1] = True  # now axon 0 feeds the looping neuron 1 ... which feeds axon 2 -> neuron 1
    p.crossbar[2, 2, 1] = True
    with pytest.raises(ProgramError, match="unbounded"):
        latency_ticks(p)

"""The place pass: optimal on small graphs (brute force), deterministic, resource errors, fallback,
and the heuristics' invariants."""

import warnings

import networkx as nx
import numpy as np
import pytest

import crossmap.parallel as parallel
import crossmap.passes.place as place_module
import crossmap.passes.place.search as search_module
from crossmap.chip import ChipSpec
from crossmap.errors import PipelineError, ResourceError
from crossmap.mesh import Mesh, edges_from_graph, placement_cost
from crossmap.passes.place.cost import adjacency, lower_bound
from crossmap.passes.place.cpsat import SolveResult
from crossmap.passes.place.local import anneal, improve_by_swaps
from crossmap.passes.place.start import greedy_cells, hilbert_order, spread_cells, starting_placements
from crossmap.pipeline import CompileState, format_pipeline, parse_pipeline
from crossmap.program import Program
from crossmap.testing.placement import conv_like_graph, mlp_like_graph
from place_graphs import brute_force, random_graph, tiny_chip


def run_place(chip: ChipSpec, graph: nx.DiGraph | None, spec: str = "place", seed: int = 0,
              program: Program | None = None) -> CompileState:
    n = graph.number_of_nodes() if graph is not None else program.num_cores
    state = CompileState(chip=chip, seed=seed, program=program or Program.empty(chip, n), core_graph=graph)
    (place,) = parse_pipeline(spec, given=("program", "core_graph"))
    return place.run(state)


@pytest.mark.parametrize("n,seed", [(4, 0), (5, 1), (5, 2), (6, 3), (6, 4)])
def test_small_placements_are_optimal(n, seed):
    chip = tiny_chip()
    graph = random_graph(n, 2 * n, seed)
    state = run_place(chip, graph, "place{time_limit=20;seconds_per_core=3}")
    report = state.reports["place"]
    best = brute_force(chip, graph)
    assert report["objective"] == pytest.approx(best)
    assert report["optimal"] is True
    assert report["lower_bound"] <= best + 1e-9
    xy = state.program.core_xy
    assert len({(int(x), int(y)) for x, y in xy}) == n  # distinct cells


def test_optimal_on_a_big_chip_equals_optimum_of_a_compact_board():
    # an optimal placement needs no empty row or column, so a 4 x 4 board has one for 4 cores
    graph = random_graph(4, 6, 7)
    state = run_place(ChipSpec.truenorth(), graph, "place{time_limit=20;seconds_per_core=3}")
    assert state.reports["place"]["objective"] == pytest.approx(brute_force(tiny_chip(4), graph))


def test_chip_crossings_are_penalized_optimally():
    chip = tiny_chip(mesh=2, board=2)  # 4 x 4 cells in 2 x 2 chips
    graph = random_graph(5, 8, 11)
    state = run_place(chip, graph, "place{time_limit=20;seconds_per_core=3;chip_crossing_penalty=3.0}")
    report = state.reports["place"]
    assert report["objective"] == pytest.approx(brute_force(chip, graph, penalty=3.0))
    assert report["chip_crossing_penalty"] == 3.0


def test_reproducible_placement_is_identical_twice():
    chip = ChipSpec.truenorth()
    for graph in (random_graph(12, 30, 5), conv_like_graph(60, seed=2)):
        first = run_place(chip, graph, "place{time_limit=1}", seed=3)
        second = run_place(chip, graph, "place{time_limit=1}", seed=3)
        assert np.array_equal(first.program.core_xy, second.program.core_xy)
        assert first.reports["place"] == second.reports["place"]


def test_bound_found_in_a_spare_process_equals_the_bound_found_inline(monkeypatch):
    monkeypatch.setattr(place_module, "BACKGROUND_BOUND_EDGES", 0)  # every graph's bound in a process
    monkeypatch.setattr(parallel, "BACKGROUND_MAX_RESIDENT", 1 << 62)  # this test process may be large
    forked = []
    real = place_module.in_background
    monkeypatch.setattr(place_module, "in_background", lambda *a, **k: forked.append(k) or real(*a, **k))
    graph = conv_like_graph(60, seed=4)
    chip = ChipSpec.truenorth()
    states = []
    for jobs in (1, 2):
        state = CompileState(chip=chip, seed=1, program=Program.empty(chip, 60), core_graph=graph, jobs=jobs)
        (place,) = parse_pipeline("place{time_limit=1}", given=("program", "core_graph"))
        states.append(place.run(state))
    one, two = states
    assert np.array_equal(one.program.core_xy, two.program.core_xy)
    assert one.reports["place"] == two.reports["place"]
    assert one.reports["place"]["lower_bound"] > 0
    assert [k["enabled"] for k in forked] == [False, True]


@pytest.mark.parametrize("graph", [conv_like_graph(120, seed=5), mlp_like_graph(150, layers=5, fan_in=5, seed=1)])
def test_windows_solved_two_at_a_time_give_the_placement_of_one_at_a_time(graph, monkeypatch):
    monkeypatch.setattr(search_module, "WINDOW_SHARE", 0.95)  # many short windows
    monkeypatch.setattr(search_module, "WINDOW_DETERMINISTIC_TIME", 0.01)
    checks = []
    real = search_module._moved_what_it_reads

    def counting(*args):
        checks.append(real(*args))
        return checks[-1]

    monkeypatch.setattr(search_module, "_moved_what_it_reads", counting)
    mesh = Mesh(ChipSpec.truenorth(), 0.0)
    edges = edges_from_graph(graph)
    one = search_module.search(mesh, edges, 1.0, seed=4, method="lns", threads=1)
    two = search_module.search(mesh, edges, 1.0, seed=4, method="lns", threads=2)
    assert one.windows_improved > 0  # some windows moved cores, so some early answers were stale
    assert np.array_equal(one.cells, two.cells)
    assert (one.cost, one.windows_tried, one.windows_improved, one.solver_status) == \
        (two.cost, two.windows_tried, two.windows_improved, two.solver_status)
    assert False in checks and True in checks  # some early answers were kept, some solved again


def test_a_window_reads_its_cores_and_their_neighbours():
    graph = nx.path_graph(4)  # 0 - 1 - 2 - 3
    nx.set_edge_attributes(graph, 1.0, "traffic")
    adj = adjacency(edges_from_graph(graph))
    before = np.array([0, 1, 2, 3])  # core i on cell i
    occupant = np.full(8, -1)
    window = np.array([0, 1])  # cores 0 and 1; core 1 reads core 2
    for moved_core, reads in ((3, False), (2, True), (1, True)):
        now = before.copy()
        now[moved_core] = 7
        occupant[:] = -1
        occupant[now] = np.arange(4)
        assert search_module._moved_what_it_reads(adj, occupant, window, before, now) is reads
    assert search_module._moved_what_it_reads(adj, occupant, window, before, before) is False


def test_layered_graph_beats_random_and_row_major_and_respects_bound():
    graph = mlp_like_graph(80, layers=4, fan_in=3, seed=1)
    report = run_place(ChipSpec.truenorth(), graph, "place{time_limit=2}").reports["place"]
    edges = edges_from_graph(graph)
    assert report["lower_bound"] >= edges.total - 1e-9  # every edge costs at least one hop
    assert report["lower_bound"] <= report["objective"] <= report["heuristic"] + 1e-9
    assert report["objective"] <= 0.5 * report["random"]
    assert report["objective"] < report["row_major"]
    assert report["strategy"] == "lns"
    assert 0 <= report["gap"] < 1


def test_too_many_cores_names_the_smallest_board():
    chip = tiny_chip(mesh=4)
    with pytest.raises(ResourceError, match=r"needs 20 cores.*has 16.*smallest board that fits is 2 x 1"):
        run_place(chip, random_graph(20, 10, 0))


def test_time_limit_zero_keeps_the_heuristic_with_a_warning():
    graph = random_graph(8, 16, 3)
    with pytest.warns(UserWarning, match="heuristic"):
        state = run_place(ChipSpec.truenorth(), graph, "place{time_limit=0}")
    report = state.reports["place"]
    assert report["warnings"] and report["objective"] == report["heuristic"]


def test_solver_without_solution_falls_back_to_heuristic(monkeypatch):
    import crossmap.passes.place.search as search_module

    monkeypatch.setattr(search_module, "solve_global",
                        lambda *args, **kwargs: SolveResult(None, "UNKNOWN", False, 0.0, 0.0))
    graph = random_graph(6, 10, 9)
    with pytest.warns(UserWarning, match="CP-SAT found no placement"):
        state = run_place(tiny_chip(), graph, "place{method=cpsat;time_limit=1}")
    report = state.reports["place"]
    assert report["solver_status"] == "UNKNOWN"
    assert report["objective"] <= report["heuristic"]
    assert len({tuple(r) for r in state.program.core_xy.tolist()}) == 6


def test_without_core_graph_places_by_routed_neurons():
    chip = tiny_chip(mesh=4)
    program = Program.empty(chip, 5)
    for c in range(4):  # a chain 0 -> 1 -> 2 -> 3 -> 4, two neurons per link
        program.target_core[c, :2] = c + 1
    state = run_place(chip, None, "place{time_limit=5}", program=program)
    report = state.reports["place"]
    assert report["traffic"].startswith("routed neurons")
    assert report["objective"] == pytest.approx(8.0)  # a chain of 4 links of weight 2, each one hop


def test_bad_options_are_pipeline_errors():
    chip = tiny_chip()
    with pytest.raises(PipelineError, match="method = 'annealing'"):
        run_place(chip, random_graph(3, 2, 0), "place{method=annealing}")
    with pytest.raises(PipelineError, match="time_limit"):
        run_place(chip, random_graph(3, 2, 0), "place{time_limit=-1}")
    with pytest.raises(PipelineError, match="needs a partitioned program"):
        parse_pipeline("place", given=("program",))[0].run(CompileState(chip=chip))


def test_place_options_round_trip_through_the_spec():
    spec = "place{time_limit=5.0;reproducible=false;method=heuristic;chip_crossing_penalty=none;seconds_per_core=0.1}"
    (place,) = parse_pipeline(spec, given=("program",))
    assert (place.time_limit, place.reproducible, place.method, place.chip_crossing_penalty) == (5.0, False,
                                                                                                  "heuristic", None)
    assert parse_pipeline(format_pipeline([place]), given=("program",)) == [place]


def test_hilbert_curve_visits_every_cell_by_unit_steps():
    mesh = Mesh(ChipSpec.truenorth())
    order = hilbert_order(mesh)
    assert np.array_equal(np.sort(order), np.arange(mesh.size))
    assert (mesh.hops(order[:-1], order[1:]) == 1).all()


def test_heuristics_keep_cells_distinct_and_never_get_worse():
    mesh = Mesh(ChipSpec.truenorth())
    graph = conv_like_graph(100, seed=4)
    edges = edges_from_graph(graph)
    adj = adjacency(edges)
    for name, cells in starting_placements(mesh, edges).items():
        assert np.unique(cells).size == 100, name
        better = improve_by_swaps(mesh, adj, cells, sweeps=2)
        assert np.unique(better).size == 100
        assert placement_cost(mesh, edges, better) <= placement_cost(mesh, edges, cells) + 1e-9
        annealed = anneal(mesh, adj, better, 5000, seed=1)
        assert np.unique(annealed).size == 100
    points = np.random.default_rng(0).random((50, 2))
    assert np.unique(spread_cells(mesh, points, np.arange(50))).size == 50
    assert np.unique(greedy_cells(mesh, adj, np.arange(100))).size == 100


def test_lower_bound_counts_nearest_cells():
    # a star: the centre's 6 neighbours need 4 cells at distance 1 and 2 at distance 2
    graph = nx.DiGraph()
    graph.add_edges_from((0, k, {"traffic": 1.0}) for k in range(1, 7))
    edges = edges_from_graph(graph)
    mesh = Mesh(ChipSpec.truenorth())
    # centre: 4*1 + 2*2 = 8; each leaf: 1; halved
    assert lower_bound(mesh, edges) == pytest.approx((8 + 6) / 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = run_place(ChipSpec.truenorth(), graph, "place{time_limit=20;seconds_per_core=3}").reports["place"]
    assert report["objective"] == pytest.approx(8.0)


def test_non_reproducible_mode_places_validly():
    graph = conv_like_graph(40, seed=6)
    state = run_place(ChipSpec.truenorth(), graph, "place{time_limit=1;reproducible=false}")
    report = state.reports["place"]
    assert report["reproducible"] is False
    assert report["objective"] <= report["heuristic"] + 1e-9
    assert len({tuple(r) for r in state.program.core_xy.tolist()}) == 40


def test_crossings_are_avoided_when_the_graph_fits_one_chip():
    chip = tiny_chip(mesh=4, board=2)  # 8 x 8 cells in 2 x 2 chips of 4 x 4
    graph = mlp_like_graph(16, layers=4, fan_in=2, seed=3)
    report = run_place(chip, graph, "place{time_limit=2}").reports["place"]
    assert report["chips_used"] == 1 and report["traffic_chip_crossings"] == 0


def test_components_start_gives_each_component_its_own_block():
    graph = nx.DiGraph()
    for k in range(3):  # three copies of a 3 x 4 grid, as an ensemble's copies would be
        grid = nx.grid_2d_graph(3, 4)
        index = {node: 12 * k + i for i, node in enumerate(grid.nodes)}
        graph.add_edges_from((index[a], index[b], {"traffic": 1.0}) for a, b in grid.edges)
    mesh = Mesh(ChipSpec.truenorth())
    edges = edges_from_graph(graph)
    starts = starting_placements(mesh, edges)
    cells = starts["components"]
    assert len(set(cells.tolist())) == 36
    xs = mesh.x[cells].reshape(3, 12)
    assert all(xs[k].max() < xs[k + 1].min() for k in range(2))  # blocks side by side
    assert placement_cost(mesh, edges, cells) <= placement_cost(mesh, edges, starts["greedy"])
    assert "components" not in starting_placements(mesh, edges_from_graph(conv_like_graph(20)))

"""Image positions of cores (crossmap.passes.place.geometry) and the place pass's spatial start."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import crossmap
from crossmap.chip import ChipSpec
from crossmap.mesh import Mesh, edges_from_graph, placement_cost
from crossmap.passes.place.geometry import input_positions
from crossmap.passes.place.search import search
from crossmap.testing.placement import conv_like_graph

MODELS = Path(__file__).resolve().parents[1] / "models"


def tiny_program() -> SimpleNamespace:
    """Five cores over a 1 x 4 x 4 image: core 0 reads the top-left 2 x 2 pixels, core 1 the
    bottom-right ones, core 2 two neurons of core 0, core 3 one neuron of core 0 and three of
    core 1 plus pixel (0, 3), core 4 nothing; a channel past the image (a bias) goes to core 2."""
    top_left, bottom_right = [0, 1, 4, 5], [10, 11, 14, 15]
    target = np.full((5, 4), -1)
    target[0, :3] = [2, 2, 3]
    target[1, :3] = 3
    return SimpleNamespace(num_cores=5, input_channel=np.array(top_left + bottom_right + [3, 16]),
                           input_core=np.array([0] * 4 + [1] * 4 + [3, 2]), target_core=target)


def test_positions_are_the_mean_image_position_of_each_cores_sources():
    position = input_positions(tiny_program(), (1, 4, 4))
    np.testing.assert_allclose(position[0], [0.125, 0.125])
    np.testing.assert_allclose(position[1], [0.625, 0.625])
    np.testing.assert_allclose(position[2], position[0])  # the bias channel has no position
    np.testing.assert_allclose(position[3], (position[0] + 3 * position[1] + [0.0, 0.75]) / 5)
    np.testing.assert_allclose(position[4], [0.5, 0.5])  # unreached


@pytest.mark.parametrize("shape", [None, (16,), (16, 1)])
def test_no_positions_without_an_image(shape):
    assert input_positions(tiny_program(), shape) is None


def test_spatial_start_keeps_the_layout_of_a_grid():
    # a 10 x 10 grid graph whose nodes know their grid position: the spatial start alone is optimal
    side = 10
    node = np.arange(side * side).reshape(side, side)
    u = np.r_[node[:, :-1].ravel(), node[:-1, :].ravel()]
    v = np.r_[node[:, 1:].ravel(), node[1:, :].ravel()]
    import networkx as nx
    graph = nx.DiGraph()
    graph.add_nodes_from(range(side * side))
    graph.add_edges_from((int(a), int(b), {"traffic": 1.0}) for a, b in zip(u, v))
    edges = edges_from_graph(graph, side * side)
    mesh = Mesh(ChipSpec.truenorth())
    points = np.stack([node.ravel() // side, node.ravel() % side], 1) / side
    result = search(mesh, edges, 0.0, points=points)
    spatial = [s for s in result.stages if s["stage"] == "start:spatial"]
    assert spatial and spatial[0]["cost"] == pytest.approx(edges.w.sum())  # every edge one hop
    assert result.cost == pytest.approx(edges.w.sum())


def test_search_without_points_has_no_spatial_start():
    edges = edges_from_graph(conv_like_graph(30), 30)
    result = search(Mesh(ChipSpec.truenorth()), edges, 0.0)
    assert not any(s["stage"] == "start:spatial" for s in result.stages)
    assert result.cost == pytest.approx(placement_cost(Mesh(ChipSpec.truenorth()), edges, result.cells))


def test_place_pass_records_the_image_shape_it_placed_by(tmp_path):
    program = crossmap.compile(MODELS / "esser2015_binary.onnx", tmp_path / "out", seed=0)
    place = crossmap.load(tmp_path / "out").reports["place"]
    assert place["input_shape"] == [1, 28, 28]
    assert any(s["stage"] == "start:spatial" for s in place["stages"])
    position = input_positions(program, (1, 28, 28))
    assert position.shape == (program.num_cores, 2) and np.all((0 <= position) & (position < 1))

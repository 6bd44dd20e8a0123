"""Generated topologies of any size: the multi_dense op against torch, the generators'
shapes, the YAML they write, and exact PC on a >= 1,000-vertex graph from the CLI."""

import json

import numpy as np
import pytest
import yaml

from neurolocal import LocalEngine
from neurolocal.generate import deep_chain, random_graph, tiled_mlp, topology_yaml
from neurolocal.gradcheck import synthetic_batch
from neurolocal.graph import Graph, VertexSpec
from neurolocal.topology import graph_from_dict, load_topology
from tests.torch_graph import max_relative_error, torch_gradients


def pc_against_torch(graph, seed=0, batch=5):
    params = graph.init_params(seed)
    inputs, target = synthetic_batch(graph, batch, seed)
    relaxation = LocalEngine(graph, params).relax(inputs, target, eta=1.0,
                                                  iterations=graph.depth)
    _, reference = torch_gradients(graph, params, inputs, target)
    return max_relative_error(relaxation.dtheta, reference)


@pytest.mark.parametrize("activation,bias", [("tanh", True), ("sigmoid", False),
                                             ("relu", True), ("identity", True)])
def test_multi_dense_matches_torch(activation, bias):
    """Three parents of different widths, one read twice: J_k^T eps and dW_k per parent."""
    graph = Graph([
        VertexSpec.make("x", "input", shape=[5]),
        VertexSpec.make("a", "dense", ["x"], units=3, activation="tanh"),
        VertexSpec.make("b", "dense", ["x"], units=4, activation="sigmoid"),
        VertexSpec.make("m", "multi_dense", ["a", "b", "a"], units=6, activation=activation,
                        bias=bias),
        VertexSpec.make("out", "multi_dense", ["m", "b"], units=2),
    ], output="out", loss="mse")
    assert graph.param_shapes()["m"] == {"weight0": (3, 6), "weight1": (4, 6), "weight2": (3, 6),
                                         **({"bias": (6,)} if bias else {})}
    worst, errors = pc_against_torch(graph)
    assert worst <= 1e-10, errors


def test_multi_dense_with_one_parent_equals_dense():
    shapes = [(7,)]
    rng = np.random.default_rng(3)
    multi = VertexSpec.make("m", "multi_dense", ["x"], units=4, activation="tanh").op
    dense = VertexSpec.make("d", "dense", ["x"], units=4, activation="tanh").op
    p_multi = multi.init_params(shapes, np.random.default_rng(1))
    p_dense = dense.init_params(shapes, np.random.default_rng(1))
    np.testing.assert_array_equal(p_multi["weight0"], p_dense["weight"])
    x = rng.standard_normal((3, 7))
    (vm, cm), (vd, cd) = multi.forward(p_multi, [x]), dense.forward(p_dense, [x])
    np.testing.assert_array_equal(vm, vd)
    eps = rng.standard_normal((3, 4))
    np.testing.assert_allclose(multi.vjp(p_multi, cm, eps)[0], dense.vjp(p_dense, cd, eps)[0])


@pytest.mark.parametrize("fan_in", [0, 1, 2, 3])
def test_small_tiled_mlps_match_torch(fan_in):
    graph = graph_from_dict(tiled_mlp(vertices=20, layers=3, tile_width=3, input_width=5,
                                      output_width=3, fan_in=fan_in,
                                      loss="softmax_cross_entropy"))
    worst, errors = pc_against_torch(graph)
    assert worst <= 1e-10, errors


def test_tiled_wiring_is_local_and_counts_as_documented():
    doc = tiled_mlp(vertices=403, layers=4, fan_in=3)
    graph = graph_from_dict(doc)
    tiles = 100
    assert len(graph.order) == 4 * tiles + 3 == 403
    assert graph.depth == 4 + 1  # layers + the final join's output reads
    for n in graph.order:
        if n.startswith(("l2.", "l3.", "l4.")):
            assert len(graph.parents(n)) == 3
        if n.startswith(("l1.", "l2.", "l3.")):
            assert 1 <= len(graph.children[n]) <= 4  # a window's edge tile feeds one more
    full = graph_from_dict(tiled_mlp(vertices=2 + 3 * 11, layers=3, fan_in=0))
    assert len(full.order) == 2 + 3 * 11 and full.depth == 2 * 3


def test_chain_and_random_sizes():
    chain = graph_from_dict(deep_chain(vertices=60))
    assert len(chain.order) == 60 and chain.depth == 58  # the first link reads only data
    for size in (10, 250):
        graph = graph_from_dict(random_graph(vertices=size, seed=size))
        assert abs(len(graph.order) - size) <= 1


def test_chain_is_exact_against_torch():
    graph = graph_from_dict(deep_chain(vertices=40, width=3, activation="tanh"))
    worst, errors = pc_against_torch(graph)
    assert worst <= 1e-10, errors


@pytest.mark.parametrize("make", [lambda: tiled_mlp(50, layers=2), lambda: deep_chain(20),
                                  lambda: random_graph(60, seed=4)])
def test_written_yaml_reads_back_as_the_same_mapping(make):
    doc = make()
    assert yaml.safe_load(topology_yaml(doc)) == json.loads(json.dumps(doc))


def test_names_yaml_would_misread_are_quoted(tmp_path):
    doc = {"name": "odd: names", "vertices": [
        {"name": "yes", "op": "input", "shape": [2]},
        {"name": "a:b[1]", "op": "dense", "parents": ["yes"], "units": 2, "bias": False},
        {"name": "null", "op": "dense", "parents": ["a:b[1]"], "units": 1}],
        "output": "null", "loss": "mse"}
    path = tmp_path / "odd.yaml"
    path.write_text(topology_yaml(doc))
    graph = load_topology(path).graph
    assert graph.order == ("yes", "a:b[1]", "null") and graph.name == "odd: names"


def test_cli_generates_a_thousand_vertex_graph_that_validates_and_is_exact(cli, tmp_path):
    path = tmp_path / "tiled.yaml"
    made = cli("generate", "tiled", "--vertices", 1000, "--layers", 4, "-o", path)
    assert made.returncode == 0, made.stderr
    assert "999 vertices" in made.stdout
    checked = cli("validate", path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("graph 'tiled-mlp-4x249': 999 vertices")
    run = cli("check-grad", path, "--json", "--batch-size", 4, "--max-rel-error", 1e-10)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["eta"] == 1.0 and report["iterations"] == report["depth"] == 5
    assert report["max_rel_error"] <= 1e-10
    # every tensor is checked: layer 1 dense (weight, bias), layers 2-4 multi_dense
    # (weight0..2, bias), the output dense (weight, bias)
    assert len(report["parameters"]) == 249 * 2 + 3 * 249 * 4 + 2


def test_cli_generate_refuses_impossible_sizes_in_one_line(cli, tmp_path):
    path = tmp_path / "never.yaml"
    bad = cli("generate", "chain", "--vertices", 1, "-o", path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "at least 2" in bad.stderr
    assert not path.exists()


def test_deep_narrow_chains_stay_exact_where_gradients_vanish():
    """A width-4 tanh chain's gradients vanish exponentially with depth (~1e-14 of the
    values at 200 links). PC keeps every digit at eta = 1 because the update sets
    eps = feedback exactly; an update through v - vhat alone loses errors below
    ~1e-16 * |v| (relative error 6.8 at 300 links before that kernel change)."""
    for width in (4, 32):
        graph = graph_from_dict(deep_chain(vertices=200, width=width))
        worst, errors = pc_against_torch(graph)
        assert worst <= 1e-10, (width, errors)


def test_a_ten_thousand_vertex_tiled_graph_loads_and_validates(tmp_path):
    # issue 24's size (no timing assert: scripts/bench.py --only build measures it)
    from neurolocal.training.settings import check_training_section

    doc = tiled_mlp(vertices=10_000, layers=10)
    path = tmp_path / "tiled-10k.yaml"
    path.write_text(topology_yaml(doc))
    topology = load_topology(path)
    check_training_section(topology.training, topology.graph)
    graph = topology.graph
    assert len(graph.order) == 10_003 and len(graph.edges) == 29_001
    assert graph.depth == 11 and graph.parameter_count() == 552_004
    # parents before children, each child listed under each of its parents once
    position = {n: i for i, n in enumerate(graph.order)}
    assert all(position[p] < position[n] for n in graph.order for p in graph.parents(n))
    assert sum(len(c) for c in graph.children.values()) == len(graph.edges)
    assert graph.children["l10.t999"] == ("join",)
    assert [v.name for v in graph.vertices.values()] == list(graph.order)
    params = graph.init_params(0)
    assert sum(a.size for p in params.values() for a in p.values()) == 552_004

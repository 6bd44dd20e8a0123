"""Topology files: every malformed file is one clear line, exit 2, before anything runs."""

import textwrap

import pytest

from neurolocal import TopologyError, load_topology
from neurolocal.graph import Graph, VertexSpec
from conftest import TOPOLOGIES

GOOD = """
vertices:
  - {name: x, op: input, shape: [4]}
  - {name: h, op: dense, parents: [x], units: 3, activation: tanh}
  - {name: y, op: dense, parents: [h], units: 2}
output: y
loss: mse
"""

BAD = {
    "missing parent": (GOOD.replace("parents: [h]", "parents: [hidden]"),
                       "vertices.y.parents: vertex 'y' names parent 'hidden', which is not declared"),
    "unknown op": (GOOD.replace("op: dense, parents: [x]", "op: densse, parents: [x]"),
                   "unknown op 'densse'"),
    "cycle": ("""
vertices:
  - {name: x, op: input, shape: [3]}
  - {name: a, op: add, parents: [x, b]}
  - {name: b, op: tanh, parents: [a]}
  - {name: y, op: dense, parents: [b], units: 1}
output: y
loss: mse
""", "cycle"),
    "shape mismatch": ("""
vertices:
  - {name: x, op: input, shape: [3]}
  - {name: h, op: dense, parents: [x], units: 4}
  - {name: s, op: add, parents: [x, h]}
  - {name: y, op: dense, parents: [s], units: 1}
output: y
loss: mse
""", "vertices.s: add needs parents of one shape, got [3], [4]"),
    "duplicate vertex": (GOOD.replace("name: h,", "name: x,").replace("[h]", "[x]"),
                         "declared twice"),
    "duplicate key": (GOOD.replace("units: 3,", "units: 3, units: 5,"), "duplicate key 'units'"),
    "bad yaml": ("vertices: [\n  - {name: x", "invalid YAML"),
    "unknown attribute": (GOOD.replace("units: 3,", "unit: 3,"),
                          "op 'dense' has no attribute 'unit'"),
    "missing attribute": (GOOD.replace("units: 3, ", ""), "needs attribute 'units'"),
    "negative size": (GOOD.replace("units: 3", "units: -3"), "vertices.h.units"),
    "wrong type": (GOOD.replace("units: 3", "units: three"), "expected a positive integer"),
    "absurd size": (GOOD.replace("shape: [4]", "shape: [100000, 100000, 100000]"),
                    "more than"),
    "unknown activation": (GOOD.replace("activation: tanh", "activation: swish"),
                           "expected one of identity, tanh, relu, sigmoid"),
    "output missing": (GOOD.replace("output: y", "output: z"), "output: output vertex 'z'"),
    "output is input": (GOOD.replace("output: y", "output: x"), "is an input"),
    "unknown loss": (GOOD.replace("loss: mse", "loss: hinge"), "unknown loss 'hinge'"),
    "unknown top-level key": (GOOD + "optimiser: adam\n", "optimiser: unknown key"),
    "not a mapping": ("- just\n- a list\n", "expected a mapping"),
    "python tag": ("!!python/object/apply:os.system ['echo hi']\n", "invalid YAML"),
    "arity": (GOOD.replace("{name: h, op: dense, parents: [x], units: 3, activation: tanh}",
                           "{name: h, op: tanh, parents: [x, x]}"),
              "takes 1 parent"),
    "cross entropy on wide output": (GOOD.replace("loss: mse", "loss: softmax_cross_entropy")
                                     .replace("units: 2", "units: 1"), "classes >= 2"),
    "no name": (GOOD.replace("{name: h, ", "{"), "vertices[1]: missing 'name'"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_topology_fails_with_one_line(case, tmp_path):
    text, expected = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert expected in message


def test_cli_validate_missing_parent_exits_2_naming_file_and_vertex(tmp_path, cli):
    path = tmp_path / "broken.yaml"
    path.write_text(BAD["missing parent"][0])
    result = cli("validate", path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and "'y'" in lines[0] and "hidden" in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_cli_validate_summarises_good_file(cli):
    result = cli("validate", TOPOLOGIES / "dag.yaml")
    assert result.returncode == 0, result.stderr
    assert "11 vertices" in result.stdout and "depth 7" in result.stdout


def test_python_api_builds_the_same_graph_as_the_file():
    from_file = load_topology(TOPOLOGIES / "mlp.yaml").graph
    built = Graph([
        VertexSpec.make("image", "input", shape=[64]),
        VertexSpec.make("hidden1", "dense", ["image"], units=128, activation="tanh"),
        VertexSpec.make("hidden2", "dense", ["hidden1"], units=128, activation="tanh"),
        VertexSpec.make("logits", "dense", ["hidden2"], units=10),
    ], output="logits", loss="softmax_cross_entropy", name="mlp")
    assert built.order == from_file.order and built.shapes == from_file.shapes
    a, b = built.init_params(3), from_file.init_params(3)
    assert all((a[v][k] == b[v][k]).all() for v in a for k in a[v])


def test_vertex_initialisation_depends_only_on_seed_and_name():
    graph = load_topology(TOPOLOGIES / "dag.yaml").graph
    p1, p2 = graph.init_params(7), graph.init_params(7)
    assert all((p1[v][k] == p2[v][k]).all() for v in p1 for k in p1[v])
    assert not (graph.init_params(8)["out"]["weight"] == p1["out"]["weight"]).all()


def test_depth_is_longest_path_to_a_parameter_read():
    graph = load_topology(TOPOLOGIES / "dag.yaml").graph
    assert graph.distance["trunk"] == 7 and graph.depth == 7
    assert load_topology(TOPOLOGIES / "mlp.yaml").graph.depth == 2

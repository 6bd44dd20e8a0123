"""Paper mode (off by default) and the recurrence section's checks and references."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from neurolocal import LocalEngine, TopologyError, load_topology
from neurolocal.topology import topology_from_dict


def mse_net(**training) -> dict:
    return {"vertices": [{"name": "x", "op": "input", "shape": [4]},
                         {"name": "h", "op": "dense", "parents": ["x"], "units": 3,
                          "activation": "tanh"},
                         {"name": "out", "op": "dense", "parents": ["h"], "units": 2}],
            "output": "out", "loss": "mse", "training": training}


def test_paper_mode_is_off_by_default():
    for name in ("cnn", "rnn", "lstm", "mlp"):
        topology = load_topology(f"topologies/{name}.yaml")
        assert not topology.paper.enabled and topology.paper.updates_per_batch == 1


def test_paper_mode_drops_the_half_of_mse_and_doubles_every_update():
    plain = topology_from_dict(mse_net()).graph
    paper = topology_from_dict(mse_net(paper_mode=True))
    assert paper.paper.mse_without_half and not paper.paper.double_update  # no conv here
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    params = plain.init_params(0)
    base = LocalEngine(plain, params).relax(x, y, eta=1.0, iterations=2)
    quirky = LocalEngine(paper.graph, params).relax(x, y, eta=1.0, iterations=2)
    np.testing.assert_allclose(quirky.errors["out"], 2 * (y - base.prediction), rtol=1e-14)
    for v in base.dtheta:
        for k in base.dtheta[v]:
            np.testing.assert_allclose(quirky.dtheta[v][k], 2 * base.dtheta[v][k], rtol=1e-12)


def test_paper_mode_doubles_the_cnn_update_only():
    with open("topologies/cnn.yaml") as f:
        cnn = yaml.safe_load(f)
    cnn["training"]["paper_mode"] = True
    paper = topology_from_dict(cnn).paper
    assert paper.double_update and paper.updates_per_batch == 2 and not paper.mse_without_half
    explicit = topology_from_dict(mse_net(paper_mode={"double_update": True})).paper
    assert explicit.updates_per_batch == 2 and not explicit.mse_without_half


@pytest.mark.parametrize("training, message", [
    ({"paper_mode": {"triple_update": True}}, "unknown quirk"),
    ({"paper_mode": "yes"}, "expected true"),
])
def test_bad_paper_mode_is_refused(training, message):
    with pytest.raises(TopologyError, match=message):
        topology_from_dict(mse_net(**training))


def test_paper_mode_conflicting_mse_scale_is_refused():
    document = mse_net(paper_mode=True)
    document["loss"] = {"type": "mse", "scale": 1.0}
    with pytest.raises(TopologyError, match="scale"):
        topology_from_dict(document)


# --- recurrence ------------------------------------------------------------------------------


def rnn(steps=3, **changes) -> dict:
    recurrence = {
        "steps": steps,
        "inputs": [{"name": "x", "shape": [3]}],
        "state": [{"name": "h", "shape": [4]}],
        "cell": [{"name": "xh", "op": "concat", "parents": ["x", "h@prev"]},
                 {"name": "h", "op": "dense", "parents": ["xh"], "units": 4,
                  "activation": "tanh"}],
    }
    recurrence.update(changes)
    return {"recurrence": recurrence, "output": "h@last", "loss": "mse"}


def test_unrolled_names_and_references():
    graph = topology_from_dict(rnn()).graph
    assert graph.output == "h@2"
    assert graph.parents("xh@0") == ("x@0", "h@init")
    assert graph.parents("xh@2") == ("x@2", "h@1")
    assert set(graph.inputs) == {"h@init", "x@0", "x@1", "x@2"}
    assert [g.owner for g in graph.tied] == [("h@0", "weight"), ("h@0", "bias")]


@pytest.mark.parametrize("changes, message", [
    ({"state": [{"name": "g", "shape": [4]}]}, "must name a cell vertex"),
    ({"state": [{"name": "h", "shape": [5]}]}, "declared with shape"),
    ({"cell": [{"name": "h", "op": "dense", "parents": ["k@prev"], "units": 4}]}, "not a declared"),
    ({"steps": 0}, "positive integer"),
    ({"loop": 3}, "unknown key"),
])
def test_bad_recurrence_is_refused(changes, message):
    with pytest.raises(TopologyError, match=message):
        topology_from_dict(rnn(**changes))

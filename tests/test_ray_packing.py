"""Packing by default (issue 15): `--vertices-per-actor auto` gives the same results, bit for
bit, as one vertex per actor. Real local Ray, one instance for the module, offering 3 CPUs
so `auto` makes 3 shards (a min-cut partition, docs/placement.md) on every topology.

- `run` on the MLP, 2 epochs of Adam: parameters and optimizer state equal, the traffic
  log's header names the partition;
- check-grad's relaxation (`relax_once`, what the command runs) on every topology in
  topologies/: dtheta, errors, input feedback, energy and loss equal. The LSTM is compared
  with 30 vertices per actor and the local engine instead of one vertex per actor (75
  actors, ~13 GB: tests/test_ray_engine.py holds that test, not run routinely);
- `--placement-from` a log of a previous run moves its heavy edge inside a shard and
  still gives the same numbers.
"""

import json

import numpy as np
import pytest

from neurolocal.engines import EngineConfig, relax_once
from neurolocal.engines.local import LocalEngine
from neurolocal.engines.ray.placement import plan
from neurolocal.gradcheck import synthetic_batch
from neurolocal.topology import load_topology
from neurolocal.traffic import read_traffic
from neurolocal.traffic.aggregate import totals
from neurolocal.traffic.audit import audit
from neurolocal.traffic.report import format_summary
from conftest import TOPOLOGIES, module_ray, cli_code as run
from test_ray_training import assert_bitwise, state

CPUS = 3
MLP = TOPOLOGIES / "mlp.yaml"
#: what `auto` is compared with: one vertex per actor, except the LSTM (see above)
BASELINE = {"mlp": 1, "dag": 1, "cnn": 1, "rnn": 1, "lstm": 30}


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    with module_ray(num_cpus=CPUS):
        yield


def header_settings(directory) -> dict:
    return read_traffic(directory).headers[0]["settings"]


def test_run_with_the_default_packing_trains_bitwise_like_one_vertex_per_actor(tmp_path):
    common = ["--engine", "ray", "--epochs", 2, "--batch-size", 128, "--optimizer", "adam",
              "--seed", 3, "--quiet"]
    assert run("run", MLP, *common, "--out", tmp_path / "auto") == 0     # the default
    assert run("run", MLP, *common, "--vertices-per-actor", 1, "--out", tmp_path / "one") == 0
    got, want = state(tmp_path / "auto"), state(tmp_path / "one")
    assert any(k.startswith("optimizer/") for k in want) and any(k.startswith("param/")
                                                                 for k in want)
    assert_bitwise(got, want)

    # training, auto chooses the shards by the batch time it predicts (costmodel.py):
    # the digits MLP is too small to pay for a second actor
    settings = header_settings(tmp_path / "auto" / "traffic")
    assert settings["vertices_per_actor"] == "auto" and settings["partition"] == "min-cut"
    assert settings["chosen_by"] == "cost model" and settings["shards"] == 1
    assert settings["batch_size"] == 128 and settings["cut_bytes"] == 0
    predicted = settings["predicted_ms"]
    assert set(predicted) == {str(k) for k in range(1, CPUS + 1)}
    assert settings["predicted_batch_ms"] == predicted["1"] == min(predicted.values())
    costs = settings["costs"]   # measured at start-up: a flop rate, a hop (probe.py)
    assert costs["hop_measured_on"] == "driver's node"
    assert costs["gflops"] > 0 and costs["message_ms"] > 0 and costs["byte_ns"] >= 0
    from neurolocal.engines.ray.probe import CACHE_NAME, _session_file

    kept = json.loads(_session_file().read_text())   # once per cluster: kept in its session
    assert _session_file().name == CACHE_NAME and len(kept) == 1
    [hop] = kept.values()
    assert round(hop["message"] * 1e3, 4) == costs["message_ms"]
    one = header_settings(tmp_path / "one" / "traffic")
    assert one["shards"] == 4 and one["cut_fraction"] == 1.0   # every edge crosses actors
    log = read_traffic(tmp_path / "auto" / "traffic")
    assert len({h["writer"] for h in log.headers}) == 2   # the actor and the scheduler
    result = audit(log, load_topology(MLP).graph)
    assert result.ok and result.counts_checked, result.violations
    summary = format_summary(totals(tmp_path / "auto" / "traffic").summary())
    assert "partition: min-cut, 1 shards (vertices per actor auto), cut " in summary
    # the report page lists the partition with the other settings
    page = (tmp_path / "auto" / "report.html").read_text()
    assert '"partition":"min-cut"' in page and '"predicted_batch_ms":' in page


def relax(graph, params, inputs, target, vertices_per_actor, **config):
    return relax_once(EngineConfig(engine="ray", vertices_per_actor=vertices_per_actor,
                                   **config), graph, params, inputs, target, eta=1.0,
                      iterations=graph.depth, read_inputs=True)


def assert_same_relaxation(got, want) -> None:
    assert got.dtheta.keys() == want.dtheta.keys()
    for v, grads in want.dtheta.items():
        for k, g in grads.items():
            np.testing.assert_array_equal(got.dtheta[v][k], g, err_msg=f"{v}.{k}")
    for v, e in want.errors.items():
        np.testing.assert_array_equal(got.errors[v], e, err_msg=v)
    for v, f in want.input_feedback.items():
        np.testing.assert_array_equal(got.input_feedback[v], f, err_msg=v)
    assert got.energy == want.energy and got.loss == want.loss


def expected_shards(graph) -> list[tuple[str, ...]]:
    """What `auto` must choose on this Ray (one node, CPUS cores) for a batch of 8."""
    return plan(graph, "auto", ["node"], {"node": CPUS}, "spread", "node", batch_size=8).shards


def test_some_default_shards_are_not_runs_of_the_topological_order():
    """Vertices the Fiduccia–Mattheyses passes moved: the bitwise tests below cover them."""
    scattered = []
    for name in sorted(BASELINE):
        graph = load_topology(TOPOLOGIES / f"{name}.yaml").graph
        position = {v: i for i, v in enumerate(graph.order)}
        if any(position[s[-1]] - position[s[0]] != len(s) - 1 for s in expected_shards(graph)):
            scattered.append(name)
    assert scattered, "every topology's shards are contiguous: the moved case is not covered"


@pytest.mark.parametrize("name", sorted(BASELINE))
def test_check_grad_with_the_default_packing_equals_one_vertex_per_actor(name):
    graph = load_topology(TOPOLOGIES / f"{name}.yaml").graph
    params = graph.init_params(5)
    inputs, target = synthetic_batch(graph, 8, seed=5)
    auto = relax(graph, params, inputs, target, "auto")
    report = auto.extras["report"]
    shards = [tuple(a["vertices"]) for a in report["actors"]]
    assert report["vertices_per_actor"] == "auto" and len(shards) == CPUS
    assert report["partition"]["shards"] == CPUS and report["partition"]["partition"] == "min-cut"
    assert shards == expected_shards(graph)   # deterministic: the same graph and cluster
    baseline = relax(graph, params, inputs, target, BASELINE[name])
    assert_same_relaxation(auto, baseline)
    if BASELINE[name] != 1:
        local = LocalEngine(graph, params).relax(inputs, target, eta=1.0,
                                                 iterations=graph.depth, read_inputs=True)
        assert_same_relaxation(auto, local)


def test_check_grad_command_reports_the_partition_and_the_same_numbers(capsys):
    reports = {}
    for k in ("auto", "1"):
        assert run("check-grad", TOPOLOGIES / "dag.yaml", "--engine", "ray", "--json",
                   "--vertices-per-actor", k) == 0
        reports[k] = json.loads(capsys.readouterr().out)
    assert reports["auto"]["partition"]["shards"] == CPUS
    assert len(reports["1"]["actors"]) == len(load_topology(TOPOLOGIES / "dag.yaml").graph.order)
    for key in ("max_rel_error", "energy", "loss", "parameters"):
        assert reports["auto"][key] == reports["1"][key], key


def test_placement_from_a_previous_log_keeps_its_heavy_edge_inside(tmp_path):
    """A local check-grad's log, one edge made 1000x heavier: the Ray run weighed by it keeps
    that edge inside a shard, and its numbers do not change."""
    from neurolocal.traffic.log import TrafficRecorder

    graph = load_topology(TOPOLOGIES / "dag.yaml").graph
    params = graph.init_params(2)
    inputs, target = synthetic_batch(graph, 8, seed=2)
    model = relax(graph, params, inputs, target, "auto")
    where = {v: a["actor"] for a in model.extras["report"]["actors"] for v in a["vertices"]}
    heavy = next(e for e in graph.edges if where[e[0]] != where[e[1]])
    log = tmp_path / "log"
    assert run("check-grad", TOPOLOGIES / "dag.yaml", "--traffic-log", log) == 0
    extra = TrafficRecorder(log, "extra", "local", graph=graph.name)
    extra.record(0, 0, heavy[0], heavy[1], "value", 10 ** 9, 0.0, 0.0)
    extra.close()
    weighed = relax(graph, params, inputs, target, "auto", placement_from=str(log))
    report = weighed.extras["report"]
    where = {v: a["actor"] for a in report["actors"] for v in a["vertices"]}
    assert where[heavy[0]] == where[heavy[1]]
    assert report["partition"]["partition"] == f"min-cut weighed by {log}"
    assert_same_relaxation(weighed, model)


def test_a_hop_probe_that_cannot_run_leaves_auto_a_default_and_says_so():
    """probe.py: probes that cannot be placed (a node that is not there) end in the
    default costs, named "not measured", instead of failing the run."""
    import ray

    from neurolocal.engines.ray.probe import UNMEASURED, measured_or_not

    driver = ray.get_runtime_context().get_node_id()
    costs = measured_or_not(driver, "ab" * (len(driver) // 2), "another node", timeout=5)
    assert (costs.message, costs.byte) == UNMEASURED and costs.points == ()
    assert costs.node.startswith("not measured (")

"""Three simulated nodes (ray.cluster_utils.Cluster), each with its own custom resource:
spread placement puts vertices on all three and the gradients do not change; the
traffic log records the three nodes as hosts and still passes the audit; `auto` gives
each node as many shards as its cores."""

from collections import Counter

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster

from neurolocal.engines.local import LocalEngine
from neurolocal.engines.ray import RayEngine, worker_runtime_env
from neurolocal.gradcheck import synthetic_batch
from neurolocal.topology import load_topology
from neurolocal.traffic import read_traffic
from neurolocal.traffic.audit import audit

NODES = ("node-a", "node-b", "node-c")


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "resources": {NODES[0]: 1},
                                      "include_dashboard": False})
    for name in NODES[1:]:
        cluster.add_node(num_cpus=1, resources={name: 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, runtime_env=worker_runtime_env(),
             logging_level="warning")
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def resource_name_of_node() -> dict[str, str]:
    return {n["NodeID"]: next(r for r in n["Resources"] if r in NODES)
            for n in ray.nodes() if n["Alive"]}


def test_spread_places_vertices_on_every_node_with_the_same_gradients(cluster, tmp_path):
    graph = load_topology("topologies/dag.yaml").graph
    params = graph.init_params(3)
    inputs, target = synthetic_batch(graph, 8, seed=3)
    local = LocalEngine(graph, params).relax(inputs, target, eta=1.0)
    with RayEngine(graph, params, vertices_per_actor=2, placement="spread",
                   traffic_log=str(tmp_path),
                   traffic_settings={"eta": 1.0, "iterations": graph.depth}) as engine:
        got = engine.relax(inputs, target, eta=1.0)
    names = resource_name_of_node()
    actors = got.extras["report"]["actors"]
    on = [names[a["node_id"]] for a in actors]
    assert set(on) == set(NODES) and len(on) == 6
    assert got.extras["report"]["nodes"] == 3
    # the log: every actor's host is its node's label; messages cross between nodes
    log = read_traffic(tmp_path)
    result = audit(log, graph)
    assert result.ok and result.counts_checked, result.violations
    host_of = {a["name"]: a["host"] for a in actors}
    assert all(a["host"].endswith("/" + a["node_id"][:8]) for a in actors)
    assert len(set(host_of.values())) == 3
    vertex_rows = [i for i, k in enumerate(log.columns["kind"].tolist()) if k != "control"]
    for column in ("src", "dst"):
        for i in vertex_rows:
            assert log.columns[f"{column}_host"][i] == host_of[log.columns[f"{column}_actor"][i]]
    crossing = Counter(log.columns["src_host"][i] != log.columns["dst_host"][i]
                       for i in vertex_rows)
    assert crossing[True] > 0 and crossing[False] > 0
    for v, grads in local.dtheta.items():
        for k, g in grads.items():
            np.testing.assert_allclose(got.dtheta[v][k], g, rtol=0, atol=1e-12)


def test_pack_keeps_every_actor_on_the_driver_node(cluster):
    graph = load_topology("topologies/mlp.yaml").graph
    params = graph.init_params(3)
    inputs, target = synthetic_batch(graph, 8, seed=3)
    local = LocalEngine(graph, params).relax(inputs, target, eta=1.0)
    with RayEngine(graph, params, vertices_per_actor=2, placement="pack") as engine:
        got = engine.relax(inputs, target, eta=1.0)
    driver = ray.get_runtime_context().get_node_id()
    assert {a["node_id"] for a in got.extras["report"]["actors"]} == {driver}
    for v, grads in local.dtheta.items():
        for k, g in grads.items():
            np.testing.assert_allclose(got.dtheta[v][k], g, rtol=0, atol=1e-12)


def test_auto_gives_each_node_as_many_shards_as_its_cores(cluster):
    """docs/placement.md: one CPU per node here, so `auto` makes three shards, one per
    node (pack: one shard, the driver's node's one core); the numbers do not change."""
    graph = load_topology("topologies/dag.yaml").graph
    params = graph.init_params(3)
    inputs, target = synthetic_batch(graph, 8, seed=3)
    local = LocalEngine(graph, params).relax(inputs, target, eta=1.0)
    names = resource_name_of_node()
    for placement, shards in (("spread", 3), ("pack", 1)):
        with RayEngine(graph, params, vertices_per_actor="auto",
                       placement=placement) as engine:
            got = engine.relax(inputs, target, eta=1.0)
        report = got.extras["report"]
        on = [names[a["node_id"]] for a in report["actors"]]
        assert len(on) == shards == report["partition"]["shards"]
        assert len(set(on)) == shards   # spread: every node its one shard
        for v, grads in local.dtheta.items():
            for k, g in grads.items():
                np.testing.assert_array_equal(got.dtheta[v][k], g, err_msg=f"{v}.{k}")

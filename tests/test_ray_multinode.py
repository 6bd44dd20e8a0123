"""Three simulated nodes (ray.cluster_utils.Cluster), each with its own custom resource:
spread placement puts vertices on all three and the gradients do not change."""

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster

from neurolocal.engines.local import LocalEngine
from neurolocal.engines.ray import RayEngine, worker_runtime_env
from neurolocal.gradcheck import synthetic_batch
from neurolocal.topology import load_topology

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


def test_spread_places_vertices_on_every_node_with_the_same_gradients(cluster):
    graph = load_topology("topologies/dag.yaml").graph
    params = graph.init_params(3)
    inputs, target = synthetic_batch(graph, 8, seed=3)
    local = LocalEngine(graph, params).relax(inputs, target, eta=1.0)
    with RayEngine(graph, params, vertices_per_actor=2, placement="spread") as engine:
        got = engine.relax(inputs, target, eta=1.0)
    names = resource_name_of_node()
    on = [names[a["node_id"]] for a in got.extras["report"]["actors"]]
    assert set(on) == set(NODES) and len(on) == 6
    assert got.extras["report"]["nodes"] == 3
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

"""`placement: auto` with a cost model (engines/ray/costmodel.py, docs/placement.md §5):
with a fixed cost table (never timing) it chooses one actor for the digits MLP and two
for the compute-heavy chain 64-1024-1024-1024-1024-10 tanh at --pipeline 2 on 2 cores,
and records its choice and every prediction."""

import pytest

from neurolocal import graph_from_dict
from neurolocal.engines.ray.costmodel import CostContext, CostTable, choose, predict
from neurolocal.engines.ray.partition import model_weights
from neurolocal.engines.ray.placement import plan
from neurolocal.topology import load_topology
from conftest import REPO_ROOT

#: about this machine: 1 GFLOP/s for small numpy products, a Ray hop 1 ms, 1 GB/s
TABLE = CostTable(flop=1e-9, message=1e-3, byte=1e-9)


def heavy_chain():
    """64-1024-1024-1024-1024-10 tanh (issue 25)."""
    widths = (64, 1024, 1024, 1024, 1024, 10)
    vertices = [{"name": "x", "op": "input", "shape": [widths[0]]}]
    for i, width in enumerate(widths[1:], 1):
        vertex = {"name": f"h{i}", "op": "dense", "units": width,
                  "parents": ["x" if i == 1 else f"h{i - 1}"]}
        if i < len(widths) - 1:
            vertex["activation"] = "tanh"
        vertices.append(vertex)
    return graph_from_dict({"name": "heavy", "vertices": vertices, "output": "h5",
                            "loss": "softmax_cross_entropy"})


def mlp():
    return load_topology(REPO_ROOT / "topologies" / "mlp.yaml").graph


@pytest.mark.parametrize("pipeline", [1, 2])
def test_one_actor_for_the_digits_mlp(pipeline):
    chosen = plan(mlp(), "auto", ["n"], {"n": 2}, "spread", "n", batch_size=32,
                  cost=CostContext(TABLE, rounds=2, pipeline=pipeline))
    assert len(chosen.shards) == 1 and chosen.nodes == ["n"]
    info = chosen.info
    assert info["chosen_by"] == "cost model" and set(info["predicted_ms"]) == {"1", "2"}
    assert info["predicted_batch_ms"] == min(info["predicted_ms"].values())


def test_two_actors_for_the_compute_heavy_chain_when_pipelined():
    graph = heavy_chain()
    chosen = plan(graph, "auto", ["n"], {"n": 2}, "spread", "n", batch_size=128,
                  cost=CostContext(TABLE, rounds=4, pipeline=2))
    assert len(chosen.shards) == 2 and chosen.nodes == ["n", "n"]
    ms = chosen.info["predicted_ms"]
    assert ms["2"] < 0.7 * ms["1"]
    # one batch at a time, the chain's shards wait on each other: one actor
    alone = plan(graph, "auto", ["n"], {"n": 2}, "spread", "n", batch_size=128,
                 cost=CostContext(TABLE, rounds=4, pipeline=1))
    assert len(alone.shards) == 1


def test_the_prediction_grows_with_the_message_cost_and_the_cores_shared():
    weights = model_weights(heavy_chain(), 128)
    context = CostContext(TABLE, rounds=4, pipeline=2)
    best, seen = choose(weights, 2, context)
    slow = CostContext(CostTable(1e-9, 10.0, 1e-9), rounds=4, pipeline=2)
    assert choose(weights, 2, slow)[0].shards == 1
    shards = best.partition.shards
    assert predict(weights, shards, context, cores=1) > predict(weights, shards, context, cores=2)
    assert seen[best.shards] == best.seconds

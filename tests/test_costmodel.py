"""`placement: auto` with a cost model (engines/ray/costmodel.py, docs/placement.md §5):
with a fixed cost table (never timing) it chooses one actor for the digits MLP and two
for the compute-heavy chain 64-1024-1024-1024-1024-10 tanh at --pipeline 2 on 2 cores,
and records its choice and every prediction; the phases follow the run's schedule."""

import pytest

from neurolocal import graph_from_dict
from neurolocal.engines.ray.costmodel import CostContext, CostTable, batch_work, choose, predict
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
    # one batch at a time, the chain's shards wait on each other but for their Hebbian
    # products, which overlap: a smaller gain than pipelining's
    alone = plan(graph, "auto", ["n"], {"n": 2}, "spread", "n", batch_size=128,
                 cost=CostContext(TABLE, rounds=4, pipeline=1)).info["predicted_ms"]
    assert alone["1"] == ms["1"] and ms["2"] < alone["2"] < alone["1"]


def test_the_prediction_grows_with_the_message_cost_and_the_cores_shared():
    graph = heavy_chain()
    weights = model_weights(graph, 128)
    context = CostContext(TABLE, rounds=4, pipeline=2)
    work = batch_work(graph, 128, context)
    best, seen = choose(weights, work, 2, context)
    slow = CostContext(CostTable(1e-9, 10.0, 1e-9), rounds=4, pipeline=2)
    assert choose(weights, work, 2, slow)[0].shards == 1
    shards = best.partition.shards
    assert predict(work, shards, context, cores=1) > predict(work, shards, context, cores=2)
    assert seen[best.shards] == best.seconds


def test_the_phases_follow_the_schedule():
    """Under the event schedule at eta 1 the error of a chain reaches one layer a round:
    each tag's phase holds the vertices that speak then; strict mode, all of them."""
    graph = heavy_chain()
    context = CostContext(TABLE, rounds=4)
    work = batch_work(graph, 128, context)
    levels = len(graph.order) - 1
    speak = [set(p.compute) for p in work.phases[levels:-1]]
    assert speak == [{"h5"}, {"h4"}, {"h3"}, {"h2"}]   # h1 speaks to no one: x is an input
    assert set(work.phases[-1].compute) == {"h1", "h2", "h3", "h4", "h5"}   # Hebbian
    assert work.params["h2"] == 1024 * 1024 + 1024
    strict = batch_work(graph, 128, CostContext(TABLE, rounds=4, mode="strict", eta=0.1))
    assert all(len(p.compute) == 5 for p in strict.phases[levels:-1])
    # a chain split in two waits at every phase but the close (the Hebbian products,
    # which overlap): at pipeline 1 it saves the close's overlap and pays messages
    two = [("x", "h1", "h2"), ("h3", "h4", "h5")]
    one = [tuple(graph.order)]
    close = work.phases[-1].compute
    overlap = 2 * TABLE.flop * min(sum(close[v] for v in shard if v in close) for shard in two)
    gain = predict(work, one, context, 2) - predict(work, two, context, 2)
    assert 0 < gain < overlap


def test_the_tiles_of_a_layer_work_in_the_same_round():
    """A width-tiled graph split across its width: every phase's work halves, so at
    pipeline 1 two shards are predicted faster than one when messages are cheap."""
    from neurolocal.generate import tiled_mlp

    graph = graph_from_dict(tiled_mlp(vertices=40, layers=4, tile_width=128, input_width=64,
                                      output_width=10, fan_in=3, loss="softmax_cross_entropy"))
    cheap = CostContext(CostTable(1e-9, 1e-5, 1e-11), rounds=4)
    work = batch_work(graph, 128, cheap)
    left = [v for v in graph.order if ".t" in v and int(v.rsplit("t", 1)[1]) < 5]
    width = [tuple(["x", *left]), tuple(v for v in graph.order if v not in left and v != "x")]
    layers = [tuple(graph.order[:20]), tuple(graph.order[20:])]
    one = [tuple(graph.order)]
    assert predict(work, width, cheap, 2) < 0.75 * predict(work, one, cheap, 2)
    assert predict(work, width, cheap, 2) < predict(work, layers, cheap, 2)


def test_the_hop_probe_fits_a_message_cost_and_a_byte_cost():
    """probe.py's line through (bytes, seconds): the intercept is a message's cost, the
    slope a byte's; noise below zero is clamped (a cost too small to see)."""
    from neurolocal.engines.ray.probe import fit

    message, byte = fit([(0, 1e-3), (1 << 16, 1e-3 + 2e-9 * (1 << 16)),
                         (1 << 20, 1e-3 + 2e-9 * (1 << 20)), (4 << 20, 1e-3 + 2e-9 * (4 << 20))])
    assert message == pytest.approx(1e-3, rel=1e-9) and byte == pytest.approx(2e-9, rel=1e-9)
    assert fit([(0, 2e-3), (1 << 20, 1e-3), (4 << 20, 1e-3)])[1] == 0.0
    assert fit([(0, 0.0), (1 << 20, 1e-3), (4 << 20, 4e-3)])[0] > 0.0


def test_run_prints_the_choice_its_prediction_and_the_measured_costs():
    from types import SimpleNamespace

    from neurolocal.engines.ray.costmodel import describe
    from neurolocal.training.loop import placement_line

    chosen = plan(mlp(), "auto", ["n"], {"n": 2}, "spread", "n", batch_size=32,
                  cost=CostContext(TABLE, rounds=2, pipeline=1))
    line = placement_line(SimpleNamespace(partition=chosen.info))
    two = chosen.info["predicted_ms"]["2"]
    assert line.startswith(f"placement: auto chose 1 actor(s), predicted "
                           f"{chosen.info['predicted_batch_ms']:.3g} ms a batch (2: {two:.3g} ms)")
    assert line.endswith("measured 1 GFLOP/s, a Ray message 1 ms + 1 ns a byte (given)")
    assert describe(TABLE)["message_ms"] == 1.0
    assert placement_line(SimpleNamespace(partition={"partition": "contiguous"})) is None


def test_the_hop_costs_are_kept_per_cluster_and_a_foreign_entry_is_measured_again(tmp_path):
    """probe.py keeps a cluster's measurement in its Ray session directory; what it did
    not write (wrong types, numbers out of bounds, not JSON, too big) is not trusted."""
    from neurolocal.engines.ray.probe import HopCosts, _cached, _keep

    path = tmp_path / "neurolocal-hop-costs.json"
    costs = HopCosts(6e-4, 1.2e-9, "driver's node", ((0, 1.2e-3), (1 << 20, 2.5e-3)))
    assert _cached(path, "a->b") is None
    _keep(path, "a->b", costs)
    assert _cached(path, "a->b") == costs and _cached(path, "a->c") is None
    for text in ('{"a->b": {"message": "1", "byte": 1e-9, "node": "driver\'s node", "points": []}}',
                 '{"a->b": {"message": 1e300, "byte": 1e-9, "node": "another node", "points": []}}',
                 '{"a->b": {"message": NaN, "byte": 1e-9, "node": "another node", "points": []}}',
                 '{"a->b": {"message": 1e-3, "byte": -1e-9, "node": "another node", "points": []}}',
                 '{"a->b": {"message": 1e-3, "byte": 1e-9, "node": "<b>", "points": []}}',
                 '[1, 2]', 'not json', '{"a->b": 7}'):
        path.write_text(text)
        assert _cached(path, "a->b") is None, text
    path.write_text(" " * (2 << 20))
    assert _cached(path, "a->b") is None
    _keep(path, "a->b", costs)   # a damaged file is replaced
    assert _cached(path, "a->b") == costs

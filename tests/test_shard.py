"""Shards without Ray: the round rules, message batching and buffering, in one process.

An in-process network posts each shard's outgoing calls and delivers them in a
random order (seeded), as Ray may; shards of later batches may start before the
messages of their peers arrive.
"""

import random

import numpy as np
import pytest
from shuffled import drive
from torch_graph import max_relative_error, torch_gradients

from neurolocal import graph_from_dict
from neurolocal.engines.base import prepare_batch
from neurolocal.engines.local import LocalEngine
from neurolocal.engines.ray.placement import assign_nodes, partition, shard_of
from neurolocal.engines.rounds import RunSettings, Shard
from neurolocal.gradcheck import synthetic_batch
from neurolocal.topology import load_topology

TOPOLOGIES = ["topologies/mlp.yaml", "topologies/dag.yaml"]
#: with tied groups (weights shared over time): partial messages to the owner
TIED = ["topologies/rnn.yaml", "topologies/lstm.yaml"]


def run_shards(shards, graph, params, inputs, target, settings, rng):
    """Begin every shard (in random order, interleaved with deliveries) and deliver all calls."""
    inputs, target = prepare_batch(graph, inputs, target)
    merged = {"dtheta": {}, "input_feedback": {}, "energy": {}, "errors": {}}
    for result in drive(shards, graph, settings, params, inputs, target, rng):
        for key, part in merged.items():
            part.update(result[key])
    merged["energy"] = [sum(merged["energy"][n][r] for n in graph.order)
                        for r in range(settings.iterations + 1)]
    return merged


def make_shards(graph, k):
    groups = partition(graph, k)
    return [Shard(graph, names, shard_of(groups)) for names in groups]


@pytest.mark.parametrize("path", TOPOLOGIES + TIED)
@pytest.mark.parametrize("k", [1, 3, 100])
def test_synchronous_rounds_equal_the_local_sweep_bit_for_bit(path, k):
    graph = load_topology(path).graph
    params = graph.init_params(1)
    shards = make_shards(graph, k)
    rng = random.Random(k)
    for batch, (eta, rounds) in enumerate([(0.7, graph.depth + 2), (1.0, 0), (0.3, 5)], start=1):
        inputs, target = synthetic_batch(graph, 5, seed=batch)
        local = LocalEngine(graph, params).relax(inputs, target, eta=eta, iterations=rounds,
                                                 read_inputs=True)
        got = run_shards(shards, graph, params, inputs, target,
                         RunSettings(batch, eta, rounds, 0, True), rng)
        assert got["dtheta"].keys() == local.dtheta.keys()
        for v, grads in local.dtheta.items():
            for name, g in grads.items():
                np.testing.assert_array_equal(got["dtheta"][v][name], g)
        for v, fb in local.input_feedback.items():
            np.testing.assert_array_equal(got["input_feedback"][v], fb)
        for v, e in local.errors.items():
            np.testing.assert_array_equal(got["errors"][v], e)
        assert got["energy"] == local.energy


@pytest.mark.parametrize("path", TOPOLOGIES)
def test_asynchronous_rounds_converge_to_autograd(path):
    graph = load_topology(path).graph
    params = graph.init_params(2)
    inputs, target = synthetic_batch(graph, 6, seed=3)
    _, reference = torch_gradients(graph, params, inputs, target)
    for seed in range(3):
        got = run_shards(make_shards(graph, 1), graph, params, inputs, target,
                         RunSettings(1, 0.5, 60, 2, False), random.Random(seed))
        assert max_relative_error(got["dtheta"], reference)[0] < 1e-6


def test_staleness_lets_a_vertex_run_ahead_on_old_feedback():
    """With S = 2 a vertex makes three updates on the forward pass's feedback alone."""
    graph = load_topology("topologies/mlp.yaml").graph
    params = graph.init_params(0)
    inputs, target = prepare_batch(graph, *synthetic_batch(graph, 4))
    shards = make_shards(graph, 1)
    settings = RunSettings(1, 0.5, 10, 2, False)
    first = shards[1]  # hidden1: its child hidden2 has not spoken yet
    first.begin(settings, params, {}, None)
    first.deliver(shards[0].begin(settings, params, {"image": inputs["image"]}, None)[1])
    slot = first.slots["hidden1"]
    assert slot.round == 0  # predicted, but no feedback from hidden2 yet: must wait
    # feedback of round 0 from hidden2 arrives: updates 1, 2 and 3 may use it
    shards[2].begin(settings, params, {}, None)
    outgoing = shards[2].deliver([(1, "value", 0, "hidden1", "hidden2", slot.rule.prediction,
                                    0.0)])
    first.deliver(outgoing[1])
    assert slot.round == 3


def test_spread_and_pack_placement():
    assert assign_nodes(5, ["a", "b", "c"], "spread", "a") == ["a", "b", "c", "a", "b"]
    assert assign_nodes(3, ["a", "b", "c"], "pack", "b") == ["b", "b", "b"]


def test_a_tied_owner_is_done_only_when_every_member_partial_has_arrived():
    """x -> a -> b -> c -> out with a.weight shared by b and c, b.bias by c: the members'
    partials travel as `partial` messages (one per member-owner pair, after round T);
    the owner's shard waits for them and reports the group's sum, as the local engine."""
    graph = graph_from_dict({
        "vertices": [
            {"name": "x", "op": "input", "shape": [5]},
            *({"name": n, "op": "dense", "parents": [p], "units": 5, "activation": "tanh"}
              for p, n in zip("xab", "abc")),
            {"name": "out", "op": "dense", "parents": ["c"], "units": 2},
        ],
        "tied": [{"owner": "a.weight", "members": ["b.weight", "c.weight"]},
                 {"owner": "b.bias", "members": ["c.bias"]}],
        "output": "out", "loss": "mse"})
    params = graph.init_params(5)
    inputs, target = prepare_batch(graph, *synthetic_batch(graph, 6, seed=5))
    shards = make_shards(graph, 1)
    settings = RunSettings(1, 1.0, graph.depth, 0, False)
    calls = []
    for shard in shards:
        calls += shard.begin(settings, params, {n: inputs[n] for n in shard.names if n in inputs},
                             target if graph.output in shard.names else None).items()
    held = []
    while calls:
        dst, messages = calls.pop()
        held += [m for m in messages if m[1] == "partial"]
        messages = [m for m in messages if m[1] != "partial"]
        calls += shards[dst].deliver(messages).items()
    by_name = {s.names[0]: s for s in shards}
    assert sorted((m[3], m[4], m[2]) for m in held) == [
        ("b", "a", graph.depth), ("c", "a", graph.depth), ("c", "b", graph.depth)]
    assert [m[5][0][0] for m in held if m[3] == "b"] == ["weight"]
    assert not by_name["a"].done and not by_name["b"].done and by_name["c"].done
    for m in held:
        assert by_name[m[4]].deliver([m]) == {}
    assert all(s.done for s in shards)
    local = LocalEngine(graph, params).relax(inputs, target, eta=1.0, iterations=graph.depth)
    got = {}
    for shard in shards:
        got.update(shard.result()["dtheta"])
    assert got.keys() == local.dtheta.keys() == {"a", "b", "out"}
    assert set(got["b"]) == {"bias"}  # b reports the bias group it owns, not its weight
    for v, grads in local.dtheta.items():
        assert grads.keys() == got[v].keys()
        for name, g in grads.items():
            np.testing.assert_array_equal(got[v][name], g)


def test_shard_logs_of_a_tied_graph_count_what_the_local_engine_logs(tmp_path):
    """Each shard records what its vertices receive (local calls too): the RNN's values,
    errors and member -> owner partials, per batch, round and edge, as the local log."""
    from collections import Counter

    from neurolocal.engines.rounds import ShardLog
    from neurolocal.traffic import TrafficRecorder, read_traffic
    from neurolocal.traffic.audit import audit, tied_partners

    graph = load_topology("topologies/rnn.yaml").graph
    params = graph.init_params(1)
    rounds = graph.depth
    settings = {"mode": "fixed", "schedule": "jacobi", "iterations": rounds, "read_inputs": True}
    groups = partition(graph, 5)
    actors = [f"actor-{i}" for i in range(len(groups))]
    shards = [Shard(graph, names, shard_of(groups), log=ShardLog(
        TrafficRecorder(tmp_path / "shards", "run", actors[i], settings=settings),
        actors, ["h"] * len(groups))) for i, names in enumerate(groups)]
    local = LocalEngine(graph, params, recorder=TrafficRecorder(tmp_path / "local", "run",
                                                                  "local", settings=settings))
    for batch in range(2):
        inputs, target = synthetic_batch(graph, 3, seed=batch)
        local.relax(inputs, target, eta=1.0, iterations=rounds, read_inputs=True)
        run_shards(shards, graph, params, inputs, target,
                   RunSettings(batch, 1.0, rounds, 0, True), random.Random(batch))
        for shard in shards:
            shard.flush_log()
    logs = {k: read_traffic(tmp_path / k) for k in ("shards", "local")}
    counts = {k: Counter(zip(*(log.columns[f].tolist()
                               for f in ("batch", "round", "src", "dst", "kind", "bytes"))))
              for k, log in logs.items()}
    assert counts["shards"] == counts["local"]
    partials = sum(n for key, n in counts["shards"].items() if key[4] == "partial")
    assert partials == 2 * len(tied_partners(graph)) == 2 * 14  # h@t, y@t -> step 0, t = 1..7
    result = audit(logs["shards"], graph)
    assert result.ok and result.counts_checked, result.violations
    actor_pairs = set(zip(logs["shards"].columns["src_actor"], logs["shards"].columns["dst_actor"]))
    assert ("actor-0", "actor-0") in actor_pairs and ("actor-0", "actor-1") in actor_pairs

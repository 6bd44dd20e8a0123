"""The round machine (neurolocal/engines/rounds.py): every schedule and mode gives the same
numbers whatever the shards and the delivery order; the forward prediction, dL/dx at the
default T and its batch-mean convention (issue 12, items 6, 8, 9) against torch."""

import random

import numpy as np
import pytest
from conftest import TOPOLOGIES
from shuffled import drive
from torch_graph import evaluate, relative_error

from neurolocal import training
from neurolocal.engines.base import prepare_batch
from neurolocal.engines.local import LocalEngine, split
from neurolocal.engines.rounds import RunSettings, Shard, merge_results
from neurolocal.engines.timewise import time_blocks
from neurolocal.generate import random_dag
from neurolocal.gradcheck import synthetic_batch
from neurolocal.topology import graph_from_dict, load_topology
from neurolocal.training.data import load_for_graph

#: (schedule, mode, eta, rounds beyond depth) of every synchronous policy
POLICIES = [("jacobi", "fixed", 0.7, 2), ("event", "fixed", 1.0, 1), ("event", "fixed", 0.6, 2),
            ("jacobi", "strict", 0.3, 1), ("ipc", "strict", 0.3, 0)]


def run_shuffled(graph, params, inputs, target, settings, mode, k, rng):
    """Shards of k vertices, begun in random order and fed in random delivery order."""
    groups = split(graph, -(-len(graph.order) // k))
    owners = {n: i for i, names in enumerate(groups) for n in names}
    shards = [Shard(graph, names, owners, mode) for names in groups]
    results = drive(shards, graph, settings, params, inputs, target, rng)
    return merge_results(graph, results, shards[0].schedule.rounds, settings.read_inputs)


def assert_same(got, want):
    dtheta, errors, feedback, energy, loss, prediction, _ = got
    assert dtheta.keys() == want.dtheta.keys()
    for v, grads in want.dtheta.items():
        for name, g in grads.items():
            np.testing.assert_array_equal(dtheta[v][name], g)
    for v, e in want.errors.items():
        np.testing.assert_array_equal(errors[v], e)
    for v, f in want.input_feedback.items():
        np.testing.assert_array_equal(feedback[v], f)
    assert energy == want.energy and loss == want.loss
    np.testing.assert_array_equal(prediction, want.prediction)


@pytest.mark.parametrize("name, schedule, mode, eta, extra", [
    (name, *policy) for name in ("mlp", "dag", "cnn", "rnn") for policy in POLICIES
    if not (name == "rnn" and policy[0] == "ipc")])   # ipc refuses tied parameters
def test_every_policy_is_the_same_whatever_the_shards_and_the_delivery_order(
        name, schedule, mode, eta, extra):
    graph = load_topology(TOPOLOGIES / f"{name}.yaml").graph
    params = graph.init_params(3)
    x, y = synthetic_batch(graph, 5, seed=4)
    want = LocalEngine(graph, params, mode=mode, schedule=schedule).relax(
        x, y, eta=eta, iterations=graph.depth + extra, read_inputs=True)
    inputs, target = prepare_batch(graph, x, y)
    settings = RunSettings(7, eta, graph.depth + extra, 0, True, schedule)
    for k, seed in [(1, 0), (3, 1), (len(graph.order), 2)]:
        assert_same(run_shuffled(graph, params, inputs, target, settings, mode, k,
                                 random.Random(seed)), want)


def test_backward_in_time_is_the_same_whatever_the_shards():
    graph = load_topology(TOPOLOGIES / "rnn.yaml").graph
    params = graph.init_params(1)
    x, y = synthetic_batch(graph, 4, seed=1)
    want = LocalEngine(graph, params, schedule="backward-in-time").relax(
        x, y, eta=0.5, iterations=3, read_inputs=True)
    assert len(want.energy) == 1 + 3 * len(time_blocks(graph))
    inputs, target = prepare_batch(graph, x, y)
    settings = RunSettings(0, 0.5, 3, 0, True, "backward-in-time")
    for k in (1, 5):
        assert_same(run_shuffled(graph, params, inputs, target, settings, "fixed", k,
                                 random.Random(k)), want)


def test_the_round_horizon_holds_every_vertex_at_a_round():
    """`on_round(t)` sees the state after exactly t rounds: the errors it reads equal a
    relaxation that stopped at T = t."""
    graph = load_topology(TOPOLOGIES / "dag.yaml").graph
    params = graph.init_params(0)
    x, y = synthetic_batch(graph, 4)
    engine = LocalEngine(graph, params, shards=3)
    seen = {}
    engine.relax(x, y, eta=0.5, iterations=6,
                 on_round=lambda t: seen.setdefault(t, {n: r.error.copy() for n, r in
                                                        engine.rules.items() if r.error is not None}))
    assert sorted(seen) == list(range(7))
    for t in (0, 2, 5):
        stopped = LocalEngine(graph, params).relax(x, y, eta=0.5, iterations=t)
        for n, e in stopped.errors.items():
            np.testing.assert_array_equal(seen[t][n], e)


def test_the_consumption_order_is_observable_and_follows_the_graph():
    graph = load_topology(TOPOLOGIES / "dag.yaml").graph
    inputs, target = prepare_batch(graph, *synthetic_batch(graph, 3))
    shard = Shard(graph, graph.order, {n: 0 for n in graph.order}, trace=True)
    shard.begin(RunSettings(0, 1.0, 2, 0, False, "jacobi"), graph.init_params(0), inputs, target)
    assert shard.done
    for n in graph.hidden:
        slot = shard.slots[n]
        feedback = [(src, tag) for kind, src, tag in slot.consumed if kind == "error"]
        # update u reads every child's tag u - 1 (the output's constant one), children in order
        want = [(c, -1 if c == graph.output else u - 1) for u in (1, 2) for c in slot.children]
        assert feedback == want, n


# --- issue 12, item 6: accuracy from the forward pass ------------------------------------------


@pytest.mark.parametrize("mode, schedule", [("fixed", "event"), ("strict", "jacobi"),
                                            ("strict", "ipc")])
def test_the_reported_prediction_is_the_forward_pass(mode, schedule):
    graph = load_topology(TOPOLOGIES / "mlp.yaml").graph
    params = graph.init_params(0)
    x, y = synthetic_batch(graph, 16)
    got = LocalEngine(graph, params, mode=mode, schedule=schedule).relax(x, y, eta=0.1,
                                                                           iterations=20)
    np.testing.assert_array_equal(got.prediction, training.predict(graph, params, x))


@pytest.mark.parametrize("mode", ["fixed", "strict"])
def test_train_accuracy_is_that_of_the_forward_predictions(mode):
    """With a learning rate too small to move any prediction, an epoch's train accuracy
    is the initial network's accuracy on the training set (about chance), in both
    modes; strict mode used to report 1.00 (the output pulled onto the target)."""
    topology = load_topology(TOPOLOGIES / "mlp.yaml")
    graph = topology.graph
    data = load_for_graph("digits", graph)
    settings = training.resolve_settings(topology.training, {
        "epochs": 1, "mode": mode, "eta": 0.1, "iterations": 20, "lr": 1e-30, "engine": "local",
        "batch_size": 256}, graph)
    run = training.new_run("pc", graph, settings)
    _, initial = training.evaluate(graph, graph.init_params(settings.seed), data.train_inputs,
                                   data.train_target)
    training.train(run, graph, data, settings)
    assert run.history.train_accuracy[0] == initial
    assert initial < 0.5


# --- issue 12, items 8 and 9: dL/dx at the default T, batch-mean convention -----------------


def torch_input_gradients(graph, params, inputs, target):
    """dL/dx of the batch-mean loss L, per input (torch autograd, float64)."""
    _, _, values, _ = evaluate(graph, params, inputs, target)
    return {n: (np.zeros(tuple(values[n].shape)) if values[n].grad is None
                else values[n].grad.numpy()) for n in graph.inputs}


def input_behind_a_chain(seed: int) -> dict:
    """A random DAG whose input first passes through 1-4 parameter-free ops, so the
    feedback reaching it settles later than any parameter update (input depth > depth)."""
    document = random_dag(seed, vertices=14, loss=("mse", "softmax_cross_entropy")[seed % 2])
    rng = random.Random(seed)
    chain, parent = [], "x"
    for k in range(rng.randint(1, 4)):
        chain.append({"name": f"pre{k}", "op": rng.choice(["tanh", "sigmoid"]),
                      "parents": [parent]})
        parent = f"pre{k}"
    rest = [dict(v, parents=[parent if p == "x" else p for p in v["parents"]])
            for v in document["vertices"][1:]]
    document["vertices"] = document["vertices"][:1] + chain + rest
    return document


def test_input_feedback_at_the_default_T_is_minus_dL_dx_on_random_dags():
    deeper = 0
    for seed in range(48):
        graph = graph_from_dict(input_behind_a_chain(seed))
        params = graph.init_params(seed)
        x, y = synthetic_batch(graph, 5, seed)
        got = LocalEngine(graph, params).relax(x, y, read_inputs=True)   # default T
        reference = torch_input_gradients(graph, params, x, y)
        for n, grad in reference.items():
            if np.linalg.norm(grad) == 0:   # every path through a dead relu
                np.testing.assert_array_equal(got.input_feedback[n], 0)
                continue
            assert relative_error(-got.input_feedback[n], grad) <= 1e-10, (seed, n)
        if graph.input_depth > graph.depth and np.linalg.norm(reference["x"]) > 0:
            deeper += 1   # the case the old default got wrong: T = depth is too short
            short = LocalEngine(graph, params).relax(x, y, iterations=graph.depth,
                                                     read_inputs=True)
            assert relative_error(-short.input_feedback["x"], reference["x"]) > 1e-6, seed
    assert deeper >= 24


def test_input_feedback_is_the_batch_mean_convention_of_dtheta():
    """Twice the batch (the same samples twice): dtheta and dL/dx unchanged, as for a mean."""
    graph = load_topology(TOPOLOGIES / "dag.yaml").graph
    params = graph.init_params(2)
    x, y = synthetic_batch(graph, 4, seed=2)
    one = LocalEngine(graph, params).relax(x, y, read_inputs=True)
    two = LocalEngine(graph, params).relax({k: np.concatenate([v, v]) for k, v in x.items()},
                                           np.concatenate([y, y]), read_inputs=True)
    for n, f in one.input_feedback.items():
        np.testing.assert_allclose(np.concatenate([f, f]) / 2, two.input_feedback[n],
                                   rtol=1e-12, atol=1e-15)
    reference = torch_input_gradients(graph, params, x, y)
    for n, g in reference.items():
        assert relative_error(-one.input_feedback[n], g) <= 1e-10


# --- the typed engine API ----------------------------------------------------------------------


def test_engines_share_one_protocol_and_one_frozen_config():
    import dataclasses

    from neurolocal.engines import EngineConfig
    from neurolocal.engines.base import Engine
    from neurolocal.engines.ray import RayEngine
    from neurolocal.errors import ConfigError

    graph = load_topology(TOPOLOGIES / "mlp.yaml").graph
    assert isinstance(LocalEngine(graph), Engine)
    for name in ("relax", "restore", "train_step", "snapshot", "close"):
        assert callable(getattr(RayEngine, name))
    config = EngineConfig(engine="ray", vertices_per_actor=4.0, timeout=3)
    assert (config.vertices_per_actor, config.timeout) == (4, 3.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.staleness = 2
    assert EngineConfig().resolved_schedule == "event"
    assert EngineConfig(mode="strict").resolved_schedule == "jacobi"
    for bad, field in [({"vertices_per_actor": 0}, "vertices_per_actor"),
                       ({"timeout": float("nan")}, "timeout"), ({"staleness": True}, "staleness"),
                       ({"max_restarts": -1}, "max_restarts"), ({"schedule": "gauss"}, "schedule")]:
        with pytest.raises(ConfigError) as error:
            EngineConfig(**bad)
        assert error.value.field == field and "--" not in str(error.value)

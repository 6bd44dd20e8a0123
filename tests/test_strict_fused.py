"""Fused strict rounds (issue 15): a shard holding the whole graph runs strict and ipc
rounds without messages (`Shard._fused_strict`); every number it gives must be the
message path's, bit for bit (the same operations on the same arrays, in the same order
per vertex), and its message counts those the message path sends."""

import numpy as np
import pytest

from neurolocal.engines.local import LocalEngine
from neurolocal.engines.rounds import Learning
from neurolocal.gradcheck import synthetic_batch
from neurolocal.topology import load_topology
from neurolocal.optimizers import make_optimizer
from conftest import TOPOLOGIES


def engine(graph, params, schedule, fuse):
    e = LocalEngine(graph, params, mode="strict", schedule=schedule)
    for shard in e.shards:
        shard.fuse = fuse
    return e


def copy(params):
    return {v: {k: np.array(a, copy=True) for k, a in p.items()} for v, p in params.items()}


@pytest.mark.parametrize("name", ["mlp", "dag", "cnn"])
@pytest.mark.parametrize("schedule, eta, rounds", [("jacobi", 0.1, 20), ("jacobi", 0.7, 3),
                                                    ("ipc", 0.3, 4)])
@pytest.mark.parametrize("read_inputs", [False, True])
def test_fused_strict_relaxation_is_the_message_path_bit_for_bit(name, schedule, eta, rounds,
                                                                 read_inputs):
    graph = load_topology(TOPOLOGIES / f"{name}.yaml").graph
    params = graph.init_params(1)
    x, y = synthetic_batch(graph, 6, seed=2)
    fused = engine(graph, params, schedule, True)
    got = fused.relax(x, y, eta=eta, iterations=rounds, read_inputs=read_inputs)
    want = engine(graph, params, schedule, False).relax(x, y, eta=eta, iterations=rounds,
                                                        read_inputs=read_inputs)
    assert fused.shards[0].fused                 # the fused path really ran
    assert got.messages == want.messages > 0
    assert got.energy == want.energy and got.loss == want.loss
    assert got.dtheta.keys() == want.dtheta.keys()
    for v in want.dtheta:
        for k in want.dtheta[v]:
            np.testing.assert_array_equal(got.dtheta[v][k], want.dtheta[v][k])
    for v in want.errors:
        np.testing.assert_array_equal(got.errors[v], want.errors[v])
    assert got.input_feedback.keys() == want.input_feedback.keys()
    for v in want.input_feedback:
        np.testing.assert_array_equal(got.input_feedback[v], want.input_feedback[v])


@pytest.mark.parametrize("schedule", ["jacobi", "ipc"])
def test_fused_strict_training_is_the_message_path_bit_for_bit(schedule):
    """Vertices applying their own updates (Adam), over several batches: the same
    parameters, optimizer state and energies."""
    graph = load_topology(TOPOLOGIES / "mlp.yaml").graph
    learning = Learning("adam", 1e-3, factory=make_optimizer)
    runs = []
    for fuse in (True, False):
        params = copy(graph.init_params(5))
        e = engine(graph, params, schedule, fuse)
        e.restore(params, None, learning)
        steps = [e.train_step(*synthetic_batch(graph, 8, seed=b), eta=0.2, iterations=6)
                 for b in range(3)]
        assert e.shards[0].fused is fuse
        runs.append((steps, e.snapshot()))
    (steps_a, (params_a, state_a)), (steps_b, (params_b, state_b)) = runs
    for a, b in zip(steps_a, steps_b):
        assert (a.loss, a.hits, a.messages, a.energy) == (b.loss, b.hits, b.messages, b.energy)
    for v in params_b:
        for k in params_b[v]:
            np.testing.assert_array_equal(params_a[v][k], params_b[v][k])
    assert state_a.keys() == state_b.keys()
    for k in state_b:
        np.testing.assert_array_equal(state_a[k], state_b[k])


def test_a_watched_or_logged_relaxation_takes_the_message_path():
    """on_round holds the vertices round by round: the machine steps message by message."""
    graph = load_topology(TOPOLOGIES / "mlp.yaml").graph
    params = graph.init_params(0)
    x, y = synthetic_batch(graph, 4, seed=0)
    e = engine(graph, params, "jacobi", True)
    seen = []
    watched = e.relax(x, y, eta=0.1, iterations=5, on_round=seen.append)
    assert seen == list(range(6)) and not e.shards[0].fused
    plain = engine(graph, params, "jacobi", True).relax(x, y, eta=0.1, iterations=5)
    assert watched.energy == plain.energy


@pytest.mark.parametrize("schedule", ["jacobi", "ipc"])
def test_a_logged_fused_relaxation_records_every_message_the_message_path_does(tmp_path,
                                                                             schedule):
    from collections import Counter

    from neurolocal.traffic import TrafficRecorder, read_traffic

    graph = load_topology(TOPOLOGIES / "dag.yaml").graph
    params = graph.init_params(0)
    x, y = synthetic_batch(graph, 4, seed=0)
    records, results = [], []
    for fuse in (True, False):
        directory = tmp_path / str(fuse)
        recorder = TrafficRecorder(directory, "run", "local", graph=graph.name,
                                   settings={"eta": 0.2, "iterations": 5, "read_inputs": True})
        e = LocalEngine(graph, params, mode="strict", schedule=schedule, recorder=recorder)
        e.shards[0].fuse = fuse
        results.append(e.relax(x, y, eta=0.2, iterations=5, read_inputs=True))
        assert e.shards[0].fused is fuse
        e.close()
        c = read_traffic(directory).columns
        records.append(Counter(zip(*(list(c[k]) for k in ("batch", "round", "src", "dst",
                                                           "kind", "bytes")))))
    assert records[0] == records[1] and sum(records[0].values()) == results[0].messages
    assert results[0].energy == results[1].energy

"""The threads transport (engines/threads.py): a thread per shard, equal bit for bit to the
local engine — relaxations (dtheta, errors, dL/dx) for every synchronous schedule and
mode, training (parameters and Adam state), pipelined training K = 1..3 with its weight
staleness; `--engine threads` on the command line; a traffic log that passes the audit."""

import json

import numpy as np
import pytest

from neurolocal.engines.local import LocalEngine
from neurolocal.engines.rounds import Learning
from neurolocal.engines.threads import ThreadsEngine
from neurolocal.gradcheck import synthetic_batch
from neurolocal.optimizers import make_optimizer
from neurolocal.topology import load_topology
from conftest import REPO_ROOT, cli_code

LEARNING = Learning("adam", 0.01, factory=make_optimizer)
MLP = REPO_ROOT / "topologies" / "mlp.yaml"


def graph_of(name):
    return load_topology(REPO_ROOT / "topologies" / f"{name}.yaml").graph


@pytest.mark.parametrize("name,mode,schedule", [
    ("mlp", "fixed", "jacobi"), ("mlp", "fixed", "event"), ("mlp", "strict", "jacobi"),
    ("mlp", "strict", "ipc"), ("rnn", "fixed", "backward-in-time"), ("cnn", "strict", "jacobi"),
])
def test_a_relaxation_equals_the_local_engines(name, mode, schedule):
    graph = graph_of(name)
    x, y = synthetic_batch(graph, 4, seed=1)
    params = graph.init_params(0)
    local = LocalEngine(graph, params, mode=mode, schedule=schedule)
    with ThreadsEngine(graph, params, mode=mode, schedule=schedule, shards=3) as threads:
        a = local.relax(x, y, eta=0.2, iterations=3, read_inputs=True)
        b = threads.relax(x, y, eta=0.2, iterations=3, read_inputs=True)
    assert a.energy == b.energy and a.loss == b.loss
    for field in ("dtheta", "errors", "input_feedback"):
        got, want = getattr(b, field), getattr(a, field)
        assert got.keys() == want.keys()
        for key in want:
            if isinstance(want[key], dict):
                for k in want[key]:
                    np.testing.assert_array_equal(got[key][k], want[key][k])
            else:
                np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.parametrize("pipeline", [1, 2, 3])
def test_training_equals_the_local_engines(pipeline):
    graph = graph_of("mlp")
    batches = [synthetic_batch(graph, 8, seed=s) for s in range(7)]

    def train(engine):
        engine.restore(graph.init_params(0), None, LEARNING)
        engine.weight_staleness = []
        losses = [s.loss for s in engine.train_batches(batches, eta=1.0, iterations=2,
                                                       pipeline=pipeline)]
        return losses, engine.snapshot(), sorted(engine.weight_staleness)

    want = train(LocalEngine(graph, graph.init_params(0), schedule="event"))
    with ThreadsEngine(graph, graph.init_params(0), schedule="event", shards=2) as threads:
        got = train(threads)
    assert got[0] == want[0] and got[2] == want[2]
    (pa, oa), (pb, ob) = got[1], want[1]
    for v in pb:
        for k in pb[v]:
            np.testing.assert_array_equal(pa[v][k], pb[v][k])
    for k in ob:
        np.testing.assert_array_equal(oa[k], ob[k])


def test_engine_threads_on_the_command_line(tmp_path):
    """`run --engine threads --pipeline 2` ends with the local engine's checkpoint; its
    traffic log passes the audit."""
    common = ["--epochs", 1, "--batch-size", 128, "--pipeline", 2, "--quiet"]
    assert cli_code("run", MLP, *common, "--engine", "threads", "--out", tmp_path / "t") == 0
    assert cli_code("run", MLP, *common, "--engine", "local", "--out", tmp_path / "l",
                    "--no-traffic-log") == 0
    a, b = np.load(tmp_path / "t" / "checkpoint-pc.npz"), np.load(tmp_path / "l" / "checkpoint-pc.npz")
    keys = [k for k in b.files if k.startswith(("param", "optimizer"))]
    assert keys
    for key in keys:
        np.testing.assert_array_equal(a[key], b[key])
    assert cli_code("traffic", "audit", tmp_path / "t" / "traffic", MLP) == 0
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert "threads" in json.dumps(metrics)


@pytest.mark.parametrize("name,mode,schedule,pipeline", [
    ("rnn", "fixed", "backward-in-time", 2), ("lstm", "fixed", "jacobi", 3),
    ("cnn", "strict", "jacobi", 2), ("dag", "fixed", "event", 3),
])
def test_pipelined_lanes_equal_the_local_engine_on_tied_and_strict_graphs(name, mode, schedule,
                                                                           pipeline):
    """The lanes' gates (engines/lanes.py) with tied groups (owners' new values travel as
    `param` messages), the backward-in-time schedule, strict mode and three shards."""
    graph = graph_of(name)
    batches = [synthetic_batch(graph, 4, seed=s) for s in range(5)]

    def train(engine):
        engine.restore(graph.init_params(0), None, LEARNING)
        losses = [s.loss for s in engine.train_batches(batches, eta=0.3, iterations=3,
                                                       pipeline=pipeline)]
        return losses, engine.snapshot()

    want = train(LocalEngine(graph, graph.init_params(0), mode=mode, schedule=schedule))
    with ThreadsEngine(graph, graph.init_params(0), mode=mode, schedule=schedule,
                       shards=3) as threads:
        got = train(threads)
    assert got[0] == want[0]
    for v, params in want[1][0].items():
        for k, value in params.items():
            np.testing.assert_array_equal(got[1][0][v][k], value, err_msg=f"{v}/{k}")
    for k, value in want[1][1].items():
        np.testing.assert_array_equal(got[1][1][k], value, err_msg=k)

"""The planned path (issue 24, docs/rounds.md §9): a shard holding the whole graph runs its
synchronous rounds from a layout compiled from the Schedule. Every number it gives must be
the message path's bit for bit — relaxations (dtheta, errors, dL/dx, energies, loss, message
counts) and training (parameters and optimizer state after several epochs) — on every
topology in topologies/, every synchronous schedule and mode, tied groups, random DAGs, and
its traffic log must hold the same records per edge."""

from collections import Counter

import numpy as np
import pytest

from neurolocal.engines.local import LocalEngine
from neurolocal.engines.rounds import Learning
from neurolocal.generate import random_dag
from neurolocal.gradcheck import synthetic_batch
from neurolocal.optimizers import make_optimizer
from neurolocal.topology import graph_from_dict, load_topology
from conftest import TOPOLOGIES

NAMES = sorted(p.stem for p in TOPOLOGIES.glob("*.yaml"))
#: (mode, schedule, eta, rounds): every synchronous schedule in the modes it runs in
CASES = [("fixed", "jacobi", 1.0, None), ("fixed", "jacobi", 0.3, 7), ("fixed", "event", 1.0, None),
         ("fixed", "event", 0.5, 6), ("fixed", "backward-in-time", 1.0, 2),
         ("strict", "jacobi", 0.2, 5), ("strict", "ipc", 0.3, 4)]
RECURRENT = {"rnn", "lstm"}


def engine(graph, params, mode, schedule, planned, recorder=None):
    e = LocalEngine(graph, params, mode=mode, schedule=schedule, recorder=recorder)
    for shard in e.shards:
        shard.use_plan = planned
    return e


def copy(params):
    return {v: {k: np.array(a, copy=True) for k, a in p.items()} for v, p in params.items()}


def same_arrays(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in b:
        if isinstance(b[k], dict):
            same_arrays(a[k], b[k])
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=str(k))


def same_relaxation(got, want) -> None:
    assert got.messages == want.messages > 0
    assert got.energy == want.energy and got.loss == want.loss
    assert got.vertex_energy == want.vertex_energy
    same_arrays(got.dtheta, want.dtheta)
    same_arrays(got.errors, want.errors)
    same_arrays(got.input_feedback, want.input_feedback)
    np.testing.assert_array_equal(got.prediction, want.prediction)


def relax_both(graph, params, mode, schedule, eta, rounds, read_inputs, batch=5):
    x, y = synthetic_batch(graph, batch, seed=2)
    runs = []
    for planned in (True, False):
        e = engine(graph, params, mode, schedule, planned)
        runs.append(e.relax(x, y, eta=eta, iterations=rounds, read_inputs=read_inputs))
        assert e.shards[0].path == ("planned" if planned else "message")
    return runs


def applicable(name, schedule):
    """backward-in-time needs an unrolled graph; ipc refuses tied parameters."""
    if schedule == "backward-in-time":
        return name in RECURRENT
    return not (schedule == "ipc" and load_topology(TOPOLOGIES / f"{name}.yaml").graph.tied)


@pytest.mark.parametrize("name, mode, schedule, eta, rounds",
                         [(n, *case) for n in NAMES for case in CASES if applicable(n, case[1])])
@pytest.mark.parametrize("read_inputs", [False, True])
def test_relaxation_is_the_message_path_bit_for_bit(name, mode, schedule, eta, rounds,
                                                    read_inputs):
    graph = load_topology(TOPOLOGIES / f"{name}.yaml").graph
    same_relaxation(*relax_both(graph, graph.init_params(1), mode, schedule, eta, rounds,
                                read_inputs))


@pytest.mark.parametrize("seed", range(24))
def test_random_dags_are_the_message_path_bit_for_bit(seed):
    graph = graph_from_dict(random_dag(seed, vertices=10 + seed % 7))
    params = graph.init_params(seed)
    mode, schedule, eta, rounds = CASES[seed % len(CASES)]
    if schedule == "backward-in-time":
        mode, schedule = "fixed", "jacobi"
    same_relaxation(*relax_both(graph, params, mode, schedule, eta, rounds, seed % 2 == 0))


def same_training(a, b) -> None:
    """Two (steps, (params, optimizer state)) runs: every batch's scalars and the final
    parameters and optimizer state, bit for bit."""
    (steps_a, (params_a, state_a)), (steps_b, (params_b, state_b)) = a, b
    for x, y in zip(steps_a, steps_b):
        assert (x.loss, x.hits, x.messages, x.energy, x.vertex_energy) == \
            (y.loss, y.hits, y.messages, y.energy, y.vertex_energy)
    same_arrays(params_a, params_b)
    same_arrays(state_a, state_b)


def train(graph, mode, schedule, planned, learning, epochs=3, batches=3, eta=0.3, rounds=4):
    params = copy(graph.init_params(5))
    e = engine(graph, params, mode, schedule, planned)
    e.restore(params, None, learning)
    steps = []
    for epoch in range(epochs):
        for b in range(batches):
            steps.append(e.train_step(*synthetic_batch(graph, 6, seed=10 * epoch + b), eta=eta,
                                      iterations=rounds))
    assert e.shards[0].path == ("planned" if planned else "message")
    return steps, e.snapshot()


@pytest.mark.parametrize("name, mode, schedule", [
    (n, m, s) for n in ["mlp", "cnn", "dag", "rnn", "lstm", "resnet", "transformer"]
    for m, s in [("fixed", "jacobi"), ("fixed", "event"), ("strict", "jacobi"), ("strict", "ipc")]
    if applicable(n, s)])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_training_is_the_message_path_bit_for_bit(name, optimizer, mode, schedule):
    """Every vertex applying its own update over 3 epochs (tied groups in rnn): the same
    losses, energies and counts per batch, and the same parameters and optimizer state."""
    graph = load_topology(TOPOLOGIES / f"{name}.yaml").graph
    learning = Learning(optimizer, 1e-2, factory=make_optimizer)
    same_training(*[train(graph, mode, schedule, planned, learning)
                     for planned in (True, False)])


def test_a_watched_relaxation_runs_planned_round_by_round():
    """on_round holds the vertices round by round: the plan honours the horizon."""
    graph = load_topology(TOPOLOGIES / "mlp.yaml").graph
    params = graph.init_params(0)
    x, y = synthetic_batch(graph, 4, seed=0)
    for mode in ("fixed", "strict"):
        e = engine(graph, params, mode, "jacobi", True)
        seen, energies = [], []
        watched = e.relax(x, y, eta=0.1, iterations=5,
                          on_round=lambda r: (seen.append(r), energies.append(
                              sum(rule.energy() for rule in e.rules.values()))))
        assert seen == list(range(6)) and e.shards[0].path == "planned"
        plain = engine(graph, params, mode, "jacobi", False).relax(x, y, eta=0.1, iterations=5)
        assert watched.energy == plain.energy == energies


@pytest.mark.parametrize("name, mode, schedule", [
    ("dag", "fixed", "jacobi"), ("dag", "fixed", "event"), ("dag", "strict", "jacobi"),
    ("dag", "strict", "ipc"), ("rnn", "fixed", "jacobi"), ("tiled", "fixed", "jacobi"),
    ("tiled", "fixed", "event"), ("tiled-alone", "fixed", "jacobi")])
def test_a_planned_traffic_log_records_every_message_the_message_path_does(tmp_path, name,
                                                                          mode, schedule):
    """Several batches (the first records message by message, the next from the phases'
    templates), relaxing and training: the same records per batch, round, edge, kind and
    bytes, and `traffic audit` passes both logs."""
    from neurolocal.traffic import TrafficRecorder, read_traffic
    from neurolocal.traffic.audit import audit

    graph = tiled(3) if name.startswith("tiled") else \
        load_topology(TOPOLOGIES / f"{name}.yaml").graph
    eta = 1.0 if mode == "fixed" else 0.2
    settings = {"engine": "local", "mode": mode, "schedule": schedule, "eta": eta,
                "iterations": 5, "read_inputs": True}
    records, messages = [], []
    for planned in (True, False):
        directory = tmp_path / str(planned)
        recorder = TrafficRecorder(directory, "run", "local", graph=graph.name,
                                   settings=settings)
        params = copy(graph.init_params(0))
        e = engine(graph, params, mode, schedule, planned, recorder)
        e.shards[0].group_vertices = name != "tiled-alone"
        counted = [e.relax(*synthetic_batch(graph, 4, seed=b), eta=eta, iterations=5,
                           read_inputs=True) for b in range(3)]
        counted = [(r.messages, r.energy, r.loss) for r in counted]
        assert (e.shards[0].path == "planned") is planned
        e.close()
        log = read_traffic(directory)
        result = audit(log, graph)
        assert result.ok and (result.counts_checked or schedule == "ipc"), result.violations
        c = log.columns
        records.append(Counter(zip(*(c[k].tolist() for k in ("batch", "round", "src", "dst",
                                                              "kind", "bytes")))))
        messages.append(counted)
    assert records[0] == records[1]
    assert sum(records[0].values()) == sum(m for m, _, _ in messages[0])
    assert messages[0] == messages[1]
    # a training run's log: the same records (tied `partial`/`param` messages included)
    trained = []
    for planned in (True, False):
        directory = tmp_path / f"train-{planned}"
        recorder = TrafficRecorder(directory, "run", "local", graph=graph.name,
                                   settings={**settings, "read_inputs": False})
        params = copy(graph.init_params(0))
        e = engine(graph, params, mode, schedule, planned, recorder)
        e.restore(params, None, Learning("adam", 1e-2))
        for b in range(3):
            e.train_step(*synthetic_batch(graph, 4, seed=b), eta=eta, iterations=5)
        e.close()
        c = read_traffic(directory).columns
        trained.append(Counter(zip(*(c[k].tolist() for k in ("batch", "round", "src", "dst",
                                                              "kind", "bytes")))))
    assert trained[0] == trained[1]


def test_the_message_path_runs_where_the_plan_cannot():
    """Simulated time hears every message (the sim transport listens to `stepped`), so it
    takes the message path; the local engine's shards take the plan."""
    from neurolocal.engines.sim import SimEngine

    graph = load_topology(TOPOLOGIES / "mlp.yaml").graph
    x, y = synthetic_batch(graph, 4, seed=0)
    sim = SimEngine(graph, graph.init_params(0)).relax(x, y, eta=0.1, iterations=3)
    local = LocalEngine(graph, graph.init_params(0), shards=2).relax(x, y, eta=0.1,
                                                                     iterations=3)
    assert (sim.extras["path"], local.extras["path"]) == ("message", "planned")
    assert sim.energy == local.energy


# --- shards that hold part of the graph ------------------------------------------------------

def sharded(graph, params, mode, schedule, planned, shards):
    e = LocalEngine(graph, params, mode=mode, schedule=schedule, shards=shards)
    for shard in e.shards:
        shard.use_plan = planned
    return e


@pytest.mark.parametrize("name, mode, schedule, eta, rounds",
                         [(n, *case) for n in NAMES for case in CASES if applicable(n, case[1])])
@pytest.mark.parametrize("shards", [2, 5])
def test_shards_holding_part_of_the_graph_relax_as_the_message_path(name, mode, schedule, eta,
                                                                    rounds, shards):
    """Each shard runs its part planned, messages crossing shards (one list per
    destination): every number is the one-shard message path's."""
    graph = load_topology(TOPOLOGIES / f"{name}.yaml").graph
    params = graph.init_params(1)
    x, y = synthetic_batch(graph, 5, seed=2)
    e = sharded(graph, params, mode, schedule, True, shards)
    got = e.relax(x, y, eta=eta, iterations=rounds, read_inputs=True)
    assert {s.path for s in e.shards} == {"planned"}
    want = engine(graph, params, mode, schedule, False).relax(x, y, eta=eta, iterations=rounds,
                                                              read_inputs=True)
    same_relaxation(got, want)


@pytest.mark.parametrize("graph_name", ["tiled", "tiled-full", "rnn", "dag"])
@pytest.mark.parametrize("mode, schedule", [("fixed", "jacobi"), ("fixed", "event"),
                                            ("strict", "jacobi")])
def test_shards_holding_part_of_the_graph_train_as_the_message_path(graph_name, mode,
                                                                    schedule):
    graph = (tiled(3) if graph_name == "tiled" else tiled(0) if graph_name == "tiled-full"
             else load_topology(TOPOLOGIES / f"{graph_name}.yaml").graph)
    learning = Learning("adam", 1e-2)
    runs = []
    for planned, shards in ((True, 3), (False, 1)):
        params = copy(graph.init_params(5))
        e = sharded(graph, params, mode, schedule, planned, shards)
        e.restore(params, None, learning)
        steps = [e.train_step(*synthetic_batch(graph, 6, seed=b), eta=0.5, iterations=4)
                 for b in range(4)]
        runs.append((steps, e.snapshot()))
    (steps_a, (params_a, state_a)), (steps_b, (params_b, state_b)) = runs
    for a, b in zip(steps_a, steps_b):
        assert (a.loss, a.hits, a.messages, a.energy) == (b.loss, b.hits, b.messages, b.energy)
    same_arrays(params_a, params_b)
    same_arrays(state_a, state_b)


# --- stacked groups (engines/plan/groups.py) --------------------------------------------------

def tiled(fan_in=3, activation="tanh", vertices=45, layers=3):
    from neurolocal.generate import tiled_mlp

    return graph_from_dict(tiled_mlp(vertices=vertices, layers=layers, fan_in=fan_in,
                                     activation=activation, input_width=6, output_width=3))


def grouped(e) -> list[int]:
    (state,) = e.shards[0]._layouts.values()
    return [len(members) for members in state.layout.groups]


@pytest.mark.parametrize("fan_in, activation", [(3, "tanh"), (0, "relu"), (2, "identity"),
                                                (1, "gelu")])
@pytest.mark.parametrize("schedule, eta, rounds", [("jacobi", 0.5, None), ("jacobi", 1.0, None),
                                                   ("event", 1.0, None), ("event", 0.4, 5)])
@pytest.mark.parametrize("batch, read_inputs", [(7, True), (1, False)])
def test_stacked_groups_relax_as_the_message_path_bit_for_bit(fan_in, activation, schedule,
                                                              eta, rounds, batch, read_inputs):
    graph = tiled(fan_in, activation)
    x, y = synthetic_batch(graph, batch, seed=3)
    runs = []
    for planned in (True, False):
        e = engine(graph, graph.init_params(4), "fixed", schedule, planned)
        runs.append(e.relax(x, y, eta=eta, iterations=rounds, read_inputs=read_inputs))
        if planned:
            assert grouped(e) and sum(grouped(e)) >= len(graph.order) - 6
    same_relaxation(*runs)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("fan_in", [3, 0])
def test_stacked_groups_train_as_the_message_path_bit_for_bit(optimizer, fan_in):
    """Each member applies its own optimizer step (stacked), over 3 epochs: the same
    parameters, moments and step counts as vertices stepping one at a time, and as the
    planned path without groups."""
    graph = tiled(fan_in)
    learning = Learning(optimizer, 3e-2, factory=make_optimizer)
    runs = []
    for planned, groups in ((True, True), (True, False), (False, False)):
        params = copy(graph.init_params(5))
        e = engine(graph, params, "fixed", "jacobi", planned)
        e.shards[0].group_vertices = groups
        e.restore(params, None, learning)
        steps = [e.train_step(*synthetic_batch(graph, 6, seed=10 * epoch + b), eta=0.7,
                              iterations=None)
                 for epoch in range(3) for b in range(3)]
        if groups:
            assert grouped(e)
        runs.append((steps, e.snapshot()))
    for other in runs[1:]:
        same_training(runs[0], other)


def test_stacked_groups_pipeline_as_the_message_path_bit_for_bit():
    """K = 3 batches in flight (local lanes): updates land in the same ticks."""
    graph = tiled(3)
    learning = Learning("adam", 1e-2, factory=make_optimizer)
    batches = [synthetic_batch(graph, 5, seed=b) for b in range(7)]
    runs = []
    for planned in (True, False):
        params = copy(graph.init_params(2))
        e = engine(graph, params, "fixed", "jacobi", planned)
        e.restore(params, None, learning)
        losses = [s.loss for s in e.train_batches(batches, eta=1.0, iterations=None,
                                                  pipeline=3)]
        runs.append((losses, e.staleness_histogram, e.snapshot()))
    assert runs[0][:2] == runs[1][:2]
    same_arrays(runs[0][2][0], runs[1][2][0])
    same_arrays(runs[0][2][1], runs[1][2][1])


def test_the_path_that_ran_is_said(tmp_path, capsys):
    """check-grad prints and writes which path ran; `run` counts batches per path in
    metrics.json."""
    import json

    from conftest import cli_code

    assert cli_code("check-grad", TOPOLOGIES / "mlp.yaml", "--json") == 0
    assert json.loads(capsys.readouterr().out)["path"] == "planned"
    assert cli_code("check-grad", TOPOLOGIES / "mlp.yaml", "--json", "--rounds", "message") == 0
    assert json.loads(capsys.readouterr().out)["path"] == "message"
    out = tmp_path / "run"
    assert cli_code("run", TOPOLOGIES / "mlp.yaml", "--engine", "local", "--epochs", "1",
                    "--out", out, "--no-depth-audit") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    report = metrics["runs"]["pc"]["engine_report"]
    assert report["batches_planned_path"] > 0 and "batches_message_path" not in report

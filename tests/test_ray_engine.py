"""The Ray engine on a real local Ray (one instance for the module, no mocks).

Actors are expensive here (~2 s each to start on a loaded 2-core machine), so each
(topology, vertices per actor) engine is built once and relaxes several batches.
"""

import signal
import time
from collections import Counter

import numpy as np
import pytest
import ray

import neurolocal.engines.ray.driver as ray_engine
from neurolocal.engines.base import default_iterations
from neurolocal.engines.local import LocalEngine
from neurolocal.engines.ray import RayEngine
from neurolocal.errors import ConfigError, EngineError
from neurolocal.gradcheck import synthetic_batch
from neurolocal.topology import load_topology
from neurolocal.traffic import TrafficRecorder, read_traffic
from neurolocal.traffic.audit import audit
from conftest import run_cli, module_ray
from torch_graph import max_relative_error, torch_gradients

TOPOLOGIES = ["topologies/mlp.yaml", "topologies/dag.yaml"]
#: the larger graphs, each engine built for one test and closed after it. Actors cost
#: ~1-3 s each to start here: one vertex per actor runs on the CNN (10 actors) and the
#: LSTM (75 actors, ~13 GB of actor processes, the slowest test of the suite: about 2
#: minutes, almost all of it starting actors); the RNN (34 vertices) runs 6 per actor
#: and the LSTM also 15 per actor: tied partials cross actors either way (owners are
#: the step-0 vertices, members live in later shards).
#: the LSTM one vertex per actor (75 actors, ~100 s) runs in tests/test_json_output.py,
#: exact against autograd; here packed, bitwise against the local engine
LARGE = [("topologies/cnn.yaml", 1), ("topologies/cnn.yaml", 4), ("topologies/rnn.yaml", 6),
         ("topologies/lstm.yaml", 15)]
#: asynchronous rounds used below (staleness 2, eta 0.5). Shards run in-process in 5
#: random delivery orders (same params and batch) first fall below 1e-6 relative after
#: at most 24 rounds (MLP) and 37 (DAG); synchronous eta 0.5 needs 25 (MLP), 41 (DAG).
#: 60 leaves margin for whatever order Ray delivers in.
ASYNC_ROUNDS = 60


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    with module_ray(log_to_driver=True):
        yield


@pytest.fixture(scope="module")
def engine_for():
    engines = {}

    def get(path, k):
        if (path, k) not in engines:
            graph = load_topology(path).graph
            engines[path, k] = RayEngine(graph, graph.init_params(7), vertices_per_actor=k)
        return engines[path, k]

    yield get
    for engine in engines.values():
        engine.close()


def assert_synchronous_run_equals_the_local_engine(engine, k):
    graph = engine.graph
    inputs, target = synthetic_batch(graph, 8, seed=k)
    for eta, rounds in [(1.0, graph.depth), (0.4, graph.depth + 3)]:
        local = LocalEngine(graph, engine.params).relax(inputs, target, eta=eta,
                                                        iterations=rounds, read_inputs=True)
        got = engine.relax(inputs, target, eta=eta, iterations=rounds, read_inputs=True)
        assert got.dtheta.keys() == local.dtheta.keys()
        for v, grads in local.dtheta.items():
            for name, g in grads.items():
                np.testing.assert_allclose(got.dtheta[v][name], g, rtol=0, atol=1e-12)
        for v, fb in local.input_feedback.items():
            np.testing.assert_allclose(got.input_feedback[v], fb, rtol=0, atol=1e-12)
        np.testing.assert_allclose(got.energy, local.energy, rtol=1e-12, atol=0)
        assert got.loss == pytest.approx(local.loss, rel=1e-12)
    report = got.extras["report"]
    assert [a["vertices"] for a in report["actors"]] == [list(graph.order[i:i + k])
                                                         for i in range(0, len(graph.order), k)]
    assert all(a["node_id"] and a["ip"] for a in report["actors"])
    if k == 1:  # every vertex its own actor: all messages cross actors
        assert report["message_counts"]["local_messages"] == 0
    else:
        assert report["message_counts"]["local_messages"] > 0


@pytest.mark.parametrize("path", TOPOLOGIES)
@pytest.mark.parametrize("k", [1, 3])
def test_synchronous_dtheta_equals_the_local_engine(engine_for, path, k):
    assert_synchronous_run_equals_the_local_engine(engine_for(path, k), k)


@pytest.mark.parametrize("path,k", LARGE)
def test_synchronous_dtheta_equals_the_local_engine_on_cnn_rnn_lstm(path, k):
    graph = load_topology(path).graph
    with RayEngine(graph, graph.init_params(7), vertices_per_actor=k) as engine:
        assert_synchronous_run_equals_the_local_engine(engine, k)


@pytest.mark.parametrize("path", TOPOLOGIES)
def test_asynchronous_rounds_converge_to_autograd(engine_for, path):
    engine = engine_for(path, 1)
    graph = engine.graph
    inputs, target = synthetic_batch(graph, 8, seed=11)
    _, reference = torch_gradients(graph, engine.params, inputs, target)
    got = engine.relax(inputs, target, eta=0.5, iterations=ASYNC_ROUNDS, staleness=2)
    assert max_relative_error(got.dtheta, reference)[0] < 1e-6
    assert len(got.energy) == ASYNC_ROUNDS + 1
    assert got.extras["report"]["staleness"] == 2


def test_scheduler_calls_per_batch_do_not_grow_with_rounds(engine_for):
    """The driver's calls per batch (the engine's count of the calls it waits on): one per
    actor whatever T is, while the actors' own messages grow with T."""
    engine = engine_for("topologies/dag.yaml", 1)
    graph = engine.graph
    inputs, target = synthetic_batch(graph, 4)
    messages, per_batch = [], []
    for rounds in (1, 8, 64):
        got = engine.relax(inputs, target, eta=0.5, iterations=rounds)
        messages.append(got.extras["report"]["message_counts"]["remote_messages"])
        per_batch.append(got.extras["report"]["scheduler_calls"]["per_batch"])
    assert per_batch == [len(engine.actors)] * 3 == [len(graph.order)] * 3
    assert messages[0] < messages[1] < messages[2]  # the actors' traffic does grow with T


def test_closing_kills_every_actor_even_when_a_run_fails():
    graph = load_topology("topologies/dag.yaml").graph
    params = graph.init_params(0)
    params["head"]["weight"] = np.ones((3, 3))  # wrong shape: fails inside an actor
    inputs, target = synthetic_batch(graph, 4)
    with pytest.raises(Exception):
        with RayEngine(graph, params, vertices_per_actor=6) as engine:
            actors = list(engine.actors)
            engine.relax(inputs, target)
    assert ray.is_initialized()  # the module's Ray is not the engine's to stop
    # ray.kill is asynchronous: a call posted right after it may still reach the actor
    # (seen under load). Every actor must be gone within a bounded wait.
    for actor in actors:
        with pytest.raises(ray.exceptions.RayActorError):
            for _ in range(60):
                ray.get(actor.connect.remote({}), timeout=60)
                time.sleep(0.5)


def test_settings_the_engine_cannot_run_are_refused_before_any_actor_starts():
    graph = load_topology("topologies/mlp.yaml").graph
    with pytest.raises(ConfigError, match="needs fixed predictions"):
        RayEngine(graph, mode="strict", schedule="event")
    with pytest.raises(ConfigError, match="fixed mode only"):
        RayEngine(graph, mode="strict", staleness=1)
    with pytest.raises(ConfigError, match="staleness"):
        RayEngine(graph, staleness=-1)
    with pytest.raises(ConfigError, match="placement"):
        RayEngine(graph, placement="everywhere")
    with pytest.raises(ConfigError, match="vertices_per_actor"):
        RayEngine(graph, vertices_per_actor=0)


# --- traffic log ---------------------------------------------------------------------------

LOGICAL = ("batch", "round", "src", "dst", "kind", "bytes")


def logical_counts(log):
    """(batch, round, src, dst, kind, bytes) -> messages, vertex traffic only."""
    rows = zip(*(log.columns[f].tolist() for f in LOGICAL))
    return Counter(row for row in rows if row[4] != "control")


def test_packed_shards_log_exactly_what_the_audit_and_the_local_engine_log(tmp_path):
    """DAG, T rounds, read_inputs, 3 vertices per actor, 2 batches. Per batch the audit
    expects (see neurolocal/traffic/audit.py): one value per edge in round 0; one error
    per relaxing edge in each round 1..T, the output's only in round 1; one error per
    input edge in round T + 1. Messages between vertices of one actor count too."""
    graph = load_topology("topologies/dag.yaml").graph
    params = graph.init_params(2)
    rounds = graph.depth + 2
    settings = {"eta": 1.0, "iterations": rounds, "read_inputs": True}
    local = LocalEngine(graph, params, recorder=TrafficRecorder(
        tmp_path / "local", "run", "local", graph=graph.name,
        settings={"engine": "local", "mode": "fixed", "schedule": "jacobi", **settings}))
    with RayEngine(graph, params, vertices_per_actor=3, traffic_log=str(tmp_path / "ray"),
                   traffic_settings=settings) as engine:
        for batch in range(2):
            inputs, target = synthetic_batch(graph, 4, seed=batch)
            want = local.relax(inputs, target, eta=1.0, iterations=rounds, read_inputs=True)
            got = engine.relax(inputs, target, eta=1.0, iterations=rounds, read_inputs=True)
        actors = len(engine.actors)
    log, reference = read_traffic(tmp_path / "ray"), read_traffic(tmp_path / "local")
    assert sorted(h["writer"] for h in log.headers) == sorted(
        [f"actor-{i}" for i in range(actors)] + ["scheduler"])
    assert log.settings["schedule"] == "jacobi" and log.settings["engine"] == "ray"
    result = audit(log, graph)
    assert result.ok and result.counts_checked, result.violations
    assert logical_counts(log) == logical_counts(reference)
    assert sum(logical_counts(log).values()) == got.messages * 2 > 0
    kinds = Counter(log.columns["kind"].tolist())
    assert kinds["control"] == 2 * 2 * actors  # per batch: one call and one reply per actor
    pairs = Counter(zip(log.columns["src_actor"].tolist(), log.columns["dst_actor"].tolist()))
    assert pairs[("actor-0", "actor-0")] > 0 and pairs[("actor-0", "actor-1")] > 0
    assert len(set(log.columns["src_host"].tolist())) == 1
    np.testing.assert_allclose(log.energy[1], want.energy, rtol=1e-12)
    assert (log.columns["t_recv"] >= log.columns["t_send"]).all()
    audited = run_cli("traffic", "audit", tmp_path / "ray", "topologies/dag.yaml")
    assert audited.returncode == 0 and audited.stdout.startswith("PASS"), audited.stdout


def test_asynchronous_log_is_marked_async_and_audited_for_locality_only(tmp_path):
    graph = load_topology("topologies/mlp.yaml").graph
    inputs, target = synthetic_batch(graph, 4)
    with RayEngine(graph, graph.init_params(0), vertices_per_actor=2, staleness=2,
                   traffic_log=str(tmp_path), traffic_settings={"iterations": 12}) as engine:
        engine.relax(inputs, target, eta=0.5, iterations=12)
    log = read_traffic(tmp_path)
    assert log.settings["schedule"] == "async"
    result = audit(log, graph)
    assert result.ok and not result.counts_checked and "async" in result.note


# --- failures ------------------------------------------------------------------------------

def test_a_dead_actor_fails_the_batch_in_one_line_naming_it_and_leaves_no_actor():
    graph = load_topology("topologies/mlp.yaml").graph
    inputs, target = synthetic_batch(graph, 4)
    engine = RayEngine(graph, graph.init_params(0), vertices_per_actor=2, timeout=120)
    actors = list(engine.actors)
    ray.kill(actors[1], no_restart=True)
    with pytest.raises(EngineError, match=r"actor-1 \(vertices hidden2, logits\) died") as failure:
        engine.relax(inputs, target)
    assert "\n" not in str(failure.value)
    assert engine.actors == []  # the failed batch closed the engine
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(actors[0].connect.remote({}), timeout=60)


def test_a_call_that_does_not_answer_in_time_is_named():
    @ray.remote(num_cpus=0)
    def never_answers():
        time.sleep(600)

    call = never_answers.remote()
    signal.alarm(60)  # a watchdog: gather must give up on its own, never hang the suite
    try:
        with pytest.raises(EngineError, match=r"did not finish its batch within 1 s: actor-7 "
                                              r"\(vertices z\)"):
            ray_engine.gather([call], 1.0, ["actor-7 (vertices z)"], "finish its batch")
    finally:
        signal.alarm(0)
    ray.cancel(call, force=True)


# --- every schedule and mode on both engines (one round machine) ---------------------------

#: (schedule, mode, eta, rounds): every synchronous policy of the round machine
POLICIES = [("jacobi", "fixed", 1.0, None), ("event", "fixed", 1.0, None),
            ("event", "fixed", 0.5, 4), ("jacobi", "strict", 0.2, 3), ("ipc", "strict", 0.2, 3),
            ("backward-in-time", "fixed", 0.5, 3)]
#: vertices per actor: a few actors per graph, so messages cross actors and stay inside
PACKING = {"mlp": 2, "dag": 4, "cnn": 4, "rnn": 12, "lstm": 30}


def policies_of(name):
    graph = load_topology(f"topologies/{name}.yaml").graph
    for schedule, mode, eta, rounds in POLICIES:
        if schedule == "ipc" and graph.tied:
            continue   # ipc refuses tied parameters
        if schedule == "backward-in-time" and not graph.tied:
            continue   # needs an unrolled recurrent graph
        if schedule == "event" and eta != 1.0 and name in ("rnn", "lstm"):
            continue   # the same code path as the feed-forward graphs, at 3x the actors' time
        yield name, schedule, mode, eta, rounds


@pytest.mark.parametrize("name, schedule, mode, eta, rounds",
                         [p for name in PACKING for p in policies_of(name)])
def test_every_schedule_and_mode_equals_the_local_engine_bit_for_bit(
        tmp_path, name, schedule, mode, eta, rounds):
    graph = load_topology(f"topologies/{name}.yaml").graph
    params = graph.init_params(4)
    inputs, target = synthetic_batch(graph, 6, seed=2)
    local = LocalEngine(graph, params, mode=mode, schedule=schedule).relax(
        inputs, target, eta=eta, iterations=rounds, read_inputs=True)
    with RayEngine(graph, params, mode=mode, schedule=schedule,
                   vertices_per_actor=PACKING[name], traffic_log=str(tmp_path),
                   traffic_settings={"eta": eta, "read_inputs": True,
                                     "iterations": rounds or default_iterations(graph, True)}
                   ) as engine:
        got = engine.relax(inputs, target, eta=eta, iterations=rounds, read_inputs=True)
    assert got.dtheta.keys() == local.dtheta.keys()
    for v, grads in local.dtheta.items():
        for k, g in grads.items():
            np.testing.assert_array_equal(got.dtheta[v][k], g, err_msg=f"{v}.{k}")
    for v, e in local.errors.items():
        np.testing.assert_array_equal(got.errors[v], e, err_msg=v)
    for v, f in local.input_feedback.items():
        np.testing.assert_array_equal(got.input_feedback[v], f, err_msg=v)
    assert got.energy == local.energy and got.loss == local.loss
    np.testing.assert_array_equal(got.prediction, local.prediction)
    assert got.messages == local.messages
    result = audit(read_traffic(tmp_path), graph)
    assert result.ok, result.violations
    assert result.counts_checked == (schedule in ("jacobi", "event"))


def test_check_grad_on_ray_equals_the_local_engine_bit_for_bit():
    """The command itself, for a strict and a backward-in-time case."""
    import json

    for args in (["topologies/mlp.yaml", "--mode", "strict", "--eta", "0.2", "-T", "5",
                  "--vertices-per-actor", "2"],
                 ["topologies/rnn.yaml", "--schedule", "backward-in-time", "--eta", "0.5",
                  "-T", "3", "--vertices-per-actor", "12"]):
        reports = {}
        for engine in ("local", "ray"):
            result = run_cli("check-grad", *args, "--engine", engine, "--json")
            assert result.returncode == 0, result.stderr
            reports[engine] = json.loads(result.stdout)
        for key in ("max_rel_error", "energy", "loss", "parameters"):
            assert reports["ray"][key] == reports["local"][key], key

"""Training with the vertices owning their parameters (docs/rounds.md): the Ray engine and
the local engine end bitwise equal; the scheduler carries only data, targets and scalars;
checkpoints move between engines; a worker killed with SIGKILL is restored from the
driver's snapshot and the run ends as if nothing happened. Real local Ray, no mocks."""

import os
import signal
import time
from collections import defaultdict

import numpy as np
import pytest

from neurolocal import training
from neurolocal.engines.local import LocalEngine
from neurolocal.engines.ray import RayEngine
from neurolocal.topology import load_topology
from neurolocal.traffic import read_traffic
from neurolocal.traffic.audit import audit
from neurolocal.traffic.log import SCHEDULER
from neurolocal.training.data import load_for_graph
from neurolocal.training.loop import learning_of
from conftest import REPO_ROOT, module_ray, cli_code as run

MLP = REPO_ROOT / "topologies" / "mlp.yaml"
RNN = REPO_ROOT / "topologies" / "rnn.yaml"
BATCH = 256


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    with module_ray():
        yield


def state(out_dir) -> dict[str, np.ndarray]:
    """Parameters and optimizer state of a run's checkpoint."""
    with np.load(out_dir / "checkpoint-pc.npz", allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files if k.startswith(("param/", "optimizer/"))}


def assert_bitwise(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_mlp_trains_to_bitwise_the_same_weights_on_ray_and_locally(tmp_path, optimizer):
    common = ["--epochs", 3, "--batch-size", BATCH, "--optimizer", optimizer, "--seed", 2,
              "--quiet"]
    assert run("run", MLP, *common, "--engine", "local", "--out", tmp_path / "local",
               "--no-traffic-log") == 0
    assert run("run", MLP, *common, "--engine", "ray", "--out", tmp_path / "ray") == 0
    assert_bitwise(state(tmp_path / "ray"), state(tmp_path / "local"))

    # no parameter travels through the scheduler: per batch it sends the batch's settings,
    # inputs and target and gets scalars back (snapshots, once per epoch, have batch ids
    # of their own and carry no scheduler -> actor call)
    log = read_traffic(tmp_path / "ray" / "traffic")
    result = audit(log, load_topology(MLP).graph)
    assert result.ok and result.counts_checked, result.violations
    c = log.columns
    per_batch, called = defaultdict(int), set()
    for i in np.flatnonzero(c["kind"] == "control"):
        per_batch[int(c["batch"][i])] += int(c["bytes"][i])
        if c["src"][i] == SCHEDULER:
            called.add(int(c["batch"][i]))
    batches = sorted(called)
    assert len(batches) == 3 * 6
    data_bytes = BATCH * 64 * 8 + BATCH * 10 * 8    # image and one-hot target, float64
    assert max(per_batch[b] for b in batches[1:]) <= data_bytes + 1024
    snapshots = sorted(set(per_batch) - called)
    assert len(snapshots) == 3   # one per epoch: the checkpoint's state, from the vertices


def test_a_tied_rnn_trains_to_bitwise_the_same_weights_on_ray_and_locally(tmp_path):
    common = ["--epochs", 3, "--batch-size", BATCH, "--seed", 1, "--quiet"]
    assert run("run", RNN, *common, "--engine", "local", "--out", tmp_path / "local",
               "--no-traffic-log") == 0
    assert run("run", RNN, *common, "--engine", "ray", "--vertices-per-actor", 12,
               "--out", tmp_path / "ray") == 0
    assert_bitwise(state(tmp_path / "ray"), state(tmp_path / "local"))
    log = read_traffic(tmp_path / "ray" / "traffic")
    result = audit(log, load_topology(RNN).graph)
    assert result.ok and result.counts_checked, result.violations
    assert (log.columns["kind"] == "param").sum() > 0   # owners sent members their values


@pytest.mark.parametrize("first, then", [("ray", "local"), ("local", "ray")])
def test_a_checkpoint_resumes_on_the_other_engine_bitwise(tmp_path, first, then):
    common = ["--batch-size", BATCH, "--seed", 4, "--quiet", "--no-traffic-log"]
    assert run("run", MLP, "--epochs", 2, *common, "--engine", "local",
               "--out", tmp_path / "whole") == 0
    assert run("run", MLP, "--epochs", 1, *common, "--engine", first,
               "--out", tmp_path / "part") == 0
    assert run("run", MLP, "--resume", tmp_path / "part", "--epochs", 2, "--engine", then,
               "--quiet", "--no-traffic-log") == 0
    assert_bitwise(state(tmp_path / "part"), state(tmp_path / "whole"))


def sigkill(engine) -> None:
    """kill -9 of actor 2's worker process, returning once the process is gone."""
    pid = engine.actor_info[2]["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
            time.sleep(0.1)
        except ProcessLookupError:
            break


def digits_mlp(seed: int, size: int, count: int):
    """The MLP on digits, Adam at lr 0.01, its initial parameters (seed 3) and `count`
    batches of `size` training indices (a permutation seeded by `seed`)."""
    topology = load_topology(MLP)
    graph = topology.graph
    data = load_for_graph("digits", graph)
    settings = training.resolve_settings(topology.training, {"lr": 0.01}, graph)
    order = np.random.default_rng(seed).permutation(data.train_size)
    batches = [order[i:i + size] for i in range(0, size * count, size)]
    return graph, data, learning_of(settings), graph.init_params(3), batches


def test_a_worker_killed_with_sigkill_is_restored_from_the_snapshot():
    """kill -9 of an actor's worker process between two batches of an epoch: Ray restarts
    the actor, the driver restores every vertex from its last snapshot (the epoch's
    start), replays the batches since, and the epoch ends bitwise as the local engine's."""
    graph, data, learning, params, batches = digits_mlp(seed=3, size=128, count=6)

    def train(engine, kill=None):
        engine.restore({v: {k: a.copy() for k, a in p.items()} for v, p in params.items()},
                       None, learning)
        restarts = []
        for b, idx in enumerate(batches):
            if kill is not None and b == 4:
                kill(engine)
            step = engine.train_step({"image": data.train_inputs["image"][idx]},
                                     data.train_target[idx], eta=1.0, iterations=2)
            restarts += step.restarts
        return engine.snapshot(), restarts

    (want, want_optimizer), _ = train(LocalEngine(graph, params))
    with RayEngine(graph, params, vertices_per_actor=1) as engine:
        (got, got_optimizer), restarts = train(engine, sigkill)
    assert [(r.actor, r.vertices, r.replayed) for r in restarts] == [
        ("actor-2", ("hidden2",), 4)]
    for vertex, per_param in want.items():
        for name, value in per_param.items():
            np.testing.assert_array_equal(got[vertex][name], value)
    assert got_optimizer.keys() == want_optimizer.keys()
    for key, value in want_optimizer.items():
        np.testing.assert_array_equal(got_optimizer[key], value)


# --- posting ahead (docs/rounds.md §7) -------------------------------------------------------


@pytest.mark.parametrize("topology, packing", [(MLP, "auto"), (MLP, 1), (RNN, 12)])
def test_posting_batches_ahead_trains_bitwise_as_batch_after_batch(tmp_path, topology, packing):
    """The driver keeps 4 batches posted (small batches: many per epoch, so they really
    overlap) and the weights and optimizer state end bitwise equal to waiting for every
    batch and to the local engine: default packing, one vertex per actor, and the tied
    RNN, whose members begin a batch only once their owners' new values are in."""
    # two epochs: posting ahead meets an epoch's end (the tied RNN, ~3x slower: one)
    epochs = 1 if topology == RNN else 2
    common = ["--epochs", epochs, "--batch-size", 64, "--seed", 3, "--quiet"]
    assert run("run", topology, *common, "--engine", "local", "--out", tmp_path / "local",
               "--no-traffic-log") == 0
    for ahead in (1, 4):
        assert run("run", topology, *common, "--engine", "ray", "--vertices-per-actor", packing,
                   "--post-ahead", ahead, "--out", tmp_path / f"ray-{ahead}") == 0
    want = state(tmp_path / "local")
    assert_bitwise(state(tmp_path / "ray-1"), want)
    assert_bitwise(state(tmp_path / "ray-4"), want)

    # the scheduler really posted ahead: the calls of batches 1..3 left it before the
    # replies of batch 0 came back (with 1, never: each call waits for the last reply)
    for ahead in (1, 4):
        log = read_traffic(tmp_path / f"ray-{ahead}" / "traffic")
        assert audit(log, load_topology(topology).graph).ok
        c = log.columns
        control = c["kind"] == "control"
        calls = control & (c["src"] == SCHEDULER) & (c["dst"] != SCHEDULER)
        replies = control & (c["dst"] == SCHEDULER) & (c["src"] != SCHEDULER)
        first = min(int(b) for b in c["batch"][calls])
        ids = sorted({int(b) for b in c["batch"][calls]})
        second = ids[1]
        reply_first = c["t_recv"][replies & (c["batch"] == first)].max()
        call_second = c["t_send"][calls & (c["batch"] == second)].min()
        assert (call_second < reply_first) == (ahead > 1), (ahead, call_second, reply_first)


def test_a_worker_killed_while_batches_are_posted_ahead_is_restored_and_replayed():
    """kill -9 of an actor's worker while batches are in flight (posted ahead): every
    batch in flight is abandoned, the actor restarted, every vertex restored from the
    snapshot, the collected batches replayed and the ones in flight posted again; the
    epoch ends bitwise as the local engine's."""
    graph, data, learning, params, batches = digits_mlp(seed=5, size=64, count=10)

    def train(engine, kill=None):
        engine.restore({v: {k: a.copy() for k, a in p.items()} for v, p in params.items()},
                       None, learning)

        def read():
            for b, idx in enumerate(batches):
                if kill is not None and b == 6:   # batches 3..5 are in flight now
                    kill(engine)
                yield {"image": data.train_inputs["image"][idx]}, data.train_target[idx]

        steps = list(engine.train_batches(read(), eta=1.0, iterations=2))
        return engine.snapshot(), [r for s in steps for r in s.restarts], steps

    (want, want_optimizer), _, want_steps = train(LocalEngine(graph, params))
    with RayEngine(graph, params, vertices_per_actor=1, post_ahead=3) as engine:
        assert engine.ahead == 3
        (got, got_optimizer), restarts, steps = train(engine, sigkill)
    assert [(r.actor, r.vertices) for r in restarts] == [("actor-2", ("hidden2",))]
    # the batches posted behind the failed one were given up with it: the next ids
    behind = restarts[0].abandoned_ahead
    assert len(behind) <= 2 and behind == tuple(range(restarts[0].abandoned + 1,
                                                      restarts[0].abandoned + 1 + len(behind)))
    assert restarts[0].as_dict()["abandoned_ahead"] == list(behind)
    assert [s.loss for s in steps] == [s.loss for s in want_steps]
    for vertex, per_param in want.items():
        for name, value in per_param.items():
            np.testing.assert_array_equal(got[vertex][name], value)
    assert got_optimizer.keys() == want_optimizer.keys()
    for key, value in want_optimizer.items():
        np.testing.assert_array_equal(got_optimizer[key], value)

"""Real asynchrony on Ray, recorded and replayed (issue 14, docs/asynchrony.md §6).

The Ray engine injects the sim engine's delay, loss and straggler models for real in its
actors; an asynchronous Ray run with --traffic-log writes replay journals (per actor:
which tag of each child every update read; the driver: settings, parameters, data,
digests), and `neurolocal replay` re-executes the run in one process bit for bit —
dtheta of a relaxation and the final weights of a training run. Real local Ray (one
per module), no mocks."""

import json

import msgpack
import numpy as np
import pytest

from neurolocal.cli import main
from neurolocal.engines.journal import read_stream
from neurolocal.engines.local import LocalEngine
from neurolocal.engines.ray import RayEngine
from neurolocal.engines.ray.asynchrony import Injection
from neurolocal.asynchrony.models import Asynchrony, parse_distribution
from neurolocal.engines.replay import read_journals, replay
from neurolocal.gradcheck import synthetic_batch
from neurolocal.topology import load_topology
from conftest import REPO_ROOT, module_ray

DAG = REPO_ROOT / "topologies" / "dag.yaml"
#: S = 2, random real delays (exp, mean 2 rounds of 1 ms), a straggler: the real
#: consumption order depends on the timing of each run (on the DAG: trunk hears from
#: three children along paths of different lengths; an MLP's order is fixed by its
#: structure whatever the timing). The three runs below draw their delays from seeds 1,
#: 2 and 3, so their orders differ whatever the machine's timing does (with one seed,
#: anything that stalls one actor long enough — a first kernel load once did — makes
#: every run's order the same)
ASYNC = ["--staleness", "2", "--delay", "exp:2", "--straggler", "trunk:2"]


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    with module_ray():
        yield


@pytest.fixture(scope="module")
def small_regression(tmp_path_factory):
    """A regression task for the DAG (12 inputs, 4 outputs): 96 training rows (3 batches
    of 32 per epoch) and 64 test rows."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 12))
    y = np.tanh(x @ rng.normal(size=(12, 4)) / 3)
    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(path, x_train=x[:96], y_train=y[:96], x_test=x[96:], y_test=y[96:])
    return path


def check_grad(capsys, out, *flags) -> dict:
    capsys.readouterr()
    assert main(["check-grad", str(DAG), "--engine", "ray", "--traffic-log", str(out),
                 "--json", *map(str, flags)]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def relaxations(tmp_path_factory):
    """The same asynchronous Ray relaxation, recorded three times: (log dir, report)."""
    import io
    from contextlib import redirect_stdout

    runs = []
    for k in range(3):
        out = tmp_path_factory.mktemp(f"relax{k}")
        with redirect_stdout(io.StringIO()) as printed:
            assert main(["check-grad", str(DAG), "--engine", "ray", "--traffic-log", str(out),
                         "--json", *ASYNC, "--seed", str(k + 1), "-T", "14", "--eta", "0.5"]) == 0
        runs.append((out, json.loads(printed.getvalue())))
    return runs


def replay_cli(capsys, directory) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["replay", str(directory)])
    return code, capsys.readouterr().out


def recorded_reads(directory) -> list:
    """Every batch's reads, in journal order (the consumption order of the run)."""
    [journal] = read_journals(str(directory))
    return [[tuple(r) for r in e["reads"]] for e in journal.events if e["event"] == "batch"]


@pytest.mark.slow
def test_three_asynchronous_ray_runs_differ_and_each_replays_bit_for_bit(
        tmp_path, capsys, relaxations, small_regression):
    """The must-show: the same asynchronous Ray relaxation and training run, three times.
    Their real consumption orders differ (else this test would show nothing), and each
    is replayed from its log bit for bit: dtheta, errors and energies of the relaxation,
    every training batch and the final weights and optimizer state."""
    relax_orders, train_orders = [], []
    for k, (out, report) in enumerate(relaxations):
        assert report["staleness"] == 2 and report["max_feedback_age"] >= 1
        code, text = replay_cli(capsys, out)
        assert code == 0 and "replayed bit for bit" in text and "ray run" in text, text
        relax_orders.append(recorded_reads(out))

        run = tmp_path / f"train{k}"
        assert main([str(a) for a in (
            "run", DAG, "--engine", "ray", *ASYNC, "--seed", k + 1, "-T", 8, "--epochs", 2,
            "--batch-size",
            32, "--data", small_regression, "--out", run, "--quiet")]) == 0
        code, text = replay_cli(capsys, run / "traffic")
        assert code == 0 and "6 batch(es) (6 training)" in text and "2 weight snapshot(s)" in \
            text and "replayed bit for bit" in text, text
        [journal] = read_journals(str(run / "traffic"))
        outcome = replay(journal)
        assert outcome.difference is None
        with np.load(run / "checkpoint-pc.npz") as checkpoint:   # the run's final weights
            keys = [n for n in checkpoint.files if n.startswith(("param/", "optimizer/"))]
            assert any(k.startswith("param/") for k in keys)
            for key in keys:
                part, rest = key.split("/", 1)
                if part == "param":
                    vertex, name = rest.split("/")
                    got = outcome.params[vertex][name]
                else:
                    got = outcome.optimizer[rest]
                np.testing.assert_array_equal(got, checkpoint[key], err_msg=key)
        train_orders.append(recorded_reads(run / "traffic"))
    assert all(len(o[0]) > 0 for o in relax_orders)
    distinct = {repr(o) for o in relax_orders}
    assert len(distinct) >= 2, "three asynchronous Ray relaxations consumed messages in " \
                               "the same order: the delays did not make real orders vary"
    assert len({repr(o) for o in train_orders}) >= 2


def test_a_journal_with_one_read_altered_is_reported(tmp_path, capsys, relaxations):
    """Make one recorded read an older (still allowed) tag: the replay computes something
    else and names the batch and the first differing vertex (exit 1)."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(relaxations[0][0], out)
    assert replay_cli(capsys, out)[0] == 0
    candidates = []
    for path in sorted(out.glob("*.actor-*.replay")):
        objects, _ = read_stream(path)
        for o, entry in enumerate(objects[1:], start=1):
            previous = {}
            for i, (vertex, update, child, tag) in enumerate(entry["reads"]):
                older = tag - 1   # still allowed (S = 2), non-decreasing for that child
                if tag >= 2 and older >= update - 3 and \
                        older >= previous.get((vertex, child), -1):
                    candidates.append((path, o, i))
                previous[(vertex, child)] = tag
    assert candidates
    path, o, i = candidates[-1]
    objects, _ = read_stream(path)
    objects[o]["reads"][i][3] -= 1
    path.write_bytes(b"".join(msgpack.packb(obj, use_bin_type=True) for obj in objects))
    code, text = replay_cli(capsys, out)
    assert code == 1 and "DIFFERS from the recorded run at batch" in text and "vertex" in text


def test_drops_without_retransmission_complete_and_count_the_losses(tmp_path, capsys):
    """Really lost (the payload never leaves the sender): the receivers go on with what
    they hold after the timeout; the run completes, reports its losses, replays."""
    out = tmp_path / "lossy"
    report = check_grad(capsys, out, "--drop", 0.15, "--delay", "exp:1", "--seed", 3,
                        "--straggler", "trunk:pause:1:5",   # and trunk's actor pauses
                        "--vertices-per-actor", 3)   # 4 actors: fewer to start
    assert report["messages_lost"] > 0 and report["messages_retransmitted"] == 0
    code, text = replay_cli(capsys, out)
    assert code == 0 and "replayed bit for bit" in text, text
    capsys.readouterr()   # the table says so too
    assert main(["check-grad", str(DAG), "--engine", "ray", "--drop", "0.15", "--seed", "3",
                 "--vertices-per-actor", "3"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("asynchrony: ") and "message(s) lost, 0 retransmitted" in line


def test_with_retransmission_the_ray_run_equals_the_lossless_run(tmp_path):
    """S = 0: the machine waits for exactly the synchronous sweep's messages, so lost
    messages sent again, real delays and reordering change nothing, bit for bit."""
    graph = load_topology(DAG).graph
    params = graph.init_params(4)
    inputs, target = synthetic_batch(graph, 8, 4)
    with LocalEngine(graph, params, schedule="jacobi") as local:
        want = local.relax(inputs, target, eta=1.0, read_inputs=True)
    spec = Asynchrony(delay=parse_distribution("exp:1", "delay"), drop=0.25, retransmit=True,
                      reorder=True)
    with RayEngine(graph, params, schedule="jacobi", asynchrony=Injection(spec, seed=7),
                   vertices_per_actor=3) as engine:   # (the module's Ray: the engine uses it)
        got = engine.relax(inputs, target, eta=1.0, read_inputs=True)
    report = got.extras["report"]
    assert report["messages_retransmitted"] > 0 and report["messages_lost"] == 0
    for vertex, updates in want.dtheta.items():
        for key, value in updates.items():
            np.testing.assert_array_equal(got.dtheta[vertex][key], value, err_msg=vertex)
    for vertex, value in want.errors.items():
        np.testing.assert_array_equal(got.errors[vertex], value, err_msg=vertex)
    for vertex, value in want.input_feedback.items():
        np.testing.assert_array_equal(got.input_feedback[vertex], value, err_msg=vertex)
    assert got.energy == want.energy


def test_compute_times_are_refused_on_ray_in_one_line(tmp_path, capsys):
    side = tmp_path / "async.yaml"
    side.write_text("asynchrony: {compute: 'exp:1'}\n")
    assert main(["check-grad", str(DAG), "--engine", "ray", "--asynchrony", str(side)]) == 2
    err = capsys.readouterr().err
    assert "asynchrony.compute" in err and "slow:" in err and err.count("\n") == 1


@pytest.mark.slow
def test_an_actor_killed_in_an_asynchronous_training_run_is_replayed_too(
        tmp_path, capsys, small_regression):
    """The restart path restores every vertex and replays the batches since the last
    snapshot: the journal records that restore and those batches, so the replay still
    ends on the run's final weights, bit for bit."""
    run = tmp_path / "run"
    assert main([str(a) for a in (
        "run", DAG, "--engine", "ray", *ASYNC, "-T", 8, "--epochs", 1, "--batch-size", 32,
        "--data", small_regression, "--out", run, "--quiet", "--fault", "3:2")]) == 0
    metrics = json.loads((run / "metrics.json").read_text())["runs"]["pc"]
    assert len(metrics["restarts"]) == 1 and metrics["restarts"][0]["replayed"] == 2
    [journal] = read_journals(str(run / "traffic"))
    assert [e["event"] for e in journal.events].count("restore") == 2
    code, text = replay_cli(capsys, run / "traffic")
    assert code == 0 and "5 batch(es) (5 training)" in text and "replayed bit for bit" in text
    outcome = replay(journal)
    with np.load(run / "checkpoint-pc.npz") as checkpoint:
        for key in (k for k in checkpoint.files if k.startswith("param/")):
            _, vertex, name = key.split("/")
            np.testing.assert_array_equal(outcome.params[vertex][name], checkpoint[key])


def test_an_incomplete_journal_is_one_line(tmp_path, capsys, relaxations):
    """A missing actor stream, or a driver stream cut before its first batch ended: exit
    2 and one line naming the file, never a replay that claims success."""
    import shutil

    missing = tmp_path / "missing"
    shutil.copytree(relaxations[0][0], missing)
    next(missing.glob("*.actor-3.replay")).unlink()
    cut = tmp_path / "cut"
    shutil.copytree(relaxations[0][0], cut)
    driver = next(cut.glob("*.scheduler.replay"))
    driver.write_bytes(driver.read_bytes()[:-100])
    for directory, message in ((missing, "the journal of actor-3 is missing"),
                               (cut, "holds no whole batch")):
        capsys.readouterr()
        assert main(["replay", str(directory)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.strip().splitlines()[-1].startswith("neurolocal: error")
        assert err.count("neurolocal: error") == 1

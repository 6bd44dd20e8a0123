"""Training: PC equals backprop when it should, resume is bitwise, checkpoints are safe,
settings are checked up front, and the CLI writes its metrics and pictures."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurolocal import training
from neurolocal.training import checkpoint
from neurolocal.training.data import load_for_graph
from neurolocal.errors import ConfigError, DataError
from neurolocal.optimizers import make_optimizer
from neurolocal.topology import load_topology
ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "topologies" / "mlp.yaml"
DAG = ROOT / "topologies" / "dag.yaml"


@pytest.fixture(scope="module")
def mlp():
    topology = load_topology(MLP)
    return topology, load_for_graph("digits", topology.graph)


def _settings(topology, **overrides):
    return training.resolve_settings(topology.training, overrides, topology.graph)


def _one_epoch(topology, data, algorithm, **overrides):
    settings = _settings(topology, epochs=1, **overrides)
    run = training.new_run(algorithm, topology.graph, settings)
    return training.train(run, topology.graph, data, settings)


def _main(*args) -> int:
    """The CLI in process (the subprocess path is covered by the short-run test)."""
    from neurolocal.cli import main

    args = [str(a) for a in args]
    if args[0] == "run" and "--engine" not in args:
        args += ["--engine", "local"]   # the trainer's semantics; Ray has its own tests
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


# --- PC at eta = 1, T >= depth is backprop -------------------------------------------------------


@pytest.mark.parametrize("optimizer, extra_iterations", [("adam", 0), ("sgd", 1)])
def test_first_epoch_of_pc_matches_backprop_loss_curve(mlp, optimizer, extra_iterations):
    topology, data = mlp
    depth = topology.graph.depth
    common = dict(optimizer=optimizer, lr=0.01, batch_size=64, seed=3)
    pc = _one_epoch(topology, data, "pc", eta=1.0, iterations=depth + extra_iterations, **common)
    bp = _one_epoch(topology, data, "bp", **common)
    pc_curve, bp_curve = np.array(pc.history.batch_losses[0]), np.array(bp.history.batch_losses[0])
    assert len(pc_curve) == len(bp_curve) == 22
    assert np.max(np.abs(pc_curve - bp_curve)) <= 1e-9
    assert abs(pc.history.test_loss[0] - bp.history.test_loss[0]) <= 1e-9
    # and the curve really moved: the optimizer steps are not a no-op
    assert pc_curve[-1] < 0.7 * pc_curve[0]


def test_too_few_relaxation_steps_do_not_match_backprop(mlp):
    """Negative control for the test above: T = depth - 1 leaves the first layer's error 0."""
    topology, data = mlp
    common = dict(optimizer="adam", lr=0.01, batch_size=64, seed=3)
    pc = _one_epoch(topology, data, "pc", eta=1.0, iterations=topology.graph.depth - 1, **common)
    bp = _one_epoch(topology, data, "bp", **common)
    assert np.max(np.abs(np.subtract(pc.history.batch_losses[0],
                                     bp.history.batch_losses[0]))) > 1e-4


def test_pc_matches_backprop_on_a_branching_graph_with_user_data(tmp_path):
    topology = load_topology(DAG)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 12))
    y = np.tanh(x[:, :4] * x[:, 4:8])
    np.savez(tmp_path / "reg.npz", x=x, y=y)
    data = load_for_graph(str(tmp_path / "reg.npz"), topology.graph)
    assert data.kind == "regression"
    common = dict(optimizer="adam", lr=0.01, batch_size=16)
    depth = topology.graph.depth
    pc = _one_epoch(topology, data, "pc", eta=1.0, iterations=depth, **common)
    bp = _one_epoch(topology, data, "bp", **common)
    assert np.max(np.abs(np.subtract(pc.history.batch_losses[0],
                                     bp.history.batch_losses[0]))) <= 1e-9


# --- optimizers against torch ----------------------------------------------------------------------


@pytest.mark.parametrize("name, options, torch_optimizer", [
    ("sgd", {"momentum": 0.9}, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    ("sgd", {"momentum": 0.0}, lambda p: torch.optim.SGD(p, lr=0.05)),
    ("adam", {}, lambda p: torch.optim.Adam(p, lr=0.05)),
])
def test_optimizer_steps_match_torch(name, options, torch_optimizer):
    rng = np.random.default_rng(1)
    params = {"v": {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}}
    reference = {k: torch.tensor(a.copy(), requires_grad=True) for k, a in params["v"].items()}
    ours = make_optimizer(name, 0.05, **options)
    theirs = torch_optimizer(list(reference.values()))
    for _ in range(5):
        grads = {k: rng.normal(size=a.shape) for k, a in params["v"].items()}
        ours.step(params, {"v": grads})
        for k, t in reference.items():
            t.grad = torch.tensor(grads[k])
        theirs.step()
    for k, t in reference.items():
        np.testing.assert_allclose(params["v"][k], t.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_optimizer_state_round_trips_and_is_shape_checked():
    first = {"v": {"W": np.ones((2, 3))}}
    adam = make_optimizer("adam", 0.1)
    adam.step(first, {"v": {"W": np.full((2, 3), 0.5)}})
    second = {"v": {"W": first["v"]["W"].copy()}}
    restored = make_optimizer("adam", 0.1)
    restored.load_state_arrays(adam.state_arrays(), second)
    g = {"v": {"W": np.full((2, 3), 0.25)}}
    adam.step(first, g)
    restored.step(second, g)
    assert np.array_equal(first["v"]["W"], second["v"]["W"])
    with pytest.raises(DataError, match="shape"):
        restored.load_state_arrays(adam.state_arrays(), {"v": {"W": np.ones((3, 2))}})


# --- checkpoints -----------------------------------------------------------------------------------


def test_generator_state_round_trips():
    rng = np.random.Generator(np.random.PCG64(7))
    rng.permutation(10)
    rng.random()
    restored = checkpoint._rng_from_array(checkpoint._rng_to_array(rng))
    assert np.array_equal(rng.permutation(1000), restored.permutation(1000))


def test_a_failed_checkpoint_write_keeps_the_previous_one(mlp, tmp_path, monkeypatch):
    topology, data = mlp
    settings = _settings(topology, epochs=1, batch_size=256)
    path = tmp_path / "checkpoint-pc.npz"
    run = training.train(training.new_run("pc", topology.graph, settings), topology.graph, data,
                      settings, checkpoint=path)
    before = path.read_bytes()

    def crash(handle, **arrays):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.np, "savez", crash)
    with pytest.raises(OSError):
        training.save_checkpoint(path, run, settings)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-pc.npz"]


def test_checkpoint_of_another_topology_is_refused(mlp, tmp_path):
    topology, data = mlp
    settings = _settings(topology, epochs=1, batch_size=256)
    path = tmp_path / "checkpoint-pc.npz"
    training.train(training.new_run("pc", topology.graph, settings), topology.graph, data, settings,
                checkpoint=path)
    wider = load_topology(_write_wider_mlp(tmp_path))
    with pytest.raises(DataError, match=r"hidden1\.weight has shape \[64, 128\].*needs \[64, 100\]"):
        training.load_checkpoint(path, wider.graph, settings)


def _write_wider_mlp(tmp_path):
    text = MLP.read_text().replace("units: 128, activation: tanh}\n  - {name: hidden2",
                                   "units: 100, activation: tanh}\n  - {name: hidden2")
    path = tmp_path / "mlp.yaml"
    path.write_text(text)
    return path


def test_resume_gives_bitwise_the_uninterrupted_weights(tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    common = ["--algorithm", "both", "--batch-size", "96", "--seed", "5", "--quiet"]
    assert _main("run", MLP, "--epochs", "3", "--out", whole, *common) == 0
    assert _main("run", MLP, "--epochs", "2", "--out", part, *common) == 0
    assert _main("run", MLP, "--resume", part, "--epochs", "3", "--quiet") == 0
    for algorithm in ("pc", "bp"):
        with np.load(whole / f"checkpoint-{algorithm}.npz", allow_pickle=False) as a, \
                np.load(part / f"checkpoint-{algorithm}.npz", allow_pickle=False) as b:
            assert int(a["epoch"]) == int(b["epoch"]) == 3
            assert sorted(a.files) == sorted(b.files)
            for key in a.files:
                if key.startswith(("param/", "optimizer/")) or key in ("rng", "history/test_loss"):
                    assert np.array_equal(a[key], b[key]), key
    metrics = json.loads((part / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["runs"]["pc"]["epochs"]] == [1, 2, 3]


def test_resume_refuses_changed_settings_and_a_wrong_topology(tmp_path, capsys):
    out = tmp_path / "run"
    assert _main("run", MLP, "--epochs", "1", "--batch-size", "256", "--out", out, "--quiet") == 0
    capsys.readouterr()
    for args, expected in [
        (("run", MLP, "--resume", out, "--lr", "0.5", "--epochs", "2"), "--lr"),
        (("run", _write_wider_mlp(tmp_path), "--resume", out, "--epochs", "2"), "shape"),
        (("run", MLP, "--out", out, "--epochs", "1"), "--resume"),
    ]:
        assert _main(*args) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and expected in err, err


# --- settings and the CLI -----------------------------------------------------------------------


@pytest.mark.parametrize("flags", [
    ["--eta", "0"], ["--eta", "-1"], ["--eta", "2"], ["-T", "0"], ["--batch-size", "0"],
    ["--optimizer", "rmsprop"], ["--epochs", "0"], ["--lr", "nan"], ["--mode", "lazy"],
])
def test_bad_settings_exit_2_with_one_line(capsys, tmp_path, flags):
    assert _main("run", MLP, "--out", tmp_path / "never", *flags) == 2
    err = capsys.readouterr().err.strip()
    assert err and err.count("\n") == 0 and "Traceback" not in err
    assert not (tmp_path / "never").exists()


def test_training_section_is_checked(mlp):
    topology, _ = mlp
    graph = topology.graph
    with pytest.raises(ConfigError, match="unknown key"):
        training.resolve_settings({"epochs": 3, "epoch": 4}, {}, graph)
    with pytest.raises(ConfigError, match="momentum"):
        training.resolve_settings({"optimizer": {"name": "sgd", "momentum": 1.5}}, {}, graph)
    with pytest.raises(ConfigError, match="batch_size"):
        training.resolve_settings({"batch_size": 0}, {}, graph)


def test_flags_override_the_training_section(mlp):
    topology, _ = mlp
    s = _settings(topology)
    assert (s.epochs, s.batch_size, s.optimizer, s.lr, s.iterations) == (
        topology.training["epochs"], topology.training["batch_size"], "adam",
        topology.training["optimizer"]["lr"], topology.training["iterations"])
    s = _settings(topology, epochs=2, optimizer="sgd")
    assert (s.epochs, s.optimizer, s.lr) == (2, "sgd", None)   # sgd's own default lr


def test_short_cli_run_writes_metrics_and_pictures(cli, tmp_path):
    out = tmp_path / "run"
    result = cli("run", MLP, "--engine", "local", "--algorithm", "both", "--epochs", "2", "--batch-size", "128",
                     "--out", out)
    assert result.returncode == 0, result.stderr
    assert "test acc" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["versions"]) >= {"python", "numpy", "numba", "ray"}
    assert metrics["settings"]["iterations"] == 2 and metrics["settings"]["epochs"] == 2
    for algorithm in ("pc", "bp"):
        rows = metrics["runs"][algorithm]["epochs"]
        assert [r["epoch"] for r in rows] == [1, 2]
        assert all(set(r) >= {"train_loss", "test_loss", "train_accuracy", "test_accuracy",
                              "seconds"} for r in rows)
    assert len(metrics["runs"]["pc"]["energy_per_round"]) == 3
    for picture in ("curves.png", "energy.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_text_training_on_an_unrolled_graph_matches_backprop_and_reports_perplexity():
    from tests.test_data import _unrolled

    graph = _unrolled(steps=4, width=8, initial_state=True)
    data = load_for_graph({"name": "text", "chars": 3000}, graph)
    settings = training.resolve_settings({"epochs": 2, "batch_size": 50, "lr": 0.01}, {}, graph)
    runs = {a: training.train(training.new_run(a, graph, settings), graph, data, settings)
            for a in ("pc", "bp")}
    assert np.max(np.abs(np.subtract(runs["pc"].history.batch_losses[1],
                                     runs["bp"].history.batch_losses[1]))) <= 1e-9
    rows = runs["pc"].history.rows("text")
    assert rows[-1]["test_perplexity"] == pytest.approx(np.exp(rows[-1]["test_loss"]))
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]

"""`--dtype float32` (issue 15): parameters, values, errors and messages in float32 on the
local and Ray engines; float64 stays the default (and the exactness tests' dtype).

Tolerances: float32 carries ~7 significant digits; a relaxation of T rounds and a few
matmuls of 128 terms round at ~1e-7 relative per operation, so PC's float32 updates
agree with torch's float32 gradients to 1e-5 relative (measured ~2e-7), and a digits
MLP trained in float32 reaches the float64 run's test accuracy within 2 points
(measured: equal to 0.01)."""

import json

import numpy as np
import pytest
import torch

from neurolocal import training
from neurolocal.engines import EngineConfig, relax_once
from neurolocal.engines.local import LocalEngine
from neurolocal.errors import ConfigError
from neurolocal.gradcheck import synthetic_batch
from neurolocal.topology import load_topology
from neurolocal.traffic import TrafficRecorder, read_traffic
from neurolocal.training.data import load_for_graph
from conftest import TOPOLOGIES, run_cli


def mlp():
    return load_topology(TOPOLOGIES / "mlp.yaml")


def torch_float32_gradients(params, x, y):
    """dL/dtheta of mlp.yaml (tanh, tanh, softmax cross-entropy), batch mean, in float32."""
    leaves = {v: {k: torch.tensor(a, dtype=torch.float32, requires_grad=True)
                  for k, a in p.items()} for v, p in params.items()}
    h = torch.tensor(x, dtype=torch.float32)
    for name in ("hidden1", "hidden2"):
        h = torch.tanh(h @ leaves[name]["weight"] + leaves[name]["bias"])
    out = h @ leaves["logits"]["weight"] + leaves["logits"]["bias"]
    torch.nn.functional.cross_entropy(out, torch.tensor(y, dtype=torch.long)).backward()
    return {v: {k: t.grad.numpy() for k, t in p.items()} for v, p in leaves.items()}


def test_float32_is_float32_end_to_end_and_the_log_counts_its_bytes(tmp_path):
    graph = mlp().graph
    params = graph.init_params(0)
    x, y = synthetic_batch(graph, 16, seed=1)
    recorder = TrafficRecorder(tmp_path, "f32", "local", graph=graph.name,
                               settings={"eta": 1.0, "iterations": 2, "read_inputs": False})
    engine = LocalEngine(graph, params, dtype="float32", recorder=recorder, schedule="jacobi")
    assert all(a.dtype == np.float64 for p in params.values() for a in p.values())  # untouched
    assert all(a.dtype == np.float32 for p in engine.params.values() for a in p.values())
    relaxation = engine.relax(x, y, eta=1.0, iterations=2)
    engine.close()
    for name, rule in engine.rules.items():
        assert rule.value.dtype == np.float32, name
        if rule.role != "input":
            assert rule.error.dtype == np.float32 and rule.prediction.dtype == np.float32, name
    for vertex, updates in relaxation.dtheta.items():
        assert all(u.dtype == np.float32 for u in updates.values()), vertex
    assert all(e.dtype == np.float32 for e in relaxation.errors.values())
    columns = read_traffic(tmp_path).columns
    sizes = {(s, d): b for s, d, b in zip(columns["src"], columns["dst"], columns["bytes"])}
    assert sizes[("image", "hidden1")] == 16 * 64 * 4       # the input's values, float32
    assert sizes[("logits", "hidden2")] == 16 * 128 * 4     # J^T eps, float32
    assert sizes[("hidden2", "hidden1")] == 16 * 128 * 4


@pytest.mark.parametrize("mode, eta, rounds", [("fixed", 1.0, 2), ("strict", 0.1, 40)])
def test_float32_training_steps_keep_float32_and_the_optimizer_too(mode, eta, rounds):
    from neurolocal.engines.rounds import Learning
    from neurolocal.optimizers import make_optimizer

    graph = mlp().graph
    engine = LocalEngine(graph, graph.init_params(0), mode=mode, dtype="float32",
                         schedule="jacobi")
    engine.restore(engine.params, None, Learning("adam", 1e-3, factory=make_optimizer))
    for b in range(3):
        step = engine.train_step(*synthetic_batch(graph, 8, seed=b), eta=eta, iterations=rounds)
        assert np.isfinite(step.loss)
    params, state = engine.snapshot()
    assert all(a.dtype == np.float32 for p in params.values() for a in p.values())
    assert all(a.dtype == np.float32 for k, a in state.items() if k != "step")


def test_float32_updates_agree_with_torch_float32_gradients():
    graph = mlp().graph
    params = graph.init_params(3)
    x, y = synthetic_batch(graph, 32, seed=3)
    relaxation = relax_once(EngineConfig(dtype="float32", schedule="jacobi"), graph, params,
                            x, y, eta=1.0, iterations=graph.depth)
    cast = {v: {k: a.astype(np.float32) for k, a in p.items()} for v, p in params.items()}
    reference = torch_float32_gradients(cast, x["image"], y)
    worst = 0.0
    for v, grads in reference.items():
        for k, g in grads.items():
            estimate = -relaxation.dtheta[v][k]
            assert estimate.dtype == np.float32
            worst = max(worst, float(np.linalg.norm(estimate - g) / np.linalg.norm(g)))
    assert worst < 1e-5


@pytest.mark.parametrize("topology", ["mlp.yaml", "cnn.yaml", "dag.yaml"])
def test_check_grad_in_float32_agrees_to_float32_rounding(topology):
    done = run_cli("check-grad", TOPOLOGIES / topology, "--dtype", "float32", "--json",
                   "--max-rel-error", "1e-5")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert 0 < report["max_rel_error"] < 1e-5   # float32, not float64's ~1e-15


def test_a_float32_digits_mlp_learns_as_well_as_float64():
    topology = mlp()
    graph = topology.graph
    data = load_for_graph("digits", graph)
    accuracy = {}
    for dtype in ("float64", "float32"):
        settings = training.resolve_settings(topology.training, {
            "epochs": 3, "engine": "local", "batch_size": 32}, graph)
        run = training.new_run("pc", graph, settings)
        training.train(run, graph, data, settings, engine_config=EngineConfig(dtype=dtype))
        accuracy[dtype] = run.history.test_accuracy[-1]
        assert all(a.dtype == np.dtype(dtype) for p in run.params.values() for a in p.values())
    assert accuracy["float64"] > 0.85
    assert abs(accuracy["float32"] - accuracy["float64"]) <= 0.02, accuracy


def test_a_bad_dtype_is_one_line_and_exit_2():
    for args in (["check-grad", TOPOLOGIES / "mlp.yaml", "--dtype", "float16"],
                 ["run", TOPOLOGIES / "mlp.yaml", "--dtype", "double", "--epochs", "1"],
                 ["check-grad", TOPOLOGIES / "mlp.yaml", "--dtype", "float32", "--engine", "sim"]):
        done = run_cli(*args)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "--dtype" in lines[0], lines
    with pytest.raises(ConfigError) as caught:
        EngineConfig(dtype="float16")
    assert caught.value.field == "dtype"


@pytest.mark.slow
def test_the_ray_engine_computes_in_float32_like_the_local_engine(tmp_path):
    """One Ray (embedded) for this test: packed shards, float32 over the wire."""
    import ray

    from neurolocal.engines.ray import RayEngine

    graph = mlp().graph
    params = graph.init_params(2)
    x, y = synthetic_batch(graph, 8, seed=2)
    want = LocalEngine(graph, params, dtype="float32", schedule="jacobi").relax(
        x, y, eta=0.5, iterations=4)
    try:
        with RayEngine(graph, params, vertices_per_actor=2, dtype="float32",
                       traffic_log=str(tmp_path)) as engine:
            got = engine.relax(x, y, eta=0.5, iterations=4)
    finally:
        ray.shutdown()
    for v in want.dtheta:
        for k in want.dtheta[v]:
            assert got.dtheta[v][k].dtype == np.float32
            np.testing.assert_array_equal(got.dtheta[v][k], want.dtheta[v][k])
    columns = read_traffic(tmp_path).columns
    errors = np.asarray(columns["kind"]) == "error"
    assert set(np.asarray(columns["bytes"])[errors]) == {8 * 128 * 4}

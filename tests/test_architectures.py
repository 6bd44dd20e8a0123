"""The paper's architectures (CNN, RNN, LSTM) and random conv/pool graphs against PyTorch.

Convention: T relaxation updates, then the Hebbian update reads the errors. With
eta = 1 every update is exact once T >= graph.depth (the unrolled graph's depth
for the recurrent nets). With eta = 0.1 the errors approach backprop's
geometrically; the T stated per topology below is the first multiple of 10 past
which every parameter is within 1e-6 (measured: cnn 288, rnn 316, lstm 486, seed 0),
with a margin.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from neurolocal import LocalEngine, graph_from_dict, load_topology
from neurolocal.gradcheck import synthetic_batch
from torch_graph import max_relative_error, torch_gradients

ETA_SMALL_ITERATIONS = {"cnn": 300, "rnn": 330, "lstm": 500}


@pytest.fixture(scope="module", params=["cnn", "rnn", "lstm"])
def paper_net(request):
    graph = load_topology(f"topologies/{request.param}.yaml").graph
    params = graph.init_params(seed=0)
    inputs, target = synthetic_batch(graph, batch_size=6, seed=1)
    _, reference = torch_gradients(graph, params, inputs, target)
    return request.param, graph, params, inputs, target, reference


def test_eta_one_and_depth_iterations_match_torch(paper_net):
    name, graph, params, inputs, target, reference = paper_net
    relaxation = LocalEngine(graph, params).relax(inputs, target, eta=1.0,
                                                  iterations=graph.depth)
    worst, errors = max_relative_error(relaxation.dtheta, reference)
    assert worst <= 1e-10, errors
    # every parameter is reported, a tied tensor once (under its owner)
    assert {(v, k) for v, g in relaxation.dtheta.items() for k in g} == \
        {(v, k) for v, g in reference.items() for k in g}


def test_eta_one_before_depth_is_not_exact(paper_net):
    name, graph, params, inputs, target, reference = paper_net
    relaxation = LocalEngine(graph, params).relax(inputs, target, eta=1.0,
                                                  iterations=graph.depth - 1)
    assert max_relative_error(relaxation.dtheta, reference)[0] > 1e-7


def test_eta_point_one_converges_below_1e6(paper_net):
    name, graph, params, inputs, target, reference = paper_net
    iterations = ETA_SMALL_ITERATIONS[name]
    relaxation = LocalEngine(graph, params).relax(inputs, target, eta=0.1, iterations=iterations)
    worst, errors = max_relative_error(relaxation.dtheta, reference)
    assert worst < 1e-6, (iterations, errors)


def test_recurrent_nets_have_at_least_five_steps_and_tie_every_cell_parameter():
    for name in ("rnn", "lstm"):
        graph = load_topology(f"topologies/{name}.yaml").graph
        steps = sum(1 for n in graph.inputs if n.startswith("x@"))
        assert steps >= 5
        cell_params = [(v, k) for v, shapes in graph.param_shapes().items() if v.endswith("@0")
                       for k in shapes]
        assert sorted(g.owner for g in graph.tied) == sorted(cell_params)
        assert all(len(g.members) == steps - 1 for g in graph.tied)


# --- random conv / pool shapes ---------------------------------------------------------------


def random_spatial_graph(seed: int) -> dict:
    """input -> conv -> pool -> conv -> (reshape) -> flatten -> dense, random geometry."""
    rng = np.random.default_rng(seed)
    channels = int(rng.integers(1, 4))
    size = int(rng.integers(6, 11))
    k1 = int(rng.integers(1, 4))
    conv1 = {"name": "conv1", "op": "conv2d", "parents": ["x"],
             "out_channels": int(rng.integers(1, 5)), "kernel_size": k1,
             "stride": int(rng.integers(1, 3)), "padding": int(rng.integers(0, k1 // 2 + 1)),
             "activation": str(rng.choice(["identity", "tanh", "relu", "sigmoid"]))}
    pk = int(rng.integers(1, 4))
    pool = {"name": "pool", "op": str(rng.choice(["maxpool2d", "avgpool2d"])),
            "parents": ["conv1"], "kernel_size": pk, "stride": int(rng.integers(1, pk + 1)),
            "padding": int(rng.integers(0, pk // 2 + 1))}
    kh, kw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    conv2 = {"name": "conv2", "op": "conv2d", "parents": ["pool"],
             "out_channels": int(rng.integers(1, 4)), "kernel_size": [kh, kw],
             "stride": [int(rng.integers(1, 3)), 1], "padding": [kh // 2, 0],
             "bias": bool(rng.integers(0, 2)), "activation": "tanh"}
    return {
        "name": f"spatial{seed}",
        "vertices": [
            {"name": "x", "op": "input", "shape": [channels, size, size]},
            conv1, pool, conv2,
            {"name": "flat", "op": "flatten", "parents": ["conv2"]},
            {"name": "out", "op": "dense", "parents": ["flat"], "units": 3},
        ],
        "output": "out",
        "loss": "mse",
    }


@pytest.mark.parametrize("seed", range(8))
def test_random_conv_pool_shapes_match_torch(seed):
    graph = graph_from_dict(random_spatial_graph(seed))
    params = graph.init_params(seed)
    inputs, target = synthetic_batch(graph, batch_size=4, seed=seed)
    _, reference = torch_gradients(graph, params, inputs, target)
    engine = LocalEngine(graph, params)
    exact = engine.relax(inputs, target, eta=1.0, iterations=graph.depth)
    worst, errors = max_relative_error(exact.dtheta, reference)
    assert worst <= 1e-10, (graph.summary(), errors)
    # eta = 0.1: depth 5 is reached to 1e-6 within 250 updates
    slow = engine.relax(inputs, target, eta=0.1, iterations=250)
    assert max_relative_error(slow.dtheta, reference)[0] < 1e-6


def test_reshape_embedding_and_avgpool_match_torch():
    graph = graph_from_dict({
        "vertices": [
            {"name": "ids", "op": "input", "shape": [3]},
            {"name": "emb", "op": "embedding", "parents": ["ids"], "vocab": 7, "units": 8},
            {"name": "img", "op": "reshape", "parents": ["emb"], "shape": [2, 3, 4]},
            {"name": "avg", "op": "avgpool2d", "parents": ["img"], "kernel_size": 2,
             "stride": 1, "padding": 1},
            {"name": "flat", "op": "flatten", "parents": ["avg"]},
            {"name": "out", "op": "dense", "parents": ["flat"], "units": 4, "activation": "tanh"},
        ],
        "output": "out", "loss": "mse"})
    rng = np.random.default_rng(3)
    inputs = {"ids": rng.integers(0, 7, size=(5, 3)).astype(float)}
    target = rng.standard_normal((5, 4))
    params = graph.init_params(3)
    _, reference = torch_gradients(graph, params, inputs, target)
    relaxation = LocalEngine(graph, params).relax(inputs, target, eta=1.0, iterations=graph.depth)
    assert max_relative_error(relaxation.dtheta, reference)[0] <= 1e-10


# --- the CLI ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cnn", "rnn", "lstm"])
def test_cli_check_grad_is_exact_at_depth(cli, name):
    depth = load_topology(f"topologies/{name}.yaml").graph.depth
    done = cli("check-grad", f"topologies/{name}.yaml", "--eta", "1",
                   "--iterations", str(depth), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["iterations"] == depth
    assert report["max_rel_error"] <= 1e-10

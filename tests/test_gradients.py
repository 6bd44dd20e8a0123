"""Fixed-prediction PC against PyTorch autograd (float64): the paper's central claim.

Convention: `iterations = T` means T Jacobi value updates are applied, then every
parameter update reads its vertex's error. With eta = 1 an error d edges from the
output is exact after d updates, so T >= depth is exact and T = depth - 1 is not.
"""

import numpy as np
import pytest
import math

from neurolocal import LocalEngine, load_topology
from neurolocal.generate import random_dag
from neurolocal.gradcheck import synthetic_batch
from neurolocal.topology import graph_from_dict
from conftest import TOPOLOGIES
from torch_graph import (max_relative_error, relative_error, torch_gradients,
                         torch_vertex_gradients)

GRAPHS = {
    "mlp": lambda: load_topology(TOPOLOGIES / "mlp.yaml").graph,
    "dag": lambda: load_topology(TOPOLOGIES / "dag.yaml").graph,
    **{f"random-{seed}": (lambda seed=seed: graph_from_dict(
        random_dag(seed, vertices=14, loss=("mse", "softmax_cross_entropy")[seed % 2])))
       for seed in range(6)},
}


def relax(graph, iterations, eta=1.0, seed=0, batch=6):
    params = graph.init_params(seed)
    inputs, target = synthetic_batch(graph, batch, seed)
    relaxation = LocalEngine(graph, params).relax(inputs, target, eta=eta, iterations=iterations)
    return params, inputs, target, relaxation


@pytest.mark.parametrize("name", GRAPHS)
def test_eta_one_exact_once_T_reaches_depth(name):
    graph = GRAPHS[name]()
    for extra in (0, 2):
        params, inputs, target, relaxation = relax(graph, graph.depth + extra)
        _, reference = torch_gradients(graph, params, inputs, target)
        worst, errors = max_relative_error(relaxation.dtheta, reference)
        assert worst <= 1e-10, errors


@pytest.mark.parametrize("name", GRAPHS)
def test_eta_one_one_step_short_of_depth_is_wrong(name):
    graph = GRAPHS[name]()
    params, inputs, target, relaxation = relax(graph, graph.depth - 1)
    _, reference = torch_gradients(graph, params, inputs, target)
    assert max_relative_error(relaxation.dtheta, reference)[0] > 1e-3


def test_dag_topology_is_branching_and_not_layered():
    graph = GRAPHS["dag"]()
    assert any(len(graph.children[n]) >= 2 for n in graph.order)
    level = {}  # longest path from an input
    for n in graph.order:
        level[n] = 1 + max((level[p] for p in graph.parents(n)), default=-1)
    assert any(len({level[p] for p in graph.parents(n)}) >= 2 for n in graph.order)
    assert {graph.vertices[n].op.name for n in graph.order} >= {"add", "mul", "concat"}


def test_errors_at_every_vertex_match_torch():
    graph = GRAPHS["dag"]()
    params, inputs, target, relaxation = relax(graph, graph.depth)
    vertex_grads, _ = torch_vertex_gradients(graph, params, inputs, target)
    for name, grad in vertex_grads.items():
        assert relative_error(relaxation.errors[name], -grad) <= 1e-10, name


def binomial_below(d, n, p):
    """P[Binomial(n, p) < d]."""
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(d))


@pytest.mark.parametrize("iterations", [100, 12])
def test_mlp_eta_small_follows_binomial_closed_form(iterations):
    """eps_d(n) = (1 - P[Binomial(n, eta) < d]) * eps_d(backprop) on a layered net.

    n = iterations: the number of value updates applied before the error is read.
    """
    eta = 0.1
    graph = GRAPHS["mlp"]()
    params, inputs, target, relaxation = relax(graph, iterations, eta=eta)
    vertex_grads, _ = torch_vertex_gradients(graph, params, inputs, target)
    checked = 0
    for name, grad in vertex_grads.items():
        d = graph.distance[name]
        expected = binomial_below(d, iterations, eta)
        assert abs(relative_error(relaxation.errors[name], -grad) - expected) <= 1e-8, name
        # a pure rescaling: the error points exactly along backprop's
        np.testing.assert_allclose(relaxation.errors[name], -(1 - expected) * grad,
                                   rtol=1e-9, atol=1e-14)
        checked += 1
    assert checked == 3


def test_relaxation_diverges_at_eta_two_in_principle():
    # eta = 2 flips the sign of every error each step: the deepest error never settles.
    graph = GRAPHS["mlp"]()
    params = graph.init_params(0)
    inputs, target = synthetic_batch(graph, 4, 0)
    from neurolocal.errors import ConfigError

    with pytest.raises(ConfigError, match="diverges"):
        LocalEngine(graph, params).relax(inputs, target, eta=2.0, iterations=5)
    near = LocalEngine(graph, params).relax(inputs, target, eta=1.9, iterations=400)
    _, reference = torch_gradients(graph, params, inputs, target)
    assert max_relative_error(near.dtheta, reference)[0] < 1e-8


def test_strict_mode_does_not_match_backprop():
    """Strict PC (predictions recomputed every step) on a tanh MLP at unit precision
    settles at an energy minimum that is NOT backprop: cosine well below 0.99."""
    graph = GRAPHS["mlp"]()
    params = graph.init_params(0)
    inputs, target = synthetic_batch(graph, 16, 0)
    relaxation = LocalEngine(graph, params, mode="strict").relax(inputs, target, eta=0.1,
                                                                  iterations=200)
    _, grads = torch_gradients(graph, params, inputs, target)
    pc = np.concatenate([-relaxation.dtheta[v][k].ravel() for v in grads for k in grads[v]])
    bp = np.concatenate([grads[v][k].ravel() for v in grads for k in grads[v]])
    cosine = pc @ bp / np.linalg.norm(pc) / np.linalg.norm(bp)
    assert cosine < 0.99, cosine
    assert cosine > 0.0  # still a descent-ish direction, not noise
    # the fixed mode on the same batch is exact
    fixed = LocalEngine(graph, params).relax(inputs, target, eta=1.0, iterations=graph.depth)
    assert max_relative_error(fixed.dtheta, grads)[0] <= 1e-10

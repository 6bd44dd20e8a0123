"""muPC graphs (issue 26): jpc's residual network as dense vertices with a multiplier, an
activation before the linear map, an identity skip and N(0, 1) weights, checked against
PyTorch autograd in float64.

The references are written here from jpc's formulas (`make_mlp`, `make_skip_model`,
`_get_param_scalings`, `pc_energy_fn`), not from neurolocal's ops:

    h1 = a1 W1 x;   h_l = a_l W_l g(h_{l-1}) + h_{l-1};   out = aL WL g(h_H)
    F(h) = sum_l 1/2 ||h_l - mu_l(h_{l-1})||^2 + 1/2 ||y - mu_out(h_H)||^2   (per sample)

Strict PC (jpc's and pcx's standard PC): values start at the forward pass, T steps of
gradient descent h <- h - eta dF/dh (output clamped to y), then dtheta = -dF/dtheta,
averaged over the batch. Fixed PC at eta = 1, T = depth: backprop's gradient.
"""

import math

import numpy as np
import pytest
import torch

from neurolocal import LocalEngine
from neurolocal.errors import TopologyError
from neurolocal.generate import resnet, topology_yaml
from neurolocal.topology import graph_from_dict
from torch_graph import max_relative_error, torch_gradients

ACT = {"relu": torch.relu, "tanh": torch.tanh,
       "gelu": torch.nn.functional.gelu,
       "gelu_tanh": lambda z: torch.nn.functional.gelu(z, approximate="tanh")}


def net(depth=4, width=6, activation="tanh", parameterization="mupc", skips=True,
        input_width=5, output_width=3):
    document = resnet(depth=depth, width=width, parameterization=parameterization,
                      activation=activation, input_width=input_width,
                      output_width=output_width, skips=skips)
    return graph_from_dict(document)


def batch(graph, size=7, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((size, graph.shapes["x"][0]))
    y = rng.standard_normal((size, graph.shapes[graph.output][0]))
    return {"x": x}, y


def jpc_predictions(weights, h, x, depth, width, input_width, activation, mupc=True,
                    skips=True):
    """mu_l for every layer given the values below it (h: hidden values h1..hH)."""
    layers = depth + 1
    g = ACT[activation]
    a1 = 1 / math.sqrt(input_width) if mupc else 1.0
    al = (1 / math.sqrt(width * layers) if skips else 1 / math.sqrt(width)) if mupc else 1.0
    aL = 1 / width if mupc else 1.0
    mu = [a1 * x @ weights[0]]
    for k in range(1, depth):
        mu.append(al * g(h[k - 1]) @ weights[k] + (h[k - 1] if skips else 0))
    mu.append(aL * g(h[depth - 1]) @ weights[depth])
    return mu


def jpc_forward(weights, x, depth, width, input_width, activation, mupc=True, skips=True):
    """The forward pass: each layer's value its prediction from the layer below."""
    layers, g = depth + 1, ACT[activation]
    a1 = 1 / math.sqrt(input_width) if mupc else 1.0
    al = (1 / math.sqrt(width * layers) if skips else 1 / math.sqrt(width)) if mupc else 1.0
    aL = 1 / width if mupc else 1.0
    h = [a1 * x @ weights[0]]
    for k in range(1, depth):
        h.append(al * g(h[-1]) @ weights[k] + (h[-1] if skips else 0))
    return h, aL * g(h[-1]) @ weights[depth]


def torch_weights(graph, params):
    names = [f"h{k}" for k in range(1, len(graph.order) - 1)] + ["out"]
    return names, [torch.tensor(params[n]["weight"], dtype=torch.float64, requires_grad=True)
                   for n in names]


SHAPES = {"depth": 4, "width": 6, "input_width": 5}


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
@pytest.mark.parametrize("parameterization", ["mupc", "standard"])
def test_forward_pass_is_jpcs_network(activation, parameterization):
    graph = net(activation=activation, parameterization=parameterization)
    params = graph.init_params(1)
    inputs, _ = batch(graph)
    values, _ = graph.forward(params, inputs)
    _, weights = torch_weights(graph, params)
    h, out = jpc_forward(weights, torch.tensor(inputs["x"]), **SHAPES, activation=activation,
                         mupc=parameterization == "mupc")
    for k, hk in enumerate(h, start=1):
        np.testing.assert_allclose(values[f"h{k}"], hk.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(values["out"], out.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_mupc_weights_are_standard_normal_and_multipliers_jpcs():
    graph = net(depth=3, width=64, input_width=100)
    params = graph.init_params(0)
    w = params["h2"]["weight"]
    assert abs(w.mean()) < 0.05 and abs(w.std() - 1) < 0.05
    ops = {n: graph.vertices[n].op for n in ("h1", "h2", "h3", "out")}
    assert ops["h1"].multiplier == pytest.approx(1 / 10)
    assert ops["h2"].multiplier == pytest.approx(1 / math.sqrt(64 * 4))
    assert ops["out"].multiplier == pytest.approx(1 / 64)
    assert not ops["h1"].skip and ops["h2"].skip and ops["h3"].skip and not ops["out"].skip
    assert ops["h1"].pre_activation == "identity" and ops["out"].pre_activation == "tanh"
    assert all(not op.bias for op in ops.values())


def strict_reference(graph, params, inputs, target, eta, rounds, activation, skips=True,
                     mupc=True):
    """Standard PC in torch: gradient descent on the hidden values, then -dF/dtheta / B."""
    depth = len(graph.order) - 2
    names, weights = torch_weights(graph, params)
    x, y = torch.tensor(inputs["x"]), torch.tensor(target)
    shapes = dict(SHAPES, depth=depth)
    with torch.no_grad():
        h, _ = jpc_forward(weights, x, **shapes, activation=activation, mupc=mupc, skips=skips)
    h = [v.clone().requires_grad_(True) for v in h]

    def energy(h):
        mu = jpc_predictions(weights, h, x, **shapes, activation=activation, mupc=mupc,
                             skips=skips)
        hidden = sum(0.5 * ((hk - mk) ** 2).sum() for hk, mk in zip(h, mu[:-1]))
        return hidden + 0.5 * ((y - mu[-1]) ** 2).sum()

    for _ in range(rounds):
        grads = torch.autograd.grad(energy(h), h)   # summed over the batch: per-sample grads
        h = [(hk - eta * gk).detach().requires_grad_(True) for hk, gk in zip(h, grads)]
    grads = torch.autograd.grad(energy(h), weights)
    batch_size = x.shape[0]
    return {n: {"weight": g.numpy() / batch_size} for n, g in zip(names, grads)}


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
@pytest.mark.parametrize("eta, rounds", [(0.1, 5), (0.5, 12)])
def test_strict_mode_is_gradient_descent_on_the_energy(activation, eta, rounds):
    graph = net(activation=activation)
    params = graph.init_params(2)
    inputs, target = batch(graph)
    got = LocalEngine(graph, params, mode="strict").relax(inputs, target, eta=eta,
                                                          iterations=rounds)
    reference = strict_reference(graph, params, inputs, target, eta, rounds, activation)
    worst, errors = max_relative_error(got.dtheta, reference)
    assert worst <= 1e-10, errors


def test_strict_mode_without_skips_standard_parameterisation():
    graph = net(activation="gelu", parameterization="standard", skips=False)
    params = graph.init_params(4)
    inputs, target = batch(graph)
    got = LocalEngine(graph, params, mode="strict").relax(inputs, target, eta=0.1,
                                                          iterations=7)
    reference = strict_reference(graph, params, inputs, target, 0.1, 7, "gelu", skips=False,
                                 mupc=False)
    worst, errors = max_relative_error(got.dtheta, reference)
    assert worst <= 1e-10, errors


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_fixed_mode_at_eta_one_and_T_depth_is_backprop(activation):
    graph = net(depth=6, activation=activation)
    params = graph.init_params(5)
    inputs, target = batch(graph)
    _, reference = torch_gradients(graph, params, inputs, target)
    for rounds in (graph.depth, graph.depth + 3):
        got = LocalEngine(graph, params).relax(inputs, target, eta=1.0, iterations=rounds)
        worst, errors = max_relative_error(got.dtheta, reference)
        assert worst <= 1e-10, errors
    short = LocalEngine(graph, params).relax(inputs, target, eta=1.0, iterations=graph.depth - 1)
    assert max_relative_error(short.dtheta, reference)[0] > 1e-3


def test_torch_reference_agrees_with_jpcs_formulas():
    """torch_graph (the op-by-op reference the other tests use) reads the new attributes
    as jpc's formulas do: the two torch computations give one gradient."""
    graph = net(activation="relu")
    params = graph.init_params(6)
    inputs, target = batch(graph)
    _, by_ops = torch_gradients(graph, params, inputs, target)
    names, weights = torch_weights(graph, params)
    x, y = torch.tensor(inputs["x"]), torch.tensor(target)
    _, out = jpc_forward(weights, x, **SHAPES, activation="relu")
    (0.5 * ((y - out) ** 2).sum() / x.shape[0]).backward()
    for n, w in zip(names, weights):
        np.testing.assert_allclose(by_ops[n]["weight"], w.grad.numpy(), rtol=1e-10)


def test_bad_attributes_are_one_line_errors():
    base = {"vertices": [{"name": "x", "op": "input", "shape": [4]},
                         {"name": "h", "op": "dense", "parents": ["x"], "units": 3}],
            "output": "h", "loss": "mse"}
    for extra, field in (({"multiplier": "big"}, "multiplier"), ({"skip": 1}, "skip"),
                         ({"skip": True}, "skip"), ({"pre_activation": "swish"}, "pre_activation"),
                         ({"init": "zeros"}, "init")):
        document = {**base, "vertices": [base["vertices"][0], {**base["vertices"][1], **extra}]}
        with pytest.raises(TopologyError) as caught:
            graph_from_dict(document)
        assert field in str(caught.value) and "\n" not in str(caught.value)


def test_generated_file_reads_back_the_same_graph(tmp_path):
    from neurolocal.topology import load_topology

    document = resnet(depth=5, width=16, activation="gelu")
    path = tmp_path / "r.yaml"
    path.write_text(topology_yaml(document))
    graph = load_topology(path).graph
    direct = graph_from_dict(document)
    for n in direct.order:
        assert graph.vertices[n].op.attributes == direct.vertices[n].op.attributes
    assert graph.depth == 5 and len(graph.order) == 7


def test_generate_resnet_cli(cli, tmp_path):
    out = tmp_path / "m.yaml"
    done = cli("generate", "resnet", "--depth", "3", "--width", "8", "--activation", "gelu",
               "-o", out)
    assert done.returncode == 0, done.stderr
    assert "5 vertices" in done.stdout and "multiplier" in out.read_text()
    bad = cli("generate", "chain", "-o", tmp_path / "c.yaml")
    assert bad.returncode == 2 and "--vertices" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1

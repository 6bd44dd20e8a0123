"""A user-registered op, and the paper's scalar graph y = tan(sqrt(theta x)) + sin(x^2)."""

import numpy as np
import pytest

from neurolocal import LocalEngine, Op, backprop, register_op
from neurolocal.ops import OPS
from neurolocal.topology import graph_from_dict

X, THETA, TARGET = 5.0, 2.0, 1.0
PAPER_DL_DX = -11.370532


@pytest.fixture(scope="module")
def scalar_graph():
    """Registered from plain functions, outside the package, as a user would."""
    added = []

    def reg(name, **kw):
        OPS.pop(name, None)
        added.append(name)
        return register_op(name, **kw)

    reg("times_theta", forward=lambda x, theta: theta * x,
        vjp=lambda eps, inputs, out, theta: [theta * eps],
        param_vjp=lambda eps, inputs, out, theta: {"theta": np.sum(eps * inputs[0])},
        params={"theta": 1.0})
    reg("sqrt", forward=np.sqrt, vjp=lambda eps, inputs, out: [eps * 0.5 / out])
    reg("square", forward=np.square, vjp=lambda eps, inputs, out: [eps * 2 * inputs[0]])
    reg("tan_plus_sin", forward=lambda a, b: np.tan(a) + np.sin(b),
        vjp=lambda eps, inputs, out: [eps / np.cos(inputs[0]) ** 2, eps * np.cos(inputs[1])])
    graph = graph_from_dict({
        "vertices": [
            {"name": "x", "op": "input", "shape": [1]},
            {"name": "y1", "op": "times_theta", "parents": ["x"], "theta": THETA},
            {"name": "y2", "op": "sqrt", "parents": ["y1"]},
            {"name": "y3", "op": "square", "parents": ["x"]},
            {"name": "y4", "op": "tan_plus_sin", "parents": ["y2", "y3"]},
        ],
        "output": "y4",
        "loss": "mse",  # eps_out = target - y4 = 1 - y4
    })
    yield graph
    for name in added:
        OPS.pop(name, None)


def input_gradient(graph, eta, iterations):
    """dL/dx read at x as -(sum_j J_jx^T eps_j) after `iterations` value updates."""
    params = graph.init_params(0)
    relaxation = LocalEngine(graph, params).relax(np.array([[X]]), np.array([[TARGET]]),
                                                  eta=eta, iterations=iterations,
                                                  read_inputs=True)
    return -relaxation.input_feedback["x"][0, 0], relaxation


def test_scalar_graph_reproduces_papers_input_gradient(scalar_graph):
    assert scalar_graph.input_depth == 2
    dl_dx, relaxation = input_gradient(scalar_graph, eta=1.0, iterations=2)
    assert dl_dx == pytest.approx(PAPER_DL_DX, abs=1e-6)
    reference = backprop(scalar_graph, scalar_graph.init_params(0), np.array([[X]]),
                         np.array([[TARGET]]))
    assert reference.inputs["x"][0, 0] == pytest.approx(PAPER_DL_DX, abs=1e-6)
    # theta's Hebbian update equals -dL/dtheta too
    assert -relaxation.dtheta["y1"]["theta"] == pytest.approx(
        float(reference.params["y1"]["theta"]), rel=1e-12)


@pytest.mark.parametrize("eta, paper_iterations", [(0.02, 352), (0.1, 68), (0.5, 11), (1.0, 2)])
def test_iterations_to_reach_1e3_relative_match_paper(scalar_graph, eta, paper_iterations):
    first = None
    for iterations in range(0, 500):
        dl_dx, _ = input_gradient(scalar_graph, eta, iterations)
        if abs(dl_dx - PAPER_DL_DX) / abs(PAPER_DL_DX) < 1e-3:
            first = iterations
            break
    assert first is not None and abs(first - paper_iterations) <= 1


def test_op_subclass_registered_from_outside_the_package():
    class Cube(Op):
        name = "test_cube"

        def forward(self, params, inputs):
            (x,) = inputs
            return x ** 3, x

        def vjp(self, params, x, eps):
            return [3 * x ** 2 * eps]

    OPS.pop("test_cube", None)
    register_op(Cube)
    try:
        graph = graph_from_dict({
            "vertices": [{"name": "x", "op": "input", "shape": [3]},
                         {"name": "h", "op": "dense", "parents": ["x"], "units": 3},
                         {"name": "c", "op": "test_cube", "parents": ["h"]},
                         {"name": "y", "op": "dense", "parents": ["c"], "units": 2}],
            "output": "y", "loss": "mse"})
        params = graph.init_params(1)
        rng = np.random.default_rng(1)
        x, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
        relaxation = LocalEngine(graph, params).relax(x, t, eta=1.0, iterations=graph.depth)
        reference = backprop(graph, params, x, t)
        np.testing.assert_allclose(-relaxation.dtheta["h"]["weight"],
                                   reference.params["h"]["weight"], rtol=1e-12)
    finally:
        OPS.pop("test_cube", None)


def test_registering_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_op("dense", forward=lambda x: x, vjp=lambda eps, i, o: [eps])

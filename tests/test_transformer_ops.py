"""The ops a transformer needs, each against torch autograd in float64 on random shapes:
the forward pass, J^T eps for every parent and eps . dvhat/dtheta for every parameter
(summed over the batch), plus the edge cases (softmax of large logits, layernorm of a
constant row) and the checks of their attributes and shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurolocal.errors import TopologyError
from neurolocal.ops import get_op

TOL = 1e-12


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(np.linalg.norm(b), 1e-300)
    return float(np.linalg.norm(a - b) / scale)


def _check(op, torch_fn, inputs, params=None, rng=None):
    """forward, every parent's vjp and every parameter's param_vjp against autograd."""
    rng = rng or np.random.default_rng(0)
    params = params or {}
    out, cache = op.forward(params, [x.copy() for x in inputs])
    t_in = [torch.tensor(x, requires_grad=True) for x in inputs]
    t_par = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    t_out = torch_fn(*t_in, **t_par)
    assert out.shape == tuple(t_out.shape)
    assert out.dtype == np.float64
    assert _rel(out, t_out.detach().numpy()) < TOL
    shapes = [x.shape[1:] for x in inputs]
    assert tuple(op.output_shape(shapes)) == out.shape[1:]
    if params:
        assert {k: tuple(v) for k, v in op.param_shapes(shapes).items()} == \
            {k: v.shape for k, v in params.items()}
    eps = rng.standard_normal(out.shape)
    leaves = t_in + list(t_par.values())
    grads = torch.autograd.grad(t_out, leaves, torch.tensor(eps), allow_unused=True)
    got = op.vjp(params, cache, eps.copy())
    assert len(got) == len(inputs)
    for g, ref, x in zip(got, grads[:len(inputs)], inputs):
        ref = np.zeros_like(x) if ref is None else ref.numpy()
        assert g.shape == x.shape
        assert _rel(g, ref) < TOL
    got_params = op.param_vjp(params, cache, eps.copy())
    assert set(got_params) == set(params)
    for (k, _), ref in zip(t_par.items(), grads[len(inputs):]):
        assert _rel(got_params[k], ref.numpy()) < TOL, k


def _make(name, **attributes):
    return get_op(name).from_attributes(attributes)


SHAPES = [(3, 4), (2, 5, 3), (4, 2, 3, 5), (1, 7)]


@pytest.mark.parametrize("seed", range(4))
def test_matmul_of_two_activations(seed):
    rng = np.random.default_rng(seed)
    lead = tuple(rng.integers(1, 4, size=seed % 3))
    m, k, n = rng.integers(1, 6, size=3)
    a = rng.standard_normal((3, *lead, m, k))
    b = rng.standard_normal((3, *lead, k, n))
    _check(_make("matmul"), torch.matmul, [a, b], rng=rng)


def test_matmul_refuses_mismatched_shapes():
    with pytest.raises(TopologyError, match="matmul multiplies"):
        _make("matmul").output_shape([(2, 3), (4, 5)])
    with pytest.raises(TopologyError, match="matmul multiplies"):
        _make("matmul").output_shape([(2, 3, 4), (3, 4, 5)])


@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_over_each_axis(shape):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal((3, *shape)) * 3
    for axis in range(-len(shape), len(shape)):
        _check(_make("softmax", axis=axis), lambda t: torch.softmax(t, dim=axis % len(shape) + 1),
               [x], rng=rng)


def test_softmax_of_large_logits_is_finite_and_exact():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6, 9)) * 1e3 + 1e5
    x[0, 0, :] = 800.0          # exp would overflow without the shift
    x[1, 2, 3] = -1e300
    op = _make("softmax")
    out, _ = op.forward({}, [x])
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=0, atol=1e-14)
    _check(op, lambda t: torch.softmax(t, dim=-1), [x], rng=rng)


@pytest.mark.parametrize("shape,axes", [((6,), 1), ((5, 7), 1), ((3, 4, 5), 2), ((2, 3, 4), 3)])
def test_layernorm_with_gain_and_bias(shape, axes):
    rng = np.random.default_rng(axes)
    normalized = shape[len(shape) - axes:]
    x = rng.standard_normal((3, *shape)) * 2 + 1
    params = {"weight": rng.standard_normal(normalized), "bias": rng.standard_normal(normalized)}
    op = _make("layernorm", axes=axes, epsilon=1e-5)
    _check(op, lambda t, weight, bias: F.layer_norm(t, normalized, weight, bias, 1e-5),
           [x], params, rng)


def test_layernorm_of_a_constant_row():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 8))
    x[0, 1, :] = 2.5            # variance 0: xhat 0, 1 / sqrt(epsilon) finite
    x[2, :, :] = -7.0
    params = {"weight": rng.standard_normal(8), "bias": rng.standard_normal(8)}
    op = _make("layernorm")
    out, _ = op.forward(params, [x])
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[0, 1], params["bias"])
    _check(op, lambda t, weight, bias: F.layer_norm(t, (8,), weight, bias, 1e-5), [x], params, rng)


def test_layernorm_without_affine_and_its_initial_values():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 5))
    op = _make("layernorm", affine=False, epsilon=1e-6)
    assert not op.has_params
    _check(op, lambda t: F.layer_norm(t, (5,), eps=1e-6), [x], rng=rng)
    init = _make("layernorm").init_params([(3, 5)], rng)
    np.testing.assert_array_equal(init["weight"], np.ones(5))
    np.testing.assert_array_equal(init["bias"], np.zeros(5))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", SHAPES)
def test_gelu(approximate, shape):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal((3, *shape)) * 3
    x.reshape(-1)[:3] = [0.0, -40.0, 40.0]
    _check(_make("gelu", approximate=approximate),
           lambda t: F.gelu(t, approximate=approximate), [x], rng=rng)


@pytest.mark.parametrize("shape", SHAPES)
def test_transpose_of_per_sample_axes(shape):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal((3, *shape))
    for _ in range(3):
        perm = [int(p) for p in rng.permutation(len(shape))]
        negative = [p - len(shape) if k % 2 else p for k, p in enumerate(perm)]
        _check(_make("transpose", axes=negative),
               lambda t: t.permute(0, *(p + 1 for p in perm)), [x], rng=rng)


def test_transpose_refuses_a_partial_permutation():
    with pytest.raises(TopologyError, match="each of the parent's 3"):
        _make("transpose", axes=[1, 0]).output_shape([(2, 3, 4)])
    with pytest.raises(TopologyError, match="repeat"):
        _make("transpose", axes=[0, 0]).output_shape([(2, 3)])
    with pytest.raises(TopologyError, match="out of range"):
        _make("transpose", axes=[0, 2]).output_shape([(2, 3)])


@pytest.mark.parametrize("factor", [0.125, -3.0, 1])
def test_scale_by_a_constant(factor):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 5))
    _check(_make("scale", factor=factor), lambda t: t * factor, [x], rng=rng)
    with pytest.raises(TopologyError, match="finite number"):
        _make("scale", factor=float("inf"))
    with pytest.raises(TopologyError, match="finite number"):
        _make("scale", factor="2")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_mean_over_axes(shape, keepdims):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal((3, *shape))
    choices = [[-1], [0]] + ([[0, -1], [1]] if len(shape) > 1 else [])
    for axes in choices:
        if not keepdims and len(axes) == len(shape):
            continue
        dims = [a % len(shape) + 1 for a in axes]
        axis = axes[0] if len(axes) == 1 else axes
        _check(_make("mean", axis=axis, keepdims=keepdims),
               lambda t: t.mean(dim=dims, keepdim=keepdims), [x], rng=rng)


def test_mean_over_everything_needs_keepdims():
    with pytest.raises(TopologyError, match="keepdims"):
        _make("mean", axis=0).output_shape([(5,)])
    assert _make("mean", axis=0, keepdims=True).output_shape([(5,)]) == (1,)


def test_sub():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 3, 4, 5))
    _check(_make("sub"), torch.sub, [a, b], rng=rng)
    with pytest.raises(TopologyError, match="one shape"):
        _make("sub").output_shape([(3,), (4,)])


@pytest.mark.parametrize("activation", ["identity", "tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("shape", [(6,), (4, 6), (2, 3, 6)])
def test_dense_on_the_last_axis_of_any_rank(activation, shape):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal((3, *shape))
    op = _make("dense", units=5, activation=activation)
    params = op.init_params([shape], rng)
    params["bias"] = rng.standard_normal(5)
    act = {"identity": lambda z: z, "tanh": torch.tanh, "relu": torch.relu,
           "sigmoid": torch.sigmoid}[activation]
    assert op.output_shape([shape]) == (*shape[:-1], 5)
    _check(op, lambda t, weight, bias: act(t @ weight + bias), [x], params, rng)


@pytest.mark.parametrize("name,attributes,parents", [
    ("softmax", {"axis": 1}, [(3, 4)]), ("mean", {"axis": [0, 1]}, [(3, 4, 2)]),
    ("transpose", {"axes": [1, 0]}, [(3, 4)]), ("gelu", {}, [(5,)]), ("scale", {"factor": 2}, [(5,)]),
    ("matmul", {}, [(3, 4), (4, 2)]), ("sub", {}, [(5,), (5,)]),
    ("layernorm", {}, [(4, 6)]), ("dense", {"units": 3}, [(4, 6)]),
])
def test_float32_in_float32_out(name, attributes, parents):
    rng = np.random.default_rng(0)
    op = _make(name, **attributes)
    inputs = [rng.standard_normal((2, *s)).astype(np.float32) for s in parents]
    params = {k: v.astype(np.float32) for k, v in op.init_params(parents, rng).items()}
    out, cache = op.forward(params, inputs)
    assert out.dtype == np.float32
    eps = rng.standard_normal(out.shape).astype(np.float32)
    assert all(g.dtype == np.float32 for g in op.vjp(params, cache, eps))
    assert all(g.dtype == np.float32 for g in op.param_vjp(params, cache, eps).values())


@pytest.mark.parametrize("name,attributes,field", [
    ("softmax", {"axis": 1.5}, "axis"), ("mean", {"axis": []}, "axis"),
    ("mean", {"keepdims": "yes"}, "keepdims"), ("transpose", {"axes": "01"}, "axes"),
    ("layernorm", {"epsilon": 0}, "epsilon"), ("layernorm", {"axes": 0}, "axes"),
    ("layernorm", {"affine": 1}, "affine"), ("gelu", {"approximate": "erf"}, "approximate"),
])
def test_bad_attributes_are_one_line_errors(name, attributes, field):
    with pytest.raises(TopologyError) as info:
        _make(name, **attributes)
    assert info.value.field == field
    assert "\n" not in str(info.value)

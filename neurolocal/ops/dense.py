"""Dense (fully connected) vertex with an optional fused activation.

    forward:   z = x W + b,   vhat = f(z)                cache: x, f'(z)
    vjp:       J^T eps = (eps * f'(z)) W^T
    param_vjp: dW = x^T (eps * f'(z)),   db = sum_b eps * f'(z)

With a fused activation the Hebbian update must include f'(z): leaving it out
breaks the equivalence with backprop (docs/design.md §1). Like torch's nn.Linear,
dense applies to the last axis of a per-sample tensor of any rank ([tokens, features]
-> [tokens, units]); the Hebbian update then also sums over the leading axes.
"""

from __future__ import annotations

import numpy as np

from neurolocal import kernels
from neurolocal.errors import TopologyError
from neurolocal.ops.activations import ACTIVATIONS, apply_activation
from neurolocal.ops.base import Op, choice, positive_int

INITS = ("xavier", "uniform", "he")


def draw_weight(init: str, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """Weights of shape (fan_in, fan_out) from a named initialisation."""
    if init == "xavier":  # Glorot uniform
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, size=(fan_in, fan_out))
    if init == "uniform":  # torch.nn.Linear's default
        bound = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, size=(fan_in, fan_out))
    if init == "he":
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
    raise ValueError(init)


class Dense(Op):
    name = "dense"
    arity = 1

    def __init__(self, units: int, activation: str = "identity", bias: bool = True,
                 init: str = "xavier"):
        self.units = positive_int("units", units)
        self.activation = choice("activation", activation, list(ACTIVATIONS))
        if not isinstance(bias, bool):
            raise TopologyError(f"expected true or false, got {bias!r}", field="bias")
        self.bias = bias
        self.init = choice("init", init, INITS)

    @property
    def has_params(self) -> bool:
        return True

    def output_shape(self, parent_shapes):
        (shape,) = parent_shapes
        return (*shape[:-1], self.units)   # the last axis, as torch's nn.Linear

    def init_params(self, parent_shapes, rng):
        fan_in = parent_shapes[0][-1]
        params = {"weight": draw_weight(self.init, fan_in, self.units, rng)}
        if self.bias:
            if self.init == "uniform":
                bound = 1.0 / np.sqrt(fan_in)
                params["bias"] = rng.uniform(-bound, bound, size=(self.units,))
            else:
                params["bias"] = np.zeros(self.units)
        return params

    def param_shapes(self, parent_shapes):
        shapes = {"weight": (parent_shapes[0][-1], self.units)}
        if self.bias:
            shapes["bias"] = (self.units,)
        return shapes

    def forward(self, params, inputs):
        (x,) = inputs
        z = x @ params["weight"]
        if self.bias:
            z += params["bias"]
        vhat, derivative = apply_activation(self.activation, z)
        return vhat, (x, derivative)

    def _delta(self, cache, eps):
        _, derivative = cache
        if derivative is None:
            return np.ascontiguousarray(eps)
        return kernels.scale_by_derivative(np.ascontiguousarray(eps), derivative)

    def vjp(self, params, cache, eps):
        return [self._delta(cache, eps) @ params["weight"].T]

    def param_vjp(self, params, cache, eps):
        x, _ = cache
        delta = self._delta(cache, eps)
        if x.ndim > 2:   # leading per-sample axes (tokens) sum like the batch
            x, delta = x.reshape(-1, x.shape[-1]), delta.reshape(-1, delta.shape[-1])
        weight_update, bias_update = kernels.dense_hebbian(delta, np.ascontiguousarray(x))
        out = {"weight": weight_update}
        if self.bias:
            out["bias"] = bias_update
        return out

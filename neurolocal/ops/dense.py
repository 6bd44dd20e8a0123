"""Dense (fully connected) vertex with an optional fused activation.

    forward:   z = x W + b,   vhat = f(z)                cache: x, f'(z)
    vjp:       J^T eps = (eps * f'(z)) W^T
    param_vjp: dW = x^T (eps * f'(z)),   db = sum_b eps * f'(z)

With a fused activation the Hebbian update must include f'(z): leaving it out
breaks the equivalence with backprop (docs/design.md §1). Like torch's nn.Linear,
dense applies to the last axis of a per-sample tensor of any rank ([tokens, features]
-> [tokens, units]); the Hebbian update then also sums over the leading axes.

muPC attributes (Innocenti et al. 2025, jpc's make_mlp / ScaledLinear / ResNetBlock):
a constant `multiplier` m on the linear map, an activation g applied to the input
first, and `skip: true`, an identity skip inside the vertex (one value node per
residual layer, as jpc's energy has):

    forward:   a = g(x),  z = m (a W + b),  vhat = f(z) [+ x]   cache: a, f'(z), g'(x)
    vjp:       J^T eps = m ((eps * f'(z)) W^T) * g'(x) [+ eps]
    param_vjp: dW = m a^T (eps * f'(z)),   db = m sum_b eps * f'(z)

`init: normal` draws W from N(0, 1), the width scaling left to the multiplier.
"""

from __future__ import annotations

import numpy as np

from neurolocal import kernels
from neurolocal.errors import TopologyError
from neurolocal.ops.activations import ACTIVATIONS, apply_activation
from neurolocal.ops.base import Op, choice, positive_int

INITS = ("xavier", "uniform", "he", "normal")


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
    if init == "normal":  # N(0, 1): muPC's, the scale set by a multiplier
        return rng.normal(0.0, 1.0, size=(fan_in, fan_out))
    raise ValueError(init)


class Dense(Op):
    name = "dense"
    arity = 1

    def __init__(self, units: int, activation: str = "identity", bias: bool = True,
                 init: str = "xavier", multiplier: float = 1.0,
                 pre_activation: str = "identity", skip: bool = False):
        self.units = positive_int("units", units)
        self.activation = choice("activation", activation, list(ACTIVATIONS))
        if not isinstance(bias, bool):
            raise TopologyError(f"expected true or false, got {bias!r}", field="bias")
        self.bias = bias
        self.init = choice("init", init, INITS)
        if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) \
                or not np.isfinite(multiplier):
            raise TopologyError(f"expected a finite number, got {multiplier!r}",
                                field="multiplier")
        self.multiplier = float(multiplier)
        self.pre_activation = choice("pre_activation", pre_activation, list(ACTIVATIONS))
        if not isinstance(skip, bool):
            raise TopologyError(f"expected true or false, got {skip!r}", field="skip")
        self.skip = skip

    @property
    def has_params(self) -> bool:
        return True

    def output_shape(self, parent_shapes):
        (shape,) = parent_shapes
        if self.skip and shape[-1] != self.units:
            raise TopologyError(f"dense with skip: true needs units equal to its parent's "
                                f"width ({shape[-1]}), got {self.units}", field="skip")
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
        below = x
        pre_derivative = None
        if self.pre_activation != "identity":
            x, pre_derivative = apply_activation(self.pre_activation, x)
        z = x @ params["weight"]
        if self.bias:
            z += params["bias"]
        if self.multiplier != 1.0:
            z *= self.multiplier
        vhat, derivative = apply_activation(self.activation, z)
        if self.skip:
            vhat = vhat + below
        if pre_derivative is not None:
            return vhat, (x, derivative, pre_derivative)
        return vhat, (x, derivative)

    def _delta(self, cache, eps):
        derivative = cache[1]
        if derivative is None:
            delta = np.ascontiguousarray(eps)
        else:
            delta = kernels.scale_by_derivative(np.ascontiguousarray(eps), derivative)
        if self.multiplier != 1.0:
            delta = delta * self.multiplier
        return delta

    def vjp(self, params, cache, eps):
        feedback = self._delta(cache, eps) @ params["weight"].T
        if len(cache) == 3:  # the pre-activation's derivative g'(x)
            feedback = kernels.scale_by_derivative(feedback, cache[2])
        if self.skip:
            feedback += eps
        return [feedback]

    def param_vjp(self, params, cache, eps):
        x = cache[0]
        delta = self._delta(cache, eps)
        if x.ndim > 2:   # leading per-sample axes (tokens) sum like the batch
            x, delta = x.reshape(-1, x.shape[-1]), delta.reshape(-1, delta.shape[-1])
        weight_update, bias_update = kernels.dense_hebbian(delta, np.ascontiguousarray(x))
        out = {"weight": weight_update}
        if self.bias:
            out["bias"] = bias_update
        return out

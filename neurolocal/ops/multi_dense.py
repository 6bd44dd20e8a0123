"""Dense vertex over several parents: one weight per parent, summed, one fused activation.

    forward:   z = sum_k x_k W_k + b,   vhat = f(z)          cache: x_1..x_K, f'(z)
    vjp:       J_k^T eps = (eps * f'(z)) W_k^T               one message per parent
    param_vjp: dW_k = x_k^T (eps * f'(z)),   db = sum_b eps * f'(z)

It equals `dense` over the concatenation of its parents (W the W_k stacked), but
needs no concat vertex in between: a tile of a wide layer can read just its
neighbouring tiles below and stay local (see `neurolocal.generate.tiled_mlp`).
Parameters are named weight0, weight1, ... in parent order, and bias.
"""

from __future__ import annotations

import numpy as np

from neurolocal import kernels
from neurolocal.errors import TopologyError
from neurolocal.ops.activations import apply_activation
from neurolocal.ops.dense import Dense, draw_weight


class MultiDense(Dense):
    """Dense's attributes and checks; its own shapes, parameters and rules per parent."""

    name = "multi_dense"
    arity = None
    min_parents = 1

    def output_shape(self, parent_shapes):
        for shape in parent_shapes:
            if len(shape) != 1:
                raise TopologyError(f"multi_dense takes flat parents (one axis), got shape "
                                    f"{list(shape)}; add a flatten vertex")
        return (self.units,)

    def param_shapes(self, parent_shapes):
        shapes = {f"weight{k}": (s[0], self.units) for k, s in enumerate(parent_shapes)}
        if self.bias:
            shapes["bias"] = (self.units,)
        return shapes

    def init_params(self, parent_shapes, rng):
        # the bounds of one dense layer over all parents together: the tiles of a wide
        # layer start like that layer would
        fan_in = sum(s[0] for s in parent_shapes)
        stacked = draw_weight(self.init, fan_in, self.units, rng)
        bounds = np.cumsum([s[0] for s in parent_shapes])[:-1]
        params = {f"weight{k}": np.ascontiguousarray(w)
                  for k, w in enumerate(np.split(stacked, bounds, axis=0))}
        if self.bias:
            if self.init == "uniform":
                bound = 1.0 / np.sqrt(fan_in)
                params["bias"] = rng.uniform(-bound, bound, size=(self.units,))
            else:
                params["bias"] = np.zeros(self.units)
        return params

    def forward(self, params, inputs):
        z = inputs[0] @ params["weight0"]
        for k, x in enumerate(inputs[1:], start=1):
            z += x @ params[f"weight{k}"]
        if self.bias:
            z += params["bias"]
        vhat, derivative = apply_activation(self.activation, z)
        return vhat, (list(inputs), derivative)

    def _delta(self, cache, eps):
        _, derivative = cache
        if derivative is None:
            return np.ascontiguousarray(eps)
        return kernels.scale_by_derivative(np.ascontiguousarray(eps), derivative)

    def vjp(self, params, cache, eps):
        delta = self._delta(cache, eps)
        return [delta @ params[f"weight{k}"].T for k in range(len(cache[0]))]

    def param_vjp(self, params, cache, eps):
        inputs, _ = cache
        delta = self._delta(cache, eps)
        out = {}
        for k, x in enumerate(inputs):
            weight_update, bias_update = kernels.dense_hebbian(delta, np.ascontiguousarray(x))
            out[f"weight{k}"] = weight_update
        if self.bias:
            out["bias"] = bias_update
        return out

"""Normalising vertices: softmax over an axis and layer normalisation with gain and bias.

    softmax    forward:  y = exp(x - max x) / sum exp(x - max x) along `axis`    cache: y
               vjp:      J^T eps = y * (eps - sum(eps * y))      (the sum along `axis`)
    layernorm  forward:  over the last `axes` per-sample axes, mu and sigma^2 (biased, as
                         torch), xhat = (x - mu) / sqrt(sigma^2 + epsilon), y = g xhat + b
                         cache: xhat, 1 / sqrt(sigma^2 + epsilon)
               vjp:      with h = eps * g:  J^T eps = (h - mean(h) - xhat mean(h xhat)) / s
               param_vjp: dg = sum eps * xhat,  db = sum eps   (over the batch and the axes
                         that are not normalised)

Subtracting the maximum keeps softmax finite for logits of any size; a constant row
gives layernorm xhat = 0 and a finite 1 / sqrt(epsilon).
"""

from __future__ import annotations

import numpy as np

from neurolocal.errors import TopologyError
from neurolocal.ops.axes import axis_attribute, resolve
from neurolocal.ops.base import Op, positive_int


class Softmax(Op):
    name = "softmax"
    arity = 1

    def __init__(self, axis: int = -1):
        self.axis = axis_attribute("axis", axis)

    def output_shape(self, parent_shapes):
        resolve("axis", (self.axis,), len(parent_shapes[0]))
        return tuple(parent_shapes[0])

    def _axis(self, x):
        return resolve("axis", (self.axis,), x.ndim - 1)[0] + 1

    def forward(self, params, inputs):
        (x,) = inputs
        axis = self._axis(x)
        y = x - x.max(axis=axis, keepdims=True)
        np.exp(y, out=y)
        y /= y.sum(axis=axis, keepdims=True)
        return y, (y, axis)

    def vjp(self, params, cache, eps):
        y, axis = cache
        return [y * (eps - (eps * y).sum(axis=axis, keepdims=True))]


class LayerNorm(Op):
    name = "layernorm"
    arity = 1

    def __init__(self, axes: int = 1, epsilon: float = 1e-5, affine: bool = True):
        self.axes = positive_int("axes", axes, limit=64)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) \
                or not np.isfinite(epsilon) or epsilon <= 0:
            raise TopologyError(f"expected a positive number, got {epsilon!r}", field="epsilon")
        self.epsilon = float(epsilon)
        if not isinstance(affine, bool):
            raise TopologyError(f"expected true or false, got {affine!r}", field="affine")
        self.affine = affine

    @property
    def has_params(self):
        return self.affine

    def _normalized(self, shape):
        if self.axes > len(shape):
            raise TopologyError(f"cannot normalise the last {self.axes} axes of a parent of "
                                f"shape {list(shape)}", field="axes")
        return tuple(shape[len(shape) - self.axes:])

    def output_shape(self, parent_shapes):
        self._normalized(parent_shapes[0])
        return tuple(parent_shapes[0])

    def param_shapes(self, parent_shapes):
        if not self.affine:
            return {}
        shape = self._normalized(parent_shapes[0])
        return {"weight": shape, "bias": shape}

    def init_params(self, parent_shapes, rng):   # torch.nn.LayerNorm's: ones and zeros
        return {k: (np.ones if k == "weight" else np.zeros)(s)
                for k, s in self.param_shapes(parent_shapes).items()}

    def forward(self, params, inputs):
        (x,) = inputs
        axes = tuple(range(x.ndim - self.axes, x.ndim))
        centred = x - x.mean(axis=axes, keepdims=True)
        variance = (centred * centred).mean(axis=axes, keepdims=True)
        inv_std = 1.0 / np.sqrt(variance + self.epsilon)
        xhat = centred * inv_std
        if not self.affine:
            return xhat, (xhat, inv_std, axes)
        return xhat * params["weight"] + params["bias"], (xhat, inv_std, axes)

    def vjp(self, params, cache, eps):
        xhat, inv_std, axes = cache
        h = eps * params["weight"] if self.affine else eps
        return [(h - h.mean(axis=axes, keepdims=True)
                 - xhat * (h * xhat).mean(axis=axes, keepdims=True)) * inv_std]

    def param_vjp(self, params, cache, eps):
        if not self.affine:
            return {}
        xhat, _, axes = cache
        summed = tuple(range(xhat.ndim - self.axes))   # the batch and unnormalised axes
        return {"weight": (eps * xhat).sum(axis=summed), "bias": eps.sum(axis=summed)}

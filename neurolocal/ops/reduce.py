"""Reductions over per-sample axes.

    mean  forward:  vhat = mean of x over `axis` (one axis or several; `keepdims` keeps
                    them as size 1, as torch's keepdim)
          vjp:      eps / count, broadcast back over the reduced axes
"""

from __future__ import annotations

import math

import numpy as np

from neurolocal.errors import TopologyError
from neurolocal.ops.axes import axes_attribute, resolve
from neurolocal.ops.base import Op


class Mean(Op):
    name = "mean"
    arity = 1

    def __init__(self, axis=-1, keepdims: bool = False):
        self.axis = axes_attribute("axis", axis)
        if not isinstance(keepdims, bool):
            raise TopologyError(f"expected true or false, got {keepdims!r}", field="keepdims")
        self.keepdims = keepdims

    @property
    def attributes(self):
        axis = self.axis[0] if len(self.axis) == 1 else list(self.axis)
        return {"axis": axis, "keepdims": self.keepdims}

    def output_shape(self, parent_shapes):
        (shape,) = parent_shapes
        axes = resolve("axis", self.axis, len(shape))
        if self.keepdims:
            return tuple(1 if k in axes else n for k, n in enumerate(shape))
        out = tuple(n for k, n in enumerate(shape) if k not in axes)
        if not out:
            raise TopologyError("mean over every per-sample axis leaves nothing; "
                                "pass keepdims: true", field="axis")
        return out

    def forward(self, params, inputs):
        (x,) = inputs
        axes = tuple(k + 1 for k in resolve("axis", self.axis, x.ndim - 1))
        count = math.prod(x.shape[k] for k in axes)
        return x.mean(axis=axes, keepdims=self.keepdims), (x.shape, axes, count)

    def vjp(self, params, cache, eps):
        shape, axes, count = cache
        if not self.keepdims:
            eps = np.expand_dims(eps, axes)
        return [np.ascontiguousarray(np.broadcast_to(eps / eps.dtype.type(count), shape))]

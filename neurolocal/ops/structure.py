"""Vertices that route values without computing: graph inputs and concatenation."""

from __future__ import annotations

import numpy as np

from neurolocal.checks import number
from neurolocal.errors import TopologyError
from neurolocal.ops.base import Op, shape_tuple


class Input(Op):
    """A data vertex: its value is clamped to the batch; it has no error of its own."""

    name = "input"
    arity = 0

    def __init__(self, shape):
        self.shape = shape_tuple("shape", shape)

    def output_shape(self, parent_shapes):
        return self.shape

    def forward(self, params, inputs):
        raise TypeError("an input vertex is clamped to data, it predicts nothing")

    def vjp(self, params, cache, eps):
        return []


class Concat(Op):
    """vhat = concat(x_1..x_k) along a per-sample axis; J_k^T eps is eps's k-th slice."""

    name = "concat"
    arity = None

    def __init__(self, axis: int = -1):
        self.axis = number("axis", axis, whole=True, strict=True, error=TopologyError)

    def _axis(self, ndim: int) -> int:
        if not -ndim <= self.axis < ndim:
            raise TopologyError(f"axis {self.axis} is out of range for {ndim}-axis parents",
                                field="axis")
        return self.axis % ndim

    def output_shape(self, parent_shapes):
        ndim = len(parent_shapes[0])
        if any(len(s) != ndim for s in parent_shapes):
            raise TopologyError("concat needs parents with the same number of axes, got "
                                + ", ".join(str(list(s)) for s in parent_shapes))
        axis = self._axis(ndim)
        out = list(parent_shapes[0])
        for s in parent_shapes[1:]:
            for k in range(ndim):
                if k != axis and s[k] != out[k]:
                    raise TopologyError(
                        "concat needs parents that agree off the concatenation axis, got "
                        + ", ".join(str(list(p)) for p in parent_shapes))
            out[axis] += s[axis]
        return tuple(out)

    def forward(self, params, inputs):
        axis = self._axis(inputs[0].ndim - 1) + 1  # skip the batch axis
        sizes = [x.shape[axis] for x in inputs]
        return np.concatenate(inputs, axis=axis), (axis, np.cumsum(sizes)[:-1])

    def vjp(self, params, cache, eps):
        axis, splits = cache
        return [np.ascontiguousarray(part) for part in np.split(eps, splits, axis=axis)]

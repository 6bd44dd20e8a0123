"""Vertices that only rearrange values: flatten, reshape, stack. J^T eps undoes the move."""

from __future__ import annotations

import numpy as np

from neurolocal.errors import TopologyError
from neurolocal.ops.base import Op, require_same_shapes, shape_tuple


class Flatten(Op):
    """Any per-sample shape -> one axis (C, H, W -> C*H*W, row-major as torch's flatten)."""

    name = "flatten"
    arity = 1

    def output_shape(self, parent_shapes):
        return (int(np.prod(parent_shapes[0])),)

    def forward(self, params, inputs):
        x = inputs[0]
        return np.ascontiguousarray(x).reshape(x.shape[0], -1).copy(), x.shape

    def vjp(self, params, shape, eps):
        return [eps.reshape(shape)]


class Reshape(Op):
    """Per-sample reshape to `shape` (same number of values, row-major)."""

    name = "reshape"
    arity = 1

    def __init__(self, shape):
        self.shape = shape_tuple("shape", shape)

    def output_shape(self, parent_shapes):
        if int(np.prod(parent_shapes[0])) != int(np.prod(self.shape)):
            raise TopologyError(f"cannot reshape {list(parent_shapes[0])} to {list(self.shape)}: "
                                "the number of values differs", field="shape")
        return self.shape

    def forward(self, params, inputs):
        x = inputs[0]
        return np.ascontiguousarray(x).reshape(x.shape[0], *self.shape).copy(), x.shape

    def vjp(self, params, shape, eps):
        return [eps.reshape(shape)]


class Stack(Op):
    """vhat = stack(x_1..x_k) along a new first per-sample axis: shape (k, *shape).

    Collects per-step vertices of an unrolled recurrence (e.g. logits@0..logits@5)
    into one output; J^T eps for parent k is the slice eps[:, k].
    """

    name = "stack"
    arity = None
    min_parents = 1

    def output_shape(self, parent_shapes):
        return (len(parent_shapes), *require_same_shapes(self.name, parent_shapes))

    def forward(self, params, inputs):
        return np.stack(inputs, axis=1), len(inputs)

    def vjp(self, params, count, eps):
        return [np.ascontiguousarray(eps[:, k]) for k in range(count)]

"""Parameter-free elementwise vertices: sums, differences and products of parents and
multiplication by a constant (activations are in `neurolocal.ops.activations`)."""

from __future__ import annotations

import math

from neurolocal.errors import TopologyError
from neurolocal.ops.base import Op, require_same_shapes


class Add(Op):
    """vhat = sum_k x_k; every parent receives eps unchanged."""

    name = "add"
    arity = None

    def output_shape(self, parent_shapes):
        return require_same_shapes(self.name, parent_shapes)

    def forward(self, params, inputs):
        out = inputs[0].copy()
        for x in inputs[1:]:
            out += x
        return out, len(inputs)

    def vjp(self, params, count, eps):
        # Receivers only read messages, so one array can travel to every parent.
        return [eps] * count


class Mul(Op):
    """vhat = prod_k x_k (elementwise); J_k^T eps = eps * prod_{j != k} x_j."""

    name = "mul"
    arity = None

    def output_shape(self, parent_shapes):
        return require_same_shapes(self.name, parent_shapes)

    def forward(self, params, inputs):
        out = inputs[0].copy()
        for x in inputs[1:]:
            out *= x
        return out, list(inputs)

    def vjp(self, params, inputs, eps):
        grads = []
        for k in range(len(inputs)):
            g = eps.copy()
            for j, x in enumerate(inputs):
                if j != k:
                    g *= x
            grads.append(g)
        return grads


class Sub(Op):
    """vhat = a - b; J_a^T eps = eps, J_b^T eps = -eps."""

    name = "sub"
    arity = 2

    def output_shape(self, parent_shapes):
        return require_same_shapes(self.name, parent_shapes)

    def forward(self, params, inputs):
        return inputs[0] - inputs[1], None

    def vjp(self, params, cache, eps):
        return [eps, -eps]


class Scale(Op):
    """vhat = factor * x for a constant factor (no parameter); J^T eps = factor * eps."""

    name = "scale"
    arity = 1

    def __init__(self, factor: float):
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) \
                or not math.isfinite(factor):
            raise TopologyError(f"expected a finite number, got {factor!r}", field="factor")
        self.factor = float(factor)

    def forward(self, params, inputs):
        return inputs[0] * inputs[0].dtype.type(self.factor), None

    def vjp(self, params, cache, eps):
        return [eps * eps.dtype.type(self.factor)]

"""Parameter-free elementwise vertices: activations, sums and products of parents."""

from __future__ import annotations

import numpy as np

from neurolocal import kernels
from neurolocal.ops.base import Op, require_same_shapes


class _Activation(Op):
    """vhat = f(x); cache f'(x); J^T eps = eps * f'(x)."""

    arity = 1
    kernel = staticmethod(kernels.tanh_with_derivative)

    def forward(self, params, inputs):
        y, derivative = self.kernel(np.ascontiguousarray(inputs[0]))
        return y, derivative

    def vjp(self, params, derivative, eps):
        return [kernels.scale_by_derivative(np.ascontiguousarray(eps), derivative)]


class Tanh(_Activation):
    name = "tanh"
    kernel = staticmethod(kernels.tanh_with_derivative)


class Relu(_Activation):
    name = "relu"
    kernel = staticmethod(kernels.relu_with_derivative)


class Sigmoid(_Activation):
    name = "sigmoid"
    kernel = staticmethod(kernels.sigmoid_with_derivative)


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

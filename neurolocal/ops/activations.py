"""Activations, in one place: the fused activation of dense, multi_dense and conv2d
vertices (`apply_activation`) and the parameter-free activation vertices (tanh, relu,
sigmoid, gelu). Each kernel returns f(z) and f'(z) together (neurolocal/kernels.py)."""

from __future__ import annotations

import numpy as np

from neurolocal import kernels
from neurolocal.ops.base import Op, choice

ACTIVATIONS = {
    "identity": None,
    "tanh": kernels.tanh_with_derivative,
    "relu": kernels.relu_with_derivative,
    "sigmoid": kernels.sigmoid_with_derivative,
    "gelu": kernels.gelu_with_derivative,          # with erf: torch's default
    "gelu_tanh": kernels.gelu_tanh_with_derivative,  # the tanh form: jax.nn.gelu's default
}


def apply_activation(activation: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(f(z), f'(z)) for a fused activation; identity: (z, None)."""
    kernel = ACTIVATIONS[activation]
    if kernel is None:
        return z, None
    return kernel(np.ascontiguousarray(z))


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


class Gelu(_Activation):
    """GELU, exact (erf; torch's default) or its tanh approximation."""

    name = "gelu"

    def __init__(self, approximate: str = "none"):
        self.approximate = choice("approximate", approximate, ("none", "tanh"))

    def forward(self, params, inputs):
        if self.approximate == "tanh":
            return kernels.gelu_tanh_with_derivative(np.ascontiguousarray(inputs[0]))
        return kernels.gelu_with_derivative(np.ascontiguousarray(inputs[0]))


class Sigmoid(_Activation):
    name = "sigmoid"
    kernel = staticmethod(kernels.sigmoid_with_derivative)

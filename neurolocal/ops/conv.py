"""2-D convolution vertex (cross-correlation, as torch's conv2d), optional fused activation.

Per-sample shapes: input (C, H, W), output (O, OH, OW); weight (O, C, kh, kw), bias (O,).
With `cols = im2col(x)` (one row per output position, one column per (c, di, dj)):

    forward:   z = cols W^T + b,        vhat = f(z)          cache: cols, f'(z)
    vjp:       J^T eps = col2im((eps * f'(z)) W)
    param_vjp: dW = (eps * f'(z))^T cols,   db = sum over batch and positions

The weight is one tensor shared by every output position, but it lives in one
vertex, so its update is an ordinary local sum (no tied group is needed).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurolocal import kernels
from neurolocal import spatial_kernels as sk
from neurolocal.errors import TopologyError
from neurolocal.ops.base import Op, choice, non_negative_int, positive_int
from neurolocal.ops.activations import ACTIVATIONS, apply_activation


def pair(field: str, value: Any, *, allow_zero: bool = False) -> tuple[int, int]:
    """An int or [h, w] attribute as (h, w)."""
    check = non_negative_int if allow_zero else positive_int
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise TopologyError(f"expected a number or [height, width], got {value!r}", field=field)
        return check(field, value[0]), check(field, value[1])
    v = check(field, value)
    return v, v


def spatial_output_shape(op_name: str, shape, kernel, stride, padding,
                         padding_within_half_kernel: bool = True) -> tuple[int, int, int]:
    """(C, OH, OW) of a window op over a (C, H, W) parent, or a TopologyError saying why not.

    Pooling keeps torch's rule, padding at most half the kernel (a window entirely in
    the padding would have no maximum); a convolution takes any padding, as torch's
    does (windows in the padding see zeros)."""
    if len(shape) != 3:
        raise TopologyError(f"{op_name} takes a parent of shape [channels, height, width], "
                            f"got {list(shape)}")
    channels, height, width = shape
    if padding_within_half_kernel and (padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]):
        raise TopologyError(f"padding {list(padding)} is more than half the kernel {list(kernel)}",
                            field="padding")
    oh = sk.output_size(height, kernel[0], stride[0], padding[0])
    ow = sk.output_size(width, kernel[1], stride[1], padding[1])
    if oh < 1 or ow < 1:
        raise TopologyError(f"kernel {list(kernel)} does not fit a {height}x{width} input "
                            f"with padding {list(padding)}", field="kernel_size")
    return channels, oh, ow


class Conv2d(Op):
    name = "conv2d"
    arity = 1

    def __init__(self, out_channels: int, kernel_size, stride=1, padding=0,
                 activation: str = "identity", bias: bool = True, init: str = "uniform"):
        self.out_channels = positive_int("out_channels", out_channels)
        self.kernel_size = pair("kernel_size", kernel_size)
        self.stride = pair("stride", stride)
        self.padding = pair("padding", padding, allow_zero=True)
        self.activation = choice("activation", activation, list(ACTIVATIONS))
        if not isinstance(bias, bool):
            raise TopologyError(f"expected true or false, got {bias!r}", field="bias")
        self.bias = bias
        self.init = choice("init", init, ("uniform", "xavier", "he"))

    @property
    def has_params(self) -> bool:
        return True

    def _geometry(self, shape):
        return spatial_output_shape(self.name, shape, self.kernel_size, self.stride, self.padding,
                                    padding_within_half_kernel=False)

    def output_shape(self, parent_shapes):
        _, oh, ow = self._geometry(parent_shapes[0])
        return (self.out_channels, oh, ow)

    def param_shapes(self, parent_shapes):
        shapes = {"weight": (self.out_channels, parent_shapes[0][0], *self.kernel_size)}
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def init_params(self, parent_shapes, rng):
        shapes = self.param_shapes(parent_shapes)
        kh, kw = self.kernel_size
        fan_in = parent_shapes[0][0] * kh * kw
        fan_out = self.out_channels * kh * kw
        if self.init == "uniform":      # torch.nn.Conv2d's default bound
            bound = 1.0 / np.sqrt(fan_in)
            weight = rng.uniform(-bound, bound, size=shapes["weight"])
        elif self.init == "xavier":
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            weight = rng.uniform(-bound, bound, size=shapes["weight"])
        else:
            weight = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shapes["weight"])
        params = {"weight": weight}
        if self.bias:
            bound = 1.0 / np.sqrt(fan_in)
            params["bias"] = (rng.uniform(-bound, bound, size=shapes["bias"])
                              if self.init == "uniform" else np.zeros(shapes["bias"]))
        return params

    def forward(self, params, inputs):
        (x,) = inputs
        x = np.ascontiguousarray(x)
        batch, channels, height, width = x.shape
        _, oh, ow = self._geometry(x.shape[1:])
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        cols = sk.im2col(x, kh, kw, sh, sw, ph, pw, oh, ow)
        z = cols @ params["weight"].reshape(self.out_channels, -1).T      # (B*oh*ow, O)
        if self.bias:
            z += params["bias"]
        z = np.ascontiguousarray(z.reshape(batch, oh, ow, self.out_channels).transpose(0, 3, 1, 2))
        vhat, derivative = apply_activation(self.activation, z)
        return vhat, (cols, x.shape, derivative)

    def _delta_rows(self, cache, eps):
        """eps * f'(z), laid out like `z` before the transpose: (B*oh*ow, O)."""
        _, _, derivative = cache
        eps = np.ascontiguousarray(eps)
        delta = eps if derivative is None else kernels.scale_by_derivative(eps, derivative)
        return np.ascontiguousarray(delta.transpose(0, 2, 3, 1)).reshape(-1, self.out_channels)

    def vjp(self, params, cache, eps):
        cols, (batch, channels, height, width), _ = cache
        _, oh, ow = eps.shape[1:]
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        dcols = self._delta_rows(cache, eps) @ params["weight"].reshape(self.out_channels, -1)
        return [sk.col2im(dcols, batch, channels, height, width, kh, kw, sh, sw, ph, pw, oh, ow)]

    def param_vjp(self, params, cache, eps):
        cols = cache[0]
        delta = self._delta_rows(cache, eps)
        out = {"weight": (delta.T @ cols).reshape(params["weight"].shape)}
        if self.bias:
            out["bias"] = delta.sum(axis=0)
        return out

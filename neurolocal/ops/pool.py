"""Pooling vertices over (C, H, W): no parameters, Jacobians fixed by the forward pass.

    maxpool2d  forward: window maxima, cache each window's argmax
               vjp:     eps goes to the winning position (ties: the first in the window)
    avgpool2d  forward: window means (padding counts as zeros, torch's default)
               vjp:     eps / window size to every position of the window

`stride` defaults to the kernel size, as in torch.
"""

from __future__ import annotations

import numpy as np

from neurolocal import spatial_kernels as sk
from neurolocal.ops.base import Op
from neurolocal.ops.conv import pair, spatial_output_shape


class _Pool2d(Op):
    arity = 1

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kernel_size = pair("kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else pair("stride", stride)
        self.padding = pair("padding", padding, allow_zero=True)

    def output_shape(self, parent_shapes):
        return spatial_output_shape(self.name, parent_shapes[0], self.kernel_size,
                                    self.stride, self.padding)

    def _window(self):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return kh, kw, sh, sw, ph, pw


class MaxPool2d(_Pool2d):
    name = "maxpool2d"

    def forward(self, params, inputs):
        x = np.ascontiguousarray(inputs[0])
        _, oh, ow = self.output_shape([x.shape[1:]])
        out, where = sk.maxpool_forward(x, *self._window(), oh, ow)
        return out, (where, x.shape[2], x.shape[3])

    def vjp(self, params, cache, eps):
        where, height, width = cache
        return [sk.maxpool_backward(np.ascontiguousarray(eps), where, height, width)]


class AvgPool2d(_Pool2d):
    name = "avgpool2d"

    def forward(self, params, inputs):
        x = np.ascontiguousarray(inputs[0])
        _, oh, ow = self.output_shape([x.shape[1:]])
        return sk.avgpool_forward(x, *self._window(), oh, ow), (x.shape[2], x.shape[3])

    def vjp(self, params, cache, eps):
        height, width = cache
        return [sk.avgpool_backward(np.ascontiguousarray(eps), height, width, *self._window())]

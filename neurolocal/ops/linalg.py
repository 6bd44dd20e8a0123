"""Products and permutations of activations: what attention and token mixing are made of.

    matmul     forward:  vhat = a @ b      per sample (..., m, k) @ (..., k, n) -> (..., m, n)
               vjp:      J_a^T eps = eps @ b^T,   J_b^T eps = a^T @ eps
    transpose  forward:  vhat = x permuted by `axes` (per-sample axes, as torch's permute
                         of the axes after the batch)
               vjp:      eps permuted back by the inverse permutation

Neither has parameters: matmul of two activations is bilinear, so each parent's
Jacobian is the other parent's value cached from the forward pass.
"""

from __future__ import annotations

import numpy as np

from neurolocal.errors import TopologyError
from neurolocal.ops.axes import axes_attribute, resolve
from neurolocal.ops.base import Op


class MatMul(Op):
    name = "matmul"
    arity = 2

    def output_shape(self, parent_shapes):
        a, b = (tuple(s) for s in parent_shapes)
        if len(a) < 2 or len(b) < 2 or len(a) != len(b) or a[:-2] != b[:-2] or a[-1] != b[-2]:
            raise TopologyError(f"matmul multiplies [..., m, k] by [..., k, n] (same leading "
                                f"axes), got {list(a)} and {list(b)}")
        return (*a[:-1], b[-1])

    def forward(self, params, inputs):
        a, b = inputs
        return np.matmul(a, b), (a, b)

    def vjp(self, params, cache, eps):
        a, b = cache
        return [np.matmul(eps, np.swapaxes(b, -1, -2)), np.matmul(np.swapaxes(a, -1, -2), eps)]


class Transpose(Op):
    name = "transpose"
    arity = 1

    def __init__(self, axes):
        self.axes = axes_attribute("axes", axes)

    @property
    def attributes(self):
        return {"axes": list(self.axes)}

    def _permutation(self, ndim: int) -> tuple[int, ...]:
        perm = resolve("axes", self.axes, ndim)
        if len(perm) != ndim:
            raise TopologyError(f"axes {list(self.axes)} must name each of the parent's "
                                f"{ndim} per-sample axes once", field="axes")
        return perm

    def output_shape(self, parent_shapes):
        (shape,) = parent_shapes
        return tuple(shape[k] for k in self._permutation(len(shape)))

    def forward(self, params, inputs):
        (x,) = inputs
        perm = self._permutation(x.ndim - 1)
        full = (0, *(k + 1 for k in perm))
        return np.ascontiguousarray(np.transpose(x, full)), full

    def vjp(self, params, full, eps):
        return [np.ascontiguousarray(np.transpose(eps, np.argsort(full)))]

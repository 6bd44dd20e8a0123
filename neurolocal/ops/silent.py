"""A measuring instrument, not a model: a dense vertex with the arithmetic taken out.

`silent_dense` has the shapes, parameters and messages of `dense` (a prediction of
`units` values, a J^T eps of the parent's size, a weight-sized update) but computes
nothing: every array is zeros. Running a graph of them measures what an engine
costs beyond the math — the same messages between the same vertices and actors
(`scripts/bench.py` compares the two).
"""

from __future__ import annotations

import numpy as np

from neurolocal.ops.base import Op, positive_int


class SilentDense(Op):
    name = "silent_dense"
    arity = 1

    def __init__(self, units: int, activation: str = "identity"):
        self.units = positive_int("units", units)
        self.activation = activation  # accepted so a dense topology converts as it is

    @property
    def has_params(self) -> bool:
        return True

    def output_shape(self, parent_shapes):
        return (self.units,)

    def init_params(self, parent_shapes, rng):
        return {"weight": np.zeros((parent_shapes[0][0], self.units)),
                "bias": np.zeros(self.units)}

    def forward(self, params, inputs):
        (x,) = inputs
        return np.zeros((x.shape[0], self.units)), x.shape

    def vjp(self, params, input_shape, eps):
        return [np.zeros(input_shape)]

    def param_vjp(self, params, input_shape, eps):
        return {"weight": np.zeros_like(params["weight"]), "bias": np.zeros_like(params["bias"])}

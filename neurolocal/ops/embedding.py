"""Embedding vertex: integer ids -> rows of a table.

    forward:   vhat[l] = W[ids[l]]           per-sample parent shape (L,) -> (L, units)
    vjp:       zeros (ids are not differentiable; the id vertex is normally an input)
    param_vjp: dW[v] = sum of eps[l] over every (sample, l) whose id is v

Ids arrive as the parent's values (float64 holding whole numbers 0..vocab-1).
A one-hot parent with a `dense` vertex (bias: false) computes the same thing and
is what topologies/rnn.yaml and lstm.yaml use, since the text data is one-hot.
"""

from __future__ import annotations

import numpy as np

from neurolocal.errors import DataError, TopologyError
from neurolocal.ops.base import Op, choice, positive_int


class Embedding(Op):
    name = "embedding"
    arity = 1

    def __init__(self, vocab: int, units: int, init: str = "normal"):
        self.vocab = positive_int("vocab", vocab)
        self.units = positive_int("units", units)
        self.init = choice("init", init, ("normal", "uniform"))

    @property
    def has_params(self) -> bool:
        return True

    def output_shape(self, parent_shapes):
        (shape,) = parent_shapes
        if len(shape) != 1:
            raise TopologyError(f"embedding takes a parent of ids of shape [length], "
                                f"got {list(shape)}")
        return (shape[0], self.units)

    def param_shapes(self, parent_shapes):
        return {"weight": (self.vocab, self.units)}

    def init_params(self, parent_shapes, rng):
        if self.init == "normal":  # torch.nn.Embedding's default
            return {"weight": rng.standard_normal((self.vocab, self.units))}
        return {"weight": rng.uniform(-0.1, 0.1, size=(self.vocab, self.units))}

    def _ids(self, x):
        ids = np.asarray(x)
        as_int = ids.astype(np.int64)
        if not np.all(as_int == ids):
            raise DataError("embedding ids must be whole numbers")
        if as_int.size and (as_int.min() < 0 or as_int.max() >= self.vocab):
            raise DataError(f"embedding ids must lie in 0..{self.vocab - 1}, "
                            f"found {int(as_int.min())}..{int(as_int.max())}")
        return as_int

    def forward(self, params, inputs):
        (x,) = inputs
        ids = self._ids(x)
        return params["weight"][ids], (ids, x.shape)

    def vjp(self, params, cache, eps):
        _, shape = cache
        return [np.zeros(shape)]

    def param_vjp(self, params, cache, eps):
        ids, _ = cache
        update = np.zeros_like(params["weight"])
        np.add.at(update, ids.reshape(-1), eps.reshape(-1, self.units))
        return {"weight": update}

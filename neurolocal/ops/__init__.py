"""The op registry: built-in vertex functions and the ones users register.

A user adds an op without touching the package, either by subclassing `Op` and
calling `register_op(MyOp)`, or from plain functions::

    register_op("times_theta", forward=lambda x, theta: theta * x,
                vjp=lambda eps, inputs, out, theta: [theta * eps],
                param_vjp=lambda eps, inputs, out, theta: {"theta": np.sum(eps * inputs[0])},
                params={"theta": 1.0})

`forward(*inputs, **params)` gets batch-first arrays; `vjp(eps, inputs, out, **params)`
returns `J_k^T eps` for each parent; `param_vjp` returns `eps . dvhat/dtheta` summed
over the batch. A topology file can set a parameter's initial value by its name.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import numpy as np

from neurolocal.errors import TopologyError
from neurolocal.ops.activations import Gelu, Relu, Sigmoid, Tanh
from neurolocal.ops.base import Op, Shape
from neurolocal.ops.conv import Conv2d
from neurolocal.ops.dense import Dense
from neurolocal.ops.elementwise import Add, Mul, Scale, Sub
from neurolocal.ops.embedding import Embedding
from neurolocal.ops.linalg import MatMul, Transpose
from neurolocal.ops.losses import LOSSES, Loss, make_loss
from neurolocal.ops.multi_dense import MultiDense
from neurolocal.ops.normalization import LayerNorm, Softmax
from neurolocal.ops.pool import AvgPool2d, MaxPool2d
from neurolocal.ops.reduce import Mean
from neurolocal.ops.shape import Flatten, Reshape, Stack
from neurolocal.ops.silent import SilentDense
from neurolocal.ops.structure import Concat, Input

OPS: dict[str, type[Op]] = {}


def register_op(name: str | type[Op], forward: Callable | None = None,
                vjp: Callable | None = None, *, param_vjp: Callable | None = None,
                params: dict[str, Any] | None = None,
                output_shape: Callable[[Sequence[Shape]], Shape] | None = None,
                arity: int | None | str = "infer", replace: bool = False) -> type[Op]:
    """Register an `Op` subclass, or build one from functions. Returns the op class."""
    if isinstance(name, type) and issubclass(name, Op):
        op_class = name
    else:
        if forward is None or vjp is None:
            raise TypeError("register_op needs forward and vjp functions")
        op_class = _function_op(str(name), forward, vjp, param_vjp, dict(params or {}),
                                output_shape, arity)
    if not op_class.name:
        raise TypeError(f"{op_class.__name__} needs a class attribute 'name'")
    if op_class.name in OPS and not replace and OPS[op_class.name] is not op_class:
        raise ValueError(f"an op named {op_class.name!r} is already registered "
                         "(pass replace=True to override it)")
    OPS[op_class.name] = op_class
    return op_class


def get_op(name: str) -> type[Op]:
    if not isinstance(name, str) or name not in OPS:
        raise TopologyError(f"unknown op {name!r} (known: {', '.join(sorted(OPS))})", field="op")
    return OPS[name]


def _function_op(name, forward, vjp, param_vjp, param_defaults, output_shape, arity):
    if arity == "infer":
        try:
            signature = inspect.signature(forward).parameters.values()
        except (TypeError, ValueError):
            raise TypeError(f"cannot read the parameters of {forward!r}; pass arity=") from None
        required = [p for p in signature
                    if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                    and p.default is p.empty and p.name not in param_defaults]
        variadic = any(p.kind is p.VAR_POSITIONAL for p in signature)
        arity = None if variadic else len(required)

    class FunctionOp(Op):
        def __init__(self, **initial_values):
            unknown = set(initial_values) - set(param_defaults)
            if unknown:
                accepted = ", ".join(param_defaults) or "none"
                raise TopologyError(f"op '{name}' has no attribute '{sorted(unknown)[0]}' "
                                    f"(accepted: {accepted})", field=sorted(unknown)[0])
            self.initial_values = {**param_defaults, **initial_values}

        @property
        def has_params(self):
            return bool(self.initial_values)

        @property
        def attributes(self):
            return {k: v for k, v in self.initial_values.items() if not callable(v)}

        def output_shape(self, parent_shapes):
            if output_shape is not None:
                return tuple(output_shape(parent_shapes))
            return tuple(parent_shapes[0])

        def init_params(self, parent_shapes, rng):
            out = {}
            for key, value in self.initial_values.items():
                value = value(parent_shapes, rng) if callable(value) else value
                out[key] = np.array(value, dtype=np.float64)
            return out

        def forward(self, params, inputs):
            # the run's dtype, read off the inputs (float64, or float32 with --dtype)
            out = np.asarray(forward(*inputs, **params), dtype=np.result_type(*inputs))
            return out, (list(inputs), out)

        def vjp(self, params, cache, eps):
            inputs, out = cache
            return [np.asarray(g, dtype=eps.dtype) for g in vjp(eps, inputs, out, **params)]

        def param_vjp(self, params, cache, eps):
            if param_vjp is None:
                return {}
            inputs, out = cache
            return {k: np.asarray(v, dtype=eps.dtype)
                    for k, v in param_vjp(eps, inputs, out, **params).items()}

    FunctionOp.name = name
    FunctionOp.arity = arity
    FunctionOp.min_parents = 1
    FunctionOp.__name__ = FunctionOp.__qualname__ = f"FunctionOp[{name}]"
    return FunctionOp


for _op in (Input, Dense, Tanh, Relu, Sigmoid, Add, Mul, Concat,
            Conv2d, MaxPool2d, AvgPool2d, Flatten, Reshape, Stack, Embedding, MultiDense,
            SilentDense, MatMul, Transpose, Softmax, LayerNorm, Gelu, Scale, Mean, Sub):
    register_op(_op)

__all__ = ["OPS", "LOSSES", "Loss", "Op", "get_op", "make_loss", "register_op"]

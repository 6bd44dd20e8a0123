"""What an op is: a vertex's function, its local Jacobian products and its Hebbian rule.

An op instance is one vertex's function `vhat = f(parents; theta)` with its
attributes bound (units, activation, axis...). It states three things side by
side, and nothing about where its neighbours live:

- `forward(params, inputs) -> (vhat, cache)`: the prediction, plus whatever the
  local rules need later (inputs, activation derivatives, pooling indices).
- `vjp(params, cache, eps) -> [J_k^T eps for each parent k]`: what this vertex
  sends each parent during relaxation (and what reverse-mode autodiff propagates).
- `param_vjp(params, cache, eps) -> {name: eps . dvhat/dtheta}` summed over the
  batch: the Hebbian update (and, with a gradient as `eps`, backprop's gradient).

All arrays carry the batch as their first axis; shapes elsewhere are per sample.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, ClassVar, Sequence

import numpy as np

from neurolocal.checks import number
from neurolocal.errors import TopologyError

Shape = tuple[int, ...]
Params = dict[str, np.ndarray]


class Op:
    """Base class of every vertex function. Subclasses bind attributes in `__init__`."""

    name: ClassVar[str] = ""
    #: number of parents, or None for "two or more" (add, mul, concat)
    arity: ClassVar[int | None] = 1
    min_parents: ClassVar[int] = 2

    def __init__(self):
        pass

    def output_shape(self, parent_shapes: Sequence[Shape]) -> Shape:
        return tuple(parent_shapes[0])

    def init_params(self, parent_shapes: Sequence[Shape], rng: np.random.Generator) -> Params:
        return {}

    def param_shapes(self, parent_shapes: Sequence[Shape]) -> dict[str, Shape]:
        """Shapes of the parameters, derived without drawing random numbers."""
        rng = np.random.default_rng(0)
        return {k: v.shape for k, v in self.init_params(parent_shapes, rng).items()}

    def forward(self, params: Params, inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def vjp(self, params: Params, cache: Any, eps: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def param_vjp(self, params: Params, cache: Any, eps: np.ndarray) -> Params:
        return {}

    @property
    def has_params(self) -> bool:
        return False

    @property
    def attributes(self) -> dict[str, Any]:
        """The attributes this op was built with, as a topology file would write them."""
        return {n: getattr(self, n) for n in _init_parts(type(self)).accepted
                if hasattr(self, n)}

    def describe(self) -> str:
        """The op as a user wrote it: its name and the attributes that differ from defaults."""
        defaults = _init_parts(type(self)).defaults
        attrs = ", ".join(f"{k}={_plain(v)}" for k, v in self.attributes.items()
                          if defaults.get(k, inspect.Parameter.empty) != v)
        return f"{self.name}({attrs})" if attrs else self.name

    @classmethod
    def from_attributes(cls, attrs: dict[str, Any]) -> "Op":
        """Build from a topology file's keys, naming unknown or missing ones clearly."""
        parts = _init_parts(cls)
        if not parts.takes_any:
            for key in attrs:
                if key not in parts.accepted:
                    allowed = ", ".join(parts.accepted) if parts.accepted else "none"
                    raise TopologyError(
                        f"op '{cls.name}' has no attribute '{key}' (accepted: {allowed})",
                        field=key,
                    )
        for pname in parts.required:
            if pname not in attrs:
                raise TopologyError(f"op '{cls.name}' needs attribute '{pname}'", field=pname)
        return cls(**attrs)


@functools.lru_cache(maxsize=256)
def _init_signature(op_class: type) -> inspect.Signature:
    """The signature of an op class's __init__, read once per class: inspecting it per
    vertex was a third of the time to load a 10,000-vertex topology."""
    return inspect.signature(op_class.__init__)


class _InitParts:
    """What `from_attributes`, `attributes` and `describe` read of an op class's __init__:
    its keyword names in order, the required ones, the defaults, whether it takes any."""

    def __init__(self, signature: inspect.Signature):
        params = [p for name, p in signature.parameters.items() if name != "self"]
        self.accepted = [p.name for p in params]
        self.takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        self.required = [p.name for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD
                         and p.default is inspect.Parameter.empty]
        self.defaults = {p.name: p.default for p in params}


@functools.lru_cache(maxsize=256)
def _init_parts(op_class: type) -> _InitParts:
    """Read once per class (per vertex it was 40% of building a 100k-vertex graph)."""
    return _InitParts(_init_signature(op_class))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# --- attribute checks shared by the ops -------------------------------------------------


def positive_int(field: str, value: Any, *, limit: int = 1 << 24) -> int:
    value = number(field, value, whole=True, strict=True, positive=True, error=TopologyError)
    if value > limit:
        raise TopologyError(f"{value} is larger than the limit {limit}", field=field)
    return value


def non_negative_int(field: str, value: Any) -> int:
    return number(field, value, whole=True, strict=True, minimum=0, error=TopologyError)


def choice(field: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        raise TopologyError(f"expected one of {', '.join(options)}, got {value!r}", field=field)
    return value


def shape_tuple(field: str, value: Any, *, max_elements: int = 1 << 26) -> Shape:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise TopologyError(f"expected a list of positive integers, got {value!r}", field=field)
    shape = tuple(positive_int(field, v) for v in value)
    if math.prod(shape) > max_elements:
        raise TopologyError(
            f"shape {list(shape)} has more than {max_elements} elements per sample", field=field
        )
    return shape


def require_same_shapes(op_name: str, parent_shapes: Sequence[Shape]) -> Shape:
    first = tuple(parent_shapes[0])
    for s in parent_shapes[1:]:
        if tuple(s) != first:
            shapes = ", ".join(str(list(p)) for p in parent_shapes)
            raise TopologyError(f"{op_name} needs parents of one shape, got {shapes}")
    return first

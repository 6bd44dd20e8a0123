"""Per-sample axis attributes shared by the ops that act along an axis (softmax, mean,
layernorm, transpose): written without the batch axis, negative counting from the end."""

from __future__ import annotations

from typing import Any, Sequence

from neurolocal.errors import TopologyError


def axis_attribute(field: str, value: Any) -> int:
    from neurolocal.checks import number

    return number(field, value, whole=True, strict=True, error=TopologyError)


def axes_attribute(field: str, value: Any) -> tuple[int, ...]:
    """One axis or a list of distinct axes."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise TopologyError("expected at least one axis", field=field)
        return tuple(axis_attribute(field, v) for v in value)
    return (axis_attribute(field, value),)


def resolve(field: str, axes: Sequence[int], ndim: int) -> tuple[int, ...]:
    """Per-sample axes made non-negative, checked against a parent of `ndim` axes."""
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise TopologyError(f"axis {a} is out of range for a parent of {ndim} "
                                f"per-sample axis{'es' if ndim != 1 else ''}", field=field)
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise TopologyError(f"axes {list(axes)} repeat an axis", field=field)
    return tuple(out)

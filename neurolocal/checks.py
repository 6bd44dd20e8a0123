"""One helper for every number a user sets: it names the parameter, never a flag.

`ConfigError(field=name)` carries the parameter's name; the command line maps it to
its flag when it prints the error (neurolocal/cli.py), Python callers see the name.
"""

from __future__ import annotations

import math
from typing import Any

from neurolocal.errors import ConfigError


def number(name: str, value: Any, *, whole: bool = False, minimum: float | None = None,
           positive: bool = False, below: float | None = None) -> int | float:
    """`value` as an int (`whole`) or a finite float, checked against the bounds given;
    else ConfigError naming `name`. Booleans are not numbers here."""
    kind = "a whole number" if whole else "a number"
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if ok and whole and isinstance(value, float):
        ok = value.is_integer()
    if ok and not whole:
        ok = math.isfinite(value)
    if ok and positive:
        ok = value > 0
        kind = f"a positive {kind[2:]}" if not whole else "a whole number > 0"
    if ok and minimum is not None:
        ok = value >= minimum
        kind = f"{kind} >= {minimum:g}"
    if ok and below is not None:
        ok = value < below
        kind = f"{kind} below {below:g}"
    if not ok:
        raise ConfigError(f"expected {kind}, got {value!r}", field=name)
    return int(value) if whole else float(value)

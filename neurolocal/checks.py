"""One helper for every number a user sets: it names the parameter, never a flag.

`number` checks a value already parsed (a topology's attribute, a training-section
value, an `EngineConfig` field); `parse_number` reads one from text first (a flag, a
`--vary` value, a budget). Both raise `ConfigError(field=name)` (or the error class
given: `TopologyError` for an op's attribute, `DataError` for a data option) carrying
the parameter's name; the command line maps it to its flag when it prints the error
(neurolocal/cli.py), Python callers see the name. tests/test_structure.py checks that
no other module validates a whole number by hand.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Type

from neurolocal.errors import ConfigError, NeurolocalError


def number(name: str, value: Any, *, whole: bool = False, minimum: float | None = None,
           maximum: float | None = None, positive: bool = False, below: float | None = None,
           strict: bool = False, error: Type[NeurolocalError] = ConfigError) -> int | float:
    """`value` as an int (`whole`) or a finite float, checked against the bounds given;
    else `error` naming `name`. A whole number is an integer, or a float with no fraction
    (4.0 for 4) unless `strict`: then only an integer type counts (a topology or
    training value as YAML typed it, so `units: 1e300` never becomes a 301-digit size).
    Booleans are not numbers here; numpy's scalars are."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real)
    if ok and whole and not isinstance(value, numbers.Integral):
        ok = not strict and math.isfinite(value) and float(value).is_integer()
    if ok and not whole:
        ok = math.isfinite(value)
    if ok and positive:
        ok = value > 0
    if ok and minimum is not None:
        ok = value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if ok and below is not None:
        ok = value < below
    if not ok:
        kind = expected(whole=whole, minimum=minimum, maximum=maximum, positive=positive,
                        below=below)
        raise error(f"expected {kind}, got {value!r}", field=name)
    return int(value) if whole else float(value)


def parse_number(name: str, text: str, *, whole: bool = False,
                 error: Type[NeurolocalError] = ConfigError, **bounds: Any) -> int | float:
    """`number` of a value written as text ("3", "2.5", "1e6"); a text that is no number
    fails with the same one line."""
    text = str(text).strip()
    try:
        value: int | float = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            kind = expected(whole=whole, **bounds)
            raise error(f"expected {kind}, got {text!r}", field=name) from None
        if whole and math.isfinite(value) and value.is_integer():
            value = int(value)  # "1e6" is a whole number written short
    return number(name, value, whole=whole, error=error, **bounds)


def expected(*, whole: bool = False, minimum: float | None = None,
             maximum: float | None = None, positive: bool = False,
             below: float | None = None, **_: Any) -> str:
    """What `number` expects, in words: "a whole number >= 1", "a positive number", ..."""
    if positive:
        kind = "a positive integer" if whole else "a positive number"
    else:
        kind = "a whole number" if whole else "a number"
    if minimum is not None and maximum is not None:
        kind = f"{kind} from {_bound(minimum)} to {_bound(maximum)}"
    elif minimum is not None:
        kind = f"{kind} >= {_bound(minimum)}"
    elif maximum is not None:
        kind = f"{kind} <= {_bound(maximum)}"
    if below is not None:
        kind = f"{kind} below {_bound(below)}"
    return kind


def _bound(x: float) -> str:
    if isinstance(x, numbers.Integral) or (isinstance(x, float) and x.is_integer()
                                           and abs(x) < 1e15):
        return str(int(x))
    return f"{x:g}"


def argument(**kind):
    """An argparse `type=` of a number through `parse_number` (the CLI's flags and the
    traffic tools' share it; argparse names the flag in front of the message)."""
    import argparse

    def convert(text: str):
        try:
            return parse_number("", text, **kind)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(exc.detail) from None

    return convert


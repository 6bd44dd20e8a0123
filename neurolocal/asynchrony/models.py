"""Timing and fault models of the simulated-time transport (docs/asynchrony.md).

Time is measured in *rounds*: one round is the default time a vertex takes for one
update (its compute time, `compute: constant:1`). A delay written in milliseconds
(`exp:2ms`) is converted with `round_ms`, the length of a round in milliseconds.

Every model draws from the one generator the transport passes in, in the order
the events happen, so a seeded run is bitwise reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from neurolocal.errors import ConfigError

DISTRIBUTIONS = ("constant", "uniform", "exponential", "lognormal")
_ALIASES = {"const": "constant", "constant": "constant", "uniform": "uniform",
            "exp": "exponential", "exponential": "exponential", "lognormal": "lognormal",
            "lognorm": "lognormal"}
_ARITY = {"constant": 1, "uniform": 2, "exponential": 1, "lognormal": 2}
#: bounds of every number a model holds (docs/asynchrony.md §2): a duration in rounds (or
#: ms), a straggler factor, a round's length in ms; beyond them simulated time or a Ray
#: actor's sleep would overflow or never end
MAX_DURATION = 1e9
MAX_SLOW = 1e6
MIN_ROUND_MS, MAX_ROUND_MS = 1e-6, 1e6
#: with retransmission a message is sent at most this many times; after that it counts
#: as lost (docs/asynchrony.md §4), so a drop probability near 1 still ends
MAX_SENDS = 16


@dataclass(frozen=True)
class Distribution:
    """A non-negative random duration.

    constant:X        always X
    uniform:A,B       uniform on [A, B]
    exponential:M     exponential with mean M (`exp:M`)
    lognormal:M,S     log-normal with mean M and log-standard-deviation S
    `unit` is "rounds" or "ms" (a trailing `ms` on the spec)."""

    kind: str
    a: float
    b: float = 0.0
    unit: str = "rounds"

    def sample(self, rng: np.random.Generator, round_ms: float) -> float:
        scale = 1.0 / round_ms if self.unit == "ms" else 1.0
        if self.kind == "constant":
            return self.a * scale
        if self.kind == "uniform":
            return float(rng.uniform(self.a, self.b)) * scale
        if self.kind == "exponential":
            return float(rng.exponential(self.a)) * scale if self.a > 0 else 0.0
        sigma = self.b                                   # lognormal with mean a
        if self.a == 0:
            return 0.0
        return float(rng.lognormal(math.log(self.a) - sigma * sigma / 2, sigma)) * scale

    def mean(self, round_ms: float = 1.0) -> float:
        scale = 1.0 / round_ms if self.unit == "ms" else 1.0
        middle = (self.a + self.b) / 2 if self.kind == "uniform" else self.a
        return middle * scale

    def upper(self, round_ms: float = 1.0) -> float:
        """The largest value it can take (inf for the unbounded ones)."""
        scale = 1.0 / round_ms if self.unit == "ms" else 1.0
        if self.kind == "constant":
            return self.a * scale
        if self.kind == "uniform":
            return self.b * scale
        return 0.0 if self.a == 0 else math.inf

    @property
    def is_zero(self) -> bool:
        return self.kind == "constant" and self.a == 0

    def text(self) -> str:
        short = {"constant": "const", "exponential": "exp"}.get(self.kind, self.kind)
        numbers = [self.a] if _ARITY[self.kind] == 1 else [self.a, self.b]
        unit = "ms" if self.unit == "ms" else ""
        return f"{short}:" + ",".join(f"{x:g}" for x in numbers) + unit


ZERO = Distribution("constant", 0.0)
ONE = Distribution("constant", 1.0)


def parse_distribution(spec, field: str) -> Distribution:
    """`exp:1`, `uniform:0,2`, `lognormal:1,0.5`, `const:3`, `2`, `exp:5ms`: a Distribution,
    or ConfigError naming `field`."""
    if isinstance(spec, bool):
        raise ConfigError(f"expected a delay like exp:1 or 2, got {spec!r}", field=field)
    if isinstance(spec, (int, float)):
        spec = str(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"expected a delay like exp:1 or 2, got {spec!r}", field=field)
    text = spec.strip().lower()
    unit = "rounds"
    if text.endswith("ms"):
        text, unit = text[:-2], "ms"
    elif text.endswith("rounds"):
        text = text[:-6]
    name, sep, rest = text.partition(":")
    if not sep and name.strip() not in _ALIASES:   # a bare number: constant
        name, rest = "constant", name
    kind = _ALIASES.get(name.strip())
    if kind is None:
        raise ConfigError(f"unknown distribution {name!r} in {spec!r} (known: const, uniform, "
                          "exp, lognormal)", field=field)
    parts = [p.strip().removesuffix("ms") for p in rest.split(",")] if rest.strip() else []
    if len(parts) != _ARITY[kind]:
        raise ConfigError(f"{kind} takes {_ARITY[kind]} number(s), got {spec!r}", field=field)
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise ConfigError(f"expected numbers in {spec!r}", field=field) from None
    if not all(math.isfinite(x) and 0 <= x <= MAX_DURATION for x in numbers):
        raise ConfigError(f"durations must be in [0, {MAX_DURATION:g}], got {spec!r}",
                          field=field)
    if kind == "uniform" and numbers[0] > numbers[1]:
        raise ConfigError(f"uniform:A,B needs A <= B, got {spec!r}", field=field)
    return Distribution(kind, numbers[0], numbers[1] if len(numbers) > 1 else 0.0, unit)


def parse_probability(value, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"expected a probability in [0, 1), got {value!r}",
                              field=field) from None
    if not math.isfinite(value) or not 0 <= value < 1:
        raise ConfigError(f"expected a probability in [0, 1), got {value!r}", field=field)
    return float(value)


@dataclass(frozen=True)
class Pause:
    """A vertex starts no update in [at + k*every, at + k*every + length) (k = 0 only
    when `every` is None)."""
    at: float
    length: float
    every: float | None = None

    def resume_time(self, t: float) -> float:
        """t itself if the vertex may start an update at t, else the end of its pause."""
        if t < self.at:
            return t
        k = 0 if self.every is None else math.floor((t - self.at) / self.every)
        start = self.at + k * (self.every or 0.0)
        return start + self.length if start <= t < start + self.length else t


@dataclass(frozen=True)
class VertexTiming:
    """A vertex's compute time per update, how many times slower it is, its pauses."""
    compute: Distribution | None = None
    slow: float = 1.0
    pause: Pause | None = None


@dataclass(frozen=True)
class EdgeTiming:
    """Delay and loss of the messages from one vertex to another (either may be unset)."""
    delay: Distribution | None = None
    drop: float | None = None


@dataclass(frozen=True)
class Asynchrony:
    """Every timing and fault model of a simulated run (docs/asynchrony.md)."""
    delay: Distribution = ZERO
    compute: Distribution = ONE
    drop: float = 0.0
    retransmit: bool = False
    timeout: float = 2.0          # rounds after its departure a lost message is noticed
    reorder: bool = False         # False: messages on one edge arrive in the order sent
    round_ms: float = 1.0
    seed: int | None = None
    edges: dict = field(default_factory=dict)      # (src, dst) -> EdgeTiming
    vertices: dict = field(default_factory=dict)   # name -> VertexTiming

    def edge_delay(self, src: str, dst: str) -> Distribution:
        edge = self.edges.get((src, dst))
        return edge.delay if edge is not None and edge.delay is not None else self.delay

    def edge_drop(self, src: str, dst: str) -> float:
        edge = self.edges.get((src, dst))
        return edge.drop if edge is not None and edge.drop is not None else self.drop

    def vertex(self, name: str) -> VertexTiming:
        return self.vertices.get(name, _DEFAULT_VERTEX)

    @property
    def lossy(self) -> bool:
        return self.drop > 0 or any(e.drop for e in self.edges.values())

    def summary(self) -> dict:
        """The settings as plain values (for logs, metrics and the sweep's CSV)."""
        return {"delay": self.delay.text(), "compute": self.compute.text(), "drop": self.drop,
                "retransmit": self.retransmit, "timeout": self.timeout,
                "reorder": self.reorder, "round_ms": self.round_ms,
                "edges": len(self.edges), "vertices": len(self.vertices)}


_DEFAULT_VERTEX = VertexTiming()

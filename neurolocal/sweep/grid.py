"""The grid of a sweep: `--vary KEY=V1,V2,...` parsed and checked, one point per
combination (docs/asynchrony.md §5). Every mistake is one ConfigError naming the key."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass

from neurolocal.checks import parse_number
from neurolocal.errors import ConfigError

#: what a sweep can vary, and what each value must be
KEYS = {
    "staleness": "a whole number >= 0",
    "pipeline": "a whole number >= 1 (batches in flight, docs/asynchrony.md §7)",
    "delay": "a duration such as 0, exp:1, uniform:0,2, lognormal:1,0.5",
    "drop": "a probability in [0, 1)",
    "retransmit": "true or false",
    "reorder": "true or false",
    "straggler": "VERTEX:K or none",
    "mode": "fixed or strict",
    "variant": "fixed (fixed predictions), strict (strict mode, jacobi) or ipc (strict, "
               "incremental PC)",
    "schedule": "auto, jacobi, event or ipc",
    "eta": "a positive number",
    "iterations": "a whole number >= 1, depth (the graph's), or bound (1 + (depth-1)(S+1), "
                  "docs/asynchrony.md §3)",
    "lr": "a positive number",
    "batch_size": "a whole number >= 1",
    "epochs": "a whole number >= 1",
    "optimizer": "sgd or adam",
}
#: the numeric keys, as checks.number's bounds
NUMBERS = {"staleness": {"whole": True, "minimum": 0}, "pipeline": {"whole": True, "minimum": 1},
           "iterations": {"whole": True, "minimum": 1},
           "batch_size": {"whole": True, "minimum": 1}, "epochs": {"whole": True, "minimum": 1},
           "eta": {"positive": True}, "lr": {"positive": True}}
#: runs (points x seeds) one sweep may hold: a grid is checked against it before any job
#: is listed (`--seeds 10000000` or a 39^4-point grid was a MemoryError)
MAX_RUNS = 100_000
BOOLEANS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


def parse_value(key: str, text: str, field: str | None = None):
    """One value of `key`, parsed (ConfigError naming the key when it does not parse)."""
    from neurolocal.asynchrony.models import parse_distribution, parse_probability

    field = field or f"vary.{key}"
    bad = ConfigError(f"expected {KEYS[key]}, got {text!r}", field=field)
    text = text.strip()
    if key == "iterations" and text in ("bound", "depth"):
        return text
    if key in NUMBERS:
        try:
            return parse_number(field, text, **NUMBERS[key])
        except ConfigError:
            raise bad from None
    if key == "delay":
        parse_distribution(text, field)
        return text
    if key == "drop":
        return parse_probability(text, field)
    if key in ("retransmit", "reorder"):
        if text.lower() not in BOOLEANS:
            raise bad
        return BOOLEANS[text.lower()]
    if key == "straggler":
        if text.lower() == "none":
            return "none"
        if ":" not in text:
            raise bad
        return text
    choices = {"mode": ("fixed", "strict"), "schedule": ("auto", "jacobi", "event", "ipc"),
               "variant": ("fixed", "strict", "ipc"),
               "optimizer": ("sgd", "adam")}[key]
    if text not in choices:
        raise bad
    return text


def parse_vary(texts: list[str]) -> dict[str, list]:
    """['staleness=0,1,2', 'delay=exp:0.5,exp:2'] -> {'staleness': [0, 1, 2], ...}.

    Values are split on commas, except that a comma followed by a digit continues a
    duration (`delay=uniform:0,2,exp:1` is uniform:0,2 and exp:1)."""
    grid: dict[str, list] = {}
    for text in texts:
        key, sep, values = text.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not values.strip():
            raise ConfigError(f"expected KEY=V1,V2,..., got {text!r}", field="vary")
        if key not in KEYS:
            raise ConfigError(f"cannot vary {key!r} (known: {', '.join(KEYS)})", field="vary")
        if key in grid:
            raise ConfigError(f"{key} is varied twice", field="vary")
        parts: list[str] = []
        for piece in values.split(","):
            if parts and key == "delay" and piece[:1].isdigit() and ":" not in piece \
                    and parts[-1].split(":")[0] in ("uniform", "lognormal") \
                    and "," not in parts[-1]:
                parts[-1] += "," + piece
            else:
                parts.append(piece)
        parsed = [parse_value(key, p) for p in parts]
        if len(set(map(str, parsed))) != len(parsed):
            raise ConfigError(f"{key} lists a value twice", field="vary")
        grid[key] = parsed
    return grid


@dataclass(frozen=True)
class Job:
    """One grid point and one seed."""
    point: tuple            # ((key, value), ...) in the grid's key order
    seed: int

    @property
    def settings(self) -> dict:
        return dict(self.point)

    @property
    def key(self) -> str:
        text = json.dumps([list(map(str, kv)) for kv in self.point] + [self.seed])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_size(grid: dict[str, list], seeds: int) -> int:
    """The number of runs, refused in one line past MAX_RUNS (nothing listed yet)."""
    runs = seeds
    for key, values in grid.items():
        runs *= len(values)
        if runs > MAX_RUNS:
            points = " x ".join(str(len(v)) for v in grid.values())
            raise ConfigError(f"{points} points x {seeds} seeds is more than {MAX_RUNS} runs: "
                              "vary fewer values or seeds", field="vary")
    if runs > MAX_RUNS:
        raise ConfigError(f"{seeds} seeds is more than {MAX_RUNS} runs", field="seeds")
    return runs


def jobs(grid: dict[str, list], seeds: int) -> list[Job]:
    check_size(grid, seeds)
    keys = list(grid)
    return [Job(tuple(zip(keys, values)), seed)
            for values in itertools.product(*(grid[k] for k in keys))
            for seed in range(seeds)]

"""Training settings: the topology's `training:` section merged with command-line overrides,
checked once (`resolve_settings`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from neurolocal.engines.base import check_relaxation_settings
from neurolocal.errors import ConfigError
from neurolocal.graph import Graph
from neurolocal.training.optimizers import OPTIMIZERS, make_optimizer

ALGORITHMS = ("pc", "bp")


MODES = ("fixed", "strict")


@dataclass(frozen=True)
class Settings:
    algorithms: tuple[str, ...] = ("pc",)
    engine: str = "local"
    data: Any = "digits"
    epochs: int = 10
    batch_size: int = 32
    eta: float = 1.0
    iterations: int | None = None          # None: the graph's depth
    mode: str = "fixed"
    optimizer: str = "adam"
    lr: float | None = None                # None: the optimizer's default
    optimizer_options: dict = field(default_factory=dict)
    seed: int = 0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["algorithms"] = list(self.algorithms)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Settings":
        d = dict(d)
        d["algorithms"] = tuple(d["algorithms"])
        return cls(**d)


#: the product: vertices as actors on an embedded local Ray (`--engine local` is the fast path)
DEFAULT_ENGINE = "ray"


TRAINING_KEYS = ("data", "epochs", "batch_size", "eta", "iterations", "mode", "optimizer", "lr",
                 "seed", "algorithm", "engine", "paper_mode")


#: read by the topology loader (neurolocal.paper), not a trainer setting
TOPOLOGY_ONLY_KEYS = ("paper_mode",)


def resolve_settings(training: dict, overrides: dict, graph: Graph) -> Settings:
    """Built-in defaults < the topology's `training:` section < command-line flags
    (`overrides`, None meaning "not given"). Every value is checked here, up front."""
    unknown = sorted(set(training) - set(TRAINING_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} (known: {', '.join(TRAINING_KEYS)})",
                          field="training")
    merged = {k: v for k, v in training.items() if k not in TOPOLOGY_ONLY_KEYS}
    optimizer = merged.pop("optimizer", "adam")
    options: dict = {}
    if isinstance(optimizer, dict):
        options = dict(optimizer)
        optimizer = options.pop("name", "adam")
        if "lr" in options and "lr" not in merged:
            merged["lr"] = options.pop("lr")
        options.pop("lr", None)
    for key, value in overrides.items():
        if value is not None:
            merged[key] = value
    if overrides.get("optimizer") is not None and overrides["optimizer"] != optimizer:
        optimizer, options = overrides["optimizer"], {}   # other optimizer: its own defaults
        if overrides.get("lr") is None:
            merged.pop("lr", None)
    merged.pop("optimizer", None)

    algorithm = merged.pop("algorithm", "pc")
    algorithms = {"pc": ("pc",), "bp": ("bp",), "both": ("pc", "bp")}.get(algorithm)
    if algorithms is None:
        raise ConfigError(f"expected pc, bp or both, got {algorithm!r}", field="algorithm")
    settings = Settings(
        algorithms=algorithms,
        engine=merged.get("engine", DEFAULT_ENGINE),
        data=merged.get("data", "digits"),
        epochs=_whole(merged.get("epochs", 10), "epochs", minimum=1),
        batch_size=_whole(merged.get("batch_size", 32), "batch_size", minimum=1),
        eta=_number(merged.get("eta", 1.0), "eta"),
        iterations=(None if merged.get("iterations") is None
                    else _whole(merged["iterations"], "iterations", minimum=1)),
        mode=merged.get("mode", "fixed"),
        optimizer=optimizer,
        lr=None if merged.get("lr") is None else _number(merged["lr"], "lr"),
        optimizer_options=options,
        seed=_whole(merged.get("seed", 0), "seed", minimum=0),
    )
    if settings.mode not in MODES:
        raise ConfigError(f"expected fixed or strict, got {settings.mode!r}", field="mode")
    if not isinstance(settings.optimizer, str) or settings.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {settings.optimizer!r} "
                          f"(known: {', '.join(OPTIMIZERS)})", field="optimizer")
    check_relaxation_settings(settings.eta, iterations_for(settings, graph), settings.mode)
    make_optimizer(settings.optimizer, settings.lr, **settings.optimizer_options)  # checks options
    return settings


def _whole(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"expected a whole number >= {minimum}, got {value!r}", field=name)
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise ConfigError(f"expected a positive number, got {value!r}", field=name)
    return float(value)


def iterations_for(settings: Settings, graph: Graph) -> int:
    return graph.depth if settings.iterations is None else settings.iterations

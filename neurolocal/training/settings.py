"""Training settings: the topology's `training:` section merged with command-line overrides,
checked once (`resolve_settings`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from neurolocal.checks import number
from neurolocal.engines.base import check_relaxation_settings
from neurolocal.errors import ConfigError
from neurolocal.graph import Graph
from neurolocal.optimizers import OPTIMIZERS, make_optimizer

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

    @classmethod
    def from_saved(cls, d: Any) -> "Settings":
        """Settings read back from a file (a checkpoint): every field present, of its type
        and in its range, checked as strictly as a topology's training section."""
        names = [f.name for f in fields(cls)]
        if not isinstance(d, dict) or sorted(d) != sorted(names):
            found = sorted(map(str, d)) if isinstance(d, dict) else type(d).__name__
            raise ConfigError(f"expected the fields {', '.join(names)}, found {found}",
                              field="settings")
        algorithms = d["algorithms"]
        if not isinstance(algorithms, list) or tuple(algorithms) not in (("pc",), ("bp",),
                                                                         ("pc", "bp")):
            raise ConfigError(f"expected [pc], [bp] or [pc, bp], got {algorithms!r}",
                              field="settings.algorithms")
        if not isinstance(d["optimizer_options"], dict):
            raise ConfigError("expected a mapping", field="settings.optimizer_options")
        settings = cls(
            algorithms=tuple(algorithms), engine=d["engine"], data=d["data"],
            epochs=_whole(d["epochs"], "epochs", 1, MAX_EPOCHS),
            batch_size=_whole(d["batch_size"], "batch_size", 1, MAX_BATCH_SIZE),
            eta=_number(d["eta"], "eta"),
            iterations=(None if d["iterations"] is None
                        else _whole(d["iterations"], "iterations", 1, MAX_ITERATIONS)),
            mode=d["mode"], optimizer=d["optimizer"],
            lr=None if d["lr"] is None else _number(d["lr"], "lr"),
            optimizer_options=dict(d["optimizer_options"]),
            seed=_whole(d["seed"], "seed", 0, MAX_SEED))
        _check_names(settings)
        return settings


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
    algorithms = {"pc": ("pc",), "bp": ("bp",), "both": ("pc", "bp")}.get(algorithm) \
        if isinstance(algorithm, str) else None
    if algorithms is None:
        raise ConfigError(f"expected pc, bp or both, got {algorithm!r}", field="algorithm")
    settings = Settings(
        algorithms=algorithms,
        engine=merged.get("engine", DEFAULT_ENGINE),
        data=merged.get("data", "digits"),
        epochs=_whole(merged.get("epochs", 10), "epochs", 1, MAX_EPOCHS),
        batch_size=_whole(merged.get("batch_size", 32), "batch_size", 1, MAX_BATCH_SIZE),
        eta=_number(merged.get("eta", 1.0), "eta"),
        iterations=(None if merged.get("iterations") is None
                    else _whole(merged["iterations"], "iterations", 1, MAX_ITERATIONS)),
        mode=merged.get("mode", "fixed"),
        optimizer=optimizer,
        lr=None if merged.get("lr") is None else _number(merged["lr"], "lr"),
        optimizer_options=options,
        seed=_whole(merged.get("seed", 0), "seed", 0, MAX_SEED),
    )
    _check_names(settings)
    check_relaxation_settings(settings.eta, iterations_for(settings, graph), settings.mode)
    return settings


def check_training_section(training: dict, graph: Graph) -> Settings:
    """What `validate` checks of a topology's `training:` section: the very checks `run`
    makes (`resolve_settings`, the data spec's form), so a file `validate` accepts is
    not refused by `run` for its training section."""
    settings = resolve_settings(training, {}, graph)
    from pathlib import Path

    from neurolocal.errors import DataError
    from neurolocal.training.data import BUILTIN, check_data_spec

    name, _ = check_data_spec(settings.data)
    if name not in BUILTIN and not Path(name).exists():
        raise DataError(f"no such file (and not a built-in data set: {', '.join(BUILTIN)})",
                        source=name, field="training.data")
    return settings


def _check_names(settings: Settings) -> None:
    """The settings that name things (engine, mode, optimizer, data) and the optimizer's
    options; shared by resolve_settings and Settings.from_saved."""
    from neurolocal.engines import ENGINE_NAMES
    from neurolocal.training.data import check_data_spec

    if not isinstance(settings.engine, str) or settings.engine not in ENGINE_NAMES:
        raise ConfigError(f"expected one of {', '.join(ENGINE_NAMES)}, got {settings.engine!r}",
                          field="engine")
    if not isinstance(settings.mode, str) or settings.mode not in MODES:
        raise ConfigError(f"expected fixed or strict, got {settings.mode!r}", field="mode")
    if not isinstance(settings.optimizer, str) or settings.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {settings.optimizer!r} "
                          f"(known: {', '.join(OPTIMIZERS)})", field="optimizer")
    for key in settings.optimizer_options:
        if not isinstance(key, str):
            raise ConfigError(f"option names are text, got {key!r}", field="optimizer")
    check_data_spec(settings.data)
    make_optimizer(settings.optimizer, settings.lr, **settings.optimizer_options)  # checks options


#: upper bounds of the whole-number settings: beyond them a run would never end (epochs,
#: iterations) or a number stops being what it says (a batch of 2^31 samples)
MAX_EPOCHS = 1_000_000
MAX_BATCH_SIZE = 1 << 31
MAX_ITERATIONS = 1_000_000
MAX_SEED = (1 << 64) - 1


def _whole(value: Any, name: str, minimum: int, maximum: int) -> int:
    return number(name, value, whole=True, strict=True, minimum=minimum, maximum=maximum)


def _number(value: Any, name: str) -> float:
    return number(name, value, positive=True)


def iterations_for(settings: Settings, graph: Graph) -> int:
    return graph.depth if settings.iterations is None else settings.iterations

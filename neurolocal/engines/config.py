"""`EngineConfig`: where and how the vertices run, built once and checked once.

The command line builds it from its flags (`neurolocal/cli.py`), Python callers build it
directly; either way every engine is opened from one (`neurolocal.engines.open_engine`).
Errors name the parameter (`ConfigError.field`), never a flag.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from neurolocal.checks import expected, number
from neurolocal.errors import ConfigError

ENGINE_NAMES = ("local", "ray", "sim")
SCHEDULES = ("auto", "jacobi", "event", "backward-in-time", "ipc")
MODES = ("fixed", "strict")
PLACEMENTS = ("spread", "pack")
#: seconds any driver wait may take (actors starting, one batch) before the run fails
DEFAULT_TIMEOUT = 300.0
#: how often Ray may restart one actor that died before the run gives up
DEFAULT_MAX_RESTARTS = 3
#: training batches the Ray driver keeps posted to the actors at once (docs/rounds.md §7)
DEFAULT_POST_AHEAD = 3
#: `vertices_per_actor` meaning "about one shard per core, by a min-cut partition"
#: (docs/placement.md)
AUTO = "auto"


def check_vertices_per_actor(value: Any) -> int | str:
    """`auto` or a whole number >= 1 (vertices per actor, packed in topological order)."""
    if value == AUTO:
        return AUTO
    if isinstance(value, str):
        raise ConfigError(f"expected auto or {expected(whole=True, minimum=1)}, got "
                          f"{value!r}", field="vertices_per_actor")
    return number("vertices_per_actor", value, whole=True, minimum=1)


#: which path synchronous rounds take (EngineConfig.rounds)
ROUND_PATHS = ("auto", "message")


@dataclass(frozen=True)
class EngineConfig:
    """engine: local (one process), ray (actors) or sim (one process, simulated time). mode: fixed or strict predictions.
    schedule: a policy of the round machine (docs/rounds.md) or auto. traffic_log: a
    directory to record every message, or None. Ray only: address, vertices_per_actor
    (auto: about one shard per core, chosen by a min-cut partition, docs/placement.md;
    K: runs of K vertices in topological order), placement_from (a traffic log whose
    bytes per edge weigh that partition), staleness (0: synchronous rounds), placement,
    timeout (seconds), max_restarts, fault (actor, batch): a testing aid that kills an
    actor once."""
    engine: str = "local"
    mode: str = "fixed"
    schedule: str = "auto"
    traffic_log: str | None = None
    address: str = "local"
    vertices_per_actor: int | str = AUTO
    placement_from: str | None = None
    staleness: int = 0
    placement: str = "spread"
    timeout: float = DEFAULT_TIMEOUT
    max_restarts: int = DEFAULT_MAX_RESTARTS
    fault: tuple[int, int] | None = None
    #: sim and ray: the delay, loss and straggler models as given (a SimOptions of
    #: asynchrony/options.py, checked against the graph when the engine opens; the ray
    #: engine injects them for real, engines/ray/asynchrony.py), and the seed of their
    #: random draws (None: the run's seed)
    sim: Any = None
    seed: int | None = None
    #: training: batches in flight through the graph at once (docs/asynchrony.md §7);
    #: 1 is batch after batch. Built on the sim and local engines.
    pipeline: int = 1
    #: ray, training: batches posted to the actors before the first one's results are
    #: collected (docs/rounds.md §7); 1 waits for every batch. Same numbers bit for bit.
    post_ahead: int = DEFAULT_POST_AHEAD
    #: float64 (default) or float32: parameters, values and messages (neurolocal/dtypes.py)
    dtype: str = "float64"
    #: auto: synchronous rounds run from the planned path where they can (docs/rounds.md
    #: §9); message: always the message path (the same numbers, bit for bit; slower)
    rounds: str = "auto"

    def __post_init__(self) -> None:
        for name, choices in (("engine", ENGINE_NAMES), ("mode", MODES),
                              ("schedule", SCHEDULES), ("placement", PLACEMENTS),
                              ("rounds", ROUND_PATHS)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"expected one of {', '.join(choices)}, got "
                                  f"{getattr(self, name)!r}", field=name)
        from neurolocal.dtypes import check_dtype

        check_dtype(self.dtype)
        set_ = object.__setattr__   # frozen: normalise once, here
        set_(self, "vertices_per_actor", check_vertices_per_actor(self.vertices_per_actor))
        if self.placement_from is not None and self.vertices_per_actor != AUTO:
            raise ConfigError("a traffic log weighs the min-cut partition of "
                              f"vertices_per_actor {AUTO}, not runs of "
                              f"{self.vertices_per_actor} vertices", field="placement_from")
        set_(self, "staleness", number("staleness", self.staleness, whole=True, minimum=0))
        set_(self, "timeout", number("timeout", self.timeout, positive=True))
        set_(self, "max_restarts", number("max_restarts", self.max_restarts, whole=True,
                                          minimum=0))
        set_(self, "pipeline", number("pipeline", self.pipeline, whole=True, minimum=1))
        set_(self, "post_ahead", number("post_ahead", self.post_ahead, whole=True, minimum=1))
        if self.fault is not None:
            try:
                actor, batch = self.fault
            except (TypeError, ValueError):
                raise ConfigError(f"expected (actor, batch), got {self.fault!r}",
                                  field="fault") from None
            set_(self, "fault", (number("fault", actor, whole=True, minimum=0),
                                 number("fault", batch, whole=True, minimum=0)))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "EngineConfig":
        """From a mapping that may hold other keys and None for "the default"."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known and v is not None})

    def with_(self, **changes) -> "EngineConfig":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def check_pipeline(self) -> None:
        """Refuse K > 1 where it means nothing (called once the engine is known: `run`
        takes it from the topology's training section). Which engines pipeline at all is
        their capability (engines/capabilities.py)."""
        from neurolocal.engines.capabilities import check_capabilities

        check_capabilities(self)
        if self.pipeline > 1 and self.resolved_schedule == "ipc":
            raise ConfigError("iPC moves every weight every round, so a batch has no single "
                              "update whose staleness a pipeline could bound", field="pipeline")

    @property
    def resolved_schedule(self) -> str:
        """`auto` picks the event schedule where it is exact (fixed mode, synchronous
        rounds): the same numbers as Jacobi, bit for bit, with far fewer messages."""
        if self.schedule != "auto":
            return self.schedule
        synchronous = self.engine == "local" or not self.staleness
        return "event" if self.mode == "fixed" and synchronous else "jacobi"

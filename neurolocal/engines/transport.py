"""What a transport is: the small interface the one `Engine` runs over (docs/rounds.md §6).

A transport starts the shards of the round machine (`engines/rounds.py`), moves their
messages and decides *when* and *where* each is delivered: all in this process
(`engines/local.py`), in simulated time (`engines/sim/`), or between Ray actors
(`engines/ray/`). It holds no round rule, no default and no check: the engine
(`engines/engine.py`) fills in the defaults, checks the settings, builds each batch's
`RunSettings`, prepares the data, and assembles what comes back into a `Relaxation` or
a `Step`.

A transport declares what it can do once, in its `Capabilities` (the table of
`engines/capabilities.py`); the engine checks an `EngineConfig` against them when it
opens, so every "needs the X engine" comes from one place and nothing is silently
ignored.

Adding a transport: implement `Transport` (tests/test_transport_protocol.py has one in
fifty lines that runs every schedule) and give it a `Capabilities`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterable, Iterator, Protocol, runtime_checkable

import numpy as np

from neurolocal.engines.capabilities import Capabilities
from neurolocal.engines.rounds import Learning, RunSettings
from neurolocal.graph import Params


@dataclass
class Batch:
    """One batch as the engine hands it to a transport: the settings (`batch` 0: the
    transport numbers its batches), the inputs and target prepared in the run's dtype,
    and the parameters to relax with (None: training, the vertices use their own)."""
    settings: RunSettings
    inputs: dict[str, np.ndarray]
    target: np.ndarray
    params: Params | None = None
    on_round: Callable[[int], None] | None = None


@dataclass
class Outcome:
    """A batch run to completion: every shard's `Shard.result()`, the batch id of the
    attempt that completed, the restarts on the way, and the transport's own report
    (None: it has nothing to add; else simulated time, lost messages, actors, ...)."""
    results: list[dict]
    batch: int
    restarts: list = field(default_factory=list)
    report: dict | None = None


@runtime_checkable
class Transport(Protocol):
    """Moves one run's messages. `recorder` is the traffic log's (None: not kept); the
    engine writes each batch's energy to it."""

    capabilities: ClassVar[Capabilities]
    recorder: object

    def load(self, params: Params) -> None:
        """The vertices relax with these parameters (by reference where the vertices live
        in this process)."""

    def restore_vertices(self, params: Params, optimizer: dict | None, learning: Learning) -> None:
        """Every vertex takes its parameters and optimizer state (it then trains them)."""

    def run(self, batch: Batch) -> Outcome:
        """Run one batch's messages to completion."""

    def run_many(self, batches: Iterable[Batch], pipeline: int) -> Iterator[Outcome]:
        """Training batches with `pipeline` in flight (1: one after the other; a transport
        may still post ahead, `posting_ahead`); outcomes in batch order."""

    def snapshot_parts(self) -> list[dict]:
        """Every shard's `Shard.snapshot()`, at a batch boundary."""

    def keep_snapshot(self, params: Params, optimizer: dict) -> None:
        """The consistent snapshot the engine gathered (a transport that recovers from a
        lost worker restores from it)."""

    def completed(self, batch: Batch, outcome: Outcome, result) -> None:
        """The engine's result of a batch (`Relaxation` or `Step`), for a journal."""

    def report(self) -> dict:
        """What the transport says about itself (placement, actors), for check-grad."""

    def close(self) -> None:
        """Stop whatever the transport started."""

"""Weight staleness while batches are in flight (docs/asynchrony.md §7): how many of its
own updates a vertex applied between its forward pass of a batch and its update from
that batch. A `StalenessLedger` hears the round machine's events (`forward`, `learned`)
through the transports that pipeline (local, sim); the engine exposes what it counted
(`Engine.weight_staleness`, `Engine.staleness_histogram`)."""

from __future__ import annotations

from neurolocal.engines.rounds import RoundObserver


class StalenessLedger:
    """Counts per vertex, over one run of batches (`begin_run`): updates applied, and the
    count at each batch's forward pass. `records`: a list to append (batch, vertex,
    staleness) to, or None (only `histogram` counts)."""

    def __init__(self):
        self.records: list | None = None
        self.histogram: dict[int, int] = {}
        self.updates: dict[str, int] = {}
        self._at_forward: dict[tuple[int, str], int] = {}

    def begin_run(self) -> None:
        """A new run of batches: updates count from 0 again."""
        self.updates = {}
        self._at_forward = {}

    def forward(self, batch: int, vertex: str) -> None:
        self._at_forward[(batch, vertex)] = self.updates.get(vertex, 0)

    def learned(self, batch: int, vertex: str) -> int:
        """The vertex applied its update of `batch`: its staleness, recorded."""
        done = self.updates.get(vertex, 0)
        staleness = done - self._at_forward.pop((batch, vertex), done)
        self.updates[vertex] = done + 1
        self.add(batch, vertex, staleness)
        return staleness

    def add(self, batch: int, vertex: str, staleness: int) -> None:
        """An update counted elsewhere (a Ray actor's own ledger): recorded here."""
        self.histogram[staleness] = self.histogram.get(staleness, 0) + 1
        if self.records is not None:
            self.records.append((batch, vertex, staleness))


class LedgerObserver(RoundObserver):
    """Forward passes and applied updates of the shards it is set on, told to a ledger."""

    def __init__(self, ledger: StalenessLedger):
        self.ledger = ledger

    def forward(self, shard, vertex):
        self.ledger.forward(shard.settings.batch, vertex)

    def learned(self, shard, vertex):
        self.ledger.learned(shard.settings.batch, vertex)

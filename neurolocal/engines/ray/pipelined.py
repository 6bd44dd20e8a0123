"""Pipelined training on Ray (`--pipeline K`, docs/rounds.md §7): the driver's half.

Batches go to the actors in groups of K, one `run_group` call per actor per group,
the next group posted while one runs. Each actor runs a group in its shard's lanes in
lock-step with the local engine's ticks (engines/lanes.py), so a run ends bit for bit
where the local engine's `--pipeline K` ends, with the same weight staleness (each
actor counts its vertices' and the driver adds them to the engine's ledger).

Faults: an actor lost under a group abandons every group in flight; the driver
restarts it, restores every actor from the last snapshot, replays the groups since
(as groups: the same lock-step), then posts the abandoned groups again under fresh
ids. A `fault`'s group runs alone (the groups before it collected, none posted after
it), so the actor dies under exactly that group.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from itertools import islice

import ray

from neurolocal.engines.ray import lifecycle
from neurolocal.engines.ray.recovery import ActorLost, ActorsLate, gather
from neurolocal.engines.transport import Batch, Outcome
from neurolocal.errors import ConfigError, EngineError
from neurolocal.traffic.log import now

#: groups posted to the actors at once: the one running and the next
GROUPS_IN_FLIGHT = 2


@dataclass
class Group:
    """Up to K training batches in flight together: the engine's batches, the index of
    the first (what `fault` counts), and once posted their settings (batch ids), the
    actors' calls and the restarts on the way."""
    batches: list[Batch]
    index: int
    settings: list = field(default_factory=list)
    calls: list = field(default_factory=list)
    dispatched: float = 0.0
    restarts: list = field(default_factory=list)

    def holds(self, index: int | None) -> bool:
        return index is not None and self.index <= index < self.index + len(self.batches)


def check_pipelined(transport) -> None:
    """Pipelining is for synchronous rounds: no staleness, no injected asynchrony."""
    if transport.staleness > 0 or transport.asynchrony is not None:
        raise ConfigError("pipelining on the ray engine runs synchronous rounds only; "
                          "asynchronous rounds and injected asynchrony pipeline on the sim "
                          "engine", field="pipeline")


class Pipelining:
    """The pipelining half of `RayTransport` (driver.py)."""

    def run_groups(self, batches, pipeline: int):
        """Training batches, K = `pipeline` in flight; yields (batch, outcome) in order."""
        check_pipelined(self)
        self._check_open()
        self._set_piping(True)
        source = iter(batches)
        flight: deque[Group] = deque()
        waiting: list[Group] = []
        alone = None if self.fault is None else self.fault[1]
        fresh = True
        ended = False
        try:
            while True:
                lifecycle.check_embedded()
                while len(flight) < GROUPS_IN_FLIGHT:
                    if not waiting:
                        read = list(islice(source, pipeline))
                        if not read:
                            break
                        waiting.append(Group(read, self._relaxed))
                        self._relaxed += len(read)
                    if flight and (waiting[0].holds(alone) or flight[-1].holds(alone)):
                        break   # the fault's group runs alone
                    self._post_group(waiting.pop(), flight, fresh)
                    fresh = False
                if not flight:
                    ended = True
                    return
                oldest = flight[0]
                try:
                    replies = gather(oldest.calls, self.timeout, self._describe_actors(),
                                     "finish its group")
                except ActorLost as lost:
                    self._abandon(c for group in flight for c in group.calls)
                    first = oldest.settings[0].batch
                    records = self.restart_lost_actors(lost, oldest.index, first,
                                                       oldest.dispatched)
                    again = list(flight)
                    flight.clear()
                    behind = tuple(s.batch for g in again for s in g.settings)[len(oldest.settings):]
                    self._mark_abandoned(list(behind))
                    oldest.restarts += [replace(r, abandoned_ahead=behind) for r in records]
                    for group in again:
                        self._post_group(group, flight, False)
                    continue
                except ActorsLate as late:
                    raise EngineError(self._unreachable(late)) from None
                flight.popleft()
                self._since.append([(s, b.inputs, b.target)
                                    for s, b in zip(oldest.settings, oldest.batches)])
                for k, (settings, batch) in enumerate(zip(oldest.settings, oldest.batches)):
                    results = [reply[k] for reply in replies]
                    for result in results:
                        for record in result.get("staleness", ()):
                            self.ledger.add(*record)
                    self._log_replies_now(settings.batch, results)
                    yield batch, Outcome(results, settings.batch,
                                         oldest.restarts if k == 0 else [], None)
        except GeneratorExit:
            self._drain(flight)
            raise
        except BaseException as exc:
            failure = lifecycle.ray_failure(exc)
            self.close()
            if failure is not None:
                raise failure from None
            raise
        finally:
            if ended and self.actors:
                self._set_piping(False)

    def replay_group(self, entries) -> list[tuple]:
        """A group of the batches since the snapshot, again as a group, under fresh ids:
        [(settings, inputs, target, results)]."""
        settings = [replace(s, batch=self._batch + k) for k, (s, _, _) in enumerate(entries)]
        self._batch += len(entries)
        replies = gather(self._group_calls(settings, [(i, t) for _, i, t in entries], None,
                                           False),
                         self.timeout, self._describe_actors(), "replay a group")
        return [(s, i, t, [reply[k] for reply in replies])
                for k, (s, (_, i, t)) in enumerate(zip(settings, entries))]

    # --- the rest --------------------------------------------------------------------------

    def _post_group(self, group: Group, flight: deque, fresh: bool) -> None:
        """Post a group under fresh ids, after the newest group in flight; kill the
        fault's victim right after its group is posted."""
        after = flight[-1].settings[-1].batch if flight else None
        group.settings = [b.settings.with_batch(self._batch + k)
                          for k, b in enumerate(group.batches)]
        self._batch += len(group.batches)
        group.dispatched = now()
        group.calls = self._group_calls(group.settings,
                                        [(b.inputs, b.target) for b in group.batches],
                                        after, fresh)
        flight.append(group)
        if self.fault is not None and group.holds(self.fault[1]):
            victim = self.fault[0]
            self.fault = None
            ray.kill(self.actors[victim], no_restart=False)

    def _group_calls(self, settings: list, data: list, after, fresh: bool) -> list:
        """One `run_group` call per actor: per batch its settings, its inputs' data and
        the target if the output is its."""
        calls = []
        output = self.graph.output
        for actor, names in zip(self.actors, self.shards):
            entries = [(s, {n: x[n] for n in names if n in x},
                        y if output in names else None)
                       for s, (x, y) in zip(settings, data)]
            calls.append(actor.run_group.remote(entries, now(), after, fresh))
        return calls

    def _set_piping(self, piping: bool) -> None:
        """Every actor routes messages through its lanes (or not), nothing in flight."""
        self._piping = piping
        gather([a.set_piping.remote(piping) for a in self.actors], self.timeout,
               self._describe_actors(), "switch pipelining")

    def _drain(self, flight: deque) -> None:
        """A caller stopped reading: the groups in flight finish (their results are
        dropped), so the actors are between batches again."""
        try:
            for group in flight:
                gather(group.calls, self.timeout, self._describe_actors(), "finish its group")
                self._since.append([(s, b.inputs, b.target)
                                    for s, b in zip(group.settings, group.batches)])
            self._set_piping(False)
        except Exception:   # a dead actor: the next call recovers or fails
            pass

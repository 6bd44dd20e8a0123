"""Real asynchrony on Ray: the sim engine's delay, loss, straggler and reordering models
(asynchrony/models.py, transport-free) injected for real inside the actors
(docs/asynchrony.md §6). No math here: the actor hands this module the messages its
shard wants posted, and this module decides when (and whether) each really leaves.

* Delay: a message is held by its sender and posted after its sampled delay, in real
  time: a delay of d rounds is d x `round_ms` milliseconds (on top of Ray's own
  latency). Without `reorder` the messages of one directed edge are posted in the
  order they were sent (a late one holds back those behind it); with it they may
  overtake each other.
* Loss: each message is lost with its edge's probability. With `retransmit` the
  sender sends it again `timeout` rounds later (each attempt may be lost too).
  Without, its payload never leaves the sender; `timeout` rounds later the receiver
  gets a notice in its place (the header and the payload's shape: what a receiver
  that timed out knows it missed) and goes on with the last payload it received on
  that edge and kind in this batch, or zeros (`Receiver.substitute`).
* Stragglers: an actor hosting a vertex with `slow: K` sleeps (K - 1) x the measured
  duration of each of its shard's steps, so each step takes K times its real compute
  time; during a `pause` (rounds from the batch's start, x `round_ms`) no update of
  the actor's vertices begins (the shard's `horizon` is capped; forward passes still
  happen, as on the sim engine). An actor is as slow as its slowest vertex.
* `compute:` is the sim's model of an update's duration; on Ray an update takes its
  real time, so a `compute:` setting is refused here (one line: use `slow:`).

Messages between vertices of one actor are local calls and are not delayed or lost
(with anything injected, the driver's `auto` packing puts one vertex in each actor, so
every message is remote; an explicit K packs K). Every random
draw comes from the actor's own `PCG64((seed, actor index))` generator; the real
timing still varies from run to run, which is why such runs are journaled for replay.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from dataclasses import dataclass

import numpy as np

from neurolocal.engines.rounds import CONSTANT, FEEDBACK, RoundObserver, feedback_age
from neurolocal.asynchrony.models import MAX_SENDS, ONE, Asynchrony
from neurolocal.errors import ConfigError


@dataclass(frozen=True)
class Injection:
    """The asynchrony a Ray run injects: the checked models and the seed of its draws."""
    spec: Asynchrony
    seed: int = 0

    @property
    def active(self) -> bool:
        """Anything to inject at all (else the actors post as they always did)."""
        spec = self.spec
        return (not spec.delay.is_zero or spec.lossy or spec.reorder
                or any(e.delay is not None and not e.delay.is_zero for e in spec.edges.values())
                or any(v.slow != 1.0 or v.pause is not None for v in spec.vertices.values()))

    def seconds(self, rounds: float) -> float:
        return rounds * self.spec.round_ms / 1000.0

    def summary(self) -> dict:
        return {**self.spec.summary(), "seed": self.seed}


def check_for_ray(spec: Asynchrony) -> None:
    """Refuse what Ray cannot inject: simulated compute times."""
    if spec.compute != ONE:
        raise ConfigError("on the ray engine an update takes its real compute time; use "
                          "slow: (a straggler) to slow a vertex down", field="asynchrony.compute")
    for name, timing in spec.vertices.items():
        if timing.compute is not None:
            raise ConfigError("on the ray engine an update takes its real compute time; use "
                              "slow: (a straggler) to slow a vertex down",
                              field=f"asynchrony.vertices.{name}.compute")


def injection_from_config(config, graph) -> Injection | None:
    """The Injection an EngineConfig describes for the Ray engine (None: nothing to
    inject): the topology's `asynchrony:` section < the side file < the flags."""
    from neurolocal.asynchrony.options import asynchrony_from_options, sim_seed

    if config.sim is None:
        return None
    spec = asynchrony_from_options(config.sim, graph)
    check_for_ray(spec)
    injection = Injection(spec, sim_seed(spec, config.seed))
    return injection if injection.active else None


# --- loss: the notice a receiver gets instead of a lost message ---------------------------


class Lost:
    """The payload of a lost message's notice: the shape of what was lost, no data."""
    __slots__ = ("skeleton",)

    def __init__(self, payload):
        if isinstance(payload, list):     # tied partials / new values: [(param, array), ...]
            self.skeleton = [(k, np.shape(v), np.asarray(v).dtype.str) for k, v in payload]
        else:
            self.skeleton = (np.shape(payload), np.asarray(payload).dtype.str)

    def zeros(self):
        if isinstance(self.skeleton, list):
            return [(k, np.zeros(shape, dtype=np.dtype(d))) for k, shape, d in self.skeleton]
        shape, d = self.skeleton
        return np.zeros(shape, dtype=np.dtype(d))


class Outbox:
    """The sending side of one actor: every message its shard posts goes through here.
    `send(destination shard, messages)` really posts them (one Ray call per group)."""

    def __init__(self, injection: Injection, index: int, send):
        self.injection = injection
        self.spec = injection.spec
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
            [int(injection.seed), int(index)])))
        self.send = send
        self._heap: list = []              # (release time, sequence, destination, message)
        self._sequence = 0
        self._last: dict = {}              # (src, dst) -> latest release on that edge
        self._timer = None
        self._timer_at = None
        self.counts: dict[int, list[int]] = {}   # batch -> [lost, retransmitted]

    def post(self, outgoing: dict) -> None:
        now = time.monotonic()
        for destination, messages in outgoing.items():
            for message in messages:
                self._schedule(destination, message, now)
        self._release()

    def _count(self, batch: int, which: int) -> None:
        self.counts.setdefault(batch, [0, 0])[which] += 1

    def _schedule(self, destination: int, message, now: float) -> None:
        spec, injection = self.spec, self.injection
        src, dst = message[3], message[4]
        depart = now
        p = spec.edge_drop(src, dst)
        if p > 0:
            sends = 1
            while self.rng.random() < p:
                if not spec.retransmit or sends >= MAX_SENDS:
                    # the payload never leaves (or retransmission gave up): a notice after
                    # the timeout
                    self._count(message[0], 0)
                    notice = message[:5] + (Lost(message[5]),) + message[6:]
                    self._push(depart + injection.seconds(spec.timeout), destination, notice)
                    return
                self._count(message[0], 1)
                sends += 1
                depart += injection.seconds(spec.timeout)
        model = spec.edge_delay(src, dst)
        release = depart if model.is_zero else \
            depart + injection.seconds(model.sample(self.rng, spec.round_ms))
        if not spec.reorder:
            key = (src, dst)
            release = max(release, self._last.get(key, release))
            self._last[key] = release
        self._push(release, destination, message)

    def _push(self, release: float, destination: int, message) -> None:
        heapq.heappush(self._heap, (release, self._sequence, destination, message))
        self._sequence += 1

    def _release(self) -> None:
        """Post every message whose time has come, in (release, sequence) order (one Ray
        call per run of messages to one destination); then wait for the next one."""
        now = time.monotonic()
        groups: list[tuple[int, list]] = []
        while self._heap and self._heap[0][0] <= now:
            _, _, destination, message = heapq.heappop(self._heap)
            if groups and groups[-1][0] == destination:
                groups[-1][1].append(message)
            else:
                groups.append((destination, [message]))
        for destination, messages in groups:
            self.send(destination, messages)
        if self._heap and (self._timer is None or self._heap[0][0] < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = self._heap[0][0]
            self._timer = asyncio.get_running_loop().call_later(
                max(0.0, self._timer_at - time.monotonic()), self._fire)

    def _fire(self) -> None:
        self._timer = self._timer_at = None
        self._release()

    def take_counts(self, batch: int) -> dict:
        lost, retransmitted = self.counts.pop(batch, (0, 0))
        self.counts = {b: c for b, c in self.counts.items() if b > batch}
        return {"messages_lost": lost, "messages_retransmitted": retransmitted}


class Pacer:
    """Straggler and pause of one actor: how long each shard step really takes."""

    def __init__(self, injection: Injection, names):
        timings = [injection.spec.vertex(n) for n in names]
        self.slow = max(t.slow for t in timings)
        self.pause = next((t.pause for t in timings if t.pause is not None), None)
        self.injection = injection
        self.start = time.monotonic()

    def begin_batch(self) -> None:
        self.start = time.monotonic()

    def paused_for(self) -> float:
        """Seconds until the actor may step again (0: now)."""
        if self.pause is None:
            return 0.0
        ms = self.injection.spec.round_ms
        t = (time.monotonic() - self.start) * 1000.0 / ms
        resume = self.pause.resume_time(t)
        return (resume - t) * ms / 1000.0 if resume > t else 0.0

    def step(self, call):
        """Run one shard step; a straggler then sleeps (K - 1) x its duration (blocking:
        the actor is really busy, as a K times slower machine would be)."""
        started = time.perf_counter()
        out = call()
        if self.slow > 1.0:
            time.sleep((self.slow - 1.0) * (time.perf_counter() - started))
        return out


class Receiver:
    """The receiving side of one actor: substitutes lost messages (journaling them)."""

    def __init__(self):
        self.held: dict = {}     # (kind, src, dst) -> (batch, tag, payload): last delivered

    def prepare(self, shard, messages, journal=None) -> list:
        current = None if shard.settings is None else shard.settings.batch
        out = []
        for message in messages:
            batch, kind, tag, src, dst, payload, t_send = message
            if isinstance(payload, Lost):
                held = self.held.get((kind, src, dst))
                same = held is not None and held[0] == batch
                message = (batch, kind, tag, src, dst,
                           held[2] if same else payload.zeros(), t_send)
                if journal is not None and (current is None or batch >= current):
                    journal.lost(batch, [kind, src, dst, tag, held[1] if same else None])
            else:
                self.held[(kind, src, dst)] = (batch, tag, payload)
            out.append(message)
        return out


class ActorJournal(RoundObserver):
    """One actor's replay journal stream (engines/journal.py): per batch, the reads of
    its hidden vertices, the stale drops and the lost messages it substituted. It hears
    the reads and drops from the round machine (`RoundObserver`): under staleness > 0
    every update of a hidden vertex reads one feedback message per child."""

    def __init__(self, path, writer: str, names):
        """`path` None: keep no stream, only the batch's oldest feedback (max age)."""
        from neurolocal.engines.journal import JournalStream

        self.stream = (None if path is None else
                       JournalStream(path, {"writer": writer, "vertices": list(names)}))
        self.entries: dict[int, dict] = {}
        self.max_age = 0

    def _entry(self, batch: int) -> dict:
        return self.entries.setdefault(batch, {"batch": batch, "reads": [], "stale": [],
                                               "lost": []})

    def begin(self, batch: int) -> None:
        self.max_age = 0
        self._entry(batch)

    def lost(self, batch: int, record: list) -> None:
        self._entry(batch)["lost"].append(record)

    def stale(self, record: list) -> None:
        self._entry(record[0])["stale"].append(record)

    # --- what the round machine tells (RoundObserver) --------------------------------------

    def read(self, shard, vertex, update, kind, src, tag) -> None:
        settings = shard.settings
        if (kind != FEEDBACK or tag == CONSTANT or settings.staleness == 0
                or shard.role(vertex) != "hidden"):
            return
        self._entry(settings.batch)["reads"].append([vertex, update, src, tag])
        self.max_age = max(self.max_age, feedback_age(update, tag))

    def dropped(self, shard, message, why) -> None:
        batch, kind, tag, src, dst = message[:5]
        self.stale([batch, src, dst, kind, tag])

    def flush(self) -> None:
        """Write every entry still open that holds anything (late stale drops)."""
        for b in sorted(self.entries):
            entry = self.entries.pop(b)
            if self.stream is not None and (entry["stale"] or entry["reads"] or entry["lost"]):
                self.stream.append(entry)

    def end(self, batch: int) -> None:
        """Write the batch's entry (and any older one still open)."""
        for b in sorted(b for b in self.entries if b <= batch):
            entry = self.entries.pop(b)
            if self.stream is not None:
                self.stream.append(entry)

    def close(self) -> None:
        for b in sorted(self.entries):
            entry = self.entries.pop(b)
            if self.stream is not None and (entry["stale"] or entry["reads"] or entry["lost"]):
                self.stream.append(entry)
        if self.stream is not None:
            self.stream.close()

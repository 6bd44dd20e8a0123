"""The simulated-time engine: a deterministic discrete-event transport over the round
machine (`neurolocal.engines.rounds`), in one process (docs/asynchrony.md).

Every vertex is its own `Shard`. A message leaves its sender when the sender's update
is done and arrives after a delay drawn from its edge's model; a vertex's update
takes its compute time (times its straggler factor, deferred while it pauses). The
transport gates each vertex with the machine's `horizon`: a vertex may begin update
u + 1 only once it has finished computing update u, and then uses what it holds at
that moment. No global rounds: with `staleness` S > 0 a vertex runs ahead on the
newest feedback it holds (at most S rounds old, the machine waits otherwise); with
S = 0 the machine waits for exactly the messages of the synchronous sweep, so the
numbers are the local engine's, bit for bit, and only the simulated time differs.

Loss: each message is lost with its edge's probability. With retransmission the
sender sends it again after `timeout` rounds (until it gets through: exact). Without,
the receiver notices after `timeout` rounds and goes on with the last payload it got
on that edge and kind in this batch (zeros of the lost message's shape if none);
such messages are counted as lost.

Everything random comes from one seeded generator, drawn in event order, and ties in
time are broken first scheduled, first served: a seed reproduces a run bit for bit.

Pipelining (`train_batches(..., pipeline=K)`, docs/asynchrony.md §7): K batches in
flight, each in its own lane (a shard per vertex), the lanes of a vertex sharing its
weights and optimizer; a vertex computes one update at a time, oldest batch first, and
applies its updates in batch order, so each is at most K - 1 updates stale.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from neurolocal.asynchrony.models import MAX_SENDS, Asynchrony
from neurolocal.engines.capabilities import CAPABILITIES
from neurolocal.engines.config import EngineConfig
from neurolocal.engines.engine import Engine, initial_params
from neurolocal.engines.rounds import (
    CONSTANT,
    FEEDBACK,
    Learning,
    RoundObserver,
    Shard,
    ShardLog,
    feedback_age,
    zeros_like_payload,
)
from neurolocal.engines.sim.events import EventQueue
from neurolocal.engines.staleness import StalenessLedger
from neurolocal.engines.transport import Batch, Outcome
from neurolocal.graph import Graph, Params
from neurolocal.traffic.log import TrafficRecorder

DELIVER, FREE, ENTER = 0, 1, 2
#: counters a relaxation reports (Relaxation.extras["report"]) and the engine totals
COUNTERS = ("messages", "lost", "retransmitted", "sim_time", "max_age")


class _Heard(RoundObserver):
    """What one call into a vertex's shard did, from the round machine's events (the
    transport reads it after every call instead of comparing the vertex's state)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.did_step = self.computed = self.forward_done = self.learned_now = False
        self.reads: list[tuple] = []

    def forward(self, shard, vertex):
        self.forward_done = True

    def stepped(self, shard, vertex, computed):
        self.did_step = True
        self.computed = self.computed or computed

    def read(self, shard, vertex, update, kind, src, tag):
        if kind == FEEDBACK and tag != CONSTANT:
            self.reads.append((vertex, update, src, tag))

    def learned(self, shard, vertex):
        self.learned_now = True


class SimTransport:
    """Every vertex its own shard, in simulated time. `stats`, a dict, receives running
    totals of COUNTERS over every batch (for sweeps); `totals` holds the same. With a
    `journal` (a list), every relaxation's reads and lost messages are kept for
    `neurolocal replay`, written to `replay_path` on close."""

    capabilities = CAPABILITIES["sim"]

    def __init__(self, graph: Graph, mode: str, staleness: int = 0,
                 asynchrony: Asynchrony | None = None, seed: int = 0,
                 recorder: TrafficRecorder | None = None, stats: dict | None = None,
                 ledger: StalenessLedger | None = None, schedule: str = "jacobi"):
        self.graph = graph
        self.mode, self.staleness, self.schedule = mode, int(staleness), schedule
        self.spec = asynchrony or Asynchrony()
        self.seed = int(seed)
        self.rng = np.random.Generator(np.random.PCG64(self.seed))
        self.recorder = recorder
        self.ledger = ledger or StalenessLedger()
        self.batches = 0
        self.clock = 0.0
        self.index = {n: i for i, n in enumerate(graph.order)}
        self._log = (ShardLog(recorder, [f"sim-{n}" for n in graph.order],
                              [None] * len(graph.order)) if recorder is not None else None)
        self._heard = _Heard()
        self.shards = self._new_lane()
        #: pipelining: lane k holds every vertex's shard for one batch in flight; lane 0 is
        #: `shards`, the others share its vertices' weights and optimizers
        self.lanes = [self.shards]
        self.pipeline = 1
        self.timing = [self.spec.vertex(n) for n in graph.order]
        self.is_input = [graph.is_input(n) for n in graph.order]
        self.has_params: list[bool] = [False] * len(graph.order)
        self.totals = dict.fromkeys(COUNTERS, 0)
        self.totals["batches"] = 0
        self.stats = stats
        #: replay journal (docs/asynchrony.md §6): per batch, which tag of each child every
        #: update read and which messages were lost; None: not kept
        self.journal: list | None = None
        self._journal = None
        self.replay_path = None        # where close() writes the journal (replay.py)
        self.replay_topology = None
        self._relaxed: list = []       # (parameters, Relaxation) of each journaled batch
        self._params: Params | None = None

    def _new_lane(self) -> list[Shard]:
        shards = [Shard(self.graph, (n,), self.index, self.mode, self._log, trace=True)
                  for n in self.graph.order]
        for shard in shards:
            shard.observer = self._heard
        return shards

    @property
    def rules(self):
        return {n: shard.rules[n] for shard, n in zip(self.shards, self.graph.order)}

    # --- the Transport protocol ------------------------------------------------------------

    def load(self, params: Params) -> None:
        self._params = params
        for shard in self.shards:
            shard.load_params(params)

    def restore_vertices(self, params: Params, optimizer, learning: Learning) -> None:
        self._params = params
        for shard in self.shards:
            shard.restore(params, optimizer, learning)
            shard.load_params(params)

    def run(self, batch: Batch) -> Outcome:
        """Every event of one batch, from its start at the transport's clock until nothing
        is in flight."""
        if batch.params is not None:   # relaxing reads the caller's parameters, by reference
            self.load(batch.params)
        settings = batch.settings.with_batch(self.batches)
        self._open(1, None)
        self._journal = ({"reads": [], "lost": []}
                         if self.journal is not None and settings.learning is None else None)
        self._admit(settings, batch, self.clock)
        while self._queue:
            self._event()
        if settings.batch not in self._finished:  # the machine's or this file's bug
            raise RuntimeError("the simulated run stopped before every vertex finished")
        results, report, flight = self._finished.pop(settings.batch)
        if self._journal is not None:
            self.journal.append({"batch": settings.batch, "settings": settings,
                                 "inputs": flight["inputs"], "target": flight["target"],
                                 **self._journal})
        return Outcome(results, settings.batch, report=report)

    def run_many(self, batches: Iterable[Batch], pipeline: int) -> Iterator[tuple[Batch, Outcome]]:
        """Up to `pipeline` batches in flight (docs/asynchrony.md §7). Batch b enters when a
        batch in flight leaves; every vertex works on one update at a time, oldest batch
        first, computes with the weights it holds at that moment and applies its updates
        in batch order, so an update is at most `pipeline - 1` of its own updates staler
        than the weights its batch's forward pass used. `pipeline = 1` is one batch
        after the other, bit for bit."""
        self._open(int(pipeline), iter(batches))
        for _ in range(int(pipeline)):
            if not self._enter(self.clock):
                break
        while True:
            while self._next not in self._finished and self._queue:
                self._event()
            if self._next not in self._finished:
                if self._next >= self.batches and self._source is None:
                    break             # every batch of the source is done
                # the machine's or this file's bug, never the user's
                raise RuntimeError("the simulated run stopped before every vertex finished")
            results, report, flight = self._finished.pop(self._next)
            self._next += 1
            yield flight["source"], Outcome(results, self._next - 1, report=report)

    def snapshot_parts(self) -> list[dict]:
        return [shard.snapshot() for shard in self.shards]

    def keep_snapshot(self, params, optimizer) -> None:
        """Nothing to keep: nothing here can be lost."""

    def completed(self, batch: Batch, outcome: Outcome, result) -> None:
        """A journaled relaxation keeps its parameters and result for the replay file."""
        if self.journal is not None and batch.settings.learning is None:
            params = {v: {k: np.array(a, copy=True) for k, a in ps.items()}
                      for v, ps in (batch.params or {}).items()}
            self._relaxed.append((params, result))

    def report(self) -> dict:
        return {"sim": {k: v for k, v in self.totals.items()}}

    def close(self) -> None:
        if self.replay_path is not None and self.journal:
            from neurolocal.engines.replay import write_journal

            write_journal(self.replay_path, self, self.replay_topology, self._relaxed)
        if self.recorder is not None:
            self.recorder.close()

    # --- the discrete-event machinery -------------------------------------------------------

    def _open(self, pipeline: int, source) -> None:
        """Fresh transport state for a run of batches with `pipeline` lanes (one set of
        per-vertex shards per batch in flight, sharing the vertices' weights and
        optimizers); the simulated clock goes on from where the last run ended."""
        n = len(self.graph.order)
        for lane in range(1, len(self.lanes)):   # restore() may have replaced lane 0's
            self._link(lane)
        self.pipeline = pipeline
        self._queue = EventQueue()
        self._busy = [self.clock] * n        # when each vertex's current update is done
        self._generation = [0] * n           # invalidates superseded FREE events
        self._free_lanes: list[int] = []     # lanes made and free (made when first needed)
        self._made = 0
        self._lane_of: dict[int, int] = {}   # batch in flight -> its lane
        self._flight: dict[int, dict] = {}   # batch in flight -> its transport state
        self._finished: dict[int, tuple] = {}
        self._source = source
        self._next = self.batches            # the next batch run_many yields
        self._applied = [self.batches - 1] * n   # the last batch each vertex learned from
        self.ledger.begin_run()              # updates each vertex applied in this run
        self.has_params = [shard.has_params(n) for shard, n in zip(self.shards, self.graph.order)]

    def _lane(self) -> int:
        """A free lane for a batch entering: one that finished, else a new one (lanes are
        made as batches enter, so a large K costs nothing until batches fill it)."""
        if self._free_lanes:
            return self._free_lanes.pop(0)
        lane, self._made = self._made, self._made + 1
        if lane == len(self.lanes):
            self.lanes.append(self._new_lane())
        self._link(lane)
        return lane

    def _link(self, lane: int) -> None:
        """One vertex, several batches: the lane's vertices use lane 0's weights and
        optimizers."""
        if lane:
            for shard, own in zip(self.lanes[lane], self.shards):
                shard.share_vertices(own)

    def _enter(self, t: float) -> bool:
        """The next batch of the source enters the graph at time t (False: none left)."""
        if self._source is None:
            return False
        batch = next(self._source, None)
        if batch is None:
            self._source = None
            return False
        self._admit(batch.settings.with_batch(self.batches), batch, t)
        return True

    def _admit(self, settings, source: Batch, t: float) -> None:
        graph = self.graph
        inputs, target = source.inputs, source.target
        batch = settings.batch
        lane = self._lane()
        self._lane_of[batch] = lane
        self._flight[batch] = {"entry": t, "done_at": [None] * len(graph.order),
                               "held": {}, "arrival": {}, "lost": 0, "retransmitted": 0,
                               "max_age": 0, "max_staleness": 0, "inputs": inputs,
                               "target": target, "source": source}
        self.batches = batch + 1
        for i, shard in enumerate(self.lanes[lane]):
            shard.horizon = 0
            shard.hold_learning = bool(self.has_params[i] and self._applied[i] < batch - 1)
            name = graph.order[i]
            self._call(lane, i, t, lambda shard=shard, name=name: shard.begin(
                settings, None, {name: inputs[name]} if name in inputs else {},
                target if name == graph.output else None), begin=True)

    def _event(self) -> None:
        t, event = self._queue.pop()
        if event[0] == DELIVER:
            self._deliver(t, event[1], event[2], event[3])
        elif event[0] == FREE:
            self._free(t, event[1], event[2])
        else:
            self._enter(t)

    def _complete(self, batch: int) -> None:
        """Every vertex is done with `batch`: its results, its report; its lane is free
        and (pipelining) the next batch enters when the last vertex is done."""
        flight = self._flight.pop(batch)
        lane = self._lane_of.pop(batch)
        finish = max(flight["done_at"])
        shards = self.lanes[lane]
        results = [shard.result() for shard in shards]
        report = {"sim_time": max(0.0, finish - self.clock),
                  "messages_lost": flight["lost"],
                  "messages_retransmitted": flight["retransmitted"],
                  "max_feedback_age": flight["max_age"]}
        if self.pipeline > 1:
            report.update(latency=finish - flight["entry"],
                          max_weight_staleness=flight["max_staleness"])
        messages = sum(r["counts"]["local_messages"] + r["counts"]["remote_messages"]
                       for r in results)
        self._count({"messages": messages, "lost": flight["lost"],
                     "retransmitted": flight["retransmitted"],
                     "sim_time": report["sim_time"], "max_age": flight["max_age"]})
        self.clock = max(self.clock, finish)
        self._finished[batch] = (results, report, flight)
        self._free_lanes.append(lane)
        if self._source is not None:
            self._queue.push(finish, (ENTER,))

    def _count(self, report: dict) -> None:
        for target in (self.totals, self.stats):
            if target is None:
                continue
            for key, value in report.items():
                if key == "max_age":
                    target[key] = max(target.get(key, 0), value)
                else:
                    target[key] = target.get(key, 0) + value
            target["batches"] = target.get("batches", 0) + 1

    # --- events --------------------------------------------------------------------------

    def _lanes_in_flight(self):
        """Lanes of the batches in flight, oldest batch first (the order a vertex serves them)."""
        return [self._lane_of[b] for b in self._flight]

    def _progress(self, lane: int, i: int) -> tuple[int | None, bool]:
        return self.lanes[lane][i].progress(self.graph.order[i])

    def _waiting(self, lane: int, i: int) -> bool:
        """Free to begin its next update, and waiting for messages to do so."""
        round_, finished = self._progress(lane, i)
        return (not finished and round_ is not None
                and self.lanes[lane][i].horizon == round_ + 1)

    def _call(self, lane: int, i: int, t: float, call, begin: bool = False) -> bool:
        """Call into vertex i's shard of `lane` at time t; account for what it did, as the
        round machine's events tell it. True if the vertex stepped (it is then busy for
        its compute time). `begin`: the call starts a batch (an update applied within it,
        T = 0, is not a pipelined update)."""
        heard = self._heard
        heard.reset()
        out = call()
        if begin:
            heard.learned_now = False
        return self._after(lane, i, t, out, heard)

    def _deliver(self, t: float, i: int, message, substitute: bool) -> None:
        batch = message[0]
        flight = self._flight.get(batch)
        if flight is None:           # its batch is over: a late, unneeded message
            return
        lane = self._lane_of[batch]
        if substitute:   # the receiver's timeout: the last payload it holds, else zeros
            _, kind, round_, src, dst, payload, t_send = message
            held = flight["held"].get((kind, src, dst))
            message = (batch, kind, round_, src, dst,
                       held[1] if held is not None else zeros_like_payload(payload), t_send)
            if self._journal is not None:
                self._journal["lost"].append(
                    [kind, src, dst, round_, None if held is None else held[0]])
        else:
            flight["held"][(message[1], message[3], message[4])] = (message[2], message[5])
        pause = self.timing[i].pause
        if pause is not None and self._busy[i] <= t:
            waiting = [k for k in self._lanes_in_flight() if self._waiting(k, i)]
            resume = pause.resume_time(t) if waiting else t
            if resume > t:                      # paused: no update begins before `resume`
                for k in waiting:
                    self.lanes[k][i].horizon = self._progress(k, i)[0]
                self._generation[i] += 1
                self._queue.push(resume, (FREE, i, self._generation[i]))
        shard = self.lanes[lane][i]
        self._call(lane, i, t, lambda: shard.deliver([message]))

    def _free(self, t: float, i: int, generation: int) -> None:
        if generation != self._generation[i]:
            return
        lanes = [k for k in self._lanes_in_flight()
                 if not self._progress(k, i)[1] and self._progress(k, i)[0] is not None]
        if not lanes:
            return
        pause = self.timing[i].pause
        if pause is not None:
            resume = pause.resume_time(t)
            if resume > t:
                self._queue.push(resume, (FREE, i, generation))
                return
        for lane in lanes:      # oldest batch first; the first that can step does
            shard = self.lanes[lane][i]
            shard.horizon = self._progress(lane, i)[0] + 1
            if self._call(lane, i, t, shard.resume):
                break

    def _after(self, lane: int, i: int, t: float, out: dict, heard: _Heard) -> bool:
        """After a call into vertex i's shard of `lane` at time t: if the vertex stepped,
        it is busy for its compute time (its other batches wait) and its messages leave
        when it is done; an update applied is recorded with its weight staleness."""
        shard = self.lanes[lane][i]
        batch = shard.settings.batch
        flight = self._flight[batch]
        stepped, forward, learned = heard.did_step, heard.forward_done, heard.learned_now
        reads = list(heard.reads)
        if stepped:
            begin = max(t, self._busy[i])
            done = begin + (self._compute_time(i) if heard.computed else 0.0)
            self._busy[i] = done
            self._generation[i] += 1
            if any(not self._progress(k, i)[1] for k in self._lanes_in_flight()):
                self._queue.push(done, (FREE, i, self._generation[i]))
            self._track_age(i, reads, flight)
            if forward:
                self.ledger.forward(batch, self.graph.order[i])
            for k in self._lanes_in_flight():    # one update at a time per vertex
                round_, finished = self._progress(k, i)
                if k != lane and round_ is not None and not finished:
                    self.lanes[k][i].horizon = round_
        depart = max(t, self._busy[i])
        complete = False
        if flight["done_at"][i] is None and shard.done:
            flight["done_at"][i] = depart
            complete = all(d is not None for d in flight["done_at"])
        for messages in out.values():
            for message in messages:
                self._post(message, depart)
        if learned and self.has_params[i]:
            self._applied_update(i, batch, t, flight)
        if complete:
            self._complete(batch)
        return stepped

    def _applied_update(self, i: int, batch: int, t: float, flight: dict) -> None:
        """Vertex i applied its update of `batch`: record its weight staleness (its own
        updates applied since its forward pass of the batch) and let its update of the
        next batch, held back until now, land."""
        staleness = self.ledger.learned(batch, self.graph.order[i])
        self._applied[i] = batch
        flight["max_staleness"] = max(flight["max_staleness"], staleness)
        after = self._lane_of.get(batch + 1)
        if after is not None:
            shard = self.lanes[after][i]
            shard.hold_learning = False
            if shard.learning_held:
                self._call(after, i, t, shard.resume)

    def _compute_time(self, i: int) -> float:
        if self.is_input[i]:
            return 0.0
        timing = self.timing[i]
        model = timing.compute or self.spec.compute
        value = model.sample(self.rng, self.spec.round_ms) if not model.kind == "constant" \
            else model.mean(self.spec.round_ms)
        return value * timing.slow

    def _track_age(self, i: int, reads: list, flight: dict) -> None:
        """The largest age of any feedback a hidden vertex used, and (journaling for
        replay) which tag of each child every update read."""
        if self.is_input[i] or self.staleness == 0:
            return   # S = 0: the machine reads exactly the synchronous sweep's messages
        for vertex, update, child, tag in reads:
            age = feedback_age(update, tag)
            if age > flight["max_age"]:
                flight["max_age"] = age
            if self._journal is not None:
                self._journal["reads"].append([vertex, update, child, tag])

    def _post(self, message, depart: float) -> None:
        spec, rng = self.spec, self.rng
        src, dst = message[3], message[4]
        flight = self._flight[message[0]]
        p = spec.edge_drop(src, dst)
        when = depart
        if p > 0:
            sends = 1
            while rng.random() < p:
                if not spec.retransmit or sends >= MAX_SENDS:   # given up: lost
                    flight["lost"] += 1
                    self._queue.push(when + spec.timeout,
                                     (DELIVER, self.index[dst], message, True))
                    return
                flight["retransmitted"] += 1
                sends += 1
                when += spec.timeout
        model = spec.edge_delay(src, dst)
        arrival = when if model.is_zero else when + model.sample(rng, spec.round_ms)
        if not spec.reorder:     # in order per edge within a batch
            key = (src, dst)
            arrival = max(arrival, flight["arrival"].get(key, arrival))
            flight["arrival"][key] = arrival
        self._queue.push(arrival, (DELIVER, self.index[dst], message, False))



class SimEngine(Engine):
    """Predictive coding in simulated time: the `Engine` over `SimTransport`. Parameters
    are shared by reference with the caller (as the local engine's). `stats`, a dict,
    receives running totals of COUNTERS over every batch (for sweeps); `totals` holds
    the same; `clock` is the simulated time reached."""

    def __init__(self, graph: Graph, params: Params | None = None, mode: str = "fixed",
                 schedule: str = "jacobi", staleness: int = 0,
                 asynchrony: Asynchrony | None = None, seed: int = 0,
                 recorder: TrafficRecorder | None = None, stats: dict | None = None,
                 config: EngineConfig | None = None):
        config = config or EngineConfig(engine="sim", mode=mode, schedule=schedule,
                                        staleness=staleness)
        Engine.check(config, graph, SimTransport)
        ledger = StalenessLedger()
        transport = SimTransport(graph, config.mode, config.staleness, asynchrony, seed,
                                 recorder, stats, ledger, config.resolved_schedule)
        super().__init__(config, graph, initial_params(graph, params, seed, "float64"),
                         transport, ledger)
        transport.load(self.params)

    @property
    def rules(self):
        return self.transport.rules

    @property
    def clock(self) -> float:
        return self.transport.clock

    @property
    def totals(self) -> dict:
        return self.transport.totals

    @property
    def shards(self) -> list[Shard]:
        return self.transport.shards


__all__ = ["COUNTERS", "SimEngine", "SimTransport"]

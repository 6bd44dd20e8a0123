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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from neurolocal.engines.base import (
    Relaxation,
    Step,
    check_relaxation_settings,
    default_iterations,
    prepare_batch,
)
from neurolocal.engines.rounds import (
    CONSTANT,
    FEEDBACK,
    Learning,
    RunSettings,
    Shard,
    ShardLog,
    check_schedule,
    merge_results,
    merge_snapshots,
    step_from_results,
)
from neurolocal.engines.sim.events import EventQueue
from neurolocal.engines.sim.models import Asynchrony
from neurolocal.graph import Graph, Params
from neurolocal.traffic.log import TrafficRecorder

DELIVER, FREE = 0, 1
#: counters a relaxation reports (Relaxation.extras["report"]) and the engine totals
COUNTERS = ("messages", "lost", "retransmitted", "sim_time", "max_age")


@dataclass
class SimStep(Step):
    """A training batch's scalars, plus the simulated run's counters (`report`: sim_time,
    messages_lost, messages_retransmitted, max_feedback_age; summed into metrics.json)."""
    report: dict = field(default_factory=dict)


def _zeros_like(payload):
    if isinstance(payload, list):         # tied partials / new values: [(param, array), ...]
        return [(key, np.zeros_like(value)) for key, value in payload]
    return np.zeros_like(payload)


class SimEngine:
    """Predictive coding in simulated time. Parameters are shared by reference with the
    caller (as the local engine's). `stats`, a dict, receives running totals of
    COUNTERS over every relaxation (for sweeps); `totals` holds the same."""

    def __init__(self, graph: Graph, params: Params | None = None, mode: str = "fixed",
                 schedule: str = "jacobi", staleness: int = 0,
                 asynchrony: Asynchrony | None = None, seed: int = 0,
                 recorder: TrafficRecorder | None = None, stats: dict | None = None):
        check_schedule(schedule, mode, staleness, graph)
        self.graph = graph
        self.params = params if params is not None else graph.init_params(seed)
        self.mode, self.schedule, self.staleness = mode, schedule, int(staleness)
        self.spec = asynchrony or Asynchrony()
        self.seed = int(seed)
        self.rng = np.random.Generator(np.random.PCG64(self.seed))
        self.recorder = recorder
        self.batches = 0
        self.learning: Learning | None = None
        self.clock = 0.0
        self.index = {n: i for i, n in enumerate(graph.order)}
        log = (ShardLog(recorder, [f"sim-{n}" for n in graph.order], [None] * len(graph.order))
               if recorder is not None else None)
        self.shards = [Shard(graph, (n,), self.index, mode, log, trace=True)
                       for n in graph.order]
        self.slots = [shard.slots[n] for shard, n in zip(self.shards, graph.order)]
        self.timing = [self.spec.vertex(n) for n in graph.order]
        self.is_input = [graph.is_input(n) for n in graph.order]
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
        for shard in self.shards:
            shard.load_params(self.params)

    @property
    def rules(self):
        return {slot.name: slot.rule for slot in self.slots}

    def __enter__(self) -> "SimEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.replay_path is not None and self.journal:
            from neurolocal.engines.sim.replay import write_journal

            write_journal(self.replay_path, self, self.replay_topology, self._relaxed)
        if self.recorder is not None:
            self.recorder.close()

    # --- one batch -----------------------------------------------------------------------

    def relax(self, inputs, target, eta: float = 1.0, iterations: int | None = None,
              read_inputs: bool = False,
              on_round: Callable[[int], None] | None = None) -> Relaxation:
        if on_round is not None:
            raise ValueError("the sim engine has no global rounds to watch (use the local "
                             "engine for on_round)")
        graph = self.graph
        iterations = default_iterations(graph, read_inputs) if iterations is None else iterations
        check_relaxation_settings(eta, iterations, self.mode)
        settings = RunSettings(self.batches, float(eta), int(iterations), self.staleness,
                               bool(read_inputs), self.schedule)
        for shard in self.shards:   # relaxing reads the caller's parameters, by reference
            shard.load_params(self.params)
        params = ({v: {k: np.array(a, copy=True) for k, a in ps.items()}
                   for v, ps in self.params.items()} if self.journal is not None else None)
        results, rounds, report = self._run(settings, inputs, target)
        dtheta, errors, input_feedback, energy, loss, prediction, counts = merge_results(
            graph, results, rounds, read_inputs)
        self._log_energy(energy)
        extras = {"report": report}
        if self.schedule == "backward-in-time":
            extras.update(schedule=self.schedule, rounds=rounds)
        relaxation = Relaxation(dtheta=dtheta, errors=errors, input_feedback=input_feedback,
                          energy=energy, loss=loss, prediction=prediction,
                          messages=counts["local_messages"] + counts["remote_messages"],
                          extras=extras)
        if self.journal is not None:
            self._relaxed.append((params, relaxation))
        return relaxation

    # --- training: the vertices own their parameters (docs/rounds.md, plasticity) -------

    def restore(self, params: Params, optimizer, learning: Learning) -> None:
        """As the local engine's: every vertex gets its parameters and optimizer state."""
        self.learning = learning
        self.params = params
        for shard in self.shards:
            shard.restore(params, optimizer, learning)
            shard.load_params(params)

    def train_step(self, inputs, target, eta: float = 1.0,
                   iterations: int | None = None) -> "SimStep":
        """One batch in simulated time in which every vertex applies its own update."""
        graph = self.graph
        iterations = default_iterations(graph) if iterations is None else iterations
        check_relaxation_settings(eta, iterations, self.mode)
        if self.learning is None:
            raise RuntimeError("train_step needs restore() first (parameters and optimizer)")
        settings = RunSettings(self.batches, float(eta), int(iterations), self.staleness,
                               False, self.schedule, self.learning)
        results, rounds, report = self._run(settings, inputs, target)
        step = step_from_results(graph, results, rounds)
        self._log_energy(step.energy)
        return SimStep(loss=step.loss, hits=step.hits, energy=step.energy,
                       messages=step.messages, report=report)

    def snapshot(self):
        return merge_snapshots(self.graph, [shard.snapshot() for shard in self.shards])

    def _log_energy(self, energy) -> None:
        if self.recorder is not None:
            self.recorder.record_energy(self.batches - 1, energy)
            self.recorder.flush()

    # --- the transport -------------------------------------------------------------------

    def _run(self, settings: RunSettings, inputs, target):
        """Every event of one batch, from its start at the engine's clock until nothing
        is in flight. Returns (shard results, rounds, report)."""
        graph = self.graph
        inputs, target = prepare_batch(graph, inputs, target)
        n = len(self.shards)
        start = self.clock
        self._queue = EventQueue()
        self._busy = [start] * n             # when each vertex's current update is done
        self._generation = [0] * n           # invalidates superseded FREE events
        self._seen = [0] * n                 # consumed entries already inspected
        self._done_at = [None] * n
        self._held: dict = {}                # (kind, src, dst) -> last payload delivered
        self._last_arrival: dict = {}        # (src, dst) -> latest arrival time (in order)
        self._batch = dict.fromkeys(("lost", "retransmitted", "max_age"), 0)
        self._journal = ({"reads": [], "lost": []}
                         if self.journal is not None and settings.learning is None else None)
        for i, shard in enumerate(self.shards):
            shard.horizon = 0
            name = graph.order[i]
            before = self._marker(i)
            out = shard.begin(settings, None, {name: inputs[name]} if name in inputs else {},
                              target if name == graph.output else None)
            self._after(i, start, out, before)
        while self._queue:
            t, event = self._queue.pop()
            if event[0] == DELIVER:
                self._deliver(t, event[1], event[2], event[3])
            else:
                self._free(t, event[1], event[2])
        if not all(shard.done for shard in self.shards):  # the machine's or this file's bug
            raise RuntimeError("the simulated run stopped before every vertex finished")
        rounds = self.shards[0].schedule.rounds
        results = [shard.result() for shard in self.shards]
        finish = max(self._done_at)
        self.clock = finish
        messages = sum(r["counts"]["local_messages"] + r["counts"]["remote_messages"]
                       for r in results)
        report = {"sim_time": finish - start, "messages_lost": self._batch["lost"],
                  "messages_retransmitted": self._batch["retransmitted"],
                  "max_feedback_age": self._batch["max_age"]}
        self._count({"messages": messages, "lost": self._batch["lost"],
                     "retransmitted": self._batch["retransmitted"], "sim_time": finish - start,
                     "max_age": self._batch["max_age"]})
        if self._journal is not None:
            self.journal.append({"batch": settings.batch, "settings": settings,
                                 "inputs": inputs, "target": target, **self._journal})
        self.batches += 1
        return results, rounds, report

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

    def _marker(self, i: int):
        slot = self.slots[i]
        return slot.round, slot.relaxed, slot.finished

    def _waiting(self, i: int) -> bool:
        """Free to begin its next update, and waiting for messages to do so."""
        slot = self.slots[i]
        return (not slot.finished and slot.round is not None
                and self.shards[i].horizon == slot.round + 1)

    def _deliver(self, t: float, i: int, message, substitute: bool) -> None:
        if substitute:   # the receiver's timeout: the last payload it holds, else zeros
            batch, kind, round_, src, dst, payload, t_send = message
            held = self._held.get((kind, src, dst))
            message = (batch, kind, round_, src, dst,
                       held[1] if held is not None else _zeros_like(payload), t_send)
            if self._journal is not None:
                self._journal["lost"].append(
                    [kind, src, dst, round_, None if held is None else held[0]])
        else:
            self._held[(message[1], message[3], message[4])] = (message[2], message[5])
        pause = self.timing[i].pause
        if pause is not None and self._busy[i] <= t and self._waiting(i):
            resume = pause.resume_time(t)
            if resume > t:                      # paused: no update begins before `resume`
                self.shards[i].horizon = self.slots[i].round
                self._generation[i] += 1
                self._queue.push(resume, (FREE, i, self._generation[i]))
        before = self._marker(i)
        out = self.shards[i].deliver([message])
        self._after(i, t, out, before)

    def _free(self, t: float, i: int, generation: int) -> None:
        if generation != self._generation[i]:
            return
        slot = self.slots[i]
        if slot.finished or slot.round is None:
            return
        pause = self.timing[i].pause
        if pause is not None:
            resume = pause.resume_time(t)
            if resume > t:
                self._queue.push(resume, (FREE, i, generation))
                return
        shard = self.shards[i]
        shard.horizon = slot.round + 1
        before = self._marker(i)
        out = shard.resume()
        self._after(i, t, out, before)

    def _after(self, i: int, t: float, out: dict, before) -> None:
        """After a call into shard i at time t: if its vertex stepped, it is busy for its
        compute time and its messages leave when it is done."""
        slot = self.slots[i]
        if self._marker(i) != before:
            begin = max(t, self._busy[i])
            done = begin + self._compute_time(i)
            self._busy[i] = done
            self._generation[i] += 1
            if not slot.finished:
                self._queue.push(done, (FREE, i, self._generation[i]))
            self._track_age(i)
        depart = max(t, self._busy[i])
        if self._done_at[i] is None and self.shards[i].done:
            self._done_at[i] = depart
        for messages in out.values():
            for message in messages:
                self._post(message, depart)

    def _compute_time(self, i: int) -> float:
        if self.is_input[i]:
            return 0.0
        timing = self.timing[i]
        model = timing.compute or self.spec.compute
        value = model.sample(self.rng, self.spec.round_ms) if not model.kind == "constant" \
            else model.mean(self.spec.round_ms)
        return value * timing.slow

    def _track_age(self, i: int) -> None:
        """The largest age (rounds behind update - 1) of any feedback a hidden vertex used,
        and (when journaling for replay) which tag of each child every update read."""
        slot = self.slots[i]
        entries = slot.consumed[self._seen[i]:]
        self._seen[i] = len(slot.consumed)
        if self.is_input[i] or slot.round is None or self.staleness == 0:
            return   # S = 0: the machine reads exactly the synchronous sweep's messages
        update = slot.round + (1 if slot.relaxed else 0)
        for kind, child, tag in entries:
            if kind == FEEDBACK and tag != CONSTANT:
                age = update - 1 - tag
                if age > self._batch["max_age"]:
                    self._batch["max_age"] = age
                if self._journal is not None:
                    self._journal["reads"].append([slot.name, update, child, tag])

    def _post(self, message, depart: float) -> None:
        spec, rng = self.spec, self.rng
        src, dst = message[3], message[4]
        p = spec.edge_drop(src, dst)
        when = depart
        if p > 0:
            while rng.random() < p:
                if not spec.retransmit:
                    self._batch["lost"] += 1
                    self._queue.push(when + spec.timeout,
                                     (DELIVER, self.index[dst], message, True))
                    return
                self._batch["retransmitted"] += 1
                when += spec.timeout
        model = spec.edge_delay(src, dst)
        arrival = when if model.is_zero else when + model.sample(rng, spec.round_ms)
        if not spec.reorder:
            key = (src, dst)
            arrival = max(arrival, self._last_arrival.get(key, arrival))
            self._last_arrival[key] = arrival
        self._queue.push(arrival, (DELIVER, self.index[dst], message, False))


__all__ = ["SimEngine", "SimStep", "COUNTERS"]

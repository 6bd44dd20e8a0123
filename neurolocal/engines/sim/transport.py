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

from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

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
from neurolocal.asynchrony.models import Asynchrony
from neurolocal.graph import Graph, Params
from neurolocal.traffic.log import TrafficRecorder

DELIVER, FREE, ENTER = 0, 1, 2
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
        self._log = log
        self.shards = [Shard(graph, (n,), self.index, mode, log, trace=True)
                       for n in graph.order]
        self.slots = [shard.slots[n] for shard, n in zip(self.shards, graph.order)]
        #: pipelining (train_batches): lane k holds every vertex's shard for one batch in
        #: flight; lane 0 is `shards`, the others share its vertices' weights and optimizers
        self.lanes = [self.shards]
        self._slots = [self.slots]
        self.pipeline = 1
        #: (batch, vertex, weight staleness) of every update applied while training, when
        #: a list (None: not kept); `staleness_histogram` counts them always
        self.weight_staleness: list | None = None
        self.staleness_histogram: dict[int, int] = {}
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
            from neurolocal.engines.replay import write_journal

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

    def train_batches(self, batches: Iterable, eta: float = 1.0,
                      iterations: int | None = None, pipeline: int = 1) -> Iterator["SimStep"]:
        """Train on `batches` ((inputs, target) pairs, read lazily) with up to `pipeline`
        batches in flight at once (docs/asynchrony.md §7); yields each batch's `SimStep`
        in batch order. Batch b enters when a batch in flight leaves; every vertex works
        on one update at a time, oldest batch first, computes with the weights it holds
        at that moment and applies its updates in batch order, so an update is at most
        `pipeline - 1` of its own updates staler than the weights its batch's forward
        pass used (`weight_staleness`, and `max_weight_staleness` in the report).
        `pipeline = 1` is `train_step` batch after batch, bit for bit."""
        graph = self.graph
        iterations = default_iterations(graph) if iterations is None else iterations
        check_relaxation_settings(eta, iterations, self.mode)
        check_pipeline(pipeline, self.schedule)
        if self.learning is None:
            raise RuntimeError("train_batches needs restore() first (parameters and optimizer)")

        def settings_of(batch: int) -> RunSettings:
            return RunSettings(batch, float(eta), int(iterations), self.staleness, False,
                               self.schedule, self.learning)

        self._open(int(pipeline), iter(batches), settings_of)
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
            results, rounds, report, _ = self._finished.pop(self._next)
            self._next += 1
            step = step_from_results(graph, results, rounds)
            if self.recorder is not None:
                self.recorder.record_energy(self._next - 1, step.energy)
                self.recorder.flush()
            yield SimStep(loss=step.loss, hits=step.hits, energy=step.energy,
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
        self._open(1, None, None)
        self._journal = ({"reads": [], "lost": []}
                         if self.journal is not None and settings.learning is None else None)
        self._admit(settings, inputs, target, self.clock)
        while self._queue:
            self._event()
        if settings.batch not in self._finished:  # the machine's or this file's bug
            raise RuntimeError("the simulated run stopped before every vertex finished")
        results, rounds, report, flight = self._finished.pop(settings.batch)
        if self._journal is not None:
            self.journal.append({"batch": settings.batch, "settings": settings,
                                 "inputs": flight["inputs"], "target": flight["target"],
                                 **self._journal})
        return results, rounds, report

    def _open(self, pipeline: int, source, settings_of) -> None:
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
        self._seen: dict[int, list] = {}     # lane -> consumed entries inspected per vertex
        self._free_lanes: list[int] = []     # lanes made and free (made when first needed)
        self._made = 0
        self._lane_of: dict[int, int] = {}   # batch in flight -> its lane
        self._flight: dict[int, dict] = {}   # batch in flight -> its transport state
        self._finished: dict[int, tuple] = {}
        self._source, self._settings_of = source, settings_of
        self._next = self.batches            # the next batch train_batches yields
        self._applied = [self.batches - 1] * n   # the last batch each vertex learned from
        self._updates = [0] * n              # updates each vertex applied in this run
        self._at_forward: dict[tuple, int] = {}
        self.has_params = [bool(slot.rule.params) for slot in self.slots]

    def _lane(self) -> int:
        """A free lane for a batch entering: one that finished, else a new one (lanes are
        made as batches enter, so a large K costs nothing until batches fill it)."""
        if self._free_lanes:
            return self._free_lanes.pop(0)
        lane, self._made = self._made, self._made + 1
        graph = self.graph
        if lane == len(self.lanes):
            shards = [Shard(graph, (n,), self.index, self.mode, self._log, trace=True)
                      for n in graph.order]
            self.lanes.append(shards)
            self._slots.append([shard.slots[n] for shard, n in zip(shards, graph.order)])
        self._link(lane)
        return lane

    def _link(self, lane: int) -> None:
        """One vertex, several batches: the lane's vertices use lane 0's weights and
        optimizers."""
        if lane:
            for slot, own in zip(self._slots[lane], self.slots):
                slot.rule.params = own.rule.params
                slot.optimizer = own.optimizer

    def _enter(self, t: float) -> bool:
        """The next batch of the source enters the graph at time t (False: none left)."""
        if self._source is None:
            return False
        item = next(self._source, None)
        if item is None:
            self._source = None
            return False
        inputs, target = item
        self._admit(self._settings_of(self.batches), inputs, target, t)
        return True

    def _admit(self, settings: RunSettings, inputs, target, t: float) -> None:
        graph = self.graph
        inputs, target = prepare_batch(graph, inputs, target)
        batch = settings.batch
        lane = self._lane()
        self._lane_of[batch] = lane
        self._flight[batch] = {"entry": t, "done_at": [None] * len(graph.order),
                               "held": {}, "arrival": {}, "lost": 0, "retransmitted": 0,
                               "max_age": 0, "max_staleness": 0, "inputs": inputs,
                               "target": target}
        self._seen[lane] = [0] * len(graph.order)
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
        self._finished[batch] = (results, shards[0].schedule.rounds, report, flight)
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

    def _waiting(self, lane: int, i: int) -> bool:
        """Free to begin its next update, and waiting for messages to do so."""
        slot = self._slots[lane][i]
        return (not slot.finished and slot.round is not None
                and self.lanes[lane][i].horizon == slot.round + 1)

    def _call(self, lane: int, i: int, t: float, call, begin: bool = False) -> bool:
        """Call into vertex i's shard of `lane` at time t; account for what it did.
        True if the vertex stepped (it is then busy for its compute time). `begin`: the
        call starts a batch, so the state to compare with is a fresh slot's (not the
        previous batch's: resetting is not an update and costs no compute time)."""
        slot = self._slots[lane][i]
        before = (slot.round, slot.relaxed, slot.finished)
        learned = slot.learned
        if begin:
            before, learned = (None, False, False), True
        out = call()
        return self._after(lane, i, t, out, before, learned)

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
                       held[1] if held is not None else _zeros_like(payload), t_send)
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
                    self.lanes[k][i].horizon = self._slots[k][i].round
                self._generation[i] += 1
                self._queue.push(resume, (FREE, i, self._generation[i]))
        shard = self.lanes[lane][i]
        self._call(lane, i, t, lambda: shard.deliver([message]))

    def _free(self, t: float, i: int, generation: int) -> None:
        if generation != self._generation[i]:
            return
        lanes = [k for k in self._lanes_in_flight()
                 if not self._slots[k][i].finished and self._slots[k][i].round is not None]
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
            shard.horizon = self._slots[lane][i].round + 1
            if self._call(lane, i, t, shard.resume):
                break

    def _after(self, lane: int, i: int, t: float, out: dict, before, learned: bool) -> bool:
        """After a call into vertex i's shard of `lane` at time t: if the vertex stepped,
        it is busy for its compute time (its other batches wait) and its messages leave
        when it is done; an update applied is recorded with its weight staleness."""
        shard, slot = self.lanes[lane][i], self._slots[lane][i]
        batch = shard.settings.batch
        flight = self._flight[batch]
        stepped = (slot.round, slot.relaxed, slot.finished) != before
        if stepped:
            begin = max(t, self._busy[i])
            done = begin + (self._compute_time(i) if self._works(lane, i, before) else 0.0)
            self._busy[i] = done
            self._generation[i] += 1
            if any(not self._slots[k][i].finished for k in self._lanes_in_flight()):
                self._queue.push(done, (FREE, i, self._generation[i]))
            self._track_age(lane, i, flight)
            if before[0] is None and slot.round is not None:   # its forward pass
                self._at_forward[(batch, i)] = self._updates[i]
            for k in self._lanes_in_flight():    # one update at a time per vertex
                other = self._slots[k][i]
                if k != lane and other.round is not None and not other.finished:
                    self.lanes[k][i].horizon = other.round
        depart = max(t, self._busy[i])
        complete = False
        if flight["done_at"][i] is None and shard.done:
            flight["done_at"][i] = depart
            complete = all(d is not None for d in flight["done_at"])
        for messages in out.values():
            for message in messages:
                self._post(message, depart)
        if slot.learned and not learned and self.has_params[i]:
            self._applied_update(lane, i, batch, t, flight)
        if complete:
            self._complete(batch)
        return stepped

    def _applied_update(self, lane: int, i: int, batch: int, t: float, flight: dict) -> None:
        """Vertex i applied its update of `batch`: record its weight staleness (its own
        updates applied since its forward pass of the batch) and let its update of the
        next batch, held back until now, land."""
        staleness = self._updates[i] - self._at_forward.pop((batch, i), self._updates[i])
        self._updates[i] += 1
        self._applied[i] = batch
        flight["max_staleness"] = max(flight["max_staleness"], staleness)
        self.staleness_histogram[staleness] = self.staleness_histogram.get(staleness, 0) + 1
        if self.weight_staleness is not None:
            self.weight_staleness.append((batch, self.graph.order[i], staleness))
        after = self._lane_of.get(batch + 1)
        if after is not None:
            shard = self.lanes[after][i]
            shard.hold_learning = False
            slot = self._slots[after][i]
            if slot.finished and not slot.learned:
                self._call(after, i, t, shard.resume)

    def _works(self, lane: int, i: int, before) -> bool:
        """Did the step just taken compute anything? The forward pass, a strict phase, a
        relaxing update and a vertex's last update when it has weights (its Hebbian
        update) do; an update the schedule idles through (event or backward-in-time: no
        child spoke, not its block) is bookkeeping and takes no simulated time."""
        slot = self._slots[lane][i]
        if before[0] is None or self.mode == "strict" or slot.rule.role != "hidden":
            return True
        schedule = self.lanes[lane][i].schedule
        update = slot.round
        return (schedule.relaxes(slot.name, update, slot.children)
                or (update == schedule.rounds and bool(slot.rule.params)))

    def _compute_time(self, i: int) -> float:
        if self.is_input[i]:
            return 0.0
        timing = self.timing[i]
        model = timing.compute or self.spec.compute
        value = model.sample(self.rng, self.spec.round_ms) if not model.kind == "constant" \
            else model.mean(self.spec.round_ms)
        return value * timing.slow

    def _track_age(self, lane: int, i: int, flight: dict) -> None:
        """The largest age (rounds behind update - 1) of any feedback a hidden vertex used,
        and (when journaling for replay) which tag of each child every update read."""
        slot = self._slots[lane][i]
        entries = slot.consumed[self._seen[lane][i]:]
        self._seen[lane][i] = len(slot.consumed)
        if self.is_input[i] or slot.round is None or self.staleness == 0:
            return   # S = 0: the machine reads exactly the synchronous sweep's messages
        update = slot.round + (1 if slot.relaxed else 0)
        for kind, child, tag in entries:
            if kind == FEEDBACK and tag != CONSTANT:
                age = update - 1 - tag
                if age > flight["max_age"]:
                    flight["max_age"] = age
                if self._journal is not None:
                    self._journal["reads"].append([slot.name, update, child, tag])

    def _post(self, message, depart: float) -> None:
        spec, rng = self.spec, self.rng
        src, dst = message[3], message[4]
        flight = self._flight[message[0]]
        p = spec.edge_drop(src, dst)
        when = depart
        if p > 0:
            while rng.random() < p:
                if not spec.retransmit:
                    flight["lost"] += 1
                    self._queue.push(when + spec.timeout,
                                     (DELIVER, self.index[dst], message, True))
                    return
                flight["retransmitted"] += 1
                when += spec.timeout
        model = spec.edge_delay(src, dst)
        arrival = when if model.is_zero else when + model.sample(rng, spec.round_ms)
        if not spec.reorder:     # in order per edge within a batch
            key = (src, dst)
            arrival = max(arrival, flight["arrival"].get(key, arrival))
            flight["arrival"][key] = arrival
        self._queue.push(arrival, (DELIVER, self.index[dst], message, False))


def check_pipeline(pipeline, schedule: str) -> None:
    """Refuse a pipeline the engine cannot run (ConfigError naming `pipeline`)."""
    from neurolocal.errors import ConfigError

    if isinstance(pipeline, bool) or not isinstance(pipeline, int) or pipeline < 1:
        raise ConfigError(f"expected a whole number >= 1, got {pipeline!r}", field="pipeline")
    if pipeline > 1 and schedule == "ipc":
        raise ConfigError("iPC moves every weight every round, so a batch has no single "
                          "update whose staleness a pipeline could bound; use --pipeline 1",
                          field="pipeline")


__all__ = ["COUNTERS", "SimEngine", "SimStep", "check_pipeline"]

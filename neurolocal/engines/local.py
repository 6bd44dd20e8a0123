"""The in-process engine: a transport over the round machine (`neurolocal.engines.rounds`).

All vertices live in this process, in one shard (or `shards` of them); messages
between shards are delivered first in, first out. The rounds themselves — who
speaks when, what each vertex sums, strict value exchanges, tied partials, dL/dx —
are the machine's (docs/rounds.md); this file only moves messages and assembles
the `Relaxation`.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from typing import Callable, Mapping

from neurolocal.engines.base import (
    Relaxation,
    Step,
    check_relaxation_settings,
    default_iterations,
    prepare_batch,
)
from neurolocal.engines.rounds import (
    Learning,
    RunSettings,
    Shard,
    ShardLog,
    check_schedule,
    merge_results,
    merge_snapshots,
    step_from_results,
)
from neurolocal.dtypes import cast_params, check_dtype
from neurolocal.graph import Graph, Params
from neurolocal.tied import exchange_tied_partials  # noqa: F401  (re-exported)
from neurolocal.traffic.log import TrafficRecorder

SCHEDULES = ("jacobi", "event", "backward-in-time", "ipc")


def _next_round(shard: Shard):
    """One more round for every vertex of the shard (a pipelining tick)."""
    shard.horizon += 1
    return shard.resume()


def split(graph: Graph, shards: int) -> list[tuple[str, ...]]:
    """`shards` runs of consecutive vertices in topological order."""
    n = len(graph.order)
    shards = max(1, min(int(shards), n))
    size = -(-n // shards)
    return [graph.order[i:i + size] for i in range(0, n, size)]


class LocalEngine:
    """Runs predictive coding on a graph in one process. Parameters are shared by
    reference with the caller, so an optimizer updating them in place is seen here.

    Schedules (docs/rounds.md): jacobi, event (the same numbers as jacobi, bit for
    bit, with about one message per path length at eta = 1), backward-in-time (the
    paper's RNN/LSTM schedule, `iterations` rounds per time step), ipc (strict
    mode: a weight step every round)."""

    def __init__(self, graph: Graph, params: Params | None = None, mode: str = "fixed",
                 seed: int = 0, recorder: TrafficRecorder | None = None,
                 schedule: str = "jacobi", shards: int = 1, dtype: str = "float64"):
        check_schedule(schedule, mode, 0, graph)
        self.graph = graph
        #: float64 parameters are the caller's, by reference; float32 ones the engine's own
        self.dtype = check_dtype(dtype)
        self.params = cast_params(params if params is not None else graph.init_params(seed),
                                  dtype)
        self.mode = mode
        self.schedule = schedule
        self.recorder = recorder
        self.batches = 0
        self.learning: Learning | None = None
        groups = split(graph, shards)
        owners = {n: i for i, names in enumerate(groups) for n in names}
        log = (ShardLog(recorder, ["local"] * len(groups), [None] * len(groups))
               if recorder is not None else None)
        self.shards = [Shard(graph, names, owners, mode, log) for names in groups]
        for shard in self.shards:
            shard.load_params(self.params)
        #: pipelining (train_batches): lane 0 is `shards`; weight staleness of every update
        #: applied, as (batch, vertex, staleness) when a list, and counted always
        self._lane_shards = [self.shards]
        self.weight_staleness: list | None = None
        self.staleness_histogram: dict[int, int] = {}

    @property
    def rules(self):
        """Every vertex's rule, by name (read-only use: watching a relaxation)."""
        return {n: shard.slots[n].rule for shard in self.shards for n in shard.names}

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()

    def relax(self, inputs, target, eta: float = 1.0, iterations: int | None = None,
              read_inputs: bool = False,
              on_round: Callable[[int], None] | None = None) -> Relaxation:
        """`on_round(t)` is called after the forward pass (t = 0) and after each round t,
        while the rules hold that round's errors (e.g. to watch dtheta converge): the
        transport then holds every vertex at round t (`Shard.horizon`) before it goes on."""
        graph = self.graph
        iterations = default_iterations(graph, read_inputs) if iterations is None else iterations
        check_relaxation_settings(eta, iterations, self.mode)
        settings = RunSettings(self.batches, float(eta), int(iterations), 0, bool(read_inputs),
                               self.schedule, dtype=self.dtype)
        for shard in self.shards:   # relaxing reads the caller's parameters, by reference
            shard.load_params(self.params)
        results, rounds = self._run(settings, inputs, target, on_round)
        dtheta, errors, input_feedback, energy, loss, prediction, counts = merge_results(
            graph, results, rounds, read_inputs)
        self._log_energy(energy)
        extras = ({"schedule": self.schedule, "rounds": rounds}
                  if self.schedule == "backward-in-time" else {})
        return Relaxation(dtheta=dtheta, errors=errors, input_feedback=input_feedback,
                          energy=energy, loss=loss, prediction=prediction,
                          messages=counts["local_messages"] + counts["remote_messages"],
                          extras=extras)

    # --- training: the vertices own their parameters (docs/rounds.md, plasticity) -------

    def restore(self, params: Params, optimizer: Mapping[str, np.ndarray] | None,
                learning: Learning) -> None:
        """Give every vertex its parameters and optimizer state (a snapshot, e.g. from a
        checkpoint); the vertices then train them themselves (`train_step`). The
        vertices work on these very arrays, so `params` stays current in place."""
        self.learning = learning
        self.params = params = cast_params(params, self.dtype)
        for shard in self.shards:
            shard.restore(params, optimizer, learning)
            shard.load_params(params)

    def train_step(self, inputs, target, eta: float = 1.0,
                   iterations: int | None = None) -> Step:
        """One batch in which every vertex applies its own update; scalars come back."""
        graph = self.graph
        iterations = default_iterations(graph) if iterations is None else iterations
        check_relaxation_settings(eta, iterations, self.mode)
        if self.learning is None:
            raise RuntimeError("train_step needs restore() first (parameters and optimizer)")
        settings = RunSettings(self.batches, float(eta), int(iterations), 0, False,
                               self.schedule, self.learning, dtype=self.dtype)
        results, rounds = self._run(settings, inputs, target, None)
        step = step_from_results(graph, results, rounds)
        self._log_energy(step.energy)
        return step

    def train_batches(self, batches, eta: float = 1.0, iterations: int | None = None,
                      pipeline: int = 1):
        """Train on `batches` ((inputs, target) pairs, read lazily) with up to `pipeline`
        batches in flight, interleaved deterministically (docs/asynchrony.md §7): each
        batch in flight has its own lane of shards (sharing the vertices' weights and
        optimizers); a batch's forward pass runs when it enters, then every tick moves
        every batch in flight on by one round, oldest first; a batch enters when the
        oldest leaves. Yields each batch's `Step` in order. `pipeline = 1` is
        `train_step` batch after batch."""
        if pipeline == 1:
            for inputs, target in batches:
                yield self.train_step(inputs, target, eta=eta, iterations=iterations)
            return
        graph = self.graph
        iterations = default_iterations(graph) if iterations is None else iterations
        check_relaxation_settings(eta, iterations, self.mode)
        if self.learning is None:
            raise RuntimeError("train_batches needs restore() first (parameters and optimizer)")
        lanes = self._lane_shards
        for lane in range(1, len(lanes)):   # restore() may have replaced lane 0's
            self._link(lane)
        names = [n for shard in self.shards for n in shard.names]
        updates = dict.fromkeys(names, 0)      # updates each vertex applied in this run
        at_forward: dict[tuple, int] = {}
        source, free, flight, made = iter(batches), [], [], [0]

        def step(lane: int, batch: int, call, fresh: bool = False) -> None:
            """Run `call` on every shard of the lane and deliver until quiet; record the
            weight staleness of every update applied (`fresh`: the call begins the batch,
            so compare with a reset slot, not the lane's previous batch)."""
            slots = [(shard, shard.slots[n]) for shard in lanes[lane] for n in shard.names]
            before = [((None, False) if fresh else (slot.round, slot.learned))
                      for _, slot in slots]
            queue = deque()
            for shard in lanes[lane]:
                queue.extend(call(shard).items())
            while queue:
                destination, messages = queue.popleft()
                queue.extend(lanes[lane][destination].deliver(messages).items())
            for (shard, slot), (round_, learned) in zip(slots, before):
                if round_ is None and slot.round is not None:
                    at_forward[(batch, slot.name)] = updates[slot.name]
                if slot.learned and not learned and slot.rule.params:
                    staleness = updates[slot.name] - at_forward.pop((batch, slot.name))
                    updates[slot.name] += 1
                    self.staleness_histogram[staleness] = \
                        self.staleness_histogram.get(staleness, 0) + 1
                    if self.weight_staleness is not None:
                        self.weight_staleness.append((batch, slot.name, staleness))

        def enter() -> bool:
            item = next(source, None)
            if item is None:
                return False
            inputs, target = prepare_batch(graph, *item, dtype=self.dtype)
            if free:
                lane = free.pop(0)
            else:                       # lanes are made as batches enter
                lane, made[0] = made[0], made[0] + 1
                self._make_lane(lane)
            batch = self.batches
            self.batches += 1
            settings = RunSettings(batch, float(eta), int(iterations), 0, False,
                                   self.schedule, self.learning, dtype=self.dtype)

            def begin(shard):
                shard.horizon = 0
                return shard.begin(settings, None,
                                   {n: inputs[n] for n in shard.names if n in inputs},
                                   target if graph.output in shard.names else None)

            step(lane, batch, begin, fresh=True)
            flight.append((batch, lane))
            return True

        while len(flight) < pipeline and enter():
            pass
        while flight:
            for batch, lane in flight:       # one tick: one round each, oldest first
                step(lane, batch, _next_round)
            while flight and all(shard.done for shard in lanes[flight[0][1]]):
                batch, lane = flight.pop(0)
                result = step_from_results(graph, [s.result() for s in lanes[lane]],
                                           lanes[lane][0].schedule.rounds)
                if self.recorder is not None:
                    self.recorder.record_energy(batch, result.energy)
                    self.recorder.flush()
                free.append(lane)
                enter()
                yield result

    def _make_lane(self, lane: int) -> None:
        """Lane `lane` exists (a set of shards like `shards`) and shares lane 0's weights."""
        if lane == len(self._lane_shards):
            log = self.shards[0].log
            self._lane_shards.append([Shard(self.graph, shard.names, shard.shard_of,
                                            self.mode, log) for shard in self.shards])
        self._link(lane)

    def _link(self, lane: int) -> None:
        """One vertex, several batches: the lane's vertices use lane 0's weights and
        optimizers."""
        if lane:
            for shard, own in zip(self._lane_shards[lane], self.shards):
                for n in shard.names:
                    shard.slots[n].rule.params = own.slots[n].rule.params
                    shard.slots[n].optimizer = own.slots[n].optimizer

    def snapshot(self) -> tuple[Params, dict]:
        """(parameters, optimizer state arrays) gathered from the vertices, in the
        checkpoint's layout (`Optimizer.state_arrays`)."""
        parts = [shard.snapshot() for shard in self.shards]
        return merge_snapshots(self.graph, parts)

    # --- the transport -------------------------------------------------------------------

    def _run(self, settings: RunSettings, inputs, target, on_round):
        graph = self.graph
        inputs, target = prepare_batch(graph, inputs, target, self.dtype)
        queue: deque = deque()
        watching = on_round is not None
        for shard in self.shards:
            shard.horizon = 0 if watching else None
            data = {n: inputs[n] for n in shard.names if n in inputs}
            queue.extend(shard.begin(settings, None, data,
                                     target if graph.output in shard.names else None).items())
        self._drain(queue)
        rounds = self.shards[0].schedule.rounds
        if watching:
            on_round(0)
            for t in range(1, rounds + 1):
                for shard in self.shards:
                    shard.horizon = t
                    queue.extend(shard.resume().items())
                self._drain(queue)
                on_round(t)
            for shard in self.shards:
                shard.horizon = None
                queue.extend(shard.resume().items())
            self._drain(queue)
        if not all(shard.done for shard in self.shards):  # the machine's bug, never the user's
            raise RuntimeError("the round machine stopped before every vertex finished")
        self.batches += 1
        return [shard.result() for shard in self.shards], rounds

    def _log_energy(self, energy) -> None:
        if self.recorder is not None:
            self.recorder.record_energy(self.batches - 1, energy)
            self.recorder.flush()

    def _drain(self, queue: deque) -> None:
        shards = self.shards
        while queue:
            destination, messages = queue.popleft()
            queue.extend(shards[destination].deliver(messages).items())

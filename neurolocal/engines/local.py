"""The in-process engine: a transport over the round machine (`neurolocal.engines.rounds`).

All vertices live in this process, in one shard (or `shards` of them); messages
between shards are delivered first in, first out. The rounds themselves — who
speaks when, what each vertex sums, strict value exchanges, tied partials, dL/dx —
are the machine's (docs/rounds.md); this file only moves messages and assembles
the `Relaxation`.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from neurolocal.engines.base import (
    Relaxation,
    check_relaxation_settings,
    default_iterations,
    prepare_batch,
)
from neurolocal.engines.rounds import (
    RunSettings,
    Shard,
    ShardLog,
    check_schedule,
    merge_results,
)
from neurolocal.graph import Graph, Params
from neurolocal.tied import exchange_tied_partials  # noqa: F401  (re-exported)
from neurolocal.traffic.log import TrafficRecorder

SCHEDULES = ("jacobi", "event", "backward-in-time", "ipc")


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
                 schedule: str = "jacobi", shards: int = 1):
        check_schedule(schedule, mode, 0, graph)
        self.graph = graph
        self.params = params if params is not None else graph.init_params(seed)
        self.mode = mode
        self.schedule = schedule
        self.recorder = recorder
        self.batches = 0
        groups = split(graph, shards)
        owners = {n: i for i, names in enumerate(groups) for n in names}
        log = (ShardLog(recorder, ["local"] * len(groups), [None] * len(groups))
               if recorder is not None else None)
        self.shards = [Shard(graph, names, owners, mode, log) for names in groups]
        for shard in self.shards:
            shard.load_params(self.params)

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
        inputs, target = prepare_batch(graph, inputs, target)
        settings = RunSettings(self.batches, float(eta), int(iterations), 0, bool(read_inputs),
                               self.schedule)
        queue: deque = deque()
        watching = on_round is not None
        for shard in self.shards:
            shard.horizon = 0 if watching else None
            data = {n: inputs[n] for n in shard.names if n in inputs}
            shard.load_params(self.params)
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
        dtheta, errors, input_feedback, energy, loss, prediction, counts = merge_results(
            graph, [shard.result() for shard in self.shards], rounds, read_inputs)
        if self.recorder is not None:
            self.recorder.record_energy(self.batches, energy)
            self.recorder.flush()
        self.batches += 1
        extras = ({"schedule": self.schedule, "rounds": rounds}
                  if self.schedule == "backward-in-time" else {})
        return Relaxation(dtheta=dtheta, errors=errors, input_feedback=input_feedback,
                          energy=energy, loss=loss, prediction=prediction,
                          messages=counts["local_messages"] + counts["remote_messages"],
                          extras=extras)

    def _drain(self, queue: deque) -> None:
        shards = self.shards
        while queue:
            destination, messages = queue.popleft()
            queue.extend(shards[destination].deliver(messages).items())

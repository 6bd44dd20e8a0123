"""The in-process transport: every shard in this process, messages delivered first in,
first out (docs/rounds.md §6).

All vertices live in one shard (or `shards` of them, runs of the topological order).
The rounds — who speaks when, what each vertex sums, strict value exchanges, tied
partials, dL/dx — are the round machine's (`engines/rounds.py`); the API is the one
`Engine`'s (`engines/engine.py`). This file only delivers messages: until quiet for a
batch; round by round when a caller watches the rounds (`on_round`, the shards'
`horizon`); and interleaved round by round for batches in flight (`run_many` with a
pipeline K > 1: a lane of shards per batch, sharing the vertices' weights and
optimizers; docs/asynchrony.md §7).
"""

from __future__ import annotations

from collections import deque
from typing import Iterable, Iterator

from neurolocal.engines.capabilities import CAPABILITIES
from neurolocal.engines.config import EngineConfig
from neurolocal.engines.engine import Engine, initial_params
from neurolocal.engines.rounds import Learning, Shard, ShardLog
from neurolocal.engines.staleness import LedgerObserver as _Ledgered, StalenessLedger
from neurolocal.engines.transport import Batch, Outcome
from neurolocal.bulk import paused_gc
from neurolocal.graph import Graph, Params
from neurolocal.tied import exchange_tied_partials  # noqa: F401  (re-exported)
from neurolocal.traffic.log import TrafficRecorder


def split(graph: Graph, shards: int) -> list[tuple[str, ...]]:
    """`shards` runs of consecutive vertices in topological order."""
    n = len(graph.order)
    shards = max(1, min(int(shards), n))
    size = -(-n // shards)
    return [graph.order[i:i + size] for i in range(0, n, size)]


class ShardsInProcess:
    """What the in-process transports (this one, threads.py's) share: their shards are
    objects of this process, so parameters and optimizer state reach them by reference."""

    shards: list

    def load(self, params: Params) -> None:
        for shard in self.shards:
            shard.load_params(params)

    def restore_vertices(self, params: Params, optimizer, learning: Learning) -> None:
        """Every vertex gets its optimizer state and works on `params` itself (in place)."""
        for shard in self.shards:
            shard.restore(params, optimizer, learning)
            shard.load_params(params)


class LocalTransport(ShardsInProcess):
    """Shards in this process. `shards`: how many (runs of the topological order)."""

    capabilities = CAPABILITIES["local"]

    def __init__(self, graph: Graph, mode: str, recorder: TrafficRecorder | None = None,
                 shards: int = 1, ledger: StalenessLedger | None = None, plan: bool = True):
        self.graph = graph
        self.mode = mode
        self.recorder = recorder
        self.ledger = ledger or StalenessLedger()
        self.batches = 0
        groups = split(graph, shards)
        owners = {n: i for i, names in enumerate(groups) for n in names}
        self._log = (ShardLog(recorder, ["local"] * len(groups), [None] * len(groups))
                     if recorder is not None else None)
        self.shards = [Shard(graph, names, owners, mode, self._log) for names in groups]
        for shard in self.shards:   # EngineConfig.rounds: "message" turns the plan off
            shard.use_plan = plan
        #: pipelining: lane 0 is `shards`; the others are made as batches enter
        self.lanes = [self.shards]

    # --- the Transport protocol ------------------------------------------------------------

    def run(self, batch: Batch) -> Outcome:
        with paused_gc():   # a batch builds many objects that live until it ends
            return self._run(batch)

    def _run(self, batch: Batch) -> Outcome:
        if batch.params is not None:   # relaxing reads the caller's parameters, by reference
            self.load(batch.params)
        settings = batch.settings.with_batch(self.batches)
        self.batches += 1
        watching = batch.on_round is not None
        queue: deque = deque()
        for shard in self.shards:
            shard.horizon = 0 if watching else None
            queue.extend(self._begin(shard, settings, batch).items())
        self._drain(self.shards, queue)
        if watching:
            rounds = self.shards[0].schedule.rounds
            batch.on_round(0)
            for t in range(1, rounds + 1):
                for shard in self.shards:
                    shard.horizon = t
                    queue.extend(shard.resume().items())
                self._drain(self.shards, queue)
                batch.on_round(t)
            for shard in self.shards:
                shard.horizon = None
                queue.extend(shard.resume().items())
            self._drain(self.shards, queue)
        if not all(shard.done for shard in self.shards):  # the machine's bug, never the user's
            raise RuntimeError("the round machine stopped before every vertex finished")
        return Outcome([shard.result() for shard in self.shards], settings.batch)

    def run_many(self, batches: Iterable[Batch], pipeline: int) -> Iterator[tuple[Batch, Outcome]]:
        """K = `pipeline` batches in flight, interleaved deterministically: a batch's
        forward pass runs when it enters, then every tick moves every batch in flight on
        by one round, oldest first; a batch enters when the oldest leaves. Each lane's
        vertices use lane 0's weights and optimizers, and every update applied is
        counted in the staleness ledger. K = 1: one batch after the other."""
        if pipeline == 1:
            for batch in batches:
                yield batch, self.run(batch)
            return
        lanes = self.lanes
        for lane in range(1, len(lanes)):   # restore() may have replaced lane 0's
            self._link(lane)
        observer = _Ledgered(self.ledger)
        for lane in lanes:
            for shard in lane:
                shard.observer = observer
        self.ledger.begin_run()
        source, free, flight, made = iter(batches), [], [], [0]

        def step(lane: int, call) -> None:
            """`call` on every shard of the lane, then deliver until quiet."""
            with paused_gc():
                queue = deque()
                for shard in lanes[lane]:
                    queue.extend(call(shard).items())
                self._drain(lanes[lane], queue)

        def enter() -> bool:
            batch = next(source, None)
            if batch is None:
                return False
            if free:
                lane = free.pop(0)
            else:                       # lanes are made as batches enter
                lane, made[0] = made[0], made[0] + 1
                self._make_lane(lane, observer)
            settings = batch.settings.with_batch(self.batches)
            self.batches += 1

            def begin(shard):
                shard.horizon = 0
                return self._begin(shard, settings, batch)

            step(lane, begin)
            flight.append((batch, settings.batch, lane))
            return True

        try:
            while len(flight) < pipeline and enter():
                pass
            while flight:
                for _, _, lane in flight:       # one tick: one round each, oldest first
                    step(lane, _next_round)
                while flight and all(shard.done for shard in lanes[flight[0][2]]):
                    batch, number, lane = flight.pop(0)
                    outcome = Outcome([s.result() for s in lanes[lane]], number)
                    free.append(lane)
                    enter()
                    yield batch, outcome
        finally:
            for lane in lanes:
                for shard in lane:
                    shard.observer = None

    def snapshot_parts(self) -> list[dict]:
        return [shard.snapshot() for shard in self.shards]

    def keep_snapshot(self, params, optimizer) -> None:
        """Nothing to keep: nothing here can be lost."""

    def completed(self, batch, outcome, result) -> None:
        """No journal."""

    def report(self) -> dict:
        return {"shards": [list(shard.names) for shard in self.shards]}

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()

    # --- delivery --------------------------------------------------------------------------

    @property
    def rules(self):
        return {n: rule for shard in self.shards for n, rule in shard.rules.items()}

    def _begin(self, shard: Shard, settings, batch: Batch):
        return shard.begin(settings, None,
                           {n: batch.inputs[n] for n in shard.names if n in batch.inputs},
                           batch.target if self.graph.output in shard.names else None)

    @staticmethod
    def _drain(shards: list[Shard], queue: deque) -> None:
        while queue:
            destination, messages = queue.popleft()
            queue.extend(shards[destination].deliver(messages).items())

    def _make_lane(self, lane: int, observer) -> None:
        """Lane `lane` exists (a set of shards like `shards`) and shares lane 0's weights."""
        if lane == len(self.lanes):
            self.lanes.append([Shard(self.graph, shard.names, shard.shard_of, self.mode,
                                     self._log) for shard in self.shards])
            for new, own in zip(self.lanes[lane], self.shards):   # the same path as lane 0
                new.use_plan, new.group_vertices = own.use_plan, own.group_vertices
        for shard in self.lanes[lane]:
            shard.observer = observer
        self._link(lane)

    def _link(self, lane: int) -> None:
        if lane:
            for shard, own in zip(self.lanes[lane], self.shards):
                shard.share_vertices(own)


def _next_round(shard: Shard):
    """One more round for every vertex of the shard (a pipelining tick)."""
    shard.horizon += 1
    return shard.resume()


class InProcessEngine(Engine):
    """The `Engine` over a transport whose shards live in this process (`transport_class`:
    local, threads), built from the same keyword arguments."""

    transport_class: type
    engine_name: str

    def __init__(self, graph: Graph, params: Params | None, mode: str, seed: int,
                 recorder: TrafficRecorder | None, schedule: str, shards, dtype: str,
                 config: EngineConfig | None):
        config = config or EngineConfig(engine=self.engine_name, mode=mode, schedule=schedule,
                                        dtype=dtype)
        Engine.check(config, graph, self.transport_class)
        ledger = StalenessLedger()
        transport = self.transport_class(graph, config.mode, recorder, shards, ledger,
                                         plan=config.rounds != "message")
        super().__init__(config, graph, initial_params(graph, params, seed, config.dtype),
                         transport, ledger)
        transport.load(self.params)

    @property
    def shards(self) -> list[Shard]:
        return self.transport.shards


class LocalEngine(InProcessEngine):
    """Predictive coding on a graph in one process: the `Engine` over `LocalTransport`.
    Float64 parameters are shared by reference with the caller, so an optimizer updating
    them in place is seen here.

    Schedules (docs/rounds.md): jacobi, event (the same numbers as jacobi, bit for
    bit, with about one message per path length at eta = 1), backward-in-time (the
    paper's RNN/LSTM schedule, `iterations` rounds per time step), ipc (strict
    mode: a weight step every round)."""

    transport_class = LocalTransport
    engine_name = "local"

    def __init__(self, graph: Graph, params: Params | None = None, mode: str = "fixed",
                 seed: int = 0, recorder: TrafficRecorder | None = None,
                 schedule: str = "jacobi", shards: int = 1, dtype: str = "float64",
                 config: EngineConfig | None = None):
        super().__init__(graph, params, mode, seed, recorder, schedule, shards, dtype, config)

    @property
    def rules(self):
        """Every vertex's rule, by name (read-only use: watching a relaxation)."""
        return self.transport.rules

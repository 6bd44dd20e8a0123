"""The threads transport: the shards of one process, one thread each (docs/rounds.md §6).

The local engine's shards, each owned by a worker thread with an inbox: a shard's
outgoing messages go into their destination's inbox, so shards work at the same time
wherever the rounds let them (numpy's BLAS and numba release the GIL). It is the
baseline Ray must approach on one machine. Synchronous rounds give the same numbers
whatever the delivery order (the round machine's guarantee), so this engine equals
the local engine bit for bit; with `pipeline` K > 1 each shard runs a group of K
batches in its lanes (engines/lanes.py), in lock-step with the local engine's ticks.
A batch (or a group) is a barrier: the next begins when every shard is done.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Iterable, Iterator

from neurolocal.engines.capabilities import CAPABILITIES
from neurolocal.engines.config import EngineConfig
from neurolocal.engines.lanes import Lanes
from neurolocal.engines.local import InProcessEngine, ShardsInProcess, split
from neurolocal.engines.rounds import Shard, ShardLog
from neurolocal.engines.staleness import StalenessLedger
from neurolocal.engines.transport import Batch, Outcome
from neurolocal.graph import Graph, Params
from neurolocal.traffic.log import TrafficRecorder


class LockedRecorder:
    """A traffic recorder several threads write to, one call at a time."""

    def __init__(self, recorder: TrafficRecorder):
        self._recorder = recorder
        self._lock = threading.Lock()

    def _locked(self, name: str, *args, **kwargs):
        with self._lock:
            return getattr(self._recorder, name)(*args, **kwargs)

    def record(self, *args, **kwargs) -> None:
        self._locked("record", *args, **kwargs)

    def record_packed(self, *args, **kwargs) -> None:   # the planned path's records
        self._locked("record_packed", *args, **kwargs)

    def record_energy(self, *args, **kwargs) -> None:
        self._locked("record_energy", *args, **kwargs)

    def flush(self) -> None:
        self._locked("flush")

    def close(self) -> None:
        self._locked("close")

    def __getattr__(self, name):
        return getattr(self._recorder, name)


class _Worker:
    """One shard's thread: runs the jobs of its inbox in order (a begin, a delivery)."""

    def __init__(self, transport: "ThreadsTransport", index: int):
        self.transport = transport
        self.index = index
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=f"shard-{index}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        transport = self.transport
        while True:
            job = self.inbox.get()
            if job is None:
                return
            try:
                transport.route(job())
                transport.check_done(self.index)
            except BaseException as exc:   # the caller's thread raises it
                transport.fail(exc)


class ThreadsTransport(ShardsInProcess):
    """Shards in this process, a thread each. `shards`: how many (runs of the
    topological order; default one per core)."""

    capabilities = CAPABILITIES["threads"]

    def __init__(self, graph: Graph, mode: str, recorder: TrafficRecorder | None = None,
                 shards: int | None = None, ledger: StalenessLedger | None = None,
                 plan: bool = True):
        self.graph = graph
        self.mode = mode
        self.recorder = None if recorder is None else LockedRecorder(recorder)
        self.ledger = ledger or StalenessLedger()
        self.batches = 0
        groups = split(graph, shards or os.cpu_count() or 1)
        owners = {n: i for i, names in enumerate(groups) for n in names}
        log = (ShardLog(self.recorder, ["threads"] * len(groups), [None] * len(groups))
               if recorder is not None else None)
        self.shards = [Shard(graph, names, owners, mode, log) for names in groups]
        for shard in self.shards:   # EngineConfig.rounds: "message" turns the plan off
            shard.use_plan = plan
        self.lanes = [Lanes(shard, lambda names=names: Shard(graph, names, owners, mode, log),
                            StalenessLedger())
                      for shard, names in zip(self.shards, groups)]
        self._piping = False
        self._expect = -1   # the batch id `run` waits for
        self._done = [threading.Event() for _ in self.shards]
        self._failure: BaseException | None = None
        self._workers = [_Worker(self, i) for i in range(len(self.shards))]

    # --- what the workers call --------------------------------------------------------------

    def route(self, outgoing) -> None:
        for destination, messages in outgoing.items():
            unit = self.lanes[destination] if self._piping else self.shards[destination]
            self._workers[destination].inbox.put(lambda u=unit, m=messages: u.deliver(m))

    def check_done(self, index: int) -> None:
        if self._piping:
            done = self.lanes[index].done
        else:   # (a late message of the batch before must not count)
            shard = self.shards[index]
            done = shard.done and shard.settings.batch == self._expect
        if done:
            self._done[index].set()

    def fail(self, exc: BaseException) -> None:
        self._failure = exc
        for event in self._done:
            event.set()

    # --- the Transport protocol ------------------------------------------------------------

    def run(self, batch: Batch) -> Outcome:
        if batch.params is not None:
            self.load(batch.params)
        settings = batch.settings.with_batch(self.batches)
        self.batches += 1
        self._expect = settings.batch
        graph = self.graph

        def begin(shard):
            return lambda: shard.begin(
                settings, None, {n: batch.inputs[n] for n in shard.names if n in batch.inputs},
                batch.target if graph.output in shard.names else None)

        self._wait([begin(shard) for shard in self.shards])
        return Outcome([shard.result() for shard in self.shards], settings.batch)

    def run_many(self, batches: Iterable[Batch], pipeline: int) -> Iterator[tuple[Batch, Outcome]]:
        """K = `pipeline` batches in flight as groups in the shards' lanes (engines/lanes.py:
        the local engine's numbers); 1: one batch after the other."""
        if pipeline == 1:
            for batch in batches:
                yield batch, self.run(batch)
            return
        self.ledger.begin_run()
        for lanes in self.lanes:
            lanes.ledger.begin_run()
        source = iter(batches)
        self._piping = True
        try:
            while True:
                group = [next(source, None) for _ in range(pipeline)]
                group = [b for b in group if b is not None]
                if not group:
                    return
                ids = list(range(self.batches, self.batches + len(group)))
                self.batches += len(group)
                for lanes in self.lanes:
                    lanes.ledger.records = []
                self._wait([self._start(lanes, group, ids) for lanes in self.lanes])
                parts = [lanes.results() for lanes in self.lanes]
                for lanes in self.lanes:
                    for record in lanes.ledger.records:
                        self.ledger.add(*record)
                for k, (batch, number) in enumerate(zip(group, ids)):
                    yield batch, Outcome([part[k] for part in parts], number)
        finally:
            self._piping = False
            for lanes in self.lanes:
                lanes.release()

    def snapshot_parts(self) -> list[dict]:
        return [shard.snapshot() for shard in self.shards]

    def keep_snapshot(self, params, optimizer) -> None:
        """Nothing to keep: nothing here can be lost."""

    def completed(self, batch, outcome, result) -> None:
        """No journal."""

    def report(self) -> dict:
        return {"shards": [list(shard.names) for shard in self.shards],
                "threads": len(self._workers)}

    def close(self) -> None:
        for worker in self._workers:
            worker.inbox.put(None)
        for worker in self._workers:
            worker.thread.join()
        self._workers = []
        if self.recorder is not None:
            self.recorder.close()

    # --- the rest ---------------------------------------------------------------------------

    def _start(self, lanes: Lanes, group: list[Batch], ids: list[int]):
        graph, names = self.graph, lanes.home.names
        entries = [(b.settings.with_batch(i),
                    {n: b.inputs[n] for n in names if n in b.inputs},
                    b.target if graph.output in names else None) for b, i in zip(group, ids)]
        return lambda: lanes.start(entries)

    def _wait(self, jobs) -> None:
        """Each shard's job to its thread; back when every shard is done."""
        if not self._workers:
            raise RuntimeError("this ThreadsEngine is closed")
        for event in self._done:
            event.clear()
        for worker, job in zip(self._workers, jobs):
            worker.inbox.put(job)
        for event in self._done:
            event.wait()
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure


class ThreadsEngine(InProcessEngine):
    """Predictive coding on a graph in one process, a thread per shard: the `Engine` over
    `ThreadsTransport`, equal bit for bit to the local engine."""

    transport_class = ThreadsTransport
    engine_name = "threads"

    def __init__(self, graph: Graph, params: Params | None = None, mode: str = "fixed",
                 seed: int = 0, recorder: TrafficRecorder | None = None,
                 schedule: str = "jacobi", shards: int | None = None, dtype: str = "float64",
                 config: EngineConfig | None = None):
        super().__init__(graph, params, mode, seed, recorder, schedule, shards, dtype, config)

"""The driver: `RayEngine` starts the actors, dispatches one call per actor per batch,
collects the results and recovers from actor deaths (see the package docstring)."""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

import ray

from neurolocal.dtypes import cast_params, check_dtype
from neurolocal.engines.config import (AUTO, DEFAULT_MAX_RESTARTS, DEFAULT_POST_AHEAD,
                                       DEFAULT_TIMEOUT, check_vertices_per_actor)
from neurolocal.engines.base import (
    Relaxation,
    Restart,
    Step,
    check_relaxation_settings,
    default_iterations,
    prepare_batch,
)
from neurolocal.engines.ray.actor import (
    ActorNotReady,
    ShardActor,
    TrafficSpec,
    actor_name,
    host_label,
)
from neurolocal.engines.ray import lifecycle
from neurolocal.engines.ray.asynchrony import Injection
from neurolocal.engines.ray.replay_log import DriverJournal, RayStep, asynchrony_report
from neurolocal.engines.ray.connection import ADDRESS_LOCAL, start_ray
from neurolocal.engines.ray.nodes import (
    alive_nodes,
    placement_strategy,
    replacement_node,
    restart_cause,
)
from neurolocal.engines.ray.placement import (check_placement, plan, shard_of,
                                              weights_from_log)
from neurolocal.checks import number
from neurolocal.errors import ConfigError, EngineError
from neurolocal.graph import Graph, Params
from neurolocal.engines.rounds import (
    Learning,
    RunSettings,
    check_schedule,
    merge_results,
    merge_snapshots,
    step_from_results,
)
from neurolocal.traffic.log import (
    SCHEDULER,
    TrafficRecorder,
    new_run_id,
    now,
    payload_bytes,
)

#: seconds a late actor has to answer a ping before its node counts as unreachable
PING_TIMEOUT = 5.0


class ActorsLate(EngineError):
    """Actors did not answer within the timeout; `actors` are their shard indices."""

    def __init__(self, message: str, actors: list[int]):
        super().__init__(message)
        self.actors = actors


class ActorLost(EngineError):
    """An actor died (or restarted) under a batch; `actors` are their shard indices."""

    def __init__(self, message: str, actors: list[int]):
        super().__init__(message)
        self.actors = actors


class RayEngine:
    """Predictive coding with vertices in Ray actors; `relax` returns the same
    `Relaxation` as LocalEngine. Use as a context manager, or call `close()`."""

    def __init__(self, graph: Graph, params: Params | None = None, mode: str = "fixed",
                 seed: int = 0, *, schedule: str = "jacobi", address: str | None = ADDRESS_LOCAL,
                 vertices_per_actor: int | str = 1, staleness: int = 0,
                 placement: str = "spread", placement_from: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, traffic_log: str | None = None,
                 traffic_settings: dict | None = None,
                 max_restarts: int = DEFAULT_MAX_RESTARTS,
                 fault: tuple[int, int] | None = None,
                 asynchrony: Injection | None = None, topology: str | None = None,
                 dtype: str = "float64", post_ahead: int = DEFAULT_POST_AHEAD):
        """`timeout`: seconds any wait of the driver may take (actors starting, a batch,
        a restarted actor coming back). `traffic_log`: a directory for the traffic log;
        `traffic_settings` go into its headers (eta, iterations, read_inputs: what the
        audit needs to count). `max_restarts`: how often Ray may restart each actor.
        `fault=(actor, batch)`: a testing aid, kill actor `actor` (its shard index)
        mid-batch in the `batch`-th relaxation (0-based), once. `vertices_per_actor`:
        K (runs of K vertices) or auto (about one shard per core, a min-cut partition
        weighed by the graph's shapes, or by the traffic log `placement_from`:
        placement.py, docs/placement.md). `asynchrony`: delays, loss and stragglers
        injected for real in the actors (engines/ray/asynchrony.py); an asynchronous run
        (it, or staleness > 0) with a traffic log also writes replay journals
        (docs/asynchrony.md §6), naming `topology` (the file) for the replay.
        `post_ahead`: training batches `train_batches` keeps posted to the actors at once
        (docs/rounds.md §7; 1 where the run is asynchronous)."""
        self.post_ahead = number("post_ahead", post_ahead, whole=True, minimum=1)
        check_staleness(staleness)
        check_schedule(schedule, mode, staleness, graph)
        self.schedule = schedule
        self.graph = graph
        self.dtype = check_dtype(dtype)   # float32: the actors get float32 copies
        self.params = cast_params(params if params is not None else graph.init_params(seed),
                                  dtype)
        self.mode = mode
        self.staleness = staleness
        self.placement = placement
        self.vertices_per_actor = check_vertices_per_actor(vertices_per_actor)
        self.timeout = number("timeout", timeout, positive=True)
        self.traffic_log = traffic_log
        self.traffic_settings = dict(traffic_settings or {})
        self.recorder: TrafficRecorder | None = None
        self.asynchrony = asynchrony
        self.topology = topology
        self.journal: DriverJournal | None = None   # opened with the traffic log
        if asynchrony is not None and self.vertices_per_actor == AUTO and placement_from is None:
            # injected delays and losses act on messages between actors: with auto, one
            # vertex per actor makes every message one (docs/asynchrony.md §6)
            self.vertices_per_actor = 1
        check_placement(placement)  # reject a bad name before Ray starts
        self.max_restarts = number("max_restarts", max_restarts, whole=True, minimum=0)
        if placement_from is not None and self.vertices_per_actor != AUTO:
            raise ConfigError(f"weighs the partition of vertices_per_actor {AUTO}, not runs of "
                              f"{self.vertices_per_actor}", field="placement_from")
        batch = self.traffic_settings.get("batch_size")
        self._weights = (None if placement_from is None else   # a bad log: before Ray starts
                         weights_from_log(placement_from, graph, batch))
        self._placement_from = placement_from
        self.partition: dict = {}
        self.shards: list = []   # known once the cluster's nodes are (auto: their cores)
        if self.vertices_per_actor != AUTO:
            self.shards = plan(graph, self.vertices_per_actor, ["-"], {}, placement, "-",
                               batch_size=batch).shards
        self.fault = check_fault(fault, len(self.shards)) if self.shards else fault
        self.actors: list = []
        self.actor_info: list[dict] = []
        self.setup_calls = 0
        self.restarts: list[Restart] = []   # every restart of this engine's life
        self.learning: Learning | None = None   # set by restore(): the vertices train
        self._snapshot: tuple | None = None     # (params, optimizer): the last snapshot
        self._since: list = []                  # batches since it, for a replay
        self._batch = 0                  # batch ids sent to the shards (replays take new ones)
        self._relaxed = 0                # relax() calls, the numbering `fault` uses
        self._owns_ray = start_ray(address)
        try:
            self._start_actors()
        except BaseException as exc:
            failure = lifecycle.ray_failure(exc)  # a dead GCS or raylet: one line, exit 2
            self.close()
            if failure is not None:
                raise failure from None
            raise

    # --- lifecycle -----------------------------------------------------------------------

    def _start_actors(self) -> None:
        graph = self.graph
        driver_node = ray.get_runtime_context().get_node_id()
        alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        nodes = [driver_node] * (driver_node in alive) + [n for n in alive if n != driver_node]
        cpus = {n["NodeID"]: n.get("Resources", {}).get("CPU", 0) for n in ray.nodes()}
        chosen = plan(graph, self.vertices_per_actor, nodes, cpus, self.placement, driver_node,
                      self._weights, self.traffic_settings.get("batch_size"),
                      self._placement_from)
        self.shards, where, self.partition = chosen.shards, chosen.nodes, chosen.info
        self.fault = check_fault(self.fault, len(self.shards))
        traffic = self._traffic_spec(where, driver_node)
        self._graph_ref = graph_argument(graph)  # kept alive: a restarted actor reads it again
        self._traffic = traffic
        self.actors = [self._new_actor(i, node) for i, node in enumerate(where)]
        calls = [actor.connect.remote(self._peers(i)) for i, actor in enumerate(self.actors)]
        self.setup_calls = len(calls)
        infos = gather(calls, self.timeout, self._describe_actors(), "start")
        self.actor_info = [{"actor": i, "name": actor_name(i), "vertices": list(names),
                            "host": traffic.hosts[i] if traffic else None, **info}
                           for i, (names, info) in enumerate(zip(self.shards, infos))]

    def _new_actor(self, index: int, node: str, replacement: bool = False):
        """Shard `index`'s actor, on `node`."""
        # num_cpus=0: an actor mostly waits for messages; Ray must not refuse the
        # hundredth vertex on a 2-core machine for lack of "CPU" tokens.
        return (ShardActor.options(num_cpus=0, scheduling_strategy=placement_strategy(node),
                                   max_restarts=self.max_restarts)
                .remote(self._graph_ref, self.shards[index], shard_of(self.shards), self.mode,
                        self._traffic, replacement, self.asynchrony))

    def _replace_actor(self, index: int, alive: dict) -> None:
        """Node loss: re-create shard `index`'s actor on a surviving node, with the
        constructor arguments Ray would restart it with. `_recover` connects every actor
        to it; `restart_lost_actors` then restores it, like every actor, from the
        driver's last snapshot and replays the batches since."""
        node = replacement_node(alive, [a["node_id"] for a in self.actor_info])
        self.actors[index] = self._new_actor(index, node, replacement=True)

    def _traffic_spec(self, where: list[str], driver_node: str) -> TrafficSpec | None:
        """The run id, header settings and who-is-where every actor's stream needs; opens
        the driver's own stream (control replies, energy)."""
        if not self.traffic_log:
            return None
        labels = {n["NodeID"]: host_label(n) for n in ray.nodes()}
        settings = {"engine": "ray", "mode": self.mode,
                    # asynchronous rounds have no fixed per-round count: the audit then
                    # checks locality only
                    "schedule": self.schedule if self.staleness == 0 else "async",
                    "staleness": self.staleness, **self.partition,
                    "placement": self.placement, **self.traffic_settings}
        directory = os.path.abspath(self.traffic_log)
        run = new_run_id()
        self.recorder = TrafficRecorder(directory, run, SCHEDULER, graph=self.graph.name,
                                        settings=settings)
        self.recorder.flush()  # the header, even if no batch ever runs
        self.scheduler_host = labels[driver_node]
        journal = self.staleness > 0 or self.asynchrony is not None
        if journal:
            self.journal = DriverJournal(directory, run, self)
        return TrafficSpec(directory, run, self.graph.name, settings,
                           tuple(actor_name(i) for i in range(len(where))),
                           tuple(labels[node] for node in where), labels[driver_node],
                           journal)

    def _describe_actors(self) -> list[str]:
        return [f"{actor_name(i)} (vertices {', '.join(names)})"
                for i, names in enumerate(self.shards)]

    def _peers(self, index: int) -> dict:
        return {j: self.actors[j] for j in self._neighbour_shards(index)}

    def _neighbour_shards(self, index: int) -> list[int]:
        """Shards hosting a parent, a child or a tied-group owner of this shard's vertices
        (a member sends its partials to the owner: the one non-edge route, see tied.py)."""
        owners = shard_of(self.shards)
        graph = self.graph
        near = {owners[m] for n in self.shards[index]
                for m in (*graph.parents(n), *graph.children[n], *tied_owners(graph, n))}
        return sorted(near - {index})

    def close(self) -> None:
        """Kill every actor; shut Ray down if this engine started it. Safe to call twice."""
        if self.recorder is not None and self.actors:
            try:  # late messages of an asynchronous batch; a dead actor must not stall this
                if lifecycle.healthy():
                    ray.wait([a.flush_log.remote() for a in self.actors],
                             num_returns=len(self.actors), timeout=10)
            except Exception:
                pass
            self.recorder.flush()
        if self.journal is not None:
            self.journal.close()
        for actor in self.actors if lifecycle.healthy() else ():
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone: nothing left behind
                pass
        self.actors = []
        if self._owns_ray:  # ray.shutdown(), then no process of that Ray outlives this
            lifecycle.shutdown_embedded()
        self._owns_ray = False

    def __enter__(self) -> "RayEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- one batch -----------------------------------------------------------------------

    def relax(self, inputs, target, eta: float = 1.0, iterations: int | None = None,
              read_inputs: bool = False, staleness: int | None = None) -> Relaxation:
        """Relax one batch with the driver's parameters (sent with the batch) and return
        every vertex's dtheta, errors and dL/dx (a gradient check; nothing learns)."""
        graph = self.graph
        self._check_open()
        iterations = default_iterations(graph, read_inputs) if iterations is None else iterations
        check_relaxation_settings(eta, iterations, self.mode)
        staleness = self.staleness if staleness is None else staleness
        check_staleness(staleness)
        check_schedule(self.schedule, self.mode, staleness)
        inputs, target = prepare_batch(graph, inputs, target, self.dtype)
        template = RunSettings(0, float(eta), int(iterations), int(staleness), bool(read_inputs),
                               self.schedule, dtype=self.dtype)
        results, settings, restarts = self._run_batch(template, inputs, target, self.params)
        relaxation = self._assemble(results, settings, scheduler_calls=len(self.actors))
        relaxation.restarts = restarts
        self._log_batch(settings.batch, results, relaxation.energy)
        if self.journal is not None:
            self.journal.relaxed(settings, self.params, inputs, target, relaxation, results)
        return relaxation

    # --- training: the vertices own their parameters (docs/rounds.md) --------------------

    def restore(self, params: Params, optimizer, learning: Learning) -> None:
        """Give every actor its vertices' parameters and optimizer state (the run's start,
        or a checkpoint); the driver keeps this as the last snapshot."""
        self._check_open()
        self.learning = learning
        self._snapshot = ({v: {k: np.array(a, dtype=self.dtype, copy=True)
                               for k, a in ps.items()} for v, ps in params.items()},
                          None if optimizer is None else dict(optimizer))
        self._since = []
        if self.journal is not None:
            self.journal.restored(*self._snapshot, learning)
        try:
            self._load_snapshot()
        except BaseException as exc:
            failure = lifecycle.ray_failure(exc)  # a dead GCS or raylet: one line, exit 2
            self.close()
            if failure is not None:
                raise failure from None
            raise

    def train_step(self, inputs, target, eta: float = 1.0,
                   iterations: int | None = None) -> Step:
        """One batch in which every vertex applies its own update. The driver sends the
        batch id and settings, the inputs' data and the target; scalars come back."""
        graph = self.graph
        iterations = self._training_iterations(eta, iterations)
        inputs, target = prepare_batch(graph, inputs, target, self.dtype)
        template = RunSettings(0, float(eta), int(iterations), self.staleness, False,
                               self.schedule, self.learning, dtype=self.dtype)
        results, settings, restarts = self._run_batch(template, inputs, target, None)
        self._since.append((template, inputs, target))
        rounds = len(next(iter(results[0]["energy"].values()))) - 1
        step = step_from_results(graph, results, rounds)
        step.restarts = restarts
        self._log_batch(settings.batch, results, step.energy)
        if self.journal is not None:
            self.journal.trained(settings, inputs, target, step, results)
        report = asynchrony_report(results)
        if report is None:
            return step
        return RayStep(loss=step.loss, hits=step.hits, energy=step.energy,
                       messages=step.messages, restarts=step.restarts, report=report)

    @property
    def ahead(self) -> int:
        """Batches `train_batches` keeps posted: `post_ahead`, or 1 for an asynchronous
        run (staleness, injected asynchrony), whose replay journals follow one batch at
        a time (docs/asynchrony.md §6)."""
        if self.staleness > 0 or self.asynchrony is not None or self.journal is not None:
            return 1
        return self.post_ahead

    def train_batches(self, batches, eta: float = 1.0, iterations: int | None = None,
                      pipeline: int = 1):
        """Train on `batches` ((inputs, target) pairs, read lazily), yielding each batch's
        `Step` in order: the same steps, bit for bit, as `train_step` batch after batch.

        Posting ahead (docs/rounds.md §7): up to `ahead` batches are posted to the actors
        at once instead of waiting for one batch's results before posting the next.
        Every actor runs its batches strictly in order (`run_batch`'s `after`) and
        begins the next only when its own vertices are done with the previous one:
        updates applied, and the new values of tied copies received from their owners.
        Each vertex owns its weights, so they are then exactly the synchronous ones.
        An actor lost under a batch: every batch in flight is abandoned, the lost actor
        restarted and every actor restored and replayed (`restart_lost_actors`), and
        the batches in flight posted again under fresh ids. `--fault`'s batch runs alone
        (the batches before it collected first, none posted before it is), so the actor
        dies under exactly that batch and it is the one batch abandoned, as with 1."""
        if pipeline != 1:
            raise ConfigError("the Ray engine posts batches ahead instead of pipelining",
                              field="pipeline")
        ahead = self.ahead
        if ahead == 1:
            for inputs, target in batches:
                yield self.train_step(inputs, target, eta=eta, iterations=iterations)
            return
        graph = self.graph
        iterations = self._training_iterations(eta, iterations)
        source = iter(batches)
        flight: deque[_Posted] = deque()
        waiting: list = []   # a batch read but held back (the fault's batch waits for a drain)
        alone = None if self.fault is None else self.fault[1]
        try:
            while True:
                lifecycle.check_embedded()  # per batch, as train_step: a dead GCS or raylet
                while len(flight) < ahead:
                    if not waiting:
                        item = next(source, None)
                        if item is None:
                            break
                        inputs, target = prepare_batch(graph, *item, dtype=self.dtype)
                        template = RunSettings(0, float(eta), int(iterations), self.staleness,
                                               False, self.schedule, self.learning,
                                               dtype=self.dtype)
                        waiting.append(_Posted(template, inputs, target, self._relaxed))
                        self._relaxed += 1
                    if flight and alone in (waiting[0].index, flight[-1].index):
                        break   # the fault's batch runs alone: after a drain, none after it
                    self._post(waiting.pop(), flight)
                if not flight:
                    return
                oldest = flight[0]
                try:
                    results = gather(oldest.calls, self.timeout, self._describe_actors(),
                                     "finish its batch")
                except ActorLost as lost:
                    records = self.restart_lost_actors(lost, oldest.index,
                                                       oldest.settings.batch, oldest.dispatched)
                    again = list(flight)
                    flight.clear()
                    behind = tuple(p.settings.batch for p in again[1:])
                    self._mark_abandoned(list(behind))
                    oldest.restarts += [replace(r, abandoned_ahead=behind) for r in records]
                    for posted in again:   # fresh ids, in order, after the replay
                        self._post(posted, flight)
                    continue
                except ActorsLate as late:  # a partition, or a node too slow: say which
                    raise EngineError(self._unreachable(late)) from None
                flight.popleft()
                self._since.append((oldest.template, oldest.inputs, oldest.target))
                rounds = len(next(iter(results[0]["energy"].values()))) - 1
                step = step_from_results(graph, results, rounds)
                step.restarts = oldest.restarts
                self._log_batch(oldest.settings.batch, results, step.energy)
                yield step
        except GeneratorExit:
            raise
        except BaseException as exc:
            failure = lifecycle.ray_failure(exc)  # a dead GCS or raylet: one line, exit 2
            self.close()  # actors are mid-batch, waiting for peers that will never speak
            if failure is not None:
                raise failure from None
            raise

    def _training_iterations(self, eta: float, iterations: int | None) -> int:
        """The checks every training call makes first; the rounds per batch it runs."""
        self._check_open()
        if self.learning is None:
            raise RuntimeError("training needs restore() first (parameters and optimizer)")
        iterations = default_iterations(self.graph) if iterations is None else iterations
        check_relaxation_settings(eta, iterations, self.mode)
        return iterations

    def _post(self, posted: "_Posted", flight: deque) -> None:
        """Post one batch under a fresh id, after the newest batch in flight; kill the
        fault's victim right after its batch is posted."""
        after = flight[-1].settings.batch if flight else None
        posted.settings = replace(posted.template, batch=self._batch)
        self._batch += 1
        posted.dispatched = now()
        posted.calls = self._dispatch(posted.settings, posted.inputs, posted.target, None, after)
        flight.append(posted)
        if self.fault is not None and self.fault[1] == posted.index:
            victim = self.fault[0]
            self.fault = None  # once: the replay must not be killed again
            ray.kill(self.actors[victim], no_restart=False)

    def _mark_abandoned(self, batches: list[int]) -> None:
        """Batch ids posted ahead and given up after a restart: marked abandoned in the
        traffic log, as `_recover` marks the one that failed."""
        if self.recorder is None or not batches:
            return
        t = now()
        for batch in batches:
            self.recorder.record(batch, 0, SCHEDULER, SCHEDULER, "control", 0, t, t,
                                 self.scheduler_host, self.scheduler_host, SCHEDULER, SCHEDULER)
        self.recorder.flush()

    def snapshot(self) -> tuple[Params, dict]:
        """(parameters, optimizer state) gathered from every actor at this batch
        boundary, in the checkpoint's layout; kept on the driver as the state a restarted
        actor is restored from (objects an actor put would die with it)."""
        self._check_open()
        try:
            parts = gather([a.snapshot.remote() for a in self.actors], self.timeout,
                           self._describe_actors(), "hand over its snapshot")
        except BaseException as exc:
            failure = lifecycle.ray_failure(exc)  # a dead GCS or raylet: one line, exit 2
            self.close()
            if failure is not None:
                raise failure from None
            raise
        params, optimizer = merge_snapshots(self.graph, parts)
        if self.recorder is not None:   # a batch id of its own: replies only, no vertex traffic
            t = now()
            snapshot_id, self._batch = self._batch, self._batch + 1
            for i, part in enumerate(parts):
                self.recorder.record(snapshot_id, 0, actor_name(i), SCHEDULER,
                                     "control", payload_bytes(part), t, t,
                                     self.actor_info[i]["host"], self.scheduler_host,
                                     actor_name(i), SCHEDULER)
            self.recorder.flush()
        self._snapshot = (params, optimizer)
        self._since = []
        if self.journal is not None:
            self.journal.snapshot(params, optimizer)
        return ({v: {k: np.array(a, copy=True) for k, a in ps.items()} for v, ps in params.items()},
                dict(optimizer))

    # --- one batch, with recovery ----------------------------------------------------------

    def _check_open(self) -> None:
        if not self.actors:
            raise RuntimeError("this RayEngine is closed")

    def _run_batch(self, template: RunSettings, inputs, target, params):
        """Run one batch (a fresh batch id per attempt) until it completes; an actor lost
        on the way is brought back by `restart_lost_actors`. Returns (results, the
        settings of the attempt that completed, restart records)."""
        index, self._relaxed = self._relaxed, self._relaxed + 1
        restarts: list[Restart] = []
        try:
            lifecycle.check_embedded()
            while True:  # one attempt per pass; a lost actor makes a replay
                settings = replace(template, batch=self._batch)
                self._batch += 1  # numbered from 0, as the local engine's log
                dispatched = now()
                calls = self._dispatch(settings, inputs, target, params)
                if self.fault is not None and self.fault[1] == index:
                    victim = self.fault[0]
                    self.fault = None  # once: the replay must not be killed again
                    ray.kill(self.actors[victim], no_restart=False)
                try:
                    results = gather(calls, self.timeout, self._describe_actors(),
                                     "finish its batch")
                    return results, settings, restarts
                except ActorLost as lost:  # Ray restarts it, unless it may not (max_restarts)
                    restarts += self.restart_lost_actors(lost, index, settings.batch,
                                                         dispatched)
                except ActorsLate as late:  # a partition, or a node too slow: say which
                    raise EngineError(self._unreachable(late)) from None
        except BaseException as exc:
            failure = lifecycle.ray_failure(exc)  # a dead GCS or raylet: one line, exit 2
            self.close()  # actors are mid-batch, waiting for peers that will never speak
            if failure is not None:
                raise failure from None
            raise

    def restart_lost_actors(self, lost: ActorLost, index: int, batch: int,
                            dispatched: float) -> list[Restart]:
        """The restart path (docs/rounds.md, snapshots): after an actor died under batch id
        `batch`, wait until Ray has brought it back and reconnect every actor
        (`_recover`), then — when the vertices own their parameters — restore every
        actor from the driver's last snapshot and replay the batches since, so the
        interrupted batch runs again on exactly the state it first met."""
        records = self._recover(lost, index, batch, dispatched)
        replayed = 0
        if self.learning is not None:
            while True:
                try:
                    self._load_snapshot()
                    if self.journal is not None:   # the replay restarts from there too
                        self.journal.restored(*self._snapshot, self.learning)
                    for template, inputs, target in self._since:
                        settings = replace(template, batch=self._batch)
                        self._batch += 1
                        results = gather(self._dispatch(settings, inputs, target, None),
                                         self.timeout, self._describe_actors(), "replay a batch")
                        self._log_batch(settings.batch, results, None)
                        if self.journal is not None:
                            rounds = len(next(iter(results[0]["energy"].values()))) - 1
                            self.journal.trained(settings, inputs, target,
                                                 step_from_results(self.graph, results, rounds),
                                                 results)
                    replayed = len(self._since)
                    break
                except ActorLost as again:   # lost once more while replaying: start over
                    records += self._recover(again, index, self._batch - 1, dispatched)
        seconds = now() - dispatched
        records = [replace_restart(r, replayed, seconds) for r in records]
        self.restarts += records
        return records

    def _load_snapshot(self) -> None:
        """Every actor's vertices back to the driver's last snapshot."""
        params, optimizer = self._snapshot
        calls = []
        for actor, names in zip(self.actors, self.shards):
            mine = {n: params[n] for n in names if n in params}
            state = None
            if optimizer is not None:
                state = {k: v for k, v in optimizer.items()
                         if k == "step" or k.split("/")[1] in names}
            calls.append(actor.restore.remote(mine, state, self.learning))
        gather(calls, self.timeout, self._describe_actors(), "restore its vertices")

    def _log_batch(self, batch: int, results: list[dict], energy) -> None:
        if self.recorder is None:
            return
        self._log_replies(batch, results, now())
        if energy is not None:
            self.recorder.record_energy(batch, energy)
        self.recorder.flush()

    def _dispatch(self, settings: RunSettings, inputs, target, params,
                  after: int | None = None) -> list:
        """One `run_batch` call per actor: its inputs' data, the target if the output is
        its, and (relaxing only) its vertices' parameters. `after`: the batch id posted
        before this one and not yet collected (posting ahead), which every actor
        finishes first."""
        calls = []
        for actor, names in zip(self.actors, self.shards):
            mine = None if params is None else {n: params[n] for n in names if n in params}
            data = {n: inputs[n] for n in names if n in inputs}
            calls.append(actor.run_batch.remote(settings, mine, data,
                                                target if self.graph.output in names else None,
                                                now(), after))
        return calls

    def _recover(self, lost: ActorLost, index: int, batch: int, dispatched: float) -> list[dict]:
        """After an actor died under batch id `batch`: wait (at most `timeout` s) until Ray
        has restarted it, connect every actor to its neighbours again (a restarted actor
        has no handles; the others keep theirs, Ray re-routes them), mark the batch
        abandoned in the traffic log, and return one record per restarted actor."""
        deadline = now() + self.timeout
        pending = set(range(len(self.actors)))
        infos: dict[int, dict] = {}
        replaced: set[int] = set()
        while pending:
            lifecycle.check_embedded()  # a dead GCS restarts no actor
            refs = {self.actors[i].connect.remote(self._peers(i)): i for i in sorted(pending)}
            ready, _ = ray.wait(list(refs), num_returns=len(refs),
                                timeout=max(0.0, deadline - now()))
            fresh = False  # an actor re-created: every actor connects again, to its handle
            for ref in ready:
                i = refs[ref]
                try:
                    infos[i] = ray.get(ref)
                    pending.discard(i)
                except (ray.exceptions.ActorDiedError,  # Ray will not restart it
                        ray.exceptions.ActorUnschedulableError) as exc:  # nor where it was
                    alive = alive_nodes()
                    if self._lost_with_its_node(i, alive) and i not in replaced:
                        self._replace_actor(i, alive)
                        replaced.add(i)
                        fresh = True
                        break
                    raise EngineError(
                        f"{self._describe_actors()[i]} died and did not come back "
                        f"(max_restarts {self.max_restarts}): {first_line(exc)}") from None
                except ray.exceptions.RayActorError:  # still restarting: ask again
                    pass
            if fresh:
                pending = set(range(len(self.actors)))
            if pending and now() >= deadline:
                names = [self._describe_actors()[i] for i in sorted(pending)]
                raise EngineError(f"{len(names)} actor(s) did not come back within "
                                  f"{self.timeout:g} s after a failure: " + "; ".join(names[:5]))
            if pending:
                time.sleep(0.1)  # a short pause before asking a restarting actor again
        self.setup_calls += len(self.actors)
        back = sorted(set(lost.actors) | replaced | {
            i for i, info in infos.items() if info["pid"] != self.actor_info[i]["pid"]})
        alive = alive_nodes()
        before = {i: dict(self.actor_info[i]) for i in back}  # where each ran
        for i, info in infos.items():
            self.actor_info[i].update(info)
        self._relabel_moved_actors(alive)
        if self.recorder is not None:  # the audit counts no messages of this batch id
            t = now()
            self.recorder.record(batch, 0, SCHEDULER, SCHEDULER, "control", 0, t, t,
                                 self.scheduler_host, self.scheduler_host, SCHEDULER, SCHEDULER)
            self.recorder.flush()
        return [Restart(index, batch, actor_name(i), tuple(self.shards[i]), 0,
                        now() - dispatched, cause=restart_cause(before[i]["node_id"], alive),
                        node=before[i].get("ip"), now_on=self.actor_info[i].get("ip"))
                for i in back]

    def _lost_with_its_node(self, index: int, alive: dict) -> bool:
        """Did shard `index`'s actor die because its node is gone (and may it be
        re-created: max_restarts 0 means the first death ends the run)?"""
        return self.max_restarts > 0 and self.actor_info[index]["node_id"] not in alive

    def _unreachable(self, late: ActorsLate) -> str:
        """Why a batch timed out, in one line: the nodes whose late actors do not answer
        even a ping (cut off: a partition, or a node that hangs), else what `gather`
        said (every late actor answers: the batch itself was too slow)."""
        probe = min(PING_TIMEOUT, self.timeout)
        pings = {self.actors[i].ping.remote(): i for i in late.actors}
        answered, _ = ray.wait(list(pings), num_returns=len(pings), timeout=probe)
        silent = sorted(set(pings.values()) - {pings[ref] for ref in answered})
        if not silent:
            return str(late)
        by_node: dict[str, list[str]] = {}
        for i in silent:
            info = self.actor_info[i]
            by_node.setdefault(info.get("ip") or info["node_id"][:8], []).append(actor_name(i))
        nodes = "; ".join(f"node {node} ({', '.join(actors)})" for node, actors in by_node.items())
        return (f"{nodes} unreachable: no answer within {self.timeout:g} s, the batch could "
                "not finish")

    def _relabel_moved_actors(self, alive: dict) -> None:
        """After a node loss, actors run on other nodes: give the traffic log their new
        host labels (the driver's records and every actor's table of who is where)."""
        if self.recorder is None:
            return
        hosts = [host_label(alive[a["node_id"]]) if a["node_id"] in alive else a["host"]
                 for a in self.actor_info]
        if hosts == [a["host"] for a in self.actor_info]:
            return
        for a, host in zip(self.actor_info, hosts):
            a["host"] = host
        gather([actor.set_hosts.remote(tuple(hosts)) for actor in self.actors], self.timeout,
               self._describe_actors(), "take the new hosts")

    def _log_replies(self, batch: int, results: list[dict], t_recv: float) -> None:
        spec_hosts = [a["host"] for a in self.actor_info]
        me = self.scheduler_host
        for i, result in enumerate(results):
            nbytes = payload_bytes([v for k, v in result.items() if k != "t_send"])
            self.recorder.record(batch, 0, actor_name(i), SCHEDULER, "control", nbytes,
                                 result["t_send"], t_recv, spec_hosts[i], me, actor_name(i),
                                 SCHEDULER)

    def _assemble(self, results: list[dict], settings: RunSettings,
                  scheduler_calls: int) -> Relaxation:
        graph = self.graph
        rounds = len(next(iter(results[0]["energy"].values()))) - 1
        dtheta, errors, input_feedback, energy, loss, prediction, counts = merge_results(
            graph, results, rounds, settings.read_inputs)
        report = {
            "actors": self.actor_info,
            "nodes": len({a["node_id"] for a in self.actor_info}),
            "vertices_per_actor": self.vertices_per_actor,
            "partition": self.partition,
            "placement": self.placement,
            "staleness": settings.staleness,
            "scheduler_calls": {"setup": self.setup_calls, "per_batch": scheduler_calls},
            "message_counts": counts,
        }
        injected = asynchrony_report(results)
        if injected is not None:
            report.update(injected)
        extras = {"report": report}
        if self.schedule == "backward-in-time":
            extras.update(schedule=self.schedule, rounds=rounds)
        return Relaxation(dtheta=dtheta, errors=errors, input_feedback=input_feedback,
                          energy=energy, loss=loss, prediction=prediction,
                          messages=counts["local_messages"] + counts["remote_messages"],
                          extras=extras)


@dataclass
class _Posted:
    """A training batch `train_batches` has read: its data, its relaxation index (what
    `fault` counts) and, once posted, its settings (batch id), calls and restarts."""
    template: RunSettings
    inputs: dict
    target: object
    index: int
    settings: RunSettings | None = None
    calls: list = field(default_factory=list)
    dispatched: float = 0.0
    restarts: list = field(default_factory=list)


#: a graph pickled smaller than this travels inside each actor's creation call
INLINE_GRAPH_BYTES = 64 << 10


def graph_argument(graph: Graph):
    """The graph itself when small (Ray inlines it in every creation call), else one
    object-store copy shared by all actors. Inline is preferred: Ray warns on stderr
    about restartable actors whose constructor reads the object store (their restart
    fails if the object is lost; the engine keeps the reference alive)."""
    if len(ray.cloudpickle.dumps(graph)) < INLINE_GRAPH_BYTES:
        return graph
    return ray.put(graph)


def tied_owners(graph: Graph, vertex: str) -> set[str]:
    return {owner for owner, _ in graph.ties_of(vertex)[0].values()}


def gather(calls: list, timeout: float = DEFAULT_TIMEOUT, names: list[str] | None = None,
           doing: str = "answer") -> list:
    """Results in call order, raising as soon as any actor fails (not after the slowest).
    An actor that died, or did not answer within `timeout` seconds in all, is named in
    an `EngineError` (whose peers would otherwise wait for it forever)."""
    names = names or [actor_name(i) for i in range(len(calls))]
    index = {ref: i for i, ref in enumerate(calls)}
    pending = list(calls)
    deadline = now() + timeout
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - now()))
        if not ready:
            late = [names[index[ref]] for ref in pending]
            raise ActorsLate(f"{len(late)} actor(s) did not {doing} within {timeout:g} s: "
                             + "; ".join(late[:5]) + (" ..." if len(late) > 5 else ""),
                             sorted(index[ref] for ref in pending))
        try:
            ray.get(ready)
        except (ray.exceptions.RayActorError, ActorNotReady) as exc:
            i = index[ready[0]]
            raise ActorLost(f"{names[i]} died: {first_line(exc)}", [i]) from None
        except ray.exceptions.ObjectLostError as exc:  # its reply was on a node now lost
            i = index[ready[0]]
            raise ActorLost(f"{names[i]}'s reply was lost: {first_line(exc)}", [i]) from None
    return ray.get(calls)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def check_fault(fault, actors: int) -> tuple[int, int] | None:
    """`(actor index, batch index)` within range, or None."""
    if fault is None:
        return None
    try:
        actor, batch = (int(x) for x in fault)
    except (TypeError, ValueError):
        raise ConfigError(f"expected (actor, batch), two whole numbers, got {fault!r}",
                          field="fault") from None
    if not 0 <= actor < actors:
        raise ConfigError(f"actor {actor} does not exist (this run has actors 0..{actors - 1})",
                          field="fault")
    if batch < 0:
        raise ConfigError(f"batch must be >= 0, got {batch}", field="fault")
    return actor, batch


def check_staleness(staleness) -> None:
    number("staleness", staleness, whole=True, minimum=0)


def replace_restart(record: Restart, replayed: int, seconds: float) -> Restart:
    return replace(record, replayed=replayed, seconds=seconds)

"""The driver: `RayEngine` starts the actors, dispatches one call per actor per batch,
collects the results and recovers from actor deaths (see the package docstring)."""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

import ray

from neurolocal.engines.capabilities import CAPABILITIES
from neurolocal.engines.config import (AUTO, DEFAULT_MAX_RESTARTS, DEFAULT_POST_AHEAD,
                                       DEFAULT_TIMEOUT, EngineConfig)
from neurolocal.engines.engine import Engine, initial_params
from neurolocal.engines.transport import Batch, Outcome
from neurolocal.engines.base import Restart
from neurolocal.engines.ray.actor import (
    ShardActor,
    TrafficSpec,
    actor_name,
    host_label,
)
from neurolocal.engines.ray import lifecycle
from neurolocal.engines.ray.recovery import (  # noqa: F401  (re-exported)
    ActorLost,
    ActorsLate,
    SETTLE_TIMEOUT,
    Recovery,
    first_line,
    gather,
    replace_restart,
)
from neurolocal.engines.ray.asynchrony import Injection
from neurolocal.engines.ray.pipelined import Pipelining, check_pipelined
from neurolocal.engines.ray.costmodel import CostContext, ray_costs
from neurolocal.engines.base import default_iterations
from neurolocal.engines.staleness import StalenessLedger
from neurolocal.engines.ray.replay_log import DriverJournal, asynchrony_report
from neurolocal.engines.ray.connection import ADDRESS_LOCAL, start_ray
from neurolocal.engines.ray.nodes import (
    placement_strategy,
    replacement_node,
)
from neurolocal.engines.ray.placement import (plan, shard_of,
                                              weights_from_log)
from neurolocal.checks import number
from neurolocal.errors import ConfigError, EngineError
from neurolocal.graph import Graph, Params
from neurolocal.engines.rounds import (
    Learning,
    RunSettings,
)
from neurolocal.traffic.log import (
    SCHEDULER,
    TrafficRecorder,
    new_run_id,
    now,
    payload_bytes,
)



class RayTransport(Recovery, Pipelining):
    """Vertices in Ray actors: the driver starts them, dispatches one call per actor per
    batch, collects the results and recovers from actor deaths (the package docstring).
    The `Engine` (engines/engine.py) runs over it."""

    capabilities = CAPABILITIES["ray"]

    def __init__(self, graph: Graph, params: Params, config: EngineConfig,
                 traffic_settings: dict | None = None, asynchrony: Injection | None = None,
                 topology: str | None = None, ledger: StalenessLedger | None = None):
        """`config`: the run's (checked: capabilities, schedule); its `timeout` bounds any
        wait of the driver (actors starting, a batch, a restarted actor coming back);
        `traffic_log` a directory for the traffic log, `traffic_settings` going into its
        headers (eta, iterations, read_inputs: what the audit needs to count);
        `max_restarts`: how often Ray may restart each actor; `fault=(actor, batch)`: a
        testing aid, kill actor `actor` (its shard index) mid-batch in the `batch`-th
        batch (0-based), once; `vertices_per_actor`: K (runs of K vertices) or auto
        (about one shard per core, a min-cut partition weighed by the graph's shapes, or
        by the traffic log `placement_from`: placement.py, docs/placement.md).
        `asynchrony`: delays, loss and stragglers injected for real in the actors
        (engines/ray/asynchrony.py); an asynchronous run (it, or staleness > 0) with a
        traffic log also writes replay journals (docs/asynchrony.md §6), naming
        `topology` (the file) for the replay. `post_ahead`: training batches `run_many`
        keeps posted to the actors at once (docs/rounds.md §7; 1 where asynchronous).
        `ledger`: counts the weight staleness of pipelined updates (engines/staleness.py)."""
        self.graph = graph
        self.params = params
        self.config = config
        self.mode = config.mode
        self.schedule = config.resolved_schedule
        self.staleness = config.staleness
        self.dtype = config.dtype
        self.post_ahead = config.post_ahead
        self.placement = config.placement
        self.vertices_per_actor = config.vertices_per_actor
        self.timeout = config.timeout
        self.max_restarts = config.max_restarts
        self.traffic_log = config.traffic_log
        self.traffic_settings = dict(traffic_settings or {})
        self.recorder: TrafficRecorder | None = None
        self.asynchrony = asynchrony
        self.topology = topology
        self.journal: DriverJournal | None = None   # opened with the traffic log
        self.ledger = ledger if ledger is not None else StalenessLedger()
        self._piping = False   # the actors route messages through their lanes (pipelined.py)
        if config.pipeline > 1:
            check_pipelined(self)
        placement_from = config.placement_from
        if asynchrony is not None and self.vertices_per_actor == AUTO and placement_from is None:
            # injected delays and losses act on messages between actors: with auto, one
            # vertex per actor makes every message one (docs/asynchrony.md §6)
            self.vertices_per_actor = 1
        batch = self.traffic_settings.get("batch_size")
        self._weights = (None if placement_from is None else   # a bad log: before Ray starts
                         weights_from_log(placement_from, graph, batch))
        self._placement_from = placement_from
        self.partition: dict = {}
        self.shards: list = []   # known once the cluster's nodes are (auto: their cores)
        if self.vertices_per_actor != AUTO:
            self.shards = plan(graph, self.vertices_per_actor, ["-"], {}, self.placement, "-",
                               batch_size=batch).shards
        self.fault = check_fault(config.fault, len(self.shards)) if self.shards else config.fault
        self.actors: list = []
        self.actor_info: list[dict] = []
        self.setup_calls = 0
        self.restarts: list[Restart] = []   # every restart of this transport's life
        self.learning: Learning | None = None   # set by restore(): the vertices train
        self._snapshot: tuple | None = None     # (params, optimizer): the last snapshot
        self._since: list = []                  # batches since it, for a replay
        self._abandoned: dict = {}              # calls given up on, not read yet (_settle)
        self._batch = 0                  # batch ids sent to the shards (replays take new ones)
        self._relaxed = 0                # batches run, the numbering `fault` uses
        self._owns_ray = start_ray(config.address)
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
                      self._placement_from, self._cost_context())
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

    def _cost_context(self) -> CostContext | None:
        """What `auto` predicts batch times with when training (costmodel.py): the
        flop rate and a Ray hop's costs measured now (probe.py), the rounds a batch
        runs, the pipeline depth. None: every core offered gets a shard."""
        if self.vertices_per_actor != AUTO or not self.traffic_settings.get("learning"):
            return None   # a relaxation (check-grad) checks the packing on every core
        iterations = self.traffic_settings.get("iterations")
        rounds = iterations if isinstance(iterations, int) and iterations > 0 else \
            default_iterations(self.graph)
        table, recorded = ray_costs()
        return CostContext(table, rounds, self.config.pipeline, recorded,
                           schedule=self.schedule, eta=float(self.traffic_settings.get("eta", 1.0)),
                           mode=self.mode)

    def _new_actor(self, index: int, node: str, replacement: bool = False):
        """Shard `index`'s actor, on `node`."""
        # num_cpus=0: an actor mostly waits for messages; Ray must not refuse the
        # hundredth vertex on a 2-core machine for lack of "CPU" tokens.
        return (ShardActor.options(num_cpus=0, scheduling_strategy=placement_strategy(node),
                                   max_restarts=self.max_restarts)
                .remote(self._graph_ref, self.shards[index], shard_of(self.shards), self.mode,
                        self._traffic, replacement, self.asynchrony,
                        self.config.rounds != "message"))

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
        if self.actors and lifecycle.healthy():
            try:  # what does not answer in time dies with its actor (Ray reports no such error)
                self._settle(SETTLE_TIMEOUT)
            except Exception:
                pass
        for actor in self.actors if lifecycle.healthy() else ():
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone: nothing left behind
                pass
        self.actors = []
        if self._owns_ray:  # ray.shutdown(), then no process of that Ray outlives this
            lifecycle.shutdown_embedded()
        self._owns_ray = False

    # --- the Transport protocol ------------------------------------------------------------

    def load(self, params: Params) -> None:
        """Relaxing sends these parameters with every batch (each actor its vertices')."""
        self.params = params

    def restore_vertices(self, params: Params, optimizer, learning: Learning) -> None:
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

    def run(self, batch: Batch) -> Outcome:
        """One batch: the driver sends the settings and batch id, each actor's inputs and
        the target (and, relaxing, each actor's parameters); the shards' results come
        back. An actor lost on the way is restarted, restored and the batch replayed."""
        self._check_open()
        relaxing = batch.settings.learning is None
        results, settings, restarts = self._run_batch(
            batch.settings, batch.inputs, batch.target, batch.params if relaxing else None)
        if not relaxing:
            self._since.append((batch.settings, batch.inputs, batch.target))
        self._log_replies_now(settings.batch, results)
        report = self._relax_report(results, settings) if relaxing else \
            asynchrony_report(results)
        return Outcome(results, settings.batch, restarts, report)

    @property
    def ahead(self) -> int:
        """Batches `run_many` keeps posted: `post_ahead`, or 1 for an asynchronous run
        (staleness, injected asynchrony), whose replay journals follow one batch at a
        time (docs/asynchrony.md §6)."""
        if self.staleness > 0 or self.asynchrony is not None or self.journal is not None:
            return 1
        return self.post_ahead

    def run_many(self, batches, pipeline: int):
        """Training batches, yielding (batch, outcome) in order: the same outcomes, bit for
        bit, as `run` batch after batch (`pipeline` > 1: `run_groups`, pipelined.py).

        Posting ahead (docs/rounds.md §7): up to `ahead` batches are posted to the actors
        at once instead of waiting for one batch's results before posting the next.
        Every actor runs its batches strictly in order (`run_batch`'s `after`) and
        begins the next only when its own vertices are done with the previous one:
        updates applied, and the new values of tied copies received from their owners.
        Each vertex owns its weights, so they are then exactly the synchronous ones.
        An actor lost under a batch: every batch in flight is abandoned, the lost actor
        restarted and every actor restored and replayed (`restart_lost_actors`), and
        the batches in flight posted again under fresh ids. `fault`'s batch runs alone
        (the batches before it collected first, none posted before it is), so the actor
        dies under exactly that batch and it is the one batch abandoned, as with 1."""
        if pipeline > 1:   # K batches in flight, as the local engine's (pipelined.py)
            self.ledger.begin_run()
            yield from self.run_groups(batches, pipeline)
            return
        ahead = self.ahead
        if ahead == 1:
            for batch in batches:
                yield batch, self.run(batch)
            return
        self._check_open()
        source = iter(batches)
        flight: deque[_Posted] = deque()
        waiting: list = []   # a batch read but held back (the fault's batch waits for a drain)
        alone = None if self.fault is None else self.fault[1]
        try:
            while True:
                lifecycle.check_embedded()  # per batch, as run: a dead GCS or raylet
                while len(flight) < ahead:
                    if not waiting:
                        batch = next(source, None)
                        if batch is None:
                            break
                        waiting.append(_Posted(batch, self._relaxed))
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
                    self._abandon(c for posted in flight for c in posted.calls)
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
                source_batch = oldest.batch
                self._since.append((source_batch.settings, source_batch.inputs,
                                    source_batch.target))
                self._log_replies_now(oldest.settings.batch, results)
                yield source_batch, Outcome(results, oldest.settings.batch, oldest.restarts,
                                            asynchrony_report(results))
        except GeneratorExit:
            raise
        except BaseException as exc:
            failure = lifecycle.ray_failure(exc)  # a dead GCS or raylet: one line, exit 2
            self.close()  # actors are mid-batch, waiting for peers that will never speak
            if failure is not None:
                raise failure from None
            raise

    def snapshot_parts(self) -> list[dict]:
        """Every actor's part of a snapshot at this batch boundary (logged as replies
        under a batch id of their own when a traffic log is kept)."""
        self._check_open()
        try:
            parts = gather([a.snapshot_vertices.remote() for a in self.actors], self.timeout,
                           self._describe_actors(), "hand over its snapshot")
        except BaseException as exc:
            failure = lifecycle.ray_failure(exc)  # a dead GCS or raylet: one line, exit 2
            self.close()
            if failure is not None:
                raise failure from None
            raise
        if self.recorder is not None:   # a batch id of its own: replies only, no vertex traffic
            t = now()
            snapshot_id, self._batch = self._batch, self._batch + 1
            for i, part in enumerate(parts):
                self.recorder.record(snapshot_id, 0, actor_name(i), SCHEDULER,
                                     "control", payload_bytes(part), t, t,
                                     self.actor_info[i]["host"], self.scheduler_host,
                                     actor_name(i), SCHEDULER)
            self.recorder.flush()
        return parts

    def keep_snapshot(self, params: Params, optimizer: dict) -> None:
        """The state a restarted actor is restored from, kept on the driver (objects an
        actor put would die with it); the batches since it start again from none."""
        self._snapshot = ({v: {k: np.array(a, copy=True) for k, a in ps.items()}
                           for v, ps in params.items()}, dict(optimizer))
        self._since = []
        if self.journal is not None:
            self.journal.snapshot_taken(*self._snapshot)

    def completed(self, batch: Batch, outcome: Outcome, result) -> None:
        """The replay journal of an asynchronous run records the batch and its result."""
        if self.journal is None:
            return
        settings = batch.settings.with_batch(outcome.batch)
        if settings.learning is None:
            self.journal.relaxed(settings, batch.params, batch.inputs, batch.target, result,
                                 outcome.results)
        else:
            self.journal.trained(settings, batch.inputs, batch.target, result, outcome.results)

    def report(self) -> dict:
        return {"actors": self.actor_info,
                "nodes": len({a["node_id"] for a in self.actor_info}),
                "vertices_per_actor": self.vertices_per_actor, "partition": self.partition,
                "placement": self.placement}

    def _post(self, posted: "_Posted", flight: deque) -> None:
        """Post one batch under a fresh id, after the newest batch in flight; kill the
        fault's victim right after its batch is posted."""
        after = flight[-1].settings.batch if flight else None
        source = posted.batch
        posted.settings = source.settings.with_batch(self._batch)
        self._batch += 1
        posted.dispatched = now()
        posted.calls = self._dispatch(posted.settings, source.inputs, source.target, None, after)
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

    def _log_replies(self, batch: int, results: list[dict], t_recv: float) -> None:
        spec_hosts = [a["host"] for a in self.actor_info]
        me = self.scheduler_host
        for i, result in enumerate(results):
            nbytes = payload_bytes([v for k, v in result.items() if k != "t_send"])
            self.recorder.record(batch, 0, actor_name(i), SCHEDULER, "control", nbytes,
                                 result["t_send"], t_recv, spec_hosts[i], me, actor_name(i),
                                 SCHEDULER)

    def _relax_report(self, results: list[dict], settings: RunSettings) -> dict:
        """A relaxation's account of the actors: where they ran, the calls and messages."""
        counts = {k: sum(r["counts"][k] for r in results)
                  for k in ("local_messages", "remote_messages", "remote_calls")}
        report = {**self.report(), "staleness": settings.staleness,
                  "scheduler_calls": {"setup": self.setup_calls, "per_batch": len(self.actors)},
                  "message_counts": counts}
        injected = asynchrony_report(results)
        if injected is not None:
            report.update(injected)
        return report

    def _log_replies_now(self, batch: int, results: list[dict]) -> None:
        """The actors' replies of a batch into the traffic log (the engine then writes the
        batch's energy and flushes)."""
        if self.recorder is not None:
            self._log_replies(batch, results, now())


@dataclass
class _Posted:
    """A training batch `run_many` has read: the engine's batch, its index (what `fault`
    counts) and, once posted, its settings (batch id), calls and restarts."""
    batch: Batch
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


def check_fault(fault, actors: int) -> tuple[int, int] | None:
    """`(actor index, batch index)` within range, or None."""
    if fault is None:
        return None
    try:
        actor, batch = fault
    except (TypeError, ValueError):
        raise ConfigError(f"expected (actor, batch), two whole numbers, got {fault!r}",
                          field="fault") from None
    actor = number("fault", actor, whole=True, minimum=0)
    batch = number("fault", batch, whole=True, minimum=0)
    if actor >= actors:
        raise ConfigError(f"actor {actor} does not exist (this run has actors 0..{actors - 1})",
                          field="fault")
    return actor, batch


def check_staleness(staleness) -> None:
    number("staleness", staleness, whole=True, minimum=0)


class RayEngine(Engine):
    """Predictive coding with vertices in Ray actors: the `Engine` over `RayTransport`.
    Use as a context manager, or call `close()`. Keyword arguments are the transport's
    settings (`EngineConfig`'s fields of the same names); `config`: all of them at once
    (then `asynchrony` and `topology` come from its `sim` settings)."""

    def __init__(self, graph: Graph, params: Params | None = None, mode: str = "fixed",
                 seed: int = 0, *, schedule: str = "jacobi", address: str | None = ADDRESS_LOCAL,
                 vertices_per_actor: int | str = 1, staleness: int = 0,
                 placement: str = "spread", placement_from: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, traffic_log: str | None = None,
                 traffic_settings: dict | None = None,
                 max_restarts: int = DEFAULT_MAX_RESTARTS,
                 fault: tuple[int, int] | None = None,
                 asynchrony: Injection | None = None, topology: str | None = None,
                 dtype: str = "float64", post_ahead: int = DEFAULT_POST_AHEAD,
                 config: EngineConfig | None = None):
        if config is None:
            config = EngineConfig(engine="ray", mode=mode, schedule=schedule,
                                  address=ADDRESS_LOCAL if address is None else address,
                                  vertices_per_actor=vertices_per_actor, staleness=staleness,
                                  placement=placement, placement_from=placement_from,
                                  timeout=timeout, traffic_log=traffic_log,
                                  max_restarts=max_restarts, fault=fault, dtype=dtype,
                                  post_ahead=post_ahead)
        else:
            from neurolocal.engines.ray.asynchrony import injection_from_config

            asynchrony = asynchrony or injection_from_config(config, graph)
            topology = topology or getattr(config.sim, "topology", None)
        Engine.check(config, graph, RayTransport)
        params = initial_params(graph, params, seed, config.dtype)
        ledger = StalenessLedger()
        transport = RayTransport(graph, params, config, traffic_settings, asynchrony, topology,
                                 ledger)
        super().__init__(config, graph, params, transport, ledger)

    # the transport's own state, as the tests and scripts read it
    actors = property(lambda self: self.transport.actors)
    actor_info = property(lambda self: self.transport.actor_info)
    ahead = property(lambda self: self.transport.ahead)
    partition = property(lambda self: self.transport.partition)
    shards = property(lambda self: self.transport.shards)
    restarts = property(lambda self: self.transport.restarts)

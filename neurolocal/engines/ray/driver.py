"""The driver: `RayEngine` starts the actors, dispatches one call per actor per batch,
collects the results and recovers from actor deaths (see the package docstring)."""

from __future__ import annotations

import os
import time

import ray

from neurolocal.engines.base import Relaxation, check_relaxation_settings, prepare_batch
from neurolocal.engines.ray.actor import (
    ActorNotReady,
    ShardActor,
    TrafficSpec,
    actor_name,
    host_label,
)
from neurolocal.engines.ray.connection import ADDRESS_LOCAL, start_ray
from neurolocal.engines.ray.nodes import (
    alive_nodes,
    placement_strategy,
    replacement_node,
    restart_cause,
)
from neurolocal.engines.ray.placement import assign_nodes, partition, shard_of
from neurolocal.errors import ConfigError, EngineError
from neurolocal.graph import Graph, Params
from neurolocal.shard import RunSettings
from neurolocal.traffic.log import (
    SCHEDULER,
    TrafficRecorder,
    new_run_id,
    now,
    payload_bytes,
)

#: seconds any driver wait may take (actors starting, one batch) before the run fails
DEFAULT_TIMEOUT = 300.0


#: seconds a late actor has to answer a ping before its node counts as unreachable
PING_TIMEOUT = 5.0
#: how often Ray may restart one actor that died before the run gives up
DEFAULT_MAX_RESTARTS = 3


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
                 seed: int = 0, *, address: str | None = ADDRESS_LOCAL,
                 vertices_per_actor: int = 1, staleness: int = 0, placement: str = "spread",
                 timeout: float = DEFAULT_TIMEOUT, traffic_log: str | None = None,
                 traffic_settings: dict | None = None,
                 max_restarts: int = DEFAULT_MAX_RESTARTS,
                 fault: tuple[int, int] | None = None):
        """`timeout`: seconds any wait of the driver may take (actors starting, a batch,
        a restarted actor coming back). `traffic_log`: a directory for the traffic log;
        `traffic_settings` go into its headers (eta, iterations, read_inputs: what the
        audit needs to count). `max_restarts`: how often Ray may restart each actor.
        `fault=(actor, batch)`: a testing aid, kill actor `actor` (its shard index)
        mid-batch in the `batch`-th relaxation (0-based), once."""
        if mode != "fixed":
            raise ConfigError("the ray engine runs fixed mode only (strict mode would add a "
                              "value exchange to every round); use --engine local for strict",
                              field="mode")
        check_staleness(staleness)
        self.graph = graph
        self.params = params if params is not None else graph.init_params(seed)
        self.mode = mode
        self.staleness = staleness
        self.placement = placement
        self.vertices_per_actor = vertices_per_actor
        if not timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout}",
                              field="timeout")
        self.timeout = float(timeout)
        self.traffic_log = traffic_log
        self.traffic_settings = dict(traffic_settings or {})
        self.recorder: TrafficRecorder | None = None
        self.shards = partition(graph, vertices_per_actor)
        assign_nodes(len(self.shards), ["-"], placement, "-")  # reject a bad name before Ray starts
        if isinstance(max_restarts, bool) or int(max_restarts) != max_restarts \
                or max_restarts < 0:
            raise ConfigError(f"expected a whole number >= 0, got {max_restarts}",
                              field="max_restarts")
        self.max_restarts = int(max_restarts)
        self.fault = check_fault(fault, len(self.shards))
        self.actors: list = []
        self.actor_info: list[dict] = []
        self.setup_calls = 0
        self.restarts: list[dict] = []   # every restart of this engine's life
        self._batch = 0                  # batch ids sent to the shards (replays take new ones)
        self._relaxed = 0                # relax() calls, the numbering `fault` uses
        self._owns_ray = start_ray(address)
        try:
            self._start_actors()
        except BaseException:
            self.close()
            raise

    # --- lifecycle -----------------------------------------------------------------------

    def _start_actors(self) -> None:
        graph = self.graph
        driver_node = ray.get_runtime_context().get_node_id()
        alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        nodes = [driver_node] * (driver_node in alive) + [n for n in alive if n != driver_node]
        where = assign_nodes(len(self.shards), nodes, self.placement, driver_node)
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
                        self._traffic, replacement))

    def _replace_actor(self, index: int, alive: dict) -> None:
        """Node loss: re-create shard `index`'s actor on a surviving node. Its vertices
        hold no state of their own (the driver sends the parameters with each batch),
        so the replacement is the lost actor; the caller connects every actor to it."""
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
                    "schedule": "jacobi" if self.staleness == 0 else "async",
                    "staleness": self.staleness, "vertices_per_actor": self.vertices_per_actor,
                    "placement": self.placement, **self.traffic_settings}
        directory = os.path.abspath(self.traffic_log)
        run = new_run_id()
        self.recorder = TrafficRecorder(directory, run, SCHEDULER, graph=self.graph.name,
                                        settings=settings)
        self.recorder.flush()  # the header, even if no batch ever runs
        self.scheduler_host = labels[driver_node]
        return TrafficSpec(directory, run, self.graph.name, settings,
                           tuple(actor_name(i) for i in range(len(where))),
                           tuple(labels[node] for node in where), labels[driver_node])

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
                ray.wait([a.flush_log.remote() for a in self.actors],
                         num_returns=len(self.actors), timeout=10)
            except Exception:
                pass
            self.recorder.flush()
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone: nothing left behind
                pass
        self.actors = []
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False

    def __enter__(self) -> "RayEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- one batch -----------------------------------------------------------------------

    def relax(self, inputs, target, eta: float = 1.0, iterations: int | None = None,
              read_inputs: bool = False, staleness: int | None = None) -> Relaxation:
        graph = self.graph
        if not self.actors:
            raise RuntimeError("this RayEngine is closed")
        iterations = graph.depth if iterations is None else iterations
        check_relaxation_settings(eta, iterations, self.mode)
        staleness = self.staleness if staleness is None else staleness
        check_staleness(staleness)
        inputs, target = prepare_batch(graph, inputs, target)
        index, self._relaxed = self._relaxed, self._relaxed + 1
        restarts: list[dict] = []
        try:
            while True:  # one attempt per pass; a lost actor makes a replay
                settings = RunSettings(self._batch, float(eta), int(iterations),
                                       int(staleness), bool(read_inputs))
                self._batch += 1  # numbered from 0, as the local engine's log
                dispatched = now()
                calls = self._dispatch(settings, inputs, target)
                if self.fault is not None and self.fault[1] == index:
                    victim = self.fault[0]
                    self.fault = None  # once: the replay must not be killed again
                    ray.kill(self.actors[victim], no_restart=False)
                try:
                    results = gather(calls, self.timeout, self._describe_actors(),
                                     "finish its batch")
                    break
                except ActorLost as lost:  # Ray restarts it, unless it may not (max_restarts)
                    restarts += self._recover(lost, index, settings.batch, dispatched)
                except ActorsLate as late:  # a partition, or a node too slow: say which
                    raise EngineError(self._unreachable(late)) from None
        except BaseException:
            self.close()  # actors are mid-batch, waiting for peers that will never speak
            raise
        relaxation = self._assemble(results, settings, scheduler_calls=len(calls))
        relaxation.extras["restarts"] = restarts
        if self.recorder is not None:
            self._log_replies(settings.batch, results, now())
            self.recorder.record_energy(settings.batch, relaxation.energy)
            self.recorder.flush()
        return relaxation

    def _dispatch(self, settings: RunSettings, inputs, target) -> list:
        """One `run_batch` call per actor: its parameters, its inputs' data, the target."""
        calls = []
        for actor, names in zip(self.actors, self.shards):
            params = {n: self.params[n] for n in names if n in self.params}
            data = {n: inputs[n] for n in names if n in inputs}
            calls.append(actor.run_batch.remote(settings, params, data,
                                                target if self.graph.output in names else None,
                                                now()))
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
        seconds = now() - dispatched
        records = [{"batch": index, "abandoned_batch_id": batch, "actor": actor_name(i),
                    "vertices": list(self.shards[i]), "seconds": seconds,
                    "cause": restart_cause(before[i]["node_id"], alive),
                    "node": before[i].get("ip"), "now_on": self.actor_info[i].get("ip")}
                   for i in back]
        self.restarts += records
        return records

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
            nbytes = payload_bytes([result["dtheta"], result["errors"], result["input_feedback"]])
            self.recorder.record(batch, 0, actor_name(i), SCHEDULER, "control", nbytes,
                                 result["t_send"], t_recv, spec_hosts[i], me, actor_name(i),
                                 SCHEDULER)

    def _assemble(self, results: list[dict], settings: RunSettings,
                  scheduler_calls: int) -> Relaxation:
        graph = self.graph
        merged = {k: {} for k in ("dtheta", "errors", "input_feedback", "energy")}
        counts = {"local_messages": 0, "remote_messages": 0, "remote_calls": 0}
        for result in results:
            for key in merged:
                merged[key].update(result[key])
            for key in counts:
                counts[key] += result["counts"][key]
            if "loss" in result:
                loss, prediction = result["loss"], result["prediction"]
        energy = [sum(merged["energy"][n][r] for n in graph.order)
                  for r in range(settings.iterations + 1)]
        report = {
            "actors": self.actor_info,
            "nodes": len({a["node_id"] for a in self.actor_info}),
            "vertices_per_actor": self.vertices_per_actor,
            "placement": self.placement,
            "staleness": settings.staleness,
            "scheduler_calls": {"setup": self.setup_calls, "per_batch": scheduler_calls},
            "message_counts": counts,
        }
        return Relaxation(
            dtheta={n: merged["dtheta"][n] for n in graph.order if n in merged["dtheta"]},
            errors={n: merged["errors"][n] for n in graph.order if n in merged["errors"]},
            input_feedback=({n: merged["input_feedback"][n] for n in graph.inputs}
                            if settings.read_inputs else {}),
            energy=energy,
            loss=loss,
            prediction=prediction,
            messages=counts["local_messages"] + counts["remote_messages"],
            extras={"report": report},
        )


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
        raise ConfigError(f"expected ACTOR:BATCH (two whole numbers), got {fault!r}",
                          field="fault") from None
    if not 0 <= actor < actors:
        raise ConfigError(f"actor {actor} does not exist (this run has actors 0..{actors - 1})",
                          field="fault")
    if batch < 0:
        raise ConfigError(f"batch must be >= 0, got {batch}", field="fault")
    return actor, batch


def check_staleness(staleness) -> None:
    if isinstance(staleness, bool) or int(staleness) != staleness or staleness < 0:
        raise ConfigError(f"staleness must be a whole number >= 0, got {staleness}",
                          field="staleness")

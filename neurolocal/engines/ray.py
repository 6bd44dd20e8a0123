"""The distributed engine: vertices live in Ray actors and push messages to each other.

Each actor wraps a `Shard` (neurolocal/shard.py: one or more vertex rules, Ray-free)
and holds handles only to the actors of its vertices' parents and children. An
actor posts each batch of outgoing messages with one fire-and-forget `.remote()`
per destination actor and never waits on another actor.

The driver is a thin scheduler that relays no payloads. Per batch it makes one
call per actor, `run_batch(settings, params, inputs, target)`: it carries the
shard's parameters, the data of its input vertices and the target if the output
lives there, and it returns when the shard's vertices have finished their T
rounds, with scalars (energy per round, message counts) and the shard's own
dtheta. So a batch costs the driver O(actors) calls whatever T is.

Ray lifecycle: an `address` of "local" starts an embedded Ray (no dashboard) that
`close()` shuts down again; "auto" or "HOST:PORT" joins an existing cluster
(whose token authentication, if on, the environment must carry: RAY_AUTH_MODE=token
and RAY_AUTH_TOKEN or ~/.ray/auth_token). If Ray is already initialised in this
process, the engine uses it and leaves it running. Actors are killed in `close()`,
which `with RayEngine(...)` calls even when a run fails; a batch that fails (an
actor raised, died, or did not answer within `timeout` seconds) closes the engine
itself, since its actors are left mid-batch.

Actor faults (DESIGN.md §5). Every actor may be restarted by Ray `max_restarts`
times. When an actor dies during a batch, its `run_batch` call fails (Ray notices
within about a second, never the full timeout); the driver then waits, at most
`timeout` seconds, for Ray to bring it back, connects every actor to its
neighbours again, and replays the interrupted batch under a fresh batch id. The
shards drop messages of older batches, so late messages of the failed attempt
cannot leak into the replay. A restarted actor holds no state worth restoring:
the driver holds the parameters and the optimizer state and sends every shard its
parameters with each batch, so the restarted vertices restart from the last
committed state, the parameters at the start of the interrupted batch (the
trainer's epoch checkpoint on disk is the durable copy of that state). The replay
is bit for bit the batch that failed. Each restart is recorded (batch, actor,
vertices, seconds lost: from the failed attempt's dispatch to the replay's, about 2 s
on a quiet 2-core machine, mostly Ray noticing the death) in the Relaxation's
`extras["restarts"]`; a restarted actor's first batch also pays its process's
kernel load (about 0.5 s), not counted there. An actor that
cannot come back (restarts exhausted, or not back within `timeout`) ends the run
with an `EngineError` naming it. `fault=(actor, batch)` is a testing aid: the
driver kills that actor with `ray.kill(..., no_restart=False)` right after
dispatching the calls of its `batch`-th relaxation (0-based), once.

Traffic log (`traffic_log=DIR`): every actor writes its own stream
`<run>.actor-<i>.traffic` (in DIR on the machine it runs on) with the messages its
vertices received, local or remote; the driver writes `<run>.scheduler.traffic`
with the per-batch control calls' replies and the energy per round. Hosts are
labelled `hostname/node-id prefix`, so simulated nodes of one machine differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

import neurolocal
from neurolocal.engines.base import Relaxation, check_relaxation_settings, prepare_batch
from neurolocal.errors import ConfigError, EngineError
from neurolocal.graph import Graph, Params
from neurolocal.placement import assign_nodes, partition, shard_of
from neurolocal.shard import RunSettings, Shard, ShardLog
from neurolocal.traffic.log import SCHEDULER, TrafficRecorder, new_run_id, now, payload_bytes

ADDRESS_LOCAL = "local"
#: seconds any driver wait may take (actors starting, one batch) before the run fails
DEFAULT_TIMEOUT = 300.0
#: seconds to wait for a cluster's address to accept a connection
CONNECT_TIMEOUT = 10.0
#: seconds a late actor has to answer a ping before its node counts as unreachable
PING_TIMEOUT = 5.0
#: how often Ray may restart one actor that died before the run gives up
DEFAULT_MAX_RESTARTS = 3


class ActorNotReady(Exception):
    """Raised by an actor that Ray restarted but the driver has not connected yet."""


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


@dataclass(frozen=True)
class TrafficSpec:
    """What an actor needs to open its own traffic stream."""
    directory: str
    run: str
    graph: str
    settings: dict
    actors: tuple[str, ...]   # actor name per shard index
    hosts: tuple[str, ...]    # host label per shard index
    scheduler_host: str


def actor_name(index: int) -> str:
    return f"actor-{index}"


def host_label(node: dict) -> str:
    """hostname@address/node-id prefix: machines differ by name and address (network
    namespaces on one machine share the name), simulated nodes of one host by id."""
    name = node.get("NodeManagerHostname") or socket.gethostname()
    address = node.get("NodeManagerAddress")
    return f"{name}@{address}/{node['NodeID'][:8]}" if address else f"{name}/{node['NodeID'][:8]}"


def placement_strategy(node: str) -> NodeAffinitySchedulingStrategy:
    """Where an actor runs: on `node`, strictly (soft affinity lets Ray's scheduler put
    it elsewhere even while `node` is alive: seen, 16 actors on 3 of 4 nodes). When
    `node` is lost Ray cannot restart the actor there and it dies for good; the engine
    then re-creates it on a surviving node (`RayEngine._replace_actor`)."""
    return NodeAffinitySchedulingStrategy(node_id=node, soft=False)


def alive_nodes() -> dict[str, dict]:
    """The cluster's alive nodes, by node id, as the GCS sees them now."""
    return {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}


def restart_cause(old_node: str, alive: dict) -> str:
    """"node_lost" when the node an actor ran on is gone (every actor there was
    re-created elsewhere), "actor_died" when only the actor's process died."""
    return "actor_died" if old_node in alive else "node_lost"


def package_parent() -> str:
    """The directory that holds the `neurolocal` package (a source tree or site-packages)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(neurolocal.__file__)))


def worker_runtime_env(remote: bool = False) -> dict:
    """How Ray workers find this very `neurolocal`: on this machine through PYTHONPATH
    (no copy); on a remote cluster the package is uploaded with `py_modules`.
    NUMBA_CACHE_DIR is passed on when set, so workers share compiled kernels."""
    env = {k: os.environ[k] for k in ("NUMBA_CACHE_DIR",) if k in os.environ}
    if remote:
        return {"py_modules": [os.path.dirname(os.path.abspath(neurolocal.__file__))],
                "env_vars": env}
    path = [package_parent()] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                 if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    return {"env_vars": env}


def start_ray(address: str | None) -> bool:
    """Initialise Ray unless it already is; True when this call started it (and owns it)."""
    if ray.is_initialized():
        return False
    address = address or ADDRESS_LOCAL
    remote = address != ADDRESS_LOCAL
    check_reachable(address)
    if remote:  # Ray retries a silent GCS once a second for a minute by default
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "5")
        from neurolocal.cluster import check_cluster_access

        check_cluster_access(address)  # a missing or wrong token: one line, not Ray's retries
    try:
        with stderr_kept_unless_failing():
            ray.init(address=address, include_dashboard=False if not remote else None,
                     runtime_env=worker_runtime_env(remote), logging_level="warning",
                     log_to_driver=False, **driver_node_ip())
    except (ConnectionError, ValueError, RuntimeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot reach Ray at {address!r}: {detail}", field="address") from None
    return True


#: the address of this machine's own Ray node, when Ray cannot tell (see driver_node_ip)
NODE_IP_VARIABLE = "NEUROLOCAL_NODE_IP"


def driver_node_ip() -> dict:
    """`ray.init` options naming the raylet this driver belongs to, when
    $NEUROLOCAL_NODE_IP says. Ray finds "local" raylets by scanning the process table;
    with several network namespaces on one machine (neurolocal/netns.py) it sees every
    namespace's raylet and would pick the head's, which this driver cannot reach. The
    variable names the node IP of the raylet in the driver's own namespace."""
    node_ip = os.environ.get(NODE_IP_VARIABLE, "").strip()
    return {"_node_ip_address": node_ip} if node_ip else {}


@contextlib.contextmanager
def stderr_kept_unless_failing():
    """Hold what Ray's C++ core writes to stderr while connecting: replayed when the
    connection works, dropped when it fails (our one-line error says what happened)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to hold
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if not failed:
                held.seek(0)
                os.write(2, held.read())


def check_reachable(address: str) -> None:
    """Fail fast, in one line, when HOST:PORT does not accept a connection (ray.init
    would retry for minutes). "local" and "auto" are Ray's to resolve."""
    if address in (ADDRESS_LOCAL, "auto") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"expected local, auto or HOST:PORT, got {address!r}", field="address")
    try:
        speaks_grpc = answers_http2(host, int(port))
    except OSError as exc:
        raise ConfigError(f"cannot reach Ray at {address!r}: {exc.strerror or exc}; nothing "
                          f"answers at {address}: is `ray start --head` running there, and is "
                          "the port reachable from this machine?", field="address") from None
    if not speaks_grpc:
        raise ConfigError(f"{address!r} answers but is not a Ray cluster (its GCS speaks gRPC)",
                          field="address")


def answers_http2(host: str, port: int) -> bool:
    """Does HOST:PORT answer the HTTP/2 preface with a SETTINGS frame, as a gRPC server
    (Ray's GCS) does? Bounded by CONNECT_TIMEOUT; OSError when it cannot connect."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
    with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT) as connection:
        connection.sendall(preface)
        frame = b""
        while len(frame) < 9:
            chunk = connection.recv(9 - len(frame))
            if not chunk:
                break
            frame += chunk
    return len(frame) == 9 and frame[3] == 4  # frame type 4: SETTINGS


@ray.remote
class ShardActor:
    """A thin Ray wrapper over `Shard`: it posts outgoing messages fire-and-forget and
    answers `run_batch` once its vertices are done. An asyncio actor: each method
    runs to completion without awaiting in between, so the shard needs no locks."""

    def __init__(self, graph: Graph, names, owners, mode: str, traffic: TrafficSpec | None,
                 replacement: bool = False):
        """`replacement`: a new actor standing in for one lost with its node (it writes
        a stream of its own, as a restarted one)."""
        log = None
        self.name = actor_name(owners[names[0]])
        self.traffic = traffic
        with warnings.catch_warnings():  # Ray 2.60 reads its own deprecated actor_id here
            warnings.simplefilter("ignore", DeprecationWarning)
            self.restarted = (replacement
                              or ray.get_runtime_context().was_current_actor_reconstructed)
        if traffic is not None:
            recorder = TrafficRecorder(traffic.directory, traffic.run, self.writer_name(),
                                       graph=traffic.graph, settings=traffic.settings)
            log = ShardLog(recorder, traffic.actors, traffic.hosts)
        self.shard = Shard(graph, names, owners, mode, log)
        self.peers: dict | None = None   # None until the driver connects this incarnation
        self.finished: asyncio.Event | None = None
        self.failure: BaseException | None = None

    def writer_name(self) -> str:
        """A restarted actor opens a stream of its own (`actor-3-restart-1`): its dead
        predecessor's stream may end in a cut record, and one header per stream."""
        if not self.restarted:
            return self.name
        spec, k = self.traffic, 1
        while os.path.exists(os.path.join(spec.directory,
                                          f"{spec.run}.{self.name}-restart-{k}.traffic")):
            k += 1
        return f"{self.name}-restart-{k}"

    async def connect(self, peers: dict) -> dict:
        self.peers = peers
        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "ip": ray.util.get_node_ip_address(),
                "pid": os.getpid(), "restarted": self.restarted}

    async def run_batch(self, settings: RunSettings, params, inputs, target,
                        t_send: float = 0.0) -> dict:
        if self.peers is None:
            raise ActorNotReady(f"{self.name} was restarted and is not connected yet")
        if self.finished is not None and not self.finished.is_set():
            self.finished.set()  # a replay supersedes a batch a dead peer left unfinished
        if self.traffic is not None:  # the scheduler's call is a control message
            me = self.shard.index
            self.shard.log.recorder.record(
                settings.batch, 0, SCHEDULER, self.name, "control",
                payload_bytes([params, inputs, target]), t_send, now(),
                self.traffic.scheduler_host, self.traffic.hosts[me], SCHEDULER, self.name)
        self.finished = finished = asyncio.Event()
        self._post(self.shard.begin(settings, params, inputs, target))
        await finished.wait()
        if self.finished is not finished:  # superseded: the driver no longer waits for it
            return {"abandoned": settings.batch}
        self.shard.flush_log()
        if self.failure is not None:
            raise self.failure
        return {**self.shard.result(), "t_send": now()}

    async def ping(self) -> int:
        """Answered even mid-batch (an asyncio actor): is this actor reachable?"""
        return os.getpid()

    async def set_hosts(self, hosts: tuple[str, ...]) -> None:
        """The host of every shard index, after actors moved to other nodes (a node was
        lost): the traffic log names where each message really came from and went."""
        if self.traffic is not None:
            self.traffic = dataclasses.replace(self.traffic, hosts=tuple(hosts))
            self.shard.log = dataclasses.replace(self.shard.log, hosts=tuple(hosts))

    async def flush_log(self) -> None:
        """Late messages of an asynchronous batch reach the log too."""
        self.shard.flush_log()

    async def deliver(self, messages) -> None:
        try:
            self._post(self.shard.deliver(messages))
        except Exception as exc:  # nobody awaits this call: wake run_batch to report it
            self.failure = exc
            if self.finished is not None:
                self.finished.set()
            raise

    def _post(self, outgoing) -> None:
        for destination, messages in outgoing.items():
            self.peers[destination].deliver.remote(messages)
        if self.finished is not None and self.shard.done:
            self.finished.set()


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
        """Node loss: re-create shard `index`'s actor on the surviving node that holds
        the fewest actors (ties: the lowest node id). Its vertices hold no state of their
        own (the driver sends the parameters with each batch), so the replacement is
        the lost actor; the caller connects every actor to it again."""
        load = {node: 0 for node in alive}
        for info in self.actor_info:
            if info["node_id"] in load:
                load[info["node_id"]] += 1
        node = min(sorted(load), key=load.__getitem__)
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

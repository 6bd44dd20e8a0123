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
which `with RayEngine(...)` calls even when a run fails.
"""

from __future__ import annotations

import asyncio
import os

import numpy as np
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

import neurolocal
from neurolocal.engines.base import Relaxation, check_relaxation_settings, prepare_batch
from neurolocal.errors import ConfigError
from neurolocal.graph import Graph, Params
from neurolocal.placement import assign_nodes, partition, shard_of
from neurolocal.shard import RunSettings, Shard

ADDRESS_LOCAL = "local"


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
    if remote:  # a missing token or a dead address: one line now, not a 20 s retry loop
        from neurolocal.cluster import check_cluster_access

        check_cluster_access(address)
    try:
        ray.init(address=address, include_dashboard=False if not remote else None,
                 runtime_env=worker_runtime_env(remote), logging_level="warning",
                 log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot reach Ray at {address!r}: {detail}", field="address") from None
    return True


@ray.remote
class ShardActor:
    """A thin Ray wrapper over `Shard`: it posts outgoing messages fire-and-forget and
    answers `run_batch` once its vertices are done. An asyncio actor: each method
    runs to completion without awaiting in between, so the shard needs no locks."""

    def __init__(self, graph: Graph, names, owners, mode: str):
        self.shard = Shard(graph, names, owners, mode)
        self.peers: dict = {}
        self.finished: asyncio.Event | None = None
        self.failure: BaseException | None = None

    async def connect(self, peers: dict) -> dict:
        self.peers = peers
        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "ip": ray.util.get_node_ip_address(),
                "pid": os.getpid()}

    async def run_batch(self, settings: RunSettings, params, inputs, target) -> dict:
        self.finished = asyncio.Event()
        self._post(self.shard.begin(settings, params, inputs, target))
        await self.finished.wait()
        if self.failure is not None:
            raise self.failure
        return self.shard.result()

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
                 vertices_per_actor: int = 1, staleness: int = 0, placement: str = "spread"):
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
        self.shards = partition(graph, vertices_per_actor)
        assign_nodes(len(self.shards), ["-"], placement, "-")  # reject a bad name before Ray starts
        self.actors: list = []
        self.actor_info: list[dict] = []
        self.setup_calls = 0
        self._batch = 0
        self._owns_ray = start_ray(address)
        try:
            self._start_actors()
        except BaseException:
            self.close()
            raise

    # --- lifecycle -----------------------------------------------------------------------

    def _start_actors(self) -> None:
        graph, owners = self.graph, shard_of(self.shards)
        driver_node = ray.get_runtime_context().get_node_id()
        alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        nodes = [driver_node] * (driver_node in alive) + [n for n in alive if n != driver_node]
        where = assign_nodes(len(self.shards), nodes, self.placement, driver_node)
        graph_ref = ray.put(graph)
        for names, node in zip(self.shards, where):
            strategy = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
            # num_cpus=0: an actor mostly waits for messages; Ray must not refuse the
            # hundredth vertex on a 2-core machine for lack of "CPU" tokens.
            self.actors.append(ShardActor.options(num_cpus=0, scheduling_strategy=strategy)
                               .remote(graph_ref, names, owners, self.mode))
        calls = [actor.connect.remote({j: self.actors[j] for j in self._neighbour_shards(i)})
                 for i, actor in enumerate(self.actors)]
        self.setup_calls = len(calls)
        infos = ray.get(calls)
        self.actor_info = [{"actor": i, "vertices": list(names), **info}
                           for i, (names, info) in enumerate(zip(self.shards, infos))]

    def _neighbour_shards(self, index: int) -> list[int]:
        """Shards hosting a parent or child of one of this shard's vertices."""
        owners = shard_of(self.shards)
        near = {owners[m] for n in self.shards[index]
                for m in (*self.graph.parents(n), *self.graph.children[n])}
        return sorted(near - {index})

    def close(self) -> None:
        """Kill every actor; shut Ray down if this engine started it. Safe to call twice."""
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
        self._batch += 1
        settings = RunSettings(self._batch, float(eta), int(iterations), int(staleness),
                               bool(read_inputs))
        calls = []
        for actor, names in zip(self.actors, self.shards):
            params = {n: self.params[n] for n in names if n in self.params}
            data = {n: inputs[n] for n in names if n in inputs}
            calls.append(actor.run_batch.remote(settings, params, data,
                                                target if graph.output in names else None))
        results = gather(calls)
        return self._assemble(results, settings, scheduler_calls=len(calls))

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


def gather(calls: list) -> list:
    """Results in call order, raising as soon as any actor fails (not after the slowest)."""
    pending = list(calls)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        ray.get(ready)
    return ray.get(calls)


def check_staleness(staleness) -> None:
    if isinstance(staleness, bool) or int(staleness) != staleness or staleness < 0:
        raise ConfigError(f"staleness must be a whole number >= 0, got {staleness}",
                          field="staleness")

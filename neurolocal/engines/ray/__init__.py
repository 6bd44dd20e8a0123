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

Node loss and partitions (issue 16, docs/netns.md). Actors are pinned to their node;
when a whole node is lost Ray cannot restart them there (ActorUnschedulableError), so
the driver re-creates each on the surviving node holding the fewest actors
(engines/ray/nodes.py), connects every actor to the new handles and replays the
batch; a reply that was stored on the lost node counts as that actor lost. Restart
records carry `cause` (`node_lost` or `actor_died`), `node` (the address it ran on)
and `now_on`. A batch that times out (a partition longer than `timeout`) pings the
late actors: those that do not answer are named by node address in the one-line
EngineError ("node 198.18.0.11 (actor-2) unreachable: ...").

Traffic log (`traffic_log=DIR`): every actor writes its own stream
`<run>.actor-<i>.traffic` (in DIR on the machine it runs on) with the messages its
vertices received, local or remote; the driver writes `<run>.scheduler.traffic`
with the per-batch control calls' replies and the energy per round. Hosts are
labelled `hostname@address/node-id prefix`, so hosts that share a name (network
namespaces) and simulated nodes of one machine differ."""

from neurolocal.engines.ray.connection import (
                                               ADDRESS_LOCAL,
                                               check_reachable,
                                               start_ray,
                                               worker_runtime_env,
)
from neurolocal.engines.ray.driver import (
                                               DEFAULT_MAX_RESTARTS,
                                               DEFAULT_TIMEOUT,
                                               ActorLost,
                                               RayEngine,
                                               check_fault,
                                               check_staleness,
)

__all__ = ["ADDRESS_LOCAL", "ActorLost", "DEFAULT_MAX_RESTARTS", "DEFAULT_TIMEOUT", "RayEngine",
           "check_fault", "check_reachable", "check_staleness", "start_ray",
           "worker_runtime_env"]

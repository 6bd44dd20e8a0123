"""The distributed engine: vertices live in Ray actors and push messages to each other.

Each actor wraps a `Shard` of the round machine (neurolocal/engines/rounds.py,
docs/rounds.md: one or more vertex rules, Ray-free) and holds handles only to the
actors of its vertices' parents, children and tied partners. An actor posts each
batch of outgoing messages with one fire-and-forget `.remote()` per destination
actor and never waits on another actor. Every schedule and mode of the machine runs
here as in the local engine, bit for bit.

The driver is a thin scheduler that relays no payloads. Training (`restore`,
`train_step`, `snapshot`): the vertices own their parameters and optimizer state;
per batch the driver makes one call per actor, `run_batch(settings, None, inputs,
target)`, carrying the batch id and settings, the data of the actor's input vertices
and the target if the output lives there, and gets scalars back (energy per round,
message counts, the loss and hits). A gradient check (`relax`) sends the driver's
parameters with its one batch and gets dtheta back. So a batch costs the driver
O(actors) calls whatever T is.

Ray lifecycle: an `address` of "local" starts an embedded Ray (no dashboard) that
`close()` shuts down again; "auto" or "HOST:PORT" joins an existing cluster
(whose token authentication, if on, the environment must carry: RAY_AUTH_MODE=token
and RAY_AUTH_TOKEN or ~/.ray/auth_token). If Ray is already initialised in this
process, the engine uses it and leaves it running. Actors are killed in `close()`,
which `with RayEngine(...)` calls even when a run fails; a batch that fails (an
actor raised, died, or did not answer within `timeout` seconds) closes the engine
itself, since its actors are left mid-batch.

Actor faults (docs/rounds.md §5). Every actor may be restarted by Ray `max_restarts`
times. When an actor dies during a batch, its `run_batch` call fails (Ray notices
within about a second, never the full timeout); `RayEngine.restart_lost_actors` then
waits, at most `timeout` seconds, for Ray to bring it back, connects every actor to
its neighbours again, restores every actor's vertices from the driver's last
snapshot (taken at each epoch boundary; the driver, not the object store, holds it:
what an actor puts dies with it) and replays the batches since, then the
interrupted batch, under fresh batch ids. The shards drop messages of older batches,
so late messages of the failed attempt cannot leak into the replay, which is bit for
bit what an uninterrupted run computes. Each restart is a typed `Restart` record
(batch, abandoned batch id, actor, vertices, batches replayed, seconds lost). An actor
that cannot come back (restarts exhausted, or not back within `timeout`) ends the run
with an `EngineError` naming it. `fault=(actor, batch)` is a testing aid: the driver
kills that actor with `ray.kill(..., no_restart=False)` right after dispatching the
calls of its `batch`-th batch (0-based), once.

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
namespaces) and simulated nodes of one machine differ.

Asynchrony (docs/asynchrony.md §6): the sim engine's delay, loss, straggler and
reordering models are injected for real in the actors (`asynchrony.py`: a round is
`round_ms` real milliseconds). An asynchronous run (staleness > 0, or anything
injected) with a traffic log also writes replay journals: `<run>.actor-<i>.replay`
(which tag of each child every update read, stale drops, lost messages) and the
driver's `<run>.scheduler.replay` (settings, parameters, data, digests;
`replay_log.py`), which `neurolocal replay` re-executes bit for bit."""

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

"""Recovery of the Ray transport (docs/rounds.md §5, docs/netns.md): waiting for Ray to
bring a lost actor back (or re-creating it on a surviving node), reconnecting every actor,
restoring every vertex from the driver's last snapshot and replaying the batches since,
so the interrupted batch runs again on exactly the state it first met; settling the calls
a restart abandons; and saying in one line which node cut off a batch that timed out.

Abandoned calls (issue 28): after a restart the driver gives up on the calls of every
batch in flight. Some of them fail, as expected: a restarted actor refuses each batch
posted to it before it is connected again (`ActorNotReady`). Ray reports an error
that nobody read, when its reference is dropped, as "Unhandled error" with a
traceback on stderr (a run with 6 actor kills printed 20 lines). So the driver keeps
the abandoned references (`_abandon`) and reads them once they have answered
(`_settle`, after each restart and when the transport closes), discarding what they
say. A call still running when the transport closes dies with its actor, an error
Ray does not report."""

from __future__ import annotations

import time
from dataclasses import replace

import ray

from neurolocal.engines.base import Restart
from neurolocal.engines.config import DEFAULT_TIMEOUT
from neurolocal.engines.ray.actor import ActorNotReady, actor_name, host_label
from neurolocal.engines.ray import lifecycle
from neurolocal.engines.ray.nodes import alive_nodes, restart_cause
from neurolocal.engines.schedule import Schedule
from neurolocal.engines.results import step_from_results
from neurolocal.errors import EngineError
from neurolocal.traffic.log import SCHEDULER, now

#: seconds a late actor has to answer a ping before its node counts as unreachable
PING_TIMEOUT = 5.0


#: seconds a closing transport waits for the calls it abandoned to answer (they answer
#: at once after a restore; one that does not dies with its actor)
SETTLE_TIMEOUT = 2.0


class ActorsLate(EngineError):
    """Actors did not answer within the timeout; `actors` are their shard indices."""

    def __init__(self, message: str, actors: list[int]):
        super().__init__(message)
        self.actors = actors


class ActorLost(EngineError):
    """An actor died (or restarted) under a batch; `actors` are their shard indices,
    `calls` the references of the calls that batch was waiting for (abandoned now)."""

    def __init__(self, message: str, actors: list[int], calls: list = ()):
        super().__init__(message)
        self.actors = actors
        self.calls = list(calls)


class Recovery:
    """The recovery half of `RayTransport` (driver.py), which holds the actors, the
    shards, the last snapshot and the batches since it."""

    def restart_lost_actors(self, lost: ActorLost, index: int, batch: int,
                            dispatched: float) -> list[Restart]:
        """The restart path (docs/rounds.md, snapshots): after an actor died under batch id
        `batch`, wait until Ray has brought it back and reconnect every actor
        (`_recover`), then — when the vertices own their parameters — restore every
        actor from the driver's last snapshot and replay the batches since, so the
        interrupted batch runs again on exactly the state it first met."""
        self._abandon(lost.calls)
        records = self._recover(lost, index, batch, dispatched)
        replayed = 0
        if self.learning is not None:
            while True:
                try:
                    self._load_snapshot()
                    if self.journal is not None:   # the replay restarts from there too
                        self.journal.restored(*self._snapshot, self.learning)
                    for settings, inputs, target, results in self._replays():
                        if self.recorder is not None:
                            self._log_replies_now(settings.batch, results)
                            self.recorder.flush()
                        if self.journal is not None:
                            rounds = Schedule(self.graph, settings, self.mode).rounds
                            self.journal.trained(settings, inputs, target,
                                                 step_from_results(self.graph, results, rounds),
                                                 results)
                    replayed = sum(len(e) if isinstance(e, list) else 1 for e in self._since)
                    break
                except ActorLost as again:   # lost once more while replaying: start over
                    self._abandon(again.calls)
                    records += self._recover(again, index, self._batch - 1, dispatched)
        seconds = now() - dispatched
        records = [replace_restart(r, replayed, seconds) for r in records]
        self.restarts += records
        self._settle()
        return records

    def _abandon(self, calls) -> None:
        """Calls the driver no longer waits for: kept until `_settle` has read them."""
        self._abandoned.update(dict.fromkeys(calls))

    def _settle(self, wait: float = 0.0) -> None:
        """Read, and discard, every abandoned call that has answered (an expected error,
        or a result nobody needs) or answers within `wait` seconds, so Ray has no unread
        error to report when its reference is dropped; those still running are kept
        for the next time."""
        if not self._abandoned:
            return
        ready, _ = ray.wait(list(self._abandoned), num_returns=len(self._abandoned),
                            timeout=wait)
        for ref in ready:
            del self._abandoned[ref]
            try:
                ray.get(ref)
            except Exception:   # what an abandoned call says is no longer asked
                pass

    def _replays(self):
        """The batches since the snapshot again, under fresh ids: (settings, inputs,
        target, results) each; a pipelined group again as a group (pipelined.py)."""
        for entry in self._since:
            if isinstance(entry, list):
                yield from self.replay_group(entry)
                continue
            template, inputs, target = entry
            settings = replace(template, batch=self._batch)
            self._batch += 1
            yield settings, inputs, target, gather(
                self._dispatch(settings, inputs, target, None), self.timeout,
                self._describe_actors(), "replay a batch")

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
            calls.append(actor.restore_vertices.remote(mine, state, self.learning))
        gather(calls, self.timeout, self._describe_actors(), "restore its vertices")

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
            refs = {self.actors[i].connect.remote(self._peers(i), self._piping): i
                    for i in sorted(pending)}
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
            raise ActorLost(f"{names[i]} died: {first_line(exc)}", [i], calls) from None
        except ray.exceptions.ObjectLostError as exc:  # its reply was on a node now lost
            i = index[ready[0]]
            raise ActorLost(f"{names[i]}'s reply was lost: {first_line(exc)}", [i],
                            calls) from None
    return ray.get(calls)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def replace_restart(record: Restart, replayed: int, seconds: float) -> Restart:
    return replace(record, replayed=replayed, seconds=seconds)

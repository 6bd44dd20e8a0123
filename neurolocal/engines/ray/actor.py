"""The Ray actor: a transport over the round machine — a thin wrapper over a Ray-free
`Shard` (neurolocal/engines/rounds.py, docs/rounds.md) that posts outgoing messages
fire-and-forget to its neighbour actors. It holds no round logic of its own.

With injected asynchrony (engines/ray/asynchrony.py, docs/asynchrony.md §6) its
outgoing messages go through an `Outbox` (real delays, losses, retransmissions,
reordering), its steps through a `Pacer` (stragglers, pauses) and its incoming ones
through a `Receiver` (lost messages substituted); an asynchronous run with a traffic
log also writes the actor's replay journal stream (`<run>.actor-<i>.replay`)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import warnings
from dataclasses import dataclass

import ray

from neurolocal.graph import Graph
from neurolocal.engines.ray.asynchrony import ActorJournal, Injection, Outbox, Pacer, Receiver
from neurolocal.engines.rounds import RunSettings, Shard, ShardLog
from neurolocal.traffic.log import SCHEDULER, TrafficRecorder, now, payload_bytes


class ActorNotReady(Exception):
    """Raised by an actor that Ray restarted but the driver has not connected yet."""


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
    #: write a replay journal stream next to the traffic stream (asynchronous runs)
    journal: bool = False


def settings_bytes(settings: RunSettings) -> int:
    """What the batch's settings weigh on the wire: 8 bytes a field (a number or a short
    name), the learning settings included."""
    fields = 7 + (0 if settings.learning is None else 4 + 2 * len(settings.learning.options))
    return 8 * fields


def actor_name(index: int) -> str:
    return f"actor-{index}"


def host_label(node: dict) -> str:
    """hostname@address/node-id prefix: machines differ by name and address (network
    namespaces on one machine share the name), simulated nodes of one host by id."""
    name = node.get("NodeManagerHostname") or socket.gethostname()
    address = node.get("NodeManagerAddress")
    return f"{name}@{address}/{node['NodeID'][:8]}" if address else f"{name}/{node['NodeID'][:8]}"


@ray.remote
class ShardActor:
    """A thin Ray wrapper over `Shard`: it posts outgoing messages fire-and-forget and
    answers `run_batch` once its vertices are done. An asyncio actor: each method
    runs to completion without awaiting in between, so the shard needs no locks."""

    def __init__(self, graph: Graph, names, owners, mode: str, traffic: TrafficSpec | None,
                 replacement: bool = False, injection: Injection | None = None,
                 plan: bool = True):
        """`replacement`: a new actor standing in for one lost with its node (it writes
        a stream of its own, as a restarted one). `injection`: the asynchrony to inject
        for real (None: post every message at once)."""
        log = None
        self.name = actor_name(owners[names[0]])
        self.traffic = traffic
        with warnings.catch_warnings():  # Ray 2.60 reads its own deprecated actor_id here
            warnings.simplefilter("ignore", DeprecationWarning)
            self.restarted = (replacement
                              or ray.get_runtime_context().was_current_actor_reconstructed)
        writer = None
        if traffic is not None:
            writer = self.writer_name()
            recorder = TrafficRecorder(traffic.directory, traffic.run, writer,
                                       graph=traffic.graph, settings=traffic.settings)
            log = ShardLog(recorder, traffic.actors, traffic.hosts)
        journal = traffic is not None and traffic.journal
        watched = journal or injection is not None
        self.shard = Shard(graph, names, owners, mode, log, trace=watched)
        self.shard.use_plan = plan   # EngineConfig.rounds (docs/rounds.md §9)
        self.peers: dict | None = None   # None until the driver connects this incarnation
        self.finished: asyncio.Event | None = None
        self.failure: BaseException | None = None
        # asynchrony (engines/ray/asynchrony.py): all None when nothing is injected
        self.outbox = (Outbox(injection, owners[names[0]], self._send)
                       if injection is not None else None)
        self.pacer = Pacer(injection, names) if injection is not None else None
        self.receiver = Receiver() if watched else None
        self.journal = None
        if watched:
            path = (os.path.join(traffic.directory, f"{traffic.run}.{writer}.replay")
                    if journal else None)
            self.journal = ActorJournal(path, writer or self.name, self.shard.names)
            self.shard.observer = self.journal   # it hears the reads and drops
        self._paused = False               # a pause caps the shard's rounds (horizon)
        # posting ahead (run_batch's `after`): the last batch id done here, an event set
        # whenever one is, and the era a restore ends (it abandons every waiting batch)
        self.last_done: int | None = None
        self.turn = asyncio.Event()
        self.era = 0

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
                        t_send: float = 0.0, after: int | None = None) -> dict:
        """Run one batch and answer its scalars once this shard's vertices are done.

        `after`: posting ahead (docs/rounds.md §7), the batch id this actor must finish
        first; the call waits for it (whatever order Ray starts the calls in), so
        batches run strictly in order and a batch begins only once every vertex here
        has applied its update for the previous one. None: begin now, superseding a
        batch a dead peer left unfinished (a replay). A `restore` abandons every batch
        running or waiting here."""
        if self.peers is None:
            raise ActorNotReady(f"{self.name} was restarted and is not connected yet")
        if after is not None:
            era = self.era
            while self.last_done != after and self.era == era:
                await self.turn.wait()
            if self.era != era:   # a restore came first: the driver no longer waits for it
                return {"abandoned": settings.batch}
        if self.finished is not None and not self.finished.is_set():
            self.finished.set()  # a replay supersedes a batch a dead peer left unfinished
        if self.traffic is not None:  # the scheduler's call is a control message
            me = self.shard.index
            self.shard.log.recorder.record(
                settings.batch, 0, SCHEDULER, self.name, "control",
                payload_bytes([params, inputs, target]) + settings_bytes(settings), t_send, now(),
                self.traffic.scheduler_host, self.traffic.hosts[me], SCHEDULER, self.name)
        self.finished = finished = asyncio.Event()
        if self.pacer is not None:
            self.pacer.begin_batch()
            self.shard.horizon, self._paused = None, False
            self._pause(fresh=True)   # a pause from the batch's start: no update yet
        if self.journal is not None:
            self.journal.begin(settings.batch)
        self._post(self._step(lambda: self.shard.begin(settings, params, inputs, target)))
        await finished.wait()
        if self.finished is not finished:  # superseded: the driver no longer waits for it
            return {"abandoned": settings.batch}
        self.shard.flush_log()
        if self.failure is not None:
            raise self.failure
        result = {**self.shard.result(), "t_send": now()}
        self.last_done = settings.batch   # a batch posted after this one may begin
        self.turn.set()
        self.turn = asyncio.Event()
        if self.journal is not None:
            counts = (self.outbox.take_counts(settings.batch) if self.outbox is not None
                      else {"messages_lost": 0, "messages_retransmitted": 0})
            result["asynchrony"] = {**counts, "max_feedback_age": self.journal.max_age}
            self.journal.end(settings.batch)
        return result

    async def ping(self) -> int:
        """Answered even mid-batch (an asyncio actor): is this actor reachable?"""
        return os.getpid()

    async def set_hosts(self, hosts: tuple[str, ...]) -> None:
        """The host of every shard index, after actors moved to other nodes (a node was
        lost): the traffic log names where each message really came from and went."""
        if self.traffic is not None:
            self.traffic = dataclasses.replace(self.traffic, hosts=tuple(hosts))
            self.shard.log = dataclasses.replace(self.shard.log, hosts=tuple(hosts))

    async def restore_vertices(self, params, optimizer, learning) -> None:
        """Its vertices back to a snapshot held by the driver (`Shard.restore`). A batch
        still running here (its peer died) is abandoned first, so no late message of it
        moves a restored weight, and so is every batch posted ahead and waiting."""
        self.shard.abandon()
        if self.finished is not None and not self.finished.is_set():
            self.finished.set()   # its run_batch answers "abandoned"
        self.finished = None
        self.era += 1
        self.last_done = None
        self.turn.set()
        self.turn = asyncio.Event()
        self.shard.restore(params, optimizer, learning)

    async def snapshot_vertices(self) -> dict:
        """Its vertices' parameters and optimizer state, between batches."""
        return self.shard.snapshot()

    async def flush_log(self) -> None:
        """Late messages of an asynchronous batch reach the log (and the journal) too."""
        self.shard.flush_log()
        if self.journal is not None:
            self.journal.flush()

    async def deliver(self, messages) -> None:
        self._receive(messages)

    def _pause(self, fresh: bool = False) -> None:
        """A pause (Pacer): no update begins while it lasts. The shard's `horizon` is
        capped at the rounds its vertices have reached (0 for a batch not begun yet;
        forward passes still happen, as on the sim engine) and raised again when the
        pause is over."""
        wait = self.pacer.paused_for()
        if wait <= 0 or self._paused:
            return
        self._paused = True
        self.shard.horizon = 0 if fresh else self.shard.waiting_rounds()
        asyncio.get_running_loop().call_later(wait, self._unpause)

    def _unpause(self) -> None:
        self._paused = False
        if self.pacer.paused_for() > 0:   # (a timer that fired a little early)
            self._pause()
            return
        self.shard.horizon = None
        try:
            self._post(self._step(self.shard.resume))
        except Exception as exc:   # nobody awaits this callback: wake run_batch
            self.failure = exc
            if self.finished is not None:
                self.finished.set()

    def _receive(self, messages) -> None:
        try:
            if self.receiver is not None:
                messages = self.receiver.prepare(self.shard, messages, self.journal)
            self._post(self._step(lambda: self.shard.deliver(messages)))
        except Exception as exc:  # nobody awaits this call: wake run_batch to report it
            self.failure = exc
            if self.finished is not None:
                self.finished.set()
            raise

    def _step(self, call):
        """One shard step (paced when a straggler or pausing; the journal hears its reads
        from the round machine)."""
        if self.pacer is not None:
            self._pause()
        return self.pacer.step(call) if self.pacer is not None else call()

    def _send(self, destination: int, messages) -> None:
        self.peers[destination].deliver.remote(messages)

    def _post(self, outgoing) -> None:
        if self.outbox is not None:
            self.outbox.post(outgoing)
        else:
            for destination, messages in outgoing.items():
                self._send(destination, messages)
        if self.finished is not None and self.shard.done:
            self.finished.set()

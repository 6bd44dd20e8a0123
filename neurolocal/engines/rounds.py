"""The round machine: the one place the predictive-coding rounds are written (docs/rounds.md).

A `Shard` hosts the rules of some vertices (`neurolocal.vertex.VertexRule`) and
steps each of them as far as the messages it holds allow. It is plain Python and
knows no transport: `begin` and `deliver` take messages in and return the
messages to post, grouped by destination shard (one list per destination). The
in-process engine (`engines/local.py`) and the Ray actor (`engines/ray/actor.py`)
are transports over this one machine; neither steps a vertex itself.

Messages are tuples `(batch, kind, round, src, dst, payload, t_send)`:

    value     the forward pass: a vertex's prediction (an input's data), tag 0;
              strict mode: the relaxed value after update u, tag u, to every child
    error     J^T eps of `src` for its parent `dst`, from src's state after `round`
              updates (tag t is consumed by update t + 1); CONSTANT: the fixed-mode
              output's error, valid in every round; tag T (the last round): the
              settled feedback read by an input (dL/dx)
    partial   a tied-group member's Hebbian partials for the group's owner vertex,
              [(owner param, partial), ...], sent once its error is final (tag T);
              the owner sums them in graph order (VertexRule.receive_partials)
    param     training only: a tied group's owner, having applied the group's update
              with its optimizer, sends each member the new values, [(member param,
              value), ...] (tag T); a member's batch is done when they have arrived

`t_send` is the sender's clock (0.0 when no traffic log is kept). The traffic log
records a message under the round of the update that consumes it
(`logged_round`): values of the forward pass in round 0, strict values of update
u in round u, errors of tag t in round t + 1 (CONSTANT in round 1), partials and
input feedback in round T + 1.

Schedules are policies of this machine (`Schedule`): which update rounds a vertex
relaxes in, and at which tags it speaks to its relaxing parents. A parent's update
u sums, for every child, that child's newest message of a tag <= u - 1 it must
have sent by then (`Schedule.needed`), in the graph's order of children, so
every schedule is deterministic whatever order messages arrive in:

    jacobi            every hidden vertex relaxes and speaks every round
    event             a vertex speaks only in the rounds its error can change; with
                      eta = 1 those are the lengths of its paths to the output (one
                      message per path length), else every round from its distance on
    backward-in-time  the unrolled steps of a recurrent graph relax one block at a
                      time, last step first, T rounds each (engines/timewise.py)
    ipc               incremental PC (Salvatori et al.): strict rounds, and every
                      update also takes a weight step from the current errors

Modes: fixed (predictions cached from the forward pass) and strict (values
travel to the children after every update, who re-predict: phase A relaxes and
sends the value, phase B re-predicts once every relaxing parent's value of the
same update has arrived, then speaks).

Staleness S > 0 (jacobi, fixed mode only): a vertex may run up to S rounds ahead
of the children it hears from, using the newest feedback it holds (asynchronous
relaxation; the fixed-mode iteration converges to the same fixed point for
0 < eta < 2, only in more rounds).

Energy of "round r" is the sum over vertices of their energy after r updates
(per-vertex logical clocks; a global snapshot when S = 0).

Observability: `horizon` caps the round every vertex may reach (a transport
stepping the machine round by round, as the local engine does for `on_round`);
`consumed` lists, per vertex, the (kind, src, tag) of every message it consumed, in
order, when `trace=True`; and a `RoundObserver` set as `Shard.observer` hears the
machine's events as they happen — a vertex's forward pass, each unit of work (and
whether it computed anything), each message read (with the update that read it), each
message dropped (late, or superseded under staleness), each update applied. Transports,
journals and logs subscribe to those events instead of comparing the machine's state
before and after a call (docs/rounds.md §8).

Two paths through the same rules: the message path above (`_advance`, `_step`), which
every asynchronous, traced or closely watched batch takes; and the planned path
(`neurolocal/engines/plan/`, docs/rounds.md §9), which runs synchronous rounds from a
layout compiled once from the `Schedule`, same-shaped vertices stacked, without message
tuples — the same numbers bit for bit. The shard chooses per batch (`_plannable`) and says
which (`path`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

import numpy as np

from neurolocal.graph import Graph, Params
from neurolocal.ops.losses import correct_count
from neurolocal.traffic.log import TrafficRecorder, now, payload_bytes
from neurolocal.vertex import VertexRule
# the schedules and the results' assembly live beside the machine (re-exported here)
from neurolocal.engines.results import (  # noqa: F401
    merge_results,
    merge_snapshots,
    round_path,
    step_from_results,
    vertex_energy,
)
from neurolocal.engines.schedule import (  # noqa: F401
    CONSTANT,
    MODES,
    SCHEDULES,
    Schedule,
    check_schedule,
    path_lengths,
)

# the traffic log's kinds (neurolocal.traffic.log.KINDS)
VALUE, FEEDBACK, PARTIAL, PARAM = "value", "error", "partial", "param"

Message = tuple  # (batch, kind, round, src, dst, payload, t_send)
Outgoing = dict[int, list[Message]]


@dataclass(frozen=True)
class Learning:
    """How every vertex updates its own parameters (docs/rounds.md, plasticity): the
    optimizer each vertex keeps for itself, and how often a batch's update is applied
    (2 reproduces the paper's CNN, `neurolocal.paper`)."""
    optimizer: str
    lr: float | None = None
    options: tuple = ()                      # ((name, value), ...) of the optimizer
    updates_per_batch: int = 1
    #: None: `neurolocal.optimizers.make_optimizer`, which every vertex calls to make its
    #: own (a caller may pass another of the same signature, e.g. a custom optimizer)
    factory: Callable | None = None

    def make_optimizer(self):
        from neurolocal.optimizers import make_optimizer

        make = self.factory or make_optimizer
        return make(self.optimizer, self.lr, **dict(self.options))


@dataclass(frozen=True)
class RunSettings:
    """What a shard needs to run one batch (the same for every shard of a batch)."""
    batch: int
    eta: float
    iterations: int              # T: rounds (backward-in-time: rounds per time block)
    staleness: int = 0
    read_inputs: bool = False
    schedule: str = "jacobi"
    #: None: relax only and report dtheta; else every vertex applies its own update
    learning: Learning | None = None
    #: what the vertices compute in (neurolocal/dtypes.py): data and feedback cast to it
    dtype: str = "float64"

    def with_batch(self, batch: int) -> "RunSettings":
        """The same settings under batch id `batch` (a transport numbers its batches)."""
        return replace(self, batch=batch)


@dataclass
class ShardLog:
    """Where a shard records the messages it receives, and who is who across actors."""
    recorder: TrafficRecorder
    actors: Sequence[str]   # actor name of each shard index
    hosts: Sequence[str]    # host label of each shard index


class RoundObserver:
    """What a `Shard` tells whoever watches it (docs/rounds.md §8). Every method is a
    no-op here; a subscriber overrides those it needs. `shard` is the caller, `vertex` a
    vertex name; updates count from 1 (0: the forward pass)."""

    def forward(self, shard: "Shard", vertex: str) -> None:
        """The vertex did its forward pass (its prediction is sent)."""

    def stepped(self, shard: "Shard", vertex: str, computed: bool) -> None:
        """One unit of the vertex's work is done: its forward pass, a (strict: half of
        an) update, or an input's final feedback. `computed`: it did arithmetic (False:
        an update the schedule idles through, bookkeeping only)."""

    def read(self, shard: "Shard", vertex: str, update: int, kind: str, src: str,
             tag: int) -> None:
        """Update `update` of `vertex` consumed `src`'s message of `kind` and tag `tag`."""

    def dropped(self, shard: "Shard", message: "Message", why: str) -> None:
        """A message of the current batch's shard was dropped: `late` (of an earlier
        batch) or `superseded` (staleness > 0: older than the feedback held)."""

    def learned(self, shard: "Shard", vertex: str) -> None:
        """The vertex applied its update of the batch (training) with its optimizer."""


def feedback_age(update: int, tag: int) -> int:
    """How many rounds behind the synchronous sweep's a feedback read by `update` is:
    update u reads tag u - 1 when nothing is stale."""
    return update - 1 - tag


def zeros_like_payload(payload):
    """Zeros in the shape of a message's payload (what a receiver goes on with when a
    message is lost and it holds nothing older on that edge)."""
    if isinstance(payload, list):         # tied partials / new values: [(param, array), ...]
        return [(key, np.zeros_like(value)) for key, value in payload]
    return np.zeros_like(payload)


def logged_round(kind: str, round_: int) -> int:
    """The traffic log's round of a message: the update that consumes it."""
    if kind == VALUE:
        return round_
    return 1 if round_ == CONSTANT else round_ + 1


class Slot:
    """One vertex's rule and what its shard has heard from its neighbours this batch."""

    def __init__(self, graph: Graph, rule: VertexRule):
        self.rule = rule
        self.name = rule.name
        self.children = graph.children[rule.name]          # in graph order: sums match
        self.parents = tuple(dict.fromkeys(rule.parents))  # distinct
        #: parents whose value relaxes (strict mode sends their values every round)
        self.moving_parents = tuple(p for p in self.parents
                                    if not graph.is_input(p))
        #: vertices that send this one partials of tied parameters it owns, in graph order
        senders = {v for group in graph.tied if group.owner[0] == self.name
                   for v, _ in group.members}
        self.partial_senders = (tuple(n for n in graph.order if n in senders) if senders
                                else ())   # (a scan of the graph per tied owner only)
        #: training: member vertex -> [(member param, own param)] this owner sends values to
        self.param_receivers: dict[str, list[tuple[str, str]]] = {}
        for group in graph.tied:
            if group.owner[0] == self.name:
                for vertex, param in group.members:
                    self.param_receivers.setdefault(vertex, []).append((param, group.owner[1]))
        #: the optimizer this vertex keeps for its own parameters (training), across batches
        self.optimizer = None
        self.consumed: list[tuple] = []
        self.reset()

    def reset(self) -> None:
        self.round: int | None = None                      # None: forward pass not done
        self.relaxed = False                               # strict: phase A of round+1 done
        self.values: dict[str, np.ndarray] = {}            # parent -> forward value
        # per neighbour, made on first use (a planned batch never touches most of them)
        self.moved: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
        self.inbox: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
        self.energy: list[float] = []
        self.finished = False                              # relaxation (and dL/dx) over
        self.update: dict[str, np.ndarray] = {}            # own Hebbian update, once final
        self.partials: dict[str, list] = {}                # member -> [(param, partial)]
        self.accumulated: dict[str, np.ndarray] | None = None   # ipc: summed round updates
        self.learned = False                               # training: own update applied
        #: training: owners whose new values of tied parameters this member still awaits
        self.awaiting_params = 0
        self.consumed = []

    @property
    def heard_partials(self) -> bool:
        return len(self.partials) == len(self.partial_senders)

    @property
    def done(self) -> bool:
        return (self.finished and self.heard_partials and self.learned
                and not self.awaiting_params)

    def report(self) -> dict[str, np.ndarray]:
        """The updates this vertex reports: tied partials summed in graph order."""
        if not self.partial_senders and not self.rule.sends and not self.rule.expects:
            return self.update   # untied: its own update, as computed
        received = [p for sender in self.partial_senders for p in self.partials[sender]]
        return self.rule.receive_partials(self.update, received)

    def store_feedback(self, src: str, round_: int, payload, staleness: int) -> bool:
        """Keep a feedback message; False when asynchronous rounds drop it (older than,
        or as old as, what is held: only the newest matters)."""
        box = self.inbox[src]
        if staleness > 0:  # asynchronous: only the newest message matters
            if box and (CONSTANT in box or max(box) >= round_):
                return False
            box.clear()
        box[round_] = payload
        return True


class Shard:
    """Vertices of one transport unit (an actor, or all of them in one process).
    Same-shard messages are local calls; the rest are returned, one list per shard."""

    def __init__(self, graph: Graph, names: Sequence[str], shard_of: Mapping[str, int],
                 mode: str = "fixed", log: ShardLog | None = None, trace: bool = False):
        self.graph = graph
        wanted = set(names)
        self.names = tuple(n for n in graph.order if n in wanted)
        self.shard_of = dict(shard_of)
        self.index = self.shard_of[self.names[0]]
        self.mode = mode
        self.log = log
        self.trace = trace
        self.slots = {n: Slot(graph, VertexRule.for_vertex(graph, n, {}, mode))
                      for n in self.names}
        self.settings: RunSettings | None = None
        self.schedule: Schedule | None = None
        self._schedules: dict[tuple, Schedule] = {}
        #: the highest round any vertex may reach now (None: no cap); see the module doc
        self.horizon: int | None = None
        #: a pipelining transport holds a finished vertex's update back (True) until the
        #: vertex has applied the previous batch's: updates land in batch order
        #: (docs/asynchrony.md §7)
        self.hold_learning = False
        self.pending: dict[int, list[Message]] = {}   # messages for a batch not begun yet
        #: messages of batch ids up to this one are dropped (`abandon`)
        self.abandoned = -1
        self.outbox: Outgoing = {}
        self.counts = {"local_messages": 0, "remote_messages": 0, "remote_calls": 0}
        self.input_feedback: dict[str, np.ndarray] = {}
        self.target: np.ndarray | None = None
        #: synchronous rounds of a shard holding the whole graph may run from a plan
        #: (`_plannable`, docs/rounds.md §9); False: always the message path (the tests
        #: compare the two)
        self.use_plan = True
        #: the planned path runs vertices of one op and shape as stacked groups
        #: (engines/plan/groups.py); False: one at a time
        self.group_vertices = True
        #: which path the last batch ran: "planned" or "message"
        self.path = "message"
        self._runner = None
        self._layouts: dict = {}
        #: who hears the machine's events (`RoundObserver`); None: nobody
        self.observer: RoundObserver | None = None
        self._computed = True   # did the last step do arithmetic (`RoundObserver.stepped`)

    # --- entry points --------------------------------------------------------------------

    def load_params(self, params: Params) -> None:
        """Give each of this shard's vertices its own parameters (by reference)."""
        for slot in self.slots.values():
            slot.rule.params = params.get(slot.name, {})

    def begin(self, settings: RunSettings, params: Params | None,
              inputs: Mapping[str, np.ndarray], target: np.ndarray | None) -> Outgoing:
        """Start a batch: parameters (None: keep the vertices' own), the data of this
        shard's inputs, the target if the output lives here. Returns the messages to post."""
        self.settings = settings
        key = (settings.schedule, settings.eta, settings.iterations, settings.staleness)
        if key not in self._schedules:
            self._schedules = {key: Schedule(self.graph, settings, self.mode)}
        self.schedule = self._schedules[key]
        self.counts = dict.fromkeys(self.counts, 0)
        self.input_feedback = {}
        if params is not None:
            self.load_params(params)
        learning = settings.learning
        dtype = np.dtype(settings.dtype)
        for slot in self.slots.values():
            slot.rule.dtype = dtype
            slot.reset()
            slot.learned = learning is None or not slot.rule.params
            if learning is not None and slot.rule.params and slot.optimizer is None:
                slot.optimizer = learning.make_optimizer()
            if slot.name == self.graph.output:
                slot.rule.set_target(target)
                self.target = slot.rule.target
            if slot.rule.role == "input":
                slot.rule.clamp(inputs[slot.name])
        for message in self.pending.pop(settings.batch, []):
            self._store(message)
        self.pending = {b: m for b, m in self.pending.items() if b > settings.batch}
        self._runner = None
        self.path = "planned" if self._plannable() else "message"
        if self.path == "planned":
            return self._planned()
        return self._advance()

    def abandon(self) -> None:
        """Stop the current batch (a restore from a snapshot supersedes it): no vertex
        steps on, and late messages of it, or of any batch id before it, are dropped.
        Messages of later ids stay pending; a replay runs under fresh, higher ids."""
        if self.settings is not None:
            self.abandoned = max(self.abandoned, self.settings.batch)
            self.settings = None
        self._runner = None
        self.pending = {b: m for b, m in self.pending.items() if b > self.abandoned}

    def deliver(self, messages: Sequence[Message]) -> Outgoing:
        current = None if self.settings is None else self.settings.batch
        if self.log is not None:
            self._log_received(messages, now())
        observer = self.observer
        for message in messages:
            batch = message[0]
            if batch <= self.abandoned:   # a late message of an abandoned batch
                if observer is not None and current is not None:
                    observer.dropped(self, message, "late")
                continue
            if current is None or batch > current:
                self.pending.setdefault(batch, []).append(message)
            elif batch == current:
                self._store(message)
            elif observer is not None:   # a late message of a finished batch; dropped
                observer.dropped(self, message, "late")
        if current is None:
            return {}
        if self._runner is not None:
            return self._runner.resume()
        return self._advance()

    def resume(self) -> Outgoing:
        """Step on after the transport raised `horizon`."""
        if self._runner is not None:
            return self._runner.resume()
        return self._advance()

    @property
    def done(self) -> bool:
        return self.settings is not None and all(s.done for s in self.slots.values())

    # --- what a transport may read or share (read-only views of the vertices) -----------

    @property
    def rules(self) -> dict:
        """Every vertex's rule, by name (read-only use: watching a relaxation)."""
        return {n: self.slots[n].rule for n in self.names}

    def progress(self, vertex: str) -> tuple[int | None, bool]:
        """(updates done, None before the forward pass; finished relaxing) of a vertex."""
        slot = self.slots[vertex]
        if self._runner is not None:
            done = self._runner.updates_done(vertex)
            if done is not None:
                return done, False
        return slot.round, slot.finished

    def waiting_rounds(self) -> int:
        """The lowest update count among this shard's vertices (0 before any forward
        pass): the round a horizon may hold them at without undoing anything."""
        return min(self.progress(n)[0] or 0 for n in self.names)

    @property
    def learning_held(self) -> bool:
        """Some vertex has finished relaxing but holds its update back (`hold_learning`)."""
        return any(s.finished and not s.learned for s in self.slots.values())

    def role(self, vertex: str) -> str:
        """input, hidden or output."""
        return self.slots[vertex].rule.role

    def has_params(self, vertex: str) -> bool:
        return bool(self.slots[vertex].rule.params)

    def share_vertices(self, other: "Shard") -> None:
        """One vertex, several batches in flight (pipelining): this shard's vertices use
        `other`'s parameters and optimizers (the same vertices, another lane)."""
        for n in self.names:
            mine, theirs = self.slots[n], other.slots[n]
            mine.rule.params = theirs.rule.params
            mine.optimizer = theirs.optimizer

    def result(self) -> dict:
        """What the transport collects: scalars and this shard's own vertices' arrays;
        when training, scalars only (loss, hits, energy per round, counts): the
        parameters stay with the vertices."""
        slots = self.slots.values()
        if self.settings.learning is not None:
            out = {"energy": {s.name: s.energy for s in slots}, "counts": dict(self.counts),
                   "path": self.path}
            if self.graph.output in self.slots:
                output = self.slots[self.graph.output].rule
                out["loss"] = output.loss_value
                out["hits"] = correct_count(output.forward_prediction, self.target)
            return out
        reports = {s.name: s.report() for s in slots if s.rule.params}
        out = {
            "dtheta": {n: r for n, r in reports.items() if r},
            "errors": {s.name: s.rule.error for s in slots if s.rule.role != "input"},
            "input_feedback": dict(self.input_feedback),
            "energy": {s.name: s.energy for s in slots},
            "counts": dict(self.counts),
            "path": self.path,
        }
        if self.graph.output in self.slots:
            output = self.slots[self.graph.output].rule
            out["prediction"] = output.forward_prediction
            out["loss"] = output.loss_value
        return out

    def snapshot(self) -> dict:
        """This shard's vertices' parameters and optimizer state, copied: {"params":
        {vertex: {param: array}}, "optimizer": {vertex: Optimizer.state_arrays()}}.
        Taken between batches, every vertex of every shard at the same batch boundary."""
        params = {s.name: {k: np.array(v, copy=True) for k, v in s.rule.params.items()}
                  for s in self.slots.values() if s.rule.params}
        optimizer = {s.name: s.optimizer.state_arrays() for s in self.slots.values()
                     if s.optimizer is not None}
        return {"params": params, "optimizer": optimizer}

    def restore(self, params: Params, optimizer: Mapping[str, np.ndarray] | None,
                learning: Learning | None) -> None:
        """Put the vertices back to a snapshot: their own copies of the parameters and a
        fresh optimizer per vertex loaded with its part of `optimizer` (the checkpoint's
        layout, `merge_snapshots`; None: fresh optimizers)."""
        per_vertex: dict[str, dict] = {}
        if optimizer is not None:
            step = optimizer["step"]
            per_vertex = {s: {"step": step} for s in self.slots}
            for key, value in optimizer.items():
                parts = key.split("/")
                if len(parts) == 3 and parts[1] in per_vertex:
                    per_vertex[parts[1]][key] = value
        for slot in self.slots.values():
            mine = params.get(slot.name, {})
            slot.rule.params = {k: np.array(v, dtype=v.dtype if v.dtype.kind == "f"
                                            else np.float64, copy=True)
                                for k, v in mine.items()}
            slot.optimizer = None
            if learning is not None and slot.rule.params:
                slot.optimizer = learning.make_optimizer()
                state = per_vertex.get(slot.name)
                if state is not None:
                    slot.optimizer.load_state_arrays(state, {slot.name: slot.rule.params})

    def flush_log(self) -> None:
        if self.log is not None:
            self.log.recorder.flush()

    # --- message plumbing ----------------------------------------------------------------

    def _store(self, message: Message) -> None:
        _, kind, round_, src, dst, payload, _ = message
        slot = self.slots[dst]
        if kind == VALUE:
            if round_ == 0:
                slot.values[src] = payload
            else:
                slot.moved[src][round_] = payload
        elif kind == FEEDBACK:
            if not slot.store_feedback(src, round_, payload, self.settings.staleness) \
                    and self.observer is not None:
                self.observer.dropped(self, message, "superseded")
        elif kind == PARTIAL:
            slot.partials[src] = payload
        elif kind == PARAM:
            for param, value in payload:   # the owner's new values, into this vertex's own
                slot.rule.params[param][...] = value
            slot.awaiting_params -= 1   # one `param` message per owner
        else:
            raise ValueError(f"unknown message kind {kind!r}")

    def _log_received(self, messages: Sequence[Message], t_recv: float) -> None:
        log, owner = self.log, self.shard_of
        for batch, kind, round_, src, dst, payload, t_send in messages:
            s, d = owner[src], owner[dst]
            log.recorder.record(batch, logged_round(kind, round_), src, dst, kind,
                                payload_bytes(payload), t_send, t_recv, log.hosts[s],
                                log.hosts[d], log.actors[s], log.actors[d])

    def _send(self, kind: str, round_: int, src: str, dst: str, payload) -> None:
        t_send = now() if self.log is not None else 0.0
        message = (self.settings.batch, kind, round_, src, dst, payload, t_send)
        if dst in self.slots:
            self.counts["local_messages"] += 1
            if self.log is not None:
                self._log_received([message], t_send)
            self._store(message)
        else:
            self.counts["remote_messages"] += 1
            self.outbox.setdefault(self.shard_of[dst], []).append(message)

    def _flush(self) -> Outgoing:
        """One list per destination shard. Asynchronous rounds drop superseded feedback."""
        outgoing, self.outbox = self.outbox, {}
        if self.settings.staleness > 0:
            for dst, messages in outgoing.items():
                newest = {}
                for m in messages:
                    key = (m[1], m[3], m[4])
                    if m[1] != FEEDBACK or key not in newest or m[2] >= newest[key][2]:
                        newest[key] = m
                outgoing[dst] = list(newest.values())
        self.counts["remote_calls"] += len(outgoing)
        return outgoing

    # --- the rounds ----------------------------------------------------------------------

    def _plannable(self) -> bool:
        """Synchronous rounds run from a compiled plan (docs/rounds.md §9) when nobody
        follows the shard's messages one by one: staleness 0, no trace, and an observer
        (if any) that hears forward passes and applied updates only (`stepped` and `read`
        are the message path's events). A horizon, a traffic log, tied groups and other
        shards (messages across them, one list per destination) are fine."""
        observer = self.observer
        listens = observer is not None and (
            type(observer).stepped is not RoundObserver.stepped
            or type(observer).read is not RoundObserver.read)
        return (self.use_plan and self.settings.staleness == 0 and not self.trace
                and not listens)

    def _planned(self) -> Outgoing:
        """Start the batch on the planned path (the runner keeps it until it closes)."""
        from neurolocal.engines.plan import PlannedRounds, PlanState, compile_layout

        key = (self.settings.schedule, self.settings.eta, self.settings.iterations,
               self.group_vertices)
        state = self._layouts.get(key)
        if state is None:
            layout = compile_layout(self.graph, self.names, self.schedule,
                                    group=self.group_vertices)
            self._layouts = {key: PlanState(self.graph, self.schedule, layout)}
            state = self._layouts[key]
        self._runner = PlannedRounds(self, state)
        return self._runner.start()

    def _advance(self) -> Outgoing:
        """Step every vertex as far as its messages allow; local messages may unlock more."""
        progress = True
        while progress:
            progress = False
            observer = self.observer
            for slot in self.slots.values():
                while not slot.finished and self._step(slot):
                    progress = True
                    if observer is not None:
                        observer.stepped(self, slot.name, self._computed)
                if self._learn_if_final(slot):
                    progress = True
        return self._flush()

    def _learn_if_final(self, slot: Slot) -> bool:
        """Training: a vertex whose update is final (tied partials heard) applies it, unless
        the transport holds updates back. True if it did."""
        if slot.finished and not slot.learned and slot.heard_partials \
                and not self.hold_learning:
            self._learn(slot)
            if self.observer is not None and slot.rule.params:
                self.observer.learned(self, slot.name)
            return True
        return False

    def _feedback_total(self, slot: Slot, update: int):
        """(ready, summed feedback) for `update`: each child's message of the tag the
        schedule names, summed in graph order; total None when nobody has spoken."""
        schedule, staleness = self.schedule, self.settings.staleness
        chosen = []
        for child in slot.children:
            box = slot.inbox[child]
            if CONSTANT in box:
                chosen.append((child, box, CONSTANT))
                continue
            if staleness > 0:
                newest = max(box, default=None)
                if newest is None or newest < update - 1 - staleness:
                    return False, None
                chosen.append((child, box, newest))
                continue
            tag = schedule.needed(child, update)
            if tag is None:
                continue
            if tag not in box:
                return False, None
            chosen.append((child, box, tag))
        total = None
        for child, box, tag in chosen:
            message = box[tag]
            if staleness == 0 and tag != CONSTANT:
                for old in [t for t in box if t < tag]:
                    del box[old]
            self._read(slot, update, FEEDBACK, child, tag)
            total = message if total is None else total + message
        return True, total

    def _input_total(self, slot: Slot):
        """An input's dL/dx: every child's message of the last round, in graph order."""
        last = self.schedule.rounds
        total = None
        for child in slot.children:
            box = slot.inbox[child]
            if last not in box:
                return False, None
            self._read(slot, last + 1, FEEDBACK, child, last)
            total = box[last] if total is None else total + box[last]
        return True, total

    def _read(self, slot: Slot, update: int, kind: str, src: str, tag: int) -> None:
        """A message consumed: traced (`trace`) and told to the observer."""
        if self.trace:
            slot.consumed.append((kind, src, tag))
        if self.observer is not None:
            self.observer.read(self, slot.name, update, kind, src, tag)

    def _step(self, slot: Slot) -> bool:
        """One unit of work for one vertex, if its messages allow it. True if it moved;
        `_computed` then says whether the step did arithmetic (`RoundObserver.stepped`)."""
        rule, schedule = slot.rule, self.schedule
        self._computed = True
        if slot.round is None:
            return self._forward(slot)
        if rule.role == "input":  # waits for the final feedback of every child (dL/dx)
            ready, total = self._input_total(slot)
            if not ready:
                return False
            self.input_feedback[slot.name] = rule.input_gradient(total)
            slot.finished = True
            return True
        update = slot.round + 1
        if self.horizon is not None and update > self.horizon:
            return False
        if schedule.strict and slot.relaxed:  # phase B: re-predict from the moved values
            boxes = [slot.moved[p] for p in slot.moving_parents]
            if not all(update in box for box in boxes):
                return False
            current = {p: box.pop(update) for p, box in zip(slot.moving_parents, boxes)}
            for p in slot.moving_parents:
                self._read(slot, update, VALUE, p, update)
            rule.repredict([current[p] if p in current else slot.values[p]
                            for p in rule.parents])
            slot.relaxed = False
            return self._close_update(slot, update)
        relaxing = rule.role == "hidden" and schedule.relaxes(slot.name, update, slot.children)
        if relaxing:
            ready, total = self._feedback_total(slot, update)
            if not ready:
                return False
            if schedule.ipc and rule.params:
                self._accumulate(slot)
            rule.relax(total, self.settings.eta)
        elif rule.role == "output" and schedule.ipc and rule.params:
            self._accumulate(slot)
        if schedule.strict:  # phase A over: the value travels to the children
            if rule.role == "hidden":
                value = rule.value_message()
                for child in slot.children:
                    self._send(VALUE, update, slot.name, child, value)
            slot.relaxed = True
            return True
        if rule.role == "hidden":   # an update the schedule idles through computes nothing
            self._computed = relaxing or (update == schedule.rounds and bool(rule.params))
        return self._close_update(slot, update)

    def _forward(self, slot: Slot) -> bool:
        rule, last = slot.rule, self.schedule.rounds
        if rule.role == "input":
            value = rule.value
        elif all(p in slot.values for p in slot.parents):
            for p in slot.parents:
                self._read(slot, 0, VALUE, p, 0)
            value = rule.predict([slot.values[p] for p in rule.parents])
            if not self.schedule.strict:
                slot.values = {}
        else:
            return False
        for child in slot.children:
            self._send(VALUE, 0, slot.name, child, value)
        if self.observer is not None:
            self.observer.forward(self, slot.name)
        if rule.role == "input":
            slot.round, slot.energy = last, [0.0] * (last + 1)
            slot.finished = not self.settings.read_inputs
        elif rule.role == "output" and self.schedule.constant_output():
            slot.round, slot.energy = last, [rule.energy()] * (last + 1)
            self._send_feedback(slot, CONSTANT)
            self._finish(slot)
        else:
            slot.round, slot.energy = 0, [rule.energy()]
            self._send_feedback(slot, 0)
            if last == 0:
                self._finish(slot)
        return True

    def _close_update(self, slot: Slot, update: int) -> bool:
        slot.round = update
        slot.energy.append(slot.rule.energy())
        self._send_feedback(slot, update)
        if update == self.schedule.rounds:
            self._finish(slot)
        return True

    def _accumulate(self, slot: Slot) -> None:
        """ipc: the weight update of this round, from the current errors. Summed into
        the batch's update (a relaxation reports it; training applies it every round)."""
        step = slot.rule.hebbian()
        learning = self.settings.learning
        if learning is not None:   # training: this round's step, at once
            self._apply(slot, step, learning)
            return
        if slot.accumulated is None:
            slot.accumulated = {k: np.array(v, copy=True) for k, v in step.items()}
        else:
            for k, v in step.items():
                slot.accumulated[k] += v

    def _finish(self, slot: Slot) -> None:
        """A vertex's error is final: its Hebbian update is too. A tied-group member
        sends its partials to the owners now (tag T, logged as round T + 1)."""
        slot.finished = True
        if not slot.rule.params:
            return
        learning = self.settings.learning
        if self.schedule.ipc:
            if learning is not None:   # every round applied its own step already
                slot.learned = True
                return
            slot.update = slot.accumulated or {k: np.zeros_like(v)
                                               for k, v in slot.rule.params.items()}
        else:
            slot.update = slot.rule.hebbian()
        for owner, partials in slot.rule.partial_messages(slot.update).items():
            self._send(PARTIAL, self.schedule.rounds, slot.name, owner, partials)
        if learning is not None and slot.rule.sends:
            # its shared tensors come back from their owners, one `param` message each:
            # the vertex (and so its shard) is done only when every one has arrived, so a
            # transport that begins the next batch once a shard is done (Ray posting
            # batches ahead) never predicts with a stale copy
            slot.awaiting_params = len({owner for owner, _ in slot.rule.sends.values()})

    def _learn(self, slot: Slot) -> None:
        """Training: the vertex's update is final (tied partials summed): its optimizer
        applies it to its own parameters; an owner sends members the new values."""
        slot.learned = True
        update = slot.report()
        if update:
            self._apply(slot, update, self.settings.learning)
        for member, pairs in slot.param_receivers.items():
            values = [(param, np.array(slot.rule.params[own], copy=True)) for param, own in pairs]
            self._send(PARAM, self.schedule.rounds, slot.name, member, values)

    @staticmethod
    def _apply(slot: Slot, update: dict, learning: Learning) -> None:
        """Gradient descent along +dtheta (= -dL/dtheta): the optimizer takes -dtheta."""
        gradient = {slot.name: slot.rule.loss_gradient(update)}
        own = {slot.name: slot.rule.params}
        for _ in range(learning.updates_per_batch):
            slot.optimizer.step(own, gradient)

    def _send_feedback(self, slot: Slot, tag: int) -> None:
        """J^T eps to the parents that read this tag: relaxing parents when the schedule
        says this vertex speaks (every round when asynchronous: newest wins), inputs
        after the last round (tagged T whoever sends it)."""
        settings, schedule = self.settings, self.schedule
        last = schedule.rounds
        constant = tag == CONSTANT
        if settings.staleness > 0:
            to_hidden = True
        elif constant:
            to_hidden = last > 0
        else:
            to_hidden = tag < last and schedule.speaks(slot.name, tag)
        to_inputs = settings.read_inputs and (constant or tag == last)
        messages = slot.rule.feedback() if to_hidden else {}
        for parent in slot.parents:
            if parent in messages:
                self._send(FEEDBACK, tag, slot.name, parent, messages[parent])
        if to_inputs:
            for parent, message in slot.rule.feedback(to_inputs=True).items():
                self._send(FEEDBACK, last, slot.name, parent, message)

"""A shard: the vertex rules one actor hosts, and the round rules that drive them.

Plain Python, no Ray: `begin` and `deliver` take messages in and return the
messages to post, grouped by destination shard (one call per destination).
The Ray engine wraps a `Shard` in an actor; tests can drive shards in-process.

Messages are tuples `(batch, kind, round, src, dst, payload)`:

    value     forward pass: a vertex's prediction (an input's data) for its children
    feedback  J^T eps of `src` for its parent `dst`, computed from src's error after
              `round` relaxation updates; CONSTANT for the output's fixed error

Round rule (fixed mode). A hidden vertex's update number r + 1 needs, from every
child, the feedback of a round no older than r - S (S = staleness):

    S = 0   exactly round r: the Jacobi sweep of the local engine, bit for bit
    S > 0   the newest feedback it holds, if it is from round r - S or later
            (asynchronous relaxation with bounded delay; since the fixed-mode
            iteration matrix is triangular with diagonal 1 - eta, it converges to
            the same fixed point for 0 < eta < 2, only in more rounds)

So a vertex runs at most S rounds ahead of the children it hears from. Parents
send nothing during a fixed-mode relaxation, so they never hold a vertex back.
Energy of "round r" is the sum over vertices of their energy after r updates:
a global snapshot when S = 0, a per-vertex logical clock when S > 0.

Where tied parameters will plug in: a third kind, `partial`, carrying a member
vertex's Hebbian dtheta to its group's owner after the last round (see
`_finish_vertex`); the owner sums partials in group order before `result`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from neurolocal.graph import Graph, Params
from neurolocal.vertex import VertexRule

VALUE, FEEDBACK = "value", "feedback"
#: round tag of a message valid in every round (the output's error never changes)
CONSTANT = -1

Message = tuple  # (batch, kind, round, src, dst, payload)
Outgoing = dict[int, list[Message]]


@dataclass(frozen=True)
class RunSettings:
    batch: int
    eta: float
    iterations: int
    staleness: int = 0
    read_inputs: bool = False


class Slot:
    """One vertex's rule and what its shard has heard from its neighbours this batch."""

    def __init__(self, graph: Graph, rule):
        self.rule = rule
        self.name = rule.name
        self.children = graph.children[rule.name]          # in graph order: sums match local
        self.parents = tuple(dict.fromkeys(rule.parents))  # distinct
        self.reset()

    def reset(self) -> None:
        self.round: int | None = None                      # None: forward pass not done
        self.values: dict[str, np.ndarray] = {}            # parent -> prediction
        self.inbox: dict[str, dict[int, np.ndarray]] = {c: {} for c in self.children}
        self.energy: list[float] = []
        self.done = False

    def store_feedback(self, src: str, round_: int, payload, staleness: int) -> None:
        box = self.inbox[src]
        if staleness > 0:  # asynchronous: only the newest message matters
            if box and (CONSTANT in box or max(box) >= round_):
                return
            box.clear()
        box[round_] = payload

    def feedback_total(self, round_: int, staleness: int):
        """(ready, summed feedback) for the update after `round_`; total None when childless."""
        chosen = []
        for child in self.children:
            box = self.inbox[child]
            if CONSTANT in box:
                chosen.append((box, CONSTANT))
            elif staleness == 0:
                if round_ not in box:
                    return False, None
                chosen.append((box, round_))
            else:
                newest = max(box, default=None)
                if newest is None or newest < round_ - staleness:
                    return False, None
                chosen.append((box, newest))
        total = None
        for box, tag in chosen:
            message = box[tag] if staleness > 0 or tag == CONSTANT else box.pop(tag)
            total = message if total is None else total + message
        return True, total


class Shard:
    """Vertices of one actor. Same-shard messages are local calls; the rest are batched."""

    def __init__(self, graph: Graph, names: Sequence[str], shard_of: Mapping[str, int],
                 mode: str = "fixed"):
        self.graph = graph
        self.names = tuple(n for n in graph.order if n in set(names))
        self.shard_of = dict(shard_of)
        self.mode = mode
        self.slots = {n: Slot(graph, VertexRule.for_vertex(graph, n, {}, mode))
                      for n in self.names}
        self.settings: RunSettings | None = None
        self.pending: dict[int, list[Message]] = {}   # messages for a batch not begun yet
        self.outbox: Outgoing = {}
        self.counts = {"local_messages": 0, "remote_messages": 0, "remote_calls": 0}
        self.input_feedback: dict[str, np.ndarray] = {}
        self.target: np.ndarray | None = None

    # --- entry points --------------------------------------------------------------------

    def begin(self, settings: RunSettings, params: Params, inputs: Mapping[str, np.ndarray],
              target: np.ndarray | None) -> Outgoing:
        """Start a batch: parameters, the data of this shard's inputs, the target if the
        output lives here. Returns the messages to post."""
        self.settings = settings
        self.counts = dict.fromkeys(self.counts, 0)
        self.input_feedback = {}
        for slot in self.slots.values():
            slot.reset()
            slot.rule.params = params.get(slot.name, {})
            if slot.name == self.graph.output:
                slot.rule.set_target(target)
                self.target = slot.rule.target
            if slot.rule.role == "input":
                slot.rule.clamp(inputs[slot.name])
        for message in self.pending.pop(settings.batch, []):
            self._store(message)
        self.pending = {b: m for b, m in self.pending.items() if b > settings.batch}
        return self._advance()

    def deliver(self, messages: Sequence[Message]) -> Outgoing:
        current = None if self.settings is None else self.settings.batch
        for message in messages:
            batch = message[0]
            if current is None or batch > current:
                self.pending.setdefault(batch, []).append(message)
            elif batch == current:
                self._store(message)
            # else: a late message of a finished batch (async only); dropped
        return self._advance() if current is not None else {}

    @property
    def done(self) -> bool:
        return self.settings is not None and all(s.done for s in self.slots.values())

    def result(self) -> dict:
        """What the driver collects: scalars and this shard's own vertices' arrays."""
        graph = self.graph
        slots = self.slots.values()
        out = {
            "dtheta": {s.name: s.rule.hebbian() for s in slots if s.rule.params},
            "errors": {s.name: s.rule.error for s in slots if s.rule.role != "input"},
            "input_feedback": dict(self.input_feedback),
            "energy": {s.name: s.energy for s in slots},
            "counts": dict(self.counts),
        }
        if graph.output in self.slots:
            output = self.slots[graph.output].rule
            out["prediction"] = output.prediction
            out["loss"] = graph.loss.value(output.prediction, self.target)
        return out

    # --- message plumbing ----------------------------------------------------------------

    def _store(self, message: Message) -> None:
        _, kind, round_, src, dst, payload = message
        slot = self.slots[dst]
        if kind == VALUE:
            slot.values[src] = payload
        elif kind == FEEDBACK:
            slot.store_feedback(src, round_, payload, self.settings.staleness)
        else:
            raise ValueError(f"unknown message kind {kind!r}")

    def _send(self, kind: str, round_: int, src: str, dst: str, payload) -> None:
        message = (self.settings.batch, kind, round_, src, dst, payload)
        if dst in self.slots:
            self.counts["local_messages"] += 1
            self._store(message)
        else:
            self.counts["remote_messages"] += 1
            self.outbox.setdefault(self.shard_of[dst], []).append(message)

    def _flush(self) -> Outgoing:
        """One call per destination shard. Asynchronous rounds drop superseded feedback."""
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

    def _advance(self) -> Outgoing:
        """Step every vertex as far as its messages allow; local messages may unlock more."""
        progress = True
        while progress:
            progress = False
            for slot in self.slots.values():
                while not slot.done and self._step(slot):
                    progress = True
        return self._flush()

    def _step(self, slot: Slot) -> bool:
        """One unit of work for one vertex, if its messages allow it. True if it moved."""
        rule, settings = slot.rule, self.settings
        last = settings.iterations
        if slot.round is None:  # forward pass
            if rule.role == "input":
                value = rule.value
            elif all(p in slot.values for p in slot.parents):
                value = rule.predict([slot.values[p] for p in rule.parents])
                slot.values = {}
            else:
                return False
            for child in slot.children:
                self._send(VALUE, 0, slot.name, child, value)
            if rule.role == "input":
                slot.round, slot.energy = last, [0.0] * (last + 1)
                slot.done = not settings.read_inputs
            elif rule.role == "output":  # fixed error: one message valid in every round
                slot.round, slot.energy = last, [rule.energy()] * (last + 1)
                self._send_feedback(slot, CONSTANT)
                slot.done = True
            else:
                slot.round, slot.energy = 0, [rule.energy()]
                self._send_feedback(slot, 0)
                slot.done = last == 0
            return True
        if rule.role == "input":  # waits for the final feedback of every child
            ready, total = slot.feedback_total(last, 0)
            if not ready:
                return False
            self.input_feedback[slot.name] = (np.zeros_like(rule.value) if total is None
                                              else total)
            slot.done = True
            return True
        ready, total = slot.feedback_total(slot.round, settings.staleness)
        if not ready:
            return False
        rule.relax(total, settings.eta)
        slot.round += 1
        slot.energy.append(rule.energy())
        self._send_feedback(slot, slot.round)
        slot.done = slot.round == last
        return True

    def _send_feedback(self, slot: Slot, round_: int) -> None:
        """J^T eps to the parents that read this round: hidden parents while they still
        relax (every round when asynchronous: newest wins), inputs after the last."""
        settings = self.settings
        last = settings.iterations
        to_hidden = round_ == CONSTANT or round_ < last or settings.staleness > 0
        to_inputs = settings.read_inputs and round_ in (CONSTANT, last)
        messages = {}
        if to_hidden:
            messages.update(slot.rule.feedback())
        if to_inputs:
            messages.update(slot.rule.feedback(to_inputs=True))
        for parent in slot.parents:
            if parent in messages:
                self._send(FEEDBACK, round_, slot.name, parent, messages[parent])

"""The planned path: a shard's synchronous rounds run from its `Layout` (docs/rounds.md §9).

The runner is part of the round machine: it steps the same `VertexRule`s through the same
arithmetic as the message path (`Shard._step`), in an order the layout fixes — the forward
pass by level, then per update u a relax phase (every relaxing vertex sums its children's
feedback of the newest tag it reads, in the graph's order of children) and a speak phase
(every vertex closes update u and computes the feedback of tag u). Reads of update u need
tags <= u - 1 and the speak phase writes tag u after every read of the round, so one
buffer per edge holds what the message path keeps in inboxes; the numbers are the message
path's bit for bit (tests/test_plan.py).

What is gone is the per-message bookkeeping: no message tuple, no inbox, no schedule query
per read. Vertices of one op and one shape run as a group (`groups.py`): one stacked call
per group and step instead of one per vertex. The last update of a vertex that runs alone
closes through the machine (`Shard._close_update`), so dL/dx, Hebbian updates, tied
partials and learning are the message path's own code; a group closes with the same steps
stacked. Counts and traffic records are those the message path would have produced
(`traffic.py`).
"""

from __future__ import annotations

import numpy as np

from neurolocal.engines.plan.groups import (
    WIDE,
    ConcatSender,
    DenseGroup,
    Mailbox,
    WideReceiver,
    splits_evenly,
)
from neurolocal.engines.plan.layout import Layout
from neurolocal.engines.plan.traffic import PlanTraffic
from neurolocal.engines.schedule import CONSTANT

VALUE, FEEDBACK = "value", "error"


class PlanState:
    """What a layout keeps across batches: its groups, and the mailbox and edge buffers
    (allocated per batch size and dtype, reused while they stay the same)."""

    def __init__(self, graph, schedule, layout: Layout):
        self.layout = layout
        self.groups = [DenseGroup(graph, schedule, members) for members in layout.groups]
        #: vertex -> (its group, its row): where a group finds its parents' predictions
        self.sources = {m: (group, g) for group in self.groups
                        for g, m in enumerate(group.members)}
        self.mailbox = Mailbox()
        single = [n for n in layout.order if n not in self.sources]
        #: concat vertices whose feedback is their error's equal slices, written at once
        self.concats = {n: ConcatSender(graph, n) for n in single if splits_evenly(graph, n)}
        #: vertices running alone that sum many children's feedback with one gather
        self.wide = {n: WideReceiver(graph, schedule, n) for n in layout.hidden
                     if len(graph.children[n]) >= WIDE}
        for group in self.groups:
            group.claim_outgoing(self.mailbox)
        for sender in self.concats.values():
            sender.claim(self.mailbox)
        for group in self.groups:
            group.claim_incoming(self.mailbox)
        for receiver in self.wide.values():
            receiver.claim(self.mailbox)
        self.store: dict[tuple[str, str], np.ndarray] = {}
        self.shape = None
        #: traffic templates per (batch size, dtype): phase -> Template (traffic.py)
        self.templates: dict = {}

    def prepare(self, batch: int, dtype) -> None:
        if self.shape == (batch, dtype):
            return
        self.shape = (batch, dtype)
        self.mailbox.allocate(batch, dtype)
        self.store = {}
        for group in self.groups:
            group.bind(self.mailbox, self.store)
        for sender in self.concats.values():
            sender.bind(self.mailbox, self.store)
        for receiver in self.wide.values():
            receiver.bind(self.mailbox)


class PlannedRounds:
    """One batch of a shard that holds the whole graph, run from its layout."""

    def __init__(self, shard, state: PlanState):
        self.shard = shard
        self.state = state
        self.layout = layout = state.layout
        self.slots = shard.slots
        settings = shard.settings
        self.eta = settings.eta
        self.read_inputs = settings.read_inputs
        self.learning = settings.learning
        self.strict = shard.schedule.strict
        self.ipc = shard.schedule.ipc
        self.graph = shard.graph
        self.dtype = np.dtype(settings.dtype)
        batch = len(next(iter(self.slots[n].rule.value for n in layout.order
                               if self.slots[n].rule.role == "input")))
        state.prepare(batch, self.dtype)
        #: the newest J^T eps each vertex sent each relaxing parent: (src, dst) -> array
        self.store = state.store
        self.rows = state.mailbox.rows
        self.mailbox = state.mailbox
        self.groups = state.groups
        #: forward values: what each vertex sent its children in round 0
        self.values: dict[str, object] = {}
        self.next_update = 1
        self.closed = False
        self.sent = 0
        self.traffic = (PlanTraffic(shard, state.templates.setdefault(
            (batch, self.dtype.str), {})) if shard.log is not None else None)
        #: this batch records its messages one by one (the layout's first logged batch)
        self.capture = self.traffic is not None and self.traffic.capturing
        R = layout.rounds
        self.history = [np.empty((R + 1, len(g.members))) for g in self.groups]

    # --- entry points --------------------------------------------------------------------

    def start(self):
        self._forward()
        return self.resume()

    def resume(self):
        """Run the rounds the horizon allows; after the last, the machine closes the batch."""
        shard, R = self.shard, self.layout.rounds
        while self.next_update <= R and (shard.horizon is None
                                         or self.next_update <= shard.horizon):
            self._update(self.next_update)
            self.next_update += 1
        if self.next_update > R and not self.closed:
            self.closed = True
            shard.counts["local_messages"] += self.sent
            self.sent = 0
        return shard._advance() if self.closed else shard._flush()

    def updates_done(self, vertex: str) -> int | None:
        """Updates a grouped vertex has done mid-batch (its slot learns its round when the
        group closes); None: the slot knows (a vertex run alone, or a closed batch)."""
        if self.closed or vertex not in self.state.sources:
            return None
        return self.next_update - 1

    # --- the forward pass ----------------------------------------------------------------

    def _forward(self) -> None:
        shard, slots, values, R = self.shard, self.slots, self.values, self.layout.rounds
        rules = {n: slots[n].rule for n in self.layout.order}
        for item in self.layout.forward:
            if isinstance(item, int):
                self._forward_group(item, rules)
                continue
            rule = rules[item]
            if rule.role == "input":
                values[item] = rule.value
            else:
                values[item] = rule.predict([values[p] for p in rule.parents])
            self._after_forward(slots[item])
        if self.traffic is not None:
            self.traffic.phase("forward")

    def _forward_group(self, index: int, rules) -> None:
        group, slots = self.groups[index], self.slots
        group.forward(rules, self.values, self.dtype, lambda name: slots[name].optimizer,
                      self.state.sources)
        energies = group.energies()
        self.history[index][0] = energies
        observer, values = self.shard.observer, self.values
        traffic = self.traffic if self.capture else None
        for g, name in enumerate(group.members):
            slot = slots[name]
            slot.round = 0
            children = slot.children
            self.sent += len(children)
            if traffic is not None and children:
                traffic.values(0, name, children, values[name])
            if observer is not None:
                observer.forward(self.shard, name)
        if self.layout.rounds > 0:
            if self.layout.group_speaks(index, 0):
                self._group_speak(index, 0)
        else:
            self._close_group(index, 0)

    def _after_forward(self, slot) -> None:
        """The message path's `_forward` after the prediction: sends, energy, feedback."""
        shard, R, name, rule = self.shard, self.layout.rounds, slot.name, slot.rule
        children = slot.children
        self.sent += len(children)
        if self.capture and children:
            self.traffic.values(0, name, children, self.values[name])
        if shard.observer is not None:
            shard.observer.forward(shard, name)
        if rule.role == "input":
            slot.round, slot.energy = R, [0.0] * (R + 1)
            slot.finished = not self.read_inputs
        elif name == self.graph.output and not self.strict:
            slot.round, slot.energy = R, [rule.energy()] * (R + 1)
            if R > 0:
                self.speak(slot, CONSTANT)
            if self.read_inputs:
                self.speak_inputs(slot)
            shard._finish(slot)
            shard._learn_if_final(slot)   # at once, as the message path learns it
        else:
            slot.round, slot.energy = 0, [rule.energy()]
            if R > 0:
                if name in self.layout.speakers[0]:
                    self.speak(slot, 0)
            else:   # no rounds: the forward pass's error is final
                if self.read_inputs:
                    self.speak_inputs(slot)
                shard._finish(slot)

    # --- one update ----------------------------------------------------------------------

    def _update(self, u: int) -> None:
        if self.strict:
            self._strict_update(u)
        else:
            self._fixed_update(u)

    def _totals(self, u: int) -> None:
        """Relax phase: every relaxing vertex of update u sums its children's feedback (in
        the graph's order of children), then relaxes."""
        slots, store, eta, wide = self.slots, self.store, self.eta, self.state.wide
        for name, children in self.layout.relaxers[u]:
            rule = slots[name].rule
            if name in wide and children:
                rule.relax(wide[name].total(u, rule.value), eta)
                continue
            total = None
            for child in children:
                message = store[(child, name)]
                total = message if total is None else total + message
            rule.relax(total, eta)
        for group in self.groups:
            if u in group.relaxes:
                group.relax_values(u, eta)

    def _fixed_update(self, u: int) -> None:
        self._totals(u)
        self._close(u, self.layout.hidden)

    def _strict_update(self, u: int) -> None:
        # phase A: relax every hidden vertex (ipc: its weight step first), values travel
        shard, slots = self.shard, self.slots
        traffic = self.traffic if self.capture else None
        if self.ipc:
            for name in self.layout.predicting:
                slot = slots[name]
                if slot.rule.params:
                    shard._accumulate(slot)
        moved = {}
        self._totals(u)
        for name in self.layout.hidden:
            slot = slots[name]
            moved[name] = value = slot.rule.value_message()
            children = slot.children
            self.sent += len(children)
            if traffic is not None and children:
                traffic.values(u, name, children, value)
        if self.traffic is not None:
            self.traffic.phase(("values", u))
        # phase B: every vertex re-predicts from the moved values, then speaks
        values, frozen = self.values, self.layout.frozen
        for name in self.layout.predicting:
            rule = slots[name].rule
            if name in frozen:   # the same prediction: only the error moves
                if rule.role == "hidden":
                    rule.refresh_error()
            else:
                rule.repredict([moved[p] if p in moved else values[p] for p in rule.parents])
        self._close(u, self.layout.predicting)

    def _close(self, u: int, names) -> None:
        """Speak phase: every updating vertex closes update u (the last: through the
        machine, or stacked for a group)."""
        shard, slots = self.shard, self.slots
        last = u == self.layout.rounds
        if last:
            for name in names:
                shard._close_update(slots[name], u)
        else:
            speakers = self.layout.speakers[u]
            for name in names:
                slot = slots[name]
                slot.round = u
                slot.energy.append(slot.rule.energy())
                if name in speakers:
                    self.speak(slot, u)
        for index, group in enumerate(self.groups):
            self.history[index][u] = group.energies()
            if last:
                self._close_group(index, u)
            elif self.layout.group_speaks(index, u):
                    self._group_speak(index, u)
        if self.traffic is not None and not last:
            self.traffic.phase(("feedback", u))

    def _close_group(self, index: int, u: int) -> None:
        """A group's last update: energies, dL/dx to inputs, Hebbian updates, learning —
        the machine's `_close_update`, `_finish` and `_learn`, stacked."""
        shard, slots, group = self.shard, self.slots, self.groups[index]
        history = self.history[index][:u + 1]
        if u == 0:
            history[0] = group.energies()
        group.hebbian()
        learning = self.learning
        members = [slots[n] for n in group.members]
        for g, slot in enumerate(members):
            slot.round = u
            slot.energy = history[:, g].tolist()
            if self.read_inputs:
                self.speak_inputs(slot)
            slot.finished = True
        if learning is not None and not shard.hold_learning \
                and group.learn([slot.optimizer for slot in members], learning):
            observer = shard.observer
            for slot in members:   # applied: nobody reads the update any more
                slot.learned = True
                if observer is not None:
                    observer.learned(shard, slot.name)
            return
        for slot, update in zip(members, group.member_updates()):
            slot.update = update   # reported (relaxation), or applied by the machine
            shard._learn_if_final(slot)

    # --- messages --------------------------------------------------------------------------

    def _group_speak(self, index: int, tag: int) -> None:
        group = self.groups[index]
        self.sent += group.speak()
        if self.capture:
            for k in group.relaxing:
                for g, (m, p) in enumerate(zip(group.members, group.parents[k])):
                    self.traffic.feedback(tag, m, p, group.out[k][g])

    def speak(self, slot, tag: int) -> None:
        """J^T eps of `slot` to its relaxing parents, into the edge buffers
        (Shard._send_feedback, S = 0); a group reading an edge finds it in the mailbox."""
        rule = slot.rule
        concat = self.state.concats.get(slot.name)
        if concat is not None:
            self.sent += concat.speak(rule)
            if self.capture:
                for parent, message in zip(concat.parents, concat.block):
                    self.traffic.feedback(tag, slot.name, parent, message)
            return
        messages = rule.feedback()
        store, name, rows = self.store, slot.name, self.rows
        for parent in slot.parents:
            if parent in messages:
                store[(name, parent)] = message = messages[parent]
                if (name, parent) in rows:
                    self.mailbox.view((name, parent))[...] = message
                self.sent += 1
                if self.capture:
                    self.traffic.feedback(tag, name, parent, message)

    def speak_inputs(self, slot) -> None:
        """dL/dx to input parents, through the machine (read once, after the last round)."""
        last = self.layout.rounds
        for parent, message in slot.rule.feedback(to_inputs=True).items():
            self.shard._send(FEEDBACK, last, slot.name, parent, message)

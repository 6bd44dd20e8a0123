"""The planned path: a shard's synchronous rounds run from its `Layout` (docs/rounds.md §9).

The runner is part of the round machine: it steps the same `VertexRule`s through the same
arithmetic as the message path (`Shard._step`), in an order the layout fixes — the forward
pass in topological order, then per update u a relax phase (every relaxing vertex sums its
children's feedback of the newest tag it reads, in the graph's order of children) and a
speak phase (every vertex closes update u and computes the feedback of tag u). Reads of
update u need tags <= u - 1 and the speak phase writes tag u after every read of the round,
so one buffer per edge holds what the message path keeps in inboxes; the numbers are the
message path's bit for bit (tests/test_plan.py).

What is gone is the per-message bookkeeping: no message tuple, no inbox, no schedule query
per read. Vertices of one op and one shape run as a group (`groups.py`): one stacked
product per group and round instead of one call per vertex. The last update closes through
the machine (`Shard._close_update`), so dL/dx, Hebbian updates, tied partials and learning
are the message path's own code; counts and traffic records are those the message path
would have produced (`traffic.py`).
"""

from __future__ import annotations

from neurolocal.engines.plan.layout import Layout
from neurolocal.engines.plan.traffic import PlanTraffic
from neurolocal.engines.schedule import CONSTANT

VALUE, FEEDBACK = "value", "error"


class PlannedRounds:
    """One batch of a shard that holds the whole graph, run from its layout."""

    def __init__(self, shard, layout: Layout):
        self.shard = shard
        self.layout = layout
        self.slots = shard.slots
        settings = shard.settings
        self.eta = settings.eta
        self.read_inputs = settings.read_inputs
        self.strict = shard.schedule.strict
        self.ipc = shard.schedule.ipc
        self.graph = shard.graph
        #: the newest J^T eps each vertex sent each relaxing parent: (src, dst) -> array
        self.store: dict[tuple[str, str], object] = {}
        #: forward values: what each vertex sent its children in round 0
        self.values: dict[str, object] = {}
        self.next_update = 1
        self.closed = False
        self.sent = 0
        self.traffic = PlanTraffic(shard) if shard.log is not None else None

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
            if self.traffic is not None:
                self.traffic.flush()
        return shard._advance() if self.closed else shard._flush()

    # --- the forward pass ----------------------------------------------------------------

    def _forward(self) -> None:
        shard, slots, values, R = self.shard, self.slots, self.values, self.layout.rounds
        observer = shard.observer
        traffic = self.traffic
        constant = not self.strict
        output = self.graph.output
        for name in self.layout.order:
            slot = slots[name]
            rule = slot.rule
            children = slot.children
            if rule.role == "input":
                values[name] = rule.value
            else:
                values[name] = rule.predict([values[p] for p in rule.parents])
            if traffic is not None and children:
                traffic.values(0, name, children, values[name])
            self.sent += len(children)
            if observer is not None:
                observer.forward(shard, name)
            if rule.role == "input":
                slot.round, slot.energy = R, [0.0] * (R + 1)
                slot.finished = not self.read_inputs
            elif name == output and constant:
                slot.round, slot.energy = R, [rule.energy()] * (R + 1)
                if R > 0:
                    self.speak(slot, CONSTANT)
                if self.read_inputs:
                    self.speak_inputs(slot)
                shard._finish(slot)
                shard._learn_if_final(slot)   # at once, as the message path learns it
            else:
                slot.round, slot.energy = 0, [rule.energy()]
                if not self.strict:
                    slot.values = {}
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
        if self.traffic is not None:
            self.traffic.end_round()

    def _totals(self, u: int) -> None:
        """Relax phase: every relaxing vertex of update u sums its children's feedback (in
        the graph's order of children), then relaxes."""
        slots, store, eta = self.slots, self.store, self.eta
        for name, children in self.layout.relaxers[u]:
            total = None
            for child in children:
                message = store[(child, name)]
                total = message if total is None else total + message
            slots[name].rule.relax(total, eta)

    def _fixed_update(self, u: int) -> None:
        self._totals(u)
        self._close(u, self.layout.hidden)

    def _strict_update(self, u: int) -> None:
        # phase A: relax every hidden vertex (ipc: its weight step first), values travel
        shard, slots, traffic = self.shard, self.slots, self.traffic
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
        """Speak phase: every updating vertex closes update u (the last: through the machine)."""
        shard, slots = self.shard, self.slots
        if u == self.layout.rounds:
            for name in names:
                shard._close_update(slots[name], u)
            return
        speakers = self.layout.speakers[u]
        for name in names:
            slot = slots[name]
            slot.round = u
            slot.energy.append(slot.rule.energy())
            if name in speakers:
                self.speak(slot, u)

    # --- messages --------------------------------------------------------------------------

    def speak(self, slot, tag: int) -> None:
        """J^T eps of `slot` to its relaxing parents, into the edge buffers
        (Shard._send_feedback, S = 0)."""
        rule = slot.rule
        messages = rule.feedback()
        store, name = self.store, slot.name
        for parent in slot.parents:
            if parent in messages:
                store[(name, parent)] = message = messages[parent]
                self.sent += 1
                if self.traffic is not None:
                    self.traffic.feedback(tag, name, parent, message)

    def speak_inputs(self, slot) -> None:
        """dL/dx to input parents, through the machine (read once, after the last round)."""
        last = self.layout.rounds
        for parent, message in slot.rule.feedback(to_inputs=True).items():
            self.shard._send(FEEDBACK, last, slot.name, parent, message)

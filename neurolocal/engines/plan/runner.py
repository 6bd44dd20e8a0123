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
        local = set(layout.order)
        self.concats = {n: ConcatSender(graph, n) for n in single if splits_evenly(graph, n)
                        and all(p in local for p in graph.vertices[n].parents)}
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
        self._remote(graph, schedule, layout)
        for group in self.groups:   # J^T eps of a member to a parent on another shard
            group.remote_out = tuple((k, g, m, p) for k in group.relaxing
                                     for g, (m, p) in enumerate(zip(group.members,
                                                                    group.parents[k]))
                                     if p not in self.local)

    def _remote(self, graph, schedule, layout: Layout) -> None:
        """What this shard's rounds need from other shards, and send them (a shard that
        holds part of the graph): per forward item, its remote parents; per update, the
        remote children's feedback each relaxer reads (with its tag) and, in strict mode,
        the remote parents' moved values each re-prediction reads."""
        local = set(layout.order)
        self.local = local
        self.remote_children = {n: tuple(c for c in graph.children[n] if c not in local)
                                for n in layout.order}
        self.local_children = {n: tuple(c for c in graph.children[n] if c in local)
                               for n in layout.order}
        groups = {i: members for i, members in enumerate(layout.groups)}
        self.forward_needs = {}
        #: per forward item, its local parents (a shard's item may wait on a local parent
        #: that waits on another shard); empty when the whole graph is here (level order)
        self.forward_after = {}
        whole = len(local) == len(graph.order)
        for item in layout.forward:
            members = groups[item] if isinstance(item, int) else (item,)
            parents = [(m, p) for m in members for p in dict.fromkeys(graph.vertices[m].parents)]
            self.forward_needs[item] = tuple((m, p) for m, p in parents if p not in local)
            self.forward_after[item] = () if whole else tuple(
                dict.fromkeys(p for _, p in parents if p in local))
        relaxing = [n for n in layout.order if not graph.is_input(n) and n != graph.output]
        self.needs_feedback = [()]
        for u in range(1, layout.rounds + 1):
            row = []
            for v in relaxing:
                if not schedule.relaxes(v, u, graph.children[v]):
                    continue
                for c in self.remote_children[v]:
                    tag = schedule.needed(c, u)
                    if tag is not None:
                        row.append((v, c, tag))
            self.needs_feedback.append(tuple(row))
        self.needs_values = ()
        if schedule.strict:
            self.needs_values = tuple(
                (v, p) for v in layout.order if not graph.is_input(v)
                and v not in layout.frozen
                for p in dict.fromkeys(graph.vertices[v].parents)
                if p not in local and not graph.is_input(p))
        #: the whole graph is here: nothing to wait for, nothing to send
        self.whole = len(local) == len(graph.order)

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
        self.rows = state.mailbox.rows
        self.mailbox = state.mailbox
        self.groups = state.groups
        #: forward values: what each vertex sent its children in round 0 (and the values
        #: of remote parents, once they arrive)
        self.values: dict[str, object] = {}
        self.waiting = list(layout.forward)   # forward items not run yet
        self.next_update = 1
        self.phase_b = False   # strict: update next_update's values are out, phase B next
        self.closed = False
        self.sent = 0
        self.prepared = False
        self.traffic = None
        self.capture = False
        R = layout.rounds
        self.history = [np.empty((R + 1, len(g.members))) for g in self.groups]

    def _prepare(self, batch: int) -> None:
        """The batch size is known (the first value seen): buffers and traffic templates."""
        self.prepared = True
        state = self.state
        state.prepare(batch, self.dtype)
        #: the newest J^T eps each vertex sent each relaxing parent: (src, dst) -> array
        self.store = state.store
        if self.shard.log is not None:
            self.traffic = PlanTraffic(self.shard, state.templates.setdefault(
                (batch, self.dtype.str), {}))
            #: this batch records its messages one by one (the layout's first logged batch)
            self.capture = self.traffic.capturing

    # --- entry points --------------------------------------------------------------------

    def start(self):
        return self.resume()

    def resume(self):
        """Run what the messages held and the horizon allow: the forward pass, then whole
        updates (each once every remote message it reads is here); after the last, the
        machine closes the batch."""
        shard, R = self.shard, self.layout.rounds
        if self.waiting:
            self._forward()
            if self.waiting:
                return shard._flush()
        while self.next_update <= R and (shard.horizon is None
                                         or self.next_update <= shard.horizon):
            if not self._update(self.next_update):
                return shard._flush()
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
        """Every forward item whose parents' values are here (remote ones as messages)."""
        slots, values = self.slots, self.values
        needs, after = self.state.forward_needs, self.state.forward_after
        waiting = []
        for item in self.waiting:
            if after[item] and not all(p in values for p in after[item]):
                waiting.append(item)
                continue
            remote = needs[item]
            if remote:
                if not all(p in slots[m].values for m, p in remote):
                    waiting.append(item)
                    continue
                for m, p in remote:
                    values[p] = slots[m].values[p]
            if not self.prepared:
                self._prepare(self._batch_size(item))
            if isinstance(item, int):
                self._forward_group(item)
                continue
            rule = slots[item].rule
            if rule.role == "input":
                values[item] = rule.value
            else:
                values[item] = rule.predict([values[p] for p in rule.parents])
            self._after_forward(slots[item])
        self.waiting = waiting
        if not waiting and self.traffic is not None:
            self.traffic.phase("forward")

    def _batch_size(self, item) -> int:
        name = self.groups[item].members[0] if isinstance(item, int) else item
        rule = self.slots[name].rule
        if rule.role == "input":
            return len(rule.value)
        parent = rule.parents[0]
        return len(self.values[parent])

    def _forward_group(self, index: int) -> None:
        group, slots = self.groups[index], self.slots
        group.forward([slots[m].rule for m in group.members], self.values, self.dtype,
                      lambda name: slots[name].optimizer, self.state.sources)
        energies = group.energies()
        self.history[index][0] = energies
        observer, values = self.shard.observer, self.values
        traffic = self.traffic if self.capture else None
        local, remote = self.state.local_children, self.state.remote_children
        for g, name in enumerate(group.members):
            slot = slots[name]
            slot.round = 0
            self._values_out(0, name, values[name], local[name], remote[name], traffic)
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
        self._values_out(0, name, self.values[name], self.state.local_children[name],
                         self.state.remote_children[name], self.traffic if self.capture else None)
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

    def _update(self, u: int) -> bool:
        """Update u, once the remote messages it reads are here. False: not yet (strict:
        phase A may be done, phase B waits for the remote parents' moved values)."""
        if not self.phase_b:
            if not self._import_feedback(u):
                return False
            if not self.strict:
                self._totals(u)
                self._close(u, self.layout.hidden, self.layout.still[u])
                return True
            self._strict_values(u)
            self.phase_b = True
        if not self._import_values(u):
            return False
        self.phase_b = False
        self._strict_close(u)
        return True

    def _import_feedback(self, u: int) -> bool:
        """The remote children's feedback update u reads, into the edge buffers."""
        needs = self.state.needs_feedback[u]
        if not needs:
            return True
        slots = self.slots
        for v, c, tag in needs:
            if tag not in slots[v].inbox[c]:
                return False
        store, rows, mailbox = self.store, self.rows, self.mailbox
        for v, c, tag in needs:
            box = slots[v].inbox[c]
            store[(c, v)] = message = box[tag]
            for old in [t for t in box if t < tag and t != CONSTANT]:
                del box[old]
            if (c, v) in rows:
                mailbox.view((c, v))[...] = message
        return True

    def _import_values(self, u: int) -> bool:
        """Strict mode: the remote parents' values of update u are here."""
        slots = self.slots
        return all(u in slots[v].moved[p] for v, p in self.state.needs_values)

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

    def _strict_values(self, u: int) -> None:
        """Strict phase A: relax every hidden vertex (ipc: its weight step first); the
        values travel to the children."""
        shard, slots = self.shard, self.slots
        traffic = self.traffic if self.capture else None
        if self.ipc:
            for name in self.layout.predicting:
                slot = slots[name]
                if slot.rule.params:
                    shard._accumulate(slot)
        self.moved = moved = {}
        self._totals(u)
        local, remote = self.state.local_children, self.state.remote_children
        for name in self.layout.hidden:
            moved[name] = value = slots[name].rule.value_message()
            self._values_out(u, name, value, local[name], remote[name], traffic)
        if self.traffic is not None:
            self.traffic.phase(("values", u))

    def _strict_close(self, u: int) -> None:
        """Strict phase B: every vertex re-predicts from the moved values, then speaks."""
        slots, moved, values, frozen = self.slots, self.moved, self.values, self.layout.frozen
        local = self.state.local
        for name in self.layout.predicting:
            slot = slots[name]
            rule = slot.rule
            if name in frozen:   # the same prediction: only the error moves
                if rule.role == "hidden":
                    rule.refresh_error()
                continue
            rule.repredict([moved[p] if p in moved
                            else values[p] if p in local or self.graph.is_input(p)
                            else slot.moved[p][u] for p in rule.parents])
        for v, p in self.state.needs_values:   # read: gone
            slots[v].moved[p].pop(u, None)
        self._close(u, self.layout.predicting)

    def _close(self, u: int, names, still: frozenset = frozenset()) -> None:
        """Speak phase: every updating vertex closes update u (the last: through the
        machine, or stacked for a group). `still`: vertices whose error did not move in
        update u (fixed mode, not relaxing): their energy is the last one, not summed
        again (at depth 128 the sums were 40% of an epoch)."""
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
                slot.energy.append(slot.energy[-1] if name in still else slot.rule.energy())
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

    def _values_out(self, round_: int, name: str, value, local, remote, traffic) -> None:
        """A value to the children: local ones read it where it is (counted, recorded);
        remote ones get a message."""
        self.sent += len(local)
        if traffic is not None and local:
            traffic.values(round_, name, local, value)
        if remote and value.base is not None:   # a group's row: send it, not its stack
            value = value.copy()
        for child in remote:
            self.shard._send(VALUE, round_, name, child, value)

    def _group_speak(self, index: int, tag: int) -> None:
        group = self.groups[index]
        self.sent += group.speak()
        for k, g, m, p in group.remote_out:   # a copy: the block is written again next round
            self.sent -= 1
            self.shard._send(FEEDBACK, tag, m, p, group.out[k][g].copy())
        if self.capture:
            local = self.state.local
            for k in group.relaxing:
                for g, (m, p) in enumerate(zip(group.members, group.parents[k])):
                    if p in local:
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
        store, name, rows, local = self.store, slot.name, self.rows, self.state.local
        for parent in slot.parents:
            if parent in messages:
                if parent not in local:
                    self.shard._send(FEEDBACK, tag, name, parent, messages[parent])
                    continue
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

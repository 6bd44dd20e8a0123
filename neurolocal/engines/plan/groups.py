"""Vertices of one op and one shape, run together on the planned path (docs/rounds.md §9).

A wide layer cut into tiles is hundreds of `dense` / `multi_dense` vertices with the same
attributes and the same shapes. The planned path runs such a set as one `DenseGroup`: their
values, errors and predictions stacked ([G, batch, units]), their weights stacked
([G, fan-in, units]), and each step of the vertex rule done once for all of them — the
forward product, the relaxation kernel, the energy, J^T eps for each parent, the Hebbian
update, the optimizer's step. Each vertex still has its own rule, whose arrays are views
of the group's rows, its own optimizer (moments kept per vertex, stacked for the step),
and its own messages (views of one mailbox, `Mailbox`).

The numbers are the message path's bit for bit: every elementwise step is the same
arithmetic on the same numbers; a stacked product is numpy's matmul calling the same
BLAS kernel on each [batch, fan-in] x [fan-in, units] slice that the vertex would call;
a stacked sum over the batch adds the rows in the same order; the energy is one kernel
(`kernels.squared_norms`) for a row or a stack. tests/test_plan.py holds the two paths
equal on tiled graphs, training with Adam and SGD included.

Which vertices group (`group_key`): hidden `dense` / `multi_dense` in fixed mode with a
plain linear map (multiplier 1, no pre-activation, no skip), flat parents, no parent
twice, no tied parameter, the same attributes, parent shapes and input/relaxing pattern,
the same schedule pattern (speaking tags, relaxing updates) and the same level (longest
path from an input: a level's vertices depend only on lower levels). Anything else runs
one vertex at a time on the same planned rounds.
"""

from __future__ import annotations

import numpy as np

from neurolocal import kernels
from neurolocal.ops.activations import apply_activation
from neurolocal.ops.dense import Dense
from neurolocal.ops.multi_dense import MultiDense

#: fewer vertices than this run one at a time (a stack of one buys nothing)
MIN_GROUP = 2
#: the attribute naming the group whose stacks hold an optimizer's moments
BINDING = "_moments_stacked_by"


def stack(arrays: list) -> np.ndarray:
    """Arrays of one shape and dtype as one array, the first axis new (np.stack's result,
    made by one concatenation: np.stack checks every array's shape in Python)."""
    first = arrays[0]
    return np.concatenate(arrays).reshape(len(arrays), *first.shape) if first.ndim else \
        np.array(arrays)


def weight_names(op, parents: int) -> tuple[str, ...]:
    return ("weight",) if type(op) is Dense else tuple(f"weight{k}" for k in range(parents))


def group_key(graph, schedule, name: str, level: int):
    """What vertices must share to run as one group; None: this one runs alone."""
    spec = graph.vertices[name]
    op = spec.op
    if schedule.strict or graph.is_input(name) or name == graph.output:
        return None
    if type(op) not in (Dense, MultiDense):
        return None
    if op.multiplier != 1.0 or op.pre_activation != "identity" or op.skip:
        return None
    parents = tuple(spec.parents)
    if len(set(parents)) != len(parents):
        return None
    sends, expects = graph.ties_of(name)
    if sends or expects or any(group.owner[0] == name for group in graph.tied):
        return None
    shapes = tuple(graph.shapes[p] for p in parents)
    if any(len(s) != 1 for s in shapes):
        return None
    inputs = tuple(graph.is_input(p) for p in parents)
    children = graph.children[name]
    relaxes = tuple(u for u in range(1, schedule.rounds + 1)
                    if schedule.relaxes(name, u, children))
    return (type(op).__name__, op.units, op.activation, op.bias, shapes, inputs,
            schedule.ranges(name), relaxes, level)


class Mailbox:
    """The edge buffers a group reads or writes, one array per message shape: row 0 is
    zeros (a child that has not spoken), every other row one edge (src, dst). A group's
    J^T eps to its k-th parents are consecutive rows, so one stacked product writes
    them; a group's feedback total gathers its rows in one indexing."""

    def __init__(self):
        self.rows: dict[tuple[str, str], tuple[tuple, int]] = {}
        self.count: dict[tuple, int] = {}
        self.arrays: dict[tuple, np.ndarray] = {}

    def add(self, edge: tuple[str, str], shape: tuple) -> int:
        if edge in self.rows:
            return self.rows[edge][1]
        row = self.count.get(shape, 1)
        self.count[shape] = row + 1
        self.rows[edge] = (shape, row)
        return row

    def allocate(self, batch: int, dtype) -> None:
        self.arrays = {shape: np.zeros((n, batch, *shape), dtype=dtype)
                       for shape, n in self.count.items()}

    def view(self, edge: tuple[str, str]) -> np.ndarray:
        shape, row = self.rows[edge]
        return self.arrays[shape][row]


class DenseGroup:
    """G hidden dense / multi_dense vertices of one key, run as one."""

    def __init__(self, graph, schedule, members: tuple[str, ...]):
        self.members = members
        spec = graph.vertices[members[0]]
        self.op = spec.op
        self.K = len(spec.parents)
        self.parents = tuple(tuple(graph.vertices[m].parents[k] for m in members)
                             for k in range(self.K))
        self.relaxing = tuple(k for k in range(self.K) if not graph.is_input(spec.parents[k]))
        self.parent_shapes = tuple(graph.shapes[p] for p in spec.parents)
        self.names = weight_names(self.op, self.K)
        self.shape = graph.shapes[members[0]]
        self.relaxes = frozenset(u for u in range(1, schedule.rounds + 1)
                                 if schedule.relaxes(members[0], u,
                                                     graph.children[members[0]]))
        #: update u -> for each member, the children whose feedback it reads at u
        self.reads = {u: tuple(schedule.read_at(graph.children[m], u) for m in members)
                      for u in self.relaxes}
        self.gather: dict[int, np.ndarray] = {}
        self._rows: dict[int, object] = {}   # parent slot -> rows of one source group

    # --- the mailbox -------------------------------------------------------------------

    def claim_outgoing(self, mailbox: Mailbox) -> None:
        """Consecutive rows for J^T eps to each relaxing parent slot."""
        for k in self.relaxing:
            for m, p in zip(self.members, self.parents[k]):
                mailbox.add((m, p), self.parent_shapes[k])

    def claim_incoming(self, mailbox: Mailbox) -> None:
        """A row for every edge this group reads, and the gather index of each update."""
        made: dict[tuple, tuple] = {}   # one index per pattern of reads (jacobi: one)
        for u, reads in self.reads.items():
            if reads in made:
                self.gather[u] = made[reads]
                continue
            width = max((len(r) for r in reads), default=0)
            index = np.zeros((len(self.members), max(width, 1)), dtype=np.int64)
            counts = np.array([len(r) for r in reads], dtype=np.int64)
            for g, (m, children) in enumerate(zip(self.members, reads)):
                for i, c in enumerate(children):
                    index[g, i] = mailbox.add((c, m), self.shape)
            self.gather[u] = made[reads] = (index, counts)

    def bind(self, mailbox: Mailbox, store: dict) -> None:
        """Views of the mailbox: the group's outgoing blocks, and each edge's buffer."""
        self.inbox = mailbox.arrays.get(self.shape)   # None: it reads no child
        self.out = {}
        G = len(self.members)
        for k in self.relaxing:
            rows = [mailbox.rows[(m, p)][1] for m, p in zip(self.members, self.parents[k])]
            first = rows[0]
            if rows != list(range(first, first + G)):   # the machine's bug, never the user's
                raise RuntimeError("a group's outgoing mailbox rows are not consecutive")
            block = mailbox.arrays[self.parent_shapes[k]][first:first + G]
            self.out[k] = block
            for g, (m, p) in enumerate(zip(self.members, self.parents[k])):
                store[(m, p)] = block[g]

    # --- one batch ---------------------------------------------------------------------

    def _gather_weights(self) -> None:
        """The members' current weights, stacked; and when they were taken (see `_current`)."""
        self.W = [stack([r.params[n] for r in self.rules]) for n in self.names]
        self.b = stack([r.params["bias"] for r in self.rules]) if self.op.bias else None
        self._gathered = self._version()

    def _version(self):
        """How many steps the members' optimizers have taken (None: no optimizer). Within a
        batch only learning moves a member's weights: another pipelining lane's, sharing
        these vertices, all members at once."""
        optimizer = self.optimizer_of(self.members[0])
        return None if optimizer is None else optimizer.step_count

    def _current(self) -> None:
        """Take the weights again if they moved since they were stacked."""
        if self._version() != self._gathered:
            self._gather_weights()

    def _parent_values(self, k: int, values: dict, sources: dict) -> np.ndarray:
        """The members' k-th parents' values, stacked: one vertex's value as a stack of one
        (matmul broadcasts it: the same product per member), rows of one group's
        predictions taken in one indexing when every such parent is in that group, else
        stacked one by one."""
        parents = self.parents[k]
        if len(set(parents)) == 1:   # every member reads one vertex (the input): broadcast
            return values[parents[0]][None]
        source = sources.get(parents[0])
        if source is not None:
            group, rows = source[0], self._rows.get(k)
            if rows is None:
                found = [sources.get(p) for p in parents]
                rows = (np.array([f[1] for f in found], dtype=np.intp)
                        if all(f is not None and f[0] is group for f in found) else False)
                self._rows[k] = rows
            if rows is not False:
                return group.P[rows]
        return stack([values[p] for p in parents])

    def forward(self, rules, values: dict, dtype, optimizers, sources: dict) -> None:
        """Every member's prediction from its parents' values; members' rules see views."""
        self.rules = rules
        self.optimizer_of = optimizers
        self._gather_weights()
        self.X = [self._parent_values(k, values, sources) for k in range(self.K)]
        z = np.matmul(self.X[0], self.W[0])
        for k in range(1, self.K):
            z += np.matmul(self.X[k], self.W[k])
        if self.b is not None:
            z += self.b[:, None, :]
        self.P, self.D = apply_activation(self.op.activation, z)
        self.P = np.ascontiguousarray(self.P)
        self.V = self.P.copy()
        self.E = np.zeros_like(self.P)
        single = type(self.op) is Dense
        for g, (m, rule) in enumerate(zip(self.members, self.rules)):
            rule.prediction = rule.forward_prediction = prediction = self.P[g]
            rule.value, rule.error = self.V[g], self.E[g]
            derivative = None if self.D is None else self.D[g]
            inputs = [x[g if len(x) > 1 else 0] for x in self.X]
            rule._cache = (inputs[0], derivative) if single else (inputs, derivative)
            values[m] = prediction

    def energies(self) -> np.ndarray:
        """Each member's energy, as `VertexRule.energy` computes it."""
        G = len(self.members)
        norms = kernels.squared_norms(self.E.reshape(G, -1))
        return 0.5 * norms / self.E.shape[1]

    def relax_values(self, u: int, eta: float) -> None:
        """Update u: each member sums its children's feedback (graph order), relaxes."""
        index, counts = self.gather[u]
        G = len(self.members)
        total = np.empty_like(self.V)
        kernels.gather_sum(self.inbox.reshape(len(self.inbox), -1), index, counts,
                           total.reshape(G, -1))
        kernels.relax_step(self.V, self.E, self.P, total, float(eta))

    def speak(self) -> int:
        """J^T eps to every relaxing parent, into the mailbox. Returns messages sent."""
        self._current()
        delta = self._delta(self.E)
        for k in self.relaxing:
            np.matmul(delta, self.W[k].transpose(0, 2, 1), out=self.out[k])
        return len(self.relaxing) * len(self.members)

    def _delta(self, error):
        error = np.ascontiguousarray(error)
        return error if self.D is None else kernels.scale_by_derivative(error, self.D)

    def hebbian(self) -> None:
        """Each member's update eps . dvhat/dtheta (batch mean), as `VertexRule.hebbian`."""
        mean = self.E * (1.0 / self.E.shape[1])
        delta = self._delta(mean)
        updates = {n: np.matmul(x.transpose(0, 2, 1), delta) for n, x in zip(self.names, self.X)}
        if self.op.bias:
            updates["bias"] = delta.sum(axis=1)
        self.updates = updates

    def member_updates(self) -> list[dict]:
        """Each member's own update (views of the stacked ones)."""
        updates = self.updates
        return [{n: u[g] for n, u in updates.items()} for g in range(len(self.members))]

    def learn(self, optimizers, learning) -> bool:
        """Every member's optimizer step at once: each member keeps its own optimizer, whose
        moments are rows of the group's stacks (bound once per set of optimizers), and its
        own step count. False when the members' optimizers differ (each then steps alone)."""
        if not self._bound_to(optimizers):
            first = optimizers[0]
            settings = _settings(first)
            if any(type(o) is not type(first) or _settings(o) != settings
                   or o.step_count != first.step_count for o in optimizers):
                return False
            self._bind_moments(optimizers)
        first = optimizers[0]
        self._current()
        if any(o.step_count != first.step_count for o in optimizers):
            return False
        stacked = dict(zip(self.names, self.W))
        if self.op.bias:
            stacked["bias"] = self.b
        for _ in range(learning.updates_per_batch):
            for o in optimizers:
                o.step_count += 1
            for name, params in stacked.items():
                moments = {slot: self.moments[slot][name] for slot in first.moments}
                params -= first._delta(-self.updates[name], **moments)
        for g, rule in enumerate(self.rules):   # in place: the caller's arrays stay current
            for name, params in stacked.items():
                rule.params[name][...] = params[g]
        return True

    def _bound_to(self, optimizers) -> bool:
        """Are the members' moments rows of this group's stacks? (Another group — a
        pipelining lane's — may have bound the same optimizers since, or a restore made
        new ones.)"""
        bound = getattr(self, "_optimizers", None)
        return bound is not None and len(bound) == len(optimizers) and all(
            a is b and a.state is state and getattr(a, BINDING, None) is self
            for a, b, state in zip(bound, optimizers, self._states))

    def _bind_moments(self, optimizers) -> None:
        """Stack every member's moments (made as the optimizer makes them) and make the
        member's own state arrays rows of the stacks."""
        first = optimizers[0]
        names = list(self.names) + (["bias"] if self.op.bias else [])
        params = {n: self.W[i] for i, n in enumerate(self.names)}
        if self.op.bias:
            params["bias"] = self.b
        self.moments = {}
        for slot in first.moments:
            self.moments[slot] = {}
            for name in names:
                rows = [o._slot(slot, m, name, params[name][g])
                        for g, (o, m) in enumerate(zip(optimizers, self.members))]
                stack = np.stack(rows)
                for g, (o, m) in enumerate(zip(optimizers, self.members)):
                    o.state[slot][m][name] = stack[g]
                self.moments[slot][name] = stack
        for o in optimizers:
            setattr(o, BINDING, self)
        self._optimizers = list(optimizers)
        self._states = [o.state for o in optimizers]


def _settings(optimizer) -> tuple:
    """An optimizer's hyperparameters (everything but its state and step count)."""
    return tuple(sorted((k, v) for k, v in vars(optimizer).items()
                        if k not in ("state", "step_count", BINDING)))


# --- vertices that run alone, with many edges ------------------------------------------------

#: a vertex running alone sums its children's feedback with one gather (WideReceiver) from
#: this many children on
WIDE = 8


def splits_evenly(graph, name: str) -> bool:
    """A `concat` of flat parents of one shape, each once and each relaxing: its J^T eps to
    parent k is the k-th equal slice of its error (`ConcatSender`)."""
    from neurolocal.ops.structure import Concat

    spec = graph.vertices[name]
    parents = tuple(spec.parents)
    if type(spec.op) is not Concat or len(parents) < WIDE or len(set(parents)) != len(parents):
        return False
    shapes = {graph.shapes[p] for p in parents}
    return len(shapes) == 1 and len(next(iter(shapes))) == 1 and not any(
        graph.is_input(p) for p in parents)


class ConcatSender:
    """A concat vertex's J^T eps — its error cut into its parents' slices — written into
    consecutive mailbox rows as one copy (the message path's `Concat.vjp`, without a
    message per parent)."""

    def __init__(self, graph, name: str):
        self.name = name
        self.parents = tuple(graph.vertices[name].parents)
        self.shape = graph.shapes[self.parents[0]]

    def claim(self, mailbox: Mailbox) -> None:
        for p in self.parents:
            mailbox.add((self.name, p), self.shape)

    def bind(self, mailbox: Mailbox, store: dict) -> None:
        first = mailbox.rows[(self.name, self.parents[0])][1]
        self.block = mailbox.arrays[self.shape][first:first + len(self.parents)]
        for k, p in enumerate(self.parents):
            store[(self.name, p)] = self.block[k]

    def speak(self, rule) -> int:
        error = rule.error
        n, width = len(self.parents), self.shape[0]
        self.block[...] = error.reshape(len(error), n, width).transpose(1, 0, 2)
        return n


class WideReceiver:
    """A vertex running alone that sums many children's feedback: one gather over the
    mailbox rows of its incoming edges (kernels.gather_sum), in the graph's order."""

    def __init__(self, graph, schedule, name: str):
        self.name = name
        self.shape = graph.shapes[name]
        children = graph.children[name]
        self.reads = {u: schedule.read_at(children, u)
                      for u in range(1, schedule.rounds + 1)}
        self.gather: dict[int, tuple] = {}

    def claim(self, mailbox: Mailbox) -> None:
        made: dict[tuple, tuple] = {}
        for u, children in self.reads.items():
            if children not in made:
                index = np.zeros((1, max(len(children), 1)), dtype=np.int64)
                for i, c in enumerate(children):
                    index[0, i] = mailbox.add((c, self.name), self.shape)
                made[children] = (index, np.array([len(children)], dtype=np.int64))
            self.gather[u] = made[children]

    def bind(self, mailbox: Mailbox) -> None:
        self.inbox = mailbox.arrays.get(self.shape)   # None: it never reads a child

    def total(self, u: int, like: np.ndarray) -> np.ndarray:
        index, counts = self.gather[u]
        out = np.empty_like(like)
        kernels.gather_sum(self.inbox.reshape(len(self.inbox), -1), index, counts,
                           out.reshape(1, -1))
        return out

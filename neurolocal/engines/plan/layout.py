"""A shard's synchronous rounds, compiled once from the `Schedule` (docs/rounds.md §9).

For synchronous rounds (staleness 0) every read is known before the batch starts: the
schedule says which update rounds a vertex relaxes in, at which tags it speaks, and which
tag of each child update u reads (`Schedule.needed`: the child's newest speaking tag
<= u - 1). A `Layout` writes that down per round, so the runner
(`neurolocal/engines/plan/runner.py`) executes it without asking the schedule, building a
message tuple, or looking into an inbox:

    groups        vertices of one op and one shape that run stacked (groups.py)
    relaxers[u]   the hidden vertices (not in a group) that relax in update u, each with the children whose
                  feedback it sums (in the graph's order of children: sums are the message
                  path's); a child that has not spoken yet is left out, as the message
                  path leaves it out
    speakers[u]   the vertices that send J^T eps to their relaxing parents at tag u
                  (u = 0 is the forward pass); the constant fixed-mode output speaks once

Every shard of a batch derives the same layout from the graph and the settings, as it
derives the same `Schedule`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from neurolocal.engines.schedule import Schedule
from neurolocal.graph import Graph


@dataclass(frozen=True)
class Layout:
    rounds: int
    #: the shard's vertices in graph order, and the subsets by role
    order: tuple[str, ...]
    #: the vertices that run one at a time (not in a group), by role
    hidden: tuple[str, ...]
    predicting: tuple[str, ...]
    #: relaxers[u] (u = 1..R): ((vertex, (child, ...)), ...)
    relaxers: tuple
    #: speakers[u] (u = 0..R-1): frozenset of vertices that speak to relaxing parents at tag u
    speakers: tuple
    #: strict mode: vertices whose prediction cannot move within a batch (every parent an
    #: input, weights fixed: not under ipc); they only refresh their error
    frozen: frozenset
    #: vertices that run as one stacked group (groups.py), each a tuple in graph order
    groups: tuple
    #: the forward pass by level (longest path from an input): ((vertex or group index), ...)
    forward: tuple

    @cached_property
    def still(self) -> tuple:
        """still[u] (u = 1..R): the hidden vertices (not in a group) that do not relax in
        update u. In fixed mode their error, and so their energy, is what it was."""
        hidden = frozenset(self.hidden)
        return (frozenset(),) + tuple(hidden - {v for v, _ in row}
                                      for row in self.relaxers[1:])

    def group_speaks(self, index: int, tag: int) -> bool:
        """Does group `index` speak at `tag` (its members share their speaking tags)?"""
        return tag < self.rounds and self.groups[index][0] in self.speakers[tag]


def levels(graph: Graph) -> dict[str, int]:
    """Longest path, in edges, from an input to each vertex: a vertex depends only on
    vertices of lower levels."""
    level: dict[str, int] = {}
    for n in graph.order:
        parents = graph.vertices[n].parents
        level[n] = 1 + max((level[p] for p in parents), default=-1)
    return level


def compile_layout(graph: Graph, names: tuple[str, ...], schedule: Schedule,
                   group: bool = True) -> Layout:
    """The layout of `names` (a shard's vertices, graph order) under `schedule`; `group`:
    let vertices of one op and shape run stacked (groups.py)."""
    from neurolocal.engines.plan.groups import MIN_GROUP, group_key

    R = schedule.rounds
    level = levels(graph)
    by_key: dict = {}
    if group:
        for n in names:
            key = group_key(graph, schedule, n, level[n])
            if key is not None:
                by_key.setdefault(key, []).append(n)
    groups = tuple(tuple(m) for m in by_key.values() if len(m) >= MIN_GROUP)
    grouped = {m for members in groups for m in members}
    first = {members[0]: i for i, members in enumerate(groups)}
    forward = tuple(sorted(
        [n for n in names if n not in grouped] + list(first),
        key=lambda n: level[n]))
    forward = tuple(first.get(n, n) for n in forward)
    single = tuple(n for n in names if n not in grouped)
    hidden = tuple(n for n in single if not graph.is_input(n) and n != graph.output)
    predicting = tuple(n for n in single if not graph.is_input(n))
    relaxers = [()]
    for u in range(1, R + 1):
        row = []
        for v in hidden:
            children = graph.children[v]
            if not schedule.relaxes(v, u, children):
                continue
            row.append((v, schedule.read_at(children, u)))
        relaxers.append(tuple(row))
    speaking: list[set] = [set() for _ in range(R)]
    for v in names:
        if not graph.is_input(v):
            for tag in schedule.tags(v):
                speaking[tag].add(v)
    speakers = [frozenset(s) for s in speaking]
    frozen = frozenset()
    if schedule.strict and not schedule.ipc:
        frozen = frozenset(v for v in predicting
                           if all(graph.is_input(p) for p in graph.vertices[v].parents))
    return Layout(R, tuple(names), hidden, predicting, tuple(relaxers), tuple(speakers), frozen,
                  groups, forward)

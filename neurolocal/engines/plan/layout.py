"""A shard's synchronous rounds, compiled once from the `Schedule` (docs/rounds.md §9).

For synchronous rounds (staleness 0) every read is known before the batch starts: the
schedule says which update rounds a vertex relaxes in, at which tags it speaks, and which
tag of each child update u reads (`Schedule.needed`: the child's newest speaking tag
<= u - 1). A `Layout` writes that down per round, so the runner
(`neurolocal/engines/plan/runner.py`) executes it without asking the schedule, building a
message tuple, or looking into an inbox:

    relaxers[u]   the hidden vertices that relax in update u, each with the children whose
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

from neurolocal.engines.schedule import CONSTANT, Schedule
from neurolocal.graph import Graph


@dataclass(frozen=True)
class Layout:
    rounds: int
    #: the shard's vertices in graph order, and the subsets by role
    order: tuple[str, ...]
    hidden: tuple[str, ...]
    predicting: tuple[str, ...]
    #: relaxers[u] (u = 1..R): ((vertex, (child, ...)), ...)
    relaxers: tuple
    #: speakers[u] (u = 0..R-1): frozenset of vertices that speak to relaxing parents at tag u
    speakers: tuple
    #: strict mode: vertices whose prediction cannot move within a batch (every parent an
    #: input, weights fixed: not under ipc); they only refresh their error
    frozen: frozenset


def compile_layout(graph: Graph, names: tuple[str, ...], schedule: Schedule) -> Layout:
    """The layout of `names` (a shard's vertices, graph order) under `schedule`."""
    R = schedule.rounds
    hidden = tuple(n for n in names if not graph.is_input(n) and n != graph.output)
    predicting = tuple(n for n in names if not graph.is_input(n))
    relaxers = [()]
    for u in range(1, R + 1):
        row = []
        for v in hidden:
            children = graph.children[v]
            if not schedule.relaxes(v, u, children):
                continue
            row.append((v, tuple(c for c in children if schedule.needed(c, u) is not None)))
        relaxers.append(tuple(row))
    speakers = []
    for tag in range(R):
        speakers.append(frozenset(v for v in predicting
                                  if schedule.ranges(v) != ((CONSTANT, CONSTANT + 1),)
                                  and schedule.speaks(v, tag)))
    frozen = frozenset()
    if schedule.strict and not schedule.ipc:
        frozen = frozenset(v for v in predicting
                           if all(graph.is_input(p) for p in graph.vertices[v].parents))
    return Layout(R, tuple(names), hidden, predicting, tuple(relaxers), tuple(speakers), frozen)

"""The paper's RNN/LSTM schedule: relax an unrolled graph one time step at a time, last first.

The paper's code (Millidge et al. 2020) relaxes its recurrent nets backwards in
time: the vertices of step S-1 run K iterations while everything else waits, then
step S-2 runs K iterations with step S-1's settled errors as fixed feedback, and so
on down to step 0 (K = 100 for the RNN, 200 for the LSTM, at eta = 0.1). Errors
only flow backwards in time (a step's vertices are children of the previous
step's), so each block sees feedback that no longer changes, and the fixed point
is the same as a global Jacobi sweep's: backprop through time.

Why offer it: at eta = 0.1 a global sweep needs about depth / eta rounds over
*every* vertex (depth 36 for our LSTM), while this schedule moves one step's
vertices at a time: the same number of sequential rounds (steps x K) for about
1/steps of the vertex updates.

Blocks come from vertex names: `name@t` (what `recurrence:` unrolls) belongs to
step t. Hidden vertices without a step form one more block, relaxed first when
they sit after the steps (no step vertex below them), last otherwise.
`iterations` counts rounds *per block*. With eta = 1 and iterations >= the
longest path inside a block, every update is exact, as in the Jacobi schedule.

The schedule is a policy of the round machine (`neurolocal.engines.rounds.Schedule`,
docs/rounds.md): block b relaxes in rounds b*T+1 .. (b+1)*T and its vertices speak
in those rounds and once more when the block ends; this module only cuts the blocks.
Every engine (local, sim, ray) runs it (`--schedule backward-in-time`).
"""

from __future__ import annotations

import re
from neurolocal.errors import ConfigError
from neurolocal.graph import Graph

STEP_SUFFIX = re.compile(r"@(\d+)$")


def time_blocks(graph: Graph) -> list[list[str]]:
    """Hidden vertices grouped by time step, in the order they relax (last step first)."""
    by_step: dict[int, list[str]] = {}
    unstepped: list[str] = []
    for n in graph.hidden:
        m = STEP_SUFFIX.search(n)
        if m:
            by_step.setdefault(int(m.group(1)), []).append(n)
        else:
            unstepped.append(n)
    if not by_step:
        raise ConfigError("the backward-in-time schedule needs an unrolled recurrent graph "
                          "(vertices named name@t)", field="schedule")
    blocks = [by_step[t] for t in sorted(by_step, reverse=True)]
    stepped = {n for block in blocks for n in block}
    after = [n for n in unstepped if not (_descendants(graph, n) & stepped)]
    before = [n for n in unstepped if n not in after]
    return ([after] if after else []) + blocks + ([before] if before else [])


def _descendants(graph: Graph, name: str) -> set[str]:
    seen, todo = set(), list(graph.children[name])
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(graph.children[n])
    return seen

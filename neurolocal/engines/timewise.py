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
"""

from __future__ import annotations

import re
from typing import Callable

from neurolocal.engines.base import Relaxation, check_relaxation_settings, prepare_batch
from neurolocal.engines.local import LocalEngine
from neurolocal.errors import ConfigError
from neurolocal.graph import Graph, Params

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


class BackwardInTimeEngine(LocalEngine):
    """LocalEngine with the paper's recurrent schedule (fixed mode only)."""

    def __init__(self, graph: Graph, params: Params | None = None, mode: str = "fixed",
                 seed: int = 0, recorder=None):
        if mode != "fixed":
            raise ConfigError("the backward-in-time schedule needs fixed predictions "
                              "(--mode fixed)", field="schedule")
        super().__init__(graph, params, mode=mode, seed=seed, recorder=recorder,
                         schedule="jacobi")
        self.schedule = "backward-in-time"
        self.blocks = time_blocks(graph)

    def relax(self, inputs, target, eta: float = 1.0, iterations: int | None = None,
              read_inputs: bool = False,
              on_round: Callable[[int], None] | None = None) -> Relaxation:
        """`iterations` rounds for each time step (default: the graph's depth)."""
        graph, rules = self.graph, self.rules
        iterations = graph.depth if iterations is None else iterations
        check_relaxation_settings(eta, iterations, self.mode)
        inputs, target = prepare_batch(graph, inputs, target)
        self._messages = 0
        self._inbox = {n: {} for n in graph.order}
        self._forward(inputs, target)
        self._vertex_energy = {n: rule.energy() for n, rule in rules.items()}
        energy = [sum(self._vertex_energy.values())]
        if on_round is not None:
            on_round(0)
        settled = [graph.output]          # speak once at the start of the next block
        round_ = 0
        for block in self.blocks:
            for k in range(iterations):
                round_ += 1
                self._send_feedback(round_, settled + block if k == 0 else block)
                for n in block:
                    if rules[n].relax(self._feedback_total(n), eta):
                        self._vertex_energy[n] = rules[n].energy()
                energy.append(sum(self._vertex_energy.values()))
                if on_round is not None:
                    on_round(round_)
            settled = block
        return self._finish(round_, inputs, energy, read_inputs,
                            extras={"schedule": self.schedule, "rounds": round_})

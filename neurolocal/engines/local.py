"""The in-process engine: every vertex rule in one Python process, Jacobi sweeps.

A round is one synchronous step: every vertex reads the errors of the previous
round (the messages sent at its start), then every hidden value moves at once.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from neurolocal.engines.base import Relaxation, check_relaxation_settings, prepare_batch
from neurolocal.graph import Graph, Params
from neurolocal.vertex import VertexRule


def role_of(graph: Graph, name: str) -> str:
    if graph.is_input(name):
        return "input"
    return "output" if name == graph.output else "hidden"


def build_rules(graph: Graph, params: Params, mode: str) -> dict[str, VertexRule]:
    return {
        n: VertexRule(n, spec.op, spec.parents, role_of(graph, n), params=params.get(n, {}),
                      loss=graph.loss if n == graph.output else None, mode=mode)
        for n, spec in graph.vertices.items()
    }


class LocalEngine:
    """Runs predictive coding on a graph in one process. Parameters are shared by
    reference with the caller, so an optimizer updating them in place is seen here."""

    def __init__(self, graph: Graph, params: Params | None = None, mode: str = "fixed",
                 seed: int = 0):
        self.graph = graph
        self.params = params if params is not None else graph.init_params(seed)
        self.mode = mode
        self.rules = build_rules(graph, self.params, mode)

    def relax(self, inputs, target, eta: float = 1.0, iterations: int | None = None,
              read_inputs: bool = False) -> Relaxation:
        graph, rules = self.graph, self.rules
        iterations = graph.depth if iterations is None else iterations
        check_relaxation_settings(eta, iterations, self.mode)
        inputs, target = prepare_batch(graph, inputs, target)

        values = self._forward(inputs, target)
        energy = [self._energy()]
        messages = 0
        for _ in range(iterations):
            feedback, sent = self._collect_feedback()
            messages += sent
            for n in graph.hidden:
                rules[n].relax(feedback.get(n), eta)
            if self.mode == "strict":
                values = {n: rules[n].value_message() for n in graph.order}
                messages += sum(len(graph.children[n]) for n in graph.order)
                for n in graph.order:
                    rules[n].repredict([values[p] for p in graph.parents(n)])
            energy.append(self._energy())

        input_feedback = {}
        if read_inputs:
            feedback, _ = self._collect_feedback(only_to=set(graph.inputs))
            input_feedback = {n: feedback.get(n, np.zeros_like(inputs[n])) for n in graph.inputs}
        output = rules[graph.output]
        return Relaxation(
            dtheta={n: rules[n].hebbian() for n in graph.order if rules[n].params},
            errors={n: rules[n].error for n in graph.order if not graph.is_input(n)},
            input_feedback=input_feedback,
            energy=energy,
            loss=graph.loss.value(output.prediction, target),
            prediction=output.prediction,
            messages=messages,
        )

    def _forward(self, inputs: Mapping[str, np.ndarray], target: np.ndarray) -> dict:
        rules, graph = self.rules, self.graph
        rules[graph.output].set_target(target)
        values = {}
        for n in graph.order:
            if graph.is_input(n):
                values[n] = rules[n].clamp(inputs[n])
            else:
                values[n] = rules[n].predict([values[p] for p in graph.parents(n)])
        return values

    def _collect_feedback(self, only_to: set[str] | None = None) -> tuple[dict, int]:
        """Every vertex's J^T eps messages of this round, summed per receiving parent."""
        totals: dict[str, np.ndarray] = {}
        sent = 0
        for n in self.graph.order:
            if only_to is not None and not only_to.intersection(self.graph.parents(n)):
                continue
            for parent, message in self.rules[n].feedback().items():
                if only_to is not None and parent not in only_to:
                    continue
                sent += 1
                totals[parent] = totals[parent] + message if parent in totals else message
        return totals, sent

    def _energy(self) -> float:
        return sum(rule.energy() for rule in self.rules.values())

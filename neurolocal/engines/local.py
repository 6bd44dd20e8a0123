"""The in-process engine: every vertex rule in one Python process, Jacobi sweeps.

A round is one synchronous step: every vertex reads the errors of the previous
round (the messages sent at its start), then every hidden value moves at once.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from neurolocal.engines.base import Relaxation, Updates, check_relaxation_settings, prepare_batch
from neurolocal.graph import Graph, Params
from neurolocal.vertex import VertexRule


def role_of(graph: Graph, name: str) -> str:
    if graph.is_input(name):
        return "input"
    return "output" if name == graph.output else "hidden"


def build_rules(graph: Graph, params: Params, mode: str) -> dict[str, VertexRule]:
    rules = {}
    for n, spec in graph.vertices.items():
        sends, expects = graph.ties_of(n)
        rules[n] = VertexRule(n, spec.op, spec.parents, role_of(graph, n),
                              params=params.get(n, {}),
                              loss=graph.loss if n == graph.output else None, mode=mode,
                              sends=sends, expects=expects)
    return rules


def exchange_tied_partials(rules: Mapping[str, VertexRule]) -> tuple[Updates, int]:
    """Every vertex's Hebbian update, with tied groups reduced at their owners by messages.

    Each rule computes its own update; members hand the partials of tied parameters
    to the engine as messages addressed to the owner vertex; the engine delivers
    each owner its inbox, and the owner sums (`VertexRule.receive_partials`). Returns
    (updates keyed by vertex, each shared tensor once under its owner; messages sent).
    A distributed engine runs the same three calls with the inbox travelling between
    actors.
    """
    own = {n: rule.hebbian() for n, rule in rules.items() if rule.params}
    inbox: dict[str, list] = {n: [] for n in own}
    sent = 0
    for n, update in own.items():
        for owner, partials in rules[n].partial_messages(update).items():
            inbox[owner].extend(partials)
            sent += len(partials)
    reported = {n: rules[n].receive_partials(update, inbox[n]) for n, update in own.items()}
    return {n: u for n, u in reported.items() if u}, sent


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
        dtheta, sent = exchange_tied_partials(rules)
        messages += sent
        return Relaxation(
            dtheta=dtheta,
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

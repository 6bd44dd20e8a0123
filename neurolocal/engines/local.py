"""The in-process engine: every vertex rule in one Python process, Jacobi sweeps.

Round 0 is the forward pass: each vertex predicts from its parents' values.
Relaxation round t >= 1 is one synchronous step: every vertex sends J^T eps of
the previous state to its relaxing parents, then every hidden value moves at
once. In strict mode each round ends with the moved values travelling to the
children, who recompute their predictions. With `read_inputs`, one last round
carries the settled feedback to the input vertices (dL/dx).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from neurolocal.engines.base import Relaxation, Updates, check_relaxation_settings, prepare_batch
from neurolocal.graph import Graph, Params
from neurolocal.traffic.log import TrafficRecorder, now, payload_bytes
from neurolocal.vertex import VertexRule


def exchange_tied_partials(rules: Mapping[str, VertexRule]) -> tuple[Updates, list]:
    """Every vertex's Hebbian update, with tied groups reduced at their owners by messages.

    Each rule computes its own update; members hand the partials of tied parameters
    to the engine as messages addressed to the owner vertex; the engine delivers
    each owner its inbox, and the owner sums (`VertexRule.receive_partials`). Returns
    (updates keyed by vertex, each shared tensor once under its owner; the messages
    sent, as (member, owner, [(param, partial), ...]) — one per member-owner pair).
    A distributed engine runs the same three calls with the inbox travelling between
    actors.
    """
    own = {n: rule.hebbian() for n, rule in rules.items() if rule.params}
    inbox: dict[str, list] = {n: [] for n in own}
    messages = []
    for n, update in own.items():
        for owner, partials in rules[n].partial_messages(update).items():
            inbox[owner].extend(partials)
            messages.append((n, owner, partials))
    reported = {n: rules[n].receive_partials(update, inbox[n]) for n, update in own.items()}
    return {n: u for n, u in reported.items() if u}, messages


class LocalEngine:
    """Runs predictive coding on a graph in one process. Parameters are shared by
    reference with the caller, so an optimizer updating them in place is seen here."""

    def __init__(self, graph: Graph, params: Params | None = None, mode: str = "fixed",
                 seed: int = 0, recorder: TrafficRecorder | None = None):
        self.graph = graph
        self.params = params if params is not None else graph.init_params(seed)
        self.mode = mode
        self.rules = {n: VertexRule.for_vertex(graph, n, self.params, mode) for n in graph.order}
        self.recorder = recorder
        self.batches = 0

    def relax(self, inputs, target, eta: float = 1.0, iterations: int | None = None,
              read_inputs: bool = False) -> Relaxation:
        graph, rules = self.graph, self.rules
        iterations = graph.depth if iterations is None else iterations
        check_relaxation_settings(eta, iterations, self.mode)
        inputs, target = prepare_batch(graph, inputs, target)
        self._messages = 0

        self._forward(inputs, target)
        energy = [self._energy()]
        for round_ in range(1, iterations + 1):
            feedback = self._exchange_feedback(round_)
            for n in graph.hidden:
                rules[n].relax(feedback.get(n), eta)
            if self.mode == "strict":
                self._exchange_values(round_)
            energy.append(self._energy())

        input_feedback = {}
        if read_inputs:
            feedback = self._exchange_feedback(iterations + 1, to_inputs=True)
            input_feedback = {n: feedback.get(n, np.zeros_like(inputs[n])) for n in graph.inputs}
        dtheta, partials = exchange_tied_partials(rules)
        self._messages += len(partials)
        if self.recorder is not None:
            t_send = now()
            self._log_received(iterations + 1, [(src, dst, (payload, t_send))
                                                for src, dst, payload in partials], "partial")
            self.recorder.record_energy(self.batches, energy)
            self.recorder.flush()
        self.batches += 1
        output = rules[graph.output]
        return Relaxation(
            dtheta=dtheta,
            errors={n: rules[n].error for n in graph.order if not graph.is_input(n)},
            input_feedback=input_feedback,
            energy=energy,
            loss=graph.loss.value(output.prediction, target),
            prediction=output.prediction,
            messages=self._messages,
        )

    # --- message exchange ------------------------------------------------------------

    def _forward(self, inputs: Mapping[str, np.ndarray], target: np.ndarray) -> None:
        rules, graph = self.rules, self.graph
        rules[graph.output].set_target(target)
        sent: dict[str, tuple[np.ndarray, float]] = {}
        for n in graph.order:
            if graph.is_input(n):
                value = rules[n].clamp(inputs[n])
            else:
                parents = graph.parents(n)
                self._messages += len(set(parents))
                self._log_received(0, [(p, n, sent[p]) for p in dict.fromkeys(parents)], "value")
                value = rules[n].predict([sent[p][0] for p in parents])
            sent[n] = (value, now())

    def _exchange_feedback(self, round_: int, to_inputs: bool = False) -> dict[str, np.ndarray]:
        """Every vertex's J^T eps messages of this round, summed per receiving parent.

        The output's error is fixed for the whole relaxation, so it speaks once (round 1)
        and its parents keep that message for every later round.
        """
        totals: dict[str, np.ndarray] = {}
        log = self.recorder is not None
        output = self.graph.output
        for n in self.graph.order:
            if n == output and self.mode == "fixed" and not to_inputs and round_ > 1:
                messages, standing = self._standing, True
            else:
                messages, standing = self.rules[n].feedback(to_inputs=to_inputs), False
                if n == output and not to_inputs:
                    self._standing = messages
            if not messages:
                continue
            if standing:
                for parent, message in messages.items():
                    totals[parent] = totals[parent] + message if parent in totals else message
                continue
            t_send = now() if log else 0.0
            for parent, message in messages.items():
                totals[parent] = totals[parent] + message if parent in totals else message
            self._messages += len(messages)
            if log:
                self._log_received(round_, [(n, p, (m, t_send)) for p, m in messages.items()],
                                   "error")
        return totals

    def _exchange_values(self, round_: int) -> None:
        """Strict mode: relaxed values travel to the children, who re-predict."""
        graph, rules = self.graph, self.rules
        sent = {n: (rules[n].value_message(), now()) for n in graph.order}
        for n in graph.order:
            if graph.is_input(n):
                continue
            moved = [(p, n, sent[p]) for p in dict.fromkeys(graph.parents(n))
                     if not graph.is_input(p)]
            self._messages += len(moved)
            self._log_received(round_, moved, "value")
            rules[n].repredict([sent[p][0] for p in graph.parents(n)])

    def _log_received(self, round_: int, messages, kind: str) -> None:
        if self.recorder is None:
            return
        t_recv = now()
        for src, dst, (payload, t_send) in messages:
            self.recorder.record(self.batches, round_, src, dst, kind, payload_bytes(payload),
                                 t_send, t_recv, src_actor="local", dst_actor="local")

    def _energy(self) -> float:
        return sum(rule.energy() for rule in self.rules.values())

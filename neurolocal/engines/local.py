"""The in-process engine: every vertex rule in one Python process, Jacobi sweeps.

Round 0 is the forward pass: each vertex predicts from its parents' values.
Relaxation round t >= 1 is one synchronous step: every vertex sends J^T eps of
the previous state to its relaxing parents, then every hidden value moves at
once. In strict mode each round ends with the moved values travelling to the
children, who recompute their predictions. With `read_inputs`, one last round
carries the settled feedback to the input vertices (dL/dx).
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from neurolocal.engines.base import Relaxation, Updates, check_relaxation_settings, prepare_batch
from neurolocal.errors import ConfigError
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


SCHEDULES = ("jacobi", "event")


class LocalEngine:
    """Runs predictive coding on a graph in one process. Parameters are shared by
    reference with the caller, so an optimizer updating them in place is seen here.

    Schedules (both give the same errors, round by round):
        jacobi  every vertex sends J^T eps to its relaxing parents every round (the
                output, whose error is fixed, speaks once: its message stands)
        event   a vertex sends only when its error changed since its last message;
                parents keep each child's latest message. With eta = 1 an error
                settles at the round equal to its distance from the output, so a
                batch costs about one message per edge — one backward pass of work.
                With eta != 1 every error moves every round and nothing is saved.
    """

    def __init__(self, graph: Graph, params: Params | None = None, mode: str = "fixed",
                 seed: int = 0, recorder: TrafficRecorder | None = None,
                 schedule: str = "jacobi"):
        if schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}",
                              field="schedule")
        if schedule == "event" and mode != "fixed":
            raise ConfigError("the event schedule needs fixed predictions (--mode fixed): in "
                              "strict mode every value moves every round", field="schedule")
        self.graph = graph
        self.params = params if params is not None else graph.init_params(seed)
        self.mode = mode
        self.schedule = schedule
        self.rules = {n: VertexRule.for_vertex(graph, n, self.params, mode) for n in graph.order}
        self.recorder = recorder
        self.batches = 0
        self._relaxing = frozenset(graph.hidden)

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()

    def relax(self, inputs, target, eta: float = 1.0, iterations: int | None = None,
              read_inputs: bool = False,
              on_round: Callable[[int], None] | None = None) -> Relaxation:
        """`on_round(t)` is called after the forward pass (t = 0) and after each round t,
        while the rules hold that round's errors (e.g. to watch dtheta converge)."""
        graph, rules = self.graph, self.rules
        iterations = graph.depth if iterations is None else iterations
        check_relaxation_settings(eta, iterations, self.mode)
        inputs, target = prepare_batch(graph, inputs, target)
        self._messages = 0
        #: parent -> child -> the latest J^T eps that child sent it
        self._inbox: dict[str, dict[str, np.ndarray]] = {n: {} for n in graph.order}

        self._forward(inputs, target)
        self._vertex_energy = {n: rule.energy() for n, rule in rules.items()}
        energy = [sum(self._vertex_energy.values())]
        if on_round is not None:
            on_round(0)
        everyone = [n for n in graph.order if not graph.is_input(n)]
        speakers = [graph.output] if self.schedule == "event" else everyone
        for round_ in range(1, iterations + 1):
            if self.schedule == "event" and not speakers and eta == 1.0 and on_round is None:
                # quiescent: nothing changed, so every later round would repeat this state
                energy.extend([energy[-1]] * (iterations + 1 - round_))
                break
            heard = self._send_feedback(round_, speakers)
            if self.schedule == "jacobi" or eta != 1.0:
                heard = self._relaxing
            changed = [n for n in graph.hidden if n in heard and rules[n].relax(
                self._feedback_total(n), eta)]
            if self.mode == "strict":
                self._exchange_values(round_)
                changed = everyone
            for n in changed:
                self._vertex_energy[n] = rules[n].energy()
            if self.schedule == "event":
                speakers = changed
            elif self.mode == "fixed":  # the output's first message stands
                speakers = graph.hidden
            else:
                speakers = everyone
            energy.append(sum(self._vertex_energy.values()))
            if on_round is not None:
                on_round(round_)

        return self._finish(iterations, inputs, energy, read_inputs)

    def _finish(self, last_round: int, inputs, energy: list[float], read_inputs: bool,
                extras: dict | None = None) -> Relaxation:
        """After the last relaxation round: dL/dx if asked, the Hebbian updates with tied
        partials reduced at their owners (both as messages of round last + 1), the log."""
        graph, rules = self.graph, self.rules
        input_feedback = self._read_inputs(last_round + 1, inputs) if read_inputs else {}
        dtheta, partials = exchange_tied_partials(rules)
        self._messages += len(partials)
        if self.recorder is not None:
            t_send = now()
            self._log_received(last_round + 1, [(src, dst, (payload, t_send))
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
            loss=output.loss_value,
            prediction=output.prediction,
            messages=self._messages,
            extras=extras or {},
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
                if self.recorder is not None:
                    self._log_received(0, [(p, n, sent[p]) for p in dict.fromkeys(parents)],
                                       "value")
                value = rules[n].predict([sent[p][0] for p in parents])
            sent[n] = (value, now())

    def _send_feedback(self, round_: int, speakers) -> set[str]:
        """The speakers' J^T eps go into their relaxing parents' inboxes; returns who heard."""
        heard: set[str] = set()
        log = self.recorder is not None
        for n in speakers:
            messages = self.rules[n].feedback()
            if not messages:
                continue
            for parent, message in messages.items():
                self._inbox[parent][n] = message
            heard.update(messages)
            self._messages += len(messages)
            if log:
                t_send = now()
                self._log_received(round_, [(n, p, (m, t_send)) for p, m in messages.items()],
                                   "error")
        return heard

    def _feedback_total(self, name: str) -> np.ndarray | None:
        """Sum of the latest message of each child, in the graph's order of children."""
        box = self._inbox[name]
        total = None
        for child in self.graph.children[name]:
            message = box.get(child)
            if message is not None:
                total = message if total is None else total + message
        return total

    def _read_inputs(self, round_: int, inputs) -> dict[str, np.ndarray]:
        """One last round: the settled feedback of the inputs' children (dL/dx)."""
        totals: dict[str, np.ndarray] = {}
        for n in self.graph.order:
            messages = self.rules[n].feedback(to_inputs=True)
            if not messages:
                continue
            self._messages += len(messages)
            t_send = now()
            for parent, message in messages.items():
                totals[parent] = totals[parent] + message if parent in totals else message
            self._log_received(round_, [(n, p, (m, t_send)) for p, m in messages.items()], "error")
        return {n: totals.get(n, np.zeros_like(inputs[n])) for n in self.graph.inputs}

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

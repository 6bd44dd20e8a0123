"""The predictive-coding rule of one vertex: its state, and what it does with messages.

A `VertexRule` knows its op, its parameters and the *names* of its parents; it
never sees a neighbour's state. Everything it learns about the graph arrives as
an argument (parent values, summed feedback) and everything it tells the graph
leaves as a return value (its value for the children, `J^T eps` per parent, its
Hebbian update). Engines move those messages; this class is the same in one
process, in a Ray actor, or packed with others into a shard.

Roles:
    input   value clamped to data, no error; it still receives feedback (dL/dx)
    hidden  value relaxes: v += eta * (-eps + sum_children J^T eps_child)
    output  fixed mode: eps = -dl/dvhat, held for the whole relaxation;
            strict mode: value clamped to the target, eps recomputed each step

Tied parameters (see `neurolocal.tied`):
    member  sends the partial update of each tied parameter to its owner as a
            message (`partial_messages`) and does not report it itself
    owner   adds the partials it receives to its own (`receive_partials`) and
            reports the group's update once

Modes:
    fixed   predictions and Jacobians cached from the forward pass (the paper's
            mode; converges to backprop's gradients)
    strict  predictions and Jacobians recomputed from current parent values
            every step (Whittington & Bogacz 2017; does not match backprop)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from neurolocal import kernels
from neurolocal.ops import Loss, Op

MODES = ("fixed", "strict")
ROLES = ("input", "hidden", "output")


class VertexRule:
    def __init__(self, name: str, op: Op, parents: Sequence[str], role: str,
                 params: dict[str, np.ndarray] | None = None, loss: Loss | None = None,
                 mode: str = "fixed", input_parents: Sequence[str] = (),
                 sends: dict[str, tuple[str, str]] | None = None,
                 expects: dict[str, int] | None = None):
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if role == "output" and loss is None:
            raise ValueError("the output vertex needs its loss")
        self.name = name
        self.op = op
        self.parents = tuple(parents)
        self.role = role
        self.mode = mode
        self.params = params or {}
        self.loss = loss
        #: parents clamped to data: they need feedback only when dL/dx is read
        self.input_parents = frozenset(input_parents) & frozenset(parents)
        #: parents that relax: relaxation's feedback goes to them (computed once, read often)
        self.relaxing_parents = frozenset(parents) - self.input_parents
        #: tied parameters this vertex shares but does not own: param -> (owner vertex, param)
        self.sends = dict(sends or {})
        #: tied parameters this vertex owns: param -> number of member partials to expect
        self.expects = dict(expects or {})
        self.value: np.ndarray | None = None
        self.prediction: np.ndarray | None = None
        self.error: np.ndarray | None = None
        self.target: np.ndarray | None = None
        #: the output's loss at the forward pass (batch mean)
        self.loss_value: float | None = None
        #: the prediction of the forward pass, before any relaxation: what the network
        #: answers for this batch (accuracy), unlike `prediction`, which strict mode
        #: recomputes from values pulled towards the target
        self.forward_prediction: np.ndarray | None = None
        self._cache: Any = None
        #: what this vertex computes in: data, targets and summed feedback are cast to it
        self.dtype = np.dtype(np.float64)

    @classmethod
    def for_vertex(cls, graph, name: str, params: dict | None = None,
                   mode: str = "fixed") -> "VertexRule":
        """The rule of one graph vertex: only what that vertex may know (its op, its
        parents' names, its role, its own parameters, its ties)."""
        spec = graph.vertices[name]
        role = "input" if graph.is_input(name) else "output" if name == graph.output else "hidden"
        sends, expects = graph.ties_of(name)
        return cls(name, spec.op, spec.parents, role, params=(params or {}).get(name, {}),
                   loss=graph.loss if name == graph.output else None, mode=mode,
                   input_parents=[p for p in spec.parents if graph.is_input(p)],
                   sends=sends, expects=expects)

    # --- forward pass ----------------------------------------------------------------

    def clamp(self, data: np.ndarray) -> np.ndarray:
        """Input vertices: the value is the data. Returns the message for the children."""
        self.value = np.ascontiguousarray(data, dtype=self.dtype)
        return self.value

    def set_target(self, target: np.ndarray) -> None:
        self.target = np.ascontiguousarray(target, dtype=self.dtype)

    def predict(self, parent_values: Sequence[np.ndarray]) -> np.ndarray:
        """Forward pass: cache vhat and the Jacobian data, set v = vhat.

        Hidden errors start at zero; the output's error is the loss gradient.
        Returns the value to send to the children: the prediction itself, which
        (unlike the value) is never changed in place, so a child may cache it.
        """
        self.prediction, self._cache = self.op.forward(self.params, parent_values)
        self.prediction = self.forward_prediction = np.ascontiguousarray(self.prediction)
        if self.role == "output":
            self.error, self.loss_value = self.loss.evaluate(self.prediction, self.target)
            self.value = self.prediction + self.error if self.mode == "fixed" else self.target
        else:
            self.value = self.prediction.copy()
            self.error = np.zeros_like(self.prediction)
        return self.prediction

    def value_message(self) -> np.ndarray:
        """The current value for the children (strict mode), detached from in-place updates."""
        return self.value.copy() if self.role == "hidden" else self.value

    # --- relaxation ------------------------------------------------------------------

    def feedback(self, to_inputs: bool = False) -> dict[str, np.ndarray]:
        """J^T eps for each parent (one message per parent, repeated parents summed).

        Relaxation sends only to parents that relax; `to_inputs=True` sends only to
        input parents instead (reading dL/dx once the errors have settled).
        """
        if self.role == "input":
            return {}
        wanted = self.input_parents if to_inputs else self.relaxing_parents
        if not wanted:
            return {}
        grads = self.op.vjp(self.params, self._cache, self.error)
        messages: dict[str, np.ndarray] = {}
        for parent, g in zip(self.parents, grads):
            if parent not in wanted:
                continue
            # (arrays that own their memory, neither a view, cannot overlap unless one object)
            if g is self.error or ((g.base is not None or self.error.base is not None)
                                   and np.may_share_memory(g, self.error)):
                # the error relaxes in place: a message must not change after sending
                g = g.copy()
            messages[parent] = messages[parent] + g if parent in messages else g
        return messages

    def relax(self, feedback_total: np.ndarray | None, eta: float) -> bool:
        """One value update from the summed feedback of this step's children messages.
        Returns whether the error changed (strict mode: always, it is recomputed later)."""
        if self.role != "hidden":
            return False
        feedback = (np.zeros_like(self.value) if feedback_total is None
                    else np.ascontiguousarray(feedback_total, dtype=self.dtype))
        if self.mode == "fixed":
            return kernels.relax_step(self.value, self.error, self.prediction, feedback,
                                      float(eta))
        kernels.value_step(self.value, self.error, feedback, float(eta))
        return True

    def refresh_error(self) -> None:
        """Strict mode, a prediction that cannot move (parents clamped, weights fixed
        within the batch): only the value moved, so only the error is recomputed."""
        self.error = self.value - self.prediction

    def input_gradient(self, feedback_total: np.ndarray | None) -> np.ndarray:
        """An input's settled feedback as -dL/dx of the batch-mean loss (the convention
        of dtheta, docs/rounds.md): the children's summed J^T eps over the batch size."""
        if feedback_total is None:
            return np.zeros_like(self.value)
        return feedback_total * (1.0 / self.value.shape[0])

    def repredict(self, parent_values: Sequence[np.ndarray]) -> None:
        """Strict mode: recompute prediction, Jacobian data and error from current values."""
        if self.role == "input":
            return
        self.prediction, self._cache = self.op.forward(self.params, parent_values)
        self.prediction = np.ascontiguousarray(self.prediction)
        if self.role == "output":
            self.error = self.loss.output_error(self.prediction, self.target)
        else:
            self.error = self.value - self.prediction

    # --- learning --------------------------------------------------------------------

    def hebbian(self) -> dict[str, np.ndarray]:
        """dtheta = eps . dvhat/dtheta, averaged over the batch (local: own error, cached inputs)."""
        if not self.params or self.error is None:
            return {}
        # averaging the (batch-sized) error first is cheaper than dividing weight-sized sums
        mean_error = self.error * (1.0 / self.error.shape[0])
        return self.op.param_vjp(self.params, self._cache, mean_error)

    @staticmethod
    def loss_gradient(update: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """dL/dtheta from a Hebbian update (dtheta = -dL/dtheta at the fixed point): what an
        optimizer, which descends a loss gradient, takes (exact: negation)."""
        return {k: -v for k, v in update.items()}

    def partial_messages(self, update: dict[str, np.ndarray]) -> dict[str, list[tuple[str, np.ndarray]]]:
        """Member side of a tied group: this vertex's partial updates of the parameters it
        shares but does not own, addressed to their owners: {owner vertex: [(owner param,
        partial), ...]}. `update` is this vertex's own `hebbian()`."""
        messages: dict[str, list[tuple[str, np.ndarray]]] = {}
        for param, (owner, owner_param) in self.sends.items():
            messages.setdefault(owner, []).append((owner_param, np.array(update[param], copy=True)))
        return messages

    def receive_partials(self, update: dict[str, np.ndarray],
                         partials: Sequence[tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Owner side of a tied group: the updates this vertex reports. Untied parameters
        as computed; owned parameters plus the sum of the members' partials received as
        messages; parameters it only shares (member side) left out. Reads nothing but
        its own update and the messages, and checks that every expected partial came."""
        # copy only what gets partials added in place; the rest is reported as computed
        report = {k: (np.array(v, copy=True) if k in self.expects else v)
                  for k, v in update.items() if k not in self.sends}
        counts = dict.fromkeys(self.expects, 0)
        for param, partial in partials:
            if param not in self.expects:
                raise ValueError(f"{self.name}: received a partial for '{param}', which it does "
                                 "not own")
            report[param] += partial
            counts[param] += 1
        missing = {p: (n, self.expects[p]) for p, n in counts.items() if n != self.expects[p]}
        if missing:
            raise ValueError(f"{self.name}: partials received/expected per parameter: {missing}")
        return report

    def energy(self) -> float:
        """This vertex's share of the free energy, 1/2 ||eps||^2 per sample."""
        if self.role == "input" or self.error is None:
            return 0.0
        error = self.error
        return 0.5 * float(kernels.squared_norms(error.reshape(1, -1))[0]) / error.shape[0]

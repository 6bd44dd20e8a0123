"""Compare predictive coding's Hebbian updates with backprop's gradients, per parameter.

How many rounds (`default_iterations`, docs/design.md §7). In fixed mode with
eta = 1 a vertex's error is exact once the errors of all its children are: the
iteration is triangular (a vertex reads only its children) with diagonal 1 - eta = 0.
With synchronous rounds (staleness 0) the output's error is exact from the start and
a vertex at distance d from the output is exact after d rounds, so T = depth makes
every parameter update exact. With bounded delay S (the Ray engine's --staleness S),
update r + 1 of a vertex may read a child's error as old as round r - S. If every
child c is exact from round E(c) on, the vertex is exact from round
max_c E(c) + S + 1 on (its first update to read only exact messages), and a parent
of the output needs one update (the output's error is one constant message). By
induction over the distance d (every hidden child is at distance <= d - 1):

    E(d) <= 1 + (d - 1)(S + 1),   so   T(S) = 1 + (depth - 1)(S + 1)   (depth >= 1)

rounds make every update exact whatever the timing. The bound is reached: within an
actor a parent runs S rounds ahead on its children's round-0 (zero) errors before
they speak. T(0) = depth. For eta != 1 no finite T is exact (errors approach the
fixed point geometrically) and strict mode has another fixed point; so every check
also measures whether its relaxation settled (`fixed_point_residual`) and says so.

Energy. The free energy sum_v 1/2 ||eps_v||^2 *rises* during a fixed-mode
relaxation: hidden errors start at zero after the forward pass and grow to their
backprop values (only the output's error is nonzero at round 0). What settles is
the state; `energy_change` (|E_r - E_{r-1}| per round) shows it: it falls to zero
as the errors stop moving (at eta = 1 exactly zero once they are all exact: from
round depth + 1 on with synchronous rounds, by round T(S) + 1 with staleness S).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neurolocal.backprop import backprop
from neurolocal.engines.base import default_iterations as engine_default_iterations
from neurolocal.graph import Graph

#: a relaxation has converged when no hidden error is further than this (relative to the
#: largest error) from the value its children's errors give it (`fixed_point_residual`)
CONVERGENCE_TOLERANCE = 1e-6

#: vertices that pass their parents' values on unchanged (so ids may flow through them)
_PASS_THROUGH = ("reshape", "flatten", "stack", "concat")


def default_iterations(graph: Graph, staleness: int = 0) -> int:
    """check-grad's T: the engines' default for parameter updates under staleness S
    (`neurolocal.engines.base.default_iterations`; module docstring)."""
    return engine_default_iterations(graph, staleness=staleness)


def relative_error(estimate: np.ndarray, reference: np.ndarray) -> float:
    """||estimate - reference|| / ||reference||; 0 when both vanish, inf when only the reference does."""
    diff = float(np.linalg.norm(np.asarray(estimate) - np.asarray(reference)))
    scale = float(np.linalg.norm(reference))
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def id_vocabulary(graph: Graph, name: str) -> int | None:
    """The number of ids an input may hold when it feeds an `embedding` (directly or
    through vertices that only move values): the smallest such vocabulary; else None."""
    vocab, stack, seen = None, [name], set()
    while stack:
        for child in graph.children[stack.pop()]:
            if child in seen:
                continue
            seen.add(child)
            op = graph.vertices[child].op
            if op.name == "embedding":
                vocab = op.vocab if vocab is None else min(vocab, op.vocab)
            elif op.name in _PASS_THROUGH:
                stack.append(child)
    return vocab


def synthetic_batch(graph: Graph, batch_size: int = 8, seed: int = 0):
    """Inputs of each input's kind — whole-number ids below the vocabulary for an input
    read by an `embedding`, standard-normal values otherwise — and a random target of
    the loss's kind (labels for cross-entropy)."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for n in graph.inputs:
        shape, vocab = (batch_size, *graph.shapes[n]), id_vocabulary(graph, n)
        inputs[n] = (rng.standard_normal(shape) if vocab is None
                     else rng.integers(0, vocab, size=shape).astype(np.float64))
    out_shape = graph.shapes[graph.output]
    if graph.loss.name == "softmax_cross_entropy":
        target = rng.integers(0, out_shape[-1], size=(batch_size, *out_shape[:-1]))
    else:
        target = rng.standard_normal((batch_size, *out_shape))
    return inputs, target


def data_batch(spec, graph: Graph, batch_size: int = 8, seed: int = 0):
    """`batch_size` samples of a real data set (as `run --data` takes it), drawn from its
    training split with the seed."""
    from neurolocal.training.data import load_for_graph

    data = load_for_graph(spec, graph)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.permutation(data.train_size)[:batch_size])
    return ({n: x[rows] for n, x in data.train_inputs.items()}, data.train_target[rows])


def fixed_point_residual(graph: Graph, params, inputs, target, errors, mode: str) -> float:
    """How far the relaxation's final errors are from a fixed point of the relaxation:
    max over the hidden vertices whose errors a parameter update reads (`_read_by_updates`)
    of ||eps_v - sum_children J^T eps_c||, over the largest ||eps|| of any vertex (0 when
    every error vanishes). At the fixed point every such error equals the feedback its
    children's errors give it.

    Computed here, in one process, from nothing but the final errors: a forward pass
    caches the Jacobians (fixed mode: at the forward pass; strict mode: at the relaxed
    values, rebuilt as prediction + error vertex by vertex), then one sweep of J^T eps.
    """
    from neurolocal.engines.base import prepare_batch
    from neurolocal.vertex import VertexRule

    inputs, target = prepare_batch(graph, inputs, target)
    rules = {n: VertexRule.for_vertex(graph, n, params, mode) for n in graph.order}
    rules[graph.output].set_target(target)
    values: dict[str, np.ndarray] = {}
    for n in graph.order:
        rule = rules[n]
        if graph.is_input(n):
            values[n] = rule.clamp(inputs[n])
            continue
        prediction = rule.predict([values[p] for p in graph.parents(n)])
        if n != graph.output:
            rule.error = np.asarray(errors[n], dtype=np.float64)
        values[n] = prediction if mode == "fixed" else prediction + rule.error
    totals: dict[str, np.ndarray] = {}
    for n in graph.order:
        for parent, message in rules[n].feedback().items():
            totals[parent] = totals[parent] + message if parent in totals else message
    scale = max((float(np.linalg.norm(rules[n].error)) for n in graph.order
                 if not graph.is_input(n)), default=0.0)
    worst = 0.0
    for n in _read_by_updates(graph):
        feedback = totals.get(n, np.zeros_like(rules[n].error))
        worst = max(worst, float(np.linalg.norm(rules[n].error - feedback)))
    if scale == 0.0:
        return 0.0 if worst == 0.0 else float("inf")
    return worst / scale


def _read_by_updates(graph: Graph) -> list[str]:
    """Hidden vertices whose error some parameter update depends on: vertices with
    parameters and everything below them (an error is made of its descendants' errors).
    A parameter-free vertex above every parameter (an input's activation, say) only
    matters for dL/dx, which check-grad does not read."""
    reached = [n for n in graph.order if graph.vertices[n].op.has_params]
    seen = set(reached)
    while reached:
        for child in graph.children[reached.pop()]:
            if child not in seen:
                seen.add(child)
                reached.append(child)
    return [n for n in graph.hidden if n in seen]


@dataclass
class ParameterCheck:
    vertex: str
    parameter: str
    shape: tuple[int, ...]
    gradient_norm: float
    relative_error: float


@dataclass
class GradientCheck:
    graph: str
    mode: str
    eta: float
    iterations: int
    depth: int
    loss: float
    rows: list[ParameterCheck]
    energy: list[float] = field(default_factory=list)
    staleness: int = 0
    residual: float = 0.0   # fixed_point_residual of the final errors

    @property
    def converged(self) -> bool:
        return self.residual <= CONVERGENCE_TOLERANCE

    @property
    def energy_change(self) -> list[float]:
        """|E_r - E_(r-1)| for rounds r = 1..T: falls to zero as the errors settle."""
        return [abs(b - a) for a, b in zip(self.energy, self.energy[1:])]

    @property
    def max_relative_error(self) -> float:
        return max((r.relative_error for r in self.rows), default=0.0)

    def as_dict(self) -> dict:
        return {
            "graph": self.graph, "mode": self.mode, "eta": self.eta,
            "iterations": self.iterations, "depth": self.depth, "staleness": self.staleness,
            "loss": self.loss, "max_rel_error": self.max_relative_error,
            "converged": self.converged, "residual": self.residual,
            "convergence_tolerance": CONVERGENCE_TOLERANCE,
            "parameters": [
                {"vertex": r.vertex, "parameter": r.parameter, "shape": list(r.shape),
                 "gradient_norm": r.gradient_norm, "rel_error": r.relative_error}
                for r in self.rows
            ],
            "energy": self.energy,
            "energy_change": self.energy_change,
        }


def compare(graph: Graph, params, relaxation, inputs, target, *, mode: str, eta: float,
            iterations: int, staleness: int = 0) -> GradientCheck:
    """Relative error of PC's -dtheta against backprop's dL/dtheta for every parameter,
    and whether the relaxation had converged."""
    reference = backprop(graph, params, inputs, target)
    rows = []
    for vertex, grads in reference.params.items():
        for name, grad in grads.items():
            estimate = -relaxation.dtheta.get(vertex, {}).get(name, np.zeros_like(grad))
            rows.append(ParameterCheck(vertex, name, tuple(grad.shape),
                                       float(np.linalg.norm(grad)),
                                       relative_error(estimate, grad)))
    residual = fixed_point_residual(graph, params, inputs, target, relaxation.errors, mode)
    return GradientCheck(graph.name, mode, eta, iterations, graph.depth, reference.loss, rows,
                         list(relaxation.energy), staleness=staleness, residual=residual)

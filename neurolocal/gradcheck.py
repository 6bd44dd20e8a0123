"""Compare predictive coding's Hebbian updates with backprop's gradients, per parameter."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neurolocal.backprop import backprop
from neurolocal.graph import Graph


def relative_error(estimate: np.ndarray, reference: np.ndarray) -> float:
    """||estimate - reference|| / ||reference||; 0 when both vanish, inf when only the reference does."""
    diff = float(np.linalg.norm(np.asarray(estimate) - np.asarray(reference)))
    scale = float(np.linalg.norm(reference))
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def synthetic_batch(graph: Graph, batch_size: int = 8, seed: int = 0):
    """Standard-normal inputs and a random target of the loss's kind (labels for cross-entropy)."""
    rng = np.random.default_rng(seed)
    inputs = {n: rng.standard_normal((batch_size, *graph.shapes[n])) for n in graph.inputs}
    out_shape = graph.shapes[graph.output]
    if graph.loss.name == "softmax_cross_entropy":
        target = rng.integers(0, out_shape[-1], size=(batch_size, *out_shape[:-1]))
    else:
        target = rng.standard_normal((batch_size, *out_shape))
    return inputs, target


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

    @property
    def max_relative_error(self) -> float:
        return max((r.relative_error for r in self.rows), default=0.0)

    def as_dict(self) -> dict:
        return {
            "graph": self.graph, "mode": self.mode, "eta": self.eta,
            "iterations": self.iterations, "depth": self.depth, "loss": self.loss,
            "max_rel_error": self.max_relative_error,
            "parameters": [
                {"vertex": r.vertex, "parameter": r.parameter, "shape": list(r.shape),
                 "gradient_norm": r.gradient_norm, "rel_error": r.relative_error}
                for r in self.rows
            ],
            "energy": self.energy,
        }


def compare(graph: Graph, params, relaxation, inputs, target, *, mode: str, eta: float,
            iterations: int) -> GradientCheck:
    """Relative error of PC's -dtheta against backprop's dL/dtheta for every parameter."""
    reference = backprop(graph, params, inputs, target)
    rows = []
    for vertex, grads in reference.params.items():
        for name, grad in grads.items():
            estimate = -relaxation.dtheta.get(vertex, {}).get(name, np.zeros_like(grad))
            rows.append(ParameterCheck(vertex, name, tuple(grad.shape),
                                       float(np.linalg.norm(grad)),
                                       relative_error(estimate, grad)))
    return GradientCheck(graph.name, mode, eta, iterations, graph.depth, reference.loss, rows,
                         list(relaxation.energy))

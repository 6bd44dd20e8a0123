"""What every engine returns, so results compare across engines field by field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Protocol, runtime_checkable

import numpy as np

from neurolocal.errors import ConfigError
from neurolocal.checks import number
from neurolocal.batches import prepare_batch  # noqa: F401  (re-exported: the engines' data)
from neurolocal.graph import Graph

Updates = dict[str, dict[str, np.ndarray]]


@dataclass
class Relaxation:
    """The outcome of relaxing one batch.

    dtheta:          Hebbian update per vertex and parameter (= -dL/dtheta at the fixed point)
    errors:          final eps of every non-input vertex
    input_feedback:  sum_children J^T eps arriving at each input divided by the batch size:
                     -dL/dx of the batch-mean loss L at the fixed point (the convention of
                     dtheta; docs/rounds.md); filled only when asked for
    energy:          free energy sum_i 1/2||eps_i||^2 (per sample) after each round,
                     index 0 being the state right after the forward pass
    loss:            the batch's loss at the forward pass
    prediction:      the output vertex's forward-pass prediction (never the output pulled
                     towards the target: accuracy is read from it)
    """

    dtheta: Updates
    errors: dict[str, np.ndarray]
    input_feedback: dict[str, np.ndarray]
    energy: list[float]
    loss: float
    prediction: np.ndarray
    messages: int = 0
    extras: dict = field(default_factory=dict)
    restarts: list["Restart"] = field(default_factory=list)
    #: each vertex's energy after each round (the per-layer audit reads it)
    vertex_energy: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Restart:
    """An actor that died and was brought back during a batch (docs/rounds.md, snapshots).

    batch:      the index of the engine call (relax / train step) it happened in, from 0
    abandoned:  the batch id of the failed attempt (the traffic log marks it abandoned)
    actor, vertices: who died
    replayed:   batches replayed from the last snapshot before the interrupted one
    seconds:    from the failed attempt's dispatch to the replay's
    cause:      "actor_died" (its process died, Ray restarted it) or "node_lost" (its
                whole node is gone; re-created on a surviving node, docs/netns.md)
    node, now_on: the address of the node it ran on before, and after
    abandoned_ahead: the batch ids posted ahead behind the failed one (docs/rounds.md §7),
                given up with it and posted again after the replay (also marked abandoned)"""
    batch: int
    abandoned: int
    actor: str
    vertices: tuple[str, ...]
    replayed: int
    seconds: float
    cause: str = "actor_died"
    node: str | None = None
    now_on: str | None = None
    abandoned_ahead: tuple[int, ...] = ()

    def as_dict(self) -> dict:
        return {"batch": self.batch, "abandoned_batch_id": self.abandoned, "actor": self.actor,
                "vertices": list(self.vertices), "replayed": self.replayed,
                "seconds": self.seconds, "cause": self.cause, "node": self.node,
                "now_on": self.now_on, "abandoned_ahead": list(self.abandoned_ahead)}


@dataclass
class Step:
    """The outcome of one training batch when the vertices own their parameters: only
    scalars come back (docs/rounds.md, plasticity).

    loss:      the batch's loss at the forward pass
    hits:      arg-max hits of the forward prediction (the output vertex counts them)
    energy:    free energy after each round
    messages:  messages the vertices sent
    restarts:  actors restarted during this batch (replayed from the last snapshot)
    report:    the transport's counters of the batch; vertex_energy: per vertex and round"""
    loss: float
    hits: float
    energy: list[float]
    messages: int = 0
    restarts: list[Restart] = field(default_factory=list)
    #: the transport's counters of this batch (sim time, messages lost, ...; {}: none),
    #: summed into metrics.json by the trainer
    report: dict = field(default_factory=dict)
    #: each vertex's energy after each round (the per-layer audit reads it)
    vertex_energy: dict[str, list[float]] = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    """The engine API as a type (docs/rounds.md §6); its one implementation is
    `neurolocal.engines.engine.Engine`, over any transport."""

    def relax(self, inputs, target, eta: float = 1.0, iterations: int | None = None,
              read_inputs: bool = False) -> Relaxation:
        """One batch, nothing learns: every vertex's dtheta, errors, dL/dx."""

    def restore(self, params, optimizer, learning) -> None:
        """The vertices' parameters and optimizer state (a run's start, a checkpoint)."""

    def train_step(self, inputs, target, eta: float = 1.0,
                   iterations: int | None = None) -> "Step":
        """One batch in which every vertex applies its own update; scalars come back."""

    def train_batches(self, batches: Iterable, eta: float = 1.0,
                      iterations: int | None = None,
                      pipeline: int | None = None) -> Iterator["Step"]:
        """Training batches, `pipeline` in flight; steps in batch order."""

    def snapshot(self) -> tuple[dict, dict]:
        """(parameters, optimizer state) from the vertices, at a batch boundary."""

    def report(self) -> dict:
        """What the engine is and where its vertices run."""

    def close(self) -> None:
        """Stop whatever the engine started."""


def default_iterations(graph: Graph, read_inputs: bool = False, staleness: int = 0) -> int:
    """T when none is given: the rounds that make every parameter update exact at eta = 1
    in fixed mode — the graph's depth d for synchronous rounds, and 1 + (d - 1)(S + 1)
    when feedback may be S rounds old (docs/design.md §7). When dL/dx is read, d is at
    least the input depth (the inputs' feedback exact too)."""
    depth = max(graph.depth, graph.input_depth) if read_inputs else graph.depth
    return 0 if depth == 0 else 1 + (depth - 1) * (int(staleness) + 1)


def check_relaxation_settings(eta: float, iterations: int, mode: str) -> None:
    if not np.isfinite(eta) or eta <= 0:
        raise ConfigError(f"eta must be a positive number, got {eta}", field="eta")
    if mode == "fixed" and eta >= 2:
        raise ConfigError(f"eta = {eta} diverges in fixed mode: relaxation converges only for "
                          "0 < eta < 2", field="eta")
    number("iterations", iterations, whole=True, minimum=0)

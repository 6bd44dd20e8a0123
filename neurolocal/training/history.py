"""A training run's state: parameters, optimizer, random generator, per-epoch history."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from neurolocal.graph import Graph, Params
from neurolocal.optimizers import Optimizer, make_optimizer
from neurolocal.training.settings import Settings


@dataclass
class History:
    """Per-epoch metrics of one algorithm; the energy trace is the last epoch's mean."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    energy_per_round: list[float] = field(default_factory=list)
    batch_losses: list[list[float]] = field(default_factory=list)   # not checkpointed

    COLUMNS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds")

    @property
    def epochs_done(self) -> int:
        return len(self.train_loss)

    def rows(self, kind: str, positions: int = 1) -> list[dict]:
        """One dict per epoch; accuracy is None for regression, perplexity added for text
        (per character: the loss sums over `positions` predicted characters per sample)."""
        rows = []
        for i in range(self.epochs_done):
            row = {"epoch": i + 1, **{c: getattr(self, c)[i] for c in self.COLUMNS}}
            if kind == "regression":
                row["train_accuracy"] = row["test_accuracy"] = None
            if kind == "text":
                row["train_perplexity"] = _perplexity(row["train_loss"] / positions)
                row["test_perplexity"] = _perplexity(row["test_loss"] / positions)
            rows.append(row)
        return rows


def _perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf


@dataclass
class Run:
    algorithm: str
    params: Params
    optimizer: Optimizer
    rng: np.random.Generator
    history: History
    restarts: list[dict] = field(default_factory=list)   # actor restarts, see module doc
    #: an engine's per-batch counters summed over this process's batches (the sim engine:
    #: simulated time, messages lost and retransmitted; docs/asynchrony.md)
    engine_report: dict = field(default_factory=dict)


def new_run(algorithm: str, graph: Graph, settings: Settings) -> Run:
    params = graph.init_params(settings.seed)
    optimizer = make_optimizer(settings.optimizer, settings.lr, **settings.optimizer_options)
    rng = np.random.Generator(np.random.PCG64(settings.seed))
    return Run(algorithm, params, optimizer, rng, History())

def predicted_positions(graph: Graph) -> int:
    """Predictions per sample a classifier's loss sums over ([steps, classes] -> steps)."""
    return int(np.prod(graph.shapes[graph.output][:-1], dtype=np.int64))

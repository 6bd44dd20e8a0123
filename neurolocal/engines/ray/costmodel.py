"""When distribution pays: the batch time `auto` predicts for k shards (docs/placement.md §5).

A shard's compute is its vertices' multiply-adds (`partition.model_weights`: the shapes,
per batch) times `2 (rounds + 2)` floating-point operations (the forward pass, a
`J^T eps` per round, the Hebbian update), at the machine's flop rate. A shard talks to
each neighbour shard once per round (one call per destination shard per round) and
sends its share of the cut's bytes every round. Per batch the driver makes one call per
actor. Then, for k shards on `cores` cores:

    k = 1                      compute + 1 call
    pipeline >= 2 (k > 1)      max over shards of (compute + messages), times
                               max(1, k / cores) (stages overlap), + k calls
    pipeline 1 (k > 1)         the sum over shards of (compute + messages) + k calls
                               (within one batch the shards of a chain wait on each
                               other: forward one way, feedback the other)

`choose` tries k = 1 .. the cores offered, each with its min-cut partition, and keeps
the fastest prediction (ties: fewer shards). The costs, measured at start-up: the flop
rate in this process (a few small matrix products), the per-message and per-byte costs
of a Ray hop by a probe actor (probe.py); or a `CostTable` given (tests: a fixed table,
never timing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from neurolocal.engines.ray import partition as mincut


@dataclass(frozen=True)
class CostTable:
    """Seconds per floating-point operation, per message (one call to an actor) and per
    byte a message carries."""
    flop: float
    message: float
    byte: float


@dataclass(frozen=True)
class CostContext:
    """What the prediction needs beyond the graph: the costs, the rounds per batch, the
    batches in flight and the cores the shards share; `recorded`: the table as the
    report records it (`describe`)."""
    table: CostTable
    rounds: int
    pipeline: int = 1
    recorded: dict | None = None


@dataclass(frozen=True)
class Prediction:
    shards: int
    seconds: float
    partition: mincut.Partition


def measured_flop_seconds(repeat: int = 5) -> float:
    """Seconds per floating-point operation of a 128x256 by 256x256 product here (the
    best of `repeat`)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((128, 256)), rng.standard_normal((256, 256))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return max(best, 1e-9) / (2 * 128 * 256 * 256)


_FLOP: float | None = None


def ray_costs() -> tuple[CostTable, dict]:
    """The Ray transport's table, measured: the flop rate once per process, a hop's
    costs once per process and cluster (probe.py). With it, what to record: the
    table's numbers and where the hop was measured."""
    from neurolocal.engines.ray.probe import hop_costs

    global _FLOP
    if _FLOP is None:
        _FLOP = measured_flop_seconds()
    hop = hop_costs()
    table = CostTable(_FLOP, hop.message, hop.byte)
    return table, describe(table, hop.node)


def describe(table: CostTable, measured_on: str = "given") -> dict:
    """A table as the report and the traffic header record it."""
    return {"gflops": round(1e-9 / table.flop, 3), "message_ms": round(table.message * 1e3, 4),
            "byte_ns": round(table.byte * 1e9, 4), "hop_measured_on": measured_on}


def predict(weights: mincut.Weights, shards, context: CostContext, cores: int) -> float:
    """Predicted seconds per batch for these shards (module doc)."""
    table, rounds = context.table, context.rounds
    where = {v: i for i, names in enumerate(shards) for v in names}
    k = len(shards)
    compute = [0.0] * k
    for v, w in weights.vertex.items():
        compute[where[v]] += w * 2 * (rounds + 2) * table.flop
    talk = [0.0] * k
    neighbours: list[set] = [set() for _ in range(k)]
    for (a, b), nbytes in weights.edge.items():
        i, j = where[a], where[b]
        if i != j:
            neighbours[i].add(j)
            neighbours[j].add(i)
            share = nbytes / 2 * (rounds + 1) * table.byte
            talk[i] += share
            talk[j] += share
    for i in range(k):
        talk[i] += len(neighbours[i]) * (rounds + 1) * table.message
    driver = k * table.message
    if k == 1:
        return compute[0] + driver
    stages = [c + t for c, t in zip(compute, talk)]
    if context.pipeline >= 2:
        return max(stages) * max(1.0, k / max(1, cores)) + driver
    return sum(stages) + driver


def choose(weights: mincut.Weights, cores: int, context: CostContext) -> tuple[Prediction, dict]:
    """The fastest predicted k in 1..cores (ties: fewer shards) and every k's prediction."""
    best, seen = None, {}
    for k in range(1, max(1, min(cores, len(weights.order))) + 1):
        part = mincut.min_cut(weights, k)
        seconds = predict(weights, part.shards, context, cores)
        seen[k] = seconds
        if best is None or seconds < best.seconds:
            best = Prediction(k, seconds, part)
    return best, seen

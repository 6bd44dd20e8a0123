"""When distribution pays: the batch time `auto` predicts for k shards (docs/placement.md §5).

A batch is a sequence of phases (`batch_work`): the forward pass level by level, then
one phase per tag of the relaxation (the vertices that speak at that tag: each computes
its `J^T eps` toward its parents and sends it), then the close (every vertex's
Hebbian product and its optimizer's step). Which vertices work at which tag is the
run's own `Schedule` (engines/schedule.py): under the event schedule at eta 1 the
error of a chain reaches one layer a round, so a chain's shards take turns, while the
tiles of one layer work in the same round. A phase's work per vertex is its
multiply-adds (`2` flops each) and its activations; its messages are the bytes each
edge carries in that phase.

For k shards, plus (k + 1) messages from and to the driver (one call per actor per
batch, waiting for the last):

    pipeline 1      the sum over phases of the slowest shard's phase time
                    (compute + for each other shard it sends to, a message + bytes)
    pipeline >= 2   batches overlap: the busiest shard's total over all phases

where "the slowest" is never less than the phase's whole work over the cores (k
shards on fewer cores share them). `choose` tries k = 1 .. the cores offered, each with its
min-cut partition, and keeps the fastest prediction (ties: fewer shards). The costs,
measured at start-up: the flop rate, an optimizer step's time per parameter and an
elementwise pass's time per number in this process (one BLAS thread, as the actors
run), and a Ray message's one-way cost and per-byte cost by two probe actors
(probe.py); or a `CostTable` given (tests: a fixed table, never timing).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from neurolocal.engines.ray import partition as mincut


@dataclass(frozen=True)
class CostTable:
    """Seconds per floating-point operation, per message (one way, one call to an
    actor), per byte a message carries, per parameter an optimizer step touches, and
    per number an elementwise pass (an activation, an error, a relaxation step) touches."""
    flop: float
    message: float
    byte: float
    param: float = 0.0
    element: float = 0.0


@dataclass(frozen=True)
class CostContext:
    """What the prediction needs beyond the graph: the costs, the rounds per batch, the
    batches in flight, the schedule that says who works when, and the table as the
    report records it (`describe`)."""
    table: CostTable
    rounds: int
    pipeline: int = 1
    recorded: dict | None = None
    schedule: str = "event"
    eta: float = 1.0
    mode: str = "fixed"


@dataclass(frozen=True)
class Prediction:
    shards: int
    seconds: float
    partition: mincut.Partition


def _median_time(fn, repeat: int) -> float:
    """Median seconds of `repeat` calls of `fn`, after one to warm up."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measured_flop_seconds(repeat: int = 5) -> float:
    """Seconds per floating-point operation of a 128x512 by 512x512 product, one BLAS
    thread (as actors and the local engine run), the median of `repeat`."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((128, 512)), rng.standard_normal((512, 512))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:   # scikit-learn brings it; without it, BLAS as it is set up
        seconds = _median_time(lambda: a @ b, repeat)
    else:
        with threadpool_limits(limits=1, user_api="blas"):
            seconds = _median_time(lambda: a @ b, repeat)
    return max(seconds, 1e-9) / (2 * 128 * 512 * 512)


def measured_element_seconds(repeat: int = 5) -> float:
    """Seconds per number of an elementwise pass (a * b + c over 128x512 float64)."""
    rng = np.random.default_rng(0)
    a, b, out = rng.standard_normal((3, 128, 512))
    return _median_time(lambda: np.add(np.multiply(a, b, out=out), a, out=out), repeat) / (2 * a.size)


def measured_param_seconds(repeat: int = 5) -> float:
    """Seconds per parameter of an Adam step (the default optimizer) on 512x512."""
    from neurolocal.optimizers import make_optimizer

    params = {"v": {"w": np.zeros((512, 512))}}
    grads = {"v": {"w": np.full((512, 512), 1e-3)}}
    optimizer = make_optimizer("adam", 1e-3)
    return _median_time(lambda: optimizer.step(params, grads), repeat) / (512 * 512)


_FLOP: tuple[float, float, float] | None = None


def ray_costs() -> tuple[CostTable, dict]:
    """The Ray transport's table, measured: the flop rate once per process, a hop's
    costs once per process and cluster (probe.py). With it, what to record: the
    table's numbers and where the hop was measured."""
    from neurolocal.engines.ray.probe import hop_costs

    global _FLOP
    if _FLOP is None:
        _FLOP = (measured_flop_seconds(), measured_param_seconds(), measured_element_seconds())
    hop = hop_costs()
    table = CostTable(_FLOP[0], hop.message, hop.byte, _FLOP[1], _FLOP[2])
    return table, describe(table, hop.node)


def describe(table: CostTable, measured_on: str = "given") -> dict:
    """A table as the report and the traffic header record it."""
    return {"gflops": round(1e-9 / table.flop, 3), "message_ms": round(table.message * 1e3, 4),
            "byte_ns": round(table.byte * 1e9, 4), "param_ns": round(table.param * 1e9, 4),
            "element_ns": round(table.element * 1e9, 4),
            "hop_measured_on": measured_on}


#: elementwise passes over a vertex's values per phase (the planned path's kernels):
#: forward (activation and its derivative, error, energy), a relaxation step (its
#: children's feedback summed, the step, the new error, energy), speaking (the error
#: scaled by the derivative, the message)
FORWARD_PASSES, RELAX_PASSES, SPEAK_PASSES = 4, 6, 2


@dataclass(frozen=True)
class Phase:
    """One phase of a batch: multiply-adds per vertex, bytes per directed edge, and
    numbers touched by elementwise passes per vertex."""
    compute: dict
    sends: dict
    elements: dict


@dataclass(frozen=True)
class Work:
    """A batch, phase by phase, and each vertex's parameter count (its optimizer step)."""
    phases: tuple
    params: dict


def batch_work(graph, batch_size: int, context: CostContext) -> Work:
    """The phases of one training batch of `batch_size` samples (module doc)."""
    from types import SimpleNamespace

    from neurolocal.engines.schedule import Schedule

    batch = int(batch_size)
    shapes = graph.param_shapes()
    params, macs, size = {}, {}, {}
    for n in graph.order:
        shape = graph.shapes[n]
        size[n] = math.prod(shape)
        positions = size[n] // shape[0] if len(shape) > 1 and shape[0] else 1
        params[n] = sum(math.prod(p) for p in shapes.get(n, {}).values())
        macs[n] = float(batch * (params[n] * positions + size[n]))
    hidden = [n for n in graph.order if not graph.is_input(n)]
    level: dict[str, int] = {}
    for n in graph.order:
        level[n] = 0 if graph.is_input(n) else 1 + max(level[p] for p in graph.parents(n))
    phases = []
    for depth in range(1, max(level.values(), default=0) + 1):   # the forward pass
        at = [n for n in hidden if level[n] == depth]
        phases.append(Phase({n: macs[n] for n in at},
                            {(p, n): batch * size[p] * 8.0 for n in at
                             for p in graph.parents(n) if level[p] < depth},
                            {n: FORWARD_PASSES * batch * size[n] for n in at}))
    settings = SimpleNamespace(schedule=context.schedule, eta=context.eta, staleness=0,
                               iterations=context.rounds)
    schedule = Schedule(graph, settings, context.mode)
    strict = context.mode == "strict"
    speaking: dict[int, list] = {}
    for n in hidden:
        for tag in (range(schedule.rounds) if strict else schedule.tags(n)):
            speaking.setdefault(tag, []).append(n)
    if not strict and schedule.rounds and graph.output not in speaking.get(0, ()):
        speaking.setdefault(0, []).append(graph.output)   # its constant error, once
    for tag in range(schedule.rounds):   # who speaks at each tag: J^T eps to its parents
        speak = speaking.get(tag, [])
        compute = {n: macs[n] * (2 if strict else 1) for n in speak}
        sends = {(n, p): batch * size[p] * 8.0 for n in speak for p in graph.parents(n)
                 if not graph.is_input(p)}
        if strict:   # new values forward, every round
            sends.update({(p, n): batch * size[p] * 8.0 for n in speak
                          for p in graph.parents(n)})
        relax = [n for n in hidden if n != graph.output or strict]
        if not strict and context.schedule == "event":
            relax = [n for n in relax
                     if schedule.relaxes(n, tag + 1, graph.children[n])]
        elements = {n: RELAX_PASSES * batch * size[n] for n in relax}
        for n in speak:
            elements[n] = elements.get(n, 0) + SPEAK_PASSES * batch * size[n]
        phases.append(Phase(compute, sends, elements))
    phases.append(Phase({n: macs[n] for n in hidden}, {},   # the Hebbian products
                        {n: SPEAK_PASSES * batch * size[n] for n in hidden}))
    return Work(tuple(phases), params)


def predict(work: Work, shards, context: CostContext, cores: int) -> float:
    """Predicted seconds per batch for these shards (module doc)."""
    table = context.table
    where = {v: i for i, names in enumerate(shards) for v in names}
    k = len(shards)
    totals = [0.0] * k
    latency = 0.0
    for phase in work.phases:
        busy = [0.0] * k
        for v, m in phase.compute.items():
            busy[where[v]] += 2 * m * table.flop
        for v, m in phase.elements.items():
            busy[where[v]] += m * table.element
        heard: list[set] = [set() for _ in range(k)]
        for (a, b), nbytes in phase.sends.items():
            i, j = where[a], where[b]
            if i != j:
                busy[i] += nbytes * table.byte
                heard[i].add(j)
        for i in range(k):
            busy[i] += len(heard[i]) * table.message
            totals[i] += busy[i]
        latency += shared(busy, cores)
    for v, n in work.params.items():   # the optimizer steps, each shard its own
        totals[where[v]] += n * table.param
    driver = (k + 1) * table.message
    if context.pipeline >= 2 and k > 1:
        return shared(totals, cores) + driver
    steps = [0.0] * k
    for v, n in work.params.items():
        steps[where[v]] += n * table.param
    return latency + shared(steps, cores) + driver


def shared(busy: list[float], cores: int) -> float:
    """Time for shards with these amounts of work to finish on `cores` cores: the
    longest, or all of it spread over the cores, whichever is more."""
    return max(max(busy), sum(busy) / max(1, cores))


def choose(weights: mincut.Weights, work: Work, cores: int,
           context: CostContext) -> tuple[Prediction, dict]:
    """The fastest predicted k in 1..cores (ties: fewer shards) and every k's prediction."""
    best, seen = None, {}
    for k in range(1, max(1, min(cores, len(weights.order))) + 1):
        part = mincut.min_cut(weights, k)
        seconds = predict(work, part.shards, context, cores)
        seen[k] = seconds
        if best is None or seconds < best.seconds:
            best = Prediction(k, seconds, part)
    return best, seen

"""The Ray driver's side of record and replay (docs/asynchrony.md §6): the journal
stream `<run>.scheduler.replay` (what a replay needs besides the actors' reads: the
graph, the settings, the parameters, every batch's data and the digest of its
outcome), and the asynchrony counters the actors report per batch."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from neurolocal.engines.base import Step
from neurolocal.engines.journal import (
    JournalStream,
    pack_array,
    pack_params,
    relaxation_digest,
    state_digest,
    step_digest,
    vertex_digests,
)
from neurolocal.traffic.log import SCHEDULER

#: per-batch counters of an asynchronous Ray run (Relaxation.extras["report"], RayStep)
COUNTERS = ("messages_lost", "messages_retransmitted", "max_feedback_age")


@dataclass
class RayStep(Step):
    """A training batch's scalars plus the asynchrony counters (summed into metrics.json
    by the trainer, as the sim engine's)."""
    report: dict = field(default_factory=dict)


def asynchrony_report(results: list[dict]) -> dict | None:
    """The actors' counters of one batch, summed (the oldest feedback: the largest);
    None when no actor watched its asynchrony."""
    parts = [r["asynchrony"] for r in results if "asynchrony" in r]
    if not parts:
        return None
    report = {key: sum(p[key] for p in parts) for key in COUNTERS[:2]}
    report["max_feedback_age"] = max(p["max_feedback_age"] for p in parts)
    return report


class DriverJournal:
    """`<run>.scheduler.replay`: a header, then restore / batch / snapshot events."""

    def __init__(self, directory: str, run: str, engine):
        topology = engine.topology
        text = None
        if topology and os.path.isfile(topology):
            text = Path(topology).read_text(encoding="utf-8")
        injection = engine.asynchrony
        self.graph = engine.graph
        self.stream = JournalStream(Path(directory) / f"{run}.{SCHEDULER}.replay", {
            "writer": SCHEDULER, "engine": "ray", "run": run, "graph": engine.graph.name,
            "topology": os.path.abspath(topology) if topology else None,
            "topology_text": text, "mode": engine.mode, "schedule": engine.schedule,
            "staleness": engine.staleness, "vertices_per_actor": engine.vertices_per_actor,
            "actors": len(engine.shards),
            "asynchrony": None if injection is None else injection.summary()})
        self.batches = 0

    def relaxed(self, settings, params, inputs, target, relaxation, results) -> None:
        self.stream.append({**self._batch(settings, inputs, target), "training": False,
                            "params": pack_params(params),
                            "digest": relaxation_digest(self.graph, relaxation),
                            "vertices": vertex_digests(results)})

    def trained(self, settings, inputs, target, step, results) -> None:
        self.stream.append({**self._batch(settings, inputs, target), "training": True,
                            "digest": step_digest(step), "vertices": vertex_digests(results)})

    def restored(self, params, optimizer, learning) -> None:
        self.stream.append({
            "event": "restore", "params": pack_params(params),
            "optimizer": None if optimizer is None else
            {k: pack_array(v) for k, v in optimizer.items()},
            "learning": {"optimizer": learning.optimizer, "lr": learning.lr,
                         "options": [list(o) for o in learning.options],
                         "updates_per_batch": learning.updates_per_batch}})

    def snapshot_taken(self, params, optimizer) -> None:
        self.stream.append({"event": "snapshot", "after": self.batches,
                            "digest": state_digest(params, optimizer),
                            "vertices": {v: state_digest({v: ps}, None)
                                         for v, ps in params.items()}})

    def _batch(self, settings, inputs, target) -> dict:
        self.batches += 1
        return {"event": "batch", "batch": settings.batch, "eta": settings.eta,
                "iterations": settings.iterations, "read_inputs": settings.read_inputs,
                "staleness": settings.staleness,
                "inputs": {n: pack_array(a) for n, a in inputs.items()},
                "target": pack_array(target)}

    def close(self) -> None:
        self.stream.close()

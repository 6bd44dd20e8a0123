"""The per-layer audit of a run (issue 26, docs/depth.md): does every layer learn?

At the start of a run and after every epoch, one fixed probe batch of training data is
relaxed on the local engine with the run's mode, eta and T (the same rules every engine
runs, bit for bit), and for every vertex with parameters the audit records

- `energy[r]`: its share of the free energy, 1/2 ||eps||^2 per sample, after round r
  (r = 0: the forward pass), and `error_norm[r]` = sqrt(2 energy[r]) (RMS of ||eps||);
- `arrived`: the first round at which its error is nonzero, i.e. its energy exceeds
  `ARRIVAL` times the largest energy of any vertex in any round of the probe; None when it
  never does: no error reached the layer, so its weights get no update;
- `cosine`: the cosine between the PC update (dtheta after T rounds) and backprop's
  descent direction -dL/dtheta on the probe batch, at the same parameters;
- `weight_change`: ||theta_now - theta_start|| / ||theta_start||, over training so far
  (theta_start: the parameters when this process started the run, the initial ones
  unless resumed).

The document goes to OUT/depth.json; `neurolocal traffic depth OUT` prints it and names
the layers whose error never arrived. One batch per epoch: cheap enough to be on by
default (`run --no-depth-audit` turns it off).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from neurolocal.graph import Graph, Params
# the arrival rule is the traffic log's reader's too (traffic depth), so it lives there
from neurolocal.traffic.depth import ARRIVAL, arrival_round  # noqa: F401

#: a layer whose weights moved less than this (relative) is reported as not moving
MOVED = 0.05
PROBE_BATCH = 128


def probe_indices(size: int, batch: int) -> np.ndarray:
    """Evenly spaced training samples: every class of a label-sorted file (mnist) is in."""
    batch = min(batch, size)
    return np.unique(np.linspace(0, size - 1, batch).round().astype(np.int64))


def _flat(tensors: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([np.ravel(tensors[k]) for k in sorted(tensors)]) if tensors \
        else np.zeros(0)


def _cosine(a: np.ndarray, b: np.ndarray) -> float | None:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0 or not (math.isfinite(na) and math.isfinite(nb)):
        return None
    return float(np.dot(a, b) / (na * nb))


def probe(graph: Graph, params: Params, inputs: dict, target: np.ndarray, *, mode: str,
          eta: float, iterations: int) -> dict[str, dict[str, Any]]:
    """Per vertex with parameters: energy and error norm per round, arrival round, cosine."""
    from neurolocal.backprop import backprop
    from neurolocal.engines.local import LocalEngine

    own = {v: {k: np.array(a, copy=True) for k, a in p.items()} for v, p in params.items()}
    # fixed mode: the event schedule, the same numbers round by round as jacobi, bit for
    # bit (docs/rounds.md), at about one message per path length instead of T per edge
    engine = LocalEngine(graph, own, mode=mode,
                         schedule="event" if mode == "fixed" else "jacobi")
    layers = [n for n in graph.order if own.get(n)]
    energy: dict[str, list[float]] = {n: [] for n in layers}

    def on_round(_t):
        for n in layers:
            energy[n].append(engine.rules[n].energy())

    try:
        relaxation = engine.relax(inputs, target, eta=eta, iterations=iterations,
                                  on_round=on_round)
    finally:
        engine.close()
    gradients = backprop(graph, own, inputs, target).params
    largest = max((e for n in layers for e in energy[n] if math.isfinite(e)), default=0.0)
    out = {}
    for n in layers:
        arrived = arrival_round(energy[n], largest)
        pc = _flat(relaxation.dtheta.get(n, {}))
        bp = -_flat(gradients.get(n, {}))
        out[n] = {"energy": energy[n], "error_norm": [math.sqrt(2 * max(e, 0.0))
                                                      for e in energy[n]],
                  "arrived": arrived, "cosine": _cosine(pc, bp)}
    return out


def weight_change(start: Params, now: Params) -> dict[str, float | None]:
    out = {}
    for n, p in start.items():
        if not p:
            continue
        a, b = _flat(p), _flat(now.get(n, {}))
        scale = float(np.linalg.norm(a))
        out[n] = float(np.linalg.norm(b - a) / scale) if scale > 0 and b.size == a.size else None
    return out


class DepthAudit:
    """Collects the audit of one algorithm's run, epoch by epoch."""

    def __init__(self, graph: Graph, algorithm: str, params: Params, inputs: dict,
                 target: np.ndarray, *, mode: str, eta: float, iterations: int):
        self.graph, self.algorithm = graph, algorithm
        self.inputs, self.target = inputs, target
        self.mode, self.eta, self.iterations = mode, eta, iterations
        self.start = {v: {k: np.array(a, copy=True) for k, a in p.items()}
                      for v, p in params.items()}
        self.epochs: list[dict] = []
        self.record(params, epoch=None)

    def record(self, params: Params, epoch: int | None) -> None:
        entry: dict[str, Any] = {"epoch": epoch, "weight_change": weight_change(self.start, params)}
        if self.algorithm == "pc":
            entry["layers"] = probe(self.graph, params, self.inputs, self.target,
                                    mode=self.mode, eta=self.eta, iterations=self.iterations)
        self.epochs.append(entry)

    def document(self) -> dict:
        layers = [n for n in self.graph.order if self.start.get(n)]
        last = self.epochs[-1]
        silent = [n for n in layers if "layers" in last and last["layers"][n]["arrived"] is None]
        still = [n for n in layers if (last["weight_change"].get(n) or 0.0) < MOVED] \
            if last["epoch"] is not None else []
        return {"algorithm": self.algorithm, "mode": self.mode, "eta": self.eta,
                "iterations": self.iterations, "arrival_threshold": ARRIVAL,
                "moved_threshold": MOVED, "layers": layers, "silent": silent,
                "not_moving": still, "epochs": self.epochs}


def audit_for_run(graph: Graph, algorithm: str, params: Params, data, settings,
                  iterations: int) -> DepthAudit:
    """A `DepthAudit` on the run's probe batch (`probe_indices` of the training data)."""
    idx = probe_indices(data.train_size, min(PROBE_BATCH, settings.batch_size))
    inputs = {k: np.asarray(v[idx]) for k, v in data.train_inputs.items()}
    target = np.asarray(data.train_target[idx])
    return DepthAudit(graph, algorithm, params, inputs, target, mode=settings.mode,
                      eta=settings.eta, iterations=iterations)

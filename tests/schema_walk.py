"""Topologies that hold every field of the loss, training and asynchrony schemas, built
from the schemas themselves (issue 28), so a field added to a schema is mutated by the
hostile harness without anyone listing it here.

`every_field_topologies()` gives (name, document) pairs; `schema_fields()` the field
names the harness must reach (the test fails naming any it did not)."""

from __future__ import annotations

import inspect
from typing import Any

from neurolocal.asynchrony.config import EDGE_KEYS, KEYS, PAUSE_KEYS, VERTEX_KEYS
from neurolocal.ops.losses import LOSSES
from neurolocal.paper import QUIRKS
from neurolocal.optimizers import SGD, Adam
from neurolocal.training.settings import TRAINING_KEYS

#: a legal value for each training key (the harness then breaks it every way it knows)
TRAINING_VALUES: dict[str, Any] = {
    "data": "digits", "epochs": 1, "batch_size": 8, "eta": 1.0, "iterations": 2,
    "mode": "fixed", "lr": 0.001, "seed": 3, "algorithm": "pc", "engine": "local",
    "paper_mode": {q: False for q in QUIRKS},
}

#: a legal value for each asynchrony key of the top level, an edge, a vertex, a pause
ASYNCHRONY_VALUES: dict[str, Any] = {
    "seed": 1, "delay": "constant:1", "compute": "constant:1", "drop": 0.01,
    "retransmit": True, "timeout": 2, "reorder": False, "round_ms": 1.0,
    "slow": 2, "at": 1, "for": 2, "every": 5,
}


def _optimizer(cls) -> dict:
    options = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
               if name != "self"}
    return {"name": cls.name, **options}


def _asynchrony() -> dict:
    section: dict[str, Any] = {k: ASYNCHRONY_VALUES[k] for k in KEYS
                               if k not in ("edges", "vertices")}
    section["edges"] = {"x->h": {k: ASYNCHRONY_VALUES[k] for k in EDGE_KEYS}}
    vertex = {k: ASYNCHRONY_VALUES[k] for k in VERTEX_KEYS if k != "pause"}
    vertex["pause"] = {k: ASYNCHRONY_VALUES[k] for k in PAUSE_KEYS}
    section["vertices"] = {"h": vertex}
    return section


def every_field_topologies() -> list[tuple[str, dict]]:
    """One small graph per loss x optimizer, each with every field it can hold."""
    docs = []
    for loss_name, loss in LOSSES.items():
        for optimizer in (Adam, SGD):
            units = 3
            options = {k: min(2.0, high) for k, (low, high) in loss.OPTIONS.items()}
            training = {k: TRAINING_VALUES[k] for k in TRAINING_KEYS if k != "optimizer"}
            training["optimizer"] = _optimizer(optimizer)
            training.pop("lr")                   # given inside the optimizer mapping
            docs.append((f"every-{loss_name}-{optimizer.name}", {
                "name": f"every-{loss_name}-{optimizer.name}",
                "description": "every schema field",
                "vertices": [{"name": "x", "op": "input", "shape": [4]},
                             {"name": "h", "op": "dense", "parents": ["x"], "units": 5,
                              "activation": "tanh"},
                             {"name": "y", "op": "dense", "parents": ["h"], "units": units}],
                "output": "y",
                "loss": {"type": loss_name, **options},
                "training": training,
                "asynchrony": _asynchrony(),
            }))
    return docs


def schema_fields() -> set[str]:
    """Every field name the schemas declare (loss options, training keys, optimizer
    options, asynchrony keys at every level)."""
    names = {"loss", "type", "training", "asynchrony"}
    for loss in LOSSES.values():
        names |= set(loss.OPTIONS)
    names |= set(TRAINING_KEYS) | set(QUIRKS)
    for cls in (Adam, SGD):
        names |= set(_optimizer(cls))
    names |= set(KEYS) | set(EDGE_KEYS) | set(VERTEX_KEYS) | set(PAUSE_KEYS)
    return names

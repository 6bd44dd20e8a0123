"""A checkpoint validated as strictly as a topology, before any of it is used.

`--resume` reads arrays an earlier run wrote, or that someone edited: each entry is
checked for its name, dtype, shape and range, and against the topology it claims
(parameter and optimizer-slot shapes). Any problem is one `DataError` naming the
checkpoint and the entry; nothing is half-restored.
"""

from __future__ import annotations

import json
import re

import numpy as np

from neurolocal.errors import DataError, NeurolocalError
from neurolocal.graph import Graph
from neurolocal.training.history import History
from neurolocal.training.settings import ALGORITHMS, MAX_EPOCHS, Settings

#: the checkpoint file format this version writes and reads (checkpoint.py)
CHECKPOINT_FORMAT = 1

SCALARS = ("format", "algorithm", "epoch", "rng", "settings", "energy_per_round", "restarts")
MAX_STEP = 1 << 62


def _fail(message: str, key: str, source: str):
    return DataError(message, source=source, field=key)


def scalar(arrays: dict, key: str, kind: str, source: str):
    """A 0-d entry of dtype kind 'i' (integer) or 'U' (text), as a Python value."""
    if key not in arrays:
        raise _fail("missing", key, source)
    a = arrays[key]
    ok = a.shape == () and (a.dtype.kind in "iu" if kind == "i" else a.dtype.kind == "U")
    if not ok:
        expected = "one whole number" if kind == "i" else "one text value"
        raise _fail(f"expected {expected}, got dtype {a.dtype} shape {list(a.shape)}", key,
                    source)
    return int(a) if kind == "i" else str(a)


def settings_of(arrays: dict, source: str) -> Settings:
    text = scalar(arrays, "settings", "U", source)
    try:
        return Settings.from_saved(json.loads(text))
    except (ValueError, RecursionError):
        raise _fail("not readable JSON", "settings", source) from None
    except NeurolocalError as exc:
        raise _fail(exc.detail, f"settings.{exc.field}" if exc.field and
                    not exc.field.startswith("settings") else exc.field or "settings",
                    source) from None


def float_vector(arrays: dict, key: str, source: str, length: int | None = None,
                 finite: bool = True) -> list[float]:
    a = arrays[key]
    if a.ndim != 1 or a.dtype.kind not in "fiu":
        raise _fail(f"expected a list of numbers, got dtype {a.dtype} shape {list(a.shape)}",
                    key, source)
    if length is not None and len(a) != length:
        raise _fail(f"has {len(a)} values, the checkpoint's epoch says {length}", key, source)
    values = a.astype(np.float64)
    if finite and not np.all(np.isfinite(values)):
        raise _fail("holds NaN or infinite values", key, source)
    if not finite and np.any(np.isnan(values)):
        raise _fail("holds NaN values", key, source)
    return [float(x) for x in values]


def check_checkpoint(arrays: dict, graph: Graph, settings: Settings, source: str) -> dict:
    """Every entry of a checkpoint checked; returns the plain values load_checkpoint needs."""
    fmt = scalar(arrays, "format", "i", source)
    if fmt != CHECKPOINT_FORMAT:
        raise DataError(f"checkpoint format {fmt}, this version reads {CHECKPOINT_FORMAT}",
                        source=source)
    algorithm = scalar(arrays, "algorithm", "U", source)
    if algorithm not in ALGORITHMS:
        raise _fail(f"expected one of {', '.join(ALGORITHMS)}, got {algorithm[:40]!r}",
                    "algorithm", source)
    named = re.search(r"checkpoint-(\w+)\.npz$", source)
    if named and named.group(1) in ALGORITHMS and named.group(1) != algorithm:
        raise _fail(f"says {algorithm!r} but the file is the {named.group(1)} checkpoint",
                    "algorithm", source)
    epoch = scalar(arrays, "epoch", "i", source)
    if not 0 <= epoch <= MAX_EPOCHS:
        raise _fail(f"expected 0..{MAX_EPOCHS}, got {epoch}", "epoch", source)
    saved = settings_of(arrays, source)
    movable = {"epochs": 0, "engine": ""}  # a resume may change these (session.resumed_settings)
    if saved != settings and (saved.as_dict() | movable) != (settings.as_dict() | movable):
        raise _fail("differ from the settings of the run being resumed", "settings", source)
    rng = arrays.get("rng")
    if rng is None or rng.dtype != np.uint64 or rng.shape != (6,) or int(rng[4]) not in (0, 1):
        raise _fail("expected the 6 words of a PCG64 generator state", "rng", source)
    history = {}
    for column in History.COLUMNS:
        key = f"history/{column}"
        if key not in arrays:
            raise _fail("missing", key, source)
        history[column] = float_vector(arrays, key, source, length=epoch)
        low, high = (0.0, 1.0) if column.endswith("accuracy") else (0.0, None)
        if any((low is not None and v < low) or (high is not None and v > high)
               for v in history[column]):
            raise _fail(f"expected values in [{low}, {high if high is not None else 'inf'}]",
                        key, source)
    energy = float_vector(arrays, "energy_per_round", source, finite=False) \
        if "energy_per_round" in arrays else []
    restarts = _restarts(arrays, source)

    expected = graph.param_shapes()
    slots = {"sgd": ("velocity",), "adam": ("m", "v")}.get(settings.optimizer, ())
    for key, a in arrays.items():
        if key in SCALARS or key.startswith("history/"):
            continue
        parts = key.split("/")
        if parts[0] == "param" and len(parts) == 3:
            vertex, name = parts[1:]
        elif parts[0] == "optimizer" and parts[1:] == ["step"]:
            if a.shape != () or a.dtype.kind not in "iu" or not 0 <= int(a) <= MAX_STEP:
                raise _fail(f"expected one whole number >= 0, got dtype {a.dtype} shape "
                            f"{list(a.shape)}", key, source)
            continue
        elif parts[0] == "optimizer" and len(parts) == 4 and parts[1] in slots:
            vertex, name = parts[2:]
        else:
            raise _fail(f"not an entry of a {settings.optimizer} checkpoint", key[:80], source)
        if vertex not in expected or name not in expected[vertex]:
            raise DataError(f"parameter {vertex}.{name} is not in topology '{graph.name}'",
                            source=source, field=key)
        if a.shape != tuple(expected[vertex][name]):
            raise DataError(f"parameter {vertex}.{name} has shape {list(a.shape)}, topology "
                            f"'{graph.name}' needs {list(expected[vertex][name])}",
                            source=source, field=key)
        if a.dtype.kind not in "fiu":
            raise _fail(f"expected numbers, got dtype {a.dtype}", key, source)
        if not np.all(np.isfinite(a)):
            raise _fail("holds NaN or infinite values", key, source)
        if parts[0] == "optimizer" and parts[1] == "v" and np.any(a < 0):
            raise _fail("Adam's second moment must be >= 0", key, source)
    if any(k.startswith("optimizer/") for k in arrays) and "optimizer/step" not in arrays:
        raise _fail("missing", "optimizer/step", source)
    per_slot = {slot: {k.split("/", 2)[2] for k in arrays if k.startswith(f"optimizer/{slot}/")}
                for slot in slots}
    if len({frozenset(v) for v in per_slot.values()}) > 1:
        union = set().union(*per_slot.values())
        slot, missing = next((s, union - v) for s, v in per_slot.items() if union - v)
        raise _fail(f"{settings.optimizer} state is partial: no {slot} for "
                    f"{sorted(missing)[0]}", "optimizer", source)
    return {"algorithm": algorithm, "epoch": epoch, "history": history, "energy": energy,
            "restarts": restarts}


def _restarts(arrays: dict, source: str) -> list:
    if "restarts" not in arrays:
        return []
    text = scalar(arrays, "restarts", "U", source)
    try:
        restarts = json.loads(text)
    except (ValueError, RecursionError):
        raise _fail("unreadable restart records", "restarts", source) from None
    if not isinstance(restarts, list) or not all(isinstance(r, dict) for r in restarts):
        raise _fail("expected a list of restart records", "restarts", source)
    return restarts

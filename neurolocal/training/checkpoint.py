"""Checkpoints: a run's whole state as plain arrays in one `.npz`, written atomically after
every epoch; resuming from one reproduces the uninterrupted run bitwise (no pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from neurolocal.errors import DataError
from neurolocal.files import atomic_path
from neurolocal.graph import Graph, Params
from neurolocal.training.history import History, Run
from neurolocal.training.metrics import _json_default
from neurolocal.optimizers import make_optimizer
from neurolocal.training.settings import Settings
from neurolocal.training.checkpoint_check import CHECKPOINT_FORMAT, check_checkpoint, settings_of



def checkpoint_path(out_dir: Path, algorithm: str) -> Path:
    return Path(out_dir) / f"checkpoint-{algorithm}.npz"


def _rng_to_array(rng: np.random.Generator) -> np.ndarray:
    state = rng.bit_generator.state
    if state["bit_generator"] != "PCG64":
        raise ValueError("only PCG64 generators are checkpointed")
    words = []
    for big in (state["state"]["state"], state["state"]["inc"]):
        words += [big >> 64, big & ((1 << 64) - 1)]
    words += [state["has_uint32"], state["uinteger"]]
    return np.array(words, dtype=np.uint64)


def _rng_from_array(words: np.ndarray) -> np.random.Generator:
    w = [int(x) for x in words]
    bit_generator = np.random.PCG64()
    bit_generator.state = {"bit_generator": "PCG64",
                           "state": {"state": (w[0] << 64) | w[1], "inc": (w[2] << 64) | w[3]},
                           "has_uint32": w[4], "uinteger": w[5]}
    return np.random.Generator(bit_generator)


def save_checkpoint(path: Path, run: Run, settings: Settings) -> None:
    """Everything needed to continue, as plain arrays; written to a temporary file in the
    same directory, fsynced, then renamed over the old one (a crash leaves the old one)."""
    arrays: dict[str, np.ndarray] = {
        "format": np.array(CHECKPOINT_FORMAT, dtype=np.int64),
        "algorithm": np.array(run.algorithm),
        "epoch": np.array(run.history.epochs_done, dtype=np.int64),
        "rng": _rng_to_array(run.rng),
        "settings": np.array(json.dumps(settings.as_dict(), sort_keys=True)),
        "energy_per_round": np.array(run.history.energy_per_round, dtype=np.float64),
        "restarts": np.array(json.dumps(run.restarts, default=_json_default)),
    }
    for column in History.COLUMNS:
        arrays[f"history/{column}"] = np.array(getattr(run.history, column), dtype=np.float64)
    for vertex, per_param in run.params.items():
        for name, a in per_param.items():
            arrays[f"param/{vertex}/{name}"] = a
    for key, a in run.optimizer.state_arrays().items():
        arrays[f"optimizer/{key}"] = a
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, durable=True) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def read_checkpoint_settings(path: Path) -> Settings:
    return settings_of(_read_arrays(path), str(path))


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The checkpoint's arrays, each member checked before it is read (no pickle, no
    zip bomb, a regular file within the budget's data_bytes)."""
    from neurolocal.limits import default_budget
    from neurolocal.training.npz import read_npz

    if not Path(path).is_file():
        raise DataError("no checkpoint here", source=str(path))
    return read_npz(path, default_budget().data_bytes, DataError, "checkpoint")


def load_checkpoint(path: Path, graph: Graph, settings: Settings) -> Run:
    """A run restored from `path`, every entry checked first (`checkpoint_check`): types,
    shapes and ranges, and the parameters against the topology's shapes."""
    source = str(path)
    arrays = _read_arrays(path)
    checked = check_checkpoint(arrays, graph, settings, source)
    params: Params = {}
    for key, a in arrays.items():
        if key.startswith("param/"):
            _, vertex, name = key.split("/", 2)
            params.setdefault(vertex, {})[name] = np.array(a, dtype=np.float64)
    expected = graph.param_shapes()
    missing = [f"{v}.{p}" for v, ps in expected.items() for p in ps
               if p not in params.get(v, {})]
    if missing:
        raise DataError(f"checkpoint lacks parameter(s) {', '.join(missing)} of topology "
                        f"'{graph.name}'", source=source)
    optimizer = make_optimizer(settings.optimizer, settings.lr, **settings.optimizer_options)
    try:
        optimizer.load_state_arrays({k[len("optimizer/"):]: a for k, a in arrays.items()
                                     if k.startswith("optimizer/")}, params)
    except DataError as exc:
        raise exc.located(source=source) from None
    history = History()
    for column, values in checked["history"].items():
        setattr(history, column, values)
    history.energy_per_round = checked["energy"]
    try:
        rng = _rng_from_array(arrays["rng"])
    except (ValueError, IndexError, TypeError, OverflowError):
        raise DataError("checkpoint has a damaged generator state", source=source) from None
    return Run(checked["algorithm"], params, optimizer, rng, history, checked["restarts"])

"""Checkpoints: a run's whole state as plain arrays in one `.npz`, written atomically after
every epoch; resuming from one reproduces the uninterrupted run bitwise (no pickle)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from neurolocal.errors import DataError
from neurolocal.graph import Graph, Params
from neurolocal.training.history import History, Run
from neurolocal.training.metrics import _json_default
from neurolocal.training.optimizers import make_optimizer
from neurolocal.training.settings import Settings

CHECKPOINT_FORMAT = 1


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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_checkpoint_settings(path: Path) -> Settings:
    with _open_checkpoint(path) as archive:
        try:
            return Settings.from_dict(json.loads(str(archive["settings"])))
        except (KeyError, TypeError, ValueError):
            raise DataError("checkpoint has no readable settings", source=str(path)) from None


def _open_checkpoint(path: Path):
    if not Path(path).is_file():
        raise DataError("no checkpoint here", source=str(path))
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"not a readable checkpoint ({type(exc).__name__})",
                        source=str(path)) from None


def load_checkpoint(path: Path, graph: Graph, settings: Settings) -> Run:
    """A run restored from `path`, its parameters checked against the topology's shapes."""
    source = str(path)
    try:
        with _open_checkpoint(path) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"damaged checkpoint ({type(exc).__name__})", source=source) from None
    for key in ("format", "algorithm", "epoch", "rng"):
        if key not in arrays:
            raise DataError(f"checkpoint lacks '{key}'", source=source)
    if int(arrays["format"]) != CHECKPOINT_FORMAT:
        raise DataError(f"checkpoint format {int(arrays['format'])}, this version reads "
                        f"{CHECKPOINT_FORMAT}", source=source)
    algorithm = str(arrays["algorithm"])
    expected = graph.param_shapes()
    params: Params = {}
    for key, a in arrays.items():
        if key.startswith("param/"):
            _, vertex, name = key.split("/", 2)
            if vertex not in expected or name not in expected[vertex]:
                raise DataError(f"parameter {vertex}.{name} is not in topology "
                                f"'{graph.name}'", source=source)
            if a.shape != tuple(expected[vertex][name]):
                raise DataError(f"parameter {vertex}.{name} has shape {list(a.shape)}, topology "
                                f"'{graph.name}' needs {list(expected[vertex][name])}",
                                source=source)
            params.setdefault(vertex, {})[name] = np.array(a, dtype=np.float64)
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
    epoch = int(arrays["epoch"])
    for column in History.COLUMNS:
        values = arrays.get(f"history/{column}")
        if values is None or len(values) != epoch:
            raise DataError(f"checkpoint history '{column}' does not cover {epoch} epochs",
                            source=source)
        setattr(history, column, [float(x) for x in values])
    history.energy_per_round = [float(x) for x in arrays.get("energy_per_round", [])]
    try:
        rng = _rng_from_array(arrays["rng"])
    except (ValueError, IndexError, TypeError, OverflowError):
        raise DataError("checkpoint has a damaged generator state", source=source) from None
    try:
        restarts = json.loads(str(arrays.get("restarts", "[]")))
    except ValueError:
        raise DataError("checkpoint has unreadable restart records", source=source) from None
    if not isinstance(restarts, list):
        raise DataError("checkpoint's restart records are not a list", source=source)
    return Run(algorithm, params, optimizer, rng, history, restarts)

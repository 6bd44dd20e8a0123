"""Training: epochs of shuffled minibatches, predictive coding or backprop, an optimizer.

Engine interface (what the trainer asks of an engine, so a Ray engine can slot in):

    engine.relax(inputs, target, eta=..., iterations=...) -> Relaxation
        .dtheta  Hebbian updates (= -dL/dtheta at the fixed point); the trainer
                 hands `-dtheta` to the optimizer (see neurolocal/optim.py)
        .loss, .prediction, .energy (free energy after each round)
    engine.load_params(params)   optional: engines that keep their own copy of the
                 parameters (actors) receive the updated ones after every optimizer
                 step. The local engine shares the arrays by reference and has none.

`make_engine` is where `settings.engine` becomes an engine. `--algorithm bp` uses
`neurolocal.backprop.backprop` on the same parameters, batches and optimizer.

Determinism: one `np.random.Generator(PCG64(seed))` per algorithm draws every
epoch's permutation. A checkpoint (written atomically after every epoch) holds the
parameters, the optimizer state, the epoch, the generator's state and the history
so far, all as plain arrays; resuming from it reproduces the uninterrupted run bitwise.

Actor faults: the driver holds the parameters and the optimizer state, and the Ray
engine sends every shard its parameters with each batch, so an actor that dies
mid-batch is restarted and the batch replayed from the last committed state (the
parameters at the start of that batch; the epoch checkpoint is its durable copy):
the run ends bit for bit as an uninterrupted one. Each restart the engine reports
(`Relaxation.extras["restarts"]`) is kept in `Run.restarts`, the checkpoint and
metrics.json; an actor that cannot come back raises `EngineError` and the last
epoch checkpoint stays for `--resume`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from neurolocal.data import GraphData
from neurolocal.engines.base import check_relaxation_settings
from neurolocal.errors import ConfigError, DataError
from neurolocal.graph import Graph, Params
from neurolocal.optim import OPTIMIZERS, Optimizer, make_optimizer, negated
from neurolocal.tied import broadcast_tied_params

ALGORITHMS = ("pc", "bp")
MODES = ("fixed", "strict")
EVAL_BATCH = 1024
CHECKPOINT_FORMAT = 1


# --- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    algorithms: tuple[str, ...] = ("pc",)
    engine: str = "local"
    data: Any = "digits"
    epochs: int = 10
    batch_size: int = 32
    eta: float = 1.0
    iterations: int | None = None          # None: the graph's depth
    mode: str = "fixed"
    optimizer: str = "adam"
    lr: float | None = None                # None: the optimizer's default
    optimizer_options: dict = field(default_factory=dict)
    seed: int = 0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["algorithms"] = list(self.algorithms)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Settings":
        d = dict(d)
        d["algorithms"] = tuple(d["algorithms"])
        return cls(**d)


#: the product: vertices as actors on an embedded local Ray (`--engine local` is the fast path)
DEFAULT_ENGINE = "ray"

TRAINING_KEYS = ("data", "epochs", "batch_size", "eta", "iterations", "mode", "optimizer", "lr",
                 "seed", "algorithm", "engine", "paper_mode")
#: read by the topology loader (neurolocal.paper), not a trainer setting
TOPOLOGY_ONLY_KEYS = ("paper_mode",)


def resolve_settings(training: dict, overrides: dict, graph: Graph) -> Settings:
    """Built-in defaults < the topology's `training:` section < command-line flags
    (`overrides`, None meaning "not given"). Every value is checked here, up front."""
    unknown = sorted(set(training) - set(TRAINING_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} (known: {', '.join(TRAINING_KEYS)})",
                          field="training")
    merged = {k: v for k, v in training.items() if k not in TOPOLOGY_ONLY_KEYS}
    optimizer = merged.pop("optimizer", "adam")
    options: dict = {}
    if isinstance(optimizer, dict):
        options = dict(optimizer)
        optimizer = options.pop("name", "adam")
        if "lr" in options and "lr" not in merged:
            merged["lr"] = options.pop("lr")
        options.pop("lr", None)
    for key, value in overrides.items():
        if value is not None:
            merged[key] = value
    if overrides.get("optimizer") is not None and overrides["optimizer"] != optimizer:
        optimizer, options = overrides["optimizer"], {}   # other optimizer: its own defaults
        if overrides.get("lr") is None:
            merged.pop("lr", None)
    merged.pop("optimizer", None)

    algorithm = merged.pop("algorithm", "pc")
    algorithms = {"pc": ("pc",), "bp": ("bp",), "both": ("pc", "bp")}.get(algorithm)
    if algorithms is None:
        raise ConfigError(f"expected pc, bp or both, got {algorithm!r}", field="algorithm")
    settings = Settings(
        algorithms=algorithms,
        engine=merged.get("engine", DEFAULT_ENGINE),
        data=merged.get("data", "digits"),
        epochs=_whole(merged.get("epochs", 10), "epochs", minimum=1),
        batch_size=_whole(merged.get("batch_size", 32), "batch_size", minimum=1),
        eta=_number(merged.get("eta", 1.0), "eta"),
        iterations=(None if merged.get("iterations") is None
                    else _whole(merged["iterations"], "iterations", minimum=1)),
        mode=merged.get("mode", "fixed"),
        optimizer=optimizer,
        lr=None if merged.get("lr") is None else _number(merged["lr"], "lr"),
        optimizer_options=options,
        seed=_whole(merged.get("seed", 0), "seed", minimum=0),
    )
    if settings.mode not in MODES:
        raise ConfigError(f"expected fixed or strict, got {settings.mode!r}", field="mode")
    if not isinstance(settings.optimizer, str) or settings.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {settings.optimizer!r} "
                          f"(known: {', '.join(OPTIMIZERS)})", field="optimizer")
    check_relaxation_settings(settings.eta, iterations_for(settings, graph), settings.mode)
    make_optimizer(settings.optimizer, settings.lr, **settings.optimizer_options)  # checks options
    return settings


def _whole(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"expected a whole number >= {minimum}, got {value!r}", field=name)
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise ConfigError(f"expected a positive number, got {value!r}", field=name)
    return float(value)


def iterations_for(settings: Settings, graph: Graph) -> int:
    return graph.depth if settings.iterations is None else settings.iterations


# --- engines -----------------------------------------------------------------------------------


#: engine flags that change where and how vertices run, not what they compute
ENGINE_OPTION_DEFAULTS = {"schedule": "auto", "traffic_log": None, "address": "local",
                          "vertices_per_actor": 1, "staleness": 0, "placement": "spread",
                          "timeout": None, "max_restarts": 3, "fault": None}


def make_engine(settings: Settings, graph: Graph, params: Params, engine_options=None):
    """The engine of `settings.engine`, with the run's engine flags (see ENGINE_OPTION_DEFAULTS)."""
    from types import SimpleNamespace

    from neurolocal.engines import open_engine

    options = {**ENGINE_OPTION_DEFAULTS, **(engine_options or {})}
    namespace = SimpleNamespace(engine=settings.engine, mode=settings.mode, **options)
    return open_engine(namespace, graph, params, log_settings={
        "eta": settings.eta, "iterations": iterations_for(settings, graph), "read_inputs": False})


# --- evaluation --------------------------------------------------------------------------------


def predict(graph: Graph, params: Params, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The forward pass alone (the output vertex's prediction)."""
    values = dict(inputs)
    for n in graph.order:
        if not graph.is_input(n):
            spec = graph.vertices[n]
            values[n], _ = spec.op.forward(params.get(n, {}), [values[p] for p in spec.parents])
    return values[graph.output]


def correct_count(prediction: np.ndarray, target: np.ndarray) -> float:
    """Arg-max hits; the target may be labels (N,) or one-hot / per-step (N, ..., C).
    A per-step output counts the fraction of its steps it got right."""
    guess = prediction.reshape(len(prediction), -1, prediction.shape[-1]).argmax(-1)
    truth = target.reshape(-1, 1) if target.ndim == 1 else \
        target.reshape(len(target), -1, target.shape[-1]).argmax(-1)
    return float(np.sum(np.mean(guess == truth, axis=1)))


def evaluate(graph: Graph, params: Params, inputs: dict, target: np.ndarray) -> tuple[float, float]:
    """(mean loss, accuracy) over a whole split, in batches."""
    total, hits, n = 0.0, 0, len(target)
    for start in range(0, n, EVAL_BATCH):
        part = slice(start, min(n, start + EVAL_BATCH))
        x = {k: v[part] for k, v in inputs.items()}
        y = graph.loss.prepare_target(target[part], graph.shapes[graph.output])
        prediction = predict(graph, params, x)
        total += graph.loss.value(prediction, y) * len(y)
        hits += correct_count(prediction, target[part])
    return total / n, hits / n


# --- one training run --------------------------------------------------------------------------


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


def new_run(algorithm: str, graph: Graph, settings: Settings) -> Run:
    params = graph.init_params(settings.seed)
    optimizer = make_optimizer(settings.optimizer, settings.lr, **settings.optimizer_options)
    rng = np.random.Generator(np.random.PCG64(settings.seed))
    return Run(algorithm, params, optimizer, rng, History())


ProgressFactory = Callable[..., Any]


def serial_blas():
    """One BLAS thread while training: minibatch matrices are small (32 x 128), and on a
    shared 2-core machine OpenBLAS's threads only contend (measured 4-6x slower epochs)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:                        # scikit-learn brings it; without it, no limit
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def train(run: Run, graph: Graph, data: GraphData, settings: Settings, *,
          checkpoint: Path | None = None, progress: ProgressFactory | None = None,
          log: Callable[[str], None] | None = None,
          on_epoch: Callable[[Run], None] | None = None, engine_options: dict | None = None,
          updates_per_batch: int = 1) -> Run:
    """Train `run` up to `settings.epochs`, checkpointing after every epoch; `on_epoch`
    is called after each epoch's checkpoint (the CLI rewrites metrics.json there).

    `updates_per_batch` = 2 reproduces the paper's CNN code, which applies each
    batch's update twice (`neurolocal.paper`); tied parameters are re-broadcast from
    their owners after every step."""
    engine = None
    try:
        with serial_blas():
            if run.algorithm == "pc":
                engine = make_engine(settings, graph, run.params, engine_options)
            return _train(run, graph, data, settings, checkpoint, progress, log, on_epoch,
                          engine, updates_per_batch)
    finally:
        if engine is not None:
            engine.close()


def _train(run, graph, data, settings, checkpoint, progress, log, on_epoch, engine,
           updates_per_batch) -> Run:
    iterations = iterations_for(settings, graph)
    n = data.train_size
    batches = math.ceil(n / settings.batch_size)
    for epoch in range(run.history.epochs_done, settings.epochs):
        started = time.perf_counter()
        order = run.rng.permutation(n)
        bar = progress(total=batches, desc=f"{run.algorithm} epoch {epoch + 1}/{settings.epochs}") \
            if progress else None
        losses, hits, energy_sum = [], 0, None
        for b in range(batches):
            idx = order[b * settings.batch_size:(b + 1) * settings.batch_size]
            inputs = {k: v[idx] for k, v in data.train_inputs.items()}
            target = data.train_target[idx]
            if engine is not None:
                relaxation = engine.relax(inputs, target, eta=settings.eta, iterations=iterations)
                for r in relaxation.extras.get("restarts", []):
                    run.restarts.append({**r, "epoch": epoch + 1, "batch_in_epoch": b + 1})
                    if log is not None and r.get("cause") == "node_lost":
                        log(f"{r['actor']} ({', '.join(r['vertices'])}) was lost with node "
                            f"{r['node']} in epoch {epoch + 1}, batch {b + 1}; Ray re-created "
                            f"it on {r['now_on']} and the batch was replayed "
                            f"({r['seconds']:.1f} s lost)")
                    elif log is not None:
                        log(f"{r['actor']} ({', '.join(r['vertices'])}) died in epoch "
                            f"{epoch + 1}, batch {b + 1}; Ray restarted it and the batch was "
                            f"replayed ({r['seconds']:.1f} s lost)")
                gradient = negated(relaxation.dtheta)
                loss, prediction = relaxation.loss, relaxation.prediction
                energy = np.asarray(relaxation.energy, dtype=np.float64)
                energy_sum = energy if energy_sum is None else energy_sum + energy
            else:
                from neurolocal.backprop import backprop

                grads = backprop(graph, run.params, inputs, target)
                gradient, loss, prediction = grads.params, grads.loss, grads.prediction
            for _ in range(updates_per_batch):
                run.optimizer.step(run.params, gradient)
            broadcast_tied_params(graph.tied, run.params)
            if engine is not None and hasattr(engine, "load_params"):
                engine.load_params(run.params)
            if not math.isfinite(loss):
                raise ConfigError(f"training diverged: loss {loss} in epoch {epoch + 1}, batch "
                                  f"{b + 1} (try a smaller lr or eta)", field=run.algorithm)
            losses.append(loss)
            hits += correct_count(prediction, target)
            if bar is not None:
                postfix = {"loss": f"{loss:.4f}"}
                if engine is not None:
                    postfix["energy"] = f"{relaxation.energy[-1]:.4g}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
        if bar is not None:
            bar.close()
        sizes = [min(settings.batch_size, n - b * settings.batch_size) for b in range(batches)]
        h = run.history
        h.batch_losses.append(losses)
        h.train_loss.append(float(np.dot(losses, sizes) / n))
        h.train_accuracy.append(hits / n)
        test_loss, test_accuracy = evaluate(graph, run.params, data.test_inputs, data.test_target)
        h.test_loss.append(test_loss)
        h.test_accuracy.append(test_accuracy)
        h.seconds.append(time.perf_counter() - started)
        h.energy_per_round = [] if energy_sum is None else list(energy_sum / batches)
        if checkpoint is not None:
            save_checkpoint(checkpoint, run, settings)
        if log is not None:
            log(epoch_line(run.algorithm, h, data.kind, predicted_positions(graph)))
        if on_epoch is not None:
            on_epoch(run)
    return run


def predicted_positions(graph: Graph) -> int:
    """Predictions per sample a classifier's loss sums over ([steps, classes] -> steps)."""
    return int(np.prod(graph.shapes[graph.output][:-1], dtype=np.int64))


def epoch_line(algorithm: str, h: History, kind: str, positions: int = 1) -> str:
    i = h.epochs_done - 1
    text = (f"{algorithm} epoch {i + 1}: train loss {h.train_loss[i]:.4f}, "
            f"test loss {h.test_loss[i]:.4f}")
    if kind == "text":
        text += f", test perplexity {_perplexity(h.test_loss[i] / positions):.3f}"
    if kind != "regression":
        text += f", test accuracy {100 * h.test_accuracy[i]:.2f}%"
    text += f", {h.seconds[i]:.1f} s"
    return text


# --- checkpoints -------------------------------------------------------------------------------


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


# --- reporting ---------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    import platform

    found = {"python": platform.python_version(), "numpy": np.__version__}
    for module in ("numba", "ray"):
        try:
            found[module] = __import__(module).__version__
        except Exception:                      # not installed: say so rather than fail a run
            found[module] = None
    from neurolocal import __version__

    found["neurolocal"] = __version__
    return found


def write_json_atomic(path: Path, document: dict) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, allow_nan=False, default=_json_default)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def metrics_document(topology_name: str, topology_file: str | None, data: GraphData,
                     settings: Settings, graph: Graph, runs: dict[str, Run]) -> dict:
    doc = {
        "topology": topology_name,
        "topology_file": topology_file,
        "data": {"name": data.name, "kind": data.kind, "train_size": data.train_size,
                 "test_size": data.test_size,
                 **{k: v for k, v in data.info.items() if k != "vocabulary"}},
        "settings": {**settings.as_dict(), "iterations": iterations_for(settings, graph),
                     "depth": graph.depth},
        "versions": versions(),
        "runs": {},
    }
    for algorithm, run in runs.items():
        rows = [{k: (_finite(v) if isinstance(v, float) else v) for k, v in row.items()}
                for row in run.history.rows(data.kind, predicted_positions(graph))]
        doc["runs"][algorithm] = {
            "epochs": rows,
            "wall_seconds": float(sum(run.history.seconds)),
            "final": rows[-1] if rows else None,
            "energy_per_round": run.history.energy_per_round,
            "restarts": run.restarts,
        }
    return doc


def final_table(doc: dict) -> str:
    text = doc["data"]["kind"] == "text"
    header = ["algorithm", "epochs", "train loss", "test loss",
              "test ppl" if text else "test acc", "wall s"]
    lines = []
    for algorithm, run in doc["runs"].items():
        f = run["final"]
        if f is None:
            continue
        if text:
            last = f"{f['test_perplexity']:.3f}"
        else:
            last = "-" if f["test_accuracy"] is None else f"{100 * f['test_accuracy']:.2f}%"
        lines.append([algorithm, str(f["epoch"]), f"{f['train_loss']:.4f}",
                      f"{f['test_loss']:.4f}", last, f"{run['wall_seconds']:.1f}"])
    widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
    fmt = lambda row: "  ".join(c.rjust(w) if i else c.ljust(w)     # noqa: E731
                                for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(header)] + [fmt(r) for r in lines])


def progress_factory(quiet: bool) -> ProgressFactory | None:
    """A tqdm bar per epoch on an interactive terminal; nothing when quiet or piped."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return lambda total, desc: tqdm(total=total, desc=desc, unit="batch", leave=False,
                                    dynamic_ncols=True)

"""Training: epochs of shuffled minibatches, predictive coding or backprop, an optimizer.

Predictive coding (docs/rounds.md): the vertices own their parameters and optimizer
state. The trainer hands the engine the run's state once (`engine.restore`), then per
batch only data (`engine.train_step(inputs, target, eta=..., iterations=...)` -> `Step`:
loss, hits of the forward prediction, energy per round) and, at every epoch boundary,
gathers a consistent snapshot (`engine.snapshot()`) into `run.params` and
`run.optimizer`: what the epoch's evaluation reads and the checkpoint stores. Every
engine (local, sim, ray) gives bitwise the same run. An epoch's batches go to
`engine.train_batches` as one stream: with `EngineConfig.pipeline` K > 1 (`run --pipeline K`,
sim and local engines) K are in flight at once, draining at the epoch's end
(docs/asynchrony.md §7); on Ray they are posted ahead (`EngineConfig.post_ahead`,
docs/rounds.md §7). `--algorithm bp` uses `neurolocal.backprop.backprop`
with the trainer's own optimizer on the same parameters, batches and settings.

Determinism: one `np.random.Generator(PCG64(seed))` per algorithm draws every
epoch's permutation. A checkpoint (written atomically after every epoch) holds the
parameters, the optimizer state, the epoch, the generator's state and the history
so far, all as plain arrays; resuming from it, on any engine, reproduces the
uninterrupted run bitwise.

Actor faults: a Ray actor that dies is restarted, every vertex restored from the
engine's last snapshot and the batches since replayed (docs/rounds.md §5): the run
ends bit for bit as an uninterrupted one. Each restart the engine reports
(`Step.restarts`, typed `Restart` records) is kept in `Run.restarts`, the checkpoint
and metrics.json; an actor that cannot come back raises `EngineError` and the last
epoch checkpoint stays for `--resume`."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from neurolocal.engines.config import EngineConfig
from neurolocal.errors import TrainingDiverged
from neurolocal.graph import Graph, Params
from neurolocal.ops.losses import correct_count  # noqa: F401  (the trainer's metric)
from neurolocal.tied import broadcast_tied_params
from neurolocal.training.checkpoint import save_checkpoint
from neurolocal.training.data import GraphData
from neurolocal.training.history import History, Run, _perplexity, predicted_positions
from neurolocal.training.settings import Settings, iterations_for

EVAL_BATCH = 1024


def make_engine(settings: Settings, graph: Graph, params: Params,
                engine_config: EngineConfig | None = None):
    """The engine of `settings.engine` in `settings.mode`, placed as `engine_config` says
    (its engine and mode are the settings')."""
    from neurolocal.engines import open_engine

    config = (engine_config or EngineConfig()).with_(engine=settings.engine, mode=settings.mode)
    if config.seed is None:   # the sim engine's draws follow the run's seed
        config = config.with_(seed=settings.seed)
    return open_engine(config, graph, params, log_settings={
        "eta": settings.eta, "iterations": iterations_for(settings, graph), "read_inputs": False,
        "learning": True, "batch_size": settings.batch_size})


def placement_line(engine) -> str | None:
    """What `auto` chose and why, when a cost model chose it (docs/placement.md §5)."""
    info = getattr(engine, "partition", None) or {}
    if info.get("chosen_by") != "cost model":
        return None
    costs = info["costs"]
    others = ", ".join(f"{k}: {ms:.3g} ms" for k, ms in info["predicted_ms"].items()
                       if int(k) != info["shards"])
    return (f"placement: auto chose {info['shards']} actor(s), predicted "
            f"{info['predicted_batch_ms']:.3g} ms a batch ({others or 'no other choice'}); "
            f"measured {costs['gflops']:.3g} GFLOP/s, a Ray message {costs['message_ms']:.3g} ms "
            f"+ {costs['byte_ns']:.3g} ns a byte ({costs['hop_measured_on']})")


def predict(graph: Graph, params: Params, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The forward pass alone (the output vertex's prediction)."""
    values, _ = graph.forward(params, inputs)
    return values[graph.output]


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
          on_epoch: Callable[[Run], None] | None = None,
          engine_config: EngineConfig | None = None, updates_per_batch: int = 1) -> Run:
    """Train `run` up to `settings.epochs`, checkpointing after every epoch; `on_epoch`
    is called after each epoch's checkpoint (the CLI rewrites metrics.json there).

    `updates_per_batch` = 2 reproduces the paper's CNN code, which applies each
    batch's update twice (`neurolocal.paper`); tied parameters are re-broadcast from
    their owners after every step."""
    engine = None
    try:
        # overflow while training is reported once, as divergence, not as numpy warnings
        with serial_blas(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if run.algorithm == "pc":
                engine = make_engine(settings, graph, run.params, engine_config)
                if log is not None and placement_line(engine):
                    log(placement_line(engine))
            pipeline = engine_config.pipeline if engine_config is not None else 1
            return _train(run, graph, data, settings, checkpoint, progress, log, on_epoch,
                          engine, updates_per_batch, pipeline)
    finally:
        if engine is not None:
            engine.close()


def learning_of(settings: Settings, updates_per_batch: int = 1):
    """What every vertex needs to train its own parameters: the run's optimizer settings."""
    from neurolocal.engines.rounds import Learning

    return Learning(settings.optimizer, settings.lr,
                    tuple(sorted(settings.optimizer_options.items())), updates_per_batch)


def _train(run, graph, data, settings, checkpoint, progress, log, on_epoch, engine,
           updates_per_batch, pipeline: int = 1) -> Run:
    iterations = iterations_for(settings, graph)
    n = data.train_size
    batches = math.ceil(n / settings.batch_size)
    if engine is not None:   # the vertices own the parameters from here on (docs/rounds.md)
        engine.restore(run.params, run.optimizer.state_arrays(),
                       learning_of(settings, updates_per_batch))
    for epoch in range(run.history.epochs_done, settings.epochs):
        started = time.perf_counter()
        order = run.rng.permutation(n)
        bar = progress(total=batches, desc=f"{run.algorithm} epoch {epoch + 1}/{settings.epochs}") \
            if progress else None
        losses, hits, energy_sum = [], 0, None

        def batch_data(b, order=order):
            idx = order[b * settings.batch_size:(b + 1) * settings.batch_size]
            return {k: v[idx] for k, v in data.train_inputs.items()}, data.train_target[idx]

        # the epoch's batches go to the engine as one stream: K in flight when pipelining
        # (docs/asynchrony.md §7), posted ahead on Ray (the same numbers, docs/rounds.md §7);
        # they drain at the epoch's end, where the snapshot is taken
        steps = (engine.train_batches((batch_data(b) for b in range(batches)), eta=settings.eta,
                                      iterations=iterations, pipeline=pipeline)
                 if engine is not None else None)
        for b in range(batches):
            if engine is not None:
                step = next(steps)
                for r in step.restarts:
                    run.restarts.append({**r.as_dict(), "epoch": epoch + 1,
                                         "batch_in_epoch": b + 1})
                    if log is not None:
                        what = (f"was lost with node {r.node}; Ray re-created it on {r.now_on}"
                                if r.cause == "node_lost" else "died; Ray restarted it")
                        log(f"{r.actor} ({', '.join(r.vertices)}) {what} in epoch {epoch + 1}, "
                            f"batch {b + 1}; its vertices were restored from the last snapshot "
                            f"and {r.replayed + 1} batch(es) replayed ({r.seconds:.1f} s lost)")
                for key, value in step.report.items():   # the transport's counters
                    total = run.engine_report.get(key, 0)
                    run.engine_report[key] = (max(total, value) if key.startswith("max_")
                                              else total + value)
                loss, batch_hits = step.loss, step.hits
                energy = np.asarray(step.energy, dtype=np.float64)
                energy_sum = energy if energy_sum is None else energy_sum + energy
            else:
                from neurolocal.backprop import backprop

                inputs, target = batch_data(b)
                grads = backprop(graph, run.params, inputs, target)
                loss, batch_hits = grads.loss, correct_count(grads.prediction, target)
                for _ in range(updates_per_batch):
                    run.optimizer.step(run.params, grads.params)
                broadcast_tied_params(graph.tied, run.params)
            # non-finite numbers end the run in one line (issue 19): the loss, the energy,
            # or (backprop, whose parameters live here) an overflowed parameter
            energy_ok = engine is None or bool(np.all(np.isfinite(step.energy)))
            params_ok = engine is not None or _all_finite(run.params)
            if not math.isfinite(loss) or not energy_ok or not params_ok:
                what = f"loss {loss}" if not math.isfinite(loss) else \
                    "the energy overflowed" if not energy_ok else "parameters overflowed"
                raise TrainingDiverged(f"training diverged: {what} in epoch {epoch + 1}, batch "
                                  f"{b + 1} (try a smaller lr or eta)", field=run.algorithm)
            losses.append(loss)
            hits += batch_hits
            if bar is not None:
                postfix = {"loss": f"{loss:.4f}"}
                if engine is not None:
                    postfix["energy"] = f"{step.energy[-1]:.4g}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
        if bar is not None:
            bar.close()
        if engine is not None:   # a consistent snapshot at the epoch boundary
            params, optimizer = engine.snapshot()
            run.params = params
            run.optimizer.load_state_arrays(optimizer, params)
        sizes = [min(settings.batch_size, n - b * settings.batch_size) for b in range(batches)]
        h = run.history
        h.batch_losses.append(losses)
        h.train_loss.append(float(np.dot(losses, sizes) / n))
        h.train_accuracy.append(hits / n)
        test_loss, test_accuracy = evaluate(graph, run.params, data.test_inputs, data.test_target)
        h.test_loss.append(test_loss)
        h.test_accuracy.append(test_accuracy)
        if not (math.isfinite(h.train_loss[-1]) and math.isfinite(test_loss)
                and _all_finite(run.params)):
            raise TrainingDiverged(f"training diverged: train loss {h.train_loss[-1]}, test loss "
                              f"{test_loss} after epoch {epoch + 1} (try a smaller lr or eta)",
                              field=run.algorithm)
        h.seconds.append(time.perf_counter() - started)
        h.energy_per_round = [] if energy_sum is None else list(energy_sum / batches)
        if checkpoint is not None:
            save_checkpoint(checkpoint, run, settings)
        if log is not None:
            log(epoch_line(run.algorithm, h, data.kind, predicted_positions(graph)))
        if on_epoch is not None:
            on_epoch(run)
    return run


def _all_finite(params) -> bool:
    """Non-finite parameters end a run in one line (issue 19) instead of a loss of 1e300
    that later turns into inf in metrics.json."""
    return all(np.isfinite(a).all() for per_vertex in params.values()
               for a in per_vertex.values())


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


def progress_factory(quiet: bool) -> ProgressFactory | None:
    """A tqdm bar per epoch on an interactive terminal; nothing when quiet or piped."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return lambda total, desc: tqdm(total=total, desc=desc, unit="batch", leave=False,
                                    dynamic_ncols=True)

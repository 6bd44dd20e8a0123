"""One job of a sweep (a grid point and a seed), run in a worker process: the gradient
error of one relaxation against backprop, then training on the sim engine."""

from __future__ import annotations

import time

#: result columns of the CSV, in order (rounds_T: the T a point ran with, e.g. for
#: iterations=bound; never the name of a varied key)
RESULTS = ("test_accuracy", "test_loss", "train_loss", "grad_rel_error", "messages",
           "messages_lost", "messages_retransmitted", "sim_time", "max_feedback_age",
           "rounds_T", "wall_seconds", "max_weight_staleness")
TRAINING = ("epochs", "eta", "iterations", "mode", "lr", "batch_size", "optimizer", "data")
ENGINE = ("staleness", "pipeline", "delay", "drop", "retransmit", "reorder", "straggler",
          "schedule", "asynchrony")


#: a PC variant as (mode, schedule)
VARIANTS = {"fixed": ("fixed", "auto"), "strict": ("strict", "jacobi"), "ipc": ("strict", "ipc")}


def merged(base: dict, job_settings: dict) -> dict:
    """The sweep's fixed options overridden by the job's varied values."""
    options = {**base, **job_settings}
    variant = options.pop("variant", None)
    if variant is not None:          # one name for a mode and schedule pair
        options["mode"], options["schedule"] = VARIANTS[variant]
    if options.get("straggler") == "none":
        options["straggler"] = None
    return options


def check_point(topology, options: dict) -> None:
    """Refuse a point the engine cannot run (ConfigError), before any job starts."""
    from neurolocal.engines.rounds import check_schedule
    from neurolocal.asynchrony.options import asynchrony_from_options
    from neurolocal.training import resolve_settings

    graph = topology.graph
    settings = resolve_settings(topology.training, _overrides(options, 0, graph), graph)
    config = _config(options, settings, topology.source)
    check_schedule(config.resolved_schedule, settings.mode, config.staleness, graph)
    config.check_pipeline()
    asynchrony_from_options(config.sim, graph)


def _iterations(options: dict, graph):
    value = options.get("iterations")
    if value == "depth":
        return max(1, graph.depth)
    if value == "bound":
        depth, staleness = graph.depth, int(options.get("staleness") or 0)
        return max(1, 0 if depth == 0 else 1 + (depth - 1) * (staleness + 1))
    return value


def _overrides(options: dict, seed: int, graph) -> dict:
    overrides = {k: options.get(k) for k in TRAINING}
    overrides["iterations"] = _iterations(options, graph)
    overrides.update(engine="sim", algorithm="pc", seed=seed)
    return overrides


def _config(options: dict, settings, topology_path, stats: dict | None = None):
    """The EngineConfig of a point: the sim engine with the point's models."""
    from neurolocal.engines import EngineConfig
    from neurolocal.asynchrony.models import parse_distribution
    from neurolocal.asynchrony.options import SimOptions

    straggler = options.get("straggler")
    sim = SimOptions(topology=topology_path, asynchrony=options.get("asynchrony"),
                     delay=(parse_distribution(options["delay"], "delay")
                            if options.get("delay") is not None else None),
                     drop=options.get("drop"), retransmit=bool(options.get("retransmit")),
                     reorder=bool(options.get("reorder")),
                     straggler=(straggler,) if isinstance(straggler, str) else (),
                     stats=stats)
    return EngineConfig(engine="sim", mode=settings.mode,
                        schedule=options.get("schedule") or "auto",
                        staleness=int(options.get("staleness") or 0), sim=sim,
                        seed=settings.seed, pipeline=int(options.get("pipeline") or 1))


def run_job(topology_path: str, base: dict, point: dict, seed: int) -> dict:
    """Train one point with one seed; returns the CSV row's results."""
    import numpy as np

    from neurolocal import training
    from neurolocal.engines import open_engine
    from neurolocal.gradcheck import compare
    from neurolocal.topology import load_topology
    from neurolocal.training.data import load_for_graph

    started = time.perf_counter()
    topology = load_topology(topology_path)
    graph = topology.graph
    options = merged(base, point)
    settings = training.resolve_settings(topology.training, _overrides(options, seed, graph),
                                         graph)
    data = load_for_graph(settings.data, graph)
    stats: dict = {}
    config = _config(options, settings, topology_path, stats)
    iterations = training.iterations_for(settings, graph)
    run = training.new_run("pc", graph, settings)
    with training.serial_blas():
        # the gradient error: one relaxation on the first training batch, initial weights
        params = {v: {k: a.copy() for k, a in ps.items()} for v, ps in run.params.items()}
        part = slice(0, settings.batch_size)
        inputs = {k: v[part] for k, v in data.train_inputs.items()}
        target = data.train_target[part]
        with open_engine(config, graph, params) as engine:
            relaxation = engine.relax(inputs, target, eta=settings.eta, iterations=iterations)
        check = compare(graph, params, relaxation, inputs, target, mode=settings.mode,
                        eta=settings.eta, iterations=iterations, staleness=config.staleness)
    stats.clear()                      # the gradient check's batch is not training
    training.train(run, graph, data, settings, engine_config=config)
    h = run.history
    error = check.max_relative_error
    return {
        "test_accuracy": h.test_accuracy[-1], "test_loss": h.test_loss[-1],
        "train_loss": h.train_loss[-1],
        "grad_rel_error": float(error) if np.isfinite(error) else None,
        "messages": stats.get("messages", 0), "messages_lost": stats.get("lost", 0),
        "messages_retransmitted": stats.get("retransmitted", 0),
        "sim_time": stats.get("sim_time", 0.0), "max_feedback_age": stats.get("max_age", 0),
        "rounds_T": iterations, "wall_seconds": time.perf_counter() - started,
        "max_weight_staleness": run.engine_report.get("max_weight_staleness", 0),
    }

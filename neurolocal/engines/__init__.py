"""Engines move messages between vertex rules: in one process, or between Ray actors.

Both are transports over the one round machine (`neurolocal.engines.rounds`,
docs/rounds.md) and offer the same `Engine` calls (`neurolocal.engines.base`).
`open_engine` is the one place an `EngineConfig` becomes an engine. Every engine is a
context manager: leaving the block stops whatever it started.
"""

from __future__ import annotations

from neurolocal.engines.config import ENGINE_NAMES, SCHEDULES, EngineConfig

__all__ = ["ENGINE_NAMES", "SCHEDULES", "EngineConfig", "open_engine", "relax_once",
           "traffic_recorder"]


def traffic_recorder(config: EngineConfig, graph, *, writer: str, settings: dict):
    """A recorder for the config's traffic log directory, or None when logging is off."""
    if not config.traffic_log:
        return None
    from neurolocal.traffic.log import TrafficRecorder, new_run_id

    return TrafficRecorder(config.traffic_log, new_run_id(), writer, graph=graph.name,
                           settings={"engine": config.engine, "mode": config.mode,
                                     "schedule": config.resolved_schedule, **settings})


def open_engine(config: EngineConfig, graph, params, *, log_settings: dict | None = None):
    """The engine `config.engine` names, configured from the rest of the config."""
    schedule = config.resolved_schedule
    config.check_pipeline()
    if config.fault is not None and config.engine != "ray":
        from neurolocal.errors import ConfigError

        raise ConfigError("fault injection kills a Ray actor; it needs the ray engine",
                          field="fault")
    if config.placement_from is not None and config.engine != "ray":
        from neurolocal.errors import ConfigError

        raise ConfigError("a traffic log places the shards of Ray actors; it needs the ray "
                          "engine", field="placement_from")
    if config.engine == "local" and config.sim is not None and config.sim.requested():
        from neurolocal.errors import ConfigError

        raise ConfigError("delays, loss and stragglers are simulated: they need the sim "
                          "engine (or the ray engine, which injects them for real)", field=config.sim.requested()[0])
    if config.engine == "sim" and config.dtype != "float64":
        from neurolocal.errors import ConfigError

        raise ConfigError("the sim engine computes in float64 only; float32 runs on the "
                          "local and ray engines", field="dtype")
    if config.engine == "sim":
        recorder = traffic_recorder(config, graph, writer="sim", settings=log_settings or {})
        return open_sim_engine(config, graph, params, schedule=schedule, recorder=recorder)
    if config.engine == "local":
        from neurolocal.engines.local import LocalEngine

        recorder = traffic_recorder(config, graph, writer="local", settings=log_settings or {})
        return LocalEngine(graph, params, mode=config.mode, recorder=recorder,
                           schedule=schedule, dtype=config.dtype)
    from neurolocal.engines.ray import RayEngine
    from neurolocal.engines.ray.asynchrony import injection_from_config

    return RayEngine(graph, params, mode=config.mode, schedule=schedule,
                     address=config.address, vertices_per_actor=config.vertices_per_actor,
                     staleness=config.staleness, placement=config.placement,
                     placement_from=config.placement_from,
                     timeout=config.timeout, traffic_log=config.traffic_log,
                     traffic_settings=log_settings, max_restarts=config.max_restarts,
                     fault=config.fault, asynchrony=injection_from_config(config, graph),
                     topology=getattr(config.sim, "topology", None), dtype=config.dtype,
                     post_ahead=config.post_ahead)


def relax_once(config: EngineConfig, graph, params, inputs, target, *, eta: float,
               iterations: int, read_inputs: bool = False):
    """Relax one batch on the engine the config names; returns a `Relaxation`."""
    from neurolocal.engines.base import check_relaxation_settings

    check_relaxation_settings(eta, iterations, config.mode)
    log_settings = {"eta": eta, "iterations": iterations, "read_inputs": read_inputs,
                    "batch_size": batch_size_of(inputs)}
    with open_engine(config, graph, params, log_settings=log_settings) as engine:
        return engine.relax(inputs, target, eta=eta, iterations=iterations,
                            read_inputs=read_inputs)


def batch_size_of(inputs) -> int | None:
    """The samples in a batch of input arrays (the partition weighs bytes per batch)."""
    for value in dict(inputs).values():
        shape = getattr(value, "shape", None)
        if shape:
            return int(shape[0])
    return None


def open_sim_engine(config, graph, params, *, schedule: str, recorder=None):
    """The SimEngine an EngineConfig describes (open_engine's sim branch)."""
    from neurolocal.asynchrony.options import SimOptions, asynchrony_from_options, sim_seed
    from neurolocal.engines.sim.transport import SimEngine

    options = config.sim if config.sim is not None else SimOptions()
    spec = asynchrony_from_options(options, graph)
    engine = SimEngine(graph, params, mode=config.mode, schedule=schedule,
                       staleness=config.staleness, asynchrony=spec,
                       seed=sim_seed(spec, config.seed), recorder=recorder,
                       stats=options.stats)
    if recorder is not None:   # a replay journal next to the traffic log (replay.py)
        engine.journal = []
        engine.replay_path = recorder.path.with_suffix(".replay")
        engine.replay_topology = options.topology
    return engine

"""Engines run predictive coding on a graph: the one `Engine` (engines/engine.py) over a
transport that moves the round machine's messages — in one process (`local`), in one
process a thread per shard (`threads`), in simulated time (`sim`) or between Ray actors
(`ray`) — docs/rounds.md §6.

`open_engine` is the one place an `EngineConfig` becomes an engine: it checks the config
against the transport's capabilities (engines/capabilities.py) before anything starts.
Every engine is a context manager: leaving the block stops whatever it started.
"""

from __future__ import annotations

from neurolocal.engines.config import ENGINE_NAMES, SCHEDULES, EngineConfig
from neurolocal.engines.engine import traffic_recorder
from neurolocal.engines.rounds import check_schedule

__all__ = ["ENGINE_NAMES", "SCHEDULES", "EngineConfig", "open_engine", "relax_once",
           "traffic_recorder"]


def open_engine(config: EngineConfig, graph, params, *, log_settings: dict | None = None):
    """The `Engine` over the transport `config.engine` names. The config is checked
    against that transport's capabilities first, before anything starts or is written."""
    from neurolocal.engines.capabilities import check_capabilities

    check_capabilities(config)
    check_schedule(config.resolved_schedule, config.mode, config.staleness, graph)
    config.check_pipeline()
    if config.engine == "local":
        from neurolocal.engines.local import LocalEngine

        recorder = traffic_recorder(config, graph, writer="local", settings=log_settings)
        return LocalEngine(graph, params, recorder=recorder, config=config)
    if config.engine == "sim":
        return _open_sim(config, graph, params, log_settings)
    if config.engine == "threads":
        from neurolocal.engines.threads import ThreadsEngine

        recorder = traffic_recorder(config, graph, writer="threads", settings=log_settings)
        return ThreadsEngine(graph, params, recorder=recorder, config=config)
    from neurolocal.engines.ray import RayEngine

    return RayEngine(graph, params, config=config, traffic_settings=log_settings)


def _open_sim(config: EngineConfig, graph, params, log_settings):
    """The sim engine: its asynchrony models resolved against the graph, its seed, and a
    replay journal next to the traffic log (engines/replay.py)."""
    from neurolocal.asynchrony.options import SimOptions, asynchrony_from_options, sim_seed
    from neurolocal.engines.sim.transport import SimEngine

    options = config.sim if config.sim is not None else SimOptions()
    spec = asynchrony_from_options(options, graph)
    recorder = traffic_recorder(config, graph, writer="sim", settings=log_settings)
    engine = SimEngine(graph, params, asynchrony=spec, seed=sim_seed(spec, config.seed),
                       recorder=recorder, stats=options.stats, config=config)
    if recorder is not None:
        transport = engine.transport
        transport.journal = []
        transport.replay_path = recorder.path.with_suffix(".replay")
        transport.replay_topology = options.topology
    return engine


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


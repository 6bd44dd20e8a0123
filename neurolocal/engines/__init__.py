"""Engines move messages between vertex rules: in one process, or between Ray actors.

`open_engine` is the one place command-line options become an engine, so every
command that runs a graph (check-grad, run) accepts the same engine flags. Every
engine is a context manager: leaving the block stops whatever it started.
"""

from __future__ import annotations

ENGINE_NAMES = ("local", "ray")
SCHEDULES = ("auto", "jacobi", "event", "backward-in-time", "ipc")


def resolve_schedule(options) -> str:
    """`auto` picks the event schedule where it is exact (fixed mode, synchronous rounds):
    the same numbers as Jacobi, bit for bit, with far fewer messages; else jacobi."""
    schedule = getattr(options, "schedule", "auto") or "auto"
    if schedule != "auto":
        return schedule
    synchronous = options.engine == "local" or not getattr(options, "staleness", 0)
    return "event" if options.mode == "fixed" and synchronous else "jacobi"


def traffic_recorder(options, graph, *, writer: str, settings: dict):
    """A recorder for `--traffic-log DIR`, or None when logging is off."""
    directory = getattr(options, "traffic_log", None)
    if not directory:
        return None
    from neurolocal.traffic.log import TrafficRecorder, new_run_id

    return TrafficRecorder(directory, new_run_id(), writer, graph=graph.name,
                           settings={"engine": options.engine, "mode": options.mode,
                                     "schedule": resolve_schedule(options),
                                     **settings})


def open_engine(options, graph, params, *, log_settings: dict | None = None):
    """The engine `options.engine` names, configured from the options' engine flags."""
    from neurolocal.errors import ConfigError

    schedule = resolve_schedule(options)
    if getattr(options, "fault", None) is not None and options.engine != "ray":
        raise ConfigError("--fault kills a Ray actor; it needs --engine ray", field="fault")
    if options.engine == "local":
        from neurolocal.engines.local import LocalEngine

        recorder = traffic_recorder(options, graph, writer="local", settings=log_settings or {})
        return LocalEngine(graph, params, mode=options.mode, recorder=recorder,
                           schedule=schedule)
    if options.engine == "ray":
        from neurolocal.engines.ray import DEFAULT_MAX_RESTARTS, DEFAULT_TIMEOUT, RayEngine

        return RayEngine(graph, params, mode=options.mode, schedule=schedule,
                         address=options.address,
                         vertices_per_actor=options.vertices_per_actor,
                         staleness=options.staleness, placement=options.placement,
                         timeout=getattr(options, "timeout", None) or DEFAULT_TIMEOUT,
                         traffic_log=getattr(options, "traffic_log", None),
                         traffic_settings=log_settings,
                         max_restarts=getattr(options, "max_restarts", DEFAULT_MAX_RESTARTS),
                         fault=getattr(options, "fault", None))
    raise ConfigError(f"unknown engine {options.engine!r}", field="engine")


def relax_once(options, graph, params, inputs, target, *, eta: float, iterations: int,
               read_inputs: bool = False):
    """Relax one batch on the engine the options name; returns a `Relaxation`."""
    from neurolocal.engines.base import check_relaxation_settings

    check_relaxation_settings(eta, iterations, options.mode)
    log_settings = {"eta": eta, "iterations": iterations, "read_inputs": read_inputs}
    with open_engine(options, graph, params, log_settings=log_settings) as engine:
        return engine.relax(inputs, target, eta=eta, iterations=iterations,
                            read_inputs=read_inputs)

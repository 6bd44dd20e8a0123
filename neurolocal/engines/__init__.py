"""Engines move messages between vertex rules: in one process, or between Ray actors.

`relax_once` is the one place the CLI turns `--engine ...` options into an engine run,
so every command that runs a graph accepts the same engine flags.
"""

from __future__ import annotations

ENGINE_NAMES = ("local", "ray")


def traffic_recorder(options, graph, *, writer: str, settings: dict):
    """A recorder for `--traffic-log DIR`, or None when logging is off."""
    directory = getattr(options, "traffic_log", None)
    if not directory:
        return None
    from neurolocal.traffic.log import TrafficRecorder, new_run_id

    return TrafficRecorder(directory, new_run_id(), writer, graph=graph.name,
                           settings={"engine": options.engine, "mode": options.mode,
                                     "schedule": "jacobi", **settings})


def relax_once(options, graph, params, inputs, target, *, eta: float, iterations: int,
               read_inputs: bool = False):
    """Relax one batch on the engine the options name; returns a `Relaxation`."""
    from neurolocal.engines.base import check_relaxation_settings

    check_relaxation_settings(eta, iterations, options.mode)
    settings = {"eta": eta, "iterations": iterations, "read_inputs": read_inputs}
    if options.engine == "local":
        from neurolocal.engines.local import LocalEngine

        recorder = traffic_recorder(options, graph, writer="local", settings=settings)
        engine = LocalEngine(graph, params, mode=options.mode, recorder=recorder)
        return engine.relax(inputs, target, eta=eta, iterations=iterations,
                            read_inputs=read_inputs)
    if options.engine == "ray":
        from neurolocal.engines.ray import RayEngine

        with RayEngine(graph, params, mode=options.mode, address=options.address,
                       vertices_per_actor=options.vertices_per_actor,
                       staleness=options.staleness, placement=options.placement) as engine:
            return engine.relax(inputs, target, eta=eta, iterations=iterations,
                                read_inputs=read_inputs)
    raise ValueError(f"unknown engine {options.engine!r}")

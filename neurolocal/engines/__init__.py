"""Engines move messages between vertex rules: in one process, or between Ray actors.

`relax_once` is the one place the CLI turns `--engine ...` options into an engine run,
so every command that runs a graph accepts the same engine flags.
"""

from __future__ import annotations

ENGINE_NAMES = ("local", "ray")


def relax_once(options, graph, params, inputs, target, *, eta: float, iterations: int):
    """Relax one batch on the engine the options name; returns a `Relaxation`."""
    from neurolocal.engines.base import check_relaxation_settings

    check_relaxation_settings(eta, iterations, options.mode)
    if options.engine == "local":
        from neurolocal.engines.local import LocalEngine

        engine = LocalEngine(graph, params, mode=options.mode)
        return engine.relax(inputs, target, eta=eta, iterations=iterations)
    if options.engine == "ray":
        from neurolocal.engines.ray import RayEngine

        with RayEngine(graph, params, mode=options.mode, address=options.address,
                       vertices_per_actor=options.vertices_per_actor,
                       staleness=options.staleness, placement=options.placement) as engine:
            return engine.relax(inputs, target, eta=eta, iterations=iterations)
    raise ValueError(f"unknown engine {options.engine!r}")

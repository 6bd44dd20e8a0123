"""The Python API for notebooks: the objects the CLI uses, without the CLI.

    graph, params = neurolocal.from_torch(module, example)      # or load_topology(path).graph
    with neurolocal.open_engine(neurolocal.EngineConfig(engine="ray"), graph, params) as e:
        ...                                                      # relax, train_step, snapshot
    history = neurolocal.train(graph, "digits", {"epochs": 2}, engine=config, params=params)
    report = neurolocal.check_grad(graph, params)
    table = neurolocal.traffic.read_table("runs/x/traffic")     # Arrow

`train` drives the training loop of `neurolocal run` (neurolocal/training/loop.py) on
one engine: it opens the engine, trains, checkpoints nowhere unless asked, and stops
what it started. Every name is listed in docs/python.md.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from neurolocal.engines import EngineConfig, open_engine  # noqa: F401  (re-exported)
from neurolocal.errors import ConfigError


def _settings(settings, graph):
    from neurolocal.training.settings import Settings

    if settings is None:
        return Settings()
    if isinstance(settings, Settings):
        return settings
    if not isinstance(settings, dict):
        raise ConfigError(f"settings are a Settings or a dict, got {type(settings).__name__}")
    from neurolocal.training import resolve_settings

    return resolve_settings(dict(settings), {}, graph)   # checked as a training: section


def train(graph, data: Any = "digits", settings=None, *, engine: EngineConfig | None = None,
          params=None, algorithm: str = "pc", checkpoint: str | Path | None = None,
          log=None):
    """Train `graph` on `data` (a name, a path or a loaded GraphData) and return the
    history (`neurolocal.training.History`: per-epoch loss, accuracy, energy). `params`:
    the starting parameters (e.g. from `from_torch`), updated in place to the trained
    values; None: drawn from the settings' seed. `settings`: a Settings or a dict of
    `neurolocal run`'s training keys (epochs, batch_size, eta, iterations, optimizer,
    lr, seed, mode)."""
    from neurolocal import training
    from neurolocal.training.data import GraphData, load_for_graph

    settings = _settings(settings, graph)
    settings = replace(settings, algorithms=(algorithm,))
    engine = engine or EngineConfig()
    settings = replace(settings, engine=engine.engine, mode=engine.mode)
    data = data if isinstance(data, GraphData) else load_for_graph(data, graph)
    run = training.new_run(algorithm, graph, settings)
    if params is not None:
        run.params = {v: {k: a.copy() for k, a in ps.items()} for v, ps in params.items()}
    training.train(run, graph, data, settings, checkpoint=Path(checkpoint) if checkpoint else None,
                   log=log, engine_config=engine)
    if params is not None:
        for v, ps in run.params.items():
            for k, a in ps.items():
                params[v][k] = a
    return run.history


def check_grad(graph, params=None, inputs=None, target=None, *,
               engine: EngineConfig | None = None, eta: float = 1.0,
               iterations: int | None = None, batch_size: int = 8, seed: int = 0):
    """`neurolocal check-grad` in-process: PC's updates after one relaxation against
    backprop's gradients; returns the GradCheck (`.max_relative_error`, `.as_dict()`).
    Without inputs a synthetic batch of each input's kind is drawn from `seed`."""
    from neurolocal.engines import relax_once
    from neurolocal.gradcheck import compare, default_iterations, synthetic_batch

    engine = engine or EngineConfig()
    params = graph.init_params(seed) if params is None else params
    if inputs is None:
        inputs, target = synthetic_batch(graph, batch_size, seed)
    elif not isinstance(inputs, dict):
        inputs = {graph.inputs[0]: inputs}
    staleness = engine.staleness if engine.engine in ("ray", "sim") else 0
    iterations = default_iterations(graph, staleness) if iterations is None else iterations
    relaxation = relax_once(engine, graph, params, inputs, target, eta=eta,
                            iterations=iterations)
    return compare(graph, params, relaxation, inputs, target, mode=engine.mode, eta=eta,
                   iterations=iterations, staleness=staleness)

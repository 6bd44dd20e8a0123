"""The one `Engine`: the engine API written once, over a transport (docs/rounds.md §6).

`relax`, `train_step`, `train_batches`, `restore`, `snapshot`, `report` and `close` live
here and nowhere else. The engine takes an `EngineConfig` whole and trusts it (it was
checked when it was built); it checks the config against its transport's capabilities
once, when it opens (`engines/capabilities.py`); per call it fills in the defaults (T),
checks the relaxation settings, builds the batch's `RunSettings`, prepares the data in
the run's dtype, hands the transport a `Batch`, and assembles the shards' results into
a `Relaxation` or a `Step`. A transport (`engines/transport.py`) only moves messages.

`open_engine` (engines/__init__.py) picks the transport the config names;
`LocalEngine`, `SimEngine` and `RayEngine` are this class with that transport chosen,
taking their transport's settings as keyword arguments (the tests' and scripts' way).
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

from neurolocal.checks import number
from neurolocal.dtypes import cast_params
from neurolocal.engines.base import (
    Relaxation,
    Step,
    check_relaxation_settings,
    default_iterations,
    prepare_batch,
)
from neurolocal.engines.capabilities import check_capabilities, refusal
from neurolocal.engines.config import EngineConfig
from neurolocal.engines.rounds import (
    Learning,
    RunSettings,
    Schedule,
    check_schedule,
    merge_results,
    merge_snapshots,
    round_path,
    step_from_results,
    vertex_energy,
)
from neurolocal.engines.staleness import StalenessLedger
from neurolocal.engines.transport import Batch, Outcome, Transport
from neurolocal.errors import ConfigError
from neurolocal.graph import Graph, Params


class Engine:
    """Predictive coding on `graph` over `transport`, as `config` says. A context
    manager: leaving the block stops whatever the transport started.

    `params`: the graph's parameters (float64 ones are the caller's, by reference, where
    the vertices live in this process; float32 runs work on their own copies).
    `ledger` counts the weight staleness of every update a vertex applies while batches
    are in flight (`weight_staleness`, `staleness_histogram`)."""

    def __init__(self, config: EngineConfig, graph: Graph, params: Params,
                 transport: Transport, ledger: StalenessLedger | None = None):
        self.config = config
        self.graph = graph
        self.mode = config.mode
        self.schedule = config.resolved_schedule
        self.staleness = config.staleness
        self.dtype = config.dtype
        self.params = params
        self.transport = transport
        self.ledger = ledger if ledger is not None else StalenessLedger()
        self.learning: Learning | None = None
        self._schedules: dict[tuple, int] = {}
        self._closed = False

    @staticmethod
    def check(config: EngineConfig, graph: Graph, transport_class) -> tuple[EngineConfig, str]:
        """Before a transport starts: the config against its capabilities and the graph
        (every refusal names the engine and the parameter)."""
        check_capabilities(config, transport_class.capabilities)
        check_schedule(config.resolved_schedule, config.mode, config.staleness, graph)
        config.check_pipeline()
        return config, config.resolved_schedule

    # --- context manager -----------------------------------------------------------------

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop whatever the transport started. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self.transport.close()

    # --- one batch, nothing learns -------------------------------------------------------

    def relax(self, inputs, target, eta: float = 1.0, iterations: int | None = None,
              read_inputs: bool = False, on_round: Callable[[int], None] | None = None,
              staleness: int | None = None) -> Relaxation:
        """One batch with the engine's parameters; nothing learns: every vertex's dtheta,
        its final error, dL/dx when `read_inputs`. `on_round(t)` (engines that watch
        rounds) is called after the forward pass (t = 0) and after each round t, while
        the rules hold that round's errors. `staleness`: this call's (default: the
        config's)."""
        self._check_open()
        graph = self.graph
        staleness = self._staleness(staleness)
        iterations = default_iterations(graph, read_inputs) if iterations is None else iterations
        check_relaxation_settings(eta, iterations, self.mode)
        if on_round is not None and not self.transport.capabilities.watch_rounds:
            raise ValueError(refusal(self.config.engine, "watch_rounds"))
        inputs, target = prepare_batch(graph, inputs, target, self.dtype)
        settings = RunSettings(0, float(eta), int(iterations), staleness, bool(read_inputs),
                               self.schedule, dtype=self.dtype)
        batch = Batch(settings, inputs, target, params=self.params, on_round=on_round)
        outcome = self.transport.run(batch)
        rounds = self._rounds(settings)
        dtheta, errors, input_feedback, energy, loss, prediction, counts = merge_results(
            graph, outcome.results, rounds, settings.read_inputs)
        per_vertex = vertex_energy(graph, outcome.results)
        self._record_energy(outcome.batch, energy, per_vertex)
        extras: dict = {} if outcome.report is None else {"report": outcome.report}
        extras["path"] = round_path(outcome.results)
        if self.schedule == "backward-in-time":
            extras.update(schedule=self.schedule, rounds=rounds)
        relaxation = Relaxation(dtheta=dtheta, errors=errors, input_feedback=input_feedback,
                                energy=energy, loss=loss, prediction=prediction,
                                messages=counts["local_messages"] + counts["remote_messages"],
                                extras=extras, restarts=list(outcome.restarts),
                                vertex_energy=per_vertex)
        self.transport.completed(batch, outcome, relaxation)
        return relaxation

    # --- training: the vertices own their parameters (docs/rounds.md, plasticity) --------

    def restore(self, params: Params, optimizer: dict | None, learning: Learning) -> None:
        """Give every vertex its parameters and optimizer state (a run's start, or a
        checkpoint); the vertices then train them themselves. Float64 parameters of an
        in-process transport are worked on in place, so `params` stays current."""
        self._check_open()
        self.learning = learning
        self.params = cast_params(params, self.dtype)
        self.transport.restore_vertices(self.params, optimizer, learning)

    def train_step(self, inputs, target, eta: float = 1.0,
                   iterations: int | None = None) -> Step:
        """One batch in which every vertex applies its own update; scalars come back."""
        settings = self._training_settings(eta, iterations)
        inputs, target = prepare_batch(self.graph, inputs, target, self.dtype)
        batch = Batch(settings, inputs, target)
        return self._step(batch, self.transport.run(batch))

    def train_batches(self, batches: Iterable, eta: float = 1.0,
                      iterations: int | None = None, pipeline: int | None = None
                      ) -> Iterator[Step]:
        """Train on `batches` ((inputs, target) pairs, read lazily), yielding each batch's
        `Step` in batch order, with `pipeline` batches in flight (default: the config's;
        docs/asynchrony.md §7). 1 is `train_step` batch after batch, bit for bit (a
        transport may post batches ahead, the same numbers: docs/rounds.md §7)."""
        settings = self._training_settings(eta, iterations)
        pipeline = self._pipeline(self.config.pipeline if pipeline is None else pipeline)
        graph, dtype = self.graph, self.dtype

        def feed():
            for inputs, target in batches:
                x, y = prepare_batch(graph, inputs, target, dtype)
                yield Batch(settings, x, y)

        for batch, outcome in self.transport.run_many(feed(), pipeline):
            yield self._step(batch, outcome)

    def snapshot(self) -> tuple[Params, dict]:
        """(parameters, optimizer state) gathered from the vertices at a batch boundary, in
        the checkpoint's layout (`Optimizer.state_arrays`)."""
        self._check_open()
        params, optimizer = merge_snapshots(self.graph, self.transport.snapshot_parts())
        self.transport.keep_snapshot(params, optimizer)
        return params, optimizer

    def report(self) -> dict:
        """What this engine is: its transport, its capabilities and the transport's own
        account (actors and placement on Ray)."""
        return {"engine": self.config.engine, "mode": self.mode, "schedule": self.schedule,
                "capabilities": list(self.transport.capabilities.names()),
                **self.transport.report()}

    # --- weight staleness while pipelining (engines/staleness.py) -----------------------

    @property
    def weight_staleness(self) -> list | None:
        """(batch, vertex, staleness) of every update applied, when a list (None: only
        `staleness_histogram` counts them)."""
        return self.ledger.records

    @weight_staleness.setter
    def weight_staleness(self, value: list | None) -> None:
        self.ledger.records = value

    @property
    def staleness_histogram(self) -> dict[int, int]:
        return self.ledger.histogram

    # --- the rest, once -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed")

    def _staleness(self, staleness: int | None) -> int:
        if staleness is None:
            return self.staleness
        staleness = number("staleness", staleness, whole=True, minimum=0)
        if staleness and not self.transport.capabilities.staleness:
            raise ConfigError(refusal(self.config.engine, "staleness"), field="staleness")
        check_schedule(self.schedule, self.mode, staleness)
        return staleness

    def _pipeline(self, pipeline) -> int:
        pipeline = number("pipeline", pipeline, whole=True, minimum=1)
        if pipeline > 1 and not self.transport.capabilities.pipelining:
            raise ConfigError(refusal(self.config.engine, "pipelining"), field="pipeline")
        if pipeline > 1 and self.schedule == "ipc":
            raise ConfigError("iPC moves every weight every round, so a batch has no single "
                              "update whose staleness a pipeline could bound", field="pipeline")
        return pipeline

    def _training_settings(self, eta: float, iterations: int | None) -> RunSettings:
        """The checks every training call makes first, and its batches' settings."""
        self._check_open()
        if self.learning is None:
            raise RuntimeError("training needs restore() first (parameters and optimizer)")
        iterations = default_iterations(self.graph) if iterations is None else iterations
        check_relaxation_settings(eta, iterations, self.mode)
        return RunSettings(0, float(eta), int(iterations), self.staleness, False,
                           self.schedule, self.learning, dtype=self.dtype)

    def _rounds(self, settings: RunSettings) -> int:
        """R, the rounds a batch of these settings runs (the schedule's, never re-derived
        from what came back)."""
        key = (settings.schedule, settings.eta, settings.iterations, settings.staleness)
        if key not in self._schedules:
            self._schedules[key] = Schedule(self.graph, settings, self.mode).rounds
        return self._schedules[key]

    def _step(self, batch: Batch, outcome: Outcome) -> Step:
        step = step_from_results(self.graph, outcome.results, self._rounds(batch.settings))
        step.restarts = list(outcome.restarts)
        step.report = {} if outcome.report is None else dict(outcome.report)
        # summed over a run into metrics.json: how many batches took each path
        step.report[f"batches_{round_path(outcome.results)}_path"] = 1
        self._record_energy(outcome.batch, step.energy, step.vertex_energy)
        self.transport.completed(batch, outcome, step)
        return step

    def _record_energy(self, batch: int, energy, vertex_energy=None) -> None:
        recorder = self.transport.recorder
        if recorder is not None:
            recorder.record_energy(batch, energy, vertex_energy)
            recorder.flush()


def traffic_recorder(config: EngineConfig, graph, *, writer: str, settings: dict | None):
    """A recorder for the config's traffic log directory, or None when logging is off."""
    if not config.traffic_log:
        return None
    from neurolocal.traffic.log import TrafficRecorder, new_run_id

    return TrafficRecorder(config.traffic_log, new_run_id(), writer, graph=graph.name,
                           settings={"engine": config.engine, "mode": config.mode,
                                     "schedule": config.resolved_schedule, **(settings or {})})


def initial_params(graph: Graph, params: Params | None, seed: int, dtype: str) -> Params:
    """The parameters an engine starts with: the caller's (by reference in float64),
    else the graph's initialisation from `seed`."""
    return cast_params(params if params is not None else graph.init_params(seed), dtype)


__all__ = ["Engine", "initial_params", "traffic_recorder"]

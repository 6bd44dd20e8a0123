"""A whole `neurolocal run`: settings, data, output directory, training of each algorithm,
metrics, pictures and the closing lines. The command line (`cli.cmd_run`) and scripts
(`scripts/reproduce.py`) call `run_training` with a `RunRequest`."""

from __future__ import annotations

import contextlib
import errno
import math

import numpy as np

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from neurolocal.engines.config import EngineConfig
from neurolocal.errors import ConfigError, EngineError, param

#: training settings a run may override (None: the topology's training section decides)
OVERRIDES = ("engine", "algorithm", "epochs", "batch_size", "eta", "iterations", "mode",
             "optimizer", "lr", "seed", "data")


@dataclass(frozen=True)
class RunRequest:
    """topology: a topology file. overrides: training settings (OVERRIDES; None = not
    given). out: the output directory (default runs/<topology>-<time>). resume: a run's
    directory to continue (only epochs and engine may change). quiet: no progress bar
    or per-epoch lines. record_traffic: keep a traffic log (in engine.traffic_log, or
    OUT/traffic). engine: where the vertices run (its engine and mode are the settings').
    depth_audit: write OUT/depth.json, the per-layer audit (training/depth_audit.py)."""
    topology: str
    overrides: dict[str, Any] = field(default_factory=dict)
    out: str | None = None
    resume: str | None = None
    quiet: bool = False
    record_traffic: bool = True
    depth_audit: bool = True
    engine: EngineConfig = field(default_factory=EngineConfig)
    budget: Any = None      # neurolocal.limits.Budget; None: the default (NEUROLOCAL_BUDGET)
    params: str | None = None   # a parameter file to start from (neurolocal/params_file.py)


def run_training(request: RunRequest, say: Callable[[str], None] = print) -> Path:
    """Train as `neurolocal run` does; returns the output directory."""
    from neurolocal import training
    from neurolocal.topology import load_topology
    from neurolocal.training import plots
    from neurolocal.training.data import load_for_graph

    from neurolocal.files import directory_lock, writable_directory
    from neurolocal.limits import check_batch, default_budget

    budget = request.budget or default_budget()
    topology = load_topology(request.topology, budget)
    graph = topology.graph
    given = {k: request.overrides.get(k) for k in OVERRIDES}
    if request.resume is not None:
        out_dir = Path(request.resume)
        if request.out is not None and request.out != str(out_dir):
            raise ConfigError(f"{param('resume')} continues in its own directory; drop "
                              f"{param('out')}")
        settings = resumed_settings(out_dir, given)
    else:
        settings = training.resolve_settings(topology.training, given, graph)
        out_dir = Path(request.out) if request.out else \
            Path("runs") / f"{graph.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if any(training.checkpoint_path(out_dir, a).exists() for a in training.ALGORITHMS):
            raise ConfigError(f"already holds a run's checkpoints; continue it with "
                              f"{param('resume')} or pick another {param('out')}",
                              source=str(out_dir))
    engine = request.engine
    traffic_log = engine.traffic_log
    if request.record_traffic and traffic_log is None:
        traffic_log = str(out_dir / "traffic")
    # every output proven writable before anything is read or written (issue 19)
    writable_directory(out_dir, param("resume" if request.resume is not None else "out"))
    if request.record_traffic and traffic_log:
        writable_directory(traffic_log, param("traffic_log"))
    if engine.placement_from is not None:   # a bad log: one line before anything is written
        check_placement_log(engine.placement_from, settings.engine, graph, settings.batch_size)
    initial = None
    if request.params is not None:
        if request.resume is not None:
            raise ConfigError(f"{param('resume')} continues from its checkpoint; drop "
                              f"{param('params')}")
        from neurolocal.params_file import load_params

        initial = load_params(request.params, graph, budget)
    data = load_for_graph(settings.data, graph, budget)
    check_batch(graph, budget, min(settings.batch_size, data.train_size),
                training.iterations_for(settings, graph))
    engine = replace(engine, traffic_log=traffic_log if request.record_traffic else None,
                     engine=settings.engine, mode=settings.mode)
    engine.check_pipeline()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory: {exc.strerror}",
                          source=str(out_dir)) from None

    where = param("resume" if request.resume is not None else "out")
    with directory_lock(out_dir, where), out_of_space(out_dir):
        log = None if request.quiet else (lambda line: say(line))
        if log:
            log(f"{graph.name}: {len(graph.order)} vertices, {graph.parameter_count()} "
                f"parameters, depth {graph.depth}; data {data.name} ({data.train_size} train, "
                f"{data.test_size} test); {'+'.join(settings.algorithms)} on the "
                f"{settings.engine} engine -> {out_dir}")
        runs = {}
        audits: dict = {}

        def write_metrics(_run=None):
            doc = training.metrics_document(graph.name, topology.source, data, settings, graph,
                                            runs)
            training.write_json_atomic(out_dir / "metrics.json", doc)
            return doc

        for algorithm in settings.algorithms:
            path = training.checkpoint_path(out_dir, algorithm)
            if request.resume is not None and path.exists():
                runs[algorithm] = training.load_checkpoint(path, graph, settings)
            else:
                runs[algorithm] = training.new_run(algorithm, graph, settings)
                if initial is not None:
                    runs[algorithm].params = {v: {k: a.copy() for k, a in ps.items()}
                                              for v, ps in initial.items()}
            on_epoch = write_metrics
            if request.depth_audit and auditable(graph, settings):
                on_epoch = _audited(write_metrics, graph, algorithm, runs[algorithm], data,
                                    settings, out_dir, audits)
            try:
                training.train(runs[algorithm], graph, data, settings, checkpoint=path,
                               progress=training.progress_factory(request.quiet), log=log,
                               on_epoch=on_epoch, engine_config=engine,
                               updates_per_batch=topology.paper.updates_per_batch)
            except EngineError as exc:  # an actor that did not come back: say how to go on
                if path.exists():
                    raise EngineError(f"{exc}; the last epoch's checkpoint is kept, continue "
                                      f"with {param('resume')} {out_dir}") from None
                raise
            except KeyboardInterrupt as exc:  # a stop signal: cli.main says how to go on
                if path.exists():
                    exc.checkpoint_kept = str(out_dir)
                raise
        doc = write_metrics()
        plots.plot_curves(doc, out_dir / "curves.png")
        plots.plot_energy(doc, out_dir / "energy.png")
        say(training.final_table(doc))
        say(f"wrote {out_dir / 'metrics.json'}, curves.png, energy.png")
        if engine.traffic_log and "pc" in settings.algorithms:
            from neurolocal.traffic.commands import run_epilogue

            run_epilogue(engine.traffic_log, out_dir)  # bytes sent, and OUT/report.html
    return out_dir




@contextlib.contextmanager
def out_of_space(out_dir: Path):
    """A full disk (or quota) while the run writes is one line, the last epoch's
    checkpoint named (it is written whole or not at all, so the previous one survives)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        from neurolocal import training

        kept = [p for p in (training.checkpoint_path(out_dir, a) for a in training.ALGORITHMS)
                if p.exists()]
        hint = (f"; the last epoch's checkpoint is kept, continue with {param('resume')} "
                f"{out_dir} once there is room" if kept else "")
        raise ConfigError(f"no space left on the device{hint}", source=str(out_dir)) from None


#: the depth audit's probes step the rounds one by one (Engine.relax's on_round): past
#: this many vertex-rounds per probe it is skipped, so it never costs a run more than a
#: fraction of a batch's work (docs/depth.md §3)
MAX_AUDIT_VERTEX_ROUNDS = 50_000


def auditable(graph, settings) -> bool:
    from neurolocal import training

    return training.iterations_for(settings, graph) * len(graph.order) <= MAX_AUDIT_VERTEX_ROUNDS


def _audited(write_metrics, graph, algorithm, run, data, settings, out_dir, audits):
    """An on_epoch that also probes every layer (training/depth_audit.py) and rewrites
    OUT/depth.json, one entry per algorithm."""
    from neurolocal import training
    from neurolocal.training.depth_audit import audit_for_run

    # overflow in a probe is not reported as numpy warnings: a diverging run ends in one
    # line from the training loop, which checks the same numbers
    quiet = dict(over="ignore", invalid="ignore", divide="ignore")
    with np.errstate(**quiet):
        audit = audit_for_run(graph, algorithm, run.params, data, settings,
                              training.iterations_for(settings, graph))

    def on_epoch(run):
        with np.errstate(**quiet):
            audit.record(run.params, epoch=len(run.history.test_loss))
        audits[algorithm] = _finite_or_none(audit.document())
        training.write_json_atomic(out_dir / "depth.json", audits)
        return write_metrics(run)

    return on_epoch


def _finite_or_none(value):
    """The audit's numbers as JSON has them: a value that overflowed (a run diverging,
    which then ends in one line) is written as null, read back as "-"."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_placement_log(directory: str, engine: str, graph, batch_size: int) -> None:
    """`--placement-from` reads a traffic log of this graph, on the Ray engine
    (docs/placement.md)."""
    if engine != "ray":
        raise ConfigError("a traffic log places the shards of Ray actors; it needs the ray "
                          "engine", field="placement_from")
    from neurolocal.engines.ray.placement import weights_from_log

    weights_from_log(directory, graph, batch_size)


def resumed_settings(out_dir: Path, given: dict):
    """The checkpoint's settings; only the epochs and the engine may change (where the
    vertices run never changes the numbers)."""
    from neurolocal import training

    found = [training.checkpoint_path(out_dir, a) for a in training.ALGORITHMS]
    found = [p for p in found if p.exists()]
    if not found:
        raise ConfigError("no checkpoint-pc.npz or checkpoint-bp.npz to resume from",
                          source=str(out_dir))
    saved = training.read_checkpoint_settings(found[0])
    current = {"algorithm": {("pc",): "pc", ("bp",): "bp"}.get(saved.algorithms, "both"),
               "engine": saved.engine, "batch_size": saved.batch_size, "eta": saved.eta,
               "iterations": saved.iterations, "mode": saved.mode, "optimizer": saved.optimizer,
               "lr": saved.lr, "seed": saved.seed, "data": saved.data}
    movable = ("epochs", "engine")
    for key, value in given.items():
        if key not in movable and value is not None and value != current[key]:
            raise ConfigError(f"{param(key)} {value} differs from the resumed run's "
                              f"{current[key]}; a resumed run keeps its settings (only "
                              f"{param('epochs')} and {param('engine')} may change)")
    changes = {k: given[k] for k in movable if given.get(k) is not None}
    if changes:
        saved = training.Settings.from_saved({**saved.as_dict(), **changes})
    return saved

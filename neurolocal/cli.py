"""The `neurolocal` command line.

Every user mistake ends as one line on stderr and exit code 2; exit 1 means a
check the user asked for failed (e.g. `check-grad --max-rel-error`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Callable, Sequence

from neurolocal.errors import ConfigError, EngineError, NeurolocalError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line with exit 2 (its default too), no usage dump."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value}")
    return value


def _fault(text: str) -> tuple[int, int]:
    actor, sep, batch = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected ACTOR:BATCH, e.g. 1:5, got {text!r}")
    return _non_negative_int(actor), _non_negative_int(batch)


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


# --- commands ------------------------------------------------------------------------------


def cmd_validate(args) -> int:
    from neurolocal.topology import load_topology

    topology = load_topology(args.topology)
    print(topology.graph.summary())
    return EXIT_OK


def cmd_check_grad(args) -> int:
    from neurolocal.engines import relax_once
    from neurolocal.gradcheck import compare, data_batch, default_iterations, synthetic_batch
    from neurolocal.topology import load_topology

    graph = load_topology(args.topology).graph
    staleness = args.staleness if args.engine == "ray" else 0  # the local engine is synchronous
    iterations = (default_iterations(graph, staleness) if args.iterations is None
                  else args.iterations)
    params = graph.init_params(args.seed)
    if args.data is None:
        inputs, target = synthetic_batch(graph, args.batch_size, args.seed)
    else:
        inputs, target = data_batch(args.data, graph, args.batch_size, args.seed)
    relaxation = relax_once(args, graph, params, inputs, target, eta=args.eta,
                            iterations=iterations)
    check = compare(graph, params, relaxation, inputs, target, mode=args.mode, eta=args.eta,
                    iterations=iterations, staleness=staleness)
    failed = args.max_rel_error is not None and not check.max_relative_error <= args.max_rel_error
    if not check.converged:
        print(f"neurolocal: warning: the relaxation has not converged after {iterations} rounds "
              f"(fixed-point residual {check.residual:.2e} > {check.as_dict()['convergence_tolerance']:g}); "
              "the updates are not yet its fixed point's: raise --iterations"
              + (" (or use eta 1)" if args.eta != 1.0 and args.mode == "fixed" else ""),
              file=sys.stderr)
    if args.json:
        report = check.as_dict()
        report["engine"] = args.engine
        report.update(relaxation.extras.get("report", {}))
        print(json.dumps(report))
    else:
        _print_check(check, args)
    return EXIT_CHECK_FAILED if failed else EXIT_OK


#: parameters listed in full by check-grad's table; larger graphs get a summary
CHECK_TABLE_ROWS = 20
#: the worst rows a summary shows
CHECK_WORST_ROWS = 10


def _print_check(check, args) -> None:
    stale = f", staleness {check.staleness}" if check.staleness else ""
    print(f"{check.graph}: {args.engine} engine, {check.mode} mode, eta {check.eta}, "
          f"{check.iterations} iterations (depth {check.depth}{stale}), loss {check.loss:.6g}")
    rows = check.rows
    summarise = len(rows) > CHECK_TABLE_ROWS and not args.all
    if summarise:
        vertices = len({r.vertex for r in rows})
        values = sum(math.prod(r.shape) for r in rows)
        print(f"  {len(rows)} parameter tensors ({values} values) on {vertices} vertices; "
              f"the {CHECK_WORST_ROWS} largest relative errors (every row: --all or --json):")
        rows = sorted(rows, key=lambda r: -r.relative_error)[:CHECK_WORST_ROWS]
    width = max([len(f"{r.vertex}.{r.parameter}") for r in rows] + [9])
    print(f"  {'parameter':<{width}}  {'shape':<12} {'|grad|':>10}  {'rel. error':>10}")
    for r in rows:
        print(f"  {r.vertex + '.' + r.parameter:<{width}}  {str(list(r.shape)):<12} "
              f"{r.gradient_norm:>10.4g}  {r.relative_error:>10.3e}")
    settled = "converged" if check.converged else "NOT converged"
    print(f"max relative error {check.max_relative_error:.3e}; relaxation {settled} "
          f"(fixed-point residual {check.residual:.1e})")


def cmd_traffic(args) -> int:
    from neurolocal.traffic import read_traffic
    from neurolocal.traffic import report

    log = read_traffic(args.directory)
    if args.traffic_command == "summary":
        summary = report.summary(log)
        print(json.dumps(summary) if args.json else report.format_summary(summary))
    elif args.traffic_command == "edges":
        rows = report.edges(log)
        if args.json:
            print(json.dumps(rows))
        elif args.csv:
            print(report.format_edges_csv(rows), end="")
        else:
            print(report.format_edges_table(rows))
    elif args.traffic_command == "timeline":
        from neurolocal.traffic.timeline import chrome_trace

        _write_atomically(args.output, json.dumps(chrome_trace(log, args.max_messages)))
        print(f"wrote {args.output} ({min(len(log), args.max_messages)} messages)")
    elif args.traffic_command == "plot":
        from neurolocal.traffic.plot import plot_traffic

        plot_traffic(log, args.output, weight=args.weight)
        print(f"wrote {args.output}")
    elif args.traffic_command == "audit":
        from neurolocal.topology import load_topology
        from neurolocal.traffic.audit import audit

        result = audit(log, load_topology(args.topology).graph)
        for line in result.violations:
            print(f"violation: {line}")
        counts = "and per-edge counts " if result.counts_checked else ""
        verdict = "PASS" if result.ok else "FAIL"
        skipped = (f"; counts skip {len(result.abandoned)} abandoned (replayed) batch(es)"
                   if result.abandoned and result.counts_checked else "")
        print(f"{verdict}: {result.messages} messages, locality {counts}checked"
              + (f"; {result.note}" if result.note else "") + skipped)
        return EXIT_OK if result.ok else EXIT_CHECK_FAILED
    return EXIT_OK


def _write_atomically(path: str, text: str) -> None:
    import os
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".neurolocal-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
# --- run: train a topology (issue 6) ---------------------------------------------------------
# Kept in one block (cmd_run + add_run_parser) so merging with other commands stays easy.

RUN_FLAGS = ("engine", "algorithm", "epochs", "batch_size", "eta", "iterations", "mode",
             "optimizer", "lr", "seed", "data")


def cmd_run(args) -> int:
    import time
    from pathlib import Path

    from neurolocal import training
    from neurolocal.training import plots
    from neurolocal.training.data import load_for_graph
    from neurolocal.topology import load_topology

    topology = load_topology(args.topology)
    graph = topology.graph
    given = {k: getattr(args, k) for k in RUN_FLAGS}
    if args.resume is not None:
        out_dir = Path(args.resume)
        settings = _resumed_settings(out_dir, given, args, graph)
    else:
        settings = training.resolve_settings(topology.training, given, graph)
        out_dir = Path(args.out) if args.out else \
            Path("runs") / f"{graph.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if any(training.checkpoint_path(out_dir, a).exists() for a in training.ALGORITHMS):
            raise ConfigError("already holds a run's checkpoints; continue it with --resume "
                              "or pick another --out", source=str(out_dir))
    data = load_for_graph(settings.data, graph)
    if args.traffic_log is None and not args.no_traffic_log:
        args.traffic_log = str(out_dir / "traffic")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory: {exc.strerror}",
                          source=str(out_dir)) from None

    log = None if args.quiet else (lambda line: print(line, flush=True))
    if log:
        log(f"{graph.name}: {len(graph.order)} vertices, {graph.parameter_count()} parameters, "
            f"depth {graph.depth}; data {data.name} ({data.train_size} train, {data.test_size} "
            f"test); {'+'.join(settings.algorithms)} on the {settings.engine} engine -> {out_dir}")
    runs = {}

    def write_metrics(_run=None):
        doc = training.metrics_document(graph.name, topology.source, data, settings, graph, runs)
        training.write_json_atomic(out_dir / "metrics.json", doc)
        return doc

    for algorithm in settings.algorithms:
        path = training.checkpoint_path(out_dir, algorithm)
        if args.resume is not None and path.exists():
            runs[algorithm] = training.load_checkpoint(path, graph, settings)
        else:
            runs[algorithm] = training.new_run(algorithm, graph, settings)
        try:
            training.train(runs[algorithm], graph, data, settings, checkpoint=path,
                        progress=training.progress_factory(args.quiet), log=log,
                        on_epoch=write_metrics,
                        engine_options={k: getattr(args, k)
                                        for k in training.ENGINE_OPTION_DEFAULTS},
                        updates_per_batch=topology.paper.updates_per_batch)
        except EngineError as exc:  # an actor that did not come back: say how to go on
            if path.exists():
                raise EngineError(f"{exc}; the last epoch's checkpoint is kept, continue "
                                  f"with --resume {out_dir}") from None
            raise
    doc = write_metrics()
    plots.plot_curves(doc, out_dir / "curves.png")
    plots.plot_energy(doc, out_dir / "energy.png")
    print(training.final_table(doc))
    print(f"wrote {out_dir / 'metrics.json'}, curves.png, energy.png")
    if args.traffic_log and "pc" in settings.algorithms:
        _print_traffic_digest(args.traffic_log)
    return EXIT_OK


def _print_traffic_digest(directory: str) -> None:
    """The last lines of a run: how much the vertices said to each other."""
    import warnings
    from pathlib import Path

    from neurolocal.traffic import read_traffic, report

    if not any(Path(directory).glob("*.traffic")):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = report.summary(read_traffic(directory))
    kinds = ", ".join(f"{k} {v['messages']}" for k, v in summary["by_kind"].items())
    print(f"traffic: {summary['messages']} messages ({kinds}), {summary['bytes'] / 1e6:.1f} MB "
          f"over {summary['batches']} batches; latency p50 {summary['latency_ms']['p50']:.3f} ms,"
          f" p99 {summary['latency_ms']['p99']:.3f} ms")
    print(f"inspect it: neurolocal traffic summary {directory} (or edges, timeline, audit, plot)")


def _resumed_settings(out_dir, given: dict, args, graph):
    """The checkpoint's settings; only --epochs may change (to train further)."""
    from neurolocal import training

    if args.out is not None and args.out != str(out_dir):
        raise ConfigError("--resume continues in its own directory; drop --out")
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
    movable = ("epochs", "engine")   # where vertices run never changes the numbers
    for key, value in given.items():
        if key not in movable and value is not None and value != current[key]:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"{flag} {value} differs from the resumed run's {current[key]}; "
                              "a resumed run keeps its settings (only --epochs and --engine "
                              "may change)")
    changes = {k: given[k] for k in movable if given[k] is not None}
    if changes:
        saved = training.Settings.from_dict({**saved.as_dict(), **changes})
    return saved


def add_run_parser(commands) -> None:
    from neurolocal.training.settings import DEFAULT_ENGINE, Settings

    base = Settings()
    run = commands.add_parser(
        "run", help="train a topology with predictive coding (and/or backprop) on real data",
        description="Train a topology. Every training setting (data, epochs, batch size, eta, "
                    "iterations, optimizer, lr, seed, algorithm, engine, mode) comes from the "
                    "topology's `training:` section; a flag given here overrides it; a setting "
                    "the section does not name takes the built-in default shown with its flag. "
                    "An optimizer given by flag starts from its own defaults.",
        epilog=f"built-in defaults: data {base.data}, {base.epochs} epochs, batch size "
               f"{base.batch_size}, eta {base.eta:g}, T = the graph's depth, {base.optimizer} "
               "(lr 0.001; sgd: lr 0.01, momentum 0.9), seed 0, algorithm pc, engine "
               f"{DEFAULT_ENGINE}, {base.mode} mode")
    run.add_argument("topology")
    run.add_argument("--algorithm", choices=("pc", "bp", "both"), default=None,
                     help="pc: predictive coding; bp: the backprop baseline; both: one after "
                          "the other with the same init, batches and optimizer")
    run.add_argument("--epochs", type=_positive_int, default=None,
                     help=f"default: training.epochs, else {base.epochs}")
    run.add_argument("--batch-size", type=_positive_int, default=None,
                     help=f"default: training.batch_size, else {base.batch_size}")
    run.add_argument("--eta", type=_positive_float, default=None,
                     help=f"relaxation step (default: training.eta, else {base.eta:g})")
    run.add_argument("--iterations", "-T", type=_positive_int, default=None,
                     help="relaxation steps per batch (default: training.iterations, else the "
                          "graph's depth)")
    run.add_argument("--optimizer", choices=("sgd", "adam"), default=None,
                     help=f"default: training.optimizer, else {base.optimizer}")
    run.add_argument("--lr", type=_positive_float, default=None,
                     help="learning rate (default: training.optimizer.lr or training.lr, else "
                          "the optimizer's: adam 0.001, sgd 0.01)")
    run.add_argument("--seed", type=_non_negative_int, default=None,
                     help=f"seeds the parameters and the batch order (default: training.seed, "
                          f"else {base.seed})")
    run.add_argument("--data", default=None,
                     help="digits, text, or a .npz / .csv / text file (default: training.data, "
                          f"else {base.data})")
    run.add_argument("--out", default=None,
                     help="output directory (default: runs/<topology>-<timestamp>)")
    run.add_argument("--resume", default=None, metavar="DIR",
                     help="continue the run in DIR exactly where it stopped")
    run.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    run.add_argument("--no-traffic-log", action="store_true",
                     help="do not record messages (by default they go to OUT/traffic)")
    add_engine_options(run, engine_default=None, mode_default=None)
    run.set_defaults(run=cmd_run)

# --- end of run block ------------------------------------------------------------------------


# --- generate: topology files of any size (issue 9) ----------------------------------------


def cmd_generate(args) -> int:
    from neurolocal.generate import GENERATORS, topology_yaml
    from neurolocal.topology import topology_from_dict

    options = {"vertices": args.vertices, "loss": args.loss}
    if args.shape == "tiled":
        options.update(layers=args.layers, tile_width=args.width or 4,
                       input_width=args.input_width,
                       output_width=args.output_width, activation=args.activation,
                       fan_in=args.fan_in)
    elif args.shape == "chain":
        options.update(width=args.width or 32, input_width=args.input_width,
                       output_width=args.output_width, activation=args.activation)
    else:
        options.update(seed=args.seed)
    try:
        document = GENERATORS[args.shape](**options)
    except ValueError as exc:
        raise ConfigError(str(exc), field=args.shape) from None
    graph = topology_from_dict(document).graph  # refuse to write a file that would not load
    _write_atomically(args.output, topology_yaml(document))
    print(f"wrote {args.output}: {len(graph.order)} vertices, {len(graph.edges)} edges, "
          f"{graph.parameter_count()} parameters, depth {graph.depth}")
    return EXIT_OK


def add_generate_parser(commands) -> None:
    generate = commands.add_parser(
        "generate", help="write a topology file of a given size: tiled MLP, deep chain, random DAG")
    generate.add_argument("shape", choices=("tiled", "chain", "random"),
                          help="tiled: MLP layers cut into dense tiles joined by a concat; "
                               "chain: one dense vertex per link; random: random DAG")
    generate.add_argument("--vertices", "-n", type=_positive_int, required=True,
                          help="about how many vertices (the exact count is printed)")
    generate.add_argument("-o", "--output", required=True, metavar="FILE.yaml")
    generate.add_argument("--layers", type=_positive_int, default=4, help="tiled: hidden layers")
    generate.add_argument("--fan-in", type=_non_negative_int, default=3,
                          help="tiled: tiles of the layer below each tile reads (a local "
                               "window); 0: all of them, through one concat per layer")
    generate.add_argument("--width", type=_positive_int, default=None,
                          help="tiled: units per tile (default 4); chain: units per link "
                               "(default 32: narrower tanh chains see their gradients "
                               "vanish within a few hundred links)")
    generate.add_argument("--input-width", type=_positive_int, default=16)
    generate.add_argument("--output-width", type=_positive_int, default=4)
    generate.add_argument("--activation", choices=("tanh", "sigmoid", "relu", "identity"),
                          default="tanh")
    generate.add_argument("--loss", choices=("mse", "softmax_cross_entropy"), default="mse")
    generate.add_argument("--seed", type=int, default=0, help="random: the graph's seed")
    generate.set_defaults(run=cmd_generate)


# --- wiring --------------------------------------------------------------------------------


def add_engine_options(parser: argparse.ArgumentParser, *, engine_default: str | None = "local",
                       mode_default: str | None = "fixed") -> None:
    """The flags of every command that runs a graph. A None default means "the
    topology's training section decides" (for `run`)."""
    from neurolocal.engines import ENGINE_NAMES, SCHEDULES

    parser.add_argument("--engine", choices=ENGINE_NAMES, default=engine_default,
                        help="where vertices run: local (one process) or ray (actors)"
                             + (f"; default {engine_default}" if engine_default else ""))
    parser.add_argument("--mode", choices=("fixed", "strict"), default=mode_default,
                        help="fixed: predictions cached from the forward pass (the paper's, "
                             "equals backprop); strict: recomputed every step")
    parser.add_argument("--schedule", choices=SCHEDULES, default="auto",
                        help="jacobi: every vertex sends every round; event: only when its "
                             "error changed (the same numbers; with eta = 1 about one message "
                             "per edge); backward-in-time: the paper's RNN/LSTM schedule, one "
                             "time step at a time, last first, T rounds per step (local "
                             "engine); auto (default): event on the local engine in fixed "
                             "mode, else jacobi")
    parser.add_argument("--traffic-log", metavar="DIR", default=None,
                        help="record every message into DIR (read it with `neurolocal traffic`)")
    ray = parser.add_argument_group("ray engine")
    ray.add_argument("--address", default="local",
                     help="local: start an embedded Ray here and stop it after (default); "
                          "auto or HOST:PORT: join a running cluster")
    ray.add_argument("--vertices-per-actor", type=_positive_int, default=1, metavar="K",
                     help="pack K vertices into one actor (default 1: every vertex an actor)")
    ray.add_argument("--staleness", type=_non_negative_int, default=0, metavar="S",
                     help="0: synchronous rounds (the local engine's sweep); S > 0: a vertex "
                          "may use feedback up to S rounds old (asynchronous)")
    ray.add_argument("--placement", choices=("spread", "pack"), default="spread",
                     help="spread actors over the cluster's nodes, or pack them on this one")
    ray.add_argument("--timeout", type=_positive_float, default=None, metavar="SECONDS",
                     help="fail, naming the actor, when actors take longer than this to start, "
                          "to finish a batch or to come back after a crash (default 300)")
    ray.add_argument("--max-restarts", type=_non_negative_int, default=3, metavar="N",
                     help="Ray restarts an actor that died up to N times; the interrupted "
                          "batch is replayed from the parameters at its start (default 3; "
                          "0: the first death ends the run)")
    ray.add_argument("--fault", type=_fault, default=None, metavar="ACTOR:BATCH",
                     help="testing aid: kill actor ACTOR (its index, as in actor-3) in the "
                          "middle of batch BATCH (0: the first batch this command relaxes), once")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="neurolocal", description="predictive coding on arbitrary computation "
                     "graphs, every vertex a local rule (an actor on Ray)")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    validate = commands.add_parser("validate", help="check a topology file and summarise its graph")
    validate.add_argument("topology")
    validate.set_defaults(run=cmd_validate)

    check = commands.add_parser(
        "check-grad", help="compare predictive coding's updates with backprop's gradients")
    check.add_argument("topology")
    check.add_argument("--eta", type=_positive_float, default=1.0,
                       help="relaxation step (default 1; fixed mode converges for 0 < eta < 2)")
    check.add_argument("--iterations", "-T", type=_non_negative_int, default=None,
                       help="relaxation steps (default: the graph's depth; with --staleness S "
                            "on Ray 1 + (depth - 1)(S + 1), which is exact at eta 1 whatever "
                            "the timing)")
    check.add_argument("--seed", type=int, default=0, help="seeds the parameters and the batch")
    check.add_argument("--batch-size", type=_positive_int, default=8)
    check.add_argument("--max-rel-error", type=_positive_float, default=None,
                       help="exit 1 when the largest relative error exceeds this")
    check.add_argument("--data", default=None,
                       help="take the batch from a data set, as `run --data` does (digits, "
                            "text, or a .npz / .csv / text file); default: a synthetic batch "
                            "of each input's kind")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument("--all", action="store_true",
                       help="list every parameter (by default graphs with more than "
                            f"{CHECK_TABLE_ROWS} tensors get a summary and the worst rows)")
    add_engine_options(check)
    check.set_defaults(run=cmd_check_grad)

    traffic = commands.add_parser("traffic", help="read a message-traffic log")
    tools = traffic.add_subparsers(dest="traffic_command", required=True, parser_class=_Parser)
    summary = tools.add_parser("summary", help="totals, per kind, per round, latency")
    summary.add_argument("directory")
    summary.add_argument("--json", action="store_true")
    edges = tools.add_parser("edges", help="per-edge counts, bytes and latency, sorted")
    edges.add_argument("directory")
    form = edges.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true")
    form.add_argument("--csv", action="store_true")
    timeline = tools.add_parser("timeline", help="Chrome/Perfetto trace: a track per vertex")
    timeline.add_argument("directory")
    timeline.add_argument("-o", "--output", required=True)
    timeline.add_argument("--max-messages", type=_positive_int, default=200_000)
    audit = tools.add_parser("audit", help="prove locality and per-edge counts (exit 1 if not)")
    audit.add_argument("directory")
    audit.add_argument("topology")
    plot = tools.add_parser("plot", help="heat map of traffic per edge and round, energy")
    plot.add_argument("directory")
    plot.add_argument("-o", "--output", required=True)
    plot.add_argument("--weight", choices=("messages", "bytes"), default="messages")
    traffic.set_defaults(run=cmd_traffic)
    add_run_parser(commands)
    add_generate_parser(commands)
    return parser


def _version() -> str:
    from neurolocal import __version__

    return f"neurolocal {__version__}"


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"neurolocal: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    args = build_parser().parse_args(argv)
    run: Callable = args.run
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return run(args)
    except NeurolocalError as exc:
        print(f"neurolocal: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `neurolocal traffic edges DIR | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("neurolocal: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

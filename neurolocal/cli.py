"""The `neurolocal` command line.

Every user mistake ends as one line on stderr and exit code 2; exit 1 means a
check the user asked for failed (e.g. `check-grad --max-rel-error`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from typing import Callable, Sequence

from neurolocal.errors import ConfigError, NeurolocalError
from neurolocal.limits import add_budget_option

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line with exit 2 (its default too), no usage dump."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _flag_number(text: str, **kind) -> int | float:
    """A flag's value through the one number validator (checks.parse_number); argparse
    names the flag in front of the message."""
    from neurolocal.checks import argument

    return argument(**kind)(text)


def _positive_float(text: str) -> float:
    return _flag_number(text, positive=True)


def _non_negative_int(text: str) -> int:
    return _flag_number(text, whole=True, minimum=0)


def _positive_int(text: str) -> int:
    return _flag_number(text, whole=True, minimum=1)


def _packing(text: str) -> int | str:
    """--vertices-per-actor: auto, or a whole number >= 1."""
    if text == "auto":
        return text
    from neurolocal.checks import expected

    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected auto or {expected(whole=True, minimum=1)}, "
                                         f"got {text!r}") from None


def _fault(text: str) -> tuple[int, int]:
    actor, sep, batch = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected ACTOR:BATCH, e.g. 1:5, got {text!r}")
    return _non_negative_int(actor), _non_negative_int(batch)


# --- commands ------------------------------------------------------------------------------


def cmd_validate(args) -> int:
    from neurolocal.limits import budget_from
    from neurolocal.topology import load_topology
    from neurolocal.training.settings import check_training_section

    topology = load_topology(args.topology, budget_from(args.budget))
    check_training_section(topology.training, topology.graph)   # the checks `run` makes
    print(topology.graph.summary())
    return EXIT_OK


def cmd_check_grad(args) -> int:
    from neurolocal.engines import relax_once
    from neurolocal.gradcheck import (CONVERGENCE_TOLERANCE, compare, data_batch,
                                      default_iterations, synthetic_batch)
    from neurolocal.files import writable_directory
    from neurolocal.limits import budget_from, check_batch
    from neurolocal.topology import load_topology

    budget = budget_from(args.budget)
    graph = load_topology(args.topology, budget).graph
    if args.vertices_per_actor is None and args.engine == "ray":
        # a gradient check puts every edge across actors
        args.vertices_per_actor = "auto" if args.placement_from else 1
    staleness = args.staleness   # an engine that cannot run it refuses it (capabilities.py)
    iterations = (default_iterations(graph, staleness) if args.iterations is None
                  else args.iterations)
    check_batch(graph, budget, args.batch_size, iterations)
    if args.traffic_log:
        writable_directory(args.traffic_log, "--traffic-log")
    if args.params is not None:   # e.g. what `neurolocal import` wrote
        from neurolocal.params_file import load_params

        params = load_params(args.params, graph, budget)
    else:
        params = graph.init_params(args.seed)
    if args.data is None:
        inputs, target = synthetic_batch(graph, args.batch_size, args.seed)
    else:
        inputs, target = data_batch(args.data, graph, args.batch_size, args.seed)
    relaxation = relax_once(_engine_config(args), graph, params, inputs, target, eta=args.eta,
                            iterations=iterations)
    check = compare(graph, params, relaxation, inputs, target, mode=args.mode, eta=args.eta,
                    iterations=iterations, staleness=staleness)
    failed = args.max_rel_error is not None and not check.max_relative_error <= args.max_rel_error
    if not check.converged:
        print(f"neurolocal: warning: the relaxation has not converged after {iterations} rounds "
              f"(fixed-point residual {check.residual:.2e} > {CONVERGENCE_TOLERANCE:g}); "
              "the updates are not yet its fixed point's: raise --iterations"
              + (" (or use eta 1)" if args.eta != 1.0 and args.mode == "fixed" else ""),
              file=sys.stderr)
    if args.json:
        report = check.as_dict()
        report["engine"] = args.engine
        report["path"] = relaxation.extras.get("path")
        report.update(relaxation.extras.get("report", {}))
        print(json.dumps(report))
    else:
        _print_check(check, args, relaxation.extras.get("path"))
        report = relaxation.extras.get("report", {})
        if "messages_lost" in report:   # sim, or Ray with injected asynchrony
            print(f"asynchrony: {report['messages_lost']} message(s) lost, "
                  f"{report['messages_retransmitted']} retransmitted, oldest feedback used "
                  f"{report['max_feedback_age']:g} round(s) old")
    return EXIT_CHECK_FAILED if failed else EXIT_OK


#: parameters listed in full by check-grad's table; larger graphs get a summary
CHECK_TABLE_ROWS = 20
#: the worst rows a summary shows
CHECK_WORST_ROWS = 10


def _print_check(check, args, path: str | None) -> None:
    stale = f", staleness {check.staleness}" if check.staleness else ""
    print(f"{check.graph}: {args.engine} engine, {check.mode} mode, eta {check.eta}, "
          f"{check.iterations} iterations (depth {check.depth}{stale}), loss {check.loss:.6g}"
          + (f"; {path} rounds" if path else ""))
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


def _write_atomically(path: str, text: str) -> None:
    from neurolocal.files import writable_file, write_atomic

    writable_file(path, "--output")
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}",
                          field=f"--output {path}") from None
# --- run: train a topology (issue 6) ---------------------------------------------------------
# Kept in one block (cmd_run + add_run_parser) so merging with other commands stays easy.

RUN_FLAGS = ("engine", "algorithm", "epochs", "batch_size", "eta", "iterations", "mode",
             "optimizer", "lr", "seed", "data")


def cmd_run(args) -> int:
    from neurolocal.training.session import RunRequest, run_training

    run_training(RunRequest(
        topology=args.topology, overrides={k: getattr(args, k) for k in RUN_FLAGS},
        out=args.out, resume=args.resume, quiet=args.quiet,
        record_traffic=not args.no_traffic_log, depth_audit=not args.no_depth_audit,
        engine=_engine_config(args), budget=_budget(args), params=args.params))
    return EXIT_OK


def _budget(args):
    from neurolocal.limits import budget_from

    return budget_from(args.budget)


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
                     help="digits, mnist (the extra neurolocal[mnist]), text, or a .npz / .csv / text "
                          "file (default: training.data, "
                          f"else {base.data})")
    run.add_argument("--out", default=None,
                     help="output directory (default: runs/<topology>-<timestamp>)")
    run.add_argument("--resume", default=None, metavar="DIR",
                     help="continue the run in DIR exactly where it stopped")
    run.add_argument("--params", default=None, metavar="FILE",
                     help="initial parameters (a .npz of vertex/param arrays, as `neurolocal "
                          "import` writes) instead of drawing them from --seed")
    run.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    run.add_argument("--no-traffic-log", action="store_true",
                     help="do not record messages (by default they go to OUT/traffic)")
    run.add_argument("--no-depth-audit", action="store_true",
                     help="do not probe every layer after each epoch (by default the error "
                          "per layer and round, weight change and gradient cosine go to "
                          "OUT/depth.json; `neurolocal traffic depth OUT` reads it)")
    run.add_argument("--pipeline", type=_positive_int, default=None, metavar="K",
                     help="K batches in flight through the graph at once, every vertex "
                          "applying its update when its error for a batch is final (weight "
                          "staleness <= K - 1; sim and local engines, not with ipc; "
                          "docs/asynchrony.md §7). Default 1: batch after batch")
    add_budget_option(run)
    add_engine_options(run, engine_default=None, mode_default=None,
                       packing="default auto (the packing every run on Ray gets unless told)")
    run.set_defaults(run=cmd_run)

# --- end of run block ------------------------------------------------------------------------


# --- generate: topology files of any size (issue 9) ----------------------------------------


def cmd_generate(args) -> int:
    from neurolocal.bulk import paused_gc
    from neurolocal.files import writable_file
    from neurolocal.generate import GENERATORS, topology_yaml
    from neurolocal.limits import budget_from, check_vertex_count
    from neurolocal.topology import topology_from_dict

    budget = budget_from(args.budget)
    if args.shape == "resnet":
        check_vertex_count(args.depth + 2, budget, what="--depth")
        writable_file(args.output, "--output")
        options = {"depth": args.depth, "width": args.width or 128,
                   "parameterization": args.parameterization,
                   "activation": args.activation or "relu", "skips": not args.no_skips,
                   "init": args.init,
                   "input_width": args.input_width or 784,
                   "output_width": args.output_width or 10, "loss": args.loss}
    else:
        if args.vertices is None:
            raise ConfigError(f"generate {args.shape} needs --vertices N", field="vertices")
        options = _sized_options(args, budget)
    with paused_gc():   # a 100,000-vertex mapping, its graph and its text: no garbage
        try:
            document = GENERATORS[args.shape](**options)
        except ValueError as exc:
            raise ConfigError(str(exc), field=args.shape) from None
        graph = topology_from_dict(document, budget=budget).graph  # refuse what would not load
        text = topology_yaml(document)
    _write_atomically(args.output, text)
    print(f"wrote {args.output}: {len(graph.order)} vertices, {len(graph.edges)} edges, "
          f"{graph.parameter_count()} parameters, depth {graph.depth}")
    return EXIT_OK


def _sized_options(args, budget) -> dict:
    """The options of the generators sized by --vertices (tiled, chain, random)."""
    from neurolocal.files import writable_file
    from neurolocal.limits import check_vertex_count

    # before building any: a tiled graph has at least one tile per layer
    check_vertex_count(args.vertices, budget, what="--vertices")
    if args.shape == "tiled":
        check_vertex_count(2 * args.layers + 3, budget, what="--layers")
    writable_file(args.output, "--output")
    activation = args.activation or "tanh"
    if activation in ("gelu", "gelu_tanh"):
        raise ConfigError("--activation gelu and gelu_tanh are for generate resnet only", field="activation")
    options = {"vertices": args.vertices, "loss": args.loss}
    input_width, output_width = args.input_width or 16, args.output_width or 4
    if args.shape == "tiled":
        options.update(layers=args.layers, tile_width=args.width or 4,
                       input_width=input_width, output_width=output_width,
                       activation=activation, fan_in=args.fan_in)
    elif args.shape == "chain":
        options.update(width=args.width or 32, input_width=input_width,
                       output_width=output_width, activation=activation)
    else:
        options.update(seed=args.seed)
    return options


def add_generate_parser(commands) -> None:
    generate = commands.add_parser(
        "generate", help="write a topology file of a given size: tiled MLP, deep chain, random "
                         "DAG, jpc's (muPC) residual network")
    generate.add_argument("shape", choices=("tiled", "chain", "random", "resnet"),
                          help="tiled: MLP layers cut into dense tiles joined by a concat; "
                               "chain: one dense vertex per link; random: random DAG; "
                               "resnet: jpc's residual MLP (docs/depth.md)")
    generate.add_argument("--vertices", "-n", type=_positive_int, default=None,
                          help="tiled, chain, random (required): about how many vertices "
                               "(the exact count is printed)")
    generate.add_argument("--depth", type=_positive_int, default=8,
                          help="resnet: hidden layers (depth + 1 weight matrices; default 8)")
    generate.add_argument("--parameterization", choices=("mupc", "standard"), default="mupc",
                          help="resnet: muPC's multipliers and N(0, 1) weights, or multipliers "
                               "1 and torch's uniform init (default mupc)")
    generate.add_argument("--no-skips", action="store_true",
                          help="resnet: leave out the identity skips (a plain MLP)")
    generate.add_argument("--init", choices=("normal", "uniform", "xavier", "he"), default=None,
                          help="resnet: the weights' initialisation (default: normal for mupc, "
                               "uniform for standard)")
    generate.add_argument("-o", "--output", required=True, metavar="FILE.yaml")
    generate.add_argument("--layers", type=_positive_int, default=4, help="tiled: hidden layers")
    generate.add_argument("--fan-in", type=_non_negative_int, default=3,
                          help="tiled: tiles of the layer below each tile reads (a local "
                               "window); 0: all of them, through one concat per layer")
    generate.add_argument("--width", type=_positive_int, default=None,
                          help="tiled: units per tile (default 4); chain: units per link "
                               "(default 32: narrower tanh chains see their gradients "
                               "vanish within a few hundred links); resnet: units per "
                               "hidden layer (default 128)")
    generate.add_argument("--input-width", type=_positive_int, default=None,
                          help="default 16 (resnet: 784, MNIST)")
    generate.add_argument("--output-width", type=_positive_int, default=None,
                          help="default 4 (resnet: 10)")
    generate.add_argument("--activation", choices=("tanh", "sigmoid", "relu", "gelu", "gelu_tanh",
                                                   "identity"),
                          default=None, help="default tanh (resnet: relu; gelu: resnet only)")
    generate.add_argument("--loss", choices=("mse", "softmax_cross_entropy"), default="mse")
    generate.add_argument("--seed", type=_non_negative_int, default=0,
                          help="random: the graph's seed")
    add_budget_option(generate)
    generate.set_defaults(run=cmd_generate)


# --- cluster: a standing local Ray (issue 15) ------------------------------------------------


def cmd_cluster(args) -> int:
    from neurolocal.engines.ray import standing

    if args.cluster_command == "up":
        record, started = standing.up(cpus=args.cpus,
                                      object_store_bytes=args.object_store_mb << 20)
        verb = "started" if started else "already running"
        print(f"neurolocal cluster {verb} at {record.address} ({record.cpus} CPUs, "
              f"{len(record.processes)} processes; logs in {record.temp_dir})")
        print("attach with --address auto, e.g. neurolocal run topologies/mlp.yaml "
              "--address auto; stop it with neurolocal cluster down")
    elif args.cluster_command == "status":
        report = standing.status()
        if args.json:
            print(json.dumps(report))
        elif report is None:
            print("no neurolocal cluster is running (start one with neurolocal cluster up)")
        else:
            nodes = "?" if report["nodes"] is None else report["nodes"]
            cpus = "?" if report["cpus"] is None else f"{report['cpus']:g}"
            print(f"neurolocal cluster at {report['address']}: up {_duration(report['uptime_s'])}"
                  f", {nodes} node(s), {cpus} CPUs, {report['processes']} processes, "
                  f"{report['rss_bytes'] / 2**20:.0f} MB RSS")
            print(f"  temp dir {report['temp_dir']}; token {report['token_file']}")
    else:
        stopped = standing.down()
        if stopped is None:
            print("no neurolocal cluster was running")
        else:
            print(f"stopped the neurolocal cluster: {len(stopped)} processes it started")
    return EXIT_OK


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def add_cluster_parser(commands) -> None:
    cluster = commands.add_parser(
        "cluster", help="keep a local Ray running between commands (--address auto attaches)")
    tools = cluster.add_subparsers(dest="cluster_command", required=True, parser_class=_Parser)
    up = tools.add_parser("up", help="start a local Ray head here and leave it running")
    up.add_argument("--cpus", type=_positive_int, default=None,
                    help="CPUs it offers (default: this machine's cores)")
    up.add_argument("--object-store-mb", type=_positive_int, default=200,
                    help="its object store, in MiB (default 200)")
    status = tools.add_parser("status", help="what runs: address, nodes, CPUs, uptime, memory")
    status.add_argument("--json", action="store_true")
    tools.add_parser("down", help="stop exactly what `cluster up` started")
    cluster.set_defaults(run=cmd_cluster)


# --- wiring --------------------------------------------------------------------------------


#: EngineConfig parameters and the flags that set them: the CLI names flags, engines don't
ENGINE_FLAGS = {"engine": "--engine", "mode": "--mode", "schedule": "--schedule",
                "traffic_log": "--traffic-log", "address": "--address",
                "vertices_per_actor": "--vertices-per-actor", "staleness": "--staleness",
                "placement_from": "--placement-from",
                "placement": "--placement", "timeout": "--timeout",
                "max_restarts": "--max-restarts", "fault": "--fault", "pipeline": "--pipeline",
                "post_ahead": "--post-ahead", "dtype": "--dtype", "rounds": "--rounds"}


#: the one table of parameters and the flags that set them: library errors name the
#: parameter (`errors.param`, or an engine parameter as the error's field), the command
#: line tells it by its flag
PARAMETER_FLAGS = {**ENGINE_FLAGS, **{k: "--" + k.replace("_", "-") for k in RUN_FLAGS},
                   "out": "--out", "resume": "--resume", "output": "--output",
                   "budget": "--budget", "asynchrony": "--asynchrony", "seeds": "--seeds",
                   "jobs": "--jobs", "vary": "--vary", "params": "--params"}


def _as_flags(exc: NeurolocalError) -> str:
    """An error's one line, each parameter it names told by the flag that sets it."""
    return exc.told(PARAMETER_FLAGS, fields=ENGINE_FLAGS)


def _engine_config(args):
    """The one EngineConfig of a command, from its engine flags (None: the default;
    `run` leaves engine and mode to the topology's training section)."""
    from neurolocal.engines import EngineConfig

    from neurolocal.asynchrony.options import sim_options_from_args

    return EngineConfig.from_values({**{k: getattr(args, k, None) for k in ENGINE_FLAGS},
                                     "sim": sim_options_from_args(args),
                                     "seed": getattr(args, "seed", None)})


def add_engine_options(parser: argparse.ArgumentParser, *, engine_default: str | None = "local",
                       mode_default: str | None = "fixed", packing: str | None = None) -> None:
    """The flags of every command that runs a graph. A None default means "the
    topology's training section decides" (for `run`). `packing`: how the command's
    --vertices-per-actor default reads in its help (run: auto; check-grad: 1)."""
    from neurolocal.engines import ENGINE_NAMES, SCHEDULES

    parser.add_argument("--engine", choices=ENGINE_NAMES, default=engine_default,
                        help="where vertices run: local (one process), ray (actors) or sim "
                             "(one process, simulated time: delays, loss, stragglers)"
                             + (f"; default {engine_default}" if engine_default else ""))
    parser.add_argument("--mode", choices=("fixed", "strict"), default=mode_default,
                        help="fixed: predictions cached from the forward pass (the paper's, "
                             "equals backprop); strict: recomputed every step")
    parser.add_argument("--schedule", choices=SCHEDULES, default="auto",
                        help="on every engine (docs/rounds.md). jacobi: every vertex sends "
                             "every round; event: only in the rounds its error can change (the "
                             "same numbers; with eta = 1 about one message per path length); "
                             "backward-in-time: the paper's RNN/LSTM schedule, one time step "
                             "at a time, last first, T rounds per step; ipc: incremental PC, "
                             "a weight step every round (strict mode); auto (default): event "
                             "in fixed mode with synchronous rounds, else jacobi")
    parser.add_argument("--traffic-log", metavar="DIR", default=None,
                        help="record every message into DIR (read it with `neurolocal traffic`)")
    parser.add_argument("--rounds", choices=("auto", "message"), default="auto",
                        help="auto (default): synchronous rounds run from a plan compiled "
                             "from the schedule where they can (docs/rounds.md §9); message: "
                             "always one message at a time (the same numbers, slower)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="what the vertices compute in and send: float64 (default) or "
                             "float32 (half the bytes, faster matmuls; agrees with backprop to "
                             "float32's rounding); local and ray engines")
    from neurolocal.asynchrony.options import add_sim_options

    add_sim_options(parser)
    ray = parser.add_argument_group("ray engine")
    ray.add_argument("--address", default="local",
                     help="local: start an embedded Ray here and stop it after (default); "
                          "auto: the cluster `neurolocal cluster up` started (else Ray's "
                          "own auto); HOST:PORT: join a running cluster")
    ray.add_argument("--vertices-per-actor", type=_packing, default=None, metavar="auto|K",
                     help="auto: about one actor (shard) per core of each node (its CPUs in "
                          "Ray's node resources, at most one per vertex), the shards chosen by a "
                          "balanced min-cut of the graph (docs/placement.md); K: runs of K "
                          "vertices in topological order; "
                          + (packing or "default auto"))
    ray.add_argument("--placement-from", metavar="LOGDIR", default=None,
                     help="with auto: weigh the min-cut by the bytes per edge of a previous "
                          "run's traffic log (a run directory or its traffic/) instead of the "
                          "graph's shapes")
    ray.add_argument("--staleness", type=_non_negative_int, default=0, metavar="S",
                     help="0: synchronous rounds (the local engine's sweep); S > 0: a vertex "
                          "may use feedback up to S rounds old (asynchronous)")
    ray.add_argument("--placement", choices=("spread", "pack"), default="spread",
                     help="spread actors over the cluster's nodes, or pack them on this one")
    ray.add_argument("--timeout", type=_positive_float, default=None, metavar="SECONDS",
                     help="fail, naming the actor, when actors take longer than this to start, "
                          "to finish a batch or to come back after a crash (default 300)")
    ray.add_argument("--max-restarts", type=_non_negative_int, default=3, metavar="N",
                     help="Ray restarts an actor that died up to N times; every vertex is "
                          "restored from the last snapshot and the batches since are replayed "
                          "(default 3; 0: the first death ends the run)")
    ray.add_argument("--post-ahead", type=_positive_int, default=None, metavar="P",
                     help="training: keep P batches posted to the actors at once, each actor "
                          "running them in order (same numbers bit for bit; docs/rounds.md "
                          "§7; default 3; 1: wait for each batch's results)")
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
    add_budget_option(validate)
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
    check.add_argument("--seed", type=_non_negative_int, default=0,
                       help="seeds the parameters and the batch")
    add_budget_option(check)
    check.add_argument("--batch-size", type=_positive_int, default=8)
    check.add_argument("--max-rel-error", type=_positive_float, default=None,
                       help="exit 1 when the largest relative error exceeds this")
    check.add_argument("--data", default=None,
                       help="take the batch from a data set, as `run --data` does (digits, mnist, "
                            "text, or a .npz / .csv / text file); default: a synthetic batch "
                            "of each input's kind")
    check.add_argument("--params", default=None, metavar="FILE",
                       help="the parameters to check at (a .npz of vertex/param arrays, as "
                            "`neurolocal import` writes); default: drawn from --seed")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument("--all", action="store_true",
                       help="list every parameter (by default graphs with more than "
                            f"{CHECK_TABLE_ROWS} tensors get a summary and the worst rows)")
    add_engine_options(check, packing="default 1: every vertex its own actor, so every edge "
                                      "is checked across actors (auto with --placement-from)")
    check.set_defaults(run=cmd_check_grad)

    from neurolocal.imports.command import add_import_parser
    add_import_parser(commands, add_budget_option)
    from neurolocal.imports.export_command import add_export_parser
    add_export_parser(commands)

    from neurolocal.traffic.commands import add_traffic_parser

    add_traffic_parser(commands, _Parser)  # `neurolocal traffic ...`: traffic/commands.py
    add_run_parser(commands)
    add_generate_parser(commands)
    add_cluster_parser(commands)
    from neurolocal.sweep.command import add_sweep_parser

    add_sweep_parser(commands)
    from neurolocal.engines.replay import add_replay_parser

    add_replay_parser(commands)
    return parser


def _version() -> str:
    from neurolocal import __version__

    return f"neurolocal {__version__}"


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"neurolocal: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Stop signals (SIGINT, SIGTERM, SIGHUP) end it in one line with
    exit 128 + the signal, after the actors and an embedded Ray are stopped and with the
    last epoch's checkpoint kept (neurolocal/signals.py, docs/lifecycle.md)."""
    import warnings

    from neurolocal import signals

    args = build_parser().parse_args(argv)
    run: Callable = args.run
    with signals.stop_on_signals():
        try:
            with warnings.catch_warnings(), _document_only_stdout(getattr(args, "json", False)):
                warnings.showwarning = _one_line_warning
                return run(args)
        except (Exception, KeyboardInterrupt) as exc:
            stop = signals.received()
            if stop is None and isinstance(exc, signals.Stopped):
                stop = exc.signum
            if stop is not None or isinstance(exc, KeyboardInterrupt):
                # whatever broke while stopping (a Ray process stopped by the same signal
                # to the process group), the signal is what happened
                line = signals.describe(stop if stop is not None else 2)
                kept = getattr(exc, "checkpoint_kept", None)
                if kept:
                    line += f"; the last epoch's checkpoint is kept, continue with --resume {kept}"
                print(f"neurolocal: {line}", file=sys.stderr)
                return 128 + (stop if stop is not None else 2)
            if isinstance(exc, NeurolocalError):
                print(f"neurolocal: error: {_as_flags(exc)}", file=sys.stderr)
                return EXIT_USAGE
            if isinstance(exc, BrokenPipeError):  # e.g. `neurolocal traffic edges DIR | head`
                import os

                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return EXIT_OK
            if isinstance(exc, OSError) and exc.filename is not None:
                # a path the user gave that the OS refuses (ENAMETOOLONG, EACCES...)
                print(f"neurolocal: error: {str(exc.filename)[:200]}: "
                      f"{exc.strerror or type(exc).__name__}", file=sys.stderr)
                return EXIT_USAGE
            raise


@contextlib.contextmanager
def _document_only_stdout(enabled: bool):
    """Under --json, stdout carries the one JSON document (issue 12): the command's own
    prints still reach it, while anything else written to file descriptor 1 (a library's
    C++ log, a child process) goes to stderr. Off when stdout is no file (a test's capture)."""
    import os

    try:
        fd = sys.stdout.fileno() if enabled else None
        err = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd is None:
        yield
        return
    sys.stdout.flush()
    original = sys.stdout
    document = os.fdopen(os.dup(fd), "w")
    os.dup2(err, fd)
    sys.stdout = document
    try:
        yield
    finally:
        try:
            document.flush()
        finally:
            os.dup2(document.fileno(), fd)
            sys.stdout = original
            document.close()


if __name__ == "__main__":
    sys.exit(main())

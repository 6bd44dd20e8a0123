"""`neurolocal sweep`: the parser and the command (wired into cli.py by one call)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from neurolocal.checks import number
from neurolocal.errors import ConfigError

#: sweep flags that fix a quantity for every point (a --vary of the same key wins)
FIXED = ("epochs", "eta", "iterations", "mode", "schedule", "lr", "batch_size", "optimizer",
         "staleness", "pipeline", "delay", "drop", "retransmit", "reorder", "straggler")


def add_sweep_parser(commands) -> None:
    from neurolocal.sweep.grid import KEYS

    sweep = commands.add_parser(
        "sweep", help="run a grid of asynchrony settings on the sim engine: one CSV, plots",
        description="Train TOPOLOGY on the sim engine for every combination of the --vary "
                    "values and every seed; write DIR/sweep.csv and DIR/*.png "
                    "(docs/asynchrony.md §5). Interrupted sweeps resume.")
    sweep.add_argument("topology")
    sweep.add_argument("--vary", action="append", required=True, metavar="KEY=V1,V2,...",
                       help="a varied quantity, repeatable; KEY one of " + ", ".join(KEYS))
    sweep.add_argument("--seeds", type=int, default=3, help="seeds per point (default 3)")
    sweep.add_argument("--out", default=None, help="output directory (default "
                       "runs/sweep-<topology>); an existing one is resumed")
    sweep.add_argument("--jobs", type=int, default=None,
                       help="parallel processes (default: the core count)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    fixed = sweep.add_argument_group("fixed for every point (default: the topology's "
                                     "training section, synchronous rounds, no delay)")
    for key in FIXED:
        flag = "--" + key.replace("_", "-")
        if key in ("retransmit", "reorder"):
            fixed.add_argument(flag, action="store_true")
        else:
            fixed.add_argument(flag, default=None, metavar=key.upper(), help=KEYS[key])
    fixed.add_argument("--data", default=None, help="digits, or a data file")
    fixed.add_argument("--asynchrony", default=None, metavar="FILE.yaml",
                       help="per-edge and per-vertex models for every point")
    sweep.set_defaults(run=cmd_sweep)


def cmd_sweep(args) -> int:
    from neurolocal.sweep.grid import jobs, parse_value, parse_vary
    from neurolocal.sweep.report import plot, write_csv
    from neurolocal.sweep.runner import default_workers, run_jobs
    from neurolocal.sweep.worker import check_point, merged
    from neurolocal.topology import load_topology
    from neurolocal.training import write_json_atomic

    topology = load_topology(args.topology)
    from neurolocal.sweep.grid import MAX_RUNS

    number("seeds", args.seeds, whole=True, minimum=1, maximum=MAX_RUNS)
    if args.jobs is not None:
        number("jobs", args.jobs, whole=True, minimum=1)
    grid = parse_vary(args.vary)
    base: dict = {"data": args.data, "asynchrony": args.asynchrony}
    for key in FIXED:
        value = getattr(args, key)
        if key in ("retransmit", "reorder"):
            base[key] = value
        elif value is not None:
            base[key] = parse_value(key, str(value), field=key)
    all_jobs = jobs(grid, args.seeds)
    for job in all_jobs[::args.seeds]:                   # every point, once
        try:
            check_point(topology, merged(base, job.settings))
        except ConfigError as exc:
            point = ", ".join(f"{k}={v}" for k, v in job.point)
            raise ConfigError(f"point {point}: {exc.detail}", field=exc.field) from None
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{topology.graph.name}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "points").mkdir(exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory: {exc.strerror}",
                          source=str(exc.filename or out)) from None
    write_json_atomic(out / "sweep.json", {"topology": args.topology, "grid": grid,
                                           "seeds": args.seeds, "fixed": base})
    workers = min(args.jobs or default_workers(), len(all_jobs))
    progress = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        progress = lambda total, initial: tqdm(total=total, initial=initial,  # noqa: E731
                                               desc="sweep", unit="run", dynamic_ncols=True)
    started = time.perf_counter()
    print(f"sweep {topology.graph.name}: {len(all_jobs) // args.seeds} points x {args.seeds} "
          f"seeds on {workers} process(es) -> {out}", flush=True)
    results = run_jobs(args.topology, base, all_jobs, out, workers, progress)
    rows = write_csv(out / "sweep.csv", grid, results)
    pictures = plot(out, grid, rows, topology.graph.name)
    print(f"wrote {out / 'sweep.csv'} ({len(rows)} rows), "
          + ", ".join(p.name for p in pictures)
          + f" in {time.perf_counter() - started:.1f} s")
    return 0

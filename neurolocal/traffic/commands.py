"""`neurolocal traffic ...`: the parser and the commands, kept out of cli.py.

cli.py calls `add_traffic_parser(commands, parser_class)`; `neurolocal run` calls
`run_epilogue(traffic_dir, out_dir)` at its end (the digest line and report.html).
Every command takes a log directory or a run directory holding `traffic/`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from neurolocal.files import write_output as write_text  # noqa: F401  (the tools' writer)

EXIT_OK, EXIT_CHECK_FAILED = 0, 1


def _positive_int(text: str) -> int:
    """A whole number >= 1, as the CLI's flags take it (checks.argument)."""
    from neurolocal.checks import argument

    return argument(whole=True, minimum=1)(text)


def add_traffic_parser(commands, parser_class) -> None:
    traffic = commands.add_parser(
        "traffic", help="read a message-traffic log",
        description="Every command takes a log directory (OUT/traffic) or the run directory "
                    "holding it.")
    tools = traffic.add_subparsers(dest="traffic_command", required=True,
                                   parser_class=parser_class)
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
    timeline.add_argument("-o", "--output", required=True, help="the trace file (.json)")
    timeline.add_argument("--max-messages", type=_positive_int, default=200_000)
    audit = tools.add_parser("audit", help="prove locality and per-edge counts (exit 1 if not)",
                             description="Exit 0: PASS; 1: the log breaks locality or the "
                                         "algorithm's counts; 2: bad input, including a "
                                         "topology other than the one that wrote the log.")
    audit.add_argument("directory")
    audit.add_argument("topology")
    plot = tools.add_parser("plot", help="heat map of traffic per edge and round, energy")
    plot.add_argument("directory")
    plot.add_argument("-o", "--output", required=True, help="the image (.png)")
    plot.add_argument("--weight", choices=("messages", "bytes"), default="messages")
    export = tools.add_parser("export", help="one row per message to Parquet, CSV or Arrow",
                              description="Streams the log (bounded memory) into FILE; the "
                                          "format follows the suffix: .parquet, .csv, .arrow.")
    export.add_argument("directory")
    export.add_argument("-o", "--output", required=True, help="FILE.parquet|.csv|.arrow")
    query = tools.add_parser("query", help="SQL over the messages (DuckDB, optional extra)",
                             description="Tables: messages (the export's columns) and energy "
                                         "(run, batch, round, energy). Needs "
                                         "pip install 'neurolocal[analysis]'.")
    query.add_argument("directory")
    query.add_argument("sql")
    qform = query.add_mutually_exclusive_group()
    qform.add_argument("--csv", action="store_true")
    qform.add_argument("--json", action="store_true")
    report = tools.add_parser("report", help="one self-contained HTML page: graph, timeline, "
                                             "rounds, latency, energy")
    report.add_argument("directory")
    report.add_argument("-o", "--output", required=True, help="the page (.html)")
    depth = tools.add_parser("depth", help="per layer: weight change, gradient cosine, the "
                                           "round its error arrived (a run's depth.json)")
    depth.add_argument("directory")
    depth.add_argument("--json", action="store_true")
    traffic.set_defaults(run=cmd_traffic)


def _progress(stream, what: str):
    """A byte progress bar on stderr for logs large enough to wait for."""
    total = stream.total_bytes()
    if total < (64 << 20) or not sys.stderr.isatty():
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, desc=what, file=sys.stderr,
               leave=False)
    return bar, bar.update


def cmd_traffic(args) -> int:
    from neurolocal.traffic import report
    from neurolocal.traffic.aggregate import open_stream

    command = args.traffic_command
    output = getattr(args, "output", None)
    if output is not None:  # a directory, a missing parent or /proc: one line before any reading
        from neurolocal.files import writable_file

        writable_file(output, "-o")
    if command == "depth":
        from neurolocal.traffic.depth import format_depth, read_depth

        document = read_depth(args.directory)
        print(json.dumps(document) if args.json else format_depth(document))
    elif command == "summary":
        summary = report.summary(args.directory)
        print(json.dumps(summary) if args.json else report.format_summary(summary))
    elif command == "edges":
        rows = report.edges(args.directory)
        if args.json:
            print(json.dumps(rows))
        elif args.csv:
            print(report.format_edges_csv(rows), end="")
        else:
            print(report.format_edges_table(rows))
    elif command == "timeline":
        from neurolocal.traffic import read_traffic
        from neurolocal.traffic.timeline import chrome_trace

        log = read_traffic(args.directory)
        write_text(args.output, json.dumps(chrome_trace(log, args.max_messages)))
        print(f"wrote {args.output} ({min(len(log), args.max_messages)} messages)")
    elif command == "plot":
        from neurolocal.traffic.plot import plot_traffic

        plot_traffic(args.directory, args.output, weight=args.weight)
        print(f"wrote {args.output}")
    elif command == "audit":
        return _audit(args)
    elif command == "export":
        from neurolocal.traffic.table import export, export_format

        export_format(args.output)  # a bad suffix before any reading
        stream = open_stream(args.directory)
        bar, update = _progress(stream, "export")
        rows = export(stream, args.output, on_bytes=update)
        if bar is not None:
            bar.close()
        print(f"wrote {args.output} ({rows} messages)")
    elif command == "query":
        from neurolocal.traffic.query import _duckdb, format_table, query

        _duckdb()  # the missing extra in one line before any reading
        table = query(args.directory, args.sql)
        if args.json:
            print(json.dumps(table.to_pylist(), default=_json_value))
        elif args.csv:
            import pyarrow.csv as pcsv

            sink = __import__("io").BytesIO()
            pcsv.write_csv(table, sink)
            sys.stdout.write(sink.getvalue().decode())
        else:
            print(format_table(table))
    elif command == "report":
        from neurolocal.traffic.html import write_report

        write_report(args.directory, args.output)
        print(f"wrote {args.output}")
    return EXIT_OK


def _json_value(value):
    """SQL sums are 128-bit decimals; dates and others print as text."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def _audit(args) -> int:
    from neurolocal.topology import load_topology
    from neurolocal.traffic.audit import audit

    result = audit(args.directory, load_topology(args.topology).graph)
    for line in result.violations:
        print(f"violation: {line}")
    counts = "and per-edge counts " if result.counts_checked else ""
    verdict = "PASS" if result.ok else "FAIL"
    skipped = []
    if result.abandoned and result.counts_checked:
        skipped.append(f"{len(result.abandoned)} abandoned (replayed)")
    if result.unfinished and result.counts_checked:
        skipped.append(f"{len(result.unfinished)} unfinished (the run ended inside it)")
    print(f"{verdict}: {result.messages} messages, locality {counts}checked"
          + (f"; {result.note}" if result.note else "")
          + (f"; counts skip {' and '.join(skipped)} batch(es)" if skipped else ""))
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED


def run_epilogue(directory, out_dir) -> None:
    """The last lines of `neurolocal run`: what the vertices said to each other (bytes
    SENT, not the log's size on disk) and OUT/report.html. A damaged or missing log
    costs a warning line, never the run."""
    import warnings

    from neurolocal.errors import NeurolocalError
    from neurolocal.traffic import report

    if directory is None or not any(Path(directory).glob("*.traffic")):
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = report.summary(directory)
            kinds = ", ".join(f"{k} {v['messages']}" for k, v in summary["by_kind"].items())
            print(f"traffic: {summary['messages']} messages ({kinds}), "
                  f"{summary['bytes'] / 1e6:.1f} MB sent over {summary['batches']} batches "
                  f"(payload bytes, not the log's size on disk); latency p50 "
                  f"{summary['latency_ms']['p50']:.3f} ms, p99 "
                  f"{summary['latency_ms']['p99']:.3f} ms")
            from neurolocal.traffic.html import write_report

            page = Path(out_dir) / "report.html"
            write_report(directory, page)
    except NeurolocalError as exc:
        print(f"neurolocal: warning: traffic report not written: {exc}", file=sys.stderr)
        return
    print(f"inspect it: open {page} in a browser, or neurolocal traffic summary {out_dir} "
          "(or edges, export, query, timeline, plot, audit)")

"""Message-traffic logs: every message that crossed every edge, and tools to read them.

    log.py        the file format and the buffered msgpack writer (engines, actors)
    decode.py     a compiled decoder: msgpack records -> column arrays
    stream.py     a log directory as a stream of column chunks (bounded memory)
    aggregate.py  one streaming pass: totals, per kind/round/edge/batch, latency
    report.py     summary and per-edge tables
    audit.py      locality proof and message counts against the algorithm
    table.py      Apache Arrow: read_table, export to Parquet / CSV / Arrow
    query.py      SQL over the messages with DuckDB (optional extra)
    html.py       the self-contained HTML report (assets/: its script and style)
    timeline.py   Chrome / Perfetto trace
    plot.py       heat map of traffic over rounds, energy per round
    commands.py   `neurolocal traffic ...` and the end of `neurolocal run`

Engines and actors import only log.py: nothing here pulls pyarrow, DuckDB or numba into
a worker. `read_table` and `read_traffic` are imported on first use.
"""

from neurolocal.traffic.log import KINDS, TrafficLog, TrafficRecorder

__all__ = ["KINDS", "TrafficLog", "TrafficRecorder", "read_table", "read_traffic"]


def __getattr__(name):
    if name == "read_table":  # pyarrow is loaded by whoever reads tables, not by actors
        from neurolocal.traffic.table import read_table

        return read_table
    if name == "read_traffic":  # the compiled decoder (numba) too: not in actors
        from neurolocal.traffic.stream import read_traffic

        return read_traffic
    raise AttributeError(f"module 'neurolocal.traffic' has no attribute {name!r}")

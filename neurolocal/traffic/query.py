"""SQL over a traffic log with DuckDB (the optional extra `neurolocal[analysis]`).

The query reads and writes nothing outside the log (`_lock_down`): external access
is off, extensions are neither installed nor loaded, and the configuration is locked.

Two tables: `messages` (one row per message, the export's schema, see table.py) and
`energy` (run, batch, round, energy). A log up to IN_MEMORY bytes on disk is read
into Arrow and queried there; a larger one is first exported to a temporary
Parquet file beside nothing of the user's (the system temp directory) and DuckDB
scans that, so memory stays bounded and a query may read `messages` twice.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa

from neurolocal.errors import ConfigError
from neurolocal.traffic.aggregate import open_stream

IN_MEMORY = 256 << 20
MISSING = ("traffic query needs DuckDB, an optional extra: "
           "pip install 'neurolocal[analysis]' (or pip install duckdb)")


def _duckdb():
    try:
        import duckdb
    except ImportError:
        raise ConfigError(MISSING) from None
    return duckdb


def energy_table(stream) -> pa.Table:
    runs, batches, rounds, values = [], [], [], []
    for (run, batch), energy in sorted(stream.energy.items()):
        for r, e in enumerate(energy):
            runs.append(stream.runs[run])
            batches.append(batch)
            rounds.append(r)
            values.append(e)
    return pa.table({"run": pa.array(runs, pa.string()), "batch": pa.array(batches, pa.int64()),
                     "round": pa.array(rounds, pa.int64()),
                     "energy": pa.array(values, pa.float64())})


def query(source, sql: str) -> pa.Table:
    """Run `sql` over the log; the result as an Arrow table."""
    from neurolocal.traffic.table import export, read_table

    duckdb = _duckdb()
    stream = open_stream(source)
    con = duckdb.connect(":memory:")
    parquet = None
    with tempfile.TemporaryDirectory(prefix="neurolocal-query-") as tmp:
        if stream.total_bytes() <= IN_MEMORY:
            messages = read_table(stream)
            con.register("messages", messages)
        else:
            parquet = Path(tmp) / "messages.parquet"   # (the only file DuckDB may read)
            export(stream, parquet)
            quoted = str(parquet).replace("'", "''")
            con.execute(f"CREATE VIEW messages AS SELECT * FROM read_parquet('{quoted}')")
        con.register("energy", energy_table(stream))
        _lock_down(con, parquet)
        try:
            relation = con.sql(sql)
            if relation is None:  # a statement without rows
                return pa.table({})
            fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
            return fetch()  # DuckDB 2 names it to_arrow_table, 1.x arrow
        except duckdb.Error as exc:
            text = " ".join(str(exc).split())
            raise ConfigError(f"query failed: {text[:300]}") from None
        finally:
            con.close()


def _lock_down(con, parquet: Path | None) -> None:
    """No file, network or extension access from the query: the connection can read the
    log's own temporary Parquet file (if any) and nothing else, install or load nothing,
    and the settings are locked (a query cannot turn them back on). `COPY ... TO`,
    `ATTACH`, `INSTALL`/`LOAD`, `read_csv('/etc/...')` and URLs fail in one line."""
    if parquet is not None:
        quoted = str(parquet).replace("'", "''")
        con.execute(f"SET allowed_paths = ['{quoted}']")
    for setting in ("enable_external_access = false", "autoinstall_known_extensions = false",
                    "autoload_known_extensions = false", "lock_configuration = true"):
        con.execute(f"SET {setting}")


def format_table(table: pa.Table, max_width: int = 40) -> str:
    """An aligned text table of every row (limit rows in the SQL)."""
    columns = table.column_names
    rows = [[_cell(v, max_width) for v in row.values()] for row in table.to_pylist()]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) for t in table.schema.types]
    def line(cells):
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric)).rstrip()
    out = [line(columns), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def _cell(value, width: int) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = str(value)
    return text if len(text) <= width else text[:width - 1] + "…"

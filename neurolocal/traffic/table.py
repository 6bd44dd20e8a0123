"""Traffic logs as Apache Arrow: one row per message, streamed in record batches.

    read_table(LOGDIR)            -> pyarrow.Table (all rows, in memory)
    record_batches(LOGDIR)        -> (schema, iterator of RecordBatch): bounded memory
    export(LOGDIR, "x.parquet")   -> Parquet, CSV (.csv) or Arrow IPC (.arrow / .feather)

The schema (README "Exporting traffic"): run, writer, batch, round, src, dst, kind,
bytes, t_send, t_recv, src_host, dst_host, src_actor, dst_actor, latency_ms, then
any field a later log version appends to its records (numbers as float64, text as
string). Names are dictionary-encoded strings: a vertex name is stored once per
record batch, not once per message. Not imported by engines or actors: only the
commands and analysis code need pyarrow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from neurolocal.errors import ConfigError
from neurolocal.files import atomic_path
from neurolocal.traffic.aggregate import open_stream
from neurolocal.traffic.log import FIELDS
from neurolocal.traffic.stream import FLOAT_FIELDS, INT_FIELDS, STR_FIELDS

NAME = pa.dictionary(pa.int32(), pa.string())
FORMATS = {".parquet": "parquet", ".csv": "csv", ".arrow": "arrow", ".feather": "arrow",
           ".ipc": "arrow"}


def _type(name: str, stream) -> pa.DataType:
    if name in INT_FIELDS:
        return pa.int64()
    if name in FLOAT_FIELDS:
        return pa.float64()
    if name in STR_FIELDS:
        return NAME
    return pa.float64()  # extra fields: refined from the first chunk that has them


def schema_of(stream, extra_types: dict | None = None) -> pa.Schema:
    extra_types = extra_types or {}
    fields = [pa.field("run", NAME, nullable=False), pa.field("writer", NAME, nullable=False)]
    fields += [pa.field(n, _type(n, stream), nullable=False) for n in FIELDS]
    fields.append(pa.field("latency_ms", pa.float64(), nullable=False))
    fields += [pa.field(n, extra_types.get(n, pa.float64())) for n in stream.extra_fields]
    return pa.schema(fields)


class _Names:
    """The stream's string table as an Arrow dictionary, rebuilt only when it grows."""

    def __init__(self, stream):
        self.stream = stream
        self.array = pa.array([], pa.string())

    def dictionary(self) -> pa.Array:
        size = len(self.stream.strings)
        if len(self.array) < size:
            self.array = pa.array([self.stream.name(i) for i in range(size)], pa.string())
        return self.array

    def column(self, ids: np.ndarray) -> pa.DictionaryArray:
        mask = ids < 0
        indices = pa.array(ids, pa.int32(), mask=mask if mask.any() else None)
        return pa.DictionaryArray.from_arrays(indices, self.dictionary())


def _extra_types(stream) -> dict:
    """Arrow types of the extra fields: text when the first chunk holding them says so."""
    if not stream.extra_fields:
        return {}
    types = {}
    for chunk in stream.chunks():
        for name in stream.extra_fields:
            if name in chunk.columns and name not in types:
                column = chunk.columns[name]
                types[name] = NAME if column.dtype == np.int32 else pa.float64()
        if len(types) == len(stream.extra_fields):
            break
    return types


def record_batches(source, on_bytes=None):
    """(schema, generator of RecordBatch), one batch per decoded chunk (bounded memory)."""
    stream = open_stream(source)
    stream.on_bytes = on_bytes
    types = _extra_types(stream)
    schema = schema_of(stream, types)
    names = _Names(stream)

    def batches():
        for chunk in stream.chunks():
            c = chunk.columns
            n = len(chunk)
            run = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)),
                                                 pa.array([chunk.file.run], pa.string()))
            writer = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)),
                                                    pa.array([chunk.file.writer], pa.string()))
            arrays = [run, writer]
            for name in FIELDS:
                arrays.append(names.column(c[name]) if name in STR_FIELDS else pa.array(c[name]))
            arrays.append(pa.array((c["t_recv"] - c["t_send"]) * 1e3))
            for name in stream.extra_fields:
                typ = schema.field(name).type
                if name not in c:
                    arrays.append(pa.nulls(n, typ))
                elif typ == NAME:
                    if c[name].dtype != np.int32:
                        raise ConfigError(f"field {name!r} holds numbers here and text in an "
                                          "earlier record batch", source=str(chunk.file.path))
                    arrays.append(names.column(c[name]))
                else:
                    if c[name].dtype == np.int32:
                        raise ConfigError(f"field {name!r} holds text here and numbers in an "
                                          "earlier record batch", source=str(chunk.file.path))
                    arrays.append(pa.array(c[name], pa.float64(), from_pandas=True))
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    return schema, batches(), stream


def read_table(source) -> pa.Table:
    """Every message of a log (a directory, a run directory, or a `TrafficLog`) as one
    Arrow table; `.to_pandas()`, `duckdb.sql("... FROM table")`, polars all take it."""
    schema, batches, _ = record_batches(source)
    return pa.Table.from_batches(list(batches), schema=schema)


def _plain(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Dictionary columns decoded to strings (CSV and Arrow IPC files take one type per
    column for the whole file; each record batch here has its own dictionary)."""
    arrays = [a.dictionary_decode() if pa.types.is_dictionary(a.type) else a
              for a in batch.columns]
    return pa.RecordBatch.from_arrays(arrays, schema=plain_schema(batch.schema))


def plain_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type)
                               else f.type, f.nullable) for f in schema])


def export_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"unknown export format {suffix or '(none)'!r}; use .parquet, .csv "
                          "or .arrow", source=str(path))
    return FORMATS[suffix]


def ahead(iterator, depth: int = 2):
    """Run `iterator` in a thread, `depth` items ahead: decoding (numba, no GIL) and
    writing (Arrow, no GIL) then use both cores. Errors reach the consumer."""
    import queue
    import threading

    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in iterator:
                if not offer(item):
                    return
            offer(done)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def export(source, path: str | Path, on_bytes=None) -> int:
    """Write every message to `path` (format from its suffix), streaming; returns the
    number of rows. The file appears complete or not at all (written aside, renamed)."""
    path = Path(path)
    kind = export_format(path)
    schema, batches, _ = record_batches(source, on_bytes)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ConfigError("the output's directory does not exist", source=str(path))
    try:
        with atomic_path(path) as tmp:
            return _write_rows(kind, schema, batches, str(tmp))
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}", source=str(path)) from None


def _write_rows(kind: str, schema, batches, tmp: str) -> int:
    """Stream the batches into `tmp` as `kind`; the number of rows written."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    from pyarrow import ipc

    if kind == "parquet":
        numeric = [f.name for f in schema if not pa.types.is_dictionary(f.type)]
        writer = pq.ParquetWriter(tmp, schema, compression="zstd", write_statistics=numeric)
    elif kind == "csv":
        writer = pcsv.CSVWriter(tmp, plain_schema(schema))
    else:
        writer = ipc.new_file(tmp, plain_schema(schema))
    rows = 0
    with writer:
        for batch in ahead(batches):
            writer.write_batch(batch if kind == "parquet" else _plain(batch))
            rows += batch.num_rows
    return rows

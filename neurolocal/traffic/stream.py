"""Read a traffic-log directory as a stream of column chunks, in bounded memory.

`LogStream(directory).chunks()` yields `Chunk`s of at most `rows` records, each a
dict of numpy columns: whole numbers as int64, times as float64, names as int32
ids into the stream's shared `StringTable` (`stream.name(id)`). Memory is one
read block plus one chunk, whatever the log's size. Energy records are collected
per (run, batch) as they pass (`stream.energy`), other side records are counted.

Damage never raises anything but `DataError` (one line naming the file): a
non-regular `*.traffic` entry (directory, FIFO, device) is refused without being
opened; a header, record or energy map of the wrong shape or type names the
record and field. A file cut mid-record is read up to its last whole record with
a warning (`stream.truncated`): the decoder knows exactly where a record ends,
so every cut inside a record is seen.
"""

from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np

from neurolocal.errors import DataError
from neurolocal.traffic import decode as d
from neurolocal.traffic.log import (FIELDS, FORMAT, MAX_OBJECT_BYTES, SUFFIX, VERSION,
                                    TrafficLog)

INT_FIELDS = ("batch", "round", "bytes")
FLOAT_FIELDS = ("t_send", "t_recv")
STR_FIELDS = ("src", "dst", "kind", "src_host", "dst_host", "src_actor", "dst_actor")
BLOCK = MAX_OBJECT_BYTES  # a block always holds any one whole object
ROWS = 1 << 18
#: the type of each header key besides format and version (checked before it is used)
HEADER_TYPES = {"run": str, "writer": str, "graph": str, "settings": dict, "fields": list}
#: fields a header may declare: FIELDS plus the few a later version may add (a header
#: declaring 20,000 made each chunk's buffers 39 GiB)
MAX_FIELDS = 256
MAX_STRINGS = 1 << 20  # distinct names (vertices, hosts, actors, kinds) in one log
MAX_NAME_BYTES = 128 << 20  # and their bytes
TYPE_NAMES = {d.NIL: "nil", d.INT: "an integer", d.FLOAT: "a float", d.STR: "a string",
              d.BOOL: "a boolean"}


@dataclass
class FileInfo:
    path: Path
    run: str
    writer: str
    graph: str
    settings: dict
    fields: tuple[str, ...]
    header: dict
    records: int = 0
    truncated: bool = False


@dataclass
class Chunk:
    """Records of one file: `columns[name]` arrays of equal length; names are ids."""

    file: FileInfo
    run: int  # index into LogStream.runs
    first: int  # record number of row 0 within its file
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.columns["batch"])


def log_files(directory: str | Path) -> list[Path]:
    """The stream files of a log directory (or of a run directory holding `traffic/`)."""
    directory = Path(directory)
    if not directory.is_dir():
        if directory.exists():
            raise DataError("not a directory (a traffic log is a directory of *.traffic "
                            "files)", source=str(directory))
        raise DataError("no such traffic-log directory", source=str(directory))
    files = sorted(directory.glob(f"*{SUFFIX}"))
    if not files and (directory / "traffic").is_dir():
        return log_files(directory / "traffic")
    if not files:
        raise DataError(f"no *{SUFFIX} files in this directory", source=str(directory))
    for path in files:
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            raise DataError(f"cannot read: {exc.strerror}", source=str(path)) from None
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise DataError(f"is {kind}; a log holds regular *{SUFFIX} files only",
                            source=str(path))
    return files


class LogStream:
    """Every file of a log directory, decoded chunk by chunk (see the module doc)."""

    def __init__(self, directory: str | Path, rows: int = ROWS):
        self.files = [FileInfo(p, "", "", "", {}, FIELDS, {}) for p in log_files(directory)]
        self.directory = self.files[0].path.parent
        self.rows = rows
        self.strings = d.StringTable()
        self.runs: list[str] = []
        self.energy: dict[tuple[int, int], list[float]] = {}
        self.side_records = 0
        self.extra_fields: list[str] = []
        self.on_bytes = None  # called with the size of each block read (progress bars)
        self._warned: set[Path] = set()
        self._read_headers()

    # --- names --------------------------------------------------------------------------

    def name(self, sid: int) -> str:
        names = self.strings.names
        if len(names) < len(self.strings):
            names.extend([None] * (len(self.strings) - len(names)))
        text = names[sid]
        if text is None:
            try:
                text = self.strings.bytes_of(sid).decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"a name that is not UTF-8 text "
                                f"({self.strings.bytes_of(sid)[:40]!r})",
                                source=str(self.directory)) from None
            names[sid] = text
        return text

    def names(self, ids) -> list[str]:
        return [self.name(int(i)) for i in ids]

    def id_of(self, text: str) -> int:
        return self.strings.intern_text(text)

    @property
    def settings(self) -> dict:
        return self.files[0].settings if self.files else {}

    def settings_of_run(self, run: int) -> dict:
        return next(f.settings for f in self.files if f.run == self.runs[run])

    def source_of_run(self, run: int) -> str:
        return next(str(f.path) for f in self.files if f.run == self.runs[run])

    @property
    def truncated(self) -> list[str]:
        return [str(f.path) for f in self.files if f.truncated]

    # --- headers ------------------------------------------------------------------------

    def _read_headers(self) -> None:
        for info in self.files:
            header = _read_header(info.path)
            self._check_header(info, header)
            if info.run not in self.runs:
                self.runs.append(info.run)
            known = set(self.extra_fields)
            for name in info.fields[len(FIELDS):]:
                if name not in known:
                    known.add(name)
                    self.extra_fields.append(name)
            if len(FIELDS) + len(self.extra_fields) > MAX_FIELDS:
                raise DataError(f"the headers declare {len(FIELDS) + len(self.extra_fields)} "
                                f"fields, more than {MAX_FIELDS}: not a traffic log of this "
                                "or a later version", source=str(info.path))

    def _check_header(self, info: FileInfo, header) -> None:
        source = str(info.path)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise DataError("not a neurolocal traffic log (bad header)", source=source)
        if header.get("version") != VERSION:
            raise DataError(f"traffic-log version {str(header.get('version'))[:40]} is not "
                            f"supported (expected {VERSION})", source=source)
        for key, kind in HEADER_TYPES.items():
            if key in header and not isinstance(header[key], kind):
                raise DataError(f"header field {key!r} is not a {kind.__name__}", source=source)
        fields = tuple(header.get("fields") or FIELDS)
        if len(fields) > MAX_FIELDS:
            raise DataError(f"header declares {len(fields)} fields, more than {MAX_FIELDS}: "
                            "not a traffic log of this or a later version", source=source)
        if fields[:len(FIELDS)] != FIELDS or not all(isinstance(f, str) for f in fields) \
                or len(set(fields)) != len(fields):
            raise DataError(f"header 'fields' must start with {list(FIELDS)} (got "
                            f"{str(list(fields))[:80]})", source=source)
        info.header = header
        info.run = header.get("run", "") or info.path.name.split(".")[0]
        info.writer = header.get("writer", "")
        info.graph = header.get("graph", "")
        info.settings = header.get("settings", {})
        info.fields = fields

    # --- records ------------------------------------------------------------------------

    def chunks(self):
        """Every record of every file, `rows` at a time (files in name order)."""
        for info in self.files:
            yield from self._file_chunks(info)

    def _file_chunks(self, info: FileInfo):
        nfields = len(info.fields)
        run = self.runs.index(info.run)
        source = str(info.path)
        rows = max(1, min(self.rows, self.rows * len(FIELDS) // nfields))  # bytes as for FIELDS
        tags = np.empty((rows, nfields), np.uint8)
        vals = np.empty((rows, nfields), np.int64)
        filled, first = 0, 0
        info.records, info.truncated = 0, False
        with open(info.path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise DataError("not a regular file", source=source)
            buf = f.read(BLOCK)
            self._progress(len(buf))
            _, pos = _first_object(buf, info.path)  # the header, checked in _read_headers
            eof = len(buf) < BLOCK
            while True:
                arr = np.frombuffer(buf, np.uint8)
                n, pos, status = d.decode_records(
                    arr, pos, len(buf), nfields, tags[filled:], vals[filled:],
                    MAX_OBJECT_BYTES, *self.strings.args())
                filled += n
                if status == d.FULL:
                    yield self._chunk(info, run, first, tags[:filled], vals[:filled])
                    first += filled
                    info.records += filled
                    filled = 0
                elif status == d.TABLE_FULL:
                    if len(self.strings) >= MAX_STRINGS or \
                            self.strings.store.size > MAX_NAME_BYTES:
                        raise DataError(f"more than {MAX_STRINGS} distinct names or "
                                        f"{MAX_NAME_BYTES >> 20} MB of names after "
                                        f"{info.records + filled} records: not a traffic log "
                                        "of a graph", source=source)
                    self.strings.grow(MAX_OBJECT_BYTES)
                elif status == d.CORRUPT:
                    raise DataError(f"corrupt record after {info.records + filled} records",
                                    source=source)
                elif status in (d.END, d.NEED_MORE) or (status == d.OTHER
                                                        and len(buf) - pos < MAX_OBJECT_BYTES
                                                        and not eof):
                    if eof:
                        if pos < len(buf):
                            info.truncated = True
                        break
                    more = f.read(BLOCK)
                    self._progress(len(more))
                    eof = len(more) < BLOCK
                    buf = buf[pos:] + more
                    pos = 0
                else:  # OTHER with enough bytes buffered: one object the slow way
                    item, used = _one_object(buf, pos, eof, info.path,
                                             info.records + filled)
                    if item is None:  # cut inside the object at the end of the file
                        info.truncated = True
                        break
                    self._side_record(item, info, run, info.records + filled)
                    pos += used
        if filled:
            yield self._chunk(info, run, first, tags[:filled], vals[:filled])
            info.records += filled
        if info.truncated and info.path not in self._warned:  # once, however many passes
            self._warned.add(info.path)
            warnings.warn(f"{info.path}: truncated tail after {info.records} whole records; "
                          "read up to the last whole record", stacklevel=3)

    def _progress(self, size: int) -> None:
        if self.on_bytes is not None:
            self.on_bytes(size)

    def total_bytes(self) -> int:
        return sum(f.path.stat().st_size for f in self.files)

    def _side_record(self, item, info: FileInfo, run: int, count: int) -> None:
        source = str(info.path)
        if isinstance(item, dict) and "energy" in item:
            value = item["energy"]
            if not (isinstance(value, (list, tuple)) and len(value) == 2
                    and _is_int(value[0]) and isinstance(value[1], (list, tuple))
                    and all(_is_number(e) for e in value[1])):
                raise DataError(f"energy record after {count} records is not "
                                "[batch, [numbers...]]", source=source)
            self.energy[(run, int(value[0]))] = [float(e) for e in value[1]]
        elif isinstance(item, dict):
            self.side_records += 1  # a record kind of a later version: not ours to judge
        elif isinstance(item, (list, tuple)):
            if len(item) != len(info.fields):
                raise DataError(f"malformed record after {count} records ({len(item)} fields, "
                                f"the header declares {len(info.fields)})", source=source)
            bad = next((i for i, v in enumerate(item) if not _is_scalar(v)), None)
            if bad is not None:
                raise DataError(f"malformed record after {count} records: field "
                                f"{info.fields[bad]!r} is a {type(item[bad]).__name__}",
                                source=source)
            big = next((i for i, v in enumerate(item) if _is_int(v)
                        and not -(1 << 63) <= v < (1 << 63)), 0)
            raise DataError(f"malformed record after {count} records: field "
                            f"{info.fields[big]!r} is beyond a 64-bit integer", source=source)
        else:
            raise DataError(f"malformed record after {count} records (a "
                            f"{type(item).__name__}, not a record)", source=source)

    def _chunk(self, info: FileInfo, run: int, first: int, tags, vals) -> Chunk:
        """Typed columns from the tags/values of `len(tags)` records; wrong types name
        the record and field."""
        chunk = Chunk(info, run, first)
        for j, name in enumerate(info.fields):
            tag, val = tags[:, j], vals[:, j]
            if name in INT_FIELDS:
                _expect(tag, (d.INT,), name, "a whole number", info, first)
                chunk.columns[name] = val.copy()
            elif name in FLOAT_FIELDS:
                _expect(tag, (d.INT, d.FLOAT), name, "a number", info, first)
                times = np.where(tag == d.FLOAT, val.view(np.float64), val.astype(np.float64))
                finite = np.isfinite(times)
                if not finite.all():   # NaN or inf: no binning, sorting or JSON of it holds
                    i = int(np.argmin(finite))
                    raise DataError(f"record {first + i}: field {name!r} is {times[i]}, "
                                    "expected a finite time", source=str(info.path))
                chunk.columns[name] = times
            elif name in STR_FIELDS:
                _expect(tag, (d.STR,), name, "a string", info, first)
                chunk.columns[name] = val.astype(np.int32)
            else:  # a field of a later version: numbers as float64, names as ids
                numeric = (tag == d.INT) | (tag == d.FLOAT) | (tag == d.BOOL)
                if numeric.any() or not (tag == d.STR).any():
                    _expect(tag, (d.INT, d.FLOAT, d.BOOL, d.NIL), name, "a number", info,
                            first)
                    column = np.where(tag == d.FLOAT, val.view(np.float64),
                                      val.astype(np.float64))
                    column[tag == d.NIL] = np.nan
                    chunk.columns[name] = column
                else:
                    _expect(tag, (d.STR, d.NIL), name, "a string", info, first)
                    chunk.columns[name] = np.where(tag == d.STR, val, -1).astype(np.int32)
        return chunk


def _expect(tag: np.ndarray, allowed: tuple, name: str, what: str, info: FileInfo,
            first: int) -> None:
    ok = np.isin(tag, allowed) if len(allowed) > 1 else tag == allowed[0]
    if not ok.all():
        i = int(np.argmin(ok))
        raise DataError(f"record {first + i}: field {name!r} is {TYPE_NAMES.get(int(tag[i]))}, "
                        f"expected {what}", source=str(info.path))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_scalar(v) -> bool:
    return v is None or isinstance(v, (int, float, str, bool))


def _unpacker() -> msgpack.Unpacker:
    return msgpack.Unpacker(raw=False, max_buffer_size=MAX_OBJECT_BYTES, strict_map_key=False,
                            use_list=True)


def _read_header(path: Path):
    """The first object of a file, reading no more than it needs (most are < 1 kB)."""
    size = 1 << 16
    with open(path, "rb") as f:
        buf = f.read(size)
        while True:
            try:
                return _first_object(buf, path, partial_ok=len(buf) == size)[0]
            except msgpack.OutOfData:
                size *= 16
                buf += f.read(size - len(buf))


def _first_object(buf: bytes, path: Path, partial_ok: bool = False):
    """The header: the file's first object, and where the records begin."""
    unpacker = _unpacker()
    unpacker.feed(buf[:MAX_OBJECT_BYTES])
    try:
        header = unpacker.unpack()
    except msgpack.OutOfData:
        if partial_ok and len(buf) < MAX_OBJECT_BYTES:
            raise
        raise DataError("empty or truncated before its header", source=str(path)) from None
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as exc:
        raise DataError(f"not a traffic log ({exc})", source=str(path)) from None
    return header, unpacker.tell()


def _one_object(buf: bytes, pos: int, eof: bool, path: Path, count: int):
    """One msgpack object at buf[pos:]; (None, 0) when the file ends inside it."""
    unpacker = _unpacker()
    unpacker.feed(buf[pos:pos + MAX_OBJECT_BYTES])
    try:
        item = unpacker.unpack()
    except msgpack.OutOfData:
        if eof and len(buf) - pos < MAX_OBJECT_BYTES:
            return None, 0
        raise DataError(f"corrupt record after {count} records (an object over "
                        f"{MAX_OBJECT_BYTES >> 20} MB)", source=str(path)) from None
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as exc:
        raise DataError(f"corrupt record after {count} records ({exc})",
                        source=str(path)) from None
    return item, unpacker.tell()


def read_traffic(directory: str | Path) -> TrafficLog:
    """Read every stream file in `directory` into memory; a cut tail is warned, not fatal.
    (`directory` may also be a run directory holding `traffic/`.)"""
    stream = LogStream(directory)
    parts: dict[str, list[np.ndarray]] = {}
    runs: list[np.ndarray] = []
    for chunk in stream.chunks():
        for name, column in chunk.columns.items():
            parts.setdefault(name, []).append(column)
        runs.append(np.full(len(chunk), chunk.run, np.int32))
    names = list(FIELDS) + stream.extra_fields
    columns: dict[str, np.ndarray] = {}
    for name in names:
        column = np.concatenate(parts[name]) if name in parts else np.array([])
        if name in STR_FIELDS or (column.dtype == np.int32 and name not in FIELDS):
            table = np.array([stream.name(i) if i >= 0 else "" for i in range(len(stream.strings))]
                             + [""], dtype=object)
            column = table[column] if column.size else np.array([], dtype=object)
        columns[name] = column
    run_ids = np.concatenate(runs) if runs else np.array([], np.int32)
    columns["run"] = np.array(stream.runs + [""], dtype=object)[run_ids] if runs \
        else np.array([], dtype=object)
    energy = {batch: values for (_, batch), values in stream.energy.items()}
    return TrafficLog(stream.directory, [f.header for f in stream.files], columns, energy,
                      stream.truncated)

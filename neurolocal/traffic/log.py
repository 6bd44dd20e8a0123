"""The traffic-log format.

A log is a directory of append-only msgpack stream files, one per writer (the
local engine, or each Ray actor): `<run>.<writer>.traffic`. Each file starts with a
header map and continues with one array per message, in the order of `FIELDS`:

    header  {"format": "neurolocal-traffic", "version": 1, "run": str, "writer": str,
             "fields": [...], "graph": str, "settings": {...}}
    record  [batch, round, src, dst, kind, bytes, t_send, t_recv,
             src_host, dst_host, src_actor, dst_actor]
    energy  {"energy": [batch, [energy after each round]],   (optional, any position)
             "vertex_energy": {vertex: [its energy after each round]}}   (optional key)

`round` 0 carries the forward pass (values); relaxation round t >= 1 carries the
messages that update t consumes. `kind` is one of KINDS. Times are Unix seconds
(float). `src`/`dst` are logical vertex names ("scheduler" for control).
Records are buffered in memory and written per batch of rounds, never one file
write per message. A file whose tail was cut (a killed writer) reads up to its
last whole record, with a warning.

Asynchronous runs also write replay journals (`*.replay`) beside the streams, read by
`neurolocal replay`, not by these readers (docs/traffic.md §5, engines/journal.py).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np

FORMAT = "neurolocal-traffic"
VERSION = 1
FIELDS = ("batch", "round", "src", "dst", "kind", "bytes", "t_send", "t_recv",
          "src_host", "dst_host", "src_actor", "dst_actor")
KINDS = ("value", "error", "partial", "param", "control")
#: the header's keys (a reader checks each one's type: traffic/stream.py)
HEADER_KEYS = ("format", "version", "run", "writer", "fields", "graph", "settings")
SCHEDULER = "scheduler"
SUFFIX = ".traffic"
#: a single record or header never legitimately exceeds this; larger means corruption
MAX_OBJECT_BYTES = 16 << 20


class TrafficRecorder:
    """Buffers message records of one writer and appends them to its stream file."""

    def __init__(self, directory: str | Path, run: str, writer: str, *, graph: str = "",
                 settings: dict | None = None, flush_every: int = 4096):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"{run}.{_safe(writer)}{SUFFIX}"
        self.host = socket.gethostname()
        self.flush_every = flush_every
        self._packer = msgpack.Packer(use_bin_type=True)
        self._pending: list[bytes] = [self._packer.pack({
            "format": FORMAT, "version": VERSION, "run": run, "writer": writer,
            "fields": list(FIELDS), "graph": graph, "settings": settings or {},
        })]
        self._records: list[tuple] = []
        self._packed: list[bytes] = []   # records appended packed since the last flush
        self._packed_count = 0
        self._file = None

    def record(self, batch: int, round_: int, src: str, dst: str, kind: str, nbytes: int,
               t_send: float, t_recv: float, src_host: str | None = None,
               dst_host: str | None = None, src_actor: str = "", dst_actor: str = "") -> None:
        self._records.append((batch, round_, src, dst, kind, int(nbytes), t_send, t_recv,
                              src_host or self.host, dst_host or self.host, src_actor, dst_actor))
        if len(self._records) >= self.flush_every:
            self.flush()

    def record_packed(self, data: bytes, count: int) -> None:
        """`count` records already packed (the planned path's templates,
        engines/plan/traffic.py), appended as they are."""
        self._packed.append(data)
        self._packed_count += count
        if self._packed_count + len(self._records) >= self.flush_every:
            self.flush()

    def record_energy(self, batch: int, energy: list[float],
                      vertex_energy: dict[str, list[float]] | None = None) -> None:
        """The batch's energy after each round and, when given, each vertex's share (the
        per-layer audit from the log, traffic/depth.py; readers that do not know the key
        read the total as before)."""
        record: dict = {"energy": [batch, [float(e) for e in energy]]}
        if vertex_energy:
            record["vertex_energy"] = {str(n): [float(e) for e in values]
                                       for n, values in vertex_energy.items()}
        self._pending.append(self._packer.pack(record))

    def flush(self) -> None:
        """Append what is buffered and hand it to the OS (a killed process loses none of it)."""
        pack = self._packer.pack
        chunks = self._pending + [pack(r) for r in self._records] + self._packed
        self._pending, self._records, self._packed, self._packed_count = [], [], [], 0
        if chunks:
            if self._file is None:
                self._file = open(self.path, "ab")  # noqa: SIM115 - kept open between batches
            self._file.write(b"".join(chunks))
            self._file.flush()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None

    def __del__(self):
        if getattr(self, "_file", None) is not None:
            self._file.close()

    def __getstate__(self):
        # a recorder travelling to another process opens its own file there
        state = dict(self.__dict__)
        state["_file"] = None
        state["_packer"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._packer = msgpack.Packer(use_bin_type=True)


def payload_bytes(payload) -> int:
    """Bytes a message's payload carries on the wire (array data; 0 for control)."""
    if payload is None:
        return 0
    if isinstance(payload, np.ndarray):
        return payload.nbytes
    if isinstance(payload, dict):
        return sum(payload_bytes(v) for v in payload.values())
    if isinstance(payload, (list, tuple)):
        return sum(payload_bytes(v) for v in payload)
    return 8


def now() -> float:
    return time.time()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


@dataclass
class TrafficLog:
    """Every record of a log directory in memory, as column arrays (names as str), plus
    the writers' headers. For small logs and tests; large logs are read as a stream
    (`neurolocal.traffic.stream.LogStream`) or as Arrow (`neurolocal.traffic.read_table`)."""

    directory: Path
    headers: list[dict]
    columns: dict[str, np.ndarray]
    energy: dict[int, list[float]] = field(default_factory=dict)
    truncated: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.columns["batch"])

    @property
    def settings(self) -> dict:
        return self.headers[0].get("settings", {}) if self.headers else {}

    def rows(self):
        names = list(self.columns)
        for i in range(len(self)):
            yield {n: self.columns[n][i] for n in names}


def new_run_id() -> str:
    """Time-ordered and unique: two runs of one process in the same second (a resumed
    run, an in-process test) must not append to each other's stream files."""
    return time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}-{uuid.uuid4().hex[:6]}"

"""Replay journals: what an asynchronous run must record to be re-executed bit for bit
(docs/asynchrony.md §6). Transport-free: the sim engine and the Ray actors and driver
write them, `neurolocal replay` (engines/replay.py) reads them.

A Ray run writes msgpack *streams* (a header map, then one map per object, appended
as the run goes; a cut tail, a killed writer's, reads up to its last whole object):

    <run>.scheduler.replay   the driver: header {"format": FORMAT, "version": 2,
                             "writer": "scheduler", "engine": "ray", "run", "graph",
                             "topology", "topology_text", "mode", "schedule",
                             "staleness", "asynchrony"}, then events
                             {"event": "restore", "params", "optimizer", "learning"}
                             {"event": "batch", "batch", "eta", "iterations",
                              "read_inputs", "training", "params" (relaxing only),
                              "inputs", "target", "digest"}
                             {"event": "snapshot", "after", "digest"}
    <run>.actor-<i>.replay   each actor: header {"format", "version": 2, "writer",
                             "vertices"}, then per batch {"batch", "reads", "stale",
                             "lost"}

`reads` [vertex, update, child, tag]: in consumption order, the tag of every child's
feedback each update of each hidden vertex used (asynchronous rounds); `stale`
[batch, src, dst, kind, tag]: messages the actor's store discarded (a newer tag was
held, or their batch was over); `lost` [kind, src, dst, tag, held tag or None]:
messages lost without retransmission and the tag of the payload the receiver went on
with (None: zeros). Arrays are {"dtype", "shape", "data"}.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgpack
import numpy as np

FORMAT, SUFFIX = "neurolocal-replay", ".replay"
STREAM_VERSION = 2


def pack_array(a) -> dict:
    a = np.array(a, order="C", copy=True)   # (ascontiguousarray makes a 0-d array 1-d)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def unpack_array(d) -> np.ndarray:
    return np.frombuffer(d["data"], dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


def pack_params(params) -> dict:
    return {v: {k: pack_array(a) for k, a in ps.items()} for v, ps in params.items()}


def unpack_params(packed) -> dict:
    return {v: {k: unpack_array(a) for k, a in ps.items()} for v, ps in packed.items()}


def _hasher():
    h = hashlib.sha256()

    def add(label: str, value) -> None:
        h.update(label.encode())
        h.update(np.ascontiguousarray(value, dtype=np.float64).tobytes())

    return h, add


def relaxation_digest(graph, relaxation) -> str:
    """sha256 of a relaxation's numbers in graph order (what a replay must reproduce)."""
    h, add = _hasher()
    for name in graph.order:
        for key, value in sorted(relaxation.dtheta.get(name, {}).items()):
            add(f"dtheta {name}.{key}", value)
        if name in relaxation.errors:
            add(f"error {name}", relaxation.errors[name])
        if name in relaxation.input_feedback:
            add(f"input {name}", relaxation.input_feedback[name])
    add("energy", relaxation.energy)
    return h.hexdigest()


def step_digest(step) -> str:
    """sha256 of a training batch's scalars: loss, hits, energy per round."""
    h, add = _hasher()
    add("loss", [step.loss])
    add("hits", [step.hits])
    add("energy", step.energy)
    return h.hexdigest()


def vertex_digests(results) -> dict:
    """Per vertex, sha256 of what its shard reported (energy per round, and when relaxing
    its dtheta, error and dL/dx): a differing replay names the first vertex that differs."""
    out = {}
    for result in results:
        for name, energy in result["energy"].items():
            h, add = _hasher()
            add("energy", energy)
            for key, value in sorted(result.get("dtheta", {}).get(name, {}).items()):
                add(f"dtheta {key}", value)
            if name in result.get("errors", {}):
                add("error", result["errors"][name])
            if name in result.get("input_feedback", {}):
                add("input", result["input_feedback"][name])
            out[name] = h.hexdigest()
    return out


def state_digest(params, optimizer) -> str:
    """sha256 of a snapshot: every parameter and optimizer array, sorted by name."""
    h = hashlib.sha256()
    for vertex in sorted(params):
        for key in sorted(params[vertex]):
            a = np.ascontiguousarray(params[vertex][key])
            h.update(f"param {vertex}.{key} {a.dtype.str} {a.shape}".encode())
            h.update(a.tobytes())
    for key in sorted(optimizer or {}):
        a = np.ascontiguousarray(optimizer[key])
        h.update(f"optimizer {key} {a.dtype.str} {a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class JournalStream:
    """An append-only msgpack stream: the header first, then `append`ed objects, each
    written and handed to the OS at once (a killed process loses only what it had not
    appended)."""

    def __init__(self, path: str | Path, header: dict):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._packer = msgpack.Packer(use_bin_type=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open for the run
        self.append({"format": FORMAT, "version": STREAM_VERSION, **header})

    def append(self, obj: dict) -> None:
        if self._file is None:
            return
        self._file.write(self._packer.pack(obj))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_stream(path: Path, limit: int | None = None) -> tuple[list, bool]:
    """Every whole object of a journal stream, and whether its tail was cut. Only a
    regular file of at most `limit` bytes (default: the budget's data_bytes) is read (a
    FIFO, /dev/zero or a link to one is refused in one line: files.read_bytes); each
    object is bounded by the same size."""
    from neurolocal.errors import DataError
    from neurolocal.files import read_bytes
    from neurolocal.limits import default_budget

    limit = default_budget().data_bytes if limit is None else limit
    data = read_bytes(path, limit, DataError, "replay journal")
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(data), 1),
                                strict_map_key=False)
    unpacker.feed(data)
    objects, cut = [], False
    try:
        for obj in unpacker:
            objects.append(obj)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError):
        cut = True
    if unpacker.tell() != len(data):
        cut = True
    return objects, cut

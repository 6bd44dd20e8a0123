"""A replay journal checked against the topology it names before anything runs (issue 28).

`neurolocal replay` reads msgpack an earlier run wrote, or that someone edited. Every
field is checked here first: its type, its range, and against the graph — vertex
names, parameter and input shapes, dtypes, counts — and its numbers against the
budget (`neurolocal.limits`: a batch's vertex rounds and activations, an optimizer's
updates per batch). A problem is one `DataError` naming the journal and the field;
nothing is replayed half-way.

The schemas are the dicts below (field -> required); tests/schema_walk.py walks them.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from neurolocal.checks import number
from neurolocal.errors import DataError, NeurolocalError
from neurolocal.limits import Budget

#: headers: the sim engine's single map (version 1), a Ray driver's stream, an actor's
SIM_HEADER = {"format": True, "version": True, "graph": True, "topology": True, "mode": True,
              "schedule": True, "staleness": True, "batches": True}
SCHEDULER_HEADER = {"format": True, "version": True, "writer": True, "engine": True,
                    "run": True, "graph": True, "topology": True, "topology_text": True,
                    "mode": True, "schedule": True, "staleness": True,
                    "vertices_per_actor": False, "actors": False, "asynchrony": False}
ACTOR_HEADER = {"format": True, "version": True, "writer": True, "vertices": True}
#: events (a sim journal's batches are batch events without "event" and "training")
BATCH = {"event": True, "batch": True, "eta": True, "iterations": True, "read_inputs": True,
         "training": True, "staleness": False, "params": False, "inputs": True,
         "target": True, "reads": True, "lost": True, "stale": False, "digest": True,
         "vertices": False}
RESTORE = {"event": True, "params": True, "optimizer": True, "learning": True}
SNAPSHOT = {"event": True, "after": True, "digest": True, "vertices": False}
LEARNING = {"optimizer": True, "lr": True, "options": True, "updates_per_batch": True}
ACTOR_ENTRY = {"batch": True, "reads": False, "stale": False, "lost": False}
ARRAY = {"dtype": True, "shape": True, "data": True}
SCHEMAS = {"sim header": SIM_HEADER, "scheduler header": SCHEDULER_HEADER,
           "actor header": ACTOR_HEADER, "batch": BATCH, "restore": RESTORE,
           "snapshot": SNAPSHOT, "learning": LEARNING, "actor entry": ACTOR_ENTRY,
           "array": ARRAY}

MAX_WHOLE = 1 << 62
MAX_TEXT = 4096
_DTYPE = re.compile(r"[<>|=]?(f[248]|i[1248]|u[1248]|b1)")
_DIGEST = re.compile(r"[0-9a-f]{64}")


class Checker:
    """The checks of one journal file: each failure names the file and the field."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, message: str) -> DataError:
        return DataError(message, source=self.source, field=where)

    def mapping(self, value: Any, where: str, schema: dict) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if key not in schema:
                shown = key[:40] if isinstance(key, str) else _kind(key)
                raise self.fail(where, f"unknown field {shown!r} (expected "
                                       f"{', '.join(schema)})")
        for key, required in schema.items():
            if required and key not in value:
                raise self.fail(f"{where}.{key}" if where else key, "missing")
        return value

    def whole(self, value: Any, where: str, low: int = 0, high: int = MAX_WHOLE) -> int:
        """An integer as msgpack typed it (1e9, a float, is not one) in [low, high]."""
        try:
            return number(where, value, whole=True, strict=True, minimum=low, maximum=high,
                          error=DataError)
        except DataError as exc:
            raise exc.located(source=self.source) from None

    def number(self, value: Any, where: str) -> float:
        try:
            return number(where, value, error=DataError)
        except DataError as exc:
            raise exc.located(source=self.source) from None

    def flag(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"expected true or false, got {_kind(value)}")
        return value

    def text(self, value: Any, where: str, choices=None) -> str:
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise self.fail(where, f"expected a text, got {_kind(value)}")
        if choices is not None and value not in choices:
            shown = sorted(map(str, choices))
            more = ", ..." if len(shown) > 8 else ""
            raise self.fail(where, f"expected one of {', '.join(shown[:8])}{more}, got "
                                   f"{value[:40]!r}")
        return value

    def items(self, value: Any, where: str, length: int | None = None) -> list:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {_kind(value)}")
        if length is not None:
            for i, item in enumerate(value):
                if not isinstance(item, list) or len(item) != length:
                    raise self.fail(f"{where}[{i}]", f"expected a list of {length} values, "
                                                     f"got {_kind(item)}")
        return value

    def digest(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not _DIGEST.fullmatch(value):
            raise self.fail(where, "expected a sha256 digest (64 hex digits)")
        return value

    def array(self, value: Any, where: str, shape: tuple | None = None,
              floats_only: bool = False) -> np.ndarray:
        """A packed array (journal.pack_array): numeric dtype, shape, data of that size,
        finite; `shape` given: exactly that shape."""
        self.mapping(value, where, ARRAY)
        dtype = value["dtype"]
        if not isinstance(dtype, str) or not _DTYPE.fullmatch(dtype):
            raise self.fail(f"{where}.dtype", "expected a numeric dtype (f8, f4, i8, ...), "
                                              f"got {_kind(dtype)}")
        dtype = np.dtype(dtype)
        if floats_only and dtype.kind != "f":
            raise self.fail(f"{where}.dtype", f"expected floating point, got {dtype}")
        dims = self.items(value["shape"], f"{where}.shape")
        if len(dims) > 8:
            raise self.fail(f"{where}.shape", f"{len(dims)} dimensions, at most 8")
        for i, d in enumerate(dims):
            self.whole(d, f"{where}.shape[{i}]", 0, MAX_WHOLE)
        data = value["data"]
        if not isinstance(data, bytes):
            raise self.fail(f"{where}.data", f"expected bytes, got {_kind(data)}")
        if math.prod(dims) * dtype.itemsize != len(data):
            raise self.fail(f"{where}.data", f"holds {len(data)} bytes, shape {dims} of "
                                             f"{dtype} needs {math.prod(dims) * dtype.itemsize}")
        if shape is not None and tuple(dims) != tuple(shape):
            raise self.fail(where, f"has shape {dims}, the topology needs {list(shape)}")
        a = np.frombuffer(data, dtype=dtype).reshape(dims)
        if dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise self.fail(where, "holds NaN or infinite values")
        return a


def _kind(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    return type(value).__name__


# --- before the graph is known ------------------------------------------------------------------


def check_header(header: dict, source: str, budget: Budget) -> dict:
    """A stream's or sim journal's header (format and version already matched)."""
    c = Checker(source)
    if header.get("version") == 1:
        c.mapping(header, "", SIM_HEADER)
        c.items(header["batches"], "batches")
        for i, b in enumerate(header["batches"]):
            c.mapping(b, f"batches[{i}]", {k: r for k, r in BATCH.items()
                                           if k not in ("event", "training")})
    elif header.get("writer") == "scheduler":
        c.mapping(header, "", SCHEDULER_HEADER)
        c.text(header["run"], "run")
        c.text(header["engine"], "engine", ("ray",))
        if header.get("topology_text") is not None:
            c.text(header["topology_text"], "topology_text")
        c.whole(header.get("actors", 0), "actors", 0, budget.vertices)
    else:
        c.mapping(header, "", ACTOR_HEADER)
        c.text(header["writer"], "writer")
        c.items(header["vertices"], "vertices")
        if len(header["vertices"]) > budget.vertices:
            raise c.fail("vertices", f"{len(header['vertices'])} vertices, more than the "
                                     f"budget of {budget.vertices}")
        for i, v in enumerate(header["vertices"]):
            c.text(v, f"vertices[{i}]")
    c.whole(header["version"], "version", 1, 2)
    if "graph" in header:
        c.text(header["graph"], "graph")
    if "topology" in header and header["topology"] is not None:
        c.text(header["topology"], "topology")
    for key in ("mode", "schedule"):
        if key in header:
            c.text(header[key], key)
    if "staleness" in header:
        c.whole(header["staleness"], "staleness", 0, budget.vertex_rounds)
    return header


def check_actor_entries(entries: list, source: str) -> None:
    """An actor's per-batch records, before they are merged into the driver's batches."""
    c = Checker(source)
    for i, entry in enumerate(entries):
        c.mapping(entry, f"entry {i}", ACTOR_ENTRY)
        c.whole(entry["batch"], f"entry {i}.batch")
        for key in ("reads", "stale", "lost"):
            if key in entry:
                c.items(entry[key], f"entry {i}.{key}")


# --- against the graph ------------------------------------------------------------------------


def check_journal(journal, graph, budget: Budget) -> None:
    """Every event of a journal against `graph` and the budget (before any is replayed)."""
    from neurolocal.engines.schedule import check_schedule

    c = Checker(str(journal.source))
    header = journal.header
    if header["graph"] != graph.name:
        raise c.fail("graph", f"names graph {header['graph'][:40]!r}, its topology is "
                              f"{graph.name!r}")
    try:
        check_schedule(header["schedule"], header["mode"], header["staleness"], graph)
    except NeurolocalError as exc:
        raise c.fail(exc.field or "schedule", exc.detail) from None
    restored = False
    for i, event in enumerate(journal.events):
        where = f"event {i}"
        if not isinstance(event, dict):
            raise c.fail(where, f"expected a mapping, got {_kind(event)}")
        kind = c.text(event.get("event"), f"{where}.event", ("batch", "restore", "snapshot"))
        if kind == "restore":
            _restore(c, event, where, graph, budget)
            restored = True
        elif kind == "snapshot":
            c.mapping(event, where, SNAPSHOT)
            c.whole(event["after"], f"{where}.after")
            c.digest(event["digest"], f"{where}.digest")
            _vertex_digests(c, event, where, graph)
        else:
            _batch(c, event, where, graph, budget, header)
            if event["training"] and not restored:
                raise c.fail(where, "a training batch before any restore event")


def _params(c: Checker, value: Any, where: str, graph) -> None:
    expected = graph.param_shapes()
    c.mapping(value, where, dict.fromkeys(expected, True))
    for vertex, shapes in expected.items():
        c.mapping(value[vertex], f"{where}.{vertex}", dict.fromkeys(shapes, True))
        for name, shape in shapes.items():
            c.array(value[vertex][name], f"{where}.{vertex}.{name}", shape, floats_only=True)


def _restore(c: Checker, event: dict, where: str, graph, budget: Budget) -> None:
    from neurolocal.optimizers import OPTIMIZERS, make_optimizer

    c.mapping(event, where, RESTORE)
    _params(c, event["params"], f"{where}.params", graph)
    learning = c.mapping(event["learning"], f"{where}.learning", LEARNING)
    name = c.text(learning["optimizer"], f"{where}.learning.optimizer", OPTIMIZERS)
    if learning["lr"] is not None:
        c.number(learning["lr"], f"{where}.learning.lr")
    options = c.items(learning["options"], f"{where}.learning.options", length=2)
    for j, (key, _) in enumerate(options):
        c.text(key, f"{where}.learning.options[{j}]")
    updates = c.whole(learning["updates_per_batch"], f"{where}.learning.updates_per_batch",
                      1, budget.vertex_rounds)
    if updates * len(graph.order) > budget.vertex_rounds:
        raise c.fail(f"{where}.learning.updates_per_batch",
                     f"{updates} updates x {len(graph.order)} vertices, more than the budget "
                     f"of {budget.vertex_rounds} vertex rounds; "
                     f"{budget.raise_hint('vertex_rounds')}")
    try:
        optimizer = make_optimizer(name, learning["lr"], **dict(options))
    except NeurolocalError as exc:
        raise c.fail(f"{where}.learning.{exc.field or 'options'}", exc.detail) from None
    state = event["optimizer"]
    if state is None:
        return
    shapes = graph.param_shapes()
    slots = dict.fromkeys([f"{s}/{v}/{n}" for s in optimizer.moments
                           for v, ps in shapes.items() for n in ps], False)
    c.mapping(state, f"{where}.optimizer", {"step": True, **slots})
    step = c.array(state["step"], f"{where}.optimizer.step", ())
    if step.dtype.kind not in "iu" or not 0 <= int(step) <= MAX_WHOLE:
        raise c.fail(f"{where}.optimizer.step", "expected one whole number >= 0")
    for key in state:
        if key != "step":
            _, vertex, name = key.split("/")
            c.array(state[key], f"{where}.optimizer.{key}", shapes[vertex][name],
                    floats_only=True)


def _batch(c: Checker, event: dict, where: str, graph, budget: Budget, header: dict) -> None:
    from neurolocal.limits import check_batch

    c.mapping(event, where, BATCH)
    c.whole(event["batch"], f"{where}.batch")
    eta = c.number(event["eta"], f"{where}.eta")
    high = 2 if header["mode"] == "fixed" else math.inf   # (fixed mode diverges at 2)
    if not 0 < eta < high:
        raise c.fail(f"{where}.eta", f"expected 0 < eta < {high}, got {eta}")
    iterations = c.whole(event["iterations"], f"{where}.iterations", 1, budget.vertex_rounds)
    c.flag(event["read_inputs"], f"{where}.read_inputs")
    training = c.flag(event["training"], f"{where}.training")
    staleness = header["staleness"]
    if "staleness" in event:
        staleness = c.whole(event["staleness"], f"{where}.staleness", 0, budget.vertex_rounds)
    if staleness and (header["schedule"] != "jacobi" or header["mode"] != "fixed"):
        raise c.fail(f"{where}.staleness", "asynchronous rounds run the jacobi schedule in "
                                           "fixed mode only")
    if not training:
        if "params" not in event:
            raise c.fail(f"{where}.params", "missing")
        _params(c, event["params"], f"{where}.params", graph)
    c.mapping(event["inputs"], f"{where}.inputs", dict.fromkeys(graph.inputs, True))
    size = None
    for name in graph.inputs:
        a = c.array(event["inputs"][name], f"{where}.inputs.{name}")
        size = a.shape[0] if a.ndim and a.shape[0] and size is None else size
        if a.shape != (size, *graph.shapes[name]):
            raise c.fail(f"{where}.inputs.{name}", f"has shape {list(a.shape)}, the topology "
                                                  f"needs [{size}, "
                                                  f"{', '.join(map(str, graph.shapes[name]))}]")
    try:
        check_batch(graph, budget, size, iterations, where=f"{where}.inputs")
    except NeurolocalError as exc:
        raise c.fail(exc.field, exc.detail) from None
    target = c.array(event["target"], f"{where}.target")
    if target.ndim == 0 or target.shape[0] != size:
        raise c.fail(f"{where}.target", f"has shape {list(target.shape)}, the inputs hold "
                                        f"{size} samples")
    try:
        graph.loss.prepare_target(target, graph.shapes[graph.output])
    except NeurolocalError as exc:
        raise c.fail(f"{where}.target", exc.detail) from None
    _messages(c, event, where, graph, budget)
    c.digest(event["digest"], f"{where}.digest")
    _vertex_digests(c, event, where, graph)


def _messages(c: Checker, event: dict, where: str, graph, budget: Budget) -> None:
    """reads [vertex, update, child, tag], lost [kind, src, dst, tag, held], stale."""
    from neurolocal.engines.rounds import FEEDBACK, PARAM, PARTIAL, VALUE

    names, hidden = set(graph.order), set(graph.hidden)
    rounds = budget.vertex_rounds
    for i, (vertex, update, child, tag) in enumerate(c.items(event["reads"], f"{where}.reads",
                                                             4)):
        at = f"{where}.reads[{i}]"
        c.text(vertex, at, hidden)
        c.whole(update, at, 1, rounds)
        c.text(child, at, graph.children[vertex])
        c.whole(tag, at, -1, rounds)
    for i, (kind, src, dst, tag, held) in enumerate(c.items(event["lost"], f"{where}.lost",
                                                            5)):
        at = f"{where}.lost[{i}]"
        c.text(kind, at, (VALUE, FEEDBACK, PARTIAL, PARAM))
        c.text(src, at, names)
        c.text(dst, at, names)
        c.whole(tag, at, -1, rounds)
        if held is not None:
            c.whole(held, at, -1, rounds)
    c.items(event.get("stale", []), f"{where}.stale", 5)


def _vertex_digests(c: Checker, event: dict, where: str, graph) -> None:
    if event.get("vertices") is None:
        return
    c.mapping(event["vertices"], f"{where}.vertices", dict.fromkeys(graph.order, False))
    for name, value in event["vertices"].items():
        c.digest(value, f"{where}.vertices.{name}")

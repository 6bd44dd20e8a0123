"""The `asynchrony:` section (of a topology, or a side file) and the command-line flags,
checked into one `Asynchrony` (docs/asynchrony.md). Every problem is one ConfigError
naming the field: `asynchrony.edges.h1->h2.delay: unknown distribution ...`.

    asynchrony:
      seed: 3                 # default: the command's --seed
      delay: exp:1            # every message (rounds; `exp:2ms` in milliseconds)
      compute: constant:1     # one vertex update
      drop: 0.01              # probability a message is lost
      retransmit: false       # true: a lost message is sent again (exact results)
      timeout: 2              # rounds after which a loss is noticed
      reorder: false          # true: messages on one edge may overtake each other
      round_ms: 1.0           # milliseconds per round (for ms delays and reports)
      edges:
        "h1->h2": {delay: constant:3, drop: 0.1}     # messages from h1 to h2
      vertices:
        h1: {slow: 4}                                 # a straggler, 4x slower
        h2: {pause: {at: 10, for: 20, every: 50}}     # pauses 20 rounds every 50
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

from neurolocal.asynchrony.models import (
    MAX_DURATION,
    MAX_ROUND_MS,
    MAX_SLOW,
    MIN_ROUND_MS,
    Asynchrony,
    EdgeTiming,
    Pause,
    VertexTiming,
    parse_distribution,
    parse_probability,
)
from neurolocal.checks import number
from neurolocal.errors import ConfigError

SECTION = "asynchrony"
KEYS = ("seed", "delay", "compute", "drop", "retransmit", "timeout", "reorder", "round_ms",
        "edges", "vertices")
EDGE_KEYS = ("delay", "drop")
VERTEX_KEYS = ("compute", "slow", "pause")
PAUSE_KEYS = ("at", "for", "every")


def _number(value, field: str, *, positive: bool = False,
            maximum: float = MAX_DURATION) -> float:
    return number(field, value, positive=positive, minimum=None if positive else 0,
                  maximum=maximum)


def _mapping(value, field: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"expected a mapping, got {type(value).__name__}", field=field)
    return value


def _known(document: dict, keys: Iterable[str], field: str) -> None:
    unknown = sorted(str(k) for k in document if k not in keys)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} (known: {', '.join(keys)})", field=field)


def _vertex_name(name, names: set | None, field: str) -> str:
    if not isinstance(name, str) or (names is not None and name not in names):
        raise ConfigError(f"no vertex named {name!r} in the graph", field=field)
    return name


def parse_pause(value, field: str) -> Pause:
    value = _mapping(value, field)
    _known(value, PAUSE_KEYS, field)
    if "for" not in value:
        raise ConfigError("a pause needs `for` (its length in rounds)", field=field)
    every = value.get("every")
    pause = Pause(at=_number(value.get("at", 0), f"{field}.at"),
                  length=_number(value["for"], f"{field}.for", positive=True),
                  every=None if every is None else _number(every, f"{field}.every",
                                                           positive=True))
    if pause.every is not None and pause.every <= pause.length:
        raise ConfigError("`every` must exceed `for` (else the vertex never runs)",
                          field=f"{field}.every")
    return pause


def parse_section(document: Any, graph=None, field: str = SECTION,
                  base: Asynchrony | None = None) -> Asynchrony:
    """An `asynchrony:` mapping as an Asynchrony (on top of `base`); vertex and edge
    names are checked against `graph` when given."""
    spec = base or Asynchrony()
    if document is None:
        return spec
    document = _mapping(document, field)
    _known(document, KEYS, field)
    names = set(graph.order) if graph is not None else None
    changes: dict[str, Any] = {}
    if "seed" in document:
        changes["seed"] = number(f"{field}.seed", document["seed"], whole=True,
                                   strict=True, minimum=0)
    for key in ("delay", "compute"):
        if key in document:
            changes[key] = parse_distribution(document[key], f"{field}.{key}")
    if "drop" in document:
        changes["drop"] = parse_probability(document["drop"], f"{field}.drop")
    for key in ("retransmit", "reorder"):
        if key in document:
            if not isinstance(document[key], bool):
                raise ConfigError(f"expected true or false, got {document[key]!r}",
                                  field=f"{field}.{key}")
            changes[key] = document[key]
    if "timeout" in document:
        changes["timeout"] = _number(document["timeout"], f"{field}.timeout", positive=True)
    if "round_ms" in document:
        changes["round_ms"] = number(f"{field}.round_ms", document["round_ms"],
                                     minimum=MIN_ROUND_MS, maximum=MAX_ROUND_MS)
    if "edges" in document:
        edges = dict(spec.edges)
        for key, value in _mapping(document["edges"], f"{field}.edges").items():
            where = f"{field}.edges.{key}"
            src, arrow, dst = str(key).partition("->")
            if not arrow:
                raise ConfigError("an edge is written SRC->DST (the messages from SRC to DST)",
                                  field=where)
            src = _vertex_name(src.strip(), names, where)
            dst = _vertex_name(dst.strip(), names, where)
            if graph is not None and dst not in graph.children[src] \
                    and src not in graph.children[dst]:
                raise ConfigError(f"{src} and {dst} are not neighbours: no message travels "
                                  "between them", field=where)
            value = _mapping(value, where)
            _known(value, EDGE_KEYS, where)
            edges[(src, dst)] = EdgeTiming(
                delay=(parse_distribution(value["delay"], f"{where}.delay")
                       if "delay" in value else None),
                drop=(parse_probability(value["drop"], f"{where}.drop")
                      if "drop" in value else None))
        changes["edges"] = edges
    if "vertices" in document:
        vertices = dict(spec.vertices)
        for name, value in _mapping(document["vertices"], f"{field}.vertices").items():
            where = f"{field}.vertices.{name}"
            name = _vertex_name(name, names, where)
            value = _mapping(value, where)
            _known(value, VERTEX_KEYS, where)
            vertices[name] = VertexTiming(
                compute=(parse_distribution(value["compute"], f"{where}.compute")
                         if "compute" in value else None),
                slow=_number(value.get("slow", 1.0), f"{where}.slow", positive=True,
                             maximum=MAX_SLOW),
                pause=parse_pause(value["pause"], f"{where}.pause") if "pause" in value else None)
        changes["vertices"] = vertices
    return replace(spec, **changes)


def read_side_file(path: str, graph=None, base: Asynchrony | None = None,
                   budget=None) -> Asynchrony:
    """`--asynchrony FILE.yaml`: the section alone, or a mapping holding `asynchrony:`.
    Bounded as a topology file is (a regular file within `document_bytes`; nodes with
    aliases expanded and nesting depth checked before anything is built)."""
    import yaml

    from neurolocal.files import read_bytes
    from neurolocal.limits import check_document_size, checked_events, default_budget

    budget = budget or default_budget()
    data = read_bytes(path, budget.document_bytes, ConfigError, "asynchrony file")
    try:
        text = data.decode("utf-8")
        check_document_size(text, budget, source=path)
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        for _ in checked_events(yaml.parse(text, Loader=loader), budget, source=path):
            pass   # depth and alias-expanded node count, before anything is built
        document = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", source=path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}",
                          source=path) from None
    except RecursionError:
        raise ConfigError("structure nested too deeply", source=path) from None
    if isinstance(document, dict) and SECTION in document:
        document = document[SECTION]
    try:
        return parse_section(document, graph, base=base)
    except ConfigError as exc:
        raise exc.located(source=path) from None


def parse_straggler(text: str, graph=None, field: str = "straggler") -> tuple[str, VertexTiming]:
    """`VERTEX:K` (K times slower) or `VERTEX:pause:AT:FOR[:EVERY]`."""
    parts = str(text).split(":")
    names = set(graph.order) if graph is not None else None
    if len(parts) == 2:
        name = _vertex_name(parts[0], names, field)
        try:
            slow = float(parts[1])
        except ValueError:
            raise ConfigError(f"expected VERTEX:K (K times slower), got {text!r}",
                              field=field) from None
        return name, VertexTiming(slow=_number(slow, field, positive=True, maximum=MAX_SLOW))
    if len(parts) in (4, 5) and parts[1] == "pause":
        name = _vertex_name(parts[0], names, field)
        try:
            numbers = [float(p) for p in parts[2:]]
        except ValueError:
            raise ConfigError(f"expected VERTEX:pause:AT:FOR[:EVERY], got {text!r}",
                              field=field) from None
        keys = dict(zip(PAUSE_KEYS, numbers))
        return name, VertexTiming(pause=parse_pause(keys, field))
    raise ConfigError(f"expected VERTEX:K or VERTEX:pause:AT:FOR[:EVERY], got {text!r}",
                      field=field)

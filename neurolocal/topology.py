"""Topology files: YAML (safe-loaded) -> schema check -> `Graph`.

The format, in full, is documented in `topologies/README.md`. A topology is a
mapping with these keys:

    name:        optional label (defaults to the file's stem)
    description: optional free text
    vertices:    list of {name, op, parents, <op attributes>}
    output:      name of the vertex the loss reads
    loss:        mse | softmax_cross_entropy, or {type: ..., <options>}
    training:    optional defaults for `neurolocal run` (epochs, eta, ...)

`graph_from_dict` is the equivalent Python API: it takes the same mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from neurolocal.errors import TopologyError
from neurolocal.graph import Graph, VertexSpec
from neurolocal.ops import make_loss

TOP_LEVEL_KEYS = ("name", "description", "vertices", "output", "loss", "training")
MAX_FILE_BYTES = 64 << 20


@dataclass(frozen=True)
class Topology:
    """A graph together with the training defaults its file declared."""

    graph: Graph
    training: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    description: str = ""


class _StrictSafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate keys instead of keeping the last one."""


def _mapping_without_duplicates(loader: _StrictSafeLoader, node: yaml.MappingNode, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, (list, dict)):
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be plain values", key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictSafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file; any problem raises one `TopologyError`."""
    path = Path(path)
    source = str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise TopologyError("no such file", source=source) from None
    except OSError as exc:
        raise TopologyError(f"cannot read: {exc.strerror}", source=source) from None
    if path.is_dir():
        raise TopologyError("is a directory, expected a topology file", source=source)
    if size > MAX_FILE_BYTES:
        raise TopologyError(f"file is {size} bytes, more than the {MAX_FILE_BYTES} allowed",
                            source=source)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TopologyError("not UTF-8 text", source=source) from None
    try:
        document = yaml.load(text, Loader=_StrictSafeLoader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = exc.problem or str(exc)
        raise TopologyError(f"invalid YAML: {problem}", source=source, field=where) from None
    except yaml.YAMLError as exc:
        raise TopologyError(f"invalid YAML: {exc}", source=source) from None
    try:
        return topology_from_dict(document, default_name=path.stem, source=source)
    except TopologyError as exc:
        raise exc.located(source=source) from None
    except RecursionError:
        raise TopologyError("structure nested too deeply", source=source) from None


def graph_from_dict(document: Any) -> Graph:
    """Build a graph from the same mapping a topology file holds."""
    return topology_from_dict(document).graph


def topology_from_dict(document: Any, default_name: str = "graph",
                       source: str | None = None) -> Topology:
    if not isinstance(document, dict):
        raise TopologyError(f"expected a mapping with keys {', '.join(TOP_LEVEL_KEYS)}, "
                            f"got {type(document).__name__}")
    for key in document:
        if key not in TOP_LEVEL_KEYS:
            raise TopologyError(f"unknown key (expected one of {', '.join(TOP_LEVEL_KEYS)})",
                                field=str(key))
    for key in ("vertices", "output", "loss"):
        if key not in document:
            raise TopologyError("missing", field=key)

    name = document.get("name", default_name)
    if not isinstance(name, str):
        raise TopologyError(f"expected text, got {name!r}", field="name")
    description = document.get("description", "")
    if not isinstance(description, str):
        raise TopologyError(f"expected text, got {description!r}", field="description")

    vertices = [_vertex_from_entry(i, entry) for i, entry in enumerate(_list(document, "vertices"))]
    output = document["output"]
    if not isinstance(output, str):
        raise TopologyError(f"expected a vertex name, got {output!r}", field="output")
    graph = Graph(vertices, output=output, loss=_loss(document["loss"]), name=name)

    training = document.get("training", {}) or {}
    if not isinstance(training, dict):
        raise TopologyError(f"expected a mapping, got {type(training).__name__}", field="training")
    return Topology(graph=graph, training=dict(training), source=source, description=description)


def _list(document: dict, key: str) -> list:
    value = document[key]
    if not isinstance(value, list):
        raise TopologyError(f"expected a list, got {type(value).__name__}", field=key)
    return value


def _vertex_from_entry(index: int, entry: Any) -> VertexSpec:
    where = f"vertices[{index}]"
    if not isinstance(entry, dict):
        raise TopologyError(f"expected a mapping with name and op, got {entry!r}", field=where)
    entry = dict(entry)
    name = entry.pop("name", None)
    if name is None:
        raise TopologyError("missing 'name'", field=where)
    if not isinstance(name, str):
        raise TopologyError(f"vertex name must be text, got {name!r}", field=f"{where}.name")
    op = entry.pop("op", None)
    if op is None:
        raise TopologyError(f"vertex '{name}' has no 'op'", field=f"vertices.{name}")
    if not isinstance(op, str):
        raise TopologyError(f"op must be a name, got {op!r}", field=f"vertices.{name}.op")
    parents = entry.pop("parents", [])
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list):
        raise TopologyError(f"expected a list of vertex names, got {parents!r}",
                            field=f"vertices.{name}.parents")
    for key in entry:
        if not isinstance(key, str):
            raise TopologyError(f"attribute names are text, got {key!r}", field=f"vertices.{name}")
    try:
        return VertexSpec.make(name, op, parents, **entry)
    except TypeError as exc:
        raise TopologyError(f"bad attributes: {exc}", field=f"vertices.{name}") from None


def _loss(value: Any):
    if isinstance(value, str):
        return make_loss(value)
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        options = {k: v for k, v in value.items() if k != "type"}
        return make_loss(value["type"], **options)
    raise TopologyError(f"expected a loss name or {{type: ...}}, got {value!r}", field="loss")

"""Topology files: YAML (safe-loaded) -> schema check -> `Graph`.

The format, in full, is documented in `topologies/README.md`. A topology is a
mapping with these keys:

    name:        optional label (defaults to the file's stem)
    description: optional free text
    vertices:    list of {name, op, parents, <op attributes>}
    recurrence:  optional: a cell unrolled in time (see `neurolocal.recurrence`)
    tied:        optional: list of {owner: vertex.param, members: [vertex.param, ...]},
                 tensors shared by several vertices (see `neurolocal.tied`)
    output:      name of the vertex the loss reads
    loss:        mse | softmax_cross_entropy, or {type: ..., <options>}
    training:    optional defaults for `neurolocal run` (epochs, eta, ...);
                 `paper_mode` there switches on the paper code's quirks
                 (see `neurolocal.paper`)
    asynchrony:  optional delays, loss and stragglers for `--engine sim`
                 (docs/asynchrony.md; checked here, applied by the sim engine)

`graph_from_dict` is the equivalent Python API: it takes the same mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from neurolocal.bulk import paused_gc
from neurolocal.errors import TopologyError
from neurolocal.files import read_bytes
from neurolocal.graph import Graph, VertexSpec
from neurolocal.limits import (Budget, check_document_size, check_graph, check_vertex_count,
                               checked_events, default_budget)
from neurolocal.ops import LOSSES, make_loss
from neurolocal.ops.losses import check_loss_options
from neurolocal.paper import PaperMode, paper_mode_from
from neurolocal.recurrence import Recurrence
from neurolocal.tied import TiedGroup
from neurolocal.yaml_load import load_checked

TOP_LEVEL_KEYS = ("name", "description", "vertices", "recurrence", "tied", "output", "loss",
                  "training", "asynchrony")


@dataclass(frozen=True)
class Topology:
    """A graph together with the training defaults its file declared."""

    graph: Graph
    training: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    description: str = ""
    paper: PaperMode = PaperMode()


def load_topology(path: str | Path, budget: Budget | None = None) -> Topology:
    """Read and validate a topology file; any problem raises one `TopologyError`.

    The file must be a regular file within the budget's `document_bytes`; its YAML is
    bounded (nodes with aliases expanded, nesting depth) before anything is built, and
    the graph (vertices, parameters, activations) before anything is allocated
    (`neurolocal.limits`)."""
    budget = budget or default_budget()
    path = Path(path)
    source = str(path)
    data = read_bytes(path, budget.document_bytes, TopologyError, "topology file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TopologyError("not UTF-8 text", source=source) from None
    try:
        check_document_size(text, budget, source=source)
        document = load_checked(text, lambda events: checked_events(events, budget, source))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = exc.problem or str(exc)
        raise TopologyError(f"invalid YAML: {problem}", source=source, field=where) from None
    except yaml.YAMLError as exc:
        raise TopologyError(f"invalid YAML: {exc}", source=source) from None
    except RecursionError:
        raise TopologyError("structure nested too deeply", source=source) from None
    try:
        with paused_gc():    # tens of thousands of specs, ops and tuples, none garbage
            return topology_from_dict(document, default_name=path.stem, source=source,
                                      budget=budget)
    except TopologyError as exc:
        raise exc.located(source=source) from None
    except RecursionError:
        raise TopologyError("structure nested too deeply", source=source) from None


def graph_from_dict(document: Any) -> Graph:
    """Build a graph from the same mapping a topology file holds."""
    return topology_from_dict(document).graph


def topology_from_dict(document: Any, default_name: str = "graph",
                       source: str | None = None, budget: Budget | None = None) -> Topology:
    budget = budget or default_budget()
    if not isinstance(document, dict):
        raise TopologyError(f"expected a mapping with keys {', '.join(TOP_LEVEL_KEYS)}, "
                            f"got {type(document).__name__}")
    for key in document:
        if key not in TOP_LEVEL_KEYS:
            raise TopologyError(f"unknown key (expected one of {', '.join(TOP_LEVEL_KEYS)})",
                                field=str(key))
    for key in ("output", "loss"):
        if key not in document:
            raise TopologyError("missing", field=key)
    if "vertices" not in document and "recurrence" not in document:
        raise TopologyError("missing (or give a recurrence section)", field="vertices")

    name = document.get("name", default_name)
    if not isinstance(name, str):
        raise TopologyError(f"expected text, got {name!r}", field="name")
    description = document.get("description", "")
    if not isinstance(description, str):
        raise TopologyError(f"expected text, got {description!r}", field="description")

    recurrence = Recurrence(document["recurrence"]) if "recurrence" in document else None
    entries = _list(document, "vertices") if "vertices" in document else []
    output = document["output"]
    if recurrence is not None:
        check_vertex_count(recurrence.unrolled_count() + len(entries), budget,
                           what=f"recurrence.steps {recurrence.steps} unrolled")
        entries = recurrence.unrolled_entries() + [recurrence.expand_entry(e) for e in entries]
        output = recurrence.expand(output)[0]
    check_vertex_count(len(entries), budget)
    vertices = [_vertex_from_entry(i, entry) for i, entry in enumerate(entries)]
    if not isinstance(output, str):
        raise TopologyError(f"expected a vertex name, got {output!r}", field="output")

    training = document.get("training", {}) or {}
    if not isinstance(training, dict):
        raise TopologyError(f"expected a mapping, got {type(training).__name__}", field="training")
    loss_name = document["loss"] if isinstance(document["loss"], str) else (
        document["loss"].get("type") if isinstance(document["loss"], dict) else None)
    paper = paper_mode_from(training.get("paper_mode"), loss_name=loss_name,
                            has_conv=any(v.op.name == "conv2d" for v in vertices))
    loss = _loss(document["loss"], paper)

    tied = _tied(document.get("tied", []) or [])
    if recurrence is not None:
        untied = Graph(vertices, output=output, loss=loss, name=name)
        recurrence.check_state_shapes(untied.shapes)
        tied = recurrence.tied_groups(untied.param_shapes()) + tied
    graph = Graph(vertices, output=output, loss=loss, name=name, tied=tied)
    check_graph(graph, budget)
    if document.get("asynchrony") is not None:
        from neurolocal.asynchrony.config import parse_section
        from neurolocal.errors import ConfigError

        try:
            parse_section(document["asynchrony"], graph)
        except ConfigError as exc:
            raise TopologyError(exc.detail, field=exc.field) from None
    return Topology(graph=graph, training=dict(training), source=source, description=description,
                    paper=paper)


def _tied(value: Any) -> list[TiedGroup]:
    if not isinstance(value, list):
        raise TopologyError("expected a list of {owner, members}", field="tied")
    groups = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or set(entry) != {"owner", "members"}:
            raise TopologyError("expected {owner: vertex.param, members: [vertex.param, ...]}",
                                field=f"tied[{i}]")
        members = entry["members"]
        if not isinstance(members, list):
            raise TopologyError("expected a list of vertex.param", field=f"tied[{i}].members")
        try:
            groups.append(TiedGroup.make(entry["owner"], members))
        except TopologyError as exc:
            raise exc.located(field=f"tied[{i}]") from None
    return groups


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


def _loss(value: Any, paper: PaperMode = PaperMode()):
    if isinstance(value, str):
        value = {"type": value}
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        options = {k: v for k, v in value.items() if k != "type"}
        if value["type"] in LOSSES:
            options = check_loss_options(value["type"], options)
        if paper.mse_without_half:
            if value["type"] != "mse":
                raise TopologyError("paper_mode mse_without_half needs an mse loss",
                                    field="training.paper_mode")
            if options.get("scale", paper.mse_scale) != paper.mse_scale:
                raise TopologyError(f"paper_mode sets the mse scale to {paper.mse_scale}, the loss "
                                    f"says {options['scale']}", field="loss.scale")
            options["scale"] = paper.mse_scale
        return make_loss(value["type"], **options)
    raise TopologyError(f"expected a loss name or {{type: ...}}, got {value!r}", field="loss")

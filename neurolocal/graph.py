"""The computation graph: vertices, their ops, edges and shapes, validated once.

A `Graph` is immutable after construction and every check happens there, so an
engine never meets an unknown op, a missing parent, a shape mismatch or a cycle:
it meets a `TopologyError` naming the vertex before any actor starts.
"""

from __future__ import annotations

import functools

import math
import re
import zlib
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from neurolocal.errors import TopologyError
from neurolocal.ops import Loss, Op, get_op, make_loss
from neurolocal.ops.base import Shape
from neurolocal.tied import TiedGroup, check_groups, copy_owner_values, member_roles

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:@\-\[\]]{0,127}$")
#: refuse graphs whose activations alone would not fit in memory at batch size 1
MAX_ELEMENTS_PER_SAMPLE = 1 << 28

Params = dict[str, dict[str, np.ndarray]]


@dataclass(frozen=True)
class VertexSpec:
    """One vertex as declared: a name, the op it computes, and its parents in order."""

    name: str
    op: Op
    parents: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def make(cls, name: str, op: str | Op, parents: Iterable[str] = (), **attributes) -> "VertexSpec":
        """Build from an op name and attributes, as a topology file would."""
        if isinstance(op, str):
            try:
                op = get_op(op).from_attributes(attributes)
            except TopologyError as exc:
                raise exc.within(f"vertices.{name}") from None
        elif attributes:
            raise TypeError("attributes are given with an op name, not with an op instance")
        return cls(name, op, tuple(parents))


class Graph:
    """A validated directed acyclic graph of vertices with one loss at an output vertex.

    `tied` lists the tied-parameter groups (see `neurolocal.tied`): tensors that
    several vertices share, each with an owner that initialises it and sums the
    members' partial updates.
    """

    def __init__(self, vertices: Sequence[VertexSpec], output: str, loss: Loss | str,
                 name: str = "graph", tied: Sequence[TiedGroup] = ()):
        self.name = name
        self.loss = make_loss(loss) if isinstance(loss, str) else loss
        self.vertices: dict[str, VertexSpec] = {}
        for spec in vertices:
            self._check_name(spec.name)
            if spec.name in self.vertices:
                raise TopologyError(f"vertex '{spec.name}' is declared twice",
                                    field=f"vertices.{spec.name}")
            self.vertices[spec.name] = spec
        if not self.vertices:
            raise TopologyError("a graph needs at least one vertex", field="vertices")
        self._check_parents()
        self.order: tuple[str, ...] = self._topological_order()
        self.vertices = {n: self.vertices[n] for n in self.order}
        # children in topological order, each once; dicts keep it linear in the edge
        # count (a concat join of a tiled layer has thousands of children)
        children: dict[str, dict[str, None]] = {n: {} for n in self.order}
        for n in self.order:
            for p in self.vertices[n].parents:
                children[p][n] = None
        self.children: dict[str, tuple[str, ...]] = {n: tuple(c) for n, c in children.items()}
        self.shapes: dict[str, Shape] = self._infer_shapes()
        self.inputs: tuple[str, ...] = tuple(n for n in self.order if self.is_input(n))
        if not self.inputs:
            raise TopologyError("a graph needs at least one input vertex", field="vertices")
        self.output = self._check_output(output)
        #: longest path, in edges, from each vertex down to the output (None: no path)
        self.distance: dict[str, int | None] = self._distances_to_output()
        self.tied: tuple[TiedGroup, ...] = check_groups(tied, self.param_shapes() if tied else {})

    # --- structure ---------------------------------------------------------------------

    def is_input(self, name: str) -> bool:
        return self.vertices[name].op.name == "input"

    def parents(self, name: str) -> tuple[str, ...]:
        return self.vertices[name].parents

    @property
    def edges(self) -> list[tuple[str, str]]:
        """(parent, child) pairs, one per distinct neighbour relation."""
        return [(p, c) for c in self.order for p in dict.fromkeys(self.vertices[c].parents)]

    @property
    def hidden(self) -> tuple[str, ...]:
        """Vertices whose value relaxes: neither clamped to data nor the output."""
        return tuple(n for n in self.order if not self.is_input(n) and n != self.output)

    @functools.cached_property
    def depth(self) -> int:
        """Longest path from the output to a vertex whose error a parameter update reads.

        With eta = 1, `depth` relaxation steps make every parameter update exact.
        """
        reads = [self.distance[n] for n in self.order
                 if self.vertices[n].op.has_params and self.distance[n] is not None]
        return max(reads, default=0)

    @functools.cached_property
    def input_depth(self) -> int:
        """Steps after which the feedback arriving at every input is exact."""
        reads = [self.distance[c] for n in self.inputs for c in self.children[n]
                 if self.distance[c] is not None]
        return max(reads, default=0)

    # --- parameters --------------------------------------------------------------------

    def param_shapes(self) -> dict[str, dict[str, Shape]]:
        shapes = {}
        for n, spec in self.vertices.items():
            if spec.op.has_params:
                shapes[n] = spec.op.param_shapes([self.shapes[p] for p in spec.parents])
        return shapes

    def init_params(self, seed: int = 0) -> Params:
        """Initial parameters; each vertex draws from its own stream, so a vertex
        initialises identically whichever process or machine it lives on. A tied
        member holds its own copy of its owner's draw."""
        params: Params = {}
        for n, spec in self.vertices.items():
            if spec.op.has_params:
                rng = vertex_rng(seed, n)
                params[n] = spec.op.init_params([self.shapes[p] for p in spec.parents], rng)
        copy_owner_values(self.tied, params)
        return params

    # --- the forward pass ----------------------------------------------------------------

    def forward(self, params: Params, inputs) -> tuple[dict[str, np.ndarray], dict]:
        """The one whole-graph forward pass: (value of every vertex, each op's cache for its
        vjp). `inputs` maps input names to data. Backprop and prediction use it; the
        engines run the same `op.forward` one vertex at a time (`VertexRule.predict`)."""
        values: dict[str, np.ndarray] = {}
        caches: dict = {}
        for n in self.order:
            if self.is_input(n):
                values[n] = inputs[n]
            else:
                spec = self.vertices[n]
                values[n], caches[n] = spec.op.forward(params.get(n, {}),
                                                       [values[p] for p in spec.parents])
        return values, caches

    def ties_of(self, name: str) -> tuple[dict[str, tuple[str, str]], dict[str, int]]:
        """(param -> owner slot this vertex sends partials to, param -> partials it receives)."""
        return member_roles(self.tied, name)

    def parameter_count(self) -> int:
        """Distinct trainable numbers: a tied tensor counts once."""
        shapes = self.param_shapes()
        members = {m for group in self.tied for m in group.members}
        return sum(math.prod(s) for v, per_vertex in shapes.items()
                   for p, s in per_vertex.items() if (v, p) not in members)

    def summary(self) -> str:
        lines = [f"graph {self.name!r}: {len(self.order)} vertices, {len(self.edges)} edges, "
                 f"{self.parameter_count()} parameters, depth {self.depth}, "
                 f"output {self.output!r} ({self.loss.name})"
                 + (f", {len(self.tied)} tied groups" if self.tied else "")]
        width = max(len(n) for n in self.order)
        for n in self.order:
            spec = self.vertices[n]
            parents = ", ".join(spec.parents) if spec.parents else "-"
            dist = self.distance[n]
            lines.append(f"  {n:<{width}}  {spec.op.describe():<40} shape {list(self.shapes[n])!s:<12}"
                         f" parents {parents}  distance {'-' if dist is None else dist}")
        return "\n".join(lines)

    # --- validation --------------------------------------------------------------------

    @staticmethod
    def _check_name(name) -> None:
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise TopologyError(
                f"vertex name {name!r} must start with a letter or _ and use letters, digits "
                "or _.:@-[] (at most 128 characters)", field="vertices")

    def _check_parents(self) -> None:
        for name, spec in self.vertices.items():
            where = f"vertices.{name}.parents"
            arity = spec.op.arity
            count = len(spec.parents)
            if arity is None and count < spec.op.min_parents:
                raise TopologyError(f"op '{spec.op.name}' needs at least {spec.op.min_parents} "
                                    f"parents, got {count}", field=where)
            if arity is not None and count != arity:
                raise TopologyError(f"op '{spec.op.name}' takes {arity} parent"
                                    f"{'s' if arity != 1 else ''}, got {count}", field=where)
            for p in spec.parents:
                if not isinstance(p, str):
                    raise TopologyError(f"parent names are strings, got {p!r}", field=where)
                if p not in self.vertices:
                    raise TopologyError(f"vertex '{name}' names parent '{p}', which is not "
                                        "declared", field=where)
                if p == name:
                    raise TopologyError(f"vertex '{name}' is its own parent", field=where)

    def _topological_order(self) -> tuple[str, ...]:
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        order: list[str] = []
        for root in self.vertices:
            if state.get(root):
                continue
            stack = [(root, iter(self.vertices[root].parents))]
            state[root] = 1
            path = [root]
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    stack.pop()
                    path.pop()
                    state[node] = 2
                    order.append(node)
                elif state.get(nxt) == 1:
                    cycle = path[path.index(nxt):] + [nxt]
                    raise TopologyError(
                        "cycle " + " <- ".join(cycle) + " (declare recurrence to unroll it in time)",
                        field=f"vertices.{nxt}.parents")
                elif not state.get(nxt):
                    state[nxt] = 1
                    path.append(nxt)
                    stack.append((nxt, iter(self.vertices[nxt].parents)))
        return tuple(order)

    def _infer_shapes(self) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {}
        for n in self.order:
            spec = self.vertices[n]
            try:
                shape = tuple(int(s) for s in spec.op.output_shape([shapes[p] for p in spec.parents]))
            except TopologyError as exc:
                raise exc.within(f"vertices.{n}") from None
            if not shape or min(shape) < 1:
                raise TopologyError(f"op computes an empty shape {list(shape)}", field=f"vertices.{n}")
            if math.prod(shape) > MAX_ELEMENTS_PER_SAMPLE:
                raise TopologyError(f"shape {list(shape)} is too large (more than "
                                    f"{MAX_ELEMENTS_PER_SAMPLE} values per sample)",
                                    field=f"vertices.{n}")
            shapes[n] = shape
        return shapes

    def _check_output(self, output: str) -> str:
        if output not in self.vertices:
            raise TopologyError(f"output vertex {output!r} is not declared", field="output")
        if self.is_input(output):
            raise TopologyError(f"output vertex {output!r} is an input; it must compute something",
                                field="output")
        if self.children[output]:
            raise TopologyError(f"output vertex {output!r} has children "
                                f"({', '.join(self.children[output])}); the loss must sit at a sink",
                                field="output")
        try:
            self.loss.check_output_shape(self.shapes[output])
        except TopologyError as exc:
            raise exc.located(field="loss") from None
        return output

    def _distances_to_output(self) -> dict[str, int | None]:
        distance: dict[str, int | None] = {n: None for n in self.order}
        distance[self.output] = 0
        for n in reversed(self.order):
            reachable = [distance[c] for c in self.children[n] if distance[c] is not None]
            if n != self.output and reachable:
                distance[n] = max(reachable) + 1
        return distance


def vertex_rng(seed: int, vertex: str) -> np.random.Generator:
    """The random stream of one vertex: fixed by the seed and the vertex's name alone."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(vertex.encode())])

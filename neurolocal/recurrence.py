"""Recurrence in topology files: a cell declared once, unrolled in time into local vertices.

A topology may hold a `recurrence:` section next to (or instead of) `vertices:`::

    recurrence:
      steps: 6                      # number of time steps S
      inputs:                       # one input vertex per step: x@0 .. x@5
        - {name: x, shape: [16]}
      state:                        # values carried from step t-1 to step t
        - {name: h, shape: [24]}    # h@init (an input vertex, data fills it; zeros
                                    #  in training) is the value before step 0
      cell:                         # the vertices of one step, as in `vertices:`
        - {name: xh, op: concat, parents: [x, h@prev]}
        - {name: h,  op: dense,  parents: [xh], units: 24, activation: tanh}
        - {name: y,  op: dense,  parents: [h], units: 16}

Unrolling, for t = 0 .. S-1, makes vertex `name@t` from every cell entry. Inside
the cell a parent is resolved as:

    <cell vertex or step input>   -> name@t        (same step)
    <state>@prev                  -> name@(t-1), or name@init at t = 0
    anything else                 -> a vertex of the top-level `vertices:` list,
                                     shared by every step (e.g. a static context)

Every state must be the name of a cell vertex (its value at step t is the state
passed on) and its declared shape must match that vertex's shape.

Top-level `vertices:` (and `output:`) can read the unrolled vertices by step:
`y@3`, `y@last` (= y@(S-1)), or `y@*` in a parent list (y@0 .. y@(S-1) in order).
A char-level language model stacks its per-step logits into one output of shape
[S, vocab] with a `stack` vertex; softmax cross-entropy over the last axis then
sums the per-step losses, and each step's logits get that step's own error
y_t - softmax(logits_t). One output vertex with one loss is what the core's PC
needs; the stack is a one-edge router, so this adds a single edge of depth.

Parameters are shared across time by tied groups: for every cell vertex with
parameters, `name@0` owns each parameter and `name@1 .. name@(S-1)` are members
(`neurolocal.tied`). The unrolled graph is an ordinary DAG: every vertex is local,
every edge a message, and a gradient check runs on it as on any graph.
"""

from __future__ import annotations

from typing import Any

from neurolocal.errors import TopologyError
from neurolocal.ops.base import positive_int, shape_tuple
from neurolocal.tied import TiedGroup

RECURRENCE_KEYS = ("steps", "inputs", "state", "cell")
MAX_STEPS = 10_000
PREVIOUS = "@prev"


class Recurrence:
    """A parsed `recurrence:` section."""

    def __init__(self, section: Any):
        where = "recurrence"
        if not isinstance(section, dict):
            raise TopologyError(f"expected a mapping with {', '.join(RECURRENCE_KEYS)}",
                                field=where)
        for key in section:
            if key not in RECURRENCE_KEYS:
                raise TopologyError(f"unknown key (expected one of {', '.join(RECURRENCE_KEYS)})",
                                    field=f"{where}.{key}")
        for key in ("steps", "cell"):
            if key not in section:
                raise TopologyError("missing", field=f"{where}.{key}")
        self.steps = positive_int(f"{where}.steps", section["steps"], limit=MAX_STEPS)
        self.inputs = self._named_shapes(section.get("inputs", []) or [], f"{where}.inputs")
        self.state = self._named_shapes(section.get("state", []) or [], f"{where}.state")
        cell = section["cell"]
        if not isinstance(cell, list) or not cell:
            raise TopologyError("expected a non-empty list of vertices", field=f"{where}.cell")
        self.cell: list[dict] = []
        for i, entry in enumerate(cell):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise TopologyError("expected a mapping with a name and an op",
                                    field=f"{where}.cell[{i}]")
            self.cell.append(dict(entry))
        self.cell_names = [e["name"] for e in self.cell]
        local = self.cell_names + list(self.inputs)
        duplicates = {n for n in local if local.count(n) > 1}
        if duplicates:
            raise TopologyError(f"name {sorted(duplicates)[0]!r} is used twice in the cell "
                                "and its inputs", field=f"{where}.cell")
        for name in self.state:
            if name not in self.cell_names:
                raise TopologyError(f"state '{name}' must name a cell vertex (its value at step t "
                                    "is the state passed to step t+1)", field=f"{where}.state")
        for name in local:
            if "@" in name:
                raise TopologyError(f"cell name {name!r} may not contain '@' (unrolling adds "
                                    "'@t')", field=f"{where}.cell")

    @staticmethod
    def _named_shapes(entries: Any, where: str) -> dict[str, tuple[int, ...]]:
        if not isinstance(entries, list):
            raise TopologyError("expected a list of {name, shape}", field=where)
        out = {}
        for i, entry in enumerate(entries):
            if (not isinstance(entry, dict) or set(entry) != {"name", "shape"}
                    or not isinstance(entry["name"], str)):
                raise TopologyError(f"expected {{name, shape}}, got {entry!r}", field=f"{where}[{i}]")
            if entry["name"] in out:
                raise TopologyError(f"'{entry['name']}' is declared twice", field=where)
            out[entry["name"]] = shape_tuple(f"{where}[{i}].shape", entry["shape"])
        return out

    # --- unrolling -------------------------------------------------------------------

    def _resolve(self, parent: Any, t: int) -> Any:
        if not isinstance(parent, str):
            return parent  # the vertex parser reports it
        if parent in self.inputs or parent in self.cell_names:
            return f"{parent}@{t}"
        if parent.endswith(PREVIOUS):
            base = parent[: -len(PREVIOUS)]
            if base not in self.state:
                raise TopologyError(f"'{parent}' reads the previous step of '{base}', which is not "
                                    "a declared state", field="recurrence.cell")
            return f"{base}@{t - 1}" if t > 0 else f"{base}@init"
        return parent

    def unrolled_count(self) -> int:
        """How many vertices unrolling makes, known before making any."""
        return len(self.state) + self.steps * (len(self.inputs) + len(self.cell))

    def unrolled_entries(self) -> list[dict]:
        """Vertex entries (as in `vertices:`) for the step inputs, initial states and cells."""
        entries = [{"name": f"{n}@init", "op": "input", "shape": list(s)}
                   for n, s in self.state.items()]
        for t in range(self.steps):
            entries += [{"name": f"{n}@{t}", "op": "input", "shape": list(s)}
                        for n, s in self.inputs.items()]
            for entry in self.cell:
                e = dict(entry)
                e["name"] = f"{entry['name']}@{t}"
                parents = entry.get("parents", [])
                if isinstance(parents, str):
                    parents = [parents]
                if isinstance(parents, list):
                    e["parents"] = [self._resolve(p, t) for p in parents]
                entries.append(e)
        return entries

    def expand(self, name: Any) -> list:
        """Top-level references to unrolled vertices: `y@last` and `y@*`."""
        if not isinstance(name, str) or "@" not in name:
            return [name]
        base, _, step = name.rpartition("@")
        if base in self.cell_names or base in self.inputs:
            if step == "*":
                return [f"{base}@{t}" for t in range(self.steps)]
            if step == "last":
                return [f"{base}@{self.steps - 1}"]
        return [name]

    def expand_entry(self, entry: Any) -> Any:
        if not isinstance(entry, dict):
            return entry
        parents = entry.get("parents")
        if isinstance(parents, str):
            parents = [parents]
        if isinstance(parents, list):
            entry = dict(entry)
            entry["parents"] = [q for p in parents for q in self.expand(p)]
        return entry

    def tied_groups(self, param_shapes: dict[str, dict[str, tuple]]) -> list[TiedGroup]:
        """Each cell parameter: owned at step 0, shared by every later step."""
        groups = []
        if self.steps < 2:
            return groups
        for name in self.cell_names:
            for param in param_shapes.get(f"{name}@0", {}):
                groups.append(TiedGroup((f"{name}@0", param),
                                        tuple((f"{name}@{t}", param) for t in range(1, self.steps))))
        return groups

    def check_state_shapes(self, shapes: dict[str, tuple]) -> None:
        for name, shape in self.state.items():
            if tuple(shapes[f"{name}@0"]) != tuple(shape):
                raise TopologyError(f"state '{name}' is declared with shape {list(shape)}, but the "
                                    f"cell computes {list(shapes[f'{name}@0'])}",
                                    field="recurrence.state")

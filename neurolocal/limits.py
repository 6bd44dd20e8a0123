"""The budget: how big a topology, a batch or an input file may be before anything is built.

Every number here is checked *before* the thing it bounds is allocated or parsed, so a
hostile or mistaken file ends in one line naming the vertex (or file) and the size,
instead of gigabytes of memory or an endless loop. The defaults fit a machine with a
few GB to spare and every topology in `topologies/` with a wide margin; raise them on
purpose with `--budget KEY=N[,KEY=N...]` (validate, check-grad, run, generate) or
the environment variable `NEUROLOCAL_BUDGET` in the same form (the flag wins).

    parameters       trainable numbers in the whole graph (a tied tensor counts once)
    activations      values held per batch: every vertex's output, plus a convolution's
                     unfolded input (im2col), times the batch size
    vertices         vertices after a recurrence is unrolled
    vertex_rounds    relaxation work per batch: vertices x iterations
    document_bytes   size of a topology file
    document_nodes   YAML nodes of a topology file with every alias expanded
    document_depth   nesting depth of a topology file
    data_bytes       size of a data file or checkpoint, and of an .npz once inflated

`parameters` and `activations` scale with the machine: each is the memory this process
may use (`machine_memory`: the least of the physical memory, the cgroup's limit and
RLIMIT_AS) divided by BYTES_PER_VALUE, clamped to [MIN_DERIVED, MAX_DERIVED]. Under
1 GB that is 4,194,304 (the old fixed default); on a 24 GB machine about 100 million,
so a ResNet-18 or a 12-block, 256-wide transformer loads without `--budget`. The other
keys bound files and loops and stay fixed.

See `docs/limits.md` for the reasoning behind each default.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace

from neurolocal.checks import parse_number
from neurolocal.errors import ConfigError, TopologyError, param

ENVIRONMENT = "NEUROLOCAL_BUDGET"
#: bytes of memory per parameter (and per activation value) the derived budget reserves:
#: a PC run holds ~6 float64 copies of each (value, update, Adam's two moments, the
#: engine's and a snapshot's), of activations as many (values, predictions, errors,
#: caches), and the two budgets may both be full: 256 leaves room for all of it
BYTES_PER_VALUE = 256
MIN_DERIVED = 1 << 20
MAX_DERIVED = 1 << 31
FALLBACK_MEMORY = 1 << 30    # when nothing says how much memory there is


def _read_small(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return handle.read(64).decode("ascii", "replace").strip()
    except OSError:
        return None


def machine_memory() -> int:
    """Bytes this process may use: the least of physical memory, a cgroup limit (v2
    memory.max or v1 limit_in_bytes) and the address-space rlimit; 1 GB if none is known."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        text = _read_small(path)
        if text and text.isdigit():
            limits.append(int(text))
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY and soft > 0:
            limits.append(soft)
    except (ImportError, ValueError, OSError):
        pass
    limits = [m for m in limits if m > 0]
    return min(limits) if limits else FALLBACK_MEMORY


def derived_size(memory: int | None = None) -> int:
    """The parameters (and activation values) budget for `memory` bytes."""
    memory = machine_memory() if memory is None else memory
    return max(MIN_DERIVED, min(MAX_DERIVED, memory // BYTES_PER_VALUE))


@dataclass(frozen=True)
class Budget:
    # the values for 1 GB; `memory_budget()` (every command's default) derives both
    parameters: int = 1 << 22            # 4,194,304: 32 MB per float64 copy
    activations: int = 1 << 22           # values per batch, summed over vertices
    vertices: int = 20_000
    vertex_rounds: int = 5_000_000
    document_bytes: int = 16 << 20
    document_nodes: int = 1_000_000
    document_depth: int = 64
    data_bytes: int = 256 << 20

    @classmethod
    def parse(cls, text: str, base: "Budget | None" = None,
              where: str = param("budget")) -> "Budget":
        """`parameters=1e8,vertices=50000` on top of `base` (default: the built-in budget)."""
        budget = base or memory_budget()
        known = [f.name for f in fields(cls)]
        changes: dict[str, int] = {}
        for item in str(text).split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in known:
                raise ConfigError(f"expected KEY=N with KEY one of {', '.join(known)}, "
                                  f"got {item.strip()!r}", field=where)
            changes[key] = _count(value.strip(), f"{where} {key}")
        return replace(budget, **changes)

    def raise_hint(self, key: str, needed: int | None = None) -> str:
        value = f"{needed}" if needed is not None else f"{2 * getattr(self, key)}"
        return f"raise it with {param('budget')} {key}={value} (or {ENVIRONMENT})"


def _count(text: str, where: str) -> int:
    return parse_number(where, text, whole=True, minimum=1, maximum=1 << 62)


def memory_budget() -> Budget:
    """The built-in budget: parameters and activations from this machine's memory."""
    size = derived_size()
    return Budget(parameters=size, activations=size)


def default_budget() -> Budget:
    """The built-in budget, adjusted by NEUROLOCAL_BUDGET when it is set."""
    text = os.environ.get(ENVIRONMENT)
    return Budget.parse(text, where=ENVIRONMENT) if text else memory_budget()


def budget_from(flag: str | None) -> Budget:
    """The budget a command runs under: built-in < NEUROLOCAL_BUDGET < --budget."""
    base = default_budget()
    return Budget.parse(flag, base) if flag else base


def add_budget_option(parser) -> None:
    parser.add_argument("--budget", default=None, metavar="KEY=N[,KEY=N]",
                        help="raise (or lower) a size limit checked before anything is "
                             "allocated: parameters, activations, vertices, vertex_rounds, "
                             "document_bytes, document_nodes, document_depth, data_bytes "
                             "(see README, 'Limits')")


# --- graphs ------------------------------------------------------------------------------


def check_vertex_count(count: int, budget: Budget, what: str = "vertices") -> None:
    if count > budget.vertices:
        raise TopologyError(f"{what} make {count} vertices, more than the budget of "
                            f"{budget.vertices}; {budget.raise_hint('vertices', count)}",
                            field="vertices")


def parameter_count(op, parent_shapes) -> int:
    shapes = op.param_shapes(parent_shapes)
    return sum(math.prod(int(d) for d in s) for s in shapes.values())


def activation_count(op, parent_shapes, shape) -> int:
    """Values one sample holds at a vertex: its output, plus what its op unfolds."""
    values = math.prod(shape)
    kernel = getattr(op, "kernel_size", None)
    if op.name == "conv2d" and kernel is not None and len(shape) == 3:
        channels = parent_shapes[0][0]
        values += shape[1] * shape[2] * channels * math.prod(kernel)   # im2col columns
    return values


def check_graph(graph, budget: Budget) -> None:
    """Parameters and per-sample activations of a built graph (shapes only, nothing drawn)."""
    check_vertex_count(len(graph.order), budget)
    total_params = 0
    total_values = 0
    for name in graph.order:
        spec = graph.vertices[name]
        parents = [graph.shapes[p] for p in spec.parents]
        if spec.op.has_params:
            count = parameter_count(spec.op, parents)
            total_params += count
            if total_params > budget.parameters:
                raise TopologyError(
                    f"{count} parameters here bring the graph to {total_params}, more than "
                    f"the budget of {budget.parameters}; "
                    f"{budget.raise_hint('parameters', total_params)}",
                    field=f"vertices.{name}")
        count = activation_count(spec.op, parents, graph.shapes[name])
        total_values += count
        if total_values > budget.activations:
            raise TopologyError(
                f"{count} values per sample here bring one sample to {total_values}, more "
                f"than the activation budget of {budget.activations}; "
                f"{budget.raise_hint('activations', total_values)}",
                field=f"vertices.{name}")


def activations_per_sample(graph) -> int:
    return sum(activation_count(graph.vertices[n].op,
                                [graph.shapes[p] for p in graph.vertices[n].parents],
                                graph.shapes[n]) for n in graph.order)


def check_batch(graph, budget: Budget, batch_size: int, iterations: int,
                where: str = "batch_size") -> None:
    """A batch of `batch_size` relaxed for `iterations` rounds fits the budget."""
    per_sample = activations_per_sample(graph)
    values = per_sample * int(batch_size)
    if values > budget.activations:
        raise ConfigError(f"{batch_size} samples x {per_sample} values per sample = {values} "
                          f"activations per batch, more than the budget of "
                          f"{budget.activations}; {budget.raise_hint('activations', values)}",
                          field=where)
    work = len(graph.order) * int(iterations)
    if work > budget.vertex_rounds:
        raise ConfigError(f"{len(graph.order)} vertices x {iterations} iterations = {work} "
                          f"vertex rounds per batch, more than the budget of "
                          f"{budget.vertex_rounds}; {budget.raise_hint('vertex_rounds', work)}",
                          field="iterations")


# --- YAML documents ----------------------------------------------------------------------


def check_document_size(text: str, budget: Budget, source: str | None = None) -> None:
    """A YAML text's size, before it is parsed (then `checked_events` bounds its structure)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > budget.document_bytes:
        raise TopologyError(f"document is {size} bytes, more than the budget of "
                            f"{budget.document_bytes}; "
                            f"{budget.raise_hint('document_bytes', size)}", source=source)


def checked_events(events, budget: Budget, source: str | None = None):
    """A YAML parser's `events` passed on one by one, each after the nesting-depth and
    node-count checks (libyaml's parser keeps its own stack: no recursion), so whatever
    reads the stream stops at the event that breaks the budget, before building more.

    An alias counts as many nodes as the node it names, so a 'billion laughs' document
    of a few hundred bytes is refused before one list is constructed
    (`neurolocal.yaml_load.load_checked` reads a topology through this filter)."""
    import yaml

    stack: list[list] = []          # [count, anchor] of each open collection
    anchors: dict[str, int] = {}
    total = 0

    def add(count: int, event, size: int | None = None) -> None:
        nonlocal total
        total += count
        if total > budget.document_nodes:
            mark = event.start_mark
            raise TopologyError(f"document expands to more than {budget.document_nodes} "
                                f"nodes (aliases count as what they repeat); "
                                f"{budget.raise_hint('document_nodes')}", source=source,
                                field=f"line {mark.line + 1}" if mark else None)
        if stack:
            stack[-1][0] += count if size is None else size

    for event in events:
        if isinstance(event, yaml.ScalarEvent):     # most events: tested first
            if event.anchor is not None:
                anchors[event.anchor] = 1
            add(1, event)
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            stack.append([0, event.anchor])
            if len(stack) > budget.document_depth:
                mark = event.start_mark
                raise TopologyError(f"nested more than {budget.document_depth} levels deep; "
                                    f"{budget.raise_hint('document_depth')}", source=source,
                                    field=f"line {mark.line + 1}" if mark else None)
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            inner, anchor = stack.pop()
            # the collection's children were already counted into `total` as they came
            if anchor is not None:
                anchors[anchor] = inner + 1
            add(1, event, size=inner + 1)
        elif isinstance(event, yaml.AliasEvent):
            add(anchors.get(event.anchor, 1), event)
        yield event

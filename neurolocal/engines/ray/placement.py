"""Which vertices share an actor, and which machine each actor runs on (docs/placement.md).

Shards:

    auto    about one shard per core: each alive node offers its CPU count (Ray's
            node resources), capped by the vertex count; the shards are a balanced
            min-cut partition of the graph (partition.py), weighed by the graph's
            shapes or by a previous run's traffic log (`--placement-from`)
    K       runs of K consecutive vertices in topological order

Nodes are chosen per shard:

    spread  auto: a node gets as many shards as it offers cores, consecutive shards
            together (they share the most edges); K: round-robin over the alive
            nodes (every node gets vertices)
    pack    every shard on the driver's node (one machine, fewest network hops)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from neurolocal.checks import number
from neurolocal.engines.config import AUTO, check_vertices_per_actor
from neurolocal.engines.ray import partition as mincut
from neurolocal.engines.ray.costmodel import CostContext, batch_work, choose, describe
from neurolocal.errors import ConfigError, DataError
from neurolocal.graph import Graph

PLACEMENTS = ("spread", "pack")
#: the batch size the model's bytes per edge assume when the engine is not told one
DEFAULT_BATCH = 32


@dataclass(frozen=True)
class Plan:
    """The shards, the node of each, and how they were chosen (for the run's metadata:
    the traffic log's header settings and the engine's report)."""
    shards: list[tuple[str, ...]]
    nodes: list[str]
    info: dict


def partition(graph: Graph, vertices_per_actor: int) -> list[tuple[str, ...]]:
    """Runs of K consecutive vertices in topological order."""
    k = number("vertices_per_actor", vertices_per_actor, whole=True, minimum=1)
    return [graph.order[i:i + k] for i in range(0, len(graph.order), k)]


def shard_of(shards: Sequence[Sequence[str]]) -> dict[str, int]:
    return {name: i for i, names in enumerate(shards) for name in names}


def check_placement(placement: str) -> None:
    if placement not in PLACEMENTS:
        raise ConfigError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}",
                          field="placement")


def assign_nodes(n_shards: int, nodes: Sequence[str], placement: str,
                 driver_node: str) -> list[str]:
    """A node id for each shard. `nodes` lists the alive nodes, in a stable order."""
    check_placement(placement)
    if not nodes:
        raise ConfigError("the Ray cluster has no alive node", field="address")
    if placement == "pack":
        return [driver_node if driver_node in nodes else nodes[0]] * n_shards
    return [nodes[i % len(nodes)] for i in range(n_shards)]


def cores_per_node(nodes: Sequence[str], cpus: dict[str, float], placement: str,
                   driver_node: str, vertices: int) -> list[int]:
    """Shards each node (in `nodes`' order) gets under `auto`: its whole CPUs (pack:
    the driver's node only), scaled down in proportion (largest remainders, ties to
    the earlier node) when the graph has fewer vertices than the cluster has cores.
    Always at least one shard in all."""
    check_placement(placement)
    if not nodes:
        raise ConfigError("the Ray cluster has no alive node", field="address")
    home = driver_node if driver_node in nodes else nodes[0]
    offer = [max(0, int(cpus.get(n, 0))) if placement == "spread" or n == home else 0
             for n in nodes]
    if sum(offer) == 0:   # no node offers a CPU: one shard, where the driver runs
        offer = [1 if n == home else 0 for n in nodes]
    total = sum(offer)
    k = min(total, max(1, vertices))
    if k == total:
        return offer
    exact = [o * k / total for o in offer]
    counts = [int(e) for e in exact]
    rest = sorted(range(len(nodes)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in rest[:k - sum(counts)]:
        counts[i] += 1
    return counts


def plan(graph: Graph, vertices_per_actor, nodes: Sequence[str], cpus: dict[str, float],
         placement: str, driver_node: str, weights: mincut.Weights | None = None,
         batch_size: int | None = None, source: str | None = None,
         cost: CostContext | None = None) -> Plan:
    """Shards and their nodes for `vertices_per_actor` (auto or K) on these alive nodes
    (`cpus`: each node's CPU count). `weights`: a log's (`weights_from_log`), else the
    model's for `batch_size` samples. `info` says how the shards were chosen and what
    they cut, in bytes per batch. `cost`: auto chooses how many of the cores offered to
    use by the batch time it predicts (costmodel.py; `info`: the choice and every
    prediction); None: every core offered."""
    k_given = check_vertices_per_actor(vertices_per_actor)
    model = weights or mincut.model_weights(graph, batch_size or DEFAULT_BATCH)
    if k_given == AUTO:
        counts = cores_per_node(nodes, cpus, placement, driver_node, len(graph.order))
        where = [node for node, c in zip(nodes, counts) for _ in range(c)]
        predicted = {}
        if cost is None:
            part = mincut.min_cut(model, sum(counts))
        else:
            best, seen = choose(model, batch_work(graph, batch_size or DEFAULT_BATCH, cost),
                                sum(counts), cost)
            part = best.partition
            predicted = {"chosen_by": "cost model",
                         "predicted_batch_ms": round(best.seconds * 1e3, 3),
                         "predicted_ms": {str(k): round(v * 1e3, 3) for k, v in seen.items()},
                         "costs": cost.recorded or describe(cost.table)}
        shards = list(part.shards)
        where = where[:len(shards)]
        how = "min-cut" + (f" weighed by {source}" if source else "")
        cut, total = part.cut, part.total
    else:
        shards = partition(graph, k_given)
        where = assign_nodes(len(shards), nodes, placement, driver_node)
        how = "contiguous"
        cut = mincut.cut_of(shards, model)
        total = float(sum(model.edge.values()))
    info = {"vertices_per_actor": k_given, "partition": how, "shards": len(shards),
            "cut_bytes": round(cut),
            "cut_fraction": round(cut / total, 4) if total else 0.0}
    if k_given == AUTO:
        info.update(predicted)
    return Plan(shards, where, info)


def weights_from_log(directory: str, graph: Graph, batch_size: int | None = None
                     ) -> mincut.Weights:
    """Edge weights measured in a previous run's traffic log: bytes per batch between
    each pair of neighbouring vertices (every kind but control), averaged over its
    batches and scaled to `batch_size` when its header says what batch it ran with.
    Vertex weights stay the model's. A missing, empty or foreign log (another graph,
    or vertices and edges this graph does not have) is a DataError naming it."""
    from neurolocal.traffic.aggregate import totals
    from neurolocal.traffic.log import SCHEDULER

    def refuse(message: str) -> DataError:
        return DataError(message, source=str(directory), field="placement_from")

    try:
        measured = totals(directory, edges=True)
    except DataError as exc:
        raise exc.located(field="placement_from") from None
    names = {f.graph for f in measured.stream.files if f.graph}
    if names - {graph.name}:
        raise refuse(f"a traffic log of graph {min(names - {graph.name})!r}, "
                     f"not of {graph.name!r}")
    neighbours = {mincut.pair(p, c) for p, c in graph.edges}
    for group in graph.tied:
        neighbours |= {mincut.pair(group.owner[0], m) for m, _ in group.members}
    batches = len(measured.work_batches())
    edge: dict[tuple[str, str], float] = {}
    for row in measured.edge_rows():
        src, dst = row["src"], row["dst"]
        if row["kind"] == "control" or SCHEDULER in (src, dst) or src == dst:
            continue
        for name in (src, dst):
            if name not in graph.vertices:
                raise refuse(f"names vertex {name!r}, which graph {graph.name!r} does not have")
        key = mincut.pair(src, dst)
        if key not in neighbours:
            raise refuse(f"has messages {src} -> {dst}, not an edge of graph {graph.name!r}")
        edge[key] = edge.get(key, 0.0) + row["bytes"]
    if not edge or not batches:
        raise refuse("holds no message between vertices to weigh edges with")
    scale = 1.0 / batches
    logged = measured.stream.settings.get("batch_size") if measured.stream.files else None
    if batch_size and isinstance(logged, int) and logged > 0:
        scale *= batch_size / logged
    model = mincut.model_weights(graph, batch_size or DEFAULT_BATCH)
    return mincut.Weights(model.order, model.vertex,
                          {key: edge.get(key, 0.0) * scale for key in sorted(neighbours)})

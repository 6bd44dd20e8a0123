"""Which vertices share an actor, and which machine each actor runs on.

Shards are runs of K consecutive vertices in topological order: neighbours tend
to share a shard, so more messages stay local calls. Nodes are chosen per shard:

    spread  round-robin over the cluster's alive nodes (every node gets vertices)
    pack    every shard on the driver's node (one machine, fewest network hops)
"""

from __future__ import annotations

from typing import Sequence

from neurolocal.checks import number
from neurolocal.errors import ConfigError
from neurolocal.graph import Graph

PLACEMENTS = ("spread", "pack")


def partition(graph: Graph, vertices_per_actor: int) -> list[tuple[str, ...]]:
    k = number("vertices_per_actor", vertices_per_actor, whole=True, minimum=1)
    return [graph.order[i:i + k] for i in range(0, len(graph.order), k)]


def shard_of(shards: Sequence[Sequence[str]]) -> dict[str, int]:
    return {name: i for i, names in enumerate(shards) for name in names}


def assign_nodes(n_shards: int, nodes: Sequence[str], placement: str,
                 driver_node: str) -> list[str]:
    """A node id for each shard. `nodes` lists the alive nodes, in a stable order."""
    if placement not in PLACEMENTS:
        raise ConfigError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}",
                          field="placement")
    if not nodes:
        raise ConfigError("the Ray cluster has no alive node", field="address")
    if placement == "pack":
        return [driver_node if driver_node in nodes else nodes[0]] * n_shards
    return [nodes[i % len(nodes)] for i in range(n_shards)]

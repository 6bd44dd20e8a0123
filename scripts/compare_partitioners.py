#!/usr/bin/env python
"""The placement partitioner (engines/ray/partition.py) against METIS (`pymetis`), on cut
and time, under the same balance bound (docs/placement.md §6).

    python scripts/compare_partitioners.py        # needs `pip install pymetis`

For each graph and k: the bytes per batch each cuts, its heaviest shard over the bound
`B` that `min_cut` keeps (METIS is told the same imbalance, but balances against W / k,
so it may exceed B), and the milliseconds each takes (median of 5).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurolocal.engines.ray.partition import cut_of, min_cut, model_weights  # noqa: E402
from neurolocal.generate import random_graph, tiled_mlp  # noqa: E402
from neurolocal.topology import graph_from_dict, load_topology  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def graphs():
    for name in ("mlp", "cnn", "dag", "rnn", "lstm"):
        yield name, load_topology(ROOT / "topologies" / f"{name}.yaml").graph
    yield "tiled-40", graph_from_dict(tiled_mlp(40, 4, 128, 64, 10, fan_in=3))
    yield "tiled-1000", graph_from_dict(tiled_mlp(1000, 4, 4, 64, 10, fan_in=3))
    yield "random-300", graph_from_dict(random_graph(300, seed=1))


def metis(weights, k: int):
    import pymetis

    order = list(weights.order)
    index = {v: i for i, v in enumerate(order)}
    adjacency: list[list[int]] = [[] for _ in order]
    edge_weight: list[list[int]] = [[] for _ in order]
    for (a, b), w in weights.edge.items():
        if a == b or w <= 0:
            continue
        i, j = index[a], index[b]
        adjacency[i].append(j)
        adjacency[j].append(i)
        edge_weight[i].append(max(1, int(w)))
        edge_weight[j].append(max(1, int(w)))
    xadj, adjncy, eweights = [0], [], []
    for nbrs, ws in zip(adjacency, edge_weight):
        adjncy += nbrs
        eweights += ws
        xadj.append(len(adjncy))
    scale = max(weights.vertex.values()) / 1e6 or 1.0   # METIS wants int32 weights
    vweights = [max(1, int(weights.vertex[v] / scale)) for v in order]
    options = pymetis.Options(ufactor=100)   # 10% imbalance, as min_cut's
    _, parts = pymetis.part_graph(k, xadj=xadj, adjncy=adjncy, vweights=vweights,
                                  eweights=eweights, options=options)
    shards: dict[int, list[str]] = {}
    for v, p in zip(order, parts):
        shards.setdefault(p, []).append(v)
    return list(shards.values())


def timed(fn, repeat: int = 5):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times) * 1e3


def main() -> None:
    print(f"| graph | vertices | k | min_cut cut (B/batch) | METIS cut | min_cut heaviest / B "
          f"| METIS heaviest / B | min_cut ms | METIS ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, graph in graphs():
        weights = model_weights(graph, 32)
        for k in (2, 3, 4):
            if k > len(graph.order):
                continue
            ours, our_ms = timed(lambda: min_cut(weights, k))
            theirs, their_ms = timed(lambda: metis(weights, k))
            load = lambda shards: max(sum(weights.vertex[v] for v in s) for s in shards)
            print(f"| {name} | {len(graph.order)} | {k} | {ours.cut:,.0f} | "
                  f"{cut_of(theirs, weights):,.0f} ({len(theirs)} shards) | "
                  f"{load(ours.shards) / ours.bound:.2f} | {load(theirs) / ours.bound:.2f} | "
                  f"{our_ms:.2f} | {their_ms:.2f} |")


if __name__ == "__main__":
    main()

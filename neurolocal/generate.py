"""Topology generators: graphs of any size and shape, as topology mappings.

They return the same mapping a topology file holds (see `topology.graph_from_dict`),
so a generated graph can be written to YAML, validated and run like a hand-written one.
"""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ("identity", "tanh", "sigmoid", "relu")


def random_dag(seed: int, vertices: int = 12, width_choices=(3, 5), input_width: int = 4,
               output_width: int = 3, loss: str = "mse") -> dict:
    """A random connected DAG mixing dense, activations, add, mul and concat.

    Every vertex reaches the output: the vertices nobody consumes are concatenated
    into a final dense vertex. Paths of different lengths meet at add/mul/concat,
    so the graph is generally not layered.
    """
    rng = np.random.default_rng(seed)
    entries = [{"name": "x", "op": "input", "shape": [input_width]}]
    width = {"x": input_width}
    consumed: set[str] = set()

    def add(entry, w):
        entries.append(entry)
        width[entry["name"]] = w
        consumed.update(entry.get("parents", []))

    for k in range(vertices):
        name = f"v{k}"
        names = list(width)
        kind = rng.choice(["dense", "dense", "act", "add", "mul", "concat"])
        if kind in ("add", "mul"):
            by_width: dict[int, list[str]] = {}
            for n in names:
                by_width.setdefault(width[n], []).append(n)
            pools = [p for p in by_width.values() if len(p) >= 2]
            if pools:
                pool = pools[rng.integers(len(pools))]
                parents = list(rng.choice(pool, size=2, replace=False))
                add({"name": name, "op": str(kind), "parents": parents}, width[parents[0]])
                continue
            kind = "dense"
        if kind == "concat" and len(names) >= 2:
            parents = list(rng.choice(names, size=2, replace=False))
            add({"name": name, "op": "concat", "parents": parents},
                width[parents[0]] + width[parents[1]])
            continue
        parent = names[rng.integers(len(names))]
        if kind == "act" and parent != "x":
            op = str(rng.choice(["tanh", "sigmoid", "relu"]))
            add({"name": name, "op": op, "parents": [parent]}, width[parent])
        else:
            units = int(rng.choice(width_choices))
            add({"name": name, "op": "dense", "parents": [parent], "units": units,
                 "activation": str(rng.choice(ACTIVATIONS))}, units)
    sinks = [e["name"] for e in entries if e["name"] not in consumed and e["name"] != "x"]
    head_parent = sinks[0]
    if len(sinks) > 1:
        add({"name": "sinks", "op": "concat", "parents": sinks}, sum(width[s] for s in sinks))
        head_parent = "sinks"
    add({"name": "out", "op": "dense", "parents": [head_parent], "units": output_width}, output_width)
    return {"name": f"random-dag-{seed}", "vertices": entries, "output": "out", "loss": loss}

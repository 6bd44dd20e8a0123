"""Topology generators: graphs of any size and shape, as topology mappings.

They return the same mapping a topology file holds (see `topology.graph_from_dict`),
so a generated graph can be written to YAML, validated and run like a hand-written one.
"""

from __future__ import annotations

import json
import re

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
    # kept up to date as vertices are added (not rebuilt per vertex), so a 10,000-vertex
    # graph takes linear time; insertion orders match a rebuild, so the draws do too
    names: list[str] = ["x"]
    by_width: dict[int, list[str]] = {input_width: ["x"]}
    pools: list[list[str]] = []  # the by_width lists holding >= 2 names, in by_width order

    def add(entry, w):
        entries.append(entry)
        width[entry["name"]] = w
        names.append(entry["name"])
        consumed.update(entry.get("parents", []))
        same = by_width.setdefault(w, [])
        same.append(entry["name"])
        if len(same) == 2:
            pools[:] = [p for p in by_width.values() if len(p) >= 2]

    for k in range(vertices):
        name = f"v{k}"
        kind = rng.choice(["dense", "dense", "act", "add", "mul", "concat"])
        if kind in ("add", "mul"):
            if pools:
                pool = pools[rng.integers(len(pools))]
                parents = _draw_two(rng, pool)
                add({"name": name, "op": str(kind), "parents": parents}, width[parents[0]])
                continue
            kind = "dense"
        if kind == "concat" and len(names) >= 2:
            parents = _draw_two(rng, names)
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


def _draw_two(rng: np.random.Generator, names: list[str]) -> list[str]:
    """Two distinct names; the same draw as `rng.choice(names, 2, replace=False)` without
    copying the whole list into an array each time."""
    return [names[i] for i in rng.choice(len(names), size=2, replace=False)]


# --- generators that scale the vertex count ------------------------------------------------
#
# Each returns a topology mapping and keeps the count of vertices close to the one asked
# for; `len(mapping["vertices"])` is the exact count. All of them use built-in ops only,
# so predictive coding on them is exact with eta = 1 and T = depth.


def tiled_mlp(vertices: int = 100, layers: int = 4, tile_width: int = 4, input_width: int = 16,
              output_width: int = 4, activation: str = "tanh", loss: str = "mse",
              fan_in: int = 3) -> dict:
    """An MLP whose hidden layers are each cut into N tiles, N chosen from `vertices`.

    Layer l is N vertices `l{l}.t{j}` of `tile_width` units with a fused activation;
    every tile of layer 1 reads the input. Above it the wiring depends on `fan_in`:

    - `fan_in = K >= 1` (local): tile j of layer l + 1 is a `multi_dense` over the K
      tiles of layer l nearest to j (a window, shifted to stay inside the layer). A
      vertex talks to K + K' neighbours whatever N is, and the parameter count grows
      linearly with N. Vertex count: layers * N + 3 (input, a final join, output).
    - `fan_in = 0` (full): a concat vertex `l{l}.join` gathers each layer and every
      tile above reads that join, so each layer is one wide dense layer (N * tile_width
      units) computed in N pieces; parameters grow as N^2. Vertex count:
      layers * (N + 1) + 2.

    A concat `join` gathers the last layer for the dense output vertex. Only built-in
    ops and concat, so PC is exact on it with eta = 1 and T = depth.
    """
    _at_least("layers", layers, 1)
    _at_least("tile_width", tile_width, 1)
    _at_least("fan_in", fan_in, 0)
    if fan_in:
        tiles = max(1, round((vertices - 3) / layers))
    else:
        tiles = max(1, round((vertices - 2) / layers) - 1)
    entries = [{"name": "x", "op": "input", "shape": [input_width]}]
    below = ["x"] * tiles  # what each tile of the next layer reads
    for layer in range(1, layers + 1):
        names = [f"l{layer}.t{j}" for j in range(tiles)]
        for j, name in enumerate(names):
            if layer == 1 or not fan_in:
                entries.append({"name": name, "op": "dense", "parents": [below[j]],
                                "units": tile_width, "activation": activation})
            else:
                entries.append({"name": name, "op": "multi_dense",
                                "parents": _window(below, j, fan_in), "units": tile_width,
                                "activation": activation})
        if fan_in:
            below = names
        else:
            below = [_join(entries, f"l{layer}.join", names)] * tiles
    if fan_in:
        # declare the tiles column by column (tile j of every layer, then j + 1): the
        # topological order follows, so K consecutive vertices form a strip of columns
        # and an engine that packs K vertices per actor keeps most edges inside one
        tiles_first = sorted(entries[1:], key=lambda e: _column_then_layer(e["name"]))
        entries[1:] = tiles_first
    top = below[0] if not fan_in else _join(entries, "join", below)
    entries.append({"name": "out", "op": "dense", "parents": [top], "units": output_width})
    wiring = f"fan-in {fan_in}" if fan_in else "full"
    return {"name": f"tiled-mlp-{layers}x{tiles}",
            "description": f"{layers} layers of {tiles} tiles x {tile_width} units, {wiring}",
            "vertices": entries, "output": "out", "loss": loss}


def _column_then_layer(name: str) -> tuple[int, int]:
    layer, tile = name.split(".")  # "l{layer}.t{j}"
    return int(tile[1:]), int(layer[1:])


def _window(names: list[str], center: int, size: int) -> list[str]:
    """`size` consecutive names around `center`, shifted to stay inside the list."""
    size = min(size, len(names))
    start = min(max(0, center - size // 2), len(names) - size)
    return names[start:start + size]


def _join(entries: list[dict], name: str, parents: list[str]) -> str:
    """Append a concat of `parents` (none needed for one) and return what to read."""
    if len(parents) == 1:
        return parents[0]
    entries.append({"name": name, "op": "concat", "parents": list(parents)})
    return name


def deep_chain(vertices: int = 100, width: int = 32, input_width: int = 4,
               output_width: int = 4, activation: str = "tanh", loss: str = "mse") -> dict:
    """x -> c0 -> c1 -> ... -> out: one dense vertex per link, depth vertices - 2.

    The deepest graph for its size: exact PC needs T = depth rounds, so a chain costs
    O(vertices^2) vertex steps per batch in a synchronous Jacobi sweep (one backward
    pass in an event-driven one). Width 32 keeps a tanh chain's gradients above 1e-6
    at 1,000 links; at width 4 they vanish (~1e-20 at 300 links).
    """
    _at_least("vertices", vertices, 2)
    entries = [{"name": "x", "op": "input", "shape": [input_width]}]
    below = "x"
    for k in range(vertices - 2):
        entries.append({"name": f"c{k}", "op": "dense", "parents": [below], "units": width,
                        "activation": activation})
        below = f"c{k}"
    entries.append({"name": "out", "op": "dense", "parents": [below], "units": output_width})
    return {"name": f"chain-{vertices}", "description": f"chain of {vertices - 2} dense links",
            "vertices": entries, "output": "out", "loss": loss}


def random_graph(vertices: int = 100, seed: int = 0, loss: str = "mse") -> dict:
    """`random_dag` sized so the whole graph (input, sinks concat, output) has about
    `vertices` vertices."""
    _at_least("vertices", vertices, 3)
    document = random_dag(seed, vertices=vertices - 3, loss=loss)
    document["name"] = f"random-{vertices}-seed{seed}"
    return document


PARAMETERIZATIONS = ("mupc", "standard")


def resnet(depth: int = 8, width: int = 128, parameterization: str = "mupc",
           activation: str = "relu", input_width: int = 784, output_width: int = 10,
           loss: str = "mse", skips: bool = True, init: str | None = None) -> dict:
    """jpc's fully connected residual network (`make_mlp` + `make_skip_model`, the muPC
    paper's FCResNet): `depth` hidden layers of `width` units, L = depth + 1 weight
    matrices, no biases, the activation applied *before* each linear map but the first:

        h1 = a1 W1 x;   h_l = a_l W_l g(h_{l-1}) + h_{l-1} (l = 2..depth);   out = aL WL g(h_depth)

    Each layer is one dense vertex (`skip: true` holds the identity skip, so a residual
    layer is one value node, as in jpc's energy); no skip on the first and the last.
    `mupc`: weights N(0, 1) (`init: normal`), multipliers a1 = 1/sqrt(D), a_l =
    1/sqrt(N L) (1/sqrt(N) with `skips=False`), aL = 1/N (jpc's `_get_param_scalings`).
    `standard`: multipliers 1, torch/equinox Linear's uniform init. `init` overrides the
    initialisation (e.g. `he`: a plain deep MLP that backprop can train).
    """
    _at_least("depth", depth, 1)
    _at_least("width", width, 1)
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {', '.join(PARAMETERIZATIONS)}, "
                         f"got {parameterization!r}")
    layers = depth + 1
    mupc = parameterization == "mupc"
    init = init or ("normal" if mupc else "uniform")
    hidden = 1.0 / np.sqrt(width * layers) if skips else 1.0 / np.sqrt(width)
    scale = {"first": 1.0 / np.sqrt(input_width), "hidden": hidden, "last": 1.0 / width} \
        if mupc else {"first": 1.0, "hidden": 1.0, "last": 1.0}

    def layer(name, parent, units, kind, **extra):
        entry = {"name": name, "op": "dense", "parents": [parent], "units": units,
                 "bias": False, "init": init}
        if scale[kind] != 1.0:
            entry["multiplier"] = float(scale[kind])
        if kind != "first" and activation != "identity":
            entry["pre_activation"] = activation
        entry.update(extra)
        return entry

    entries = [{"name": "x", "op": "input", "shape": [input_width]},
               layer("h1", "x", width, "first")]
    for k in range(2, depth + 1):
        entries.append(layer(f"h{k}", f"h{k - 1}", width, "hidden",
                             **({"skip": True} if skips else {})))
    entries.append(layer("out", f"h{depth}", output_width, "last"))
    kind = "resnet" if skips else "mlp"
    return {"name": f"{parameterization}-{kind}-{depth}x{width}",
            "description": f"{depth} hidden layers of {width} ({activation} before each "
                           f"linear map), {parameterization} parameterisation"
                           + ("" if skips else ", no skips"),
            "vertices": entries, "output": "out", "loss": loss}


def _at_least(what: str, value: int, low: int) -> None:
    if value < low:
        raise ValueError(f"{what} must be at least {low}, got {value}")


# --- writing a topology file ---------------------------------------------------------------

GENERATORS = {"tiled": tiled_mlp, "chain": deep_chain, "random": random_graph,
              "resnet": resnet}
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null", "none"}


def topology_yaml(document: dict) -> str:
    """A topology mapping as YAML text, one flow-style line per vertex.

    Written by hand rather than with yaml.dump: at 10,000 vertices PyYAML's emitter
    takes seconds, and one line per vertex reads (and diffs) like a hand-written file.
    Names are quoted when YAML could read them as anything but text.
    """
    texts: dict = {}    # each distinct text or number written once (names recur as parents)

    def scalar(value) -> str:
        kind = type(value)
        if kind is list:
            return "[" + ", ".join(map(scalar, value)) + "]"
        if kind is str or kind is int:
            text = texts.get((kind, value))
            if text is None:
                text = texts[kind, value] = _scalar(value)
            return text
        return _scalar(value)

    lines = []
    for key in ("name", "description"):
        if key in document:
            lines.append(f"{key}: {scalar(document[key])}")
    lines.append("vertices:")
    for entry in document["vertices"]:
        fields = ", ".join(f"{k}: {scalar(v)}" for k, v in entry.items())
        lines.append(f"  - {{{fields}}}")
    lines.append(f"output: {scalar(document['output'])}")
    lines.append(f"loss: {scalar(document['loss'])}")
    return "\n".join(lines) + "\n"


def _scalar(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))     # shortest text that reads back the same float
    if isinstance(value, str):
        if _PLAIN.match(value) and value.lower() not in _YAML_WORDS:
            return value
        return json.dumps(value)  # a JSON string is a valid double-quoted YAML scalar
    raise TypeError(f"cannot write {value!r} into a topology file")

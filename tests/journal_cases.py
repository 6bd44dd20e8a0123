"""Hostile replay journals (issue 28), generated from a real one.

`record_sim(dir)` records a sim journal (version 1, one map) with `check-grad --engine
sim`; `as_streams(document)` rewrites it as a Ray run's streams (version 2: the
driver's header and events, one actor's reads), with a restore, a training batch and a
snapshot added so every event kind and field is present. `mutations(objects)` breaks
every node of either (lists are entered at their first item): the hostile values of
hostile_cases.py, deletion, an unknown key, and for packed arrays wrong dtypes, shapes
and data; `file_cases(bytes)` cuts and flips the file itself."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any, Iterator

import msgpack

import hostile_cases as H

TOPOLOGY = H.TOPOLOGIES / "dag.yaml"
RUN = "20261206-000000-1-hostile"


def record_sim(directory: Path) -> dict:
    """A sim journal of an asynchronous relaxation of dag.yaml (staleness 2, losses)."""
    from neurolocal.cli import main

    code = main(["check-grad", str(TOPOLOGY), "--engine", "sim", "--traffic-log",
                 str(directory), "--json", "--staleness", "2", "--delay", "exp:1.5",
                 "--drop", "0.05", "--seed", "3", "-T", "6", "--eta", "0.5"])
    assert code == 0
    path = next(directory.glob("*.sim.replay"))
    return msgpack.unpackb(path.read_bytes(), raw=False)


def as_streams(document: dict) -> dict[str, list]:
    """The sim journal as a Ray run's streams: {file name: [header, objects...]}."""
    batch = document["batches"][0]
    header = {"format": document["format"], "version": 2, "writer": "scheduler",
              "engine": "ray", "run": RUN, "graph": document["graph"],
              "topology": document["topology"], "topology_text": TOPOLOGY.read_text(),
              "mode": document["mode"], "schedule": document["schedule"],
              "staleness": document["staleness"], "vertices_per_actor": "auto", "actors": 1,
              "asynchrony": None}
    shared = {k: batch[k] for k in ("batch", "eta", "iterations", "read_inputs", "inputs",
                                    "target", "digest")}
    relax = {"event": "batch", **shared, "training": False, "staleness": 2,
             "params": batch["params"], "vertices": {}}
    restore = {"event": "restore", "params": batch["params"],
               "optimizer": {"step": {"dtype": "<i8", "shape": [], "data": bytes(8)}},
               "learning": {"optimizer": "adam", "lr": 0.001, "options": [["beta1", 0.9]],
                            "updates_per_batch": 1}}
    train = {"event": "batch", **shared, "batch": 1, "training": True, "staleness": 2}
    snapshot = {"event": "snapshot", "after": 2, "digest": "0" * 64, "vertices": {}}
    actor = [{"format": document["format"], "version": 2, "writer": "actor-0",
              "vertices": ["x", "trunk"]},
             {"batch": 0, "reads": batch["reads"], "lost": batch["lost"], "stale": []},
             {"batch": 1, "reads": batch["reads"], "lost": [], "stale": [[1, "a", "b",
                                                                        "error", 0]]}]
    return {f"{RUN}.scheduler.replay": [header, relax, restore, train, snapshot],
            f"{RUN}.actor-0.replay": actor}


def pack(objects: list) -> bytes:
    packer = msgpack.Packer(use_bin_type=True)
    return b"".join(packer.pack(o) for o in objects)


def _paths(doc: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every node, entering a list only at its first item."""
    items = doc.items() if isinstance(doc, dict) else \
        enumerate(doc[:1]) if isinstance(doc, list) else ()
    for k, v in items:
        yield prefix + (k,)
        yield from _paths(v, prefix + (k,))


def _is_array(node: Any) -> bool:
    return isinstance(node, dict) and set(node) == {"dtype", "shape", "data"}


ARRAY_BREAKS = {
    "object-dtype": lambda a: {**a, "dtype": "|O"},
    "complex-dtype": lambda a: {**a, "dtype": "<c16"},
    "text-dtype": lambda a: {**a, "dtype": "<U3"},
    "subarray-dtype": lambda a: {**a, "dtype": "(2,)<f8"},
    "garbage-dtype": lambda a: {**a, "dtype": "no such"},
    "transposed": lambda a: {**a, "shape": a["shape"][::-1]},
    "extra-axis": lambda a: {**a, "shape": [1, *a["shape"]]},
    "huge-shape": lambda a: {**a, "shape": [1 << 40, 1 << 40]},
    "negative-shape": lambda a: {**a, "shape": [-1, *a["shape"][1:]]},
    "short-data": lambda a: {**a, "data": a["data"][:-8]},
    "huge-data": lambda a: {**a, "data": b"\xff\xf8" * (len(a["data"]) // 2)},
    "nan-data": lambda a: {**a, "data": b"\0\0\0\0\0\0\xf8\x7f" * (len(a["data"]) // 8)},
    "text-data": lambda a: {**a, "data": "abc"},
}


def mutations(objects: list, name: str, rng: random.Random,
              per_node: int = 5) -> Iterator[tuple[str, list, tuple]]:
    """(case id, mutated objects, path): every node of every object broken `per_node`
    ways drawn from the hostile values (plus deletion, an unknown key, array breaks)."""
    for index, obj in enumerate(objects):
        for path in _paths(obj):
            node = H._get(obj, path)
            ways = [(label, value) if not isinstance(value, int) or -2 ** 63 <= value < 2 ** 64
                    else ("2^64-1", 2 ** 64 - 1) for label, value in H.HOSTILE_VALUES]
            chosen = rng.sample(ways, per_node) + [("deleted", None)]
            if _is_array(node):
                chosen += [(label, ARRAY_BREAKS[label](node)) for label in
                           rng.sample(sorted(ARRAY_BREAKS), 4)]
            if isinstance(node, dict):
                chosen.append(("unknown-key", {**node, "hostile_unknown_key": 1}))
            for label, value in chosen:
                out = copy.deepcopy(objects)
                if label == "deleted":
                    H._delete(out[index], path)
                else:
                    H._set(out[index], path, copy.deepcopy(value))
                yield f"{name}[{index}]:{H.path_id(path)}={label}", out, path


def file_cases(data: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """The file itself cut and flipped."""
    for fraction in (0.0, 0.01, 0.3, 0.5, 0.9, 0.999):
        yield f"cut-{fraction}", data[:int(len(data) * fraction)]
    for i in range(8):
        yield f"flips-{i}", H.flip_bits(data, rng, 1 + i)
    yield "garbage", bytes(rng.getrandbits(8) for _ in range(2000))
    yield "doubled", data + data

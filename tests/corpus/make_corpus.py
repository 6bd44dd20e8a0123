"""Writes the malformed-input corpus next to this file (run it to regenerate).

Each case is a file a user might hand to neurolocal by mistake; `MANIFEST.json`
says which command reads it and which words the one-line error must contain.
`tests/test_corpus.py` runs them all (plus checkpoint cases derived from a real run).
"""

import io
import json
import struct
from pathlib import Path

import msgpack
import numpy as np

HERE = Path(__file__).resolve().parent
GOOD = """vertices:
  - {name: x, op: input, shape: [64]}
  - {name: h, op: dense, parents: [x], units: 8, activation: tanh}
  - {name: y, op: dense, parents: [h], units: 10}
output: y
loss: softmax_cross_entropy
"""

TOPOLOGIES = {
    "missing_parent.yaml": (GOOD.replace("parents: [h]", "parents: [hidden]"), "not declared"),
    "unknown_op.yaml": (GOOD.replace("op: dense, parents: [x]", "op: dense2, parents: [x]"),
                        "unknown op"),
    "cycle.yaml": ("""vertices:
  - {name: x, op: input, shape: [4]}
  - {name: a, op: add, parents: [x, b]}
  - {name: b, op: tanh, parents: [a]}
  - {name: y, op: dense, parents: [b], units: 2}
output: y
loss: mse
""", "cycle"),
    "shape_mismatch.yaml": ("""vertices:
  - {name: x, op: input, shape: [4]}
  - {name: h, op: dense, parents: [x], units: 3}
  - {name: s, op: add, parents: [x, h]}
  - {name: y, op: dense, parents: [s], units: 2}
output: y
loss: mse
""", "one shape"),
    "duplicate_vertex.yaml": (GOOD.replace("name: h,", "name: x,").replace("[h]", "[x]"),
                              "declared twice"),
    "duplicate_key.yaml": (GOOD.replace("units: 8,", "units: 8, units: 9,"), "duplicate key"),
    "bad_yaml.yaml": ("vertices: [\n  - {name: x, op: input", "invalid YAML"),
    "tab_indent.yaml": ("vertices:\n\t- {name: x}\n", "invalid YAML"),
    "negative_units.yaml": (GOOD.replace("units: 8", "units: -8"), "positive integer"),
    "zero_shape.yaml": (GOOD.replace("shape: [64]", "shape: [0]"), "positive integer"),
    "absurd_size.yaml": (GOOD.replace("shape: [64]", "shape: [1000000, 1000000]"), "more than"),
    "string_units.yaml": (GOOD.replace("units: 8", "units: eight"), "positive integer"),
    "float_units.yaml": (GOOD.replace("units: 8", "units: 8.5"), "positive integer"),
    "bool_units.yaml": (GOOD.replace("units: 8", "units: true"), "positive integer"),
    "unknown_attribute.yaml": (GOOD.replace("units: 8,", "units: 8, dropout: 0.5,"),
                               "no attribute 'dropout'"),
    "no_output.yaml": (GOOD.replace("output: y\n", ""), "output: missing"),
    "output_not_declared.yaml": (GOOD.replace("output: y", "output: z"), "not declared"),
    "output_is_input.yaml": (GOOD.replace("output: y", "output: x"), "is an input"),
    "unknown_loss.yaml": (GOOD.replace("loss: softmax_cross_entropy", "loss: hinge"),
                          "unknown loss"),
    "python_tag.yaml": ("!!python/object/apply:os.system ['true']\n", "invalid YAML"),
    "list_document.yaml": ("- a\n- b\n", "expected a mapping"),
    "empty.yaml": ("", "expected a mapping"),
    "vertices_not_list.yaml": (GOOD.replace("vertices:\n", "vertices: 3\nx:\n"), "unknown key"),
    "unknown_section.yaml": (GOOD + "optimiser: adam\n", "unknown key"),
    "bad_activation.yaml": (GOOD.replace("activation: tanh", "activation: swish"),
                            "expected one of"),
    "recurrence_cycle.yaml": ("""vertices:
  - {name: x, op: input, shape: [4]}
  - {name: h, op: dense, parents: [h], units: 4}
  - {name: y, op: dense, parents: [h], units: 2}
output: y
loss: mse
""", "own parent"),
    "not_utf8.yaml": (b"vertices: [\xff\xfe]\n", "UTF-8"),
}

DATA = {}


def npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def pickled_npz():
    buffer = io.BytesIO()
    np.savez(buffer, x=np.array([{"evil": 1}] * 4, dtype=object), y=np.arange(4))
    return buffer.getvalue()


rng = np.random.default_rng(0)
DATA = {
    "wrong_width.npz": (npz_bytes(x=rng.random((20, 63)), y=rng.integers(0, 10, 20)), "shape"),
    "labels_out_of_range.npz": (npz_bytes(x=rng.random((20, 64)), y=np.full(20, 12)),
                                "labels out of range"),
    "missing_y.npz": (npz_bytes(x=rng.random((20, 64))), "expected arrays x and y"),
    "length_mismatch.npz": (npz_bytes(x=rng.random((20, 64)), y=rng.integers(0, 10, 19)), "20"),
    "object_array.npz": (pickled_npz(), "pickle"),
    "truncated.npz": (npz_bytes(x=rng.random((20, 64)), y=rng.integers(0, 10, 20))[:300],
                      "npz"),
    "garbage.csv": (b"this,is\nnot,numbers\n1,2,3\n", "csv"),
    "ragged.csv": (("\n".join(",".join(["0.5"] * (65 if i % 2 else 64)) for i in range(6))
                    + "\n").encode(), "csv"),
    "nan_values.npz": (npz_bytes(x=np.full((20, 64), np.nan), y=rng.integers(0, 10, 20)),
                       "finite"),
}

HEADER = {"format": "neurolocal-traffic", "version": 1, "run": "r", "writer": "w",
          "fields": [], "graph": "g", "settings": {}}
LOGS = {
    "garbage": (b"\xc1\xc1\xc1 not msgpack at all", "not a traffic log"),
    "bad_header": (msgpack.packb({"format": "something-else"}), "bad header"),
    "future_version": (msgpack.packb({**HEADER, "version": 99}), "version 99"),
    "empty": (b"", "before its header"),
    "bad_record": (msgpack.packb(HEADER) + msgpack.packb([1, 2, 3]), "malformed record"),
    "huge_header": (b"\xdb" + struct.pack(">I", 0xFFFFFFF0) + b"ab", "before its header"),
}


def main():
    manifest = []
    for group, cases, command in (("topology", TOPOLOGIES, ["validate", "{file}"]),
                                  ("data", DATA, ["run", "{mlp}", "--engine", "local",
                                                  "--data", "{file}", "--out", "{out}"])):
        folder = HERE / group
        folder.mkdir(exist_ok=True)
        for name, (content, expected) in cases.items():
            data = content.encode() if isinstance(content, str) else content
            (folder / name).write_bytes(data)
            manifest.append({"file": f"{group}/{name}", "command": command, "expect": expected})
    for name, (content, expected) in LOGS.items():
        folder = HERE / "log" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "run.w.traffic").write_bytes(content)
        manifest.append({"file": f"log/{name}", "command": ["traffic", "summary", "{file}"],
                         "expect": expected})
    (HERE / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{len(manifest)} cases")


if __name__ == "__main__":
    main()

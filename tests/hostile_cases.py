"""Hostile inputs for issue 19, made by seeded generators, and the promise they are held to.

The promise, for every case: exit code 0 or 2; on 2 at most ONE line on stderr; no
traceback; within CPU_SECONDS of CPU time and MEMORY_BYTES of address space. Memory
and time are enforced on the child with `resource.setrlimit` (RLIMIT_AS, RLIMIT_CPU)
plus, in the in-process driver, a per-case CPU alarm (tests/hostile_driver.py); the
parent only sets a generous subprocess timeout as a backstop, never a wall-time assert.

Generators here are plain functions of a seed, so a failing case is reproduced by its id.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml

REPO = Path(__file__).resolve().parents[1]
TOPOLOGIES = REPO / "topologies"
DRIVER = Path(__file__).resolve().parent / "hostile_driver.py"
CPU_SECONDS = 10
MEMORY_BYTES = 1 << 30

# --- a small trainable graph ----------------------------------------------------------------


def small_digits(units: int = 32, **training: Any) -> str:
    """A digits classifier with one hidden layer of `units`, as topology text; `training`
    overrides its training section (a value of None drops the key)."""
    section = {"data": "digits", "epochs": 1, "batch_size": 256, "iterations": 2,
               "engine": "local", "optimizer": {"name": "adam", "lr": 0.01}, **training}
    return flow({"name": "small-digits",
                 "vertices": [{"name": "image", "op": "input", "shape": [64]},
                              {"name": "hidden", "op": "dense", "parents": ["image"],
                               "units": units, "activation": "tanh"},
                              {"name": "logits", "op": "dense", "parents": ["hidden"],
                               "units": 10}],
                 "output": "logits", "loss": "softmax_cross_entropy",
                 "training": {k: v for k, v in section.items() if v is not None}})


# --- the promise ---------------------------------------------------------------------------


def limit_child(cpu_seconds: int = CPU_SECONDS, memory: int = MEMORY_BYTES):
    """A preexec_fn: the child may use `memory` bytes of address space and `cpu_seconds`."""
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    return apply


def child_env() -> dict:
    """One BLAS thread: OpenBLAS reserves address space per thread, which RLIMIT_AS counts."""
    return {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def broken(code: Any, stderr: str, error: str | None = None, timeout: bool = False) -> str | None:
    """Why a case breaks the promise, or None when it keeps it."""
    if timeout:
        return f"over {CPU_SECONDS} s of CPU"
    if error:
        return f"exception escaped: {error.strip().splitlines()[-1][:300]}"
    if code not in (0, 2):
        return f"exit code {code}; stderr {stderr[-300:]!r}"
    if "Traceback" in stderr:
        return f"traceback on stderr: {stderr[-300:]!r}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    if code == 2 and len(lines) != 1:
        return f"{len(lines)} lines on stderr: {lines[:3]!r}"
    return None


def run_cli(argv: list[str], *, cwd: Path | None = None, wall_timeout: float = 120,
            memory: int = MEMORY_BYTES) -> dict:
    """`python -m neurolocal ARGV` under the limits (`memory` bytes of address space: the
    issue's 2 GB for commands that load DuckDB); a record for `broken`."""
    command = [sys.executable, "-m", "neurolocal", *map(str, argv)]
    try:
        done = subprocess.run(command, cwd=cwd or REPO, env=child_env(), capture_output=True,
                              text=True, errors="replace", timeout=wall_timeout,
                              preexec_fn=limit_child(memory=memory))
    except subprocess.TimeoutExpired:
        return {"code": None, "stderr": "", "error": None, "timeout": True}
    code = done.returncode
    if code < 0:                               # killed by a signal: SIGXCPU is the CPU limit
        return {"code": code, "stderr": done.stderr[-2000:], "error": None,
                "timeout": code == -24}
    return {"code": code, "stderr": done.stderr[-4000:], "error": None, "timeout": False}


def run_driver(cases: list[dict], work: Path) -> list[dict]:
    """Cases in one bounded child process (tests/hostile_driver.py); one record each."""
    work.mkdir(parents=True, exist_ok=True)
    cases_file, results_file = work / "cases.json", work / "results.jsonl"
    cases_file.write_text(json.dumps(cases))
    budget = CPU_SECONDS * len(cases) + 60
    try:
        done = subprocess.run([sys.executable, str(DRIVER), str(cases_file), str(results_file)],
                              cwd=work, env=child_env(), capture_output=True, text=True,
                              errors="replace", timeout=2 * budget + 120,
                              preexec_fn=limit_child(cpu_seconds=budget))
        driver_error = done.stderr[-1500:] if done.returncode else None
    except subprocess.TimeoutExpired:
        driver_error = "driver timed out"
    records = []
    if results_file.exists():
        records = [json.loads(line) for line in results_file.read_text().splitlines() if line]
    seen = {r["id"] for r in records}
    for case in cases:
        if case["id"] not in seen:
            records.append({"id": case["id"], "code": None, "stderr": "", "timeout": False,
                            "error": f"the driver died before this case: {driver_error}"})
            break                                  # the first case missing is the culprit
    return records


def failures(records: list[dict]) -> list[str]:
    out = []
    for r in records:
        why = broken(r.get("code"), r.get("stderr", ""), r.get("error"), r.get("timeout", False))
        if why:
            out.append(f"{r['id']}: {why}")
    return out


# --- hostile values ------------------------------------------------------------------------

#: wrong types, then numbers: zero, negative, fractional, huge, NaN, infinite, and two
#: sizes that are legal but large (2^24 is the per-attribute limit, 4096 a wide layer)
HOSTILE_VALUES: list[tuple[str, Any]] = [
    ("text", "abc"), ("empty-text", ""), ("true", True), ("null", None), ("empty-list", []),
    ("map", {"a": 1}), ("zero", 0), ("minus-one", -1), ("fraction", 1.5), ("2^63", 2 ** 63),
    ("10^30", 10 ** 30), ("1e300", 1e300), ("nan", math.nan), ("inf", math.inf),
    ("-inf", -math.inf), ("2^24", 1 << 24), ("4096", 4096), ("int64-min", -(2 ** 63)),
]


def laughs(levels: int = 9, width: int = 9) -> list:
    """A 'billion laughs' structure: a few hundred bytes of YAML, width^levels leaves."""
    node: Any = ["lol"] * width
    for _ in range(levels):
        node = [node] * width
    return node


DEEP_MARK = "__hostile_deep_nesting__"


def node_paths(doc: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every node below the root, as a tuple of keys/indices."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield prefix + (k,)
            yield from node_paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield prefix + (i,)
            yield from node_paths(v, prefix + (i,))


def _get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


def _set(doc, path, value):
    _get(doc, path[:-1])[path[-1]] = value


def _delete(doc, path):
    parent = _get(doc, path[:-1])
    del parent[path[-1]]


_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump(doc: Any) -> str:
    """YAML text; objects shared in `doc` become anchors and aliases (PyYAML's dumper)."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True)


def flow(doc: Any) -> str:
    """The same document as one line of flow YAML, ~50x faster than `dump` (no aliases)."""
    if isinstance(doc, dict):
        return "{" + ", ".join(f"{flow(k)}: {flow(v)}" for k, v in doc.items()) + "}"
    if isinstance(doc, list):
        return "[" + ", ".join(flow(v) for v in doc) + "]"
    if isinstance(doc, bool):
        return "true" if doc else "false"
    if doc is None:
        return "null"
    if isinstance(doc, int):
        return str(doc)
    if isinstance(doc, float):
        if math.isnan(doc):
            return ".nan"
        if math.isinf(doc):
            return ".inf" if doc > 0 else "-.inf"
        return f"{doc:.17e}"
    return json.dumps(str(doc))


def path_id(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def topology_mutations(name: str, text: str) -> Iterator[tuple[str, str, tuple]]:
    """(case id, YAML text, mutated path) for every node of a topology and every way to
    break it: hostile values, deletion, unknown keys, aliases (harmless and bombs),
    nesting 40 and 2,000 levels deep (100,000 at the root)."""
    base = yaml.safe_load(text)
    frozen = json.dumps(base)

    def fresh():
        return json.loads(frozen)
    paths = list(node_paths(base))
    for path in paths:
        pid = f"{name}:{path_id(path)}"
        for label, value in HOSTILE_VALUES:
            doc = fresh()
            _set(doc, path, copy.deepcopy(value))
            yield f"{pid}={label}", flow(doc), path
        doc = fresh()
        _delete(doc, path)
        yield f"{pid}=deleted", flow(doc), path
        doc = fresh()
        _set(doc, path, laughs())
        yield f"{pid}=alias-bomb", dump(doc), path
        doc = fresh()
        other = paths[(paths.index(path) * 7 + 3) % len(paths)]
        if other[:len(path)] != path and path[:len(other)] != other:
            shared = _get(doc, other)
            if isinstance(shared, (list, dict)):
                _set(doc, path, shared)                # an anchor here, an alias there
                yield f"{pid}=alias-of-{path_id(other)}", dump(doc), path
        for depth in (40, 2000):
            doc = fresh()
            _set(doc, path, DEEP_MARK)
            nested = "[" * depth + "1" + "]" * depth
            yield (f"{pid}=nested-{depth}", flow(doc).replace(f'"{DEEP_MARK}"', nested, 1),
                   path)
        container = _get(base, path)
        if isinstance(container, dict):
            doc = fresh()
            _get(doc, path)["hostile_unknown_key"] = 1
            yield f"{pid}=unknown-key", flow(doc), path
        if isinstance(container, list) and container:
            doc = fresh()
            _get(doc, path).extend(copy.deepcopy(container))   # duplicates
            yield f"{pid}=doubled", flow(doc), path
    for key in ("hostile_unknown_key", 7, None):
        doc = fresh()
        doc[key] = 1
        yield f"{name}:top-level-key-{key}", flow(doc), ()
    yield f"{name}:root-bomb", dump(laughs()), ()
    yield f"{name}:root-nested", "[" * 100_000 + "]" * 100_000, ()
    yield f"{name}:root-mapping-nested", "{a: " * 5000 + "1" + "}" * 5000, ()


def all_topology_mutations() -> list[tuple[str, str, tuple]]:
    cases = []
    for path in sorted(TOPOLOGIES.glob("*.yaml")):
        cases.extend(topology_mutations(path.stem, path.read_text()))
    return cases


def stratified(items: list, per_key, key, seed: int) -> list:
    """Up to `per_key` items for each key(item), picked by a seeded generator."""
    groups: dict = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    rng = random.Random(seed)
    picked = []
    for k in sorted(groups, key=str):
        group = groups[k]
        picked.extend(rng.sample(group, min(per_key, len(group))))
    return picked


# --- data files ----------------------------------------------------------------------------


def _npz_bytes(arrays: dict, allow_pickle: bool = False) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    if allow_pickle:
        with __import__("zipfile").ZipFile(buffer, "w") as archive:
            for name, a in arrays.items():
                member = io.BytesIO()
                np.save(member, a, allow_pickle=True)
                archive.writestr(f"{name}.npy", member.getvalue())
    else:
        np.savez(buffer, **arrays)
    return buffer.getvalue()


def _zip(members, compression=None) -> bytes:
    """A zip of (name, bytes) pairs (a dict or a list: a list may repeat a name)."""
    import io
    import warnings
    import zipfile

    buffer = io.BytesIO()
    pairs = members.items() if isinstance(members, dict) else members
    with zipfile.ZipFile(buffer, "w", compression or zipfile.ZIP_STORED) as archive, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")            # "Duplicate name" is the point
        for name, data in pairs:
            archive.writestr(name, data)
    return buffer.getvalue()


def _npy(a) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, a)
    return buffer.getvalue()


def flip_bits(data: bytes, rng: random.Random, flips: int) -> bytes:
    out = bytearray(data)
    for _ in range(flips):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def npz_cases(rng: random.Random) -> Iterator[tuple[str, str, bytes]]:
    """(id, file suffix, bytes) of hostile .npz files for a 64-input, 10-class graph."""
    import numpy as np

    g = np.random.default_rng(rng.randrange(1 << 30))
    x, y = g.random((40, 64)), np.arange(40) % 10
    base = {"x": x, "y": y}
    valid = _npz_bytes(base)
    yield "npz:valid", ".npz", valid
    variants = {
        "str": lambda a: a.astype(str).astype("U8"), "bool": lambda a: a > 0.5,
        "complex": lambda a: a + 1j, "int8": lambda a: a.astype(np.int8),
        "uint64-huge": lambda a: np.full(a.shape, 2 ** 64 - 1, dtype=np.uint64),
        "float16": lambda a: a.astype(np.float16),
        "datetime": lambda a: np.zeros(a.shape, dtype="datetime64[s]"),
        "structured": lambda a: np.zeros(a.shape, dtype=[("f", "f8"), ("g", "i4")]),
        "scalar": lambda a: np.array(1.0), "empty": lambda a: a[:0],
        "three-samples": lambda a: a[:3], "flat": lambda a: a.reshape(-1),
        "extra-axis": lambda a: a[..., None], "wide": lambda a: np.repeat(a, 2, axis=-1),
        "nan": lambda a: np.where(np.arange(a.size).reshape(a.shape) == 3, np.nan, a),
        "inf": lambda a: np.where(np.arange(a.size).reshape(a.shape) == 3, np.inf, a),
        "1e300": lambda a: a * 1e300, "int64-min": lambda a: np.full(a.shape, -2 ** 63),
        "1e20": lambda a: np.full(a.shape, 1e20), "minus-one": lambda a: a * 0 - 1,
        "ten": lambda a: a * 0 + 10, "2^40": lambda a: a * 0 + 2 ** 40,
        "half": lambda a: a * 0 + 0.5, "fortran": lambda a: np.asfortranarray(a),
        "big-endian": lambda a: a.astype(a.dtype.newbyteorder(">")),
    }
    for name in ("x", "y"):
        for label, change in variants.items():
            arrays = dict(base)
            try:
                arrays[name] = change(arrays[name])
            except (TypeError, ValueError):
                continue
            yield f"npz:{name}={label}", ".npz", _npz_bytes(arrays)
        arrays = dict(base)
        del arrays[name]
        yield f"npz:{name}=missing", ".npz", _npz_bytes(arrays)
    split = {"x_train": x[:30], "y_train": y[:30], "x_test": x[30:], "y_test": y[30:]}
    for name in split:
        for label in ("str", "empty", "nan", "1e20", "int64-min", "flat"):
            arrays = dict(split)
            arrays[name] = variants[label](arrays[name])
            yield f"npz:{name}={label}", ".npz", _npz_bytes(arrays)
    yield "npz:extra-array", ".npz", _npz_bytes({**base, "z": np.zeros(3)})
    yield "npz:pickled-member", ".npz", _npz_bytes(
        {"x": np.array([object()] * 3, dtype=object), "y": y}, allow_pickle=True)
    yield "npz:pickled-labels", ".npz", _npz_bytes(
        {"x": x, "y": np.array([{"a": 1}] * 40, dtype=object)}, allow_pickle=True)
    yield "npz:member-not-npy", ".npz", _zip({"x.npy": b"this is not an array", "y.npy": _npy(y)})
    yield "npz:member-not-named-npy", ".npz", _zip({"x.npy": _npy(x), "y.npy": _npy(y),
                                                     "readme.txt": b"hello"})
    yield "npz:npy-version-3", ".npz", _zip({"x.npy": b"\x93NUMPY\x03\x00" + _npy(x)[8:],
                                            "y.npy": _npy(y)})
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776, 64), }"
    header += b" " * (118 - len(header)) + b"\n"
    yield "npz:header-declares-2^40-rows", ".npz", _zip(
        {"x.npy": b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 64,
         "y.npy": _npy(y)})
    yield "npz:header-garbage", ".npz", _zip(
        {"x.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': __impo", "y.npy": _npy(y)})
    yield "npz:header-object-descr", ".npz", _zip(
        {"x.npy": b"\x93NUMPY\x01\x00\x46\x00{'descr': '|O', 'fortran_order': False, "
                  b"'shape': (3,), }          \n" + b"\x80\x04N.", "y.npy": _npy(y)})
    yield "npz:duplicate-member", ".npz", _zip([("x.npy", _npy(x)), ("y.npy", _npy(y)),
                                                ("x.npy", _npy(x[:3]))])
    yield "npz:directory-member", ".npz", _zip({"x.npy": _npy(x), "y.npy": _npy(y), "d/": b""})
    yield "npz:empty-zip", ".npz", _zip({})
    yield "npz:empty-file", ".npz", b""
    yield "npz:not-a-zip", ".npz", b"PK\x03\x04" + b"\xff" * 200
    for cut in sorted(rng.sample(range(1, len(valid)), 25)):
        yield f"npz:truncated-{cut}", ".npz", valid[:cut]
    for i in range(120):
        yield f"npz:bitflip-{i}", ".npz", flip_bits(valid, rng, 1 + i % 4)


def zip_bomb(path: Path, inflated: int = 300 << 20) -> None:
    """An .npz of a few hundred KB whose x.npy inflates to `inflated` bytes."""
    import zipfile

    import numpy as np

    rows = inflated // (64 * 8)
    header = _npy(np.zeros((rows, 64)))[:128]      # the header alone: no 300 MB in memory
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            member.write(header)
            chunk = bytes(1 << 20)
            for _ in range(rows * 64 * 8 // len(chunk)):
                member.write(chunk)
            member.write(bytes(rows * 64 * 8 % len(chunk)))
        archive.writestr("y.npy", _npy(np.arange(rows) % 10))


def csv_cases(rng: random.Random) -> Iterator[tuple[str, str, bytes]]:
    """(id, suffix, bytes) of hostile CSV files for a 64-input, 10-class graph."""
    g = random.Random(rng.randrange(1 << 30))
    rows = [[f"{g.random():.4f}" for _ in range(64)] + [str(i % 10)] for i in range(40)]

    def text(rs, header=True):
        lines = ([",".join(f"f{i}" for i in range(64)) + ",label"] if header else [])
        return ("\n".join(lines + [",".join(r) for r in rs]) + "\n").encode()

    valid = text(rows)
    yield "csv:valid", ".csv", valid
    for label, value in (("huge-field", "9" * 200_000), ("1e400", "1e400"), ("nan", "nan"),
                         ("inf", "inf"), ("-inf", "-inf"), ("int64-min", str(-2 ** 63)),
                         ("1e20", "1e20"), ("minus-one", "-1"), ("half", "0.5"),
                         ("ten", "10"), ("text", "abc"), ("empty", ""), ("2^70", str(2 ** 70)),
                         ("hex", "0x10"), ("underscore", "1_0"), ("spaces", "  3  ")):
        for column, name in ((0, "feature"), (64, "label")):
            changed = [list(r) for r in rows]
            changed[5][column] = value
            yield f"csv:{name}={label}", ".csv", text(changed)
    ragged = [list(r) for r in rows]
    ragged[7] = ragged[7][:10]
    yield "csv:ragged", ".csv", text(ragged)
    yield "csv:header-only", ".csv", text([])
    yield "csv:empty", ".csv", b""
    yield "csv:blank-lines", ".csv", b"\n \n\n"
    yield "csv:three-rows", ".csv", text(rows[:3])
    yield "csv:one-column", ".csv", b"\n".join(b"1" for _ in range(40))
    yield "csv:bom", ".csv", b"\xef\xbb\xbf" + valid
    yield "csv:nul", ".csv", valid[:100] + b"\0" + valid[100:]
    yield "csv:unclosed-quote", ".csv", valid[:200] + b'"' + valid[200:]
    yield "csv:latin-1", ".csv", valid[:50] + b"\xe9" + valid[50:]
    yield "csv:10000-columns", ".csv", text([r[:1] * 10_000 + r[-1:] for r in rows], False)
    yield "csv:long-line-no-newline", ".csv", b"1," * 300_000
    for cut in sorted(rng.sample(range(1, len(valid)), 10)):
        yield f"csv:truncated-{cut}", ".csv", valid[:cut]
    for i in range(40):
        yield f"csv:bitflip-{i}", ".csv", flip_bits(valid, rng, 1 + i % 8)


def text_cases(rng: random.Random) -> Iterator[tuple[str, str, bytes]]:
    """(id, suffix, bytes) of hostile char-level text files for a recurrent graph."""
    g = random.Random(rng.randrange(1 << 30))
    valid = "".join(g.choice("abcdefghijklmnop qrst,.") for _ in range(600)).encode()
    yield "text:valid", ".txt", valid
    yield "text:empty", ".txt", b""
    yield "text:one-char", ".txt", b"a"
    yield "text:one-window", ".txt", b"abcdefghi"
    yield "text:one-letter-repeated", ".txt", b"a" * 5000
    yield "text:invalid-utf8", ".txt", valid[:100] + b"\xff\xfe" + valid[100:]
    yield "text:nul", ".txt", b"\0" * 600
    yield "text:newlines", ".txt", b"\n" * 600
    yield "text:emoji", ".txt", ("\U0001F600" * 300).encode()
    yield "text:surrogate-escape", ".txt", b"\xed\xa0\x80" * 100
    yield "text:one-long-line", ".txt", b"x" * 2_000_000
    for i in range(20):
        yield f"text:bitflip-{i}", ".txt", flip_bits(valid, rng, 1 + i % 6)


def special_files(root: Path) -> list[tuple[str, str]]:
    """(id, path) of things that are not regular files, or not there."""
    fifo = root / "fifo.npz"
    if not fifo.exists():
        os.mkfifo(fifo)
    fifo_text = root / "fifo.txt"
    if not fifo_text.exists():
        os.mkfifo(fifo_text)
    (root / "dir.npz").mkdir(exist_ok=True)
    for name, target in (("zero-link.npz", "/dev/zero"), ("broken-link.csv", str(root / "none"))):
        link = root / name
        if not link.is_symlink():
            link.symlink_to(target)
    (root / "plain").write_text("x")
    return [("special:fifo.npz", str(fifo)), ("special:fifo.txt", str(fifo_text)),
            ("special:/dev/zero", "/dev/zero"), ("special:/dev/urandom", "/dev/urandom"),
            ("special:/dev/null", "/dev/null"), ("special:directory", str(root / "dir.npz")),
            ("special:link-to-/dev/zero", str(root / "zero-link.npz")),
            ("special:broken-link", str(root / "broken-link.csv")),
            ("special:missing", str(root / "missing.npz")),
            ("special:under-a-file", str(root / "plain" / "x.npz")),
            ("special:name-too-long", str(root / ("n" * 5000 + ".npz"))),
            ("special:/proc/self/mem", "/proc/self/mem"),
            ("special:/proc/self/status", "/proc/self/status")]


# --- checkpoints ---------------------------------------------------------------------------


def checkpoint_mutations(arrays: dict) -> Iterator[tuple[str, dict, bool]]:
    """(id, arrays, needs pickle) for every entry of a real checkpoint and every setting
    inside its `settings` JSON: wrong dtypes and shapes, NaN/inf/huge/negative values,
    deletion, a foreign entry, settings flipped to other types."""
    import numpy as np

    def changed(key, value, pickle=False):
        out = dict(arrays)
        if value is None:
            del out[key]
        else:
            out[key] = value
        return out, pickle

    for key, a in arrays.items():
        shape = a.shape if a.shape else (3,)
        variants = {
            "text": np.array("abc"), "text-array": np.full(shape, "abc"),
            "float": np.array(1.5), "int": np.array(7), "bool": np.array(True),
            "complex": np.zeros(shape, dtype=complex), "0-d": np.array(0.0),
            "1-d": np.zeros(3), "3x3": np.zeros((3, 3)), "empty": np.zeros((0,)),
            "nan": np.full(shape, np.nan), "inf": np.full(shape, np.inf),
            "1e300": np.full(shape, 1e300), "negative": np.full(shape, -1, dtype=np.int64),
            "int64-min": np.full(shape, -2 ** 63, dtype=np.int64), "zero": np.array(0),
            "uint64-max": np.full(shape, 2 ** 64 - 1, dtype=np.uint64),
            "huge-int": np.array(2 ** 62),
        }
        for label, value in variants.items():
            out, _ = changed(key, value)
            yield f"{key}={label}", out, False
        out, _ = changed(key, np.array([object()] * 3, dtype=object), True)
        yield f"{key}=pickled", out, True
        out, _ = changed(key, None)
        yield f"{key}=deleted", out, False
    yield "foreign-entry", {**arrays, "param/ghost/w": np.zeros(3)}, False
    yield "foreign-slot", {**arrays, "optimizer/velocity/hidden1/weight": np.zeros(3)}, False
    yield "unknown-entry", {**arrays, "something": np.zeros(3)}, False
    settings = json.loads(str(arrays["settings"]))
    for key in list(settings):
        for label, value in HOSTILE_VALUES + [("batch-size-0", 0), ("lists", ["pc", "bp"]),
                                              ("sgd", "sgd"), ("ray", "ray")]:
            changed_settings = {**settings, key: value}
            text = json.dumps(changed_settings)
            yield f"settings.{key}={label}", {**arrays, "settings": np.array(text)}, False
        without = {k: v for k, v in settings.items() if k != key}
        yield f"settings.{key}=deleted", {**arrays, "settings": np.array(json.dumps(without))}, \
            False
    for label, text in (("not-json", "{nope"), ("list", "[1, 2]"), ("null", "null"),
                        ("extra-key", json.dumps({**settings, "extra": 1})),
                        ("nan-json", json.dumps({**settings, "lr": float("nan")})),
                        ("deep", "[" * 100_000 + "]" * 100_000)):
        yield f"settings={label}", {**arrays, "settings": np.array(text)}, False
    for label, text in (("not-json", "{"), ("dict", "{}"), ("ints", "[1, 2]"),
                        ("deep", "[" * 100_000 + "]" * 100_000)):
        yield f"restarts={label}", {**arrays, "restarts": np.array(text)}, False
    for column in ("train_loss", "test_accuracy", "seconds"):
        yield f"history/{column}=strings", {**arrays, f"history/{column}": np.array(["1.0"])}, \
            False


def write_npz(path: Path, arrays: dict, allow_pickle: bool = False) -> None:
    path.write_bytes(_npz_bytes(arrays, allow_pickle=allow_pickle))

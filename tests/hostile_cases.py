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


def run_cli(argv: list[str], *, cwd: Path | None = None, wall_timeout: float = 120) -> dict:
    """`python -m neurolocal ARGV` under the limits; a record for `broken`."""
    command = [sys.executable, "-m", "neurolocal", *map(str, argv)]
    try:
        done = subprocess.run(command, cwd=cwd or REPO, env=child_env(), capture_output=True,
                              text=True, errors="replace", timeout=wall_timeout,
                              preexec_fn=limit_child())
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

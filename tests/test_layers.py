"""The package reads top to bottom (issue 23): no import runs up the layers, no two files
import each other, the engine API is written once, and only the round machine and the
engine touch the machine's internals. Read from the source (ast), so nothing is imported."""

import ast
import re
from collections import defaultdict
from pathlib import Path


PACKAGE = Path(__file__).resolve().parent.parent / "neurolocal"

#: each package or module of neurolocal by layer; a module may import its own layer or lower
LAYERS = [
    {"errors", "checks", "dtypes", "files", "limits", "jit", "kernels", "spatial_kernels",
     "numba_cache", "paper", "signals", "procs", "bulk", "yaml_load"},
    {"ops", "tied", "graph", "recurrence", "vertex", "optimizers", "asynchrony", "topology",
     "generate", "batches"},
    {"traffic", "backprop"},
    {"engines"},
    {"gradcheck", "training", "params_file"},
    {"sweep", "imports", "exports", "api"},
    {"cli", "__main__"},
]
#: test harnesses: they may import anything, nothing in the package imports them
HARNESSES = {"testing"}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def import_edges() -> dict[str, set[str]]:
    """module -> neurolocal modules it imports (at any depth: function-level too)."""
    mods = modules()
    edges = defaultdict(set)
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                candidates = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            for target in candidates:
                if target in mods and target != name:
                    edges[name].add(target)
                    if isinstance(node, ast.ImportFrom):
                        break
    return edges


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "neurolocal"


def layer(module: str) -> int | None:
    name = unit(module)
    for i, members in enumerate(LAYERS):
        if name in members:
            return i
    return None


def test_every_module_has_a_layer():
    missing = sorted({unit(m) for m in modules()} - set().union(*LAYERS) - HARNESSES
                     - {"neurolocal"})
    assert not missing, f"give these a layer in LAYERS: {missing}"


def test_no_import_runs_up_the_layers():
    up = []
    for source, targets in import_edges().items():
        for target in targets:
            if unit(target) in HARNESSES and unit(source) not in HARNESSES:
                up.append(f"{source} -> {target} (a test harness)")
            low, high = layer(source), layer(target)
            if low is not None and high is not None and high > low:
                up.append(f"{source} -> {target}")
    assert not up, "imports that run up the layers:\n" + "\n".join(sorted(up))


def test_no_two_files_import_each_other():
    edges = import_edges()
    circles = sorted({tuple(sorted((a, b))) for a, targets in edges.items() for b in targets
                      if a in edges.get(b, ())})
    assert not circles, f"files importing each other: {circles}"


#: the round machine and the engine: the only modules that may touch Slot and Shard internals
MACHINE = {"neurolocal/engines/rounds.py", "neurolocal/engines/engine.py",
           "neurolocal/engines/plan/runner.py", "neurolocal/engines/plan/groups.py",
           "neurolocal/engines/plan/traffic.py"}


def test_only_the_round_machine_touches_slot_and_shard_internals():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        if rel in MACHINE:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"\bslot\.|\bshard\._|\.slots\b", code):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


API = ("relax", "train_step", "train_batches", "restore", "snapshot")


def test_the_engine_api_is_defined_once():
    """relax, train_step, train_batches, restore and snapshot: engines/engine.py defines
    them (engines/base.py names them in the typed protocol); no transport does (the
    round machine's Shard restores and snapshots its own vertices: it is not a transport)."""
    defined = defaultdict(list)
    for path in sorted((PACKAGE / "engines").rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                            and item.name in API:
                        defined[item.name].append(f"{rel}:{node.name}")
    allowed = {"neurolocal/engines/base.py:Engine", "neurolocal/engines/rounds.py:Shard"}
    for name in API:
        assert [p for p in defined[name] if p not in allowed] == \
            ["neurolocal/engines/engine.py:Engine"], (name, defined[name])

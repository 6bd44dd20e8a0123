"""Helpers written once (issue 23): each of these has one home, and the source is scanned
for copies outside it.

- an atomic file write: `neurolocal/files.py` (`atomic_path`, `write_atomic`); nobody
  else renames a file into place, fsyncs, or makes a temporary file beside a target;
- a /proc reader: `neurolocal/procs.py`; nobody else opens /proc or defines its own
  `alive` / `descendants` / `start_time`;
- a number validator: `neurolocal/checks.py` (`number`, `parse_number`); nobody else
  checks "a whole number >= k" by hand (an `isinstance(x, bool)` guard before an
  integer test, or a message "expected a whole number ...");
- "training diverged" is a `TrainingDiverged`, not a `ConfigError`;
- library errors name parameters, never flags: a `--flag` in an error's text appears
  only in the command-line modules (they map parameters to flags, neurolocal/cli.py).

The scan reads the syntax tree (docstrings and comments do not count), of the package,
scripts/ and (for /proc) tests/.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "neurolocal"

#: files the engine restructuring (issue 23) rewrites; until then, what each still holds
#: and what replaces it. Remove an entry when the file no longer has the copy.
PENDING: dict[str, str] = {}

#: the modules that speak for the command line: they may name flags
COMMAND_LINE = {"neurolocal/cli.py", "neurolocal/sweep/command.py",
                "neurolocal/traffic/commands.py"}


def sources(*folders: str):
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            yield relative, ast.parse(path.read_text(encoding="utf-8"), filename=relative)


def dotted(node) -> str:
    """`os.replace` for the call's function, `replace` for `x.replace`, '' otherwise."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    return ""


def calls(tree):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def strings(node) -> list[str]:
    """The literal text of a string or f-string argument (f-string holes dropped)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return ["".join(v.value for v in node.values if isinstance(v, ast.Constant))]
    if isinstance(node, ast.BinOp):
        return strings(node.left) + strings(node.right)
    return []


def error_texts(tree):
    """(line, class name, text) of every `SomethingError(...)` / `TrainingDiverged(...)`
    construction's literal message."""
    for call in calls(tree):
        name = dotted(call.func).rsplit(".", 1)[-1]
        if (name.endswith("Error") or name == "TrainingDiverged") and call.args:
            for text in strings(call.args[0]):
                yield call.lineno, name, text


def report(found: list[str]) -> str:
    return "copies outside their one home:\n" + "\n".join(found)


# --- 1. one atomic write -----------------------------------------------------------------------

RENAMES = {"os.replace", "os.rename", "os.fsync", "tempfile.mkstemp",
           "tempfile.NamedTemporaryFile", "mkstemp", "NamedTemporaryFile"}


def atomic_write_copies(folders=("neurolocal", "scripts")) -> list[str]:
    found = []
    for path, tree in sources(*folders):
        if path == "neurolocal/files.py" or path in PENDING:
            continue
        for call in calls(tree):
            name = dotted(call.func)
            # Path.replace(target) / Path.rename(target): one argument (str.replace has two)
            moved = name.rsplit(".", 1)[-1] in ("replace", "rename") and "." in name and \
                len(call.args) == 1 and not call.keywords
            if name in RENAMES or moved:
                found.append(f"{path}:{call.lineno}: {name}(...): use files.atomic_path")
    return found


def test_one_atomic_write():
    assert not atomic_write_copies(), report(atomic_write_copies())


# --- 2. one /proc reader ---------------------------------------------------------------------

PROC_FUNCTIONS = {"alive", "_alive", "descendants", "start_time", "rss_bytes"}


def proc_readers(folders=("neurolocal", "scripts", "tests")) -> list[str]:
    found = []
    for path, tree in sources(*folders):
        if path in ("neurolocal/procs.py", "tests/test_structure.py"):
            continue
        for call in calls(tree):
            name = dotted(call.func).rsplit(".", 1)[-1]
            if name in ("open", "Path", "listdir", "readlink", "scandir", "iterdir", "glob") \
                    and call.args and any(t.startswith("/proc") for t in strings(call.args[0])):
                found.append(f"{path}:{call.lineno}: {name}(/proc...): use neurolocal.procs")
        for node in tree.body:  # module-level functions (a method may say `alive`)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    node.name in PROC_FUNCTIONS and not path.startswith("tests/"):
                found.append(f"{path}:{node.lineno}: def {node.name}: neurolocal.procs has it")
    return found


def test_one_proc_reader():
    assert not proc_readers(), report(proc_readers())


# --- 3. one number validator -------------------------------------------------------------------

WHOLE_MESSAGE = re.compile(r"expected (auto or )?an? (whole number|positive integer|"
                           r"non-negative integer|integer)")


def _is_isinstance(node, kind: str | None = None) -> bool:
    if not (isinstance(node, ast.Call) and dotted(node.func) == "isinstance"
            and len(node.args) == 2):
        return False
    names = {dotted(n) for n in (node.args[1].elts if isinstance(node.args[1], ast.Tuple)
                                 else [node.args[1]])}
    return kind is None or kind in names and (kind != "int" or "float" not in names)


def hand_checks(folders=("neurolocal", "scripts")) -> list[str]:
    found = []
    for path, tree in sources(*folders):
        if path == "neurolocal/checks.py" or path in PENDING:
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or)):
                continue
            guard = any(_is_isinstance(v, "bool") for v in node.values)
            integer = any(
                isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.Not)
                and (_is_isinstance(v.operand, "int") or _is_isinstance(v.operand, "np.integer"))
                or isinstance(v, ast.Compare) and any(dotted(getattr(c, "func", None)) == "int"
                                                      for c in [v.left, *v.comparators])
                for v in node.values)
            if guard and integer:
                found.append(f"{path}:{node.lineno}: a whole number checked by hand: use "
                             "checks.number(..., whole=True)")
        for line, _, text in error_texts(tree):
            if WHOLE_MESSAGE.search(text):
                found.append(f"{path}:{line}: {text[:60]!r}: checks.number says this")
    return found


def test_one_number_validator():
    assert not hand_checks(), report(hand_checks())


# --- 4, 5. errors: TrainingDiverged, parameters not flags --------------------------------------

FLAG = re.compile(r"(?<![\w`-])--[a-z][a-z-]*")


def flag_texts(folders=("neurolocal",)) -> list[str]:
    found = []
    for path, tree in sources(*folders):
        if path in COMMAND_LINE or path in PENDING:
            continue
        for line, name, text in error_texts(tree):
            if name == "ConfigError" and "diverged" in text:
                found.append(f"{path}:{line}: divergence raised as ConfigError: "
                             "raise TrainingDiverged")
            shown = re.sub(r"`[^`]*`", "", text)  # a quoted command (`ray start --head`)
            if FLAG.search(shown):
                found.append(f"{path}:{line}: {text[:60]!r} names a flag: use errors.param")
    return found


def test_library_errors_name_parameters_not_flags():
    assert not flag_texts(), report(flag_texts())


def test_pending_files_are_the_engine_files_only():
    """The allowance above covers only files the engine restructuring owns."""
    owned = {"neurolocal/engines/local.py", "neurolocal/engines/sim/transport.py",
             "neurolocal/engines/ray/driver.py", "neurolocal/engines/rounds.py",
             "neurolocal/engines/base.py", "neurolocal/engines/__init__.py",
             "neurolocal/engines/config.py", "neurolocal/training/loop.py"}
    assert set(PENDING) <= owned


# --- the scans can fail ------------------------------------------------------------------------


@pytest.mark.parametrize("scan,source", [
    (atomic_write_copies, "import os\ndef save(tmp, path):\n    os.replace(tmp, path)\n"),
    (atomic_write_copies, "def save(tmp, path):\n    tmp.rename(path)\n"),
    (proc_readers, "def alive(pid):\n    return open(f'/proc/{pid}/stat').read()\n"),
    (proc_readers, "from pathlib import Path\nPIDS = list(Path('/proc').iterdir())\n"),
    (hand_checks, "def f(v):\n    if isinstance(v, bool) or not isinstance(v, int) or v < 1:\n"
                  "        raise ValueError('no')\n"),
    (hand_checks, "def f(n):\n    raise ConfigError(f'expected a whole number >= 1, got {n}')\n"),
    (flag_texts, "def f():\n    raise ConfigError('use --pipeline 1')\n"),
    (flag_texts, "def f(x):\n    raise ConfigError(f'training diverged: {x}')\n"),
])
def test_each_scan_finds_a_planted_copy(scan, source, tmp_path, monkeypatch):
    planted = tmp_path / "neurolocal" / "planted.py"
    planted.parent.mkdir()
    planted.write_text(source)
    for folder in ("scripts", "tests"):
        (tmp_path / folder).mkdir()
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert scan(), f"{scan.__name__} missed:\n{source}"
    # the quoted command and a name that is no flag stay allowed
    planted.write_text("def f():\n    raise ConfigError('is `ray start --head` running?')\n")
    assert not flag_texts()

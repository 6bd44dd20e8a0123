"""A graph's parameters as a file: what `neurolocal import` writes and `run --params`,
`check-grad --params` read. An `.npz` with one array per `vertex/param` (vertex names
never hold a '/'), float64. Reading goes through `neurolocal.training.npz.read_npz`
(nothing unpickled, sizes checked from the headers before anything is inflated, within
the budget's `data_bytes`), then every tensor the graph declares must be there with its
shape, finite, and nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurolocal.errors import DataError


def save_params(path: str | Path, params) -> None:
    """Write whole or not at all (files.atomic_path)."""
    from neurolocal.files import atomic_path

    arrays = {f"{v}/{k}": np.asarray(a, dtype=np.float64) for v, ps in params.items()
              for k, a in ps.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def load_params(path: str | Path, graph, budget):
    """The graph's parameters from `path`, or one DataError naming what is wrong."""
    from neurolocal.training.npz import read_npz

    source = str(path)
    arrays = read_npz(path, budget.data_bytes, DataError, what="parameter file")
    expected = graph.param_shapes()
    params: dict[str, dict[str, np.ndarray]] = {}
    for vertex, shapes in expected.items():
        params[vertex] = {}
        for name, shape in shapes.items():
            key = f"{vertex}/{name}"
            if key not in arrays:
                raise DataError(f"has no array {key!r} (the graph's parameter "
                                f"{vertex}.{name}, shape {list(shape)})", source=source)
            value = arrays.pop(key)
            if tuple(value.shape) != tuple(shape) or value.dtype.kind not in "fiu":
                raise DataError(f"{key}: expected a float array of shape {list(shape)}, got "
                                f"{value.dtype} {list(value.shape)}", source=source)
            value = value.astype(np.float64)
            if not np.all(np.isfinite(value)):
                raise DataError(f"{key}: holds values that are not finite", source=source)
            params[vertex][name] = value
    if arrays:
        raise DataError(f"holds {sorted(arrays)[0]!r}, which is no parameter of the graph "
                        f"'{graph.name}'", source=source)
    return params

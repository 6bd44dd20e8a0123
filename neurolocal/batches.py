"""A batch of data as every engine and backprop take it: inputs by vertex name, in the
run's dtype, checked against the graph's shapes, and the target shaped like the output."""

from __future__ import annotations

import numpy as np

from neurolocal.errors import DataError
from neurolocal.graph import Graph


def prepare_batch(graph: Graph, inputs, target, dtype="float64"
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Inputs as a name -> array mapping (float64, or the run's `dtype`) and the target
    shaped like the output."""
    if not isinstance(inputs, dict):
        if len(graph.inputs) != 1:
            raise DataError(f"the graph has inputs {', '.join(graph.inputs)}; pass a mapping")
        inputs = {graph.inputs[0]: inputs}
    batch = None
    prepared = {}
    for name in graph.inputs:
        if name not in inputs:
            raise DataError(f"no data for input vertex '{name}'")
        x = np.ascontiguousarray(inputs[name], dtype=dtype)
        if x.shape[1:] != graph.shapes[name]:
            raise DataError(f"input '{name}' expects per-sample shape {list(graph.shapes[name])}, "
                            f"got {list(x.shape[1:])}")
        if batch is not None and x.shape[0] != batch:
            raise DataError("inputs disagree on the batch size")
        batch = x.shape[0]
        prepared[name] = x
    y = graph.loss.prepare_target(target, graph.shapes[graph.output])
    if y.shape[0] != batch:
        raise DataError(f"target has {y.shape[0]} samples, inputs have {batch}")
    return prepared, np.ascontiguousarray(y, dtype=dtype)

"""Exact reverse-mode autodiff over the same graph: the baseline PC is measured against.

It reuses each op's `vjp` and `param_vjp` with the loss gradient as the cotangent;
the independent check of both (PyTorch autograd) lives in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurolocal.batches import prepare_batch
from neurolocal.graph import Graph, Params
from neurolocal.tied import sum_tied


@dataclass
class Gradients:
    loss: float
    params: dict[str, dict[str, np.ndarray]]   # dL/dtheta, L the batch-mean loss; a tied
                                               # tensor once, under its owner (summed)
    vertices: dict[str, np.ndarray]            # dl/dvhat per sample, every non-input vertex
    inputs: dict[str, np.ndarray]              # dl/dx per sample
    prediction: np.ndarray


def backprop(graph: Graph, params: Params, inputs, target) -> Gradients:
    inputs, target = prepare_batch(graph, inputs, target)
    values, caches = graph.forward(params, inputs)
    prediction = values[graph.output]
    batch = prediction.shape[0]
    cotangent = {n: None for n in graph.order}
    cotangent[graph.output] = -graph.loss.output_error(prediction, target)
    grads: dict[str, dict[str, np.ndarray]] = {}
    for n in reversed(graph.order):
        g = cotangent[n]
        if graph.is_input(n):
            continue
        if g is None:
            g = cotangent[n] = np.zeros_like(values[n])
        spec = graph.vertices[n]
        for parent, gp in zip(spec.parents, spec.op.vjp(params.get(n, {}), caches[n], g)):
            cotangent[parent] = gp if cotangent[parent] is None else cotangent[parent] + gp
        if n in params and params[n]:
            grads[n] = {k: v / batch for k, v in spec.op.param_vjp(params[n], caches[n], g).items()}
    return Gradients(
        loss=graph.loss.value(prediction, target),
        params=sum_tied(graph.tied, grads),
        vertices={n: cotangent[n] for n in graph.order if not graph.is_input(n)},
        inputs={n: (cotangent[n] if cotangent[n] is not None else np.zeros_like(values[n]))
                for n in graph.inputs},
        prediction=prediction,
    )

"""Shared by the importer's tests: PC's updates of an imported module next to torch
autograd of the original module (float64, fixed mode, eta 1, default T)."""

from __future__ import annotations

import numpy as np
import torch

from neurolocal.engines import EngineConfig, relax_once
from neurolocal.gradcheck import default_iterations


def torch_gradients(module, x, labels):
    """dL/dtheta of the module's batch-mean cross entropy, by state_dict key."""
    module.zero_grad()
    loss = torch.nn.functional.cross_entropy(module(x), labels)
    loss.backward()
    return {k: p.grad.detach().numpy().copy() for k, p in module.named_parameters()}


def pc_updates(imported, x, labels, engine="local", **options):
    """-dtheta of one relaxation on an engine, by state_dict key (a dense weight transposed
    back to torch's layout)."""
    graph = imported.graph
    inputs = {graph.inputs[0]: x.numpy().astype(np.float64)}
    target = labels.numpy()
    relaxation = relax_once(EngineConfig(engine=engine, mode="fixed", **options), graph,
                            imported.params, inputs, target, eta=1.0,
                            iterations=default_iterations(graph))
    out = {}
    for (vertex, param), (key, layout) in imported.state_keys.items():
        if vertex not in relaxation.dtheta or param not in relaxation.dtheta[vertex]:
            continue
        update = -relaxation.dtheta[vertex][param]
        out[key] = update.T if layout == "transpose" else update
    return out, relaxation


def worst_relative_error(estimates, reference):
    """max over parameters of ||est - g|| / ||g||; a gradient that is zero in exact
    arithmetic (an attention key's bias: softmax ignores a constant added to a row) is
    rounding noise, so each norm is floored at 1e-6 of the whole gradient's norm."""
    whole = np.sqrt(sum(float(np.sum(g * g)) for g in reference.values()))
    errors = {}
    for key, g in reference.items():
        est = estimates[key]
        assert est.shape == g.shape, key
        errors[key] = float(np.linalg.norm(est - g) / max(np.linalg.norm(g), 1e-6 * whole))
    return max(errors.values()), errors

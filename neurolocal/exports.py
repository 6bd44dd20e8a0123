"""Trained weights back into the PyTorch module they were imported from.

`export_state_dict(graph, params, module)` traces the module again by torch.fx (the
vertices of `from_torch` are named after its fx nodes), writes each vertex's parameters
into the module's own tensors in torch's layouts (a dense weight transposed back to
nn.Linear's) and dtype, and returns the module's state_dict: the module then computes
what the graph computes. A tied group's tensor is taken from its owner."""

from __future__ import annotations

import numpy as np

from neurolocal.errors import TopologyError


def state_keys(graph, module) -> dict[tuple[str, str], tuple[str, str]]:
    """(vertex, parameter) -> (state_dict key, layout) for the graph imported from module."""
    from neurolocal.imports.torch_fx import _torch

    torch = _torch()
    traced = torch.fx.symbolic_trace(module)
    members = {m for g in graph.tied for m in g.members}
    keys = {}
    for node in traced.graph.nodes:
        if node.op != "call_module" or node.name not in graph.vertices:
            continue
        sub = traced.get_submodule(node.target)
        for name, _ in sub.named_parameters(recurse=False):
            slot = (node.name, name)
            if slot in members:
                continue
            layout = "transpose" if isinstance(sub, torch.nn.Linear) and name == "weight" else "same"
            keys[slot] = (f"{node.target}.{name}", layout)
    return keys


def export_state_dict(graph, params, module):
    """Write `params` (a graph's, e.g. trained) into `module`; returns its state_dict."""
    from neurolocal.imports.torch_fx import _torch

    torch = _torch()
    keys = state_keys(graph, module)
    state = module.state_dict()
    wanted = {k for k, p in module.named_parameters()}
    found = {key for key, _ in keys.values()}
    if found != wanted:
        missing = sorted(wanted - found)
        raise TopologyError(f"the graph '{graph.name}' was not imported from this module: "
                            f"no vertex holds {missing[0] if missing else sorted(found)[0]!r}")
    with torch.no_grad():
        for (vertex, name), (key, layout) in keys.items():
            value = np.asarray(params[vertex][name])
            value = value.T if layout == "transpose" else value
            if tuple(value.shape) != tuple(state[key].shape):
                raise TopologyError(f"{vertex}.{name} has shape {list(value.shape)}, the "
                                    f"module's {key} {list(state[key].shape)}")
            state[key].copy_(torch.from_numpy(np.ascontiguousarray(value)).to(state[key].dtype))
    return module.state_dict()

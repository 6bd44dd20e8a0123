"""Independent reference: a graph's loss gradients from PyTorch autograd (float64).

Interprets the topology's op names and attributes with torch functions; it never
calls neurolocal's op code.
"""

import numpy as np
import torch

ACTIVATIONS = {"identity": lambda z: z, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
               "relu": torch.relu}


def torch_gradients(graph, params, inputs, target):
    """{vertex: {param: dL/dtheta}} for L = the batch-mean loss."""
    leaves = {v: {k: torch.tensor(a, dtype=torch.float64, requires_grad=True)
                  for k, a in ps.items()} for v, ps in params.items()}
    values = {}
    for name in graph.order:
        spec = graph.vertices[name]
        op, xs = spec.op, [values[p] for p in spec.parents]
        if op.name == "input":
            values[name] = torch.tensor(np.asarray(inputs[name]), dtype=torch.float64)
        elif op.name == "dense":
            z = xs[0] @ leaves[name]["weight"]
            if op.bias:
                z = z + leaves[name]["bias"]
            values[name] = ACTIVATIONS[op.activation](z)
        elif op.name in ("tanh", "sigmoid", "relu"):
            values[name] = ACTIVATIONS[op.name](xs[0])
        elif op.name == "add":
            values[name] = sum(xs[1:], xs[0])
        elif op.name == "mul":
            out = xs[0]
            for x in xs[1:]:
                out = out * x
            values[name] = out
        elif op.name == "concat":
            axis = op.axis if op.axis < 0 else op.axis + 1
            values[name] = torch.cat(xs, dim=axis)
        else:
            raise NotImplementedError(op.name)
    out = values[graph.output]
    batch = out.shape[0]
    if graph.loss.name == "mse":
        y = torch.tensor(np.asarray(target), dtype=torch.float64)
        loss = 0.5 * graph.loss.scale * ((y - out) ** 2).sum() / batch
    else:
        labels = torch.tensor(np.asarray(target), dtype=torch.int64)
        loss = torch.nn.functional.cross_entropy(out, labels, reduction="mean")
    loss.backward()
    return {v: {k: t.grad.numpy() for k, t in ps.items()} for v, ps in leaves.items()}


def max_relative_error(dtheta, reference):
    """Largest ||-dtheta - grad|| / ||grad|| over parameters (PC's dtheta is -dL/dtheta)."""
    return max(np.linalg.norm(-dtheta[v][k] - g) / np.linalg.norm(g)
               for v, grads in reference.items() for k, g in grads.items())

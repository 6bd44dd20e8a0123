"""An independent reference: the same graph evaluated and differentiated by PyTorch autograd.

Each op is re-stated here with torch functions (never by calling neurolocal's op code),
from the op's declared attributes, so a wrong vjp or Hebbian rule in neurolocal cannot
agree with it by construction.
"""

from __future__ import annotations

import numpy as np
import torch

torch.set_default_dtype(torch.float64)

ACTIVATIONS = {
    "identity": lambda z: z,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
}


def _dense(op, params, x):
    z = x @ params["weight"]
    if "bias" in params:
        z = z + params["bias"]
    return ACTIVATIONS[op.activation](z)


def _concat(op, params, *xs):
    ndim = xs[0].dim() - 1
    return torch.cat(xs, dim=(op.axis % ndim) + 1)


def _product(op, params, *xs):
    out = xs[0]
    for x in xs[1:]:
        out = out * x
    return out


OPS = {
    "dense": _dense,
    "tanh": lambda op, params, x: torch.tanh(x),
    "relu": lambda op, params, x: torch.relu(x),
    "sigmoid": lambda op, params, x: torch.sigmoid(x),
    "add": lambda op, params, *xs: sum(xs[1:], xs[0]),
    "mul": _product,
    "concat": _concat,
}


def loss_value(graph, prediction, target):
    batch = prediction.shape[0]
    if graph.loss.name == "mse":
        return 0.5 * graph.loss.scale * ((target - prediction) ** 2).sum() / batch
    if graph.loss.name == "softmax_cross_entropy":
        return -(target * torch.log_softmax(prediction, dim=1)).sum() / batch
    raise NotImplementedError(graph.loss.name)


def torch_gradients(graph, params, inputs, target, extra_ops=None):
    """dL/dtheta per vertex and parameter, dL/dvhat per vertex (per sample) and dL/dx.

    Returns (loss, param_grads, vertex_grads, input_grads) as numpy arrays.
    """
    ops = {**OPS, **(extra_ops or {})}
    tparams = {v: {k: torch.tensor(a, requires_grad=True) for k, a in ps.items()}
               for v, ps in params.items()}
    values = {}
    for name in graph.order:
        spec = graph.vertices[name]
        if graph.is_input(name):
            values[name] = torch.tensor(np.asarray(inputs[name], dtype=np.float64),
                                        requires_grad=True)
        else:
            values[name] = ops[spec.op.name](spec.op, tparams.get(name, {}),
                                             *[values[p] for p in spec.parents])
            values[name].retain_grad()
    y = torch.tensor(graph.loss.prepare_target(target, graph.shapes[graph.output]))
    loss = loss_value(graph, values[graph.output], y)
    loss.backward()
    batch = values[graph.output].shape[0]

    def grad_of(t):
        return np.zeros(tuple(t.shape)) if t.grad is None else t.grad.numpy()

    param_grads = {v: {k: grad_of(t) for k, t in ps.items()} for v, ps in tparams.items()}
    # per-sample dl/dvhat = batch * dL/dvhat, L being the batch mean
    vertex_grads = {n: batch * grad_of(values[n]) for n in graph.order if not graph.is_input(n)}
    input_grads = {n: batch * grad_of(values[n]) for n in graph.inputs}
    return float(loss.detach()), param_grads, vertex_grads, input_grads


def relative_error(a, b):
    scale = np.linalg.norm(b)
    diff = np.linalg.norm(np.asarray(a) - np.asarray(b))
    return diff / scale if scale > 0 else (0.0 if diff == 0 else np.inf)


def pc_vs_torch(graph, params, inputs, target, relaxation, extra_ops=None):
    """Relative error of -dtheta against torch's gradient for every parameter."""
    _, grads, _, _ = torch_gradients(graph, params, inputs, target, extra_ops)
    return {(v, k): relative_error(-relaxation.dtheta[v][k], g)
            for v, gs in grads.items() for k, g in gs.items()}

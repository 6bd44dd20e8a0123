"""The independent reference: a neurolocal graph evaluated with PyTorch autograd (float64).

Each op is rewritten here from torch primitives; nothing of neurolocal's op code runs.
Tied parameters are one torch leaf used by every vertex of the group, so autograd
sums their contributions by itself: the reference for a tied group's update.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

ACT = {"identity": lambda z: z, "tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
       "gelu": F.gelu, "gelu_tanh": lambda z: F.gelu(z, approximate="tanh")}


def _pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


def _vertex(op, p, xs):
    name = op.name
    if name == "dense":
        x = ACT[getattr(op, "pre_activation", "identity")](xs[0])
        z = x @ p["weight"]
        if op.bias:
            z = z + p["bias"]
        z = getattr(op, "multiplier", 1.0) * z
        out = ACT[op.activation](z)
        return out + xs[0] if getattr(op, "skip", False) else out
    if name == "multi_dense":
        z = sum(x @ p[f"weight{k}"] for k, x in enumerate(xs))
        if op.bias:
            z = z + p["bias"]
        return ACT[op.activation](z)
    if name == "conv2d":
        z = F.conv2d(xs[0], p["weight"], p.get("bias"), stride=_pair(op.stride),
                     padding=_pair(op.padding))
        return ACT[op.activation](z)
    if name == "maxpool2d":
        return F.max_pool2d(xs[0], _pair(op.kernel_size), _pair(op.stride), _pair(op.padding))
    if name == "avgpool2d":
        return F.avg_pool2d(xs[0], _pair(op.kernel_size), _pair(op.stride), _pair(op.padding),
                            count_include_pad=True)
    if name in ("tanh", "relu", "sigmoid"):
        return ACT[name](xs[0])
    if name == "add":
        return sum(xs[1:], xs[0])
    if name == "mul":
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out
    if name == "concat":
        return torch.cat(xs, dim=op.axis % (xs[0].dim() - 1) + 1)
    if name == "flatten":
        return xs[0].reshape(xs[0].shape[0], -1)
    if name == "reshape":
        return xs[0].reshape(xs[0].shape[0], *op.shape)
    if name == "stack":
        return torch.stack(xs, dim=1)
    if name == "embedding":
        return F.embedding(xs[0].long(), p["weight"])
    if name == "matmul":
        return xs[0] @ xs[1]
    if name == "softmax":
        return torch.softmax(xs[0], dim=op.axis % (xs[0].dim() - 1) + 1)
    if name == "layernorm":
        shape = tuple(xs[0].shape[xs[0].dim() - op.axes:])
        return F.layer_norm(xs[0], shape, p.get("weight"), p.get("bias"), op.epsilon)
    if name == "gelu":
        return F.gelu(xs[0], approximate=op.approximate)
    if name == "transpose":
        return xs[0].permute(0, *(a % (xs[0].dim() - 1) + 1 for a in op.axes))
    if name == "scale":
        return xs[0] * op.factor
    if name == "mean":
        return xs[0].mean(dim=[a % (xs[0].dim() - 1) + 1 for a in op.axis], keepdim=op.keepdims)
    if name == "sub":
        return xs[0] - xs[1]
    raise NotImplementedError(name)


def evaluate(graph, params, inputs, target):
    """Forward the graph in torch and backpropagate the batch-mean loss.

    Returns (loss, leaves, values, shared): parameter leaves per vertex, every vertex's
    value tensor (with .grad), and the member -> owner map of tied parameters.
    """
    leaves = {v: {k: torch.tensor(a, dtype=torch.float64, requires_grad=True)
                  for k, a in ps.items()} for v, ps in params.items()}
    shared = {m: g.owner for g in graph.tied for m in g.members}
    bound = {v: {k: leaves[shared[(v, k)][0]][shared[(v, k)][1]] if (v, k) in shared else t
                 for k, t in ps.items()} for v, ps in leaves.items()}
    values = {}
    for n in graph.order:
        if graph.is_input(n):
            values[n] = torch.tensor(np.asarray(inputs[n], dtype=np.float64), requires_grad=True)
        else:
            spec = graph.vertices[n]
            values[n] = _vertex(spec.op, bound.get(n, {}), [values[q] for q in spec.parents])
            values[n].retain_grad()
    out = values[graph.output]
    y = torch.tensor(graph.loss.prepare_target(target, graph.shapes[graph.output]))
    batch = out.shape[0]
    if graph.loss.name == "mse":
        loss = 0.5 * graph.loss.scale * ((y - out) ** 2).sum() / batch
    else:
        loss = -(y * torch.log_softmax(out, dim=-1)).sum() / batch
    loss.backward()
    return float(loss.detach()), leaves, values, shared


def torch_gradients(graph, params, inputs, target):
    """(loss, {vertex: {param: dL/dtheta}}), L the batch-mean loss; a tied tensor's
    gradient once, under its owner."""
    loss, leaves, _, shared = evaluate(graph, params, inputs, target)
    grads = {v: {k: t.grad.numpy() for k, t in ps.items()
                 if (v, k) not in shared and t.grad is not None}
             for v, ps in leaves.items()}
    return loss, {v: g for v, g in grads.items() if g}


def torch_vertex_gradients(graph, params, inputs, target):
    """({vertex: dl/dvhat per sample}, {input: dl/dx per sample}), l the per-sample loss."""
    _, _, values, _ = evaluate(graph, params, inputs, target)
    batch = values[graph.output].shape[0]

    def per_sample(t):
        return np.zeros(tuple(t.shape)) if t.grad is None else batch * t.grad.numpy()

    vertices = {n: per_sample(values[n]) for n in graph.order if not graph.is_input(n)}
    return vertices, {n: per_sample(values[n]) for n in graph.inputs}


def relative_error(a, b) -> float:
    scale = np.linalg.norm(b)
    diff = np.linalg.norm(np.asarray(a) - np.asarray(b))
    return float(diff / scale) if scale > 0 else (0.0 if diff == 0 else float("inf"))


def max_relative_error(estimates, reference) -> tuple[float, dict]:
    """Largest ||-dtheta - grad|| / ||grad|| over every parameter of the reference."""
    errors = {}
    for v, grads in reference.items():
        for k, g in grads.items():
            est = -estimates.get(v, {}).get(k, np.zeros_like(g))
            errors[f"{v}.{k}"] = float(np.linalg.norm(est - g) / np.linalg.norm(g))
    return max(errors.values()), errors

"""Parameter-free elementwise vertices: sums and products of parents (activations are in
`neurolocal.ops.activations`)."""

from __future__ import annotations


from neurolocal.ops.base import Op, require_same_shapes


class Add(Op):
    """vhat = sum_k x_k; every parent receives eps unchanged."""

    name = "add"
    arity = None

    def output_shape(self, parent_shapes):
        return require_same_shapes(self.name, parent_shapes)

    def forward(self, params, inputs):
        out = inputs[0].copy()
        for x in inputs[1:]:
            out += x
        return out, len(inputs)

    def vjp(self, params, count, eps):
        # Receivers only read messages, so one array can travel to every parent.
        return [eps] * count


class Mul(Op):
    """vhat = prod_k x_k (elementwise); J_k^T eps = eps * prod_{j != k} x_j."""

    name = "mul"
    arity = None

    def output_shape(self, parent_shapes):
        return require_same_shapes(self.name, parent_shapes)

    def forward(self, params, inputs):
        out = inputs[0].copy()
        for x in inputs[1:]:
            out *= x
        return out, list(inputs)

    def vjp(self, params, inputs, eps):
        grads = []
        for k in range(len(inputs)):
            g = eps.copy()
            for j, x in enumerate(inputs):
                if j != k:
                    g *= x
            grads.append(g)
        return grads

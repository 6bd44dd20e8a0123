"""Numba kernels for the hot loops of a relaxation round and a Hebbian update.

Kernels are serial (one core per actor: parallelism comes from vertices, not from
threads inside one) and compiled with `cache=True` so a fresh process — a Ray
worker, a CI run — pays the compile once per machine, not once per process.
Each takes contiguous float arrays and works in place where that saves a copy.
"""

from __future__ import annotations

import math

import numpy as np

from neurolocal.jit import njit_on_first_call


@njit_on_first_call
def relax_step(value, error, prediction, feedback, eta):
    """One fixed-prediction update, fused: v += eta * (-eps + feedback); eps = v - vhat.

    With eta = 1 the update is eps = feedback exactly (v = vhat + feedback), so an
    error whose feedback did not change does not change by a rounding either: that
    is what lets an event-driven schedule skip it. Returns whether eps changed.
    """
    v = value.reshape(-1)
    e = error.reshape(-1)
    p = prediction.reshape(-1)
    f = feedback.reshape(-1)
    changed = False
    if eta == 1.0:
        for k in range(v.size):
            if e[k] != f[k]:
                changed = True
                e[k] = f[k]
                v[k] = p[k] + f[k]
        return changed
    for k in range(v.size):
        v[k] += eta * (f[k] - e[k])
        new = v[k] - p[k]
        if new != e[k]:
            changed = True
            e[k] = new
    return changed


@njit_on_first_call
def value_step(value, error, feedback, eta):
    """The strict-mode value update v += eta * (-eps + feedback), errors recomputed later."""
    v = value.reshape(-1)
    e = error.reshape(-1)
    f = feedback.reshape(-1)
    for k in range(v.size):
        v[k] += eta * (f[k] - e[k])


@njit_on_first_call
def squared_norms(rows):
    """Sum of squares of each row of a 2-D array, summed in order (float64).

    A vertex's energy (`VertexRule.energy`) is this of its error as one row, and a group
    of vertices run together (the planned path, engines/plan/groups.py) takes it of
    its stacked errors, one row per vertex: the same loop, so the same bits either
    way — unlike BLAS's dot, whose order of summation depends on the length and
    alignment it is handed."""
    out = np.empty(rows.shape[0])
    for g in range(rows.shape[0]):
        total = 0.0
        for k in range(rows.shape[1]):
            x = float(rows[g, k])
            total += x * x
        out[g] = total
    return out


@njit_on_first_call
def gather_sum(table, index, counts, out):
    """out[g] = table[index[g, 0]] + table[index[g, 1]] + ... (counts[g] terms, added left
    to right; zeros when none): the summed feedback of a group of vertices, each reading
    its children's rows of a mailbox (engines/plan/groups.py) in the graph's order of
    children — the additions the message path makes, one message at a time."""
    width = table.shape[1]
    for g in range(index.shape[0]):
        n = counts[g]
        if n == 0:
            for k in range(width):
                out[g, k] = 0.0
            continue
        first = index[g, 0]
        for k in range(width):
            out[g, k] = table[first, k]
        for i in range(1, n):
            row = index[g, i]
            for k in range(width):
                out[g, k] = out[g, k] + table[row, k]


@njit_on_first_call
def scale_by_derivative(error, derivative):
    """delta = eps * f'(z): the error seen through a cached activation derivative."""
    out = np.empty_like(error)
    e = error.reshape(-1)
    d = derivative.reshape(-1)
    o = out.reshape(-1)
    for k in range(e.size):
        o[k] = e[k] * d[k]
    return out


def dense_hebbian(delta, presynaptic):
    """Hebbian dense update summed over the batch: dW = x^T delta, db = sum_b delta.

    A BLAS call from numpy, not a numba kernel: numba's np.dot reaches the same BLAS
    through a slower path for the transposed operand (64x1024 by 64x1024 here:
    7.4 ms against 6.3 ms), and there is nothing to fuse around one matmul.
    """
    return presynaptic.T @ delta, delta.sum(axis=0)


# Activations use numpy's vectorised ufuncs, not numba loops: numpy's SIMD tanh/exp
# are ~10x faster than numba's scalar libm calls (64x128 tanh: 32 us vs 317 us here).


def tanh_with_derivative(z):
    y = np.tanh(z)
    derivative = np.multiply(y, y)
    np.subtract(1.0, derivative, out=derivative)
    return y, derivative


def sigmoid_with_derivative(z):
    # 0.5 (1 + tanh(z / 2)): no overflow for large |z|, unlike 1 / (1 + exp(-z))
    s = np.tanh(0.5 * z)
    s += 1.0
    s *= 0.5
    return s, s * (1.0 - s)


def relu_with_derivative(z):
    derivative = (z > 0).astype(z.dtype)
    return z * derivative, derivative


@njit_on_first_call
def gelu_with_derivative(z):
    """GELU with erf, as torch's default: y = z Phi(z), y' = Phi(z) + z phi(z).

    A numba loop: numpy has no erf, and this is one pass for value and derivative."""
    y = np.empty_like(z)
    d = np.empty_like(z)
    zf = z.reshape(-1)
    yf = y.reshape(-1)
    df = d.reshape(-1)
    for k in range(zf.size):
        x = zf[k]
        cdf = 0.5 * (1.0 + math.erf(x * 0.7071067811865476))
        yf[k] = x * cdf
        df[k] = cdf + x * 0.3989422804014327 * math.exp(-0.5 * x * x)
    return y, d


def gelu_tanh_with_derivative(z):
    """GELU's tanh approximation (torch's approximate='tanh')."""
    c = z.dtype.type(np.sqrt(2.0 / np.pi))
    u = c * (z + 0.044715 * z ** 3)
    t = np.tanh(u)
    y = 0.5 * z * (1.0 + t)
    derivative = 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * z * z)
    return y, derivative

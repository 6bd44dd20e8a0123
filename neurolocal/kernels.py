"""Numba kernels for the hot loops of a relaxation round and a Hebbian update.

Kernels are serial (one core per actor: parallelism comes from vertices, not from
threads inside one) and compiled with `cache=True` so a fresh process — a Ray
worker, a CI run — pays the compile once per machine, not once per process.
Each takes contiguous float arrays and works in place where that saves a copy.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def value_step(value, error, feedback, eta):
    """The strict-mode value update v += eta * (-eps + feedback), errors recomputed later."""
    v = value.reshape(-1)
    e = error.reshape(-1)
    f = feedback.reshape(-1)
    for k in range(v.size):
        v[k] += eta * (f[k] - e[k])


@njit(cache=True, nogil=True)
def scale_by_derivative(error, derivative):
    """delta = eps * f'(z): the error seen through a cached activation derivative."""
    out = np.empty_like(error)
    e = error.reshape(-1)
    d = derivative.reshape(-1)
    o = out.reshape(-1)
    for k in range(e.size):
        o[k] = e[k] * d[k]
    return out


@njit(cache=True, nogil=True)
def dense_hebbian(delta, presynaptic):
    """Hebbian dense update summed over the batch: dW = x^T delta, db = sum_b delta."""
    weight_update = np.dot(presynaptic.T, delta)
    bias_update = np.zeros(delta.shape[1], dtype=delta.dtype)
    for b in range(delta.shape[0]):
        for j in range(delta.shape[1]):
            bias_update[j] += delta[b, j]
    return weight_update, bias_update


@njit(cache=True, nogil=True)
def tanh_with_derivative(z):
    y = np.empty_like(z)
    d = np.empty_like(z)
    zf, yf, df = z.reshape(-1), y.reshape(-1), d.reshape(-1)
    for k in range(zf.size):
        t = np.tanh(zf[k])
        yf[k] = t
        df[k] = 1.0 - t * t
    return y, d


@njit(cache=True, nogil=True)
def sigmoid_with_derivative(z):
    y = np.empty_like(z)
    d = np.empty_like(z)
    zf, yf, df = z.reshape(-1), y.reshape(-1), d.reshape(-1)
    for k in range(zf.size):
        x = zf[k]
        if x >= 0:
            s = 1.0 / (1.0 + np.exp(-x))
        else:
            ex = np.exp(x)
            s = ex / (1.0 + ex)
        yf[k] = s
        df[k] = s * (1.0 - s)
    return y, d


@njit(cache=True, nogil=True)
def relu_with_derivative(z):
    y = np.empty_like(z)
    d = np.empty_like(z)
    zf, yf, df = z.reshape(-1), y.reshape(-1), d.reshape(-1)
    for k in range(zf.size):
        if zf[k] > 0:
            yf[k] = zf[k]
            df[k] = 1.0
        else:
            yf[k] = 0.0
            df[k] = 0.0
    return y, d


@njit(cache=True, nogil=True)
def softmax_rows(z):
    out = np.empty_like(z)
    for b in range(z.shape[0]):
        m = z[b, 0]
        for j in range(1, z.shape[1]):
            if z[b, j] > m:
                m = z[b, j]
        total = 0.0
        for j in range(z.shape[1]):
            out[b, j] = np.exp(z[b, j] - m)
            total += out[b, j]
        for j in range(z.shape[1]):
            out[b, j] /= total
    return out

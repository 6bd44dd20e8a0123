"""Numba kernels for 2-D convolution and pooling over (batch, channels, height, width).

Convolution goes through im2col: every receptive field becomes one row, so the
forward pass, J^T eps and the Hebbian update are each one BLAS matmul; only the
gather (`im2col`) and its adjoint scatter (`col2im`) are loops. Pooling keeps
what its local rule needs from the forward pass: the argmax of every window
(max) or nothing but the geometry (average, zero padding counted, as in torch).

Serial and `cache=True`, like `neurolocal.kernels`.
"""

from __future__ import annotations

import numpy as np

from neurolocal.jit import njit_on_first_call


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


@njit_on_first_call
def im2col(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """Rows (b, i, j) of receptive fields, columns (c, di, dj): shape (B*oh*ow, C*kh*kw)."""
    batch, channels, height, width = x.shape
    cols = np.zeros((batch * oh * ow, channels * kh * kw), dtype=x.dtype)
    for b in range(batch):
        for i in range(oh):
            for j in range(ow):
                row = (b * oh + i) * ow + j
                for c in range(channels):
                    for di in range(kh):
                        hi = i * sh - ph + di
                        if hi < 0 or hi >= height:
                            continue
                        for dj in range(kw):
                            wj = j * sw - pw + dj
                            if 0 <= wj < width:
                                cols[row, (c * kh + di) * kw + dj] = x[b, c, hi, wj]
    return cols


@njit_on_first_call
def col2im(cols, batch, channels, height, width, kh, kw, sh, sw, ph, pw, oh, ow):
    """The adjoint of `im2col`: scatter-add every row back onto the image it came from."""
    x = np.zeros((batch, channels, height, width), dtype=cols.dtype)
    for b in range(batch):
        for i in range(oh):
            for j in range(ow):
                row = (b * oh + i) * ow + j
                for c in range(channels):
                    for di in range(kh):
                        hi = i * sh - ph + di
                        if hi < 0 or hi >= height:
                            continue
                        for dj in range(kw):
                            wj = j * sw - pw + dj
                            if 0 <= wj < width:
                                x[b, c, hi, wj] += cols[row, (c * kh + di) * kw + dj]
    return x


@njit_on_first_call
def maxpool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """Window maxima and, per window, the flat index (h * W + w) of the first maximum."""
    batch, channels, height, width = x.shape
    out = np.empty((batch, channels, oh, ow), dtype=x.dtype)
    where = np.empty((batch, channels, oh, ow), dtype=np.int64)
    for b in range(batch):
        for c in range(channels):
            for i in range(oh):
                for j in range(ow):
                    best = -np.inf
                    best_at = -1
                    for di in range(kh):
                        hi = i * sh - ph + di
                        if hi < 0 or hi >= height:
                            continue
                        for dj in range(kw):
                            wj = j * sw - pw + dj
                            if 0 <= wj < width and (best_at < 0 or x[b, c, hi, wj] > best):
                                best = x[b, c, hi, wj]
                                best_at = hi * width + wj
                    out[b, c, i, j] = best
                    where[b, c, i, j] = best_at
    return out, where


@njit_on_first_call
def maxpool_backward(eps, where, height, width):
    """J^T eps: each window's error goes to the input position that won it."""
    batch, channels, oh, ow = eps.shape
    grad = np.zeros((batch, channels, height * width), dtype=eps.dtype)
    for b in range(batch):
        for c in range(channels):
            for i in range(oh):
                for j in range(ow):
                    grad[b, c, where[b, c, i, j]] += eps[b, c, i, j]
    return grad.reshape(batch, channels, height, width)


@njit_on_first_call
def avgpool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """Window means; padded positions count as zeros (torch's count_include_pad=True)."""
    batch, channels, height, width = x.shape
    out = np.zeros((batch, channels, oh, ow), dtype=x.dtype)
    scale = 1.0 / (kh * kw)
    for b in range(batch):
        for c in range(channels):
            for i in range(oh):
                for j in range(ow):
                    total = 0.0
                    for di in range(kh):
                        hi = i * sh - ph + di
                        if hi < 0 or hi >= height:
                            continue
                        for dj in range(kw):
                            wj = j * sw - pw + dj
                            if 0 <= wj < width:
                                total += x[b, c, hi, wj]
                    out[b, c, i, j] = total * scale
    return out


@njit_on_first_call
def avgpool_backward(eps, height, width, kh, kw, sh, sw, ph, pw):
    """J^T eps: each window's error, divided by the window size, to every position in it."""
    batch, channels, oh, ow = eps.shape
    grad = np.zeros((batch, channels, height, width), dtype=eps.dtype)
    scale = 1.0 / (kh * kw)
    for b in range(batch):
        for c in range(channels):
            for i in range(oh):
                for j in range(ow):
                    share = eps[b, c, i, j] * scale
                    for di in range(kh):
                        hi = i * sh - ph + di
                        if hi < 0 or hi >= height:
                            continue
                        for dj in range(kw):
                            wj = j * sw - pw + dj
                            if 0 <= wj < width:
                                grad[b, c, hi, wj] += share
    return grad

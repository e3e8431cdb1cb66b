"""The input gradient of upsampling: the exact adjoint of ``upsampling.upsample``.

Nearest repeats each input cell over a ``size`` block, so its adjoint sums each block. Linear
interpolation is separable, one two-tap pass per axis (``y[j] = (1 - f_j) x[lo_j] + f_j
x[hi_j]``, half-pixel centres, clamped at the edges); its adjoint is one pass per axis in the
reverse order, each adding ``(1 - f_j) dy[j]`` into ``lo_j`` and ``f_j dy[j]`` into ``hi_j``
with the forward's own weights (``upsampling._linear_taps``). ``lo`` and ``hi`` never decrease
along the axis, so the outputs that share a source cell are one run and each run is summed by
``np.add.reduceat``, in order: no scatter with repeated indices, a fixed order. Both weights
always enter, as in the forward (0 * Inf = NaN). Linear passes run on pieces of whole batch
items so their temporaries stay inside the piece budget (``memory.piece_limit``).
"""
import math

import numpy as np

from . import memory
from ._windows import compute_dtype, spatial_axes
from .upsampling import _linear_taps

# Piece arrays of a linear pass, per output cell: the two weighted copies, their sums, the result.
_LINEAR_TEMPORARIES = 4


def upsample_backward(problem, dy):
    if problem.interpolation not in ("nearest", "bilinear", "trilinear"):
        raise ValueError(
            "Invalid value for argument `interpolation`. Expected 'nearest', 'bilinear' or 'trilinear'. "
            f"Received: interpolation={problem.interpolation!r}"
        )
    if tuple(dy.shape) != tuple(problem.output_shape):
        raise ValueError(f"Expected `dy` of shape {problem.output_shape} for {problem}; received dy.shape={dy.shape}")
    ctype = compute_dtype(problem.dtype)
    axes = spatial_axes(problem.rank, problem.channels_last)
    if problem.interpolation == "nearest":
        return _block_sums(dy, axes, problem.size, ctype).astype(problem.dtype, copy=False)
    dx = np.empty(problem.input_shape, problem.dtype)
    item_bytes = _LINEAR_TEMPORARIES * math.prod(dy.shape[1:]) * ctype.itemsize
    for bs, _ in memory.chunks(problem.batch, 1, item_bytes, memory.piece_limit()):
        g = dy[bs].astype(ctype, copy=False)
        for ax, length, scale in reversed(list(zip(axes, problem.in_spatial, problem.size))):
            g = _linear_axis_adjoint(g, ax, length, scale, ctype)
        np.copyto(dx[bs], g, casting="unsafe")
    return dx


def _block_sums(dy, axes, size, ctype):
    """Each spatial axis split into (input cell, repeat) and the repeat axes summed."""
    shape, summed = [], []
    for ax, n in enumerate(dy.shape):
        if ax in axes:
            s = size[axes.index(ax)]
            shape += [n // s, s]
            summed.append(len(shape) - 1)
        else:
            shape.append(n)
    return dy.reshape(shape).sum(axis=tuple(summed), dtype=ctype)


def _linear_axis_adjoint(g, ax, length, scale, ctype):
    """The adjoint of one forward linear pass along ``ax``: ``g`` has ``length * scale`` cells
    there, the result ``length``."""
    lo, hi, frac = _linear_taps(length, scale, None, ctype)
    shape = [1] * g.ndim
    shape[ax] = -1
    frac = frac.reshape(shape)
    out_shape = list(g.shape)
    out_shape[ax] = length
    dx = np.zeros(out_shape, ctype)
    for source, weighted in ((lo, g * (1 - frac)), (hi, g * frac)):
        starts = np.flatnonzero(np.r_[True, np.diff(source) != 0])
        index = [slice(None)] * g.ndim
        index[ax] = source[starts]  # distinct cells, one per run of outputs
        dx[tuple(index)] += np.add.reduceat(weighted, starts, axis=ax)
    return dx

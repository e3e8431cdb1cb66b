"""Upsampling: nearest (pixel replication) and linear per axis (bilinear 2-D, trilinear 3-D).

Linear interpolation is separable, so trilinear is three 1-D passes. Half-pixel centres
(align_corners=False): output cell ``j`` samples ``(j + 0.5) / scale - 0.5`` of the input, clamped
to ``[0, L-1]``; e.g. [1, 2] x2 -> [1, 1.25, 1.75, 2]. The output is filled in pieces of rows of
the first spatial axis (``_pieces``), each from the input rows it samples, so the passes'
intermediates are piece arrays.
"""
import math

import numpy as np

from . import _pieces
from ._windows import compute_dtype, spatial_axes

# Piece arrays of a linear pass, in output rows: its two samples, their weighted sum, the
# previous pass's result.
_LINEAR_TEMPORARIES = 4


def upsample(problem, x):
    size, interpolation, channels_last = problem.size, problem.interpolation, problem.channels_last
    if interpolation not in ("nearest", "bilinear", "trilinear"):
        raise ValueError(
            "Invalid value for argument `interpolation`. Expected 'nearest', 'bilinear' or 'trilinear'. "
            f"Received: interpolation={interpolation!r}"
        )
    axes = spatial_axes(problem.rank, channels_last)
    out_shape = problem.output_shape
    rows_axis = axes[0]
    if interpolation == "nearest":
        # A run of rows (channels_first, an item larger than the budget) first takes its source rows.
        ctype = x.dtype
        row_bytes = math.prod(out_shape[1:]) // out_shape[rows_axis] // math.prod(size[1:]) * x.itemsize

        def fill(bs, rs, acc):
            if rs.stop - rs.start == out_shape[rows_axis]:  # whole items: one broadcast copy
                _repeat(acc, x[bs], axes, size)
            else:  # a run of output rows: their source rows, each already repeated along this axis
                rows = np.take(x[bs], np.arange(rs.start, rs.stop) // size[0], axis=rows_axis)
                _repeat(acc, rows, axes, (1,) + tuple(size[1:]))
    else:
        ctype = compute_dtype(x.dtype)
        row_bytes = _LINEAR_TEMPORARIES * math.prod(out_shape[1:]) // out_shape[rows_axis] * ctype.itemsize

        def fill(bs, rs, acc):
            lo, hi, frac = _linear_taps(x.shape[rows_axis], size[0], rs, ctype)
            first, last = int(lo[0]), int(hi[-1])
            index = [bs] + [slice(None)] * (x.ndim - 1)
            index[rows_axis] = slice(first, last + 1)  # the input rows these outputs sample
            y = x[tuple(index)].astype(ctype, copy=False)
            passes = [(rows_axis, (lo - first, hi - first, frac))]
            passes += [(ax, _linear_taps(y.shape[ax], scale, None, ctype)) for ax, scale in zip(axes[1:], size[1:])]
            for i, (ax, taps_) in enumerate(passes):
                y = _linear_axis(y, ax, *taps_, out=acc if i == len(passes) - 1 else None)

    return _pieces.compute(out_shape, x.dtype, ctype, channels_last, fill, row_bytes=row_bytes)


def _repeat(out, x, axes, size):
    """``out`` := ``x`` with every spatial axis repeated, in one copy: broadcast a size-``s`` axis
    after each spatial axis (never a view of x)."""
    expanded_shape = []
    index = []
    for ax, n in enumerate(x.shape):
        expanded_shape.append(n)
        index.append(slice(None))
        if ax in axes:
            expanded_shape.append(size[axes.index(ax)])
            index.append(None)
    out.reshape(expanded_shape)[...] = x[tuple(index)]


def _linear_taps(length, scale, outputs, dtype):
    """For output cells ``outputs`` (a slice; None: all ``length * scale``) of one axis: the two
    input cells each samples and the weight of the second."""
    start, stop = (0, length * scale) if outputs is None else (outputs.start, outputs.stop)
    src = (np.arange(start, stop, dtype=np.float64) + 0.5) / scale - 0.5
    src = np.clip(src, 0, length - 1)
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, length - 1)
    return lo, hi, (src - lo).astype(dtype)


def _linear_axis(y, ax, lo, hi, frac, out=None):
    shape = [1] * y.ndim
    shape[ax] = -1
    frac = frac.reshape(shape)
    a = np.take(y, lo, axis=ax)
    b = np.take(y, hi, axis=ax)
    # Both taps always enter with their weights (1 - frac, frac), as in the two-tap formula, so a
    # non-finite neighbour poisons the cell even when its weight is 0 (0 * Inf = NaN).
    a *= 1 - frac
    b *= frac
    return np.add(a, b, out=out)

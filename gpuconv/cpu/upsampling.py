"""Upsampling: nearest (pixel replication) and linear per axis (bilinear 2-D, trilinear 3-D).

Linear interpolation is separable, so trilinear is three 1-D passes. Half-pixel centres
(align_corners=False): output cell ``j`` samples ``(j + 0.5) / scale - 0.5`` of the input, clamped
to ``[0, L-1]``; e.g. [1, 2] x2 -> [1, 1.25, 1.75, 2].
"""
import numpy as np

from ._windows import compute_dtype, spatial_axes


def upsample(x, *, size, interpolation, channels_last):
    axes = spatial_axes(len(size), channels_last)
    if interpolation == "nearest":
        return _repeat(x, axes, size)
    if interpolation in ("bilinear", "trilinear"):
        y = x.astype(compute_dtype(x.dtype), copy=False)
        for ax, scale in zip(axes, size):
            y = _linear_axis(y, ax, scale)
        return y.astype(x.dtype, copy=False)
    raise ValueError(
        "Invalid value for argument `interpolation`. Expected 'nearest', 'bilinear' or 'trilinear'. "
        f"Received: interpolation={interpolation!r}"
    )


def _repeat(x, axes, size):
    """Every axis repeated in one copy: broadcast a size-``s`` axis after each spatial axis."""
    expanded_shape, final_shape = [], []
    for ax, n in enumerate(x.shape):
        expanded_shape.append(n)
        final_shape.append(n)
        if ax in axes:
            s = size[axes.index(ax)]
            expanded_shape.append(s)
            final_shape[-1] = n * s
    index = []
    for ax in range(x.ndim):
        index.append(slice(None))
        if ax in axes:
            index.append(None)
    out = np.empty(final_shape, x.dtype)
    out.reshape(expanded_shape)[...] = x[tuple(index)]  # one copy, never a view of x
    return out


def _linear_axis(y, ax, scale):
    length = y.shape[ax]
    src = (np.arange(length * scale, dtype=np.float64) + 0.5) / scale - 0.5
    src = np.clip(src, 0, length - 1)
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, length - 1)
    frac = (src - lo).astype(y.dtype)
    shape = [1] * y.ndim
    shape[ax] = -1
    frac = frac.reshape(shape)
    a = np.take(y, lo, axis=ax)
    b = np.take(y, hi, axis=ax)
    # Both taps always enter with their weights (1 - frac, frac), as in the two-tap formula, so a
    # non-finite neighbour poisons the cell even when its weight is 0 (0 * Inf = NaN).
    return a * (1 - frac) + b * frac

"""Max and average pooling as a loop over window taps of whole-tensor reductions on strided views.

Max pads with -inf, which no real cell loses to (NaN still propagates through ``np.maximum``), so
padded cells are ignored; every window holds at least one real cell. Average pads with zeros,
sums in the compute dtype and divides by the number of real cells in each window (the
separable product of per-axis counts).
"""
import numpy as np

from ._windows import compute_dtype, output_length, padded, spatial_axes, tap_slices, taps


def pool(x, *, mode, pool_size, strides, padding, channels_last):
    rank = len(pool_size)
    axes = spatial_axes(rank, channels_last)
    ones = (1,) * rank
    if mode == "max":
        ctype = x.dtype  # max is exact in any dtype
        xp = padded(x, padding, axes, ctype, fill=-np.inf)
    elif mode == "average":
        ctype = compute_dtype(x.dtype)
        xp = padded(x, padding, axes, ctype)
    else:
        raise ValueError(f"Invalid value for argument `mode`. Expected 'max' or 'average'. Received: mode={mode!r}")
    out_sp = tuple(output_length(xp.shape[ax], p, s, 1) for ax, p, s in zip(axes, pool_size, strides))
    if tuple(strides) == tuple(pool_size) and all(b == 0 and a == 0 for b, a in padding):
        return _tiled(xp, mode, pool_size, axes, out_sp, ctype).astype(x.dtype, copy=False)
    reduce = np.maximum if mode == "max" else np.add
    out = None
    for tap in taps(pool_size):
        src = xp[tap_slices(tap, axes, xp.ndim, out_sp, strides, ones)]
        if out is None:
            out = np.array(src, dtype=ctype, order="C")
        else:
            reduce(out, src, out=out)
    if mode == "average":
        out /= _real_cell_counts(x, axes, pool_size, strides, padding, out_sp, ctype)
    return out.astype(x.dtype, copy=False)


def _tiled(xp, mode, pool_size, axes, out_sp, ctype):
    """Non-overlapping windows without padding tile the first O*p cells of each axis: split each
    spatial axis into (O, p) and reduce the p axes in one call (every window is all real cells)."""
    index = [slice(None)] * xp.ndim
    shape, reduce_axes = [], []
    for ax, n in enumerate(xp.shape):
        if ax in axes:
            i = axes.index(ax)
            index[ax] = slice(0, out_sp[i] * pool_size[i])
            shape += [out_sp[i], pool_size[i]]
            reduce_axes.append(len(shape) - 1)
        else:
            shape.append(n)
    tiles = xp[tuple(index)].reshape(shape)
    if mode == "max":
        return tiles.max(axis=tuple(reduce_axes))
    return tiles.mean(axis=tuple(reduce_axes), dtype=ctype)


def _real_cell_counts(x, axes, pool_size, strides, padding, out_sp, dtype):
    """Number of non-padded cells in each window, shaped to broadcast against the output."""
    counts = np.ones((), dtype)
    for ax, p, s, (before, _), o in zip(axes, pool_size, strides, padding, out_sp):
        start = np.arange(o) * s - before
        real = np.minimum(start + p, x.shape[ax]) - np.maximum(start, 0)
        shape = [1] * x.ndim
        shape[ax] = o
        counts = counts * real.astype(dtype).reshape(shape)
    return counts

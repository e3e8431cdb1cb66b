"""Padding and sliding-window views: the im2col building blocks every NumPy op shares.

A window view is an ``as_strided`` read-only view, so building it costs nothing; the copy happens
only when an op reshapes it into a GEMM operand (and then chunk by chunk, see ``memory``).
"""
import itertools

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..geometry import conv_output_length
from . import _parallel, memory


# Innermost length from which a padding copy counts as memory-bound (``padded``).
_LONG_RUN = 64


def compute_dtype(dtype):
    """float16 is accumulated in float32; float32 and float64 are computed in their own dtype."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def spatial_axes(rank, channels_last):
    return tuple(range(1, rank + 1)) if channels_last else tuple(range(2, rank + 2))


def padded(x, padding, axes, dtype, fill=0, contiguous=False):
    """``x`` in ``dtype`` with ``padding[i]`` = (before, after) cells of ``fill`` on ``axes[i]``.

    Returns ``x`` itself when there is nothing to pad or cast (any strides, unless ``contiguous``
    asks for a C-contiguous result), so callers must treat the result as read-only. Otherwise the
    result is a fresh C-contiguous buffer.
    """
    dtype = np.dtype(dtype)
    if x.dtype == dtype and all(b == 0 and a == 0 for b, a in padding) and (x.flags.c_contiguous or not contiguous):
        return x
    shape = list(x.shape)
    interior = [slice(None)] * x.ndim
    for ax, (before, after) in zip(axes, padding):
        shape[ax] += before + after
        interior[ax] = slice(before, before + x.shape[ax])
    buf = np.zeros(shape, dtype) if fill == 0 else np.full(shape, fill, dtype)
    # One pass: pads, casts and normalises any input strides. It usually follows the previous
    # call's GEMM; long contiguous runs make it memory-bound (``memory.threads_near_gemm``).
    long_runs = x.strides[-1] == x.itemsize and x.shape[-1] >= _LONG_RUN
    _parallel.copy(buf[tuple(interior)], x, memory.threads_near_gemm(buf.nbytes, long_runs))
    return buf


def zero_outside(a, interior):
    """Zero every element of ``a`` outside ``a[interior]`` (one entry per leading axis: an index,
    or a unit-step slice), touching only the border, not the interior."""
    prefix = ()
    for ax, sl in enumerate(interior):
        if isinstance(sl, slice):
            start, stop, _ = sl.indices(a.shape[ax])
            a[prefix + (slice(0, start),)] = 0
            a[prefix + (slice(stop, None),)] = 0
        prefix += (sl,)


def output_length(length, k, s, d):
    """Length of a 'valid' correlation over an already padded axis."""
    return conv_output_length(length, k, s, d, "valid")


def windows(xp, axes, kernel_size, strides, dilation):
    """View of ``xp`` where spatial axis ``axes[i]`` becomes the output axis (length O_i, step
    ``strides[i]``) and kernel axes (length k_i, step ``dilation[i]``) are appended at the end.

    Element ``[.., o_i, .., t_0, .., t_r]`` is ``xp[.., o_i*s_i + t_i*d_i, ..]``.
    """
    shape = list(xp.shape)
    st = list(xp.strides)
    k_shape, k_strides = [], []
    for ax, k, s, d in zip(axes, kernel_size, strides, dilation):
        shape[ax] = output_length(xp.shape[ax], k, s, d)
        st[ax] = xp.strides[ax] * s
        k_shape.append(k)
        k_strides.append(xp.strides[ax] * d)
    return as_strided(xp, tuple(shape) + tuple(k_shape), tuple(st) + tuple(k_strides), writeable=False)


def tap_slices(tap, axes, ndim, out_spatial, strides, dilation):
    """Index tuple selecting, for one kernel tap, the input cells every output position reads."""
    idx = [slice(None)] * ndim
    for ax, t, o, s, d in zip(axes, tap, out_spatial, strides, dilation):
        start = t * d
        idx[ax] = slice(start, start + (o - 1) * s + 1, s)
    return tuple(idx)


def taps(kernel_size):
    """Every kernel tap, row-major (the order of a C-order reshape of the kernel's spatial axes)."""
    return itertools.product(*(range(k) for k in kernel_size))


def reshape_view(a, shape):
    """``a.reshape(shape)`` that must not copy: used for ``out=`` targets, where a silent copy
    would drop the result."""
    return np.reshape(a, shape, copy=False)

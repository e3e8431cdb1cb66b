"""Padding and sliding-window views: the im2col building blocks every NumPy op shares; and the
taps that can touch real input, with the input a piece of the output reads through them.

A window view is an ``as_strided`` read-only view, so building it costs nothing; the copy happens
only when an op reshapes it into a GEMM operand (and then chunk by chunk, see ``memory``).

Taps that read only padding, at every output, are left out before anything is computed
(``WindowPlan``, ``trim_kernel``): a 10**7-cell pooling window over 8 cells reads 15 taps, a
kernel with dilation 2**30 under 'same' its centre. Then no padding longer than the input is
ever built, and the work is bounded by the taps that can touch real input. Padding is literal
zeros, so a left-out tap still adds 0 * w: NaN where w is Inf or NaN (``trim_kernel`` keeps that).
"""
import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..dtypes import accumulation_dtype
from ..geometry import conv_output_length, live_taps, window_slice
from . import _parallel, memory


# Innermost length from which a padding copy counts as memory-bound (``padded``).
_LONG_RUN = 64


compute_dtype = accumulation_dtype  # the dtype an op computes in (float32 for float16)


def spatial_axes(rank, channels_last):
    return tuple(range(1, rank + 1)) if channels_last else tuple(range(2, rank + 2))


def padded(x, padding, axes, dtype, fill=0, contiguous=False, scratch=None):
    """``x`` in ``dtype`` with ``padding[i]`` = (before, after) cells of ``fill`` on ``axes[i]``.

    Returns ``x`` itself when there is nothing to pad or cast (any strides, unless ``contiguous``
    asks for a C-contiguous result), so callers must treat the result as read-only. Otherwise the
    result is a C-contiguous buffer: fresh, or in ``scratch`` (a ``memory.Scratch`` reused by
    every piece of a call, only its border refilled).
    """
    dtype = np.dtype(dtype)
    if x.dtype == dtype and all(b == 0 and a == 0 for b, a in padding) and (x.flags.c_contiguous or not contiguous):
        return x
    shape = list(x.shape)
    interior = [slice(None)] * x.ndim
    for ax, (before, after) in zip(axes, padding):
        shape[ax] += before + after
        interior[ax] = slice(before, before + x.shape[ax])
    if scratch is not None and scratch.fits(shape):
        buf = scratch.take(tuple(shape))
        fill_outside(buf, interior, fill)  # a buffer reused from the previous piece
    elif scratch is not None:
        buf = scratch.take(tuple(shape), fill)
    else:
        buf = np.zeros(shape, dtype) if fill == 0 else np.full(shape, fill, dtype)
    # One pass: pads, casts and normalises any input strides. It usually follows the previous
    # call's GEMM; long contiguous runs make it memory-bound (``memory.threads_near_gemm``).
    long_runs = x.strides[-1] == x.itemsize and x.shape[-1] >= _LONG_RUN
    _parallel.copy(buf[tuple(interior)], x, memory.threads_near_gemm(buf.nbytes, long_runs))
    return buf


def fill_outside(a, interior, value):
    """Set every element of ``a`` outside ``a[interior]`` (one entry per leading axis: an index,
    or a unit-step slice) to ``value``, touching only the border, not the interior."""
    prefix = ()
    for ax, sl in enumerate(interior):
        if isinstance(sl, slice):
            start, stop, _ = sl.indices(a.shape[ax])
            a[prefix + (slice(0, start),)] = value
            a[prefix + (slice(stop, None),)] = value
        prefix += (sl,)


def zero_outside(a, interior):
    """``fill_outside`` with zeros."""
    fill_outside(a, interior, 0)


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


# --------------------------------------------------------------------------------------------
# Taps that can touch real input, and the input one piece of the output reads
# --------------------------------------------------------------------------------------------
class WindowPlan:
    """A forward window op (conv, depthwise, pooling, locally connected) over ``x``, resolved once:
    output lengths, the taps that can read the input, what a piece of the output costs, and the
    input one piece reads. ``every_tap`` keeps all taps (locally connected: each position has its
    own weights, laid out by tap)."""

    def __init__(self, x, ksize, strides, dilation, padding, out_spatial, channels_last, itemsize, every_tap=False):
        self.x, self.strides, self.dilation, self.padding = x, strides, dilation, padding
        self.channels_last = channels_last
        self.axes = spatial_axes(len(ksize), channels_last)
        # One pass over the axes, in plain ints: this runs once per call of every windowed op.
        out_sp, live, taps_, spans = [], [], [], []
        self.every_tap = True
        for ax, k, s, d, (before, after), o in zip(self.axes, ksize, strides, dilation, padding, out_spatial):
            length = x.shape[ax]
            # 'valid' (no padding): every tap of a window that fits reads the input
            lo, hi = (0, k) if every_tap or before == after == 0 else live_taps(length, k, s, d, before, o)
            self.every_tap &= lo == 0 and hi == k
            out_sp.append(o)
            live.append((lo, hi))
            taps_.append(max(0, hi - lo))
            spans.append((o - 1) * s + ((hi - lo - 1) * d + 1 if hi > lo else 1))  # padded cells read
        self.out_sp, self.live, self.taps = tuple(out_sp), tuple(live), tuple(taps_)
        # The zero-padded input a piece of r output rows reads: (r - 1)*s + k_eff rows of the
        # padded other axes, i.e. s per row plus k_eff - s per item (negative when the stride is
        # longer than the kernel: one row reads only k_eff).
        row = math.prod(spans[1:]) * (x.shape[-1] if channels_last else x.shape[1]) * itemsize
        k_eff0 = spans[0] - (out_sp[0] - 1) * strides[0]
        self.row_bytes, self.item_bytes = strides[0] * row, (k_eff0 - strides[0]) * row

    def out_shape(self, channels):
        n = self.x.shape[0]
        return (n,) + self.out_sp + (channels,) if self.channels_last else (n, channels) + self.out_sp

    def piece(self, bs, rs):
        """The input that outputs ``[bs, rs]`` (``rs``: rows of the first spatial axis, every index
        of the others) read through the live taps: ``(x view, padding pairs)`` such that the same
        op with ``self.taps`` taps, over the view zero-padded by the pairs, gives exactly those
        outputs (``geometry.window_slice``). A view: nothing is copied."""
        if self.every_tap and bs.stop - bs.start == self.x.shape[0] and rs.stop - rs.start == self.out_sp[0]:
            return self.x, self.padding  # the whole output through every tap: the input itself
        index = [bs] + [slice(None)] * (self.x.ndim - 1)
        pairs = []
        for i, ax in enumerate(self.axes):
            outputs = (rs.start, rs.stop) if i == 0 else (0, self.out_sp[i])
            index[ax], pair = window_slice(self.x.shape[ax], self.strides[i], self.dilation[i], self.padding[i][0],
                                           outputs, self.live[i])
            pairs.append(pair)
        return self.x[tuple(index)], tuple(pairs)

    def kernel_fill(self, kernel, ctype, reduce_channels, accumulate):
        """The ``fill(bs, rs, acc)`` of a kernel op (``_pieces``): ``accumulate(xs, w, pad, acc)``
        on each piece with the kernel cut to the live taps (``trim_kernel``), or, where no tap
        ever reads the input, the per-channel constant that gives (``dead_output``)."""
        if any(t == 0 for t in self.taps):
            dead = dead_output(kernel, reduce_channels).astype(ctype)
            return lambda bs, rs, acc: fill_channels(acc, dead, self.channels_last)
        w = (kernel if self.every_tap else trim_kernel(kernel, self.live)).astype(ctype, copy=False)

        def fill(bs, rs, acc):
            xs, pad = self.piece(bs, rs)
            accumulate(xs, w, pad, acc)

        return fill


def trim_kernel(w, taps_):
    """``w`` ``(*k, ..)`` cut to the live taps, or ``w`` itself when all are live. A left-out
    tap reads a zero at every output, so it adds 0 * w there: NaN exactly where one of its
    weights is Inf or NaN. That NaN is kept by writing it into the first live tap of the same
    (channel, filter): NaN times any input, real or padding, is NaN at every output, as the
    left-out tap would have made it."""
    rank = len(taps_)
    box = tuple(slice(lo, hi) for lo, hi in taps_)
    kept = w[box]
    if kept.shape == w.shape:
        return w
    tap_axes = tuple(range(rank))
    bad = (~np.isfinite(w)).sum(axis=tap_axes) > (~np.isfinite(kept)).sum(axis=tap_axes)
    if bad.any():
        kept = kept.copy()
        kept[(0,) * rank][bad] = np.nan
    return kept


def dead_output(w, reduce_channels):
    """Per output channel, what a window op gives when every tap reads padding: 0, or NaN where a
    weight feeding it is Inf or NaN (0 * Inf). ``w`` ``(*k, Cg, F)`` with ``reduce_channels``
    (conv: filter f sums its channels) or ``(*k, C, dm)`` without (depthwise: channel c*dm + m)."""
    rank = w.ndim - 2
    axes = tuple(range(rank)) + ((rank,) if reduce_channels else ())
    return np.where((~np.isfinite(w)).any(axis=axes), np.nan, 0.0).reshape(-1)


def fill_channels(acc, values, channels_last):
    """``acc[...] = values`` along the channel axis (one value per output channel)."""
    shape = (-1,) if channels_last else (-1,) + (1,) * (acc.ndim - 2)
    acc[...] = values.reshape(shape)

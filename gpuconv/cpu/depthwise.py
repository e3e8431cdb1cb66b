"""Depthwise and separable convolution.

Depthwise work is memory-bound (one multiply-add per input read per tap), so there is no im2col
and no GEMM. The work is done channels_last (a channels_first input is transposed while it is
padded, in the same copy): ``np.einsum`` contracts a window view of the zero-padded input with
the kernel, one fused multiply-add pass per tap, no temporaries. When the last spatial stride
is 1 the last spatial axis and the channels merge into one long contiguous axis (tap ``t`` of
that axis is a shift by ``t*d*C`` elements), so einsum's inner loop runs over whole rows; the
kernel is tiled along that axis to match. Output channel ``c*dm + m``. Pieces of the batch (or of
the first output axis) run on ``_parallel`` threads.
"""
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _parallel
from ._epilogue import channel_bias_shape, finish
from ._windows import compute_dtype, output_length, padded, spatial_axes, windows


def depthwise_conv(x, kernel, bias, *, strides, padding, dilation, channels_last, activation):
    y = depthwise_accumulate(x, kernel, strides=strides, padding=padding, dilation=dilation,
                             channels_last=channels_last)
    return finish(y, bias, activation, x.dtype, channel_bias_shape(y.ndim, channels_last))


def separable_conv(x, depthwise_kernel, pointwise_kernel, bias, *, strides, padding, dilation,
                   channels_last, activation):
    """Depthwise, then a 1x1 GEMM on the compute-dtype intermediate (never rounded in between)."""
    mid = depthwise_accumulate(x, depthwise_kernel, strides=strides, padding=padding, dilation=dilation,
                               channels_last=channels_last, result_channels_last=True)
    c_mid, filters = pointwise_kernel.shape[-2:]
    pw = pointwise_kernel.reshape(c_mid, filters).astype(mid.dtype, copy=False)
    y = np.matmul(mid.reshape(-1, c_mid), pw).reshape(mid.shape[:-1] + (filters,))
    return finish(_to_layout(y, channels_last), bias, activation, x.dtype, channel_bias_shape(y.ndim, channels_last))


def depthwise_accumulate(x, kernel, *, strides, padding, dilation, channels_last, result_channels_last=None):
    """Depthwise conv without epilogue, in the compute dtype. Kernel ``(*k, C, dm)``.

    The result is C-contiguous, in the input's layout unless ``result_channels_last`` says."""
    if result_channels_last is None:
        result_channels_last = channels_last
    rank = kernel.ndim - 2
    if not channels_last:
        x = np.moveaxis(x, 1, -1)  # a view; ``padded`` below makes the channels_last copy
    ctype = compute_dtype(x.dtype)
    axes = spatial_axes(rank, True)
    xp = padded(x, padding, axes, ctype)
    if xp is x:
        xp = np.ascontiguousarray(xp)  # the flat-row view below needs C order (no copy if it is)
    y = _depthwise_channels_last(xp, kernel.astype(ctype, copy=False), strides, dilation)
    return _to_layout(y, result_channels_last)


def _to_layout(y, channels_last):
    return y if channels_last else np.ascontiguousarray(np.moveaxis(y, -1, 1))


def _depthwise_channels_last(xp, w, strides, dilation):
    rank = w.ndim - 2
    ksize = w.shape[:rank]
    c, dm = w.shape[-2:]
    n = xp.shape[0]
    out_sp = tuple(output_length(xp.shape[1 + i], ksize[i], strides[i], dilation[i]) for i in range(rank))
    if strides[-1] == 1:
        view, weights = _flat_rows(xp, w, out_sp, strides, dilation)
    else:
        view = windows(xp, tuple(range(1, rank + 1)), ksize, strides, dilation)  # (N, *O, C, *k)
        weights = [np.ascontiguousarray(np.moveaxis(w[..., m], -1, 0)) for m in range(dm)]  # (C, *k)
    out = np.empty((dm,) + view.shape[:view.ndim - rank], w.dtype)
    # operand subscripts: view axes 0..v-1 (its last ``rank`` are kernel taps); weights are
    # (inner axis, *k) for the windows view and (*k, inner) for the flat-row view
    v_sub = list(range(view.ndim))
    lead = v_sub[:view.ndim - rank]
    taps_sub = v_sub[view.ndim - rank:]
    w_sub = taps_sub + [lead[-1]] if strides[-1] == 1 else [lead[-1]] + taps_sub

    # For rank 1 with flat rows, axis 1 is the merged (O*C) axis, which the weights share.
    shared_row_axis = strides[-1] == 1 and rank == 1

    def piece(sl):
        b, rows = sl
        if shared_row_axis and rows != slice(None):
            rows = slice(rows.start * c, rows.stop * c)
        for m in range(dm):
            wm = weights[m][..., rows] if shared_row_axis else weights[m]
            np.einsum(view[b, rows], v_sub, wm, w_sub, lead, out=out[m, b, rows])

    _parallel.run(piece, _pieces(n, out_sp[0]))
    if dm == 1:
        return out[0].reshape((n,) + out_sp + (c,))
    return np.moveaxis(out, 0, -1).reshape((n,) + out_sp + (c * dm,))


def _flat_rows(xp, w, out_sp, strides, dilation):
    """View ``(N, O_0, .., O_{r-2}, O_{r-1}*C, *k)`` of the padded input and per-m weights
    ``(*k, O_{r-1}*C)``: with stride 1 on the last axis, position ``(.., o, c)`` of tap ``t`` is the
    input element at flat offset ``o*C + c + t*d*C`` of its row."""
    rank = w.ndim - 2
    c, dm = w.shape[-2:]
    it = xp.itemsize
    shape = (xp.shape[0],) + out_sp[:-1] + (out_sp[-1] * c,) + w.shape[:rank]
    st = ((xp.strides[0],) + tuple(xp.strides[1 + i] * strides[i] for i in range(rank - 1)) + (it,)
          + tuple(xp.strides[1 + i] * dilation[i] for i in range(rank)))
    view = as_strided(xp, shape, st, writeable=False)
    weights = [np.tile(w[..., m], (1,) * (rank - 1) + (out_sp[-1],)) for m in range(dm)]  # (*k, O*C)
    return view, weights


def _pieces(n, rows):
    """(batch slice, row slice) pieces for the threads: batch items first, rows when N is small."""
    threads = _parallel.NUM_THREADS
    if n >= threads or rows == 1:
        return [(b, slice(None)) for b in _parallel.split(n, threads)]
    per_item = max(1, -(-threads // n))
    return [(slice(b, b + 1), r) for b in range(n) for r in _parallel.split(rows, per_item)]

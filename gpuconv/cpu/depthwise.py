"""Depthwise and separable convolution.

Depthwise work is memory-bound (one multiply-add per input read per tap), so it is a loop over
kernel taps of whole-tensor multiply-accumulates on strided views of the zero-padded input, done
block by block so the accumulator stays in cache. No im2col, no GEMM. Output channel ``c*dm + m``.
"""
import math

import numpy as np

from ._epilogue import channel_bias_shape, finish
from ._windows import compute_dtype, output_length, padded, spatial_axes, tap_slices, taps

# Rows of (batch x first spatial axis) processed together: small enough that the accumulator and
# the product scratch stay in L2, large enough that the per-call overhead of NumPy is amortised.
_BLOCK_BYTES = 1 << 19


def depthwise_conv(x, kernel, bias, *, strides, padding, dilation, channels_last, activation):
    y = depthwise_accumulate(x, kernel, strides=strides, padding=padding, dilation=dilation,
                             channels_last=channels_last)
    return finish(y, bias, activation, x.dtype, channel_bias_shape(y.ndim, channels_last))


def separable_conv(x, depthwise_kernel, pointwise_kernel, bias, *, strides, padding, dilation,
                   channels_last, activation):
    """Depthwise, then a 1x1 GEMM on the compute-dtype intermediate (never rounded in between)."""
    mid = depthwise_accumulate(x, depthwise_kernel, strides=strides, padding=padding, dilation=dilation,
                               channels_last=channels_last)
    c_mid, filters = pointwise_kernel.shape[-2:]
    pw = pointwise_kernel.reshape(c_mid, filters).astype(mid.dtype, copy=False)
    if channels_last:
        y = np.matmul(mid.reshape(-1, c_mid), pw).reshape(mid.shape[:-1] + (filters,))
    else:
        n, out_sp = mid.shape[0], mid.shape[2:]
        y = np.matmul(pw.T, mid.reshape(n, c_mid, -1)).reshape((n, filters) + out_sp)
    return finish(y, bias, activation, x.dtype, channel_bias_shape(y.ndim, channels_last))


def depthwise_accumulate(x, kernel, *, strides, padding, dilation, channels_last):
    """Depthwise conv without epilogue, in the compute dtype. Kernel ``(*k, C, dm)``."""
    rank = kernel.ndim - 2
    ksize = kernel.shape[:rank]
    c, dm = kernel.shape[-2:]
    ctype = compute_dtype(x.dtype)
    axes = spatial_axes(rank, channels_last)
    xp = padded(x, padding, axes, ctype)
    out_sp = tuple(output_length(xp.shape[ax], k, s, d) for ax, k, s, d in zip(axes, ksize, strides, dilation))
    n = x.shape[0]
    w = kernel.astype(ctype, copy=False).reshape((math.prod(ksize), c, dm))
    # Per batch item, tap t reads xp[b][tap_index[t]]: (*O, C) channels_last, (C, *O) channels_first.
    tap_index = [tap_slices(t, [a - 1 for a in axes], xp.ndim - 1, out_sp, strides, dilation)
                 for t in taps(ksize)]
    # A size-1 dm axis is left out: NumPy's inner loop would otherwise run over it, one element
    # at a time.
    dm_axis = (dm,) if dm > 1 else ()
    if channels_last:
        acc = np.empty((n,) + out_sp + (c,) + dm_axis, ctype)
        blocks = _row_blocks(acc, n, out_sp[0], strides[0], tap_index)
        weights = [wt.reshape((c,) + dm_axis) for wt in w]  # broadcasts against (.., C, 1)
        add_dm = (Ellipsis, None) if dm > 1 else Ellipsis
    else:
        acc = np.empty((n, c) + dm_axis + out_sp, ctype)
        blocks = _channel_blocks(acc, n, c)
        weights = [wt.reshape((c,) + dm_axis + (1,) * rank) for wt in w]
        add_dm = (slice(None), None) if dm > 1 else Ellipsis
    scratch = None
    for b, a, src_index, w_index in blocks:
        if scratch is None or scratch.shape != a.shape:
            scratch = np.empty(a.shape, ctype)
        xb = xp[b]
        for i, idx in enumerate(tap_index):
            src = xb[src_index(idx)][add_dm]
            wt = weights[i][w_index]
            if i == 0:
                np.multiply(src, wt, out=a)
            else:
                np.multiply(src, wt, out=scratch)
                a += scratch
    if channels_last:
        return acc.reshape((n,) + out_sp + (c * dm,))
    return acc.reshape((n, c * dm) + out_sp)


def _row_blocks(acc, n, rows, stride, tap_index):
    """channels_last blocks: one batch item, a run of rows of the first output axis, all channels.
    Yields (b, accumulator view, tap-index transform, weight index)."""
    row_bytes = acc[0, 0].nbytes
    step = max(1, _BLOCK_BYTES // max(row_bytes, 1))
    for b in range(n):
        for r0 in range(0, rows, step):
            r1 = min(r0 + step, rows)

            def src_index(idx, r0=r0, r1=r1):
                first = idx[0]
                start = first.start + r0 * stride
                return (slice(start, start + (r1 - r0 - 1) * stride + 1, stride),) + idx[1:]

            yield b, acc[b, r0:r1], src_index, Ellipsis


def _channel_blocks(acc, n, channels):
    """channels_first blocks: one batch item, a run of whole channel planes (contiguous)."""
    plane_bytes = acc[0, 0].nbytes
    step = max(1, _BLOCK_BYTES // max(plane_bytes, 1))
    for b in range(n):
        for c0 in range(0, channels, step):
            c1 = min(c0 + step, channels)
            sl = slice(c0, c1)
            yield b, acc[b, sl], (lambda idx, sl=sl: (sl,) + idx[1:]), sl

"""Depthwise and separable convolution.

Depthwise work is memory-bound (one multiply-add per input read per tap), so there is no im2col
and no GEMM. The work is done channels_last (a channels_first input is transposed while it is
padded, in the same copy): ``np.einsum`` contracts a window view of the zero-padded input with
the kernel, one fused multiply-add pass per tap, no temporaries. When the last spatial stride
is 1 the last spatial axis and the channels merge into one long contiguous axis (tap ``t`` of
that axis is a shift by ``t*d*C`` elements), so einsum's inner loop runs over whole rows; the
kernel is tiled along that axis to match. Pieces of the batch (or of the first output axis) run
on ``_parallel`` threads.

A stride s on the last axis is split into s phases (columns r, r+s, ..), each a stride-1 problem
for the same einsum. Where neither applies (stride and dilation together on the last axis) or a
transpose would cost more than it saves (1-D channels_first: each channel is already one long
contiguous row), a loop over taps of whole-block multiply-adds on strided views is used, in the
input's own layout, block by block so the accumulator stays in cache. Output channel ``c*dm + m``.
"""
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _parallel
from ._epilogue import channel_bias_shape, finish
from ._windows import compute_dtype, output_length, padded, spatial_axes, tap_slices, taps

# Cache block of the tap loop: the accumulator and the product scratch stay in L2.
_BLOCK_BYTES = 1 << 19


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
    y = _relayout(y, True, channels_last)
    return finish(y, bias, activation, x.dtype, channel_bias_shape(y.ndim, channels_last))


def depthwise_accumulate(x, kernel, *, strides, padding, dilation, channels_last, result_channels_last=None):
    """Depthwise conv without epilogue, in the compute dtype. Kernel ``(*k, C, dm)``.

    The result is C-contiguous, in the input's layout unless ``result_channels_last`` says."""
    if result_channels_last is None:
        result_channels_last = channels_last
    rank = kernel.ndim - 2
    ctype = compute_dtype(x.dtype)
    kernel = kernel.astype(ctype, copy=False)
    if (strides[-1] != 1 and dilation[-1] != 1) or (rank == 1 and not channels_last):
        y = _tap_loop(x, kernel, strides, padding, dilation, channels_last, ctype)
        return _relayout(y, channels_last, result_channels_last)
    if not channels_last:
        x = np.moveaxis(x, 1, -1)  # a view; ``padded`` below makes the channels_last copy
    # The flat-row view needs C-contiguous rows; the phases copy their own.
    xp = padded(x, padding, spatial_axes(rank, True), ctype, contiguous=strides[-1] == 1)
    if strides[-1] == 1:
        y = _flat_row_einsum(xp, kernel, strides, dilation)
    else:
        y = _phases(xp, kernel, strides, dilation)
    return _relayout(y, True, result_channels_last)


def _phases(xp, w, strides, dilation):
    """Stride s > 1 on the last axis (dilation 1): tap t = q*s + r reads column (o + q)*s + r, so
    phase r of the input (columns r, r+s, ..) with taps r, r+s, .. is a stride-1 depthwise conv;
    the phases' results add up. Each phase is one contiguous copy of 1/s of the input."""
    rank = w.ndim - 2
    s, k = strides[-1], w.shape[rank - 1]
    out_last = output_length(xp.shape[rank], k, s, 1)
    unit = strides[:-1] + (1,)
    total = None
    for r in range(min(s, k)):
        xr = np.ascontiguousarray(xp[(slice(None),) * rank + (slice(r, None, s),)])
        yr = _flat_row_einsum(xr, w[(slice(None),) * (rank - 1) + (slice(r, None, s),)], unit, dilation)
        yr = yr[(slice(None),) * rank + (slice(0, out_last),)]
        if total is None:
            total = np.ascontiguousarray(yr)
        else:
            total += yr
    return total


def _relayout(y, from_channels_last, to_channels_last):
    if from_channels_last == to_channels_last:
        return y
    moved = np.moveaxis(y, -1, 1) if from_channels_last else np.moveaxis(y, 1, -1)
    out = np.empty(moved.shape, y.dtype)
    _parallel.copy(out, moved)
    return out


def _flat_row_einsum(xp, w, strides, dilation):
    """channels_last depthwise with stride 1 on the last axis."""
    rank = w.ndim - 2
    ksize = w.shape[:rank]
    c, dm = w.shape[-2:]
    n = xp.shape[0]
    out_sp = tuple(output_length(xp.shape[1 + i], ksize[i], strides[i], dilation[i]) for i in range(rank))
    view, weights = _flat_rows(xp, w, out_sp, strides, dilation)  # (N, .., O*C, *k), (*k, O*C)
    out = np.empty((dm,) + view.shape[:view.ndim - rank], w.dtype)
    v_sub = list(range(view.ndim))
    lead, taps_sub = v_sub[:view.ndim - rank], v_sub[view.ndim - rank:]
    w_sub = taps_sub + [lead[-1]]
    # For rank 1, axis 1 is the merged (O*C) axis, which the weights share.
    shared_row_axis = rank == 1

    def piece(sl):
        b, rows = sl
        if shared_row_axis and rows != slice(None):
            rows = slice(rows.start * c, rows.stop * c)
        for m in range(dm):
            wm = weights[m][..., rows] if shared_row_axis else weights[m]
            np.einsum(view[b, rows], v_sub, wm, w_sub, lead, out=out[m, b, rows])

    work = out.nbytes * math.prod(ksize)
    _parallel.run(piece, _pieces(n, out_sp[0], _parallel.threads_for(work)))
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


def _pieces(n, rows, threads):
    """(batch slice, row slice) pieces for the threads: batch items first, rows when N is small."""
    if n >= threads or rows == 1:
        return [(b, slice(None)) for b in _parallel.split(n, threads)]
    per_item = max(1, -(-threads // n))
    return [(slice(b, b + 1), r) for b in range(n) for r in _parallel.split(rows, per_item)]


def _tap_loop(x, kernel, strides, padding, dilation, channels_last, ctype):
    """Depthwise as a loop over taps of ``acc += x_tap * w_tap`` on cache-sized blocks, in the
    input's layout. Blocks are disjoint, so they run on the ``_parallel`` threads."""
    rank = kernel.ndim - 2
    ksize = kernel.shape[:rank]
    c, dm = kernel.shape[-2:]
    axes = spatial_axes(rank, channels_last)
    xp = padded(x, padding, axes, ctype)
    out_sp = tuple(output_length(xp.shape[ax], k, s, d) for ax, k, s, d in zip(axes, ksize, strides, dilation))
    n = x.shape[0]
    w = kernel.reshape((math.prod(ksize), c, dm))
    # Per batch item, tap t reads xp[b][tap_index[t]]: (*O, C) channels_last, (C, *O) channels_first.
    tap_index = [tap_slices(t, [a - 1 for a in axes], xp.ndim - 1, out_sp, strides, dilation) for t in taps(ksize)]
    # A size-1 dm axis is left out: NumPy's inner loop would otherwise run over it.
    dm_axis = (dm,) if dm > 1 else ()
    if channels_last:
        acc = np.empty((n,) + out_sp + (c,) + dm_axis, ctype)
        blocks = list(_row_blocks(acc, n, out_sp[0], strides[0]))
        weights = [wt.reshape((c,) + dm_axis) for wt in w]
        add_dm = (Ellipsis, None) if dm > 1 else Ellipsis
    else:
        acc = np.empty((n, c) + dm_axis + out_sp, ctype)
        blocks = list(_channel_blocks(acc, n, c))
        weights = [wt.reshape((c,) + dm_axis + (1,) * rank) for wt in w]
        add_dm = (slice(None), None) if dm > 1 else Ellipsis

    def run_block(block):
        b, a, src_index, w_index = block
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

    if _parallel.threads_for(acc.nbytes * len(tap_index)) == 1:
        for block in blocks:
            run_block(block)
    else:
        _parallel.run(run_block, blocks)
    if channels_last:
        return acc.reshape((n,) + out_sp + (c * dm,))
    return acc.reshape((n, c * dm) + out_sp)


def _row_blocks(acc, n, rows, stride):
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
            sl = slice(c0, min(c0 + step, channels))
            yield b, acc[b, sl], (lambda idx, sl=sl: (sl,) + idx[1:]), sl

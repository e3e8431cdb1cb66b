"""Depthwise convolution (and the depthwise step of ``separable``).

Depthwise work is memory-bound (one multiply-add per input read per tap), so there is no im2col
and no GEMM: ``np.einsum`` contracts a window view of the zero-padded input with the kernel, one
fused multiply-add pass per tap, no temporaries. Measured on the bench machine, that beats a
multiply and an add per tap (three times the calls) and every BLAS formulation tried (banded
Toeplitz or block-diagonal GEMMs waste 3-20x the flops).

channels_last (``_blocked``): one block of output rows (first spatial axis) at a time, the
block's zero-padded input built in a scratch buffer (padding and the float16 cast in one copy),
so the einsum reads it from cache. With stride 1 on the last axis, that axis and the channels
read as one long flat row (tap ``t`` of it is a shift by ``t*d*C`` elements), so einsum's inner
loop runs over whole rows beside a kernel tiled to match; a stride s there is split into s
phases (columns r, r+s, ..), each a stride-1 problem. Blocks run on ``_parallel`` threads.

channels_first: where the output planes are large, over shifted copies of the planes, with no
transpose (``depthwise_planes``); on small maps the same blocks as channels_last, each block
transposed in and its result transposed back while in cache. Stride and dilation together on
the last axis, and 1-D channels_first with short rows, use a loop over taps of whole-block
multiply-adds on strided views, in the input's own layout. Output channel ``c*dm + m``.

As for every op, taps that read only padding at every output are left out first
(``_windows.trim_kernel``) and the output is filled in pieces (``_pieces``); the cache blocks
below stay inside the working-buffer share of the budget (``memory.chunk_limit``).
"""
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _parallel, _pieces, memory
from ._epilogue import channel_bias_shape
from .depthwise_planes import depthwise_planes, planes_pay
from ..geometry import padded_output_spatial
from ._windows import WindowPlan, compute_dtype, output_length, padded, spatial_axes, tap_slices, taps, zero_outside

# Cache block of the tap loop: the accumulator and the product scratch stay in L2.
_BLOCK_BYTES = 1 << 19
# Input bytes of one block of the einsum path (padded, channels_last); 1, 2, 4 MiB measured
# alike on the 1 MiB-L2 bench machine, 0.5 MiB and less slower (more calls, more halo).
_ROWS_BLOCK_BYTES = 2 << 20
# Channels_first blocks are transposed in groups of this many channels when the channel planes
# are at least this far apart (``_copy_channels``).
_CHANNEL_GROUP = 64
_FAR_CHANNEL_BYTES = 32 << 10
# Length of the kernel rows tiled along the flat row: long enough for einsum's inner loop, short
# enough to stay in cache (a 1-D row of 2048 x 1024 channels tiled whole was 8 MB per tap).
_TILED_ROW_ELEMENTS = 8192


def depthwise_fill(problem, x, kernel, ctype):
    """``(plan, fill)``: the depthwise part of a call, resolved once (``_windows.WindowPlan``);
    separable runs it too, for its depthwise step."""
    strides, padding, dilation, channels_last = problem.strides, problem.padding, problem.dilation, problem.channels_last
    plan = WindowPlan(x, problem.kernel_size, strides, dilation, padding, problem.out_spatial, channels_last,
                      ctype.itemsize)

    def accumulate(xs, w, pad, acc):
        depthwise_accumulate(xs, w, strides=strides, padding=pad, dilation=dilation, channels_last=channels_last,
                             out=acc)

    return plan, plan.kernel_fill(kernel, ctype, False, accumulate)


def depthwise_conv(problem, x, kernel, bias):
    ctype = compute_dtype(x.dtype)
    plan, fill = depthwise_fill(problem, x, kernel, ctype)
    out_shape, channels_last = problem.output_shape, problem.channels_last
    return _pieces.compute(out_shape, x.dtype, ctype, channels_last, fill, row_bytes=plan.row_bytes,
                           item_bytes=plan.item_bytes, bias=bias,
                           bias_shape=channel_bias_shape(len(out_shape), channels_last),
                           activation=problem.activation)


def depthwise_accumulate(x, kernel, *, strides, padding, dilation, channels_last, out=None):
    """Depthwise conv without epilogue, in the compute dtype and the input's layout, into ``out``
    (C-contiguous; allocated when None). Kernel ``(*k, C, dm)``."""
    rank = kernel.ndim - 2
    ctype = compute_dtype(x.dtype)
    kernel = kernel.astype(ctype, copy=False)
    spatial = x.shape[1:-1] if channels_last else x.shape[2:]
    if out is None:
        out_sp = padded_output_spatial(spatial, kernel.shape[:rank], strides, padding, dilation)
        c = kernel.shape[-2] * kernel.shape[-1]
        out = np.empty((x.shape[0],) + out_sp + (c,) if channels_last else (x.shape[0], c) + out_sp, ctype)
    if not channels_last and planes_pay(spatial, kernel.shape[:rank], strides, padding, dilation):
        return depthwise_planes(x, kernel, strides, padding, dilation, ctype, out)
    if (strides[-1] != 1 and dilation[-1] != 1) or (rank == 1 and not channels_last):
        return _tap_loop(x, kernel, strides, padding, dilation, channels_last, ctype, out)
    return _blocked(x, kernel, strides, padding, dilation, channels_last, ctype, out)


def _blocked(x, w, strides, padding, dilation, channels_last, ctype, out):
    """The einsum path, one block of output rows (first spatial axis) at a time; see the module
    docstring. Each thread reuses one scratch buffer for its blocks' padded input (a fresh
    allocation per block would page-fault), or reads the input itself when it needs no padding,
    cast or transpose. Padding in cache instead of a whole padded copy, and the kernel tiled once
    per call: bench rows W5 and W6 (1-D, 512 and 1024 channels) 2.4 -> 1.0 and 3.2 -> 1.0 ms;
    2-D rows about the same."""
    rank = w.ndim - 2
    ksize = w.shape[:rank]
    c, dm = w.shape[-2:]
    xl = x if channels_last else np.moveaxis(x, 1, -1)  # a view: (N, *spatial, C)
    n, lengths = xl.shape[0], xl.shape[1:-1]
    padded_sp = tuple(length + b + a for length, (b, a) in zip(lengths, padding))
    out_sp = padded_output_spatial(lengths, ksize, strides, padding, dilation)
    # Output rows per block: the input rows they read fit ``_ROWS_BLOCK_BYTES`` (and every
    # thread's block the working-buffer budget), but at least 4x the halo, so re-reading the
    # halo rows costs under 25% of the copy.
    row_bytes = math.prod(padded_sp[1:]) * c * ctype.itemsize * strides[0]
    halo = (ksize[0] - 1) * dilation[0]
    threads = _parallel.threads_for(n * math.prod(out_sp) * c * dm * ctype.itemsize * math.prod(ksize))
    step = max(1, _ROWS_BLOCK_BYTES // max(row_bytes, 1) - halo // strides[0], -(-4 * halo // strides[0]))
    # Every thread's block (padded input rows, and for channels_first the result rows) inside
    # the working-buffer budget, even where that makes the halo large.
    y_row_bytes = 0 if channels_last else math.prod(out_sp[1:]) * c * dm * ctype.itemsize
    fits = (memory.chunk_limit() // threads - halo // strides[0] * row_bytes) // max(row_bytes + y_row_bytes, 1)
    step = max(1, min(step, fits, -(-out_sp[0] * n // threads)))  # every thread gets a block
    blocks = [(b, r0, min(r0 + step, out_sp[0])) for b in range(n) for r0 in range(0, out_sp[0], step)]
    max_rows_in = (step - 1) * strides[0] + halo + 1
    copy_free = channels_last and xl.dtype == ctype and xl.flags.c_contiguous and not any(map(any, padding))
    plan = _RowPlan(w, out_sp[-1], strides, dilation)

    def run_blocks(part):
        inbuf = None if copy_free else np.empty(max_rows_in * math.prod(padded_sp[1:]) * c, ctype)
        ybuf = None if channels_last else np.empty(step * math.prod(out_sp[1:]) * c * dm, ctype)
        for b, r0, r1 in part:
            first, stop = r0 * strides[0], (r1 - 1) * strides[0] + halo + 1  # padded input rows read
            if copy_free:
                xb = xl[b, first:stop]
            else:
                rows_in = stop - first
                xb = inbuf[:rows_in * math.prod(padded_sp[1:]) * c].reshape((rows_in,) + padded_sp[1:] + (c,))
                _fill_padded_rows(xb, xl[b], first, padding)
            block_sp = (r1 - r0,) + out_sp[1:]
            if channels_last:  # the einsum writes the output block itself
                plan.run(xb, out[b, r0:r1])
            else:  # into cache, then transposed out
                y = ybuf[:math.prod(block_sp) * c * dm].reshape(block_sp + (c * dm,))
                plan.run(xb, y)
                out[b][:, r0:r1] = np.moveaxis(y, -1, 0)

    _parallel.run(run_blocks, [blocks[sl] for sl in _parallel.split(len(blocks), threads)])
    return out


def _fill_padded_rows(block, xb, first, padding):
    """``block`` := rows ``first, first + 1, ..`` (padded coordinates, first spatial axis) of the
    zero-padded channels_last batch item ``xb``, cast to the block's dtype. Only the padding is
    zeroed (the buffer is reused; a whole fill was one more pass over the block)."""
    before0 = padding[0][0]
    src_lo, src_hi = max(first - before0, 0), min(first + block.shape[0] - before0, xb.shape[0])
    if src_hi <= src_lo:
        block.fill(0)
        return
    interior = (slice(src_lo + before0 - first, src_hi + before0 - first),)
    interior += tuple(slice(b, b + length) for (b, _), length in zip(padding[1:], xb.shape[1:-1]))
    zero_outside(block, interior)
    _copy_channels(block[interior], xb[src_lo:src_hi])


def _copy_channels(dst, src):
    """``dst[...] = src`` (cast), for a channels_last ``dst``. When ``src`` is a channels_first
    view whose channel planes lie far apart, the copy's inner loop over channels reads lines that
    all fall in a few L1 sets (a 16x28x28 float32 plane is 50176 B, 784 lines: 108 channels
    share 4 of 64 sets) and thrashes; groups of channels keep each pass within the cache's ways
    (bench row V3's 5.4 MB transpose: 1.2 ms whole, 0.5 ms in groups of 64)."""
    c = src.shape[-1]
    if c <= _CHANNEL_GROUP or abs(src.strides[-1]) < _FAR_CHANNEL_BYTES:
        np.copyto(dst, src, casting="unsafe")
        return
    for c0 in range(0, c, _CHANNEL_GROUP):
        np.copyto(dst[..., c0:c0 + _CHANNEL_GROUP], src[..., c0:c0 + _CHANNEL_GROUP], casting="unsafe")


class _RowPlan:
    """How a padded channels_last block is contracted, fixed once per call: the phases of the
    last axis (one, ``r = 0``, when its stride is 1) and, per phase, the kernel taps it uses tiled
    along ``q`` positions of the flat row (``_flat_row_einsum``), one tiled kernel per
    depth-multiplier index."""

    def __init__(self, w, out_last, strides, dilation):
        rank = w.ndim - 2
        s, k = strides[-1], w.shape[rank - 1]
        c = w.shape[-2]
        self.rank, self.strides, self.dilation = rank, strides[:-1] + (1,), dilation
        self.stride_last = s
        # Tiled kernels (one per depth-multiplier index) within a quarter of the working budget.
        tiled_cap = memory.chunk_limit() // (4 * w.shape[-1] * math.prod(w.shape[:rank]) * c * w.itemsize)
        q = min(out_last, max(1, -(-_TILED_ROW_ELEMENTS // c)), max(1, tiled_cap))
        self.phases = []
        for r in range(min(s, k)):
            wr = w[(slice(None),) * (rank - 1) + (slice(r, None, s),)]
            tiled = [np.tile(wr[..., m], (1,) * (rank - 1) + (q,)) for m in range(w.shape[-1])]
            self.phases.append((r, tiled))  # tiled[m]: (*k_r, q*C)

    def run(self, xb, out):
        """Depthwise of the padded block ``xb`` ``(rows, .., C)`` into ``out`` ``(*O, C*dm)``.

        Stride s > 1 on the last axis (dilation 1): tap ``t = q*s + r`` reads column
        ``(o + q)*s + r``, so phase r of the input (columns r, r+s, ..) with taps r, r+s, .. is a
        stride-1 problem; the phases' results add up. Each phase is a contiguous copy of 1/s of
        the block."""
        if self.stride_last == 1:
            _flat_row_einsum(xb, self.phases[0][1], self.strides, self.dilation, out)
            return
        lead = (slice(None),) * (self.rank - 1)
        part = None
        for r, tiled in self.phases:
            xr = np.ascontiguousarray(xb[lead + (slice(r, None, self.stride_last),)])
            if part is None:
                _flat_row_einsum(xr, tiled, self.strides, self.dilation, out)
                part = np.empty_like(out)
            else:
                _flat_row_einsum(xr, tiled, self.strides, self.dilation, part)
                out += part


def _flat_row_einsum(xb, tiled, strides, dilation, out):
    """Depthwise of one padded channels_last block ``(rows, .., C)`` with stride 1 on the last
    axis into ``out`` ``(*O, C*dm)``; ``tiled[m]`` ``(*k, q*C)`` is the kernel for output channels
    ``c*dm + m`` repeated over q positions.

    The last spatial axis and the channels are read as one flat row: position ``(.., o, c)`` of
    tap ``t`` is the element at flat offset ``o*C + c + t*d*C``, so einsum's inner loop runs over
    whole rows with the tiled kernel beside them. A row longer than q positions is folded into
    rows of q (the tiled kernel, re-read for each, stays in cache), the rest done apart."""
    rank = xb.ndim - 1
    dm = len(tiled)
    ksize = tiled[0].shape[:rank]
    out_sp, c = out.shape[:-1], out.shape[-1] // dm
    q = tiled[0].shape[-1] // c
    per_m = out.reshape(out_sp + (c, dm))  # output channel c*dm + m
    folded = out_sp[-1] // q * q
    for start, stop, rows in ((0, folded, folded // q), (folded, out_sp[-1], 1)):
        if stop == start:
            continue
        width = (stop - start) * c // rows
        src = xb[(slice(None),) * (rank - 1) + (slice(start, None),)]
        view = _flat_rows(src, ksize, out_sp[:-1], rows, width, strides, dilation)
        lead = list(range(rank + 1))
        taps_sub = list(range(rank + 1, 2 * rank + 1))
        for m in range(dm):
            dst = per_m[(Ellipsis, slice(start, stop), slice(None), m)]  # (.., O', C), stride dm
            target = as_strided(dst, view.shape[:rank + 1],
                                dst.strides[:rank - 1] + (width * dst.strides[-1], dst.strides[-1]))
            np.einsum(view, lead + taps_sub, tiled[m][..., :width], taps_sub + [rank], lead, out=target)


def _flat_rows(src, ksize, lead_sp, rows, width, strides, dilation):
    """View ``(O_0, .., O_{r-2}, rows, width, *k)`` of a padded channels_last block whose last
    spatial axis starts at the first output's input: ``[.., i, j, t]`` is the element at flat
    offset ``i*width + j + t_last*d*C`` of its row (plus the other axes' tap offsets)."""
    rank = len(ksize)
    it = src.itemsize
    shape = tuple(lead_sp) + (rows, width) + tuple(ksize)
    st = (tuple(src.strides[i] * strides[i] for i in range(rank - 1)) + (width * it, it)
          + tuple(src.strides[i] * dilation[i] for i in range(rank)))
    return as_strided(src, shape, st, writeable=False)


def _tap_loop(x, kernel, strides, padding, dilation, channels_last, ctype, out):
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
        acc = out.reshape((n,) + out_sp + (c,) + dm_axis)
        blocks = list(_row_blocks(acc, n, out_sp[0], strides[0]))
        weights = [wt.reshape((c,) + dm_axis) for wt in w]
        add_dm = (Ellipsis, None) if dm > 1 else Ellipsis
    else:
        acc = out.reshape((n, c) + dm_axis + out_sp)
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
    return out


def _row_blocks(acc, n, rows, stride):
    """channels_last blocks: one batch item, a run of rows of the first output axis, all channels.
    Yields (b, accumulator view, tap-index transform, weight index)."""
    row_bytes = acc[0, 0].nbytes
    step = max(1, _block_bytes() // max(row_bytes, 1))
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
    step = max(1, _block_bytes() // max(plane_bytes, 1))
    for b in range(n):
        for c0 in range(0, channels, step):
            sl = slice(c0, min(c0 + step, channels))
            yield b, acc[b, sl], (lambda idx, sl=sl: (sl,) + idx[1:]), sl


def _block_bytes():
    """The tap loop's cache block: an accumulator and a product scratch per thread."""
    return min(_BLOCK_BYTES, memory.chunk_limit() // (2 * _parallel.num_threads()))

"""Transposed convolution: the adjoint of ``conv``, as one GEMM plus a per-tap strided scatter-add.

For every input position the GEMM computes all taps at once, ``cols[i, t] = W[t] @ x[i]``
(``(*I, *k, F)`` per group); then, tap by tap, ``cols[:, t]`` is added into the output cells
``o = i*s + t*d - crop`` with one strided-slice add, clipped to ``0 <= o < O``. That is Keras'
rule: the full result has length ``(I-1)*s + k_eff``, ``y[o] = full[o + crop]`` where that index
exists, else 0, then the bias. No inserted zeros, no Python loop over positions; cells no tap
reaches stay 0.

Taps that land only on cropped cells are left out before the GEMM (``geometry.
transpose_live_taps``): a 10**6-tap kernel under 'same' over 4 inputs computes 7 taps. Their
products never reach the output, so leaving them out is exact, NaN and Inf included. The output
is filled in pieces of output rows (``_pieces``), each from the input rows that reach it.
"""
import math

import numpy as np

from ..geometry import effective_kernel, transpose_input_rows, transpose_live_taps
from . import _parallel, _pieces, memory
from ._epilogue import channel_bias_shape
from ._windows import compute_dtype, taps


def conv_transpose(problem, x, kernel, bias):
    strides, dilation, groups, crop = problem.strides, problem.dilation, problem.groups, problem.crop
    channels_last, in_sp, out_shape = problem.channels_last, problem.in_spatial, problem.output_shape
    live = tuple(transpose_live_taps(i, k, s, d, c, o) for i, k, s, d, c, o in
                 zip(in_sp, problem.kernel_size, strides, dilation, crop, problem.out_spatial))
    ctype = compute_dtype(x.dtype)
    w = kernel[tuple(slice(lo, hi) for lo, hi in live)]
    # With the taps before ``lo`` gone, tap t' is tap t' + lo: its cells lie lo*d further left.
    crop_rest = tuple(c - lo * d for c, (lo, _), d in zip(crop[1:], live[1:], dilation[1:]))

    def fill(bs, rs, acc):
        (i0, i1), crop0 = transpose_input_rows(in_sp[0], strides[0], dilation[0], crop[0], (rs.start, rs.stop), live[0])
        if w.size == 0 or i1 == i0:  # no tap reaches these outputs
            acc.fill(0)
            return
        xs = x[bs, i0:i1] if channels_last else x[bs, :, i0:i1]
        _scatter_into(acc, xs, w, strides, dilation, groups, (crop0,) + crop_rest, channels_last)

    return _pieces.compute(out_shape, x.dtype, ctype, channels_last, fill, bias=bias,
                           bias_shape=channel_bias_shape(len(out_shape), channels_last),
                           activation=problem.activation)


def _scatter_into(out, x, kernel, strides, dilation, groups, crop, channels_last):
    """The transposed conv of ``x`` with ``kernel`` ``(*k, Fg, C_in)`` into ``out`` (compute dtype,
    C-contiguous, any contents): cell ``o`` of ``out`` is cell ``o + crop`` of the full result
    (``crop`` may be negative: cells before the full result stay 0)."""
    rank = kernel.ndim - 2
    ksize = kernel.shape[:rank]
    n_taps = math.prod(ksize)
    f_group, c_in = kernel.shape[-2:]
    c_group = c_in // groups
    filters = f_group * groups
    ctype = out.dtype
    n = x.shape[0]
    in_sp = x.shape[1:rank + 1] if channels_last else x.shape[2:]
    out_sp = out.shape[1:rank + 1] if channels_last else out.shape[2:]
    # With k_eff <= s no two taps reach the same output cell, so each tap is assigned, not added;
    # with k == s (d == 1) and [crop, O + crop) inside the full length every cell is reached once,
    # so the output needs no zero fill either.
    disjoint = all(effective_kernel(k, d) <= s for k, s, d in zip(ksize, strides, dilation))
    covered = all(k == s and d == 1 and 0 <= c and o + c <= (i - 1) * s + k
                  for k, s, d, o, c, i in zip(ksize, strides, dilation, out_sp, crop, in_sp))
    if not covered:
        out.fill(0)
    if channels_last and c_group == 1:
        _scatter_per_channel_into(out, x, kernel.astype(ctype, copy=False), strides, dilation, crop, disjoint)
        return
    # Per-group GEMM operands as strided views of the kernel (*k, Fg, G*Cg) seen as (K*Fg, G, Cg):
    # BLAS reads them directly, so a large kernel is never copied.
    w = kernel.astype(ctype, copy=False).reshape(n_taps * f_group, groups, c_group)
    if channels_last:
        wk = w.transpose(1, 2, 0)  # (G, Cg, K*Fg)
        # (N, *O, G, Fg) -> (G, N, *O, Fg): the per-group view every tap adds into
        out_g = out.reshape((n,) + out_sp + (groups, f_group))
        out_g = np.moveaxis(out_g, rank + 1, 0)
        sp_out = tuple(range(2, rank + 2))
    else:
        wk = w.transpose(1, 0, 2)  # (G, K*Fg, Cg)
        out_g = out.reshape((n, groups, f_group) + out_sp)
        sp_out = tuple(range(3, rank + 3))
    tap_list = list(taps(ksize))
    row_bytes = math.prod(in_sp[1:]) * n_taps * filters * np.dtype(ctype).itemsize
    # One buffer for every chunk's GEMM result: a new one per chunk would hold two at once.
    results = memory.Scratch(ctype)
    for bs, rs in memory.chunks(n, in_sp[0], row_bytes):
        if channels_last:
            xc = np.ascontiguousarray(x[bs, rs], dtype=ctype)
            chunk_sp = xc.shape[1:rank + 1]
            m = math.prod(xc.shape[:rank + 1])
            cols = np.matmul(xc.reshape(m, groups, c_group).transpose(1, 0, 2), wk,
                             out=results.take((groups, m, n_taps * f_group)))  # (G, M, K*Fg)
            cols = cols.reshape((groups, xc.shape[0]) + chunk_sp + tuple(ksize) + (f_group,))
            target = out_g[:, bs]
            tap_src = lambda t: cols[(slice(None),) * (rank + 2) + t]  # (G, nb, *I, Fg)
        else:
            xc = np.ascontiguousarray(x[bs, :, rs], dtype=ctype)
            chunk_sp = xc.shape[2:]
            nb = xc.shape[0]
            cols = np.matmul(wk, xc.reshape(nb, groups, c_group, -1),
                             out=results.take((nb, groups, n_taps * f_group, math.prod(chunk_sp))))  # (nb, G, K*Fg, P)
            cols = cols.reshape((nb, groups) + tuple(ksize) + (f_group,) + chunk_sp)
            target = out_g[bs]
            tap_src = lambda t: cols[(slice(None),) * 2 + t]  # (nb, G, Fg, *I)
        first_in = (rs.start,) + (0,) * (rank - 1)
        # Threads take disjoint batch items (taps of one item may overlap, so they stay in order).
        lead = (slice(None),) * (1 if channels_last else 0)

        def scatter(items, target=target, tap_src=tap_src, first_in=first_in):
            part = target[lead + (items,)]
            for t in tap_list:
                _add_tap(part, tap_src(t)[lead + (items,)], sp_out, t, strides, dilation, crop, first_in, disjoint)

        # channels_last adds contiguous runs of Fg (memory-bound); channels_first short strided
        # rows (loop-bound).
        threads = memory.threads_near_gemm(cols.nbytes, memory_bound=channels_last)
        _parallel.run(scatter, _parallel.split(target.shape[len(lead)], threads))


def _scatter_per_channel_into(out, x, kernel, strides, dilation, crop, disjoint):
    """``_scatter_into`` for one input channel per group, channels_last (a depthwise
    convolution's input gradient): each tap adds ``x`` times that tap's weights channel by
    channel, in contiguous channel runs. The GEMM form's (G, M, 1) x (1, K*Fg) products are
    G-major, so each of its tap adds strided across channels (W1 of the cpu suite: 115 ms of the
    backward's 130). The products here are the same single roundings, added in the same tap
    order: bitwise the GEMM form's result."""
    rank = kernel.ndim - 2
    ksize = kernel.shape[:rank]
    f_group, groups = kernel.shape[-2:]
    # (*k, Fg, G) -> (*k, G, Fg): output channel g*Fg + f takes input channel g, so each tap's
    # product is x[..., g, None] * w[t][g, f], broadcast (no repeated copy of x for Fg > 1).
    w = np.ascontiguousarray(np.swapaxes(kernel, -1, -2))
    in_sp = x.shape[1:rank + 1]
    axes = tuple(range(1, rank + 1))
    row_bytes = (1 + f_group) * math.prod(in_sp[1:]) * groups * out.dtype.itemsize  # the input and one product
    for bs, rs in memory.chunks(x.shape[0], in_sp[0], row_bytes):
        xc = np.ascontiguousarray(x[bs, rs], dtype=out.dtype)[..., None]  # (nb, *I, G, 1)
        first_in = (rs.start,) + (0,) * (rank - 1)
        target = out[bs]

        def scatter(items, target=target, xc=xc, first_in=first_in):
            part, src = target[items], xc[items]
            product = np.empty(src.shape[:-1] + (f_group,), out.dtype)
            flat = product.reshape(src.shape[:-2] + (groups * f_group,))  # (nb, *I, G*Fg), a view
            for t in taps(ksize):
                np.multiply(src, w[t], out=product)
                _add_tap(part, flat, axes, t, strides, dilation, crop, first_in, disjoint)

        threads = memory.threads_near_gemm(xc.nbytes * f_group, memory_bound=True)  # the products
        _parallel.run(scatter, _parallel.split(target.shape[0], threads))


def _add_tap(out, src, axes, tap, strides, dilation, crop, first_in, assign=False):
    """``out[.., i*s + t*d - crop, ..] += src[.., i - first_in, ..]`` for every input index ``i``
    of the chunk whose target lies inside ``out`` (one strided slice per spatial axis); ``=``
    instead of ``+=`` when ``assign`` (no other tap reaches these cells)."""
    out_idx = [slice(None)] * out.ndim
    src_idx = [slice(None)] * src.ndim
    for ax, t, s, d, c, lo in zip(axes, tap, strides, dilation, crop, first_in):
        shift = t * d - c  # o = i*s + shift
        hi = lo + src.shape[ax]
        i0 = max(lo, -(shift // s))  # ceil(-shift / s): first i with o >= 0
        i1 = min(hi, (out.shape[ax] - 1 - shift) // s + 1)  # one past the last i with o < O
        if i0 >= i1:
            return
        o0 = i0 * s + shift
        out_idx[ax] = slice(o0, o0 + (i1 - i0 - 1) * s + 1, s)
        src_idx[ax] = slice(i0 - lo, i1 - lo)
    if assign:
        out[tuple(out_idx)] = src[tuple(src_idx)]
    else:
        out[tuple(out_idx)] += src[tuple(src_idx)]

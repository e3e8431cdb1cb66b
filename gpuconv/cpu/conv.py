"""Forward (grouped, strided, dilated) convolution: im2col on a window view + one batched GEMM.

Layouts are handled natively, so neither needs a transpose of the activations:
- channels_last:  columns ``(G, N*P, K*Cg)`` (patch order ``(*k, Cg)``) @ ``(G, K*Cg, Fg)``, written
  straight into the ``(N, *O, F)`` output viewed as ``(G, N*P, Fg)``;
- channels_first: ``(G, Fg, K*Cg)`` @ columns ``(N, G, K*Cg, P)``, written into ``(N, F, *O)``
  viewed as ``(N, G, Fg, P)`` (Caffe's im2col, rows in the kernel's ``(*k, Cg)`` order); with few
  positions per image the batch is folded into the GEMM instead.
``P`` = output positions, ``K`` = kernel taps. The kernel enters BLAS as a strided view, never
copied; the columns are gathered piece by piece (``memory.chunks``) into one reused buffer.
Padding is literal zeros, so NaN/Inf propagate exactly as IEEE arithmetic on the zero-padded
input says (0 * Inf = NaN at padded taps too).

Two measured choices (NumPy engine vs PyTorch CPU, bench suite 'cpu'):
- channels_last input is padded straight into a group-major ``(G, N, *spatial, Cg)`` buffer, so
  the gather copies runs of ``k*Cg`` values instead of ``Cg`` (ResNeXt 4x14x14 512->512 g32,
  bench row D8: 4.4 ms -> 1.6 ms); one group needs no reordering and this is a view.
- Taps that read only padding for a whole block of outputs (3x3 with dilation 12, 'same', on
  32x32, row D9: 44% of the taps) are left out of that block's GEMM when the kernel is finite
  (``padding_free_regions``); 3.1 ms -> 1.7 ms. 0 * Inf = NaN, so an infinite or NaN kernel value
  keeps every tap. Used only where it saves at least ``_SKIP_MIN_SAVING`` of the work.
Taps that read only padding at *every* output are left out before that, whatever the kernel
holds (``_windows.trim_kernel`` keeps their NaN), and the output is filled in pieces, each from
its own padded input rows (``_pieces``), so no padded copy of the whole input is ever made.
"""
import itertools
import math

import numpy as np

from numpy.lib.stride_tricks import as_strided

from . import _parallel, _pieces, memory
from ._epilogue import channel_bias_shape
from ._windows import WindowPlan, compute_dtype, output_length, padded, reshape_view, spatial_axes, windows

# channels_first GEMMs are per image, (Fg, Cg*K) @ (Cg*K, P); below this many output positions
# per image that N axis is too thin for BLAS, and the batch is folded into it.
_FOLD_BELOW_POSITIONS = 512

# The flat-plane channels_first path (``_flat_plane_pays``): rows shorter than this many outputs,
# at most this share of extra columns (bench rows V1, V2: 14/16 columns, 14% and 12.5%), at most
# this many filters per group.
_FLAT_PLANE_MAX_ROW = 32
_FLAT_PLANE_MAX_WASTE = 0.3
_FLAT_PLANE_MAX_FILTERS = 64

# Skipping taps that read only padding (``padding_free_regions``) pays for its extra GEMMs only
# when it removes at least this share of the work, and in at most this many regions.
_SKIP_MIN_SAVING = 0.25
_SKIP_MAX_REGIONS = 64


def conv(problem, x, kernel, bias):
    strides, padding, dilation, groups = problem.strides, problem.padding, problem.dilation, problem.groups
    channels_last, filters, out_shape = problem.channels_last, problem.out_channels, problem.output_shape
    ctype = compute_dtype(x.dtype)
    plan = WindowPlan(x, problem.kernel_size, strides, dilation, padding, problem.out_spatial, channels_last,
                      ctype.itemsize)
    # Beside the padded rows: the flat-plane result before compaction, or a padding-free region's.
    row_bytes = plan.row_bytes + 2 * math.prod(plan.out_sp[1:]) * filters * ctype.itemsize
    blocks = memory.Scratch(ctype)
    finite = {}  # whether the (cut) kernel is finite: looked at once, where padding-free regions apply

    def accumulate(xs, w, pad, acc):
        conv_accumulate(xs, w, strides=strides, padding=pad, dilation=dilation, groups=groups,
                        channels_last=channels_last, out=acc, scratch=blocks,
                        finite=lambda: finite.setdefault("w", bool(np.isfinite(w).all())))

    fill = plan.kernel_fill(kernel, ctype, True, accumulate)
    return _pieces.compute(out_shape, x.dtype, ctype, channels_last, fill, row_bytes=row_bytes,
                           item_bytes=plan.item_bytes, bias=bias,
                           bias_shape=channel_bias_shape(len(out_shape), channels_last),
                           activation=problem.activation)


def conv_accumulate(x, kernel, *, strides, padding, dilation, groups, channels_last, out=None, finite=None,
                    scratch=None):
    """The convolution without epilogue, in the compute dtype (float32 for float16 input), into
    ``out`` (C-contiguous; allocated when None). ``finite``: a callable saying whether the kernel
    is finite (None: look); ``scratch``: a ``memory.Scratch`` for the padded input."""
    rank = kernel.ndim - 2
    ctype = compute_dtype(x.dtype)
    axes = spatial_axes(rank, channels_last)
    if channels_last:
        xs, src_axes = _group_major_padded(x, padding, axes, ctype, groups, scratch), tuple(a + 1 for a in axes)
    else:
        xs, src_axes = padded(x, padding, axes, ctype, scratch=scratch), axes
    w = kernel.astype(ctype, copy=False)
    lengths = tuple(x.shape[ax] for ax in axes)
    regions = padding_free_regions(lengths, kernel.shape[:rank], strides, padding, dilation)
    # Skipped taps would only add 0 * w: exactly 0 for a finite w, but NaN for an infinite one.
    if regions is not None and (np.isfinite(w).all() if finite is None else finite()):
        return _conv_by_regions(xs, w, regions, src_axes, axes, strides, dilation, groups, channels_last, out=out)
    return _conv_view(xs, w, src_axes, strides, dilation, groups, channels_last, out)


def _group_major_padded(x, padding, axes, dtype, groups, scratch=None):
    """A channels_last input as ``(G, N, *padded spatial, Cg)``, padded and cast in the same copy.

    Group-major, the im2col gather reads runs of ``k*Cg`` contiguous values (the last kernel
    axis and the group's channels) instead of ``Cg``: with ResNeXt's Cg = 4..16 the gather from
    the interleaved layout cost more than the GEMM. One group is ``padded(x)[None]`` (a view)."""
    if groups == 1:
        return padded(x, padding, axes, dtype, scratch=scratch)[None]
    xv = np.moveaxis(x.reshape(x.shape[:-1] + (groups, x.shape[-1] // groups)), -2, 0)
    return padded(xv, padding, tuple(a + 1 for a in axes), dtype, contiguous=True, scratch=scratch)


def _conv_view(xs, w, src_axes, strides, dilation, groups, channels_last, out=None):
    """The convolution of the (already padded) input with every tap of ``w``; ``xs`` is
    ``(G, N, *spatial, Cg)`` for channels_last, ``(N, C, *spatial)`` for channels_first. Into
    ``out`` (C-contiguous), or a new array when None."""
    rank = w.ndim - 2
    if not channels_last and _flat_plane_pays(xs, w.shape[:rank], w.shape[-1] // groups, strides, dilation):
        return _conv_channels_first_flat(xs, w, strides, dilation, groups, out)
    view = windows(xs, src_axes, w.shape[:rank], strides, dilation)
    if channels_last:  # (G, N, *O, Cg, *k) -> (G, N, *O, *k, Cg), the kernel's patch order
        return _conv_channels_last(np.moveaxis(view, rank + 2, -1), w, rank, groups, out)
    return _conv_channels_first(view, w, rank, groups, out=out)


def _flat_plane_pays(xp, ksize, f_group, strides, dilation):
    """Whether a channels_first conv should read its last two spatial axes as one flat axis.

    The im2col copy of channels_first runs along the last output axis; a short one (14 outputs
    for 14x14 maps) makes the copy mostly loop overhead. With stride 1 on the last two axes, the
    output rows can be computed over the padded width instead: ``(h, w)`` is then flat position
    ``h*Wp + w`` and every tap a constant shift of it, so the copy runs over whole planes. The
    ``Wp - Wo`` extra columns per row are computed and dropped: used while that waste is at most
    ``_FLAT_PLANE_MAX_WASTE``, the rows are short, and the GEMM is narrow (at most
    ``_FLAT_PLANE_MAX_FILTERS`` filters per group), so the copy is a large part of the work.
    Measured side by side: 3-D 14x14 and 16x16 maps with 64 and 32 filters (bench rows V1, V2)
    and ResNeXt's 16 filters per group (D8) 5-9% faster; 256 and 512 filters (D4, D7) 5-15%
    slower. The rows must follow each other in memory (a padded copy; not a region sliced out of
    one, nor an unpadded input with other strides)."""
    if len(ksize) < 2 or strides[-1] != 1 or strides[-2] != 1 or f_group > _FLAT_PLANE_MAX_FILTERS:
        return False
    if xp.strides[-1] != xp.itemsize or xp.strides[-2] != xp.shape[-1] * xp.itemsize:
        return False
    wp = xp.shape[-1]
    wo = output_length(wp, ksize[-1], 1, dilation[-1])
    return wo < _FLAT_PLANE_MAX_ROW and wp <= wo * (1 + _FLAT_PLANE_MAX_WASTE)


def _conv_channels_first_flat(xp, w, strides, dilation, groups, out=None):
    """channels_first conv (stride 1 on the last two axes) over flat padded planes; see
    ``_flat_plane_pays``. The result ``(N, F, .., Ho, Wo)`` is compacted from rows of ``Wp``."""
    rank = w.ndim - 2
    ksize = w.shape[:rank]
    padded_sp = xp.shape[2:]
    wp = padded_sp[-1]
    out_sp = tuple(output_length(p, k, s, d) for p, k, s, d in zip(padded_sp, ksize, strides, dilation))
    ho, wo = out_sp[-2:]
    flat_len = (ho - 1) * wp + wo  # the last row needs only Wo columns: reads stay in the plane
    it = xp.itemsize
    # (N, C, O_0, .., O_{r-3}, L, *k): tap (.., i, j) of flat position q reads q + i*d*Wp + j*d.
    shape = xp.shape[:2] + out_sp[:-2] + (flat_len,) + tuple(ksize)
    st = (xp.strides[:2] + tuple(xp.strides[2 + i] * strides[i] for i in range(rank - 2)) + (it,)
          + tuple(xp.strides[2 + i] * dilation[i] for i in range(rank)))
    view = as_strided(xp, shape, st, writeable=False)
    y = _conv_channels_first(view, w, rank, groups, out_rank=rank - 1)  # (N, F, .., L)
    rows = as_strided(y, y.shape[:-1] + (ho, wo), y.strides[:-1] + (wp * it, it), writeable=False)
    out = np.empty(y.shape[:-1] + (ho, wo), y.dtype) if out is None else out
    _parallel.copy(out, rows)
    return out


def padding_free_regions(lengths, ksize, strides, padding, dilation):
    """Boxes of output positions, each with the box of taps that read real input there.

    A large dilation with 'same' padding (DeepLab's ASPP: 3x3, d=12 on 32x32) makes many taps
    read only padding for whole runs of outputs: there only the inner taps are computed. Along
    each axis the taps an output reads inside the input form one run ``[lo, hi)``; consecutive
    outputs with the same run form a segment, and the regions are the products of segments.
    Returns ``[(output slices, tap slices), ..]``, or None where skipping saves less than
    ``_SKIP_MIN_SAVING`` of the im2col work (the extra, smaller GEMMs would cost more), where it
    would take more than ``_SKIP_MAX_REGIONS`` regions, or where an output reads no input at all.
    """
    if _share_reading_input(lengths, ksize, strides, padding, dilation) > 1.0 - _SKIP_MIN_SAVING:
        return None
    per_axis = []
    ratio = 1.0
    for length, k, s, (before, after), d in zip(lengths, ksize, strides, padding, dilation):
        out_len = output_length(length + before + after, k, s, d)
        start = np.arange(out_len) * s - before  # input index read by tap 0 (negative: padding)
        lo = np.clip(-(start // d), 0, k)  # first tap at index >= 0
        hi = np.clip((length - 1 - start) // d + 1, 0, k)  # one past the last tap at index < length
        if (hi <= lo).any():
            return None
        ratio *= int((hi - lo).sum()) / (out_len * k)
        bounds = [0, *(np.flatnonzero((np.diff(lo) != 0) | (np.diff(hi) != 0)) + 1).tolist(), out_len]
        per_axis.append([(slice(a, b), slice(int(lo[a]), int(hi[a]))) for a, b in zip(bounds[:-1], bounds[1:])])
    if ratio > 1.0 - _SKIP_MIN_SAVING or math.prod(len(s) for s in per_axis) > _SKIP_MAX_REGIONS:
        return None
    return [tuple(zip(*combo)) for combo in itertools.product(*per_axis)]


def _share_reading_input(lengths, ksize, strides, padding, dilation):
    """The share of (output, tap) pairs that read the input, in Python ints (no arrays): where it
    is high, ``padding_free_regions`` returns None without building its per-output runs, which
    took ~0.1 ms per call. The same product, in the same order, as that function's ``ratio``
    where every output reads some input; 0.0 (no early answer) for long kernels."""
    ratio = 1.0
    for length, k, s, (before, after), d in zip(lengths, ksize, strides, padding, dilation):
        if k > _SKIP_MAX_REGIONS:
            return 0.0
        out_len = output_length(length + before + after, k, s, d)
        pairs = 0
        for t in range(k):
            first = max(0, -(-(before - t * d) // s))  # first output whose tap t reads index >= 0
            last = min(out_len - 1, (length - 1 + before - t * d) // s)  # last one reading < length
            pairs += max(0, last - first + 1)
        ratio *= pairs / (out_len * k)
    return ratio


def _conv_by_regions(xs, w, regions, src_axes, out_axes, strides, dilation, groups, channels_last, out=None):
    """Each region of the output is a convolution of a slice of the input with a box of taps."""
    for out_slices, tap_slices in regions:
        src = [slice(None)] * xs.ndim
        for ax, o, t, s, d in zip(src_axes, out_slices, tap_slices, strides, dilation):
            first = o.start * s + t.start * d
            last = (o.stop - 1) * s + (t.stop - 1) * d
            src[ax] = slice(first, last + 1)
        part = _conv_view(xs[tuple(src)], w[tap_slices], src_axes, strides, dilation, groups, channels_last)
        if out is None:
            shape = list(part.shape)
            for i, ax in enumerate(out_axes):
                shape[ax] = max(r[0][i].stop for r in regions)
            out = np.empty(shape, part.dtype)
        dst = [slice(None)] * out.ndim
        for ax, o in zip(out_axes, out_slices):
            dst[ax] = o
        out[tuple(dst)] = part
    return out


def _conv_channels_last(v, w, rank, groups, out=None):
    """``v``: the window view ``(G, N, *O, *k, Cg)``, in the patch order of the kernel's reshape."""
    n = v.shape[1]
    out_sp = v.shape[2:rank + 2]
    ksize = v.shape[rank + 2:2 * rank + 2]
    taps = math.prod(ksize)
    c_group, filters = w.shape[-2], w.shape[-1]
    c_in = groups * c_group
    f_group = filters // groups
    wk = _kernel_matrices(w, groups)  # (G, K*Cg, Fg)
    out = np.empty((n,) + out_sp + (filters,), v.dtype) if out is None else out
    row_positions = math.prod(out_sp[1:])
    row_bytes = row_positions * taps * c_in * v.itemsize
    scratch = memory.Scratch(v.dtype)
    for bs, rs in memory.chunks(n, out_sp[0], row_bytes):
        piece = v[:, bs, rs]
        m = math.prod(piece.shape[1:rank + 2])
        cols = channels_last_columns(scratch, piece, rank, m)  # the im2col copy (none for 1x1)
        target = reshape_view(out[bs, rs], (m, groups, f_group)).transpose(1, 0, 2)
        np.matmul(cols, wk, out=target)
    return out


# Below this many channels per group, channels_last columns are gathered tap-major: a gather in
# the patch order copies runs of Cg values (one at a time for the C = 1 stem), tap-major runs of
# a whole output row. Measured on the 2-core bench machine, 32 x 28 x 28 input, 3x3 taps, 32
# filters, gather + GEMM: C = 1 0.34 ms against 0.82 ms, C = 3 0.99 against 1.36, C = 4 even,
# C = 8 2.6 against 1.8 (the GEMM of the transposed operand then slows down too).
_TAP_MAJOR_BELOW_CHANNELS = 4


def channels_last_columns(scratch, view, rank, m):
    """The im2col matrix ``(G, M, K*Cg)`` of a channels_last window view ``(G, nb, *O, *k, Cg)``
    (``M = nb * prod(O)`` rows in the output's order, columns in the kernel's ``(*k, Cg)``
    order), in ``scratch``: C-contiguous, or for few channels per group the transposed view of a
    tap-major ``(G, K*Cg, M)`` copy (BLAS reads either directly)."""
    groups, c_group = view.shape[0], view.shape[-1]
    patch = math.prod(view.shape[rank + 2:])
    if c_group >= _TAP_MAJOR_BELOW_CHANNELS or memory.reshapes_in_place(view, (groups, m, patch)):
        return scratch.gather(view, (groups, m, patch))
    order = (0,) + tuple(range(rank + 2, 2 * rank + 3)) + tuple(range(1, rank + 2))  # (G, *k, Cg, nb, *O)
    return scratch.gather(view.transpose(order), (groups, patch, m)).transpose(0, 2, 1)


def _conv_channels_first(view, w, rank, groups, out_rank=None, out=None):
    """``view`` ``(N, C, *O, *k)``: ``out_rank`` output axes (``rank`` unless the flat-plane
    view merged two) and ``rank`` kernel axes."""
    out_rank = rank if out_rank is None else out_rank
    n, c_in = view.shape[:2]
    out_sp = view.shape[2:out_rank + 2]
    ksize = view.shape[out_rank + 2:]
    taps = math.prod(ksize)
    c_group, filters = w.shape[-2], w.shape[-1]
    f_group = filters // groups
    # (N, C, *O, *k) -> (N, G, *k, Cg, *O): rows of the column matrix in the kernel's (*k, Cg)
    # order, so the kernel is used as a transposed view, never copied.
    v = view.reshape((n, groups, c_group) + out_sp + ksize)
    k_axes = tuple(range(out_rank + 3, out_rank + rank + 3))
    v = v.transpose((0, 1) + k_axes + (2,) + tuple(range(3, out_rank + 3)))
    rows_at = 3 + rank  # v: (N, G, *k, Cg, *O); the output axes start here
    wk = _kernel_matrices(w, groups).transpose(0, 2, 1)  # (G, Fg, K*Cg)
    out = np.empty((n, filters) + out_sp, view.dtype) if out is None else out
    row_positions = math.prod(out_sp[1:])
    row_bytes = row_positions * taps * c_in * view.itemsize
    scratch = memory.Scratch(view.dtype)
    for bs, rs in memory.chunks(n, out_sp[0], row_bytes):
        piece = v[(bs,) + (slice(None),) * (rows_at - 1) + (rs,)]
        nb = piece.shape[0]
        p = math.prod(piece.shape[rows_at:])
        target = reshape_view(out[bs, :, rs], (nb, groups, f_group, p))
        if nb > 1 and p < _FOLD_BELOW_POSITIONS:
            # Few positions per image make thin GEMMs: fold the batch into the GEMM's N axis,
            # columns (G, Cg*K, nb*P), and scatter the (G, Fg, nb, P) result back per image.
            folded = piece.transpose(tuple(range(1, rows_at)) + (0,) + tuple(range(rows_at, piece.ndim)))
            cols = scratch.gather(folded, (groups, c_group * taps, nb * p))
            target[...] = np.matmul(wk, cols).reshape(groups, f_group, nb, p).transpose(2, 0, 1, 3)
        else:
            cols = scratch.gather(piece, (nb, groups, c_group * taps, p))
            np.matmul(wk, cols, out=target)
    return out


def _kernel_matrices(w, groups):
    """Kernel ``(*k, Cg, G*Fg)`` as per-group GEMM operands ``(G, K*Cg, Fg)``: a strided view
    (row stride G*Fg) that BLAS reads directly, so even a large kernel is never copied."""
    rank = w.ndim - 2
    c_group, filters = w.shape[-2:]
    return w.reshape(math.prod(w.shape[:rank]) * c_group, groups, filters // groups).transpose(1, 0, 2)

"""The gradients of the locally connected (unshared-weight) convolution, Keras 2 layout: kernel
``(positions, prod(k) * C, F)``, patches flattened ``(*k, C)`` for channels_last and ``(C, *k)``
for channels_first (``locally_connected``).

Every output position has its own weights, so both gradients are a batch of small GEMMs, one
per position, over position-major operands: the kernel gradient ``cols_p^T (K*C, N) @ dy_p
(N, F)`` on the forward's im2col columns, the input gradient ``dy_p (N, F) @ W_p^T`` giving
each position's patch gradient, which is then added back tap by tap onto the input cells the
patch read (overlapping patches add up; cells of the padding are never written). Both work in
pieces of output rows (``memory.chunks``), in a fixed order: positions of different pieces are
disjoint, and the batch pieces of one position are added in order.
"""
import math

import numpy as np

from . import memory
from ._windows import WindowPlan, compute_dtype, padded, spatial_axes, taps, windows
from .conv_transpose import _add_tap


def _check(problem, **arrays):
    shapes = {"x": problem.input_shape, "dy": problem.output_shape, "kernel": problem.kernel_shape}
    for name, a in arrays.items():
        if tuple(a.shape) != tuple(shapes[name]):
            raise ValueError(f"Expected `{name}` of shape {tuple(shapes[name])} for {problem}; "
                             f"received {name}.shape={a.shape}")


def _position_major(dy, bs, rs, channels_last, ctype):
    """``dy`` of outputs ``[bs, rs]`` as ``(positions, nb, F)`` in the compute dtype (a view when
    no cast is needed)."""
    if channels_last:
        piece = dy[bs, rs]
        d = piece.reshape(piece.shape[0], -1, piece.shape[-1]).transpose(1, 0, 2)
    else:
        piece = dy[bs, :, rs]
        d = piece.reshape(piece.shape[0], piece.shape[1], -1).transpose(2, 0, 1)
    return d.astype(ctype, copy=False)


def _row_pieces(problem, per_position_bytes, item_bytes=0):
    row_positions = math.prod(problem.out_spatial[1:])
    return memory.chunks(problem.batch, problem.out_spatial[0], row_positions * per_position_bytes,
                         memory.chunk_limit(), item_bytes), row_positions


def locally_connected_backward_input(problem, dy, kernel):
    _check(problem, dy=dy, kernel=kernel)
    ctype = compute_dtype(problem.dtype)
    rank, channels_last, c = problem.rank, problem.channels_last, problem.in_channels
    ksize, ones = tuple(problem.kernel_size), (1,) * problem.rank
    axes = spatial_axes(rank, channels_last)
    dx = np.zeros(problem.input_shape, ctype)
    # per position of one item: its patch gradient and dy; and its weights where they are cast
    per_position = (problem.patch_size + problem.out_channels) * ctype.itemsize
    if kernel.dtype != ctype:
        per_position += problem.patch_size * problem.out_channels * ctype.itemsize
    pieces, row_positions = _row_pieces(problem, per_position)
    for bs, rs in pieces:
        ps = slice(rs.start * row_positions, rs.stop * row_positions)
        w = kernel[ps].astype(ctype, copy=False)
        d = _position_major(dy, bs, rs, channels_last, ctype)
        nb = d.shape[1]
        out_ext = (rs.stop - rs.start,) + tuple(problem.out_spatial[1:])
        patch_axes = ksize + (c,) if channels_last else (c,) + ksize
        grads = np.matmul(d, w.transpose(0, 2, 1)).reshape(out_ext + (nb,) + patch_axes)  # (*O, nb, patch)
        target, first_in = dx[bs], (rs.start,) + (0,) * (rank - 1)
        for tap in taps(ksize):
            if channels_last:  # (*O, nb, C) -> (nb, *O, C)
                src = np.moveaxis(grads[(Ellipsis,) + tap + (slice(None),)], rank, 0)
            else:  # (*O, nb, C) -> (nb, C, *O)
                src = np.moveaxis(grads[(Ellipsis,) + tap], (rank, rank + 1), (0, 1))
            _add_tap(target, src, axes, tap, problem.strides, ones, problem.pad_before, first_in)
    return dx.astype(problem.dtype, copy=False)


def locally_connected_backward_weights(problem, x, dy):
    _check(problem, x=x, dy=dy)
    ctype = compute_dtype(problem.dtype)
    rank, channels_last, filters = problem.rank, problem.channels_last, problem.out_channels
    ones = (1,) * rank
    plan = WindowPlan(x, problem.kernel_size, problem.strides, ones, problem.padding, problem.out_spatial,
                      channels_last, ctype.itemsize, every_tap=True)
    grad = np.empty(problem.kernel_shape, ctype)
    pads, columns, results = memory.Scratch(ctype), memory.Scratch(ctype), memory.Scratch(ctype)
    row_positions = math.prod(plan.out_sp[1:])
    per_position = (problem.patch_size + filters) * ctype.itemsize
    for bs, rs in memory.chunks(problem.batch, plan.out_sp[0], plan.row_bytes + row_positions * per_position,
                                memory.chunk_limit(), plan.item_bytes):
        xs, pad = plan.piece(bs, rs)
        xp = padded(xs, pad, plan.axes, ctype, scratch=pads)
        out_ext = (rs.stop - rs.start,) + plan.out_sp[1:]
        view = windows(xp, plan.axes, problem.kernel_size, problem.strides, ones)
        view = view[(slice(None),) * (plan.axes[0]) + tuple(slice(0, o) for o in out_ext)]
        # the kernel's patch order: (nb, *O, *k, C) / (nb, *O, C, *k), then position-major
        view = np.moveaxis(view, rank + 1, -1) if channels_last else np.moveaxis(view, 1, rank + 1)
        nb = view.shape[0]
        ps = slice(rs.start * row_positions, rs.stop * row_positions)
        cols = columns.gather(np.moveaxis(view, 0, rank), (ps.stop - ps.start, nb, problem.patch_size))
        d = _position_major(dy, bs, rs, channels_last, ctype)
        if bs.start == 0:  # the first batch piece of these positions
            np.matmul(cols.transpose(0, 2, 1), d, out=grad[ps])
        else:
            grad[ps] += np.matmul(cols.transpose(0, 2, 1), d, out=results.take(grad[ps].shape))
    return grad.astype(problem.dtype, copy=False)

"""Locally connected (unshared-weight) convolution, Keras 2 ``implementation=1`` layout.

Every output position has its own kernel, so after im2col the work is a batch of small GEMMs,
one per position: ``(P, N, K*C) @ (P, K*C, F)`` with ``np.matmul``. Patches are flattened
``(*k, C)`` for channels_last and ``(C, *k)`` for channels_first (the kernel's row order). The
output is filled in pieces (``_pieces``), each from its own padded input rows; channels_last
GEMMs write straight into the output, channels_first ones (whose positions are the output's
innermost axis) through one position-major chunk buffer.
"""
import math

import numpy as np

from . import _pieces, memory
from ._windows import WindowPlan, compute_dtype, padded, windows


def locally_connected(problem, x, kernel, bias):
    kernel_size, strides, channels_last = problem.kernel_size, problem.strides, problem.channels_last
    ones = (1,) * problem.rank
    ctype = compute_dtype(x.dtype)
    # Keras 2's 'valid' length ceil((L-k+1)/s) is the window count; 'same' was padded to it. So
    # the window view has exactly ``out_spatial`` positions; every tap has its own weights.
    plan = WindowPlan(x, kernel_size, strides, ones, problem.padding, problem.out_spatial, channels_last,
                      ctype.itemsize, every_tap=True)
    filters, out_shape = problem.out_channels, problem.output_shape
    row_bytes = plan.row_bytes
    blocks, results = memory.Scratch(ctype), memory.Scratch(ctype)
    row_positions = math.prod(plan.out_sp[1:])
    # Each position has its own weights, as large as the input it reads: they are cast to the
    # compute dtype piece by piece, a piece array like the padded rows.
    if ctype != kernel.dtype:
        row_bytes += row_positions * kernel.shape[1] * filters * ctype.itemsize

    def fill(bs, rs, acc):
        xs, pad = plan.piece(bs, rs)
        xp = padded(xs, pad, plan.axes, ctype, scratch=blocks)
        positions = slice(rs.start * row_positions, rs.stop * row_positions)
        w = kernel[positions].astype(ctype, copy=False)
        _unshared_into(acc, windows(xp, plan.axes, kernel_size, strides, ones), w, channels_last, results)

    bias_b = None if bias is None else (bias if channels_last else np.moveaxis(np.asarray(bias), -1, 0))
    return _pieces.compute(out_shape, x.dtype, ctype, channels_last, fill, row_bytes=row_bytes,
                           item_bytes=plan.item_bytes, bias=bias_b, activation=problem.activation)


def _unshared_into(out, view, w, channels_last, results):
    """``out`` ``(nb, *O, F)`` / ``(nb, F, *O)`` := per-position GEMMs of the window ``view``
    ``(nb, *O, C, *k)`` / ``(nb, C, *O, *k)`` with ``w`` ``(P, K*C, F)``, in chunks of rows."""
    rank = view.ndim // 2 - 1
    if channels_last:  # (N, *O, C, *k) -> (N, *O, *k, C)
        view = np.moveaxis(view, rank + 1, -1)
    else:  # (N, C, *O, *k) -> (N, *O, C, *k)
        view = np.moveaxis(view, 1, rank + 1)
    n, out_sp = view.shape[0], view.shape[1:rank + 1]
    patch = math.prod(view.shape[rank + 1:])
    filters = w.shape[-1]
    positions = math.prod(out_sp)
    if channels_last:  # position-major views of the output
        target = out.reshape(n, positions, filters).transpose(1, 0, 2)
    else:
        target = out.reshape(n, filters, positions).transpose(2, 0, 1)
    row_positions = positions // out_sp[0]
    columns = memory.Scratch(view.dtype)
    for bs, rs in memory.chunks(n, out_sp[0], row_positions * patch * view.itemsize):
        piece = view[bs, rs]
        ps = slice(rs.start * row_positions, rs.stop * row_positions)
        # position-major columns (P_chunk, nb, K*C), gathered in one copy into a reused buffer
        cols = columns.gather(np.moveaxis(piece, 0, rank), (ps.stop - ps.start, piece.shape[0], patch))
        if channels_last:
            np.matmul(cols, w[ps], out=target[ps, bs])
        else:
            part = results.take((cols.shape[0], cols.shape[1], filters))
            np.matmul(cols, w[ps], out=part)
            target[ps, bs] = part

"""Locally connected (unshared-weight) convolution, Keras 2 ``implementation=1`` layout.

Every output position has its own kernel, so after im2col the work is a batch of small GEMMs,
one per position: ``(P, N, K*C) @ (P, K*C, F)`` with ``np.matmul``. Patches are flattened
``(*k, C)`` for channels_last and ``(C, *k)`` for channels_first (the kernel's row order).
"""
import math

import numpy as np

from . import memory
from ._epilogue import finish
from ._windows import compute_dtype, padded, spatial_axes, windows


def locally_connected(x, kernel, bias, *, kernel_size, strides, padding, out_spatial, channels_last, activation):
    rank = len(kernel_size)
    ctype = compute_dtype(x.dtype)
    axes = spatial_axes(rank, channels_last)
    xp = padded(x, padding, axes, ctype)
    # Keras 2's 'valid' length ceil((L-k+1)/s) is the window count; 'same' was padded to it. So
    # the window view has exactly ``out_spatial`` positions.
    view = windows(xp, axes, kernel_size, strides, (1,) * rank)
    out_sp = tuple(out_spatial)
    n = x.shape[0]
    positions = math.prod(out_sp)
    taps = math.prod(kernel_size)
    if channels_last:  # (N, *O, C, *k) -> (N, *O, *k, C)
        view = np.moveaxis(view, rank + 1, -1)
    else:  # (N, C, *O, *k) -> (N, *O, C, *k)
        view = np.moveaxis(view, 1, rank + 1)
    c_in = view.shape[-1] if channels_last else view.shape[rank + 1]
    patch = taps * c_in
    filters = kernel.shape[-1]
    w = kernel.astype(ctype, copy=False)
    out = np.empty((positions, n, filters), ctype)  # position-major: what the batched GEMM writes
    row_positions = positions // out_sp[0]
    row_bytes = row_positions * patch * np.dtype(ctype).itemsize
    for bs, rs in memory.chunks(n, out_sp[0], row_bytes):
        piece = view[bs, rs]
        ps = slice(rs.start * row_positions, rs.stop * row_positions)
        cols = piece.reshape(piece.shape[0], -1, patch).transpose(1, 0, 2)  # (P_chunk, nb, K*C)
        np.matmul(cols, w[ps], out=out[ps, bs])
    # (P, N, F) viewed as (*O, N, F), put in the output layout in one copy
    out = out.reshape(out_sp + (n, filters))
    out = np.ascontiguousarray(np.moveaxis(out, (rank, rank + 1), (0, -1) if channels_last else (0, 1)))
    bias_b = None if bias is None else (bias if channels_last else np.moveaxis(np.asarray(bias), -1, 0))
    return finish(out, bias_b, activation, x.dtype)

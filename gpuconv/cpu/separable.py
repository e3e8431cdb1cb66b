"""Separable convolution: the depthwise step, then the pointwise 1x1 as one GEMM per piece.

The intermediate stays in the compute dtype (float32 for float16 inputs) and exists only piece by
piece (``_pieces``), never as the whole ``C*dm``-channel map, so separable needs no more memory
than its output and never rounds between its two steps.
"""
import math

import numpy as np

from . import _pieces, memory
from ._epilogue import channel_bias_shape
from ._windows import compute_dtype
from .depthwise import depthwise_fill


def separable_conv(problem, x, depthwise_kernel, pointwise_kernel, bias):
    """Depthwise, then a 1x1 GEMM on the compute-dtype intermediate (never rounded in between),
    piece by piece: the intermediate is a piece array, never the whole ``C*dm``-channel map."""
    ctype = compute_dtype(x.dtype)
    plan, fill_depthwise = depthwise_fill(problem, x, depthwise_kernel, ctype)
    c_mid, filters, channels_last = problem.mid_channels, problem.out_channels, problem.channels_last
    pw = pointwise_kernel.reshape(c_mid, filters).astype(ctype, copy=False)
    out_shape = problem.output_shape
    mids = memory.Scratch(ctype)

    def fill(bs, rs, acc):
        nb = bs.stop - bs.start
        mid = mids.take(acc.shape[:-1] + (c_mid,) if channels_last else (nb, c_mid) + acc.shape[2:])
        fill_depthwise(bs, rs, mid)
        if channels_last:  # (N*P, C*dm) @ (C*dm, F)
            np.matmul(mid.reshape(-1, c_mid), pw, out=acc.reshape(-1, filters))
        else:  # per image (F, C*dm) @ (C*dm, P): the layout stays channels_first
            np.matmul(pw.T, mid.reshape(nb, c_mid, -1), out=acc.reshape(nb, filters, -1))

    mid_row_bytes = math.prod(plan.out_sp[1:]) * c_mid * ctype.itemsize
    return _pieces.compute(out_shape, x.dtype, ctype, channels_last, fill, row_bytes=plan.row_bytes + mid_row_bytes,
                           item_bytes=plan.item_bytes, bias=bias,
                           bias_shape=channel_bias_shape(len(out_shape), channels_last),
                           activation=problem.activation)

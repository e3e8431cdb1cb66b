"""Every op fills its output piece by piece, so that its temporaries stay inside the budget.

A piece is a group of whole batch items or, for an item that alone is too large, a run of rows of
the first spatial output axis (``memory.chunks``). The op says what a piece costs (bytes of piece
arrays per output row of one item, and per item: the zero-padded input rows it reads, its
intermediates; in Python ints, from the geometry) and how to fill one (``fill(bs, rs, acc)``:
compute outputs ``[bs, rs]`` into ``acc``, a C-contiguous compute-dtype array of the piece's
shape). This module sizes the pieces under ``memory.piece_limit()``, checks before allocating
anything that the output and the smallest piece fit the memory (``memory.check_allocation``),
allocates the output once, and after each piece applies the epilogue (bias, activation, cast).

The piece is computed straight into the output where the output is in the compute dtype and the
piece is a contiguous block of it; otherwise (float16 accumulated in float32, a run of rows of a
channels_first item) into one accumulator reused by every piece, then cast into the output.
With the default budget, every row of the CPU bench suite is one piece: the op runs exactly as
before, with nothing added.
"""
import math

import numpy as np

from . import memory
from ._epilogue import finish


def compute(out_shape, dtype, ctype, channels_last, fill, *, row_bytes=0, item_bytes=0, bias=None, bias_shape=None,
            activation=None):
    """The output of ``out_shape`` in ``dtype``, filled piece by piece by ``fill`` (see the module
    docstring). ``dtype`` and ``ctype`` are ``np.dtype`` objects. ``bias`` (compute dtype after
    casting) reshaped to ``bias_shape`` broadcasts against the output from the right;
    ``activation`` is one of ``FUSED_ACTIVATIONS`` or None."""
    n, rows = out_shape[0], out_shape[1 if channels_last else 2]
    out_row_bytes = math.prod(out_shape[1:]) // rows * ctype.itemsize
    apart = ctype != dtype or not channels_last  # pieces may need an accumulator of their own
    per_row = row_bytes + (out_row_bytes if apart else 0)
    memory.check_allocation(out_shape, dtype, "output", item_bytes + per_row)  # and one row's piece
    out = np.empty(out_shape, dtype)
    b = None if bias is None else np.asarray(bias, ctype)
    b = None if b is None else np.broadcast_to(b if bias_shape is None else b.reshape(bias_shape), out_shape)
    if n * (item_bytes + rows * per_row) <= memory.piece_limit():  # one piece: the whole output
        acc = out if ctype == dtype else np.empty(out_shape, ctype)
        fill(slice(0, n), slice(0, rows), acc)
        return finish(acc, b, activation, out)
    accumulators = memory.Scratch(ctype)
    for bs, rs in memory.chunks(n, rows, per_row, memory.piece_limit(), item_bytes):
        index = (bs, rs) if channels_last else (bs, slice(None), rs)
        view = out[index]
        acc = view if ctype == dtype and view.flags.c_contiguous else accumulators.take(view.shape)
        fill(bs, rs, acc)
        finish(acc, None if b is None else b[index], activation, view)
    return out

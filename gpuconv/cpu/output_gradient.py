"""A fused activation's derivative and the bias gradient in one pass over the output gradient.

Why one pass: a convolution with a fused relu / relu6 and a bias reads its output gradient
``dy`` twice before any GEMM, once to apply ``act'(y)`` and once to sum it per channel; both are
memory-bound and, at training sizes (32 x 28 x 28 x 32 floats, 3 MB), each cost as much as a
quarter of the layer's weight gradient. Here each block of ``dy`` is multiplied and summed while
it is in cache, the blocks shared over the engine's threads.

Determinism: the blocks are contiguous runs along the outermost axes (``_parallel.bounded_slabs``:
at most ``_BLOCK_BYTES``, at most ``_BLOCKS`` of them, none under ``_MIN_BLOCK_BYTES``), so the
shape alone fixes them, never the thread count; each block's channel sums are kept apart and
added in block order.
The derivative is ``OUTPUT_DERIVATIVES``' own, so it is bitwise the one the other engines use.
"""
import numpy as np

from ..activations import OUTPUT_DERIVATIVES
from . import _parallel
from ._windows import compute_dtype

_BLOCK_BYTES = 1 << 20
_MIN_BLOCK_BYTES = 64 << 10
_BLOCKS = 8  # a fixed count, not the thread count: balanced on 1, 2, 4 or 8 threads
# Rows of a channels_last block folded into one summed row: NumPy adds a (M, C) array's rows
# one short row at a time; folded to (M / k, k*C) the rows are long, then k partial rows remain.
# 32 x 28 x 28 x 32 block of 2 items: 56 -> 18 us.
_FOLDED_ROW_VALUES = 256


def _channel_sums(block, channel_axis, summed, ctype):
    """``block`` summed over ``summed`` (every axis but ``channel_axis``) in ``ctype``; in a
    fixed order set by the block's shape."""
    if channel_axis != block.ndim - 1:  # channels_first: the long spatial axis is contiguous
        return np.sum(block, axis=summed, dtype=ctype)
    c = block.shape[-1]
    rows = block.reshape(-1, c)
    k = max(1, _FOLDED_ROW_VALUES // c)
    whole = rows.shape[0] // k * k
    total = np.sum(rows[:whole].reshape(-1, k * c), axis=0, dtype=ctype).reshape(k, c).sum(axis=0)
    return total + np.sum(rows[whole:], axis=0, dtype=ctype)


def output_gradient(problem, dy, output, need_bias):
    """``(dy * act'(output), bias gradient or None)`` of a convolution-family ``problem``:
    ``output`` its forward result when ``problem.activation`` (relu, relu6) was fused, None for
    no activation (``dy`` is then passed through, uncopied); the bias gradient sums over every
    axis but the channels (float32 accumulation for float16), in ``problem.dtype``."""
    derivative = None if output is None else OUTPUT_DERIVATIVES[problem.activation]
    if derivative is None and not need_bias:
        return dy, None
    channel_axis = dy.ndim - 1 if problem.channels_last else 1
    summed = tuple(a for a in range(dy.ndim) if a != channel_axis)
    ctype = compute_dtype(problem.dtype)
    if dy.size == 0:  # no filters, or an empty batch: nothing to multiply, every sum is 0
        grad = dy if derivative is None else np.empty_like(dy)
        return grad, np.zeros(dy.shape[channel_axis], problem.dtype) if need_bias else None
    blocks = _parallel.bounded_slabs(dy.shape, dy.itemsize, _BLOCK_BYTES,
                                     min(_BLOCKS, -(-dy.nbytes // _MIN_BLOCK_BYTES)))
    # An index fixed by a block keeps its axis (a length-1 slice), so ``summed`` stays right.
    blocks = [tuple(slice(i, i + 1) if isinstance(i, int) else i for i in block) for block in blocks]
    # Where a block cuts the channel axis, its sums belong to those channels only.
    channel_runs = [block[channel_axis] if channel_axis < len(block) else slice(None) for block in blocks]
    grad = dy if derivative is None else np.empty_like(dy)
    partials = [None] * len(blocks)

    def run_block(i):
        index = blocks[i]
        if derivative is not None:
            derivative(output[index], dy[index], out=grad[index])
        if need_bias:
            partials[i] = _channel_sums(grad[index], channel_axis, summed, ctype)

    work = dy.nbytes * (2 if derivative is None else 3)
    if _parallel.threads_for(work) > 1:
        _parallel.run(run_block, range(len(blocks)))
    else:
        for i in range(len(blocks)):
            run_block(i)
    if not need_bias:
        return grad, None
    bias_grad = np.zeros(dy.shape[channel_axis], ctype)
    for channels, part in zip(channel_runs, partials):  # in block order: a fixed sum
        bias_grad[channels] += part
    return grad, bias_grad.astype(problem.dtype, copy=False)

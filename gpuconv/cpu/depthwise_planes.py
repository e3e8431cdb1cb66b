"""channels_first depthwise convolution over shifted copies of the input planes, no transposes.

In channels_first layout the taps along the last spatial axis are neighbouring elements, and an
einsum whose inner axis and tap axis both step one element is ~9x slower than one whose tap axis
steps further (NumPy's iterator then puts the 3-long tap axis innermost). So the block of planes
is copied once per last-axis tap ``j``: ``S[j][c, .., w] = x_padded[c, .., w*s + j*d]`` (output
width, stride and dilation applied by the copy). In ``S`` that tap axis is the copy index, the
other axes' taps are shifts by whole rows, and with stride 1 on the second-last axis the output
rows and columns read as one flat run. The einsum then streams whole planes with the kernel as a
per-channel scalar and writes the channels_first output directly.

Used where the flat run is long (``planes_pay``). Measured side by side on the bench machine
(float32, 2 threads, minimum of 20; transposing path -> here): 2x56x56x144 3x3 (bench row W1)
1.14 -> 0.88 ms, 2x28x28x256 (S1a) 0.67 -> 0.57 ms, 3-D 16x28x28x108 (V3) 4.0 -> 3.2 ms,
1-D 2048x1024 k4 (W6, against the tap loop) 1.9 -> 1.5 ms; 7x7 and 14x14 maps were slower.
"""
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _parallel, memory
from ..geometry import padded_output_spatial
from ._windows import reshape_view, zero_outside

# Bytes of the shifted copies of one block of channels (about an L2 cache).
BLOCK_BYTES = 2 << 20
# Shortest flat output run (per channel) worth this path; below it the einsum's inner loop is
# too short and the transposing path is faster (7x7 and 14x14 maps, bench rows W2 and W4; and a
# strided second-last axis, W3, whose rows cannot merge).
MIN_RUN = 512


def planes_pay(lengths, ksize, strides, padding, dilation):
    """Whether ``depthwise_planes`` beats the transposing path for this geometry."""
    out_sp = padded_output_spatial(lengths, ksize, strides, padding, dilation)
    return _flat_run(out_sp, strides) >= MIN_RUN


def _flat_run(out_sp, strides):
    """Outputs per channel that the einsum's inner loop runs over: the output width, times the
    output height when the rows follow each other (stride 1 on the second-last axis)."""
    return out_sp[-1] * (out_sp[-2] if len(out_sp) >= 2 and strides[-2] == 1 else 1)


def depthwise_planes(x, w, strides, padding, dilation, ctype, out):
    """Depthwise conv of channels_first ``x`` ``(N, C, *spatial)`` with ``w`` ``(*k, C, dm)``
    (already in ``ctype``), zero padding ``padding``, into ``out`` ``(N, C*dm, *O)`` in ``ctype``
    (C-contiguous)."""
    rank = w.ndim - 2
    ksize = w.shape[:rank]
    c, dm = w.shape[-2:]
    n, lengths = x.shape[0], x.shape[2:]
    padded_sp = tuple(length + b + a for length, (b, a) in zip(lengths, padding))
    out_sp = padded_output_spatial(lengths, ksize, strides, padding, dilation)
    kw = ksize[-1]
    # S[j] for one channel: the padded leading axes, the output width.
    plane = math.prod(padded_sp[:-1]) * out_sp[-1]
    per_channel = kw * plane * ctype.itemsize
    threads = _parallel.threads_for(n * c * dm * math.prod(out_sp) * math.prod(ksize) * ctype.itemsize)
    block_bytes = min(BLOCK_BYTES, memory.chunk_limit() // threads)  # every thread's block in the budget
    step = max(1, min(block_bytes // max(per_channel, 1), -(-c * n // threads)))
    blocks = [(b, c0, min(c0 + step, c)) for b in range(n) for c0 in range(0, c, step)]
    columns = [_tap_columns(lengths[-1], out_sp[-1], strides[-1], dilation[-1], padding[-1][0], j) for j in range(kw)]
    weights = np.moveaxis(w, (rank, rank + 1), (0, 1))  # (C, dm, *k)
    per_m_out = out.reshape((n, c, dm) + out_sp)

    def run_blocks(part):
        buf = np.empty(kw * step * plane, ctype)
        for b, c0, c1 in part:
            shifted = buf[:kw * (c1 - c0) * plane].reshape((kw, c1 - c0) + padded_sp[:-1] + out_sp[-1:])
            _fill_shifted(shifted, x[b, c0:c1], padding, columns)
            view = _tap_view(shifted, ksize, out_sp, strides, dilation)  # (Cb, *O', *k)
            for m in range(dm):
                target = reshape_view(per_m_out[b, c0:c1, m], view.shape[:view.ndim - rank])
                _contract(view, weights[c0:c1, m], target, rank)

    _parallel.run(run_blocks, [blocks[sl] for sl in _parallel.split(len(blocks), threads)])
    return out


def _tap_columns(length, out_len, stride, dilation, before, j):
    """For last-axis tap ``j``: the output columns ``[lo, hi)`` that read the input (column
    ``w*stride + j*dilation - before`` inside ``[0, length)``) and the input slice they read."""
    offset = j * dilation - before
    lo = min(out_len, max(0, -(offset // stride)))  # ceil(-offset / stride)
    last = length - 1 - offset
    hi = max(lo, min(out_len, last // stride + 1)) if last >= 0 else lo
    first = lo * stride + offset
    return lo, hi, slice(first, first + (hi - lo - 1) * stride + 1, stride) if hi > lo else None


def _fill_shifted(shifted, xb, padding, columns):
    """``shifted[j]`` := the zero-padded planes of ``xb`` ``(Cb, *spatial)`` read at last-axis tap
    ``j``: leading axes padded, last axis already at output width. Only the padding is zeroed
    (a whole-buffer fill was one more pass over kw copies)."""
    lead = tuple(slice(b, b + length) for (b, _), length in zip(padding[:-1], xb.shape[1:-1]))
    for j, (lo, hi, src) in enumerate(columns):
        interior = (j, slice(None)) + lead + (slice(lo, hi),)
        zero_outside(shifted, interior)
        if hi > lo:
            np.copyto(shifted[interior], xb[..., src], casting="unsafe")


def _tap_view(shifted, ksize, out_sp, strides, dilation):
    """``(Cb, *O, *k)`` view of the shifted planes, the last two output axes merged into one flat
    run when the second-last has stride 1 (rows of the output width follow each other)."""
    rank = len(ksize)
    it = shifted.itemsize
    st = shifted.strides  # (kw, Cb, *padded lead, Wo)
    lead_out = tuple(st[2 + i] * strides[i] for i in range(rank - 1))
    lead_taps = tuple(st[2 + i] * dilation[i] for i in range(rank - 1))
    if _flat_run(out_sp, strides) > out_sp[-1]:
        shape = (shifted.shape[1],) + out_sp[:-2] + (_flat_run(out_sp, strides),) + tuple(ksize)
        strides_ = (st[1],) + lead_out[:-1] + (it,) + lead_taps + (st[0],)
    else:
        shape = (shifted.shape[1],) + out_sp + tuple(ksize)
        strides_ = (st[1],) + lead_out + (it,) + lead_taps + (st[0],)
    return as_strided(shifted, shape, strides_, writeable=False)


def _contract(view, wm, target, rank):
    """``target[c, o..] = sum_t view[c, o.., t..] * wm[c, t..]``: the kernel enters as a per-channel
    scalar (stride 0 along the outputs), which einsum streams fine once no tap axis ties with the
    inner output axis."""
    n_out = view.ndim - rank
    out_sub = list(range(n_out))
    tap_sub = list(range(n_out, n_out + rank))
    np.einsum(view, out_sub + tap_sub, wm, [0] + tap_sub, out_sub, out=target)

"""Max and average pooling as a loop over window taps of whole-piece reductions on strided views.

Max pads with -inf, which no real cell loses to (NaN still propagates through ``np.maximum``), so
padded cells are ignored; every window holds at least one real cell. Average pads with zeros,
sums in the compute dtype and divides by the number of real cells in each window (the
separable product of per-axis counts).

Taps that read only padding at every output change nothing (max ignores them, average neither
adds nor counts them), so they are left out first (``_windows.WindowPlan``): a 10**7-cell window
'same' over 8 cells loops over 15 taps, not 10**7, and pads by 7, not 5*10**6. The output is
filled in pieces (``_pieces``), each from its own padded input rows.
"""
import math

import numpy as np

from . import _parallel, _pieces, memory
from ._windows import WindowPlan, compute_dtype, output_length, padded, tap_slices, taps

_MODES = ("max", "average")


def pool(problem, x):
    mode, strides, channels_last = problem.mode, problem.strides, problem.channels_last
    if mode not in _MODES:
        raise ValueError(f"Invalid value for argument `mode`. Expected 'max' or 'average'. Received: mode={mode!r}")
    ctype = x.dtype if mode == "max" else compute_dtype(x.dtype)  # max is exact in any dtype
    plan = WindowPlan(x, problem.pool_size, strides, (1,) * problem.rank, problem.padding, problem.out_spatial,
                      channels_last, np.dtype(ctype).itemsize)
    def fill(bs, rs, acc):
        # A large piece in one batch slice per thread (every window lies in one item, so the
        # slices change nothing but the speed), each with its own padding scratch.
        reads = acc.nbytes * math.prod(plan.taps)
        items = _parallel.split(bs.stop - bs.start, _parallel.num_threads() if reads >= _THREADED_READS else 1)

        def pool_items(part):
            xs, pad = plan.piece(slice(bs.start + part.start, bs.start + part.stop), rs)
            _pool_into(acc[part], xs, mode, plan.taps, strides, pad, plan.axes, ctype, memory.Scratch(ctype))

        _parallel.run(pool_items, items)

    return _pieces.compute(problem.output_shape, x.dtype, ctype, channels_last, fill, row_bytes=plan.row_bytes,
                           item_bytes=plan.item_bytes)


# Input bytes a pooling piece reads from which it is cut into one batch slice per thread: on the
# 2-core bench machine, 2x2 max pooling of 3.2 MB took 0.80 ms on one thread and 0.58 on two, of
# 1.6 MB 0.32 and 0.44 (the hand-off costs more than the second core gives).
_THREADED_READS = 2 << 20

# Windows of at most this many cells are reduced by one elementwise pass per cell over strided
# views (2x2: 3x faster than NumPy's reduction over small split axes, which walks them element by
# element); bigger tiling windows use that reduction (one pass instead of a pass per cell).
_FEW_CELLS = 8


def _pool_into(out, x, mode, pool_size, strides, padding, axes, ctype, scratch):
    """Pooling of ``x`` zero/-inf padded by ``padding`` ('valid' over the padded input) into ``out``."""
    xp = padded(x, padding, axes, ctype, fill=-np.inf if mode == "max" else 0, scratch=scratch)
    out_sp = tuple(output_length(xp.shape[ax], p, s, 1) for ax, p, s in zip(axes, pool_size, strides))
    if (tuple(strides) == tuple(pool_size) and all(b == 0 and a == 0 for b, a in padding)
            and math.prod(pool_size) > _FEW_CELLS):
        _tiled(out, xp, mode, pool_size, axes, out_sp, ctype)
        return
    reduce = np.maximum if mode == "max" else np.add
    for i, tap in enumerate(taps(pool_size)):
        src = xp[tap_slices(tap, axes, xp.ndim, out_sp, strides, (1,) * len(axes))]
        if i == 0:
            np.copyto(out, src, casting="unsafe")
        else:
            reduce(out, src, out=out)
    if mode == "average":
        out /= _real_cell_counts(x, axes, pool_size, strides, padding, out_sp, ctype)


def _tiled(out, xp, mode, pool_size, axes, out_sp, ctype):
    """Non-overlapping windows without padding tile the first O*p cells of each axis: split each
    spatial axis into (O, p) and reduce the p axes in one call (every window is all real cells)."""
    index = [slice(None)] * xp.ndim
    shape, reduce_axes = [], []
    for ax, n in enumerate(xp.shape):
        if ax in axes:
            i = axes.index(ax)
            index[ax] = slice(0, out_sp[i] * pool_size[i])
            shape += [out_sp[i], pool_size[i]]
            reduce_axes.append(len(shape) - 1)
        else:
            shape.append(n)
    tiles = xp[tuple(index)].reshape(shape)
    if mode == "max":
        tiles.max(axis=tuple(reduce_axes), out=out)
    else:
        tiles.mean(axis=tuple(reduce_axes), dtype=ctype, out=out)


def _real_cell_counts(x, axes, pool_size, strides, padding, out_sp, dtype):
    """Number of non-padded cells in each window, shaped to broadcast against the output."""
    counts = np.ones((), dtype)
    for ax, p, s, (before, _), o in zip(axes, pool_size, strides, padding, out_sp):
        start = np.arange(o) * s - before
        real = np.minimum(start + p, x.shape[ax]) - np.maximum(start, 0)
        shape = [1] * x.ndim
        shape[ax] = o
        counts = counts * real.astype(dtype).reshape(shape)
    return counts

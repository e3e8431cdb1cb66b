"""The input gradient of max and average pooling: each output's gradient scattered back onto the
real input cells of its window, tap by tap, with strided-slice adds (overlapping windows add up).

Max: the whole gradient of a window goes to its first maximum in the window's row-major order
(PyTorch's and TensorFlow's rule), among real cells only; a NaN is the maximum and the first NaN
wins. The forward's reduction over taps is replayed once, keeping the winning tap per output:
a later tap wins only when it is larger (so ties stay with the first), or a NaN over a non-NaN.
Average: ``dy / (real cells of the window)`` to every real cell of it, as the forward divides.
Max pooling whose windows tile the input (stride = pool size, no padding) takes one ``argmax``
per window instead (``_tiled_max_backward``).

As in the forward, taps that read only padding at every output are left out
(``_windows.WindowPlan``), and the work is done in pieces of output rows (``memory.chunks``),
each from its own padded input rows; the scatter clips each tap's targets to the input, so
padded cells are simply never written. The order of the adds is fixed by the geometry and
the budget: pieces in order, taps in row-major order.
"""
import math

import numpy as np

from . import _parallel, memory
from ._windows import WindowPlan, compute_dtype, padded, tap_slices, taps
from .conv_transpose import _add_tap
from .pooling import _real_cell_counts

# Piece arrays per output cell beside the padded input: dy in the compute dtype, the running
# maximum, the winning tap, one tap's contribution.
_TEMPORARIES = 4


def pool_backward(problem, x, dy):
    if problem.mode not in ("max", "average"):
        raise ValueError("Invalid value for argument `mode`. Expected 'max' or 'average'. "
                         f"Received: mode={problem.mode!r}")
    for name, a, shape in (("x", x, problem.input_shape), ("dy", dy, problem.output_shape)):
        if tuple(a.shape) != tuple(shape):
            raise ValueError(f"Expected `{name}` of shape {tuple(shape)} for {problem}; "
                             f"received {name}.shape={a.shape}")
    ctype = compute_dtype(problem.dtype)
    if problem.mode == "max" and tiles_the_input(problem):
        return _tiled_max_backward(problem, x, dy, ctype)
    rank = problem.rank
    ones = (1,) * rank
    plan = WindowPlan(x, problem.pool_size, problem.strides, ones, problem.padding, problem.out_spatial,
                      problem.channels_last, x.itemsize)
    dx = np.zeros(problem.input_shape, ctype)
    if any(t == 0 for t in plan.taps):  # no window reads a real cell: nothing flows back
        return dx.astype(problem.dtype, copy=False)
    first_taps = tuple(lo for lo, _ in plan.live)
    tap_list = [tuple(lo + t for lo, t in zip(first_taps, tap)) for tap in taps(plan.taps)]
    before = problem.pad_before
    axes = plan.axes
    if problem.mode == "average":
        counts = _real_cell_counts(x, axes, problem.pool_size, problem.strides, problem.padding, problem.out_spatial,
                                   ctype)
    row_cells = math.prod(problem.output_shape[1:]) // problem.out_spatial[0]
    row_bytes = (plan.row_bytes if problem.mode == "max" else 0) + _TEMPORARIES * row_cells * ctype.itemsize
    pads = memory.Scratch(x.dtype)
    for bs, rs in memory.chunks(problem.batch, plan.out_sp[0], row_bytes, memory.chunk_limit(), plan.item_bytes):
        rows = (slice(None),) * (axes[0] - 1) + (rs,)
        g = dy[(bs,) + rows].astype(ctype, copy=False)
        target = dx[bs]
        first_in = (rs.start,) + (0,) * (rank - 1)
        if problem.mode == "average":
            g = g / counts[(slice(None),) + rows]
            for tap in tap_list:
                _add_tap(target, g, axes, tap, problem.strides, ones, before, first_in)
            continue
        winner = _first_maxima(plan, bs, rs, tap_list, pads)
        for i, tap in enumerate(tap_list):
            _add_tap(target, np.where(winner == i, g, 0), axes, tap, problem.strides, ones, before, first_in)
    return dx.astype(problem.dtype, copy=False)


def tiles_the_input(problem):
    """Windows that tile the input without overlap or padding (stride = pool size, as in the
    ubiquitous 2x2/2 'valid' pooling): each input cell belongs to at most one window."""
    return (tuple(problem.strides) == tuple(problem.pool_size) and not any(problem.pad_before)
            and all(o * k <= n for o, k, n in zip(problem.out_spatial, problem.pool_size, problem.in_spatial)))


def _tiled_max_backward(problem, x, dy, ctype):
    """Max pooling's input gradient when windows tile the input: each window cell is a strided
    view of ``x`` with the output's shape (no copy, no padding). The window maxima come from
    NaN-propagating ``maximum``s; then, cell by cell in row-major order, a cell equal to its
    window's maximum (or a NaN, where the maximum is NaN) that no earlier cell took gets the
    gradient, multiplied straight into ``dx``'s view of that cell. Plain arithmetic over views:
    NumPy's masked assignments would cost several times more. Large inputs are cut into batch
    slices, one per thread (each window lies in one item: the slices change nothing but the speed;
    32 x 28 x 28 x 32 float32 on the 2-core bench machine: 3.4 ms whole, 2.1 ms in two)."""
    dx = np.empty(problem.input_shape, ctype)
    _zero_past_the_windows(problem, dx)
    g = dy.astype(ctype, copy=False)
    pieces = _parallel.split(problem.batch, _parallel.threads_for(x.nbytes + dx.nbytes))
    _parallel.run(lambda bs: _tiled_max_into(problem, x[bs], g[bs], dx[bs]), pieces)
    return dx.astype(problem.dtype, copy=False)


def _zero_past_the_windows(problem, dx):
    """Zero the input cells no window covers (past the last whole window on each axis): every
    other cell is written by ``_tiled_max_into``, so ``dx`` needs no zero fill of its own."""
    first = 1 if problem.channels_last else 2
    for i, (o, k) in enumerate(zip(problem.out_spatial, problem.pool_size)):
        index = [slice(None)] * dx.ndim
        index[first + i] = slice(o * k, None)
        dx[tuple(index)] = 0


def _tiled_max_into(problem, x, g, dx):
    first = 1 if problem.channels_last else 2
    axes = tuple(range(first, first + problem.rank))
    ones = (1,) * problem.rank

    def cell_view(a, offsets):  # the cell at ``offsets`` of every window: a strided view
        return a[tap_slices(offsets, axes, a.ndim, problem.out_spatial, problem.pool_size, ones)]

    cells = [cell_view(x, cell) for cell in taps(problem.pool_size)]  # row-major: ties stay with the first
    peak = cells[0]
    for v in cells[1:]:
        peak = np.maximum(peak, v)  # a NaN propagates: NaN windows have a NaN peak
    has_nan = x.dtype.kind == "f" and bool(np.isnan(peak).any())
    taken = None  # the windows an earlier cell won
    for j, (offsets, v) in enumerate(zip(taps(problem.pool_size), cells)):
        hits = v == peak
        if has_nan:
            hits |= np.isnan(v)
        # On booleans ``hits > taken`` is ``hits & ~taken`` in one pass.
        wins = hits if taken is None else np.greater(hits, taken)
        np.multiply(g, wins, out=cell_view(dx, offsets))
        if j + 1 < len(cells):
            taken = hits if taken is None else np.logical_or(taken, hits, out=taken)


def _first_maxima(plan, bs, rs, tap_list, pads):
    """Per output of the piece, the index in ``tap_list`` of its window's first maximum among
    real cells (a NaN beats any number; -1 where a window has no real cell)."""
    xs, pad = plan.piece(bs, rs)
    xp = padded(xs, pad, plan.axes, xs.dtype, fill=-np.inf, scratch=pads)
    out_ext = (rs.stop - rs.start,) + plan.out_sp[1:]
    ndim = xp.ndim
    best = winner = None
    for i, tap in enumerate(tap_list):
        trimmed = tuple(t - lo for t, (lo, _) in zip(tap, plan.live))
        v = xp[tap_slices(trimmed, plan.axes, ndim, out_ext, plan.strides, (1,) * len(tap))]
        real = _real_outputs(plan, tap, rs, ndim)
        if best is None:
            real = np.broadcast_to(real, v.shape)
            best = np.where(real, v, -np.inf).astype(v.dtype)
            winner = np.where(real, 0, -1).astype(np.int32)
            continue
        better = real & ((winner < 0) | (v > best) | (np.isnan(v) & ~np.isnan(best)))
        np.copyto(best, v, where=better)
        winner[better] = i
    return winner


def _real_outputs(plan, tap, rs, ndim):
    """Whether ``tap`` reads a real input cell, per output of the piece: the product of one
    boolean per axis, shaped to broadcast against the piece."""
    real = np.ones((), bool)
    for i, (ax, t, s) in enumerate(zip(plan.axes, tap, plan.strides)):
        start, stop = (rs.start, rs.stop) if i == 0 else (0, plan.out_sp[i])
        cell = np.arange(start, stop) * s + t - plan.padding[i][0]
        shape = [1] * ndim
        shape[ax] = stop - start
        real = real & ((cell >= 0) & (cell < plan.x.shape[ax])).reshape(shape)
    return real

"""The kernel gradient of a (grouped, strided, dilated) convolution: input and output gradient
correlated, ``dW[t, c, f] = sum over batch and outputs o of x[o*s + t*d - pad, c] * dy[o, f]``.

Why one function serves three ops: the transposed convolution's kernel gradient is this one on
``problem.adjoint()`` with the roles of its arrays exchanged, and a depthwise problem is the
grouped convolution with one channel per group (``ConvProblem.as_depthwise``).

How. The same im2col pieces as the forward (``conv``): pieces of output rows (``memory.chunks``,
inside the working-buffer budget), each from its own zero-padded input rows
(``_windows.WindowPlan.piece``), gathered into one reused column buffer and reduced by one GEMM
per piece, ``cols^T (K*Cg, M) @ dy (M, Fg)`` per group, added to the accumulator in piece order:
the order is fixed by the geometry and the budget, never by threads (BLAS splits a GEMM's output,
not its reduction). One channel per group (depthwise) is memory-bound: there a per-tap
``einsum`` over the window view reduces the batch and positions for every channel at once,
instead of C GEMMs of one row each.

Taps that read only padding at every output (``WindowPlan``) are not computed: each of their
entries is the sum of ``0 * dy``, which is 0, or NaN where that filter's ``dy`` holds a NaN or
an Inf (IEEE: 0 * Inf = NaN), and that is what is written there. Padding inside a piece is
literal zeros, so the computed taps keep the same IEEE semantics.
"""
import math

import numpy as np

from . import _parallel, memory
from ._windows import WindowPlan, compute_dtype, padded, spatial_axes, tap_slices, taps, windows
from .conv import _group_major_padded, channels_last_columns

# dy bytes of one block of the depthwise path: x and dy of a block stay in L2 while every tap
# reads them (bench row W1: blocks of 4 rows, 1.3 ms on two threads against 2.0 ms whole).
_DEPTHWISE_BLOCK_BYTES = 128 << 10


def conv_backward_weights(problem, x, dy):
    if problem.kind != "conv":
        raise ValueError(
            "conv_backward_weights takes a problem of kind 'conv' (a transposed convolution's kernel gradient is "
            f"that of problem.adjoint()); received problem.kind={problem.kind!r}"
        )
    for name, a, shape in (("x", x, problem.input_shape), ("dy", dy, problem.output_shape)):
        if tuple(a.shape) != tuple(shape):
            raise ValueError(f"Expected `{name}` of shape {tuple(shape)} for {problem}; "
                             f"received {name}.shape={a.shape}")
    ctype = compute_dtype(problem.dtype)
    plan = WindowPlan(x, problem.kernel_size, problem.strides, problem.dilation, problem.padding,
                      problem.out_spatial, problem.channels_last, ctype.itemsize)
    grad = np.zeros(problem.kernel_shape, ctype)
    if all(t > 0 for t in plan.taps):
        live = tuple(slice(lo, hi) for lo, hi in plan.live)
        depthwise = problem.channels_per_group == 1 and problem.groups > 1
        grad[live] = (_depthwise_weights if depthwise else _gemm_weights)(problem, plan, x, dy, ctype)
    _fill_dead_taps(grad, plan, dy, problem.channels_last)
    return grad.astype(problem.dtype, copy=False)


def _pieces(problem, plan, ctype, per_position_bytes):
    """``(bs, rs, xs, pad)`` per piece of output rows: ``per_position_bytes`` is what one output
    position of one item costs beside its padded input rows (columns, the cast ``dy``)."""
    row_positions = math.prod(plan.out_sp[1:])
    row_bytes = plan.row_bytes + row_positions * per_position_bytes
    for bs, rs in memory.chunks(problem.batch, plan.out_sp[0], row_bytes, memory.chunk_limit(), plan.item_bytes):
        xs, pad = plan.piece(bs, rs)
        yield bs, rs, xs, pad


def _trimmed(view, lead, out_extents):
    """A window view cut to the piece's outputs: the whole-output piece of a problem whose input
    is longer than its windows read (an adjoint with output padding) has more windows."""
    return view[(slice(None),) * lead + tuple(slice(0, o) for o in out_extents)]


def _gemm_weights(problem, plan, x, dy, ctype):
    """The live taps' gradient ``(*taps, Cg, F)`` by one GEMM per group and piece."""
    rank, groups, channels_last = problem.rank, problem.groups, problem.channels_last
    cg, fg, filters = problem.channels_per_group, problem.filters_per_group, problem.out_channels
    live_taps = plan.taps
    n_taps = math.prod(live_taps)
    axes = spatial_axes(rank, channels_last)
    pads, columns, gradients = memory.Scratch(ctype), memory.Scratch(ctype), memory.Scratch(ctype)
    acc = None
    per_position = (n_taps * problem.in_channels + filters) * ctype.itemsize
    for bs, rs, xs, pad in _pieces(problem, plan, ctype, per_position):
        nb = bs.stop - bs.start
        out_ext = (rs.stop - rs.start,) + plan.out_sp[1:]
        m = nb * math.prod(out_ext)
        if channels_last:
            xp = _group_major_padded(xs, pad, axes, ctype, groups, pads)  # (G, nb, *spatial, Cg)
            view = windows(xp, tuple(a + 1 for a in axes), live_taps, problem.strides, problem.dilation)
            view = np.moveaxis(_trimmed(view, 2, out_ext), rank + 2, -1)  # (G, nb, *O, *k, Cg)
            cols = channels_last_columns(columns, view, rank, m).transpose(0, 2, 1)  # (G, K*Cg, M)
            # (nb, *O, G, Fg) -> (G, M, Fg): a strided view BLAS reads directly
            d = dy[bs, rs].reshape(m, groups, fg).transpose(1, 0, 2).astype(ctype, copy=False)
        else:
            xp = padded(xs, pad, axes, ctype, scratch=pads)  # (nb, C, *spatial)
            view = _trimmed(windows(xp, axes, live_taps, problem.strides, problem.dilation), 2, out_ext)
            # (nb, G, Cg, *O, *k) -> (G, *k, Cg, nb, *O): rows in the kernel's (*k, Cg) order
            v = view.reshape((nb, groups, cg) + out_ext + tuple(live_taps))
            k_axes = tuple(range(3 + rank, 3 + 2 * rank))
            v = v.transpose((1,) + k_axes + (2, 0) + tuple(range(3, 3 + rank)))
            cols = columns.gather(v, (groups, n_taps * cg, m))
            # (nb, G, Fg, P) -> (G, Fg, nb, P), one copy (in the compute dtype), read as (G, M, Fg)
            dp = dy[bs, :, rs].reshape(nb, groups, fg, -1).transpose(1, 2, 0, 3)
            d = np.ascontiguousarray(dp, dtype=ctype).reshape(groups, fg, m).transpose(0, 2, 1)
        if acc is None:
            acc = np.matmul(cols, d)  # (G, K*Cg, Fg)
        else:
            np.add(acc, np.matmul(cols, d, out=gradients.take(acc.shape)), out=acc)
    # (G, K*Cg, Fg) -> (*taps, Cg, G*Fg)
    return acc.transpose(1, 0, 2).reshape(tuple(live_taps) + (cg, filters))


def _depthwise_weights(problem, plan, x, dy, ctype):
    """The live taps' gradient ``(*taps, 1, C*dm)`` of a conv with one channel per group: einsum
    over the window cells of fixed blocks of output rows, every channel at once (memory-bound,
    no GEMM). The blocks depend only on the geometry, each yields its own partial sum, and the
    partials are added in block order, so threads change nothing but the speed."""
    rank, channels_last = problem.rank, problem.channels_last
    c, dm = problem.in_channels, problem.filters_per_group
    axes = spatial_axes(rank, channels_last)
    live_taps, strides, dilation = plan.taps, problem.strides, problem.dilation
    tap_list = list(taps(live_taps))
    acc = np.zeros(tuple(live_taps) + (c, dm), ctype)
    pads = memory.Scratch(ctype)
    sp = "".join(chr(ord("h") + i) for i in range(rank))  # spatial subscripts h, i, j
    ks = "".join(chr(ord("r") + i) for i in range(rank))  # tap subscripts r, s, t
    # channels_last reads the whole window view in one einsum ('n<sp>c<k>,n<sp>cm'); measured on
    # bench row W1 that is 2.0 ms against 3.4 ms for a loop over taps. channels_first keeps the
    # loop over taps ('nc<sp>,ncm<sp>'): there one einsum over the window view was 11 ms.
    window_formula = f"n{sp}c{ks},n{sp}cm->{ks}cm"
    tap_formula = f"nc{sp},ncm{sp}->cm"
    # Blocks: channels_last cuts runs of output rows (all channels), channels_first runs of
    # channels (whole planes), so einsum's inner loops stay long.
    plane_bytes = math.prod(plan.out_sp) * dm * ctype.itemsize
    if channels_last:
        rows_per_block = max(1, _DEPTHWISE_BLOCK_BYTES // max(plane_bytes // plan.out_sp[0] * c, 1))
        channels_per_block = c
    else:
        rows_per_block = plan.out_sp[0]
        channels_per_block = max(1, _DEPTHWISE_BLOCK_BYTES // max(plane_bytes, 1))
    for bs, rs, xs, pad in _pieces(problem, plan, ctype, 2 * c * dm * ctype.itemsize):
        nb, rows = bs.stop - bs.start, rs.stop - rs.start
        xp = padded(xs, pad, axes, ctype, scratch=pads)
        if channels_last:
            d = dy[bs, rs].reshape((nb, rows) + plan.out_sp[1:] + (c, dm))
        else:
            d = dy[bs, :, rs].reshape((nb, c, dm, rows) + plan.out_sp[1:])
        d = d.astype(ctype, copy=False)
        blocks = [(b, r, min(r + rows_per_block, rows), slice(c0, min(c0 + channels_per_block, c)))
                  for b in range(nb) for r in range(0, rows, rows_per_block) for c0 in range(0, c, channels_per_block)]
        partials = [None] * len(blocks)

        def run_block(i):
            b, r0, r1, cs = blocks[i]
            ext = (r1 - r0,) + plan.out_sp[1:]
            if channels_last:  # the input rows of output rows r0..r1 of item b, and their dy
                xb, db = xp[b:b + 1, r0 * strides[0]:], d[b:b + 1, r0:r1]
                view = windows(xb, axes, live_taps, strides, dilation)
                partials[i] = np.einsum(window_formula, _trimmed(view, 1, ext), db)
                return
            xb, db = xp[b:b + 1, cs], d[b:b + 1, cs]
            part = np.empty((len(tap_list), cs.stop - cs.start, dm), ctype)
            for j, t in enumerate(tap_list):
                np.einsum(tap_formula, xb[tap_slices(t, axes, xb.ndim, ext, strides, dilation)], db, out=part[j])
            partials[i] = part.reshape(tuple(live_taps) + part.shape[1:])

        work = (xp.nbytes + d.nbytes) * len(tap_list)
        if _parallel.threads_for(work) > 1:
            _parallel.run(run_block, range(len(blocks)))
        else:
            for i in range(len(blocks)):
                run_block(i)
        for (_, _, _, cs), part in zip(blocks, partials):  # in block order: a fixed sum
            acc[..., cs, :] += part
    return acc.reshape(tuple(live_taps) + (1, c * dm))


def _fill_dead_taps(grad, plan, dy, channels_last):
    """NaN in the taps never computed (they read only padding), for each filter whose ``dy``
    holds a NaN or an Inf: their gradient is a sum of 0 * dy."""
    dead = np.ones(grad.shape[:len(plan.taps)], bool)
    dead[tuple(slice(lo, hi) for lo, hi in plan.live)] = False
    if not dead.any():
        return
    other = tuple(i for i in range(dy.ndim) if i != (dy.ndim - 1 if channels_last else 1))
    poisoned = ~np.isfinite(dy).all(axis=other)  # per filter
    if poisoned.any():
        cells = grad[dead]
        cells[..., poisoned] = np.nan
        grad[dead] = cells

"""The array functions a loss or a custom training step needs, under ``keras.ops``' names, each
recorded on the active ``GradientTape`` (exported as ``gpuconv.ops.<name>``).

Why a module of its own: plain NumPy / CuPy operators on arrays leave no trace the tape can
follow; these functions compute the same numbers with the operand's array module (NumPy, CuPy,
the emulator's xp) and, when a tape tracks an operand, record the exact backward.

Choices where the derivative is not unique (documented, tested at exactly the point):
- ``maximum`` / ``minimum`` at a tie give half the gradient to each operand (as PyTorch and JAX).
- ``clip`` passes the gradient at the bounds (``x_min <= x <= x_max``, PyTorch's clamp); the
  bounds are constants.
- ``max`` / ``min`` give the whole gradient to the FIRST occurrence of the extreme in row-major
  order over the reduced axes (the issue's max-pool rule; a NaN is the maximum and the minimum).
- ``abs'(0) = 0``; ``sqrt'(0) = inf`` (as PyTorch).
- ``power``: no gradient to the base where the exponent is 0, none to the exponent where the
  base is 0 and the exponent >= 0 (PyTorch's pow). ``normalize`` keeps a zero vector's gradient
  finite (Keras' rsqrt form gives NaN there).
- ``where``'s condition, ``one_hot`` and integer indices carry no gradient.
16-bit float (float16, bfloat16) reductions and matmul accumulate in float32 and round once.
Broadcasting in the binary ops is undone in the backward by summing over the broadcast axes.
"""
import builtins
import numbers

import numpy as np

from .. import activations as _activations
from .. import arrays as _arrays
from .. import dtypes as _dtypes
from . import tape as _ad

__all__ = [
    "add", "subtract", "multiply", "divide", "negative", "square", "sqrt", "exp", "log", "log1p", "abs",
    "maximum", "minimum", "clip", "where", "sum", "mean", "max", "min", "matmul", "reshape", "transpose",
    "concatenate", "stack", "squeeze", "expand_dims", "take", "take_along_axis", "one_hot", "softmax",
    "log_softmax", "logsumexp", "cast", "power", "normalize",
]

_F32 = np.dtype("float32")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def _is_array(x):
    return isinstance(x, np.ndarray) or _arrays.is_cupy_array(x)


def _operand(x):
    """Arrays pass; Python / NumPy scalars stay scalars (NumPy's weak typing keeps the array's
    dtype); anything else (lists) becomes a NumPy array."""
    if _is_array(x) or isinstance(x, (numbers.Number, np.generic)):
        return x
    if x is None:
        raise TypeError("Expected an array or a scalar operand. Received: None")
    return np.asarray(x)


def _xp(*values):
    for v in values:
        if _is_array(v):
            return _arrays.array_module(v)
    return np


def _arr(x):
    return x if _is_array(x) else None


def _input(x):
    """(xp, ``x`` as an array of its module) for a one-operand function."""
    x = _operand(x)
    xp = _xp(x)
    return xp, xp.asarray(x)


def _gather_axis(x, axis):
    """(the array indexed, its axis, that axis' size) for take / take_along_axis (axis=None:
    the flattened array)."""
    src = x.reshape(-1) if axis is None else x
    ax = 0 if axis is None else int(axis) % x.ndim
    return src, ax, src.shape[ax]


def _record(inputs, output, backward):
    if _ad.recording(*inputs):
        if not _is_array(output):  # a NumPy ufunc on a 0-d array returns a scalar: the tape needs an array
            output = _xp(*inputs).asarray(output)
        _ad.record(inputs, output, backward)
    return output


def _work(dtype):
    """16-bit floats are computed in float32 (rounded once at the end)."""
    return _dtypes.accumulation_dtype(dtype)


def _norm_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"Argument `axis` is out of bounds for an array of rank {ndim}. Received: axis={axis}")
        out.append(int(a) % builtins.max(ndim, 1))
    return tuple(sorted(set(out)))


def _unbroadcast(g, shape):
    """Sum ``g`` over the axes broadcasting added or stretched, back to ``shape``."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    dtype = _F32 if _dtypes.is_16bit_float(g.dtype) else None
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(lead)), dtype=dtype)
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True, dtype=dtype)
    return g.reshape(shape)


def _grad(a, g):
    """``g`` reduced to ``a``'s shape, or None for a scalar or a non-float operand."""
    if not _is_array(a) or not _dtypes.is_float(a.dtype):
        return None
    return _unbroadcast(g, a.shape)


def _expand(g, shape, axes, keepdims):
    """A reduction's output gradient, broadcast back over the reduced ``axes`` of ``shape``."""
    xp = _arrays.array_module(g)
    if not keepdims:
        g = g.reshape(tuple(1 if i in axes else d for i, d in enumerate(shape)))
    return xp.broadcast_to(g, shape)


# --------------------------------------------------------------------------------------------
# Elementwise binary
# --------------------------------------------------------------------------------------------
def _binary(x1, x2, forward, backward_of):
    """``forward(xp, a, b)`` on the operands; ``backward_of(a, b, y)`` makes the backward, only
    when a tape tracks an operand (so a backward's masks are never built for inference)."""
    a, b = _operand(x1), _operand(x2)
    xp = _xp(a, b)
    with np.errstate(all="ignore"):
        y = forward(xp, a, b)
    y = y if _is_array(y) else xp.asarray(y)
    if not _ad.recording(_arr(a), _arr(b)):
        return y
    return _record((_arr(a), _arr(b)), y, backward_of(a, b, y))


def add(x1, x2):
    return _binary(x1, x2, lambda xp, a, b: xp.add(a, b), lambda a, b, y: lambda g: (_grad(a, g), _grad(b, g)))


def subtract(x1, x2):
    return _binary(x1, x2, lambda xp, a, b: xp.subtract(a, b), lambda a, b, y: lambda g: (_grad(a, g), _grad(b, -g)))


def multiply(x1, x2):
    return _binary(x1, x2, lambda xp, a, b: xp.multiply(a, b),
                   lambda a, b, y: lambda g: (_grad(a, g * b), _grad(b, g * a)))


def _divide_backward(a, b, y):
    def backward(g):
        with np.errstate(all="ignore"):
            return _grad(a, g / b), _grad(b, -g * y / b)

    return backward


def divide(x1, x2):
    return _binary(x1, x2, lambda xp, a, b: xp.true_divide(a, b), _divide_backward)


def _power_backward(a, b, y):
    """PyTorch's pow backward: d/da = b a^(b-1), zero where b == 0 (so 0^0 has no inf * 0);
    d/db = y log(a), zero where a == 0 and b >= 0 (the limit of a^b log a)."""
    xp = _xp(a, b)

    def backward(g):
        with np.errstate(all="ignore"):
            ga = gb = None
            if _arr(a) is not None and _dtypes.is_float(a.dtype):
                ga = _grad(a, g * xp.where(xp.asarray(b) == 0, 0, b * xp.power(a, b - 1)).astype(g.dtype, copy=False))
            if _arr(b) is not None and _dtypes.is_float(b.dtype):
                zero_base = (xp.asarray(a) == 0) & (xp.asarray(b) >= 0)
                gb = _grad(b, g * xp.where(zero_base, 0, y * xp.log(a)).astype(g.dtype, copy=False))
            return ga, gb

    return backward


def power(x1, x2):
    """``x1 ** x2`` (NumPy's power; a Python scalar exponent keeps the array's dtype)."""
    return _binary(x1, x2, lambda xp, a, b: xp.power(a, b), _power_backward)


def _tie_split(wins):
    """The backward of maximum/minimum: the operand ``wins(a, b)`` picks (a NaN ``a`` wins, as
    the forward propagates it) gets the gradient, each gets half at a tie."""
    def backward_of(a, b, y):
        xp = _xp(a, b)
        with np.errstate(invalid="ignore"):
            pick_a = xp.asarray(wins(a, b) | xp.isnan(xp.asarray(a)))

        def backward(g):
            tie = a == b
            wa = pick_a.astype(g.dtype) + 0.5 * tie.astype(g.dtype)
            wb = (~pick_a & ~tie).astype(g.dtype) + 0.5 * tie.astype(g.dtype)
            return _grad(a, g * wa), _grad(b, g * wb)

        return backward

    return backward_of


def maximum(x1, x2):
    return _binary(x1, x2, lambda xp, a, b: xp.maximum(a, b), _tie_split(lambda a, b: a > b))


def minimum(x1, x2):
    return _binary(x1, x2, lambda xp, a, b: xp.minimum(a, b), _tie_split(lambda a, b: a < b))


def where(condition, x1=None, x2=None):
    """``x1`` where ``condition`` else ``x2``; the condition is a constant."""
    if x1 is None and x2 is None:
        cond = _operand(condition)
        return _xp(cond).nonzero(cond)
    if x1 is None or x2 is None:
        raise ValueError("`x1` and `x2` either both should be `None` or both should have non-None value.")
    cond, a, b = _operand(condition), _operand(x1), _operand(x2)
    xp = _xp(a, b, cond)
    y = xp.where(cond, a, b)
    y = y if _is_array(y) else xp.asarray(y)

    def backward(g):
        c = xp.asarray(cond).astype(bool)
        zero = xp.zeros((), dtype=g.dtype)
        return _grad(a, xp.where(c, g, zero)), _grad(b, xp.where(c, zero, g))

    return _record((_arr(a), _arr(b)), y, backward)


# --------------------------------------------------------------------------------------------
# Elementwise unary
# --------------------------------------------------------------------------------------------
def _unary(x, forward, derivative):
    """``forward(xp, x)``; backward ``g * derivative(xp, x, y)`` (computed only when recording)."""
    xp, x = _input(x)
    with np.errstate(all="ignore"):
        y = forward(xp, x)

    def backward(g):
        with np.errstate(all="ignore"):
            return (_grad(x, g * derivative(xp, x, y)),)

    return _record((x,), y, backward)


def negative(x):
    return _unary(x, lambda xp, x: xp.negative(x), lambda xp, x, y: -1)


def square(x):
    return _unary(x, lambda xp, x: xp.square(x), lambda xp, x, y: 2 * x)


def sqrt(x):
    return _unary(x, lambda xp, x: xp.sqrt(x), lambda xp, x, y: 0.5 / y)


def exp(x):
    return _unary(x, lambda xp, x: xp.exp(x), lambda xp, x, y: y)


def log(x):
    return _unary(x, lambda xp, x: xp.log(x), lambda xp, x, y: 1 / x)


def log1p(x):
    return _unary(x, lambda xp, x: xp.log1p(x), lambda xp, x, y: 1 / (1 + x))


def abs(x):  # noqa: A001  (keras.ops' name)
    return _unary(x, lambda xp, x: xp.abs(x), lambda xp, x, y: xp.sign(x))


def clip(x, x_min, x_max):
    """Clamp to [x_min, x_max]; the gradient passes where x_min <= x <= x_max (PyTorch's clamp)."""
    return _unary(
        x,
        lambda xp, x: xp.clip(x, x_min, x_max),
        lambda xp, x, y: ((x >= x_min) & (x <= x_max)).astype(x.dtype),
    )


def cast(x, dtype):
    """``x`` in ``dtype``; the gradient comes back in ``x``'s dtype (none to an integer ``x``)."""
    xp, x = _input(x)
    y = x.astype(dtype, copy=False)
    if y is x or not _ad.recording(x):
        return y
    return _record((x,), y, lambda g: (g.astype(x.dtype) if _dtypes.is_float(x.dtype) else None,))


# --------------------------------------------------------------------------------------------
# Reductions
# --------------------------------------------------------------------------------------------
def sum(x, axis=None, keepdims=False):  # noqa: A001
    xp, x = _input(x)
    axes = _norm_axes(axis, x.ndim)
    acc = _F32 if _dtypes.is_16bit_float(x.dtype) else None
    y = xp.asarray(x.sum(axis=axes, keepdims=keepdims, dtype=acc))
    if acc is not None:
        y = y.astype(x.dtype)
    return _record((x,), y, lambda g: (_grad(x, _expand(g, x.shape, axes, keepdims)),))


def mean(x, axis=None, keepdims=False):
    xp, x = _input(x)
    axes = _norm_axes(axis, x.ndim)
    acc = _F32 if _dtypes.is_16bit_float(x.dtype) else None
    with np.errstate(all="ignore"):
        y = xp.asarray(x.mean(axis=axes, keepdims=keepdims, dtype=acc))
    if acc is not None:
        y = y.astype(x.dtype)
    count = int(np.prod([x.shape[a] for a in axes])) if axes else 1

    def backward(g):
        return (_grad(x, _expand(g / count, x.shape, axes, keepdims)),)

    return _record((x,), y, backward)


def _extreme(x, axis, keepdims, pick, arg_pick):
    xp, x = _input(x)
    axes = _norm_axes(axis, x.ndim)
    y = xp.asarray(pick(x, axis=axes, keepdims=keepdims))

    def backward(g):
        # The reduced axes moved last and merged: the first extreme in their row-major order.
        rest = tuple(a for a in range(x.ndim) if a not in axes)
        moved = xp.transpose(x, rest + axes).reshape(tuple(x.shape[a] for a in rest) + (-1,))
        first = arg_pick(moved, axis=-1)[..., None]
        gk = g.reshape(tuple(x.shape[a] for a in rest) + (1,))
        onehot = xp.arange(moved.shape[-1]).reshape((1,) * len(rest) + (-1,)) == first
        gm = xp.where(onehot, gk, xp.zeros((), dtype=g.dtype))
        gm = gm.reshape(tuple(x.shape[a] for a in rest + axes))
        inverse = np.argsort(rest + axes)
        return (_grad(x, xp.transpose(gm, tuple(int(i) for i in inverse))),)

    return _record((x,), y, backward)


def max(x, axis=None, keepdims=False):  # noqa: A001
    """The gradient goes to the first maximum (row-major over the reduced axes); NaN is the maximum."""
    return _extreme(x, axis, keepdims, lambda a, **k: a.max(**k), lambda a, axis: _arrays.array_module(a).argmax(a, axis=axis))


def min(x, axis=None, keepdims=False):  # noqa: A001
    """The gradient goes to the first minimum (row-major over the reduced axes); NaN is the minimum."""
    return _extreme(x, axis, keepdims, lambda a, **k: a.min(**k), lambda a, axis: _arrays.array_module(a).argmin(a, axis=axis))


def logsumexp(x, axis=None, keepdims=False):
    xp, x = _input(x)
    axes = _norm_axes(axis, x.ndim)
    w = x.astype(_work(x.dtype), copy=False)
    with np.errstate(all="ignore"):
        m = w.max(axis=axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, xp.zeros((), dtype=m.dtype))  # all -inf rows: no inf - inf
        lse = xp.log(xp.exp(w - m).sum(axis=axes, keepdims=True)) + m
    y = lse if keepdims else lse.reshape(tuple(d for i, d in enumerate(x.shape) if i not in axes))
    y = xp.asarray(y).astype(x.dtype, copy=False)

    def backward(g):
        gk = _expand(g.astype(w.dtype, copy=False), x.shape, axes, keepdims)
        with np.errstate(all="ignore"):
            return (_grad(x, gk * xp.exp(w - lse)),)

    return _record((x,), y, backward)


def normalize(x, axis=-1, order=2, epsilon=None):
    """Keras' ``ops.normalize``: ``x / max(norm(x), epsilon)`` along ``axis`` (epsilon 1e-7 by
    default). ``order=2`` is Keras' ``x * min(rsqrt(sum x^2), 1/epsilon)``, written as
    ``x / sqrt(max(sum x^2, epsilon^2))``: the same numbers, but a zero vector divides by
    epsilon, never by zero, so it stays zero with a finite gradient (rsqrt(0) = inf makes the
    gradient NaN in Keras)."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"Argument `order` must be an int >= 1. Received: order={order}")
    eps = 1e-7 if epsilon is None else float(epsilon)
    xp, x = _input(x)
    if x.ndim == 0:
        x = expand_dims(x, 0)
    if order == 2:
        return divide(x, sqrt(maximum(sum(square(x), axis=axis, keepdims=True), eps * eps)))
    if order == 1:
        norm = sum(abs(x), axis=axis, keepdims=True)
    else:
        norm = power(sum(power(abs(x), float(order)), axis=axis, keepdims=True), 1.0 / order)
    return divide(x, maximum(norm, eps))


def softmax(x, axis=-1):
    return _activations.softmax(x, axis=axis)


def log_softmax(x, axis=-1):
    return _activations.log_softmax(x, axis=axis)


# --------------------------------------------------------------------------------------------
# Linear algebra
# --------------------------------------------------------------------------------------------
def matmul(x1, x2):
    """NumPy's matmul (batched, broadcasting, 1-D operands promoted); 16-bit floats in float32."""
    a, b = _operand(x1), _operand(x2)
    xp = _xp(a, b)
    a, b = xp.asarray(a), xp.asarray(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul needs arrays of rank >= 1. Received shapes {a.shape} and {b.shape}.")
    out_dtype = np.result_type(a.dtype, b.dtype)
    if _dtypes.is_16bit_float(out_dtype):
        y = xp.matmul(a.astype(_F32), b.astype(_F32)).astype(out_dtype)
    else:
        y = xp.asarray(xp.matmul(a, b))

    def backward(g):
        work = _dtypes.accumulation_dtype(g.dtype)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        a2, b2 = a2.astype(work, copy=False), b2.astype(work, copy=False)
        batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
        g2 = g.astype(work, copy=False).reshape(batch + (a2.shape[-2], b2.shape[-1]))
        ga = _unbroadcast(xp.matmul(g2, xp.swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape)
        gb = _unbroadcast(xp.matmul(xp.swapaxes(a2, -1, -2), g2), b2.shape).reshape(b.shape)
        return _grad(a, ga), _grad(b, gb)

    return _record((a, b), y, backward)


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------
def _shape_op(x, forward):
    """An op that only rearranges elements one to one: the gradient is reshaped back."""
    xp, x = _input(x)
    return forward(xp, x), x, xp


def reshape(x, newshape):
    y, x, xp = _shape_op(x, lambda xp, x: xp.reshape(x, newshape))
    return _record((x,), y, lambda g: (_grad(x, g.reshape(x.shape)),))


def squeeze(x, axis=None):
    y, x, xp = _shape_op(x, lambda xp, x: xp.squeeze(x, axis=axis))
    return _record((x,), y, lambda g: (_grad(x, g.reshape(x.shape)),))


def expand_dims(x, axis):
    y, x, xp = _shape_op(x, lambda xp, x: xp.expand_dims(x, axis))
    return _record((x,), y, lambda g: (_grad(x, g.reshape(x.shape)),))


def transpose(x, axes=None):
    y, x, xp = _shape_op(x, lambda xp, x: xp.transpose(x, axes))
    perm = tuple(range(x.ndim))[::-1] if axes is None else tuple(int(a) % builtins.max(x.ndim, 1) for a in axes)
    inverse = tuple(int(i) for i in np.argsort(perm))
    return _record((x,), y, lambda g: (_grad(x, xp.transpose(g, inverse)),))


def _sequence(xs):
    """(xp, the operands as arrays of one module) for concatenate / stack."""
    arrays = [_operand(x) for x in xs]
    xp = _xp(*arrays)
    return xp, [xp.asarray(a) for a in arrays]


def concatenate(xs, axis=0):
    xp, arrays = _sequence(xs)
    y = xp.concatenate(arrays, axis=axis)
    ax = int(axis) % y.ndim
    bounds = np.cumsum([a.shape[ax] for a in arrays])[:-1]

    def backward(g):
        parts = xp.split(g, [int(b) for b in bounds], axis=ax)
        return tuple(_grad(a, p) for a, p in zip(arrays, parts))

    return _record(tuple(arrays), y, backward)


def stack(xs, axis=0):
    xp, arrays = _sequence(xs)
    y = xp.stack(arrays, axis=axis)
    ax = int(axis) % y.ndim

    def backward(g):
        return tuple(_grad(a, xp.take(g, i, axis=ax)) for i, a in enumerate(arrays))

    return _record(tuple(arrays), y, backward)


# --------------------------------------------------------------------------------------------
# Gathers
# --------------------------------------------------------------------------------------------
def _scatter_rows(xp, idx, g, k):
    """out[m, idx[m, j]] += g[m, j] for out of shape (M, k), summed in a fixed order: NumPy's
    ``add.at`` runs sequentially; elsewhere a one-hot product reduced by the library's fixed-order
    sum (never atomics)."""
    m = idx.shape[0]
    if xp is np:
        out = np.zeros((m, k), dtype=g.dtype)
        rows = np.broadcast_to(np.arange(m)[:, None], idx.shape)
        np.add.at(out, (rows, idx), g)
        return out
    onehot = idx[:, :, None] == xp.arange(k)[None, None, :]
    return xp.where(onehot, g[:, :, None], xp.zeros((), dtype=g.dtype)).sum(axis=1)


def _normalize_indices(xp, indices, size, name="indices"):
    idx = xp.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"Argument `{name}` must be an integer array. Received dtype {idx.dtype}")
    return idx % size if size else idx


def take(x, indices, axis=None):
    """``np.take`` (indices wrap negatively as NumPy's); the gradient is scattered back, summed
    over repeated indices."""
    xp, x = _input(x)
    y = xp.take(x, xp.asarray(indices), axis=axis)

    def backward(g):
        if not _dtypes.is_float(x.dtype):
            return (None,)
        flat, ax, k = _gather_axis(x, axis)
        idx = _normalize_indices(xp, indices, k).reshape(-1)
        pre, post = flat.shape[:ax], flat.shape[ax + 1:]
        g3 = g.reshape(pre + (idx.shape[0],) + post)
        g3 = xp.moveaxis(g3, len(pre), -1).reshape(-1, idx.shape[0])
        idx2 = xp.broadcast_to(idx[None, :], g3.shape)
        out = _scatter_rows(xp, idx2, g3, k).reshape(pre + post + (k,))
        return (xp.moveaxis(out, -1, len(pre)).reshape(x.shape),)

    return _record((x,), y, backward)


def take_along_axis(x, indices, axis=None):
    """``np.take_along_axis``; the gradient is scattered back, summed over repeated indices."""
    xp, x = _input(x)
    idx_in = xp.asarray(indices)
    y = xp.take_along_axis(x, idx_in, axis=axis)

    def backward(g):
        if not _dtypes.is_float(x.dtype):
            return (None,)
        src, ax, k = _gather_axis(x, axis)
        idx = xp.moveaxis(_normalize_indices(xp, idx_in, k), ax, -1)
        gm = xp.moveaxis(g, ax, -1)
        lead = np.broadcast_shapes(xp.moveaxis(src, ax, -1).shape[:-1], idx.shape[:-1])
        idx = xp.broadcast_to(idx, lead + idx.shape[-1:]).reshape(-1, idx.shape[-1])
        gm = xp.broadcast_to(gm, lead + gm.shape[-1:]).reshape(-1, gm.shape[-1])
        out = _scatter_rows(xp, idx, gm, k).reshape(lead + (k,))
        out = _unbroadcast(xp.moveaxis(out, -1, ax), src.shape)
        return (out.reshape(x.shape),)

    return _record((x,), y, backward)


def one_hot(x, num_classes, axis=-1, dtype=None):
    """Keras' one_hot (float32 by default; an out-of-range index gives a zero row). A constant:
    nothing is recorded."""
    xp, xi = _input(x)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes <= 0:
        raise ValueError(f"Argument `num_classes` must be a positive integer. Received: num_classes={num_classes}")
    hot = xi[..., None] == xp.arange(int(num_classes)).reshape((1,) * xi.ndim + (-1,))
    out = hot.astype(np.dtype("float32") if dtype is None else dtype)
    return xp.moveaxis(out, -1, axis) if axis not in (-1, out.ndim - 1) else out

"""What every op does after its accumulation: bias, the fused activation, the cast back.

All three run in place on the engine's own accumulation buffer (never on a caller's array).
"""
import numpy as np

from . import _parallel

FUSED_ACTIVATIONS = frozenset({"relu", "sigmoid", "tanh"})


def _sigmoid_(y):
    # exp of -|y| never overflows; the two branches are the same function on their own half-lines.
    e = np.exp(-np.abs(y))
    pos = y >= 0
    np.divide(np.where(pos, 1.0, e), 1.0 + e, out=y, casting="unsafe")
    return y


_APPLY_IN_PLACE = {
    "relu": lambda y: np.maximum(y, 0, out=y),  # NaN stays NaN (np.maximum propagates it)
    "sigmoid": _sigmoid_,
    "tanh": lambda y: np.tanh(y, out=y),
}
assert set(_APPLY_IN_PLACE) == FUSED_ACTIVATIONS


def finish(y, bias, activation, dtype, bias_shape=None):
    """``activation(y + bias)`` cast to ``dtype``. ``y`` is an accumulation buffer owned by the
    engine; ``bias_shape`` is how the bias broadcasts against ``y``."""
    if bias is None and activation is None and y.dtype == dtype:
        return y
    b = None if bias is None else np.asarray(bias, dtype=y.dtype)
    b = b if b is None or bias_shape is None else b.reshape(bias_shape)
    act = None if activation is None else _APPLY_IN_PLACE[activation]
    out = y if y.dtype == dtype else np.empty(y.shape, dtype)

    def slab(idx):
        # bias and activation in place on the accumulator, then the cast: one slab at a time,
        # so each slab is still in cache for the next step. The bias broadcasts from the right,
        # so a slab of leading axes takes it whole; a slab cut on the channel axis takes its part.
        part = y[idx]
        if b is not None:
            part += b[_bias_index(idx, b, y.ndim)]
        if act is not None:
            act(part)
        if out is not y:
            np.copyto(out[idx], part, casting="unsafe")

    _parallel.run(slab, _parallel.slabs(y.shape, 2 * y.nbytes))
    return out


def _bias_index(idx, b, ndim):
    """The part of a right-aligned broadcast ``b`` that lines up with slab ``idx`` of an
    ``ndim``-d array (``idx`` slices one axis, preceded by full slices, or is ``(...,)``)."""
    if idx == (Ellipsis,):
        return Ellipsis
    axis = len(idx) - 1
    b_axis = axis - (ndim - b.ndim)
    if b_axis < 0 or b.shape[b_axis] == 1:
        return Ellipsis
    return (slice(None),) * b_axis + (idx[axis],)


def channel_bias_shape(ndim, channels_last):
    """Broadcast shape of a per-channel ``(F,)`` bias against an ``(N, *spatial, F)`` or
    ``(N, F, *spatial)`` output."""
    return (-1,) if channels_last else (-1,) + (1,) * (ndim - 2)

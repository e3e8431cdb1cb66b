"""What every op does after its accumulation: bias, the fused activation, the cast back.

All three run in place on the engine's own accumulation buffer (never on a caller's array).
"""
import numpy as np

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
    if bias is not None:
        b = np.asarray(bias, dtype=y.dtype)
        y += b.reshape(bias_shape) if bias_shape is not None else b
    if activation is not None:
        _APPLY_IN_PLACE[activation](y)
    return y.astype(dtype, copy=False)


def channel_bias_shape(ndim, channels_last):
    """Broadcast shape of a per-channel ``(F,)`` bias against an ``(N, *spatial, F)`` or
    ``(N, F, *spatial)`` output."""
    return (-1,) if channels_last else (-1,) + (1,) * (ndim - 2)

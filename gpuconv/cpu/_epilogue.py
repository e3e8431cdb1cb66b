"""What every op does after its accumulation: bias, the fused activation, the cast to the output.

All three run in place on the engine's own accumulation buffer (never on a caller's array), in
slabs small enough that the activation's temporaries stay inside the working-buffer share of the
budget (``memory.chunk_limit``) on all threads together.
"""
import numpy as np

from . import _parallel, memory

FUSED_ACTIVATIONS = frozenset({"relu", "sigmoid", "tanh"})

# Slab-sized temporaries the costliest activation (sigmoid) allocates.
_ACTIVATION_TEMPORARIES = 3
# Slabs are never cut smaller than this (a one-byte budget still computes, a few KiB at a time).
_MIN_SLAB_BYTES = 4096


def _sigmoid_(y):
    # exp of -|y| never overflows; the two branches are the same function on their own half-lines.
    e = np.abs(y)
    np.negative(e, out=e)
    np.exp(e, out=e)
    numerator = np.where(y >= 0, 1.0, e)
    np.add(e, 1.0, out=e)
    np.divide(numerator, e, out=y, casting="unsafe")
    return y


_APPLY_IN_PLACE = {
    "relu": lambda y: np.maximum(y, 0, out=y),  # NaN stays NaN (np.maximum propagates it)
    "sigmoid": _sigmoid_,
    "tanh": lambda y: np.tanh(y, out=y),
}
assert set(_APPLY_IN_PLACE) == FUSED_ACTIVATIONS


def finish(acc, bias, activation, out):
    """``out[...] = activation(acc + bias)``, cast to ``out``'s dtype. ``acc`` is an accumulation
    buffer owned by the engine (``out`` itself when no cast is needed); ``bias`` is None or an
    array that broadcasts against ``acc`` from the right (a broadcast view of the output is fine)."""
    if bias is None and activation is None and acc is out:
        return out
    b = None if bias is None else np.broadcast_to(bias, acc.shape)
    act = None if activation is None else _APPLY_IN_PLACE[activation]

    def slab(idx):
        # bias and activation in place on the accumulator, then the cast: one slab at a time,
        # so each slab is still in cache for the next step.
        part = acc[idx]
        if b is not None:
            np.add(part, b[idx], out=part, casting="unsafe")
        if act is not None:
            act(part)
        if out is not acc:
            np.copyto(out[idx], part, casting="unsafe")

    threads = _parallel.threads_for(2 * acc.nbytes)
    slab_bytes = max(_MIN_SLAB_BYTES, memory.chunk_limit() // (_ACTIVATION_TEMPORARIES * threads))
    _parallel.run(slab, _parallel.bounded_slabs(acc.shape, acc.itemsize, slab_bytes, threads))
    return out


def channel_bias_shape(ndim, channels_last):
    """Broadcast shape of a per-channel ``(F,)`` bias against an ``(N, *spatial, F)`` or
    ``(N, F, *spatial)`` output."""
    return (-1,) if channels_last else (-1,) + (1,) * (ndim - 2)

"""Keras' three gradient clippings (``clipnorm``, ``global_clipnorm``, ``clipvalue``) as
array-module-generic code, so they run where the gradients are (NumPy, CuPy, the emulator)
without a kernel; each follows Keras' order of operations in the gradient's dtype."""
from ..arrays import array_module


def _scalar(like, value):
    """``value`` as a 0-d array of ``like``'s dtype on its device (Keras casts Python floats)."""
    return array_module(like).asarray(value, dtype=like.dtype)


def clip_by_norm(g, clipnorm):
    """``g * clipnorm / max(||g||, clipnorm)``; a zero gradient stays zero (Keras' two-tap where)."""
    xp = array_module(g)
    l2sum = xp.sum(xp.square(g), keepdims=True)
    l2norm = xp.where(l2sum > 0, xp.sqrt(xp.where(l2sum > 0, l2sum, xp.ones_like(l2sum))), l2sum)
    limit = _scalar(g, clipnorm)
    return (g * limit) / xp.maximum(l2norm, limit)


def clip_by_global_norm(grads, clipnorm):
    """Every gradient times ``clipnorm * min(1 / norm, 1 / clipnorm)`` (the norm over all of
    them); a non-finite norm makes the scale NaN, as in Keras."""
    first = grads[0]
    xp = array_module(first)
    squared = xp.stack([xp.sum(xp.square(g)) for g in grads])
    norm = xp.sqrt(xp.sum(squared))
    scale = _scalar(first, clipnorm) * xp.minimum(_scalar(first, 1.0) / norm, _scalar(first, 1.0 / clipnorm))
    scale = scale + (norm - norm)
    return [g * scale.astype(g.dtype) for g in grads]


def clip_by_value(g, clipvalue):
    xp = array_module(g)
    return xp.clip(g, _scalar(g, -clipvalue), _scalar(g, clipvalue))


def clip_gradients(grads, clipnorm, global_clipnorm, clipvalue):
    """The clipping an optimizer's arguments ask for (at most one is set), as Keras chooses it."""
    if clipnorm and clipnorm > 0:
        return [clip_by_norm(g, clipnorm) for g in grads]
    if global_clipnorm and global_clipnorm > 0:
        return clip_by_global_norm(grads, global_clipnorm)
    if clipvalue and clipvalue > 0:
        return [clip_by_value(g, clipvalue) for g in grads]
    return list(grads)

"""Keras 3's weight constraints: MaxNorm, MinMaxNorm, NonNeg, UnitNorm.

A constraint maps a weight array (NumPy or CuPy) to its projected value of the same shape and
dtype. Norms are taken over ``axis`` (default 0: for a Dense kernel (in, units) that is each
unit's incoming weight vector; for a Conv2D kernel (kh, kw, in, out) use axis=[0, 1, 2]).
Formulas, epsilon, configs and names follow Keras 3.15 (``keras/src/constraints``).
"""
import numpy as np

from . import arrays as _arrays
from . import dtypes as _dtypes
from .serialization import get_object, registry, serialize_object, deserialize_object

_KIND = "constraint"
_MODULE = "keras.constraints"
_EPSILON = 1e-7  # keras.config.epsilon()


def _axis(axis):
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


def _prepare(w):
    """(xp, w) with ``w`` an array of a float dtype."""
    xp = _arrays.array_module(w)
    w = xp.asarray(w)
    if not _dtypes.is_float(w.dtype):
        w = w.astype(np.float32)
    return xp, w


def _norms(xp, w, axis):
    return xp.sqrt(xp.sum(w * w, axis=_axis(axis), keepdims=True))


class Constraint:
    """Base class: the identity."""

    def __call__(self, w):
        return w

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


class MaxNorm(Constraint):
    """Rescale each slice whose L2 norm over ``axis`` exceeds ``max_value`` down to it."""

    def __init__(self, max_value=2, axis=0):
        self.max_value = max_value
        self.axis = axis

    def __call__(self, w):
        xp, w = _prepare(w)
        norms = _norms(xp, w, self.axis)
        desired = xp.clip(norms, 0, self.max_value)
        return (w * (desired / (_EPSILON + norms))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class MinMaxNorm(Constraint):
    """Move each slice's norm towards [min_value, max_value] by ``rate`` (1 = clip exactly)."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate
        self.axis = axis

    def __call__(self, w):
        xp, w = _prepare(w)
        norms = _norms(xp, w, self.axis)
        desired = self.rate * xp.clip(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        return (w * (desired / (_EPSILON + norms))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate, "axis": self.axis}


class NonNeg(Constraint):
    """Negative entries become zero."""

    def __call__(self, w):
        xp, w = _prepare(w)
        return xp.maximum(w, 0).astype(w.dtype, copy=False)


class UnitNorm(Constraint):
    """Each slice divided by its L2 norm over ``axis`` (plus epsilon)."""

    def __init__(self, axis=0):
        self.axis = axis

    def __call__(self, w):
        xp, w = _prepare(w)
        return (w / (_EPSILON + _norms(xp, w, self.axis))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"axis": self.axis}


ALL_OBJECTS_DICT = registry([Constraint, MaxNorm, MinMaxNorm, NonNeg, UnitNorm])

max_norm, min_max_norm, non_neg, unit_norm = MaxNorm, MinMaxNorm, NonNeg, UnitNorm


def serialize(constraint):
    return serialize_object(constraint, _MODULE)


def deserialize(config, custom_objects=None):
    """The object a Keras config dict describes (built-ins, or objects the caller supplies)."""
    return deserialize_object(config, ALL_OBJECTS_DICT, _KIND, custom_objects)


def get(identifier, custom_objects=None):
    """Keras' ``constraints.get``: None, a name, a config dict, a class, an instance or a callable."""
    return get_object(identifier, ALL_OBJECTS_DICT, _KIND, custom_objects)

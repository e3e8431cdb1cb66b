"""Keras 3.15's regression losses as functions of ``(y_true, y_pred)``: per-sample values, the
mean (or sum) over the last axis, with Keras' epsilons and formulas (``keras/src/losses/losses.py``).

Why a module of its own: these are the losses of real-valued targets, written once with the
recorded functions so ``GradientTape`` differentiates them; the classes in ``wrappers`` and the
metrics reuse them.
"""
import numpy as np

from .. import activations as _activations
from .. import arrays as _arrays
from ..autodiff import functions as F
from .loss import EPSILON, check_number, prepare

# Keras computes these in float32 and casts them to y_pred's dtype (convert_to_tensor of a
# Python float is floatx): a float64 loss sees the float32-rounded constants, as Keras' does.
_EPSILON_F32 = float(np.float32(EPSILON))
_LOG2_F32 = float(np.log(np.float32(2.0)))

__all__ = [
    "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error", "mean_squared_logarithmic_error",
    "cosine_similarity", "huber", "log_cosh",
]


def mean_squared_error(y_true, y_pred):
    """``mean(square(y_true - y_pred), axis=-1)``."""
    y_true, y_pred = prepare(y_true, y_pred)
    return F.mean(F.square(F.subtract(y_true, y_pred)), axis=-1)


def mean_absolute_error(y_true, y_pred):
    """``mean(abs(y_true - y_pred), axis=-1)``."""
    y_true, y_pred = prepare(y_true, y_pred)
    return F.mean(F.abs(F.subtract(y_true, y_pred)), axis=-1)


def mean_absolute_percentage_error(y_true, y_pred):
    """``100 * mean(abs((y_true - y_pred) / max(abs(y_true), epsilon)), axis=-1)``."""
    y_true, y_pred = prepare(y_true, y_pred)
    diff = F.abs(F.divide(F.subtract(y_true, y_pred), F.maximum(F.abs(y_true), EPSILON)))
    return F.multiply(100.0, F.mean(diff, axis=-1))


def mean_squared_logarithmic_error(y_true, y_pred):
    """``mean(square(log(max(y_pred, eps) + 1) - log(max(y_true, eps) + 1)), axis=-1)``."""
    y_true, y_pred = prepare(y_true, y_pred)
    first_log = F.log(F.add(F.maximum(y_pred, _EPSILON_F32), 1.0))
    second_log = F.log(F.add(F.maximum(y_true, _EPSILON_F32), 1.0))
    return F.mean(F.square(F.subtract(first_log, second_log)), axis=-1)


def cosine_similarity(y_true, y_pred, axis=-1):
    """``-sum(l2_normalize(y_true) * l2_normalize(y_pred), axis)``: -1 for parallel vectors, 0
    for orthogonal ones (and for a zero vector)."""
    y_true, y_pred = prepare(y_true, y_pred)
    y_pred = F.normalize(y_pred, axis=axis)
    y_true = F.normalize(y_true, axis=axis)
    return F.negative(F.sum(F.multiply(y_true, y_pred), axis=axis))


def huber(y_true, y_pred, delta=1.0):
    """``0.5 e^2`` where ``|e| <= delta``, else ``delta |e| - 0.5 delta^2`` (``e = y_pred - y_true``),
    averaged over the last axis."""
    check_number(delta, "delta", low=0)
    y_true, y_pred = prepare(y_true, y_pred)
    # Keras forms delta and 0.5 * delta**2 in y_pred's dtype
    d = _arrays.array_module(y_pred).asarray(delta, dtype=y_pred.dtype)
    error = F.subtract(y_pred, y_true)
    abs_error = F.abs(error)
    quadratic = F.multiply(0.5, F.square(error))
    linear = F.subtract(F.multiply(d, abs_error), d * d * y_pred.dtype.type(0.5))
    return F.mean(F.where(abs_error <= d, quadratic, linear), axis=-1)


def log_cosh(y_true, y_pred):
    """``mean(log(cosh(y_pred - y_true)), axis=-1)``, as ``x + softplus(-2x) - log(2)`` (no
    overflow for large errors)."""
    y_true, y_pred = prepare(y_true, y_pred)
    x = F.subtract(y_pred, y_true)
    value = F.subtract(F.add(x, _activations.softplus(F.multiply(x, -2.0))), _LOG2_F32)
    return F.mean(value, axis=-1)

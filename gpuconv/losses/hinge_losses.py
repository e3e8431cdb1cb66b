"""Keras 3.15's hinge losses (maximum-margin classification): hinge, squared_hinge and
categorical_hinge, with Keras' label rule (labels that are all 0 or 1 become -1 / 1).

Why a module of its own: they share that rule and the margin ``max(1 - y_true * y_pred, 0)``;
written with the recorded functions so ``GradientTape`` differentiates them.
"""
from ..autodiff import functions as F
from .loss import prepare

__all__ = ["hinge", "squared_hinge", "categorical_hinge"]


def _signed_labels(y_true):
    """``2 y - 1`` when every label is 0 or 1, else the labels as given (Keras'
    ``convert_binary_labels_to_hinge``). The test stays on ``y_true``'s device: no host sync."""
    is_binary = ((y_true == 0) | (y_true == 1)).all()
    return F.where(is_binary, F.subtract(F.multiply(2.0, y_true), 1.0), y_true)


def _margin(y_true, y_pred):
    y_true, y_pred = prepare(y_true, y_pred, align=False)
    return F.maximum(F.subtract(1.0, F.multiply(_signed_labels(y_true), y_pred)), 0.0)


def hinge(y_true, y_pred):
    """``mean(max(1 - y_true * y_pred, 0), axis=-1)``."""
    return F.mean(_margin(y_true, y_pred), axis=-1)


def squared_hinge(y_true, y_pred):
    """``mean(square(max(1 - y_true * y_pred, 0)), axis=-1)``."""
    return F.mean(F.square(_margin(y_true, y_pred)), axis=-1)


def categorical_hinge(y_true, y_pred):
    """``max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0)`` over the last axis
    (one-hot ``y_true``; no label conversion)."""
    y_true, y_pred = prepare(y_true, y_pred, align=False)
    pos = F.sum(F.multiply(y_true, y_pred), axis=-1)
    neg = F.max(F.multiply(F.subtract(1.0, y_true), y_pred), axis=-1)
    return F.maximum(F.add(F.subtract(neg, pos), 1.0), 0.0)

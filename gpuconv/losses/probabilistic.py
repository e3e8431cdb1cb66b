"""Keras 3.15's probabilistic losses: the crossentropies (sparse, categorical, binary and the
focal variants), KL divergence and Poisson, as functions of ``(y_true, y_pred)``.

Why a module of its own: they share Keras' numerics -- probabilities clipped to
[epsilon, 1 - epsilon] (epsilon 1e-7) after renormalising, ``from_logits`` through log_softmax
(categorical) or the stable ``max(x, 0) - x t + log1p(exp(-|x|))`` (binary), label smoothing
before the loss -- written once with the recorded functions so ``GradientTape`` differentiates
them. Keras' torch backend demands equal shapes for the categorical and binary crossentropies;
so do these, with a ValueError naming ``y_true`` and ``y_pred``.
"""
import warnings

import numpy as np

from .. import activations as _activations
from .. import arrays as _arrays
from ..autodiff import functions as F
from .loss import EPSILON, as_prediction, as_target, check_axis, check_broadcastable, check_number, check_same_shape
from .loss import on_module_of, prepare

__all__ = [
    "sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
    "categorical_focal_crossentropy", "binary_focal_crossentropy", "kl_divergence", "poisson",
]


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------
def _check_options(label_smoothing, gamma=0.0):
    check_number(label_smoothing, "label_smoothing", low=0, high=1)
    check_number(gamma, "gamma", low=0)


def _warn_single_class(name, y_pred):
    if y_pred.ndim and y_pred.shape[-1] == 1:
        warnings.warn(
            f"In loss {name}, expected y_pred.shape to be (batch_size, num_classes) with num_classes > 1. "
            f"Received: y_pred.shape={tuple(y_pred.shape)}. Consider using 'binary_crossentropy' if you only "
            "have 2 classes.",
            SyntaxWarning,
            stacklevel=3,
        )


def _categorical_inputs(name, y_true, y_pred, label_smoothing, axis):
    """The categorical losses' prelude: Keras smooths over the LAST axis' size, whatever ``axis``."""
    axis = check_axis(axis)
    y_pred = as_prediction(y_pred)
    y_true = as_target(y_true, y_pred)
    _warn_single_class(name, y_pred)
    if label_smoothing:
        num_classes = y_true.shape[-1]
        y_true = F.add(F.multiply(y_true, 1.0 - label_smoothing), label_smoothing / num_classes)
    return y_true, y_pred, axis


def _clipped_probabilities(y_pred, axis):
    """``y_pred`` renormalised to sum to 1 along ``axis``, clipped to [epsilon, 1 - epsilon]."""
    output = F.divide(y_pred, F.sum(y_pred, axis=axis, keepdims=True))
    return F.clip(output, EPSILON, 1.0 - EPSILON)


def _log_probabilities(y_pred, from_logits, axis):
    if from_logits:
        return F.log_softmax(y_pred, axis=axis)
    return F.log(_clipped_probabilities(y_pred, axis))


def _binary_elementwise(y_true, y_pred, from_logits):
    """Elementwise binary crossentropy: from logits ``max(x, 0) - x t + log1p(exp(-|x|))``
    (exact for large |x|, gradient ``sigmoid(x) - t`` with 0.5 - t at x = 0); else
    ``-(t log p + (1 - t) log(1 - p))`` with p clipped to [epsilon, 1 - epsilon]."""
    check_same_shape(y_true, y_pred)
    if from_logits:
        x = y_pred
        return F.add(F.subtract(F.maximum(x, 0.0), F.multiply(x, y_true)), F.log1p(F.exp(F.negative(F.abs(x)))))
    p = F.clip(y_pred, EPSILON, 1.0 - EPSILON)
    positive = F.multiply(y_true, F.log(p))
    negative = F.multiply(F.subtract(1.0, y_true), F.log(F.subtract(1.0, p)))
    return F.negative(F.add(positive, negative))


def _binary_inputs(y_true, y_pred, label_smoothing):
    y_pred = as_prediction(y_pred)
    y_true = as_target(y_true, y_pred)
    if label_smoothing:
        y_true = F.add(F.multiply(y_true, 1.0 - label_smoothing), 0.5 * label_smoothing)
    return y_true, y_pred


# --------------------------------------------------------------------------------------------
# Categorical
# --------------------------------------------------------------------------------------------
def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """``-sum(y_true * log(p), axis)`` for one-hot (or soft) ``y_true``; ``p`` is
    ``softmax(y_pred)`` when ``from_logits``, else ``y_pred`` renormalised and clipped."""
    _check_options(label_smoothing)
    y_true, y_pred, axis = _categorical_inputs("categorical_crossentropy", y_true, y_pred, label_smoothing, axis)
    check_same_shape(y_true, y_pred)
    return F.negative(F.sum(F.multiply(y_true, _log_probabilities(y_pred, from_logits, axis)), axis=axis))


def categorical_focal_crossentropy(y_true, y_pred, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0,
                                   axis=-1):
    """``sum(alpha * (1 - p)^gamma * -y_true * log(p), axis)`` (Lin et al. 2017), ``p`` as in
    ``categorical_crossentropy``. ``alpha`` may be a number or one weight per class."""
    _check_options(label_smoothing, gamma)
    y_true, y_pred, axis = _categorical_inputs("categorical_focal_crossentropy", y_true, y_pred, label_smoothing, axis)
    check_broadcastable(y_true, y_pred)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        alpha = F.cast(on_module_of(alpha, y_pred, "alpha"), y_pred.dtype)
    else:
        check_number(alpha, "alpha")
    if from_logits:
        y_pred = F.softmax(y_pred, axis=axis)
    output = _clipped_probabilities(y_pred, axis)
    cce = F.multiply(F.negative(y_true), F.log(output))
    weighting = F.multiply(F.power(F.subtract(1.0, output), gamma), alpha)
    return F.sum(F.multiply(weighting, cce), axis=axis)


def _class_indices(y_true, y_pred, ignore_class):
    """Integer labels on ``y_pred``'s module (floats truncate toward zero, as Keras' cast to
    int64) and the mask of those not equal to ``ignore_class`` (None without an ignore_class)."""
    xp = _arrays.array_module(y_pred)
    labels = on_module_of(y_true, y_pred, "y_true")
    valid = None if ignore_class is None else labels != ignore_class
    if labels.dtype.kind != "i":
        labels = labels.astype(np.int64)
    if valid is not None:
        labels = xp.where(valid, labels, 0)
    return labels, valid


def _check_labels_in_range(labels, num_classes, xp):
    """A label outside [0, num_classes): a ValueError on the host; on a device it is only
    found with a host synchronisation, so there the loss of that entry is NaN instead."""
    out = (labels < 0) | (labels >= num_classes)
    if xp is np:
        if out.any():
            bad = labels[out].reshape(-1)[:5].tolist()
            raise ValueError(
                f"Argument `y_true` holds class indices outside [0, {num_classes}) for y_pred's class axis. "
                f"Received: y_true values {bad}"
            )
        return None
    return out


def check_ignore_class(ignore_class):
    if ignore_class is not None and (isinstance(ignore_class, bool) or not isinstance(ignore_class, (int, np.integer))):
        raise ValueError(f"Argument `ignore_class` must be an int or None. Received: ignore_class={ignore_class!r}")
    return ignore_class


def sparse_categorical_crossentropy_with_mask(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    """(per-sample losses, valid mask or None): the mask Keras attaches to the result when
    ``ignore_class`` is set, which ``Loss`` reductions use to average over the valid entries."""
    axis = check_axis(axis)
    check_ignore_class(ignore_class)
    y_pred = as_prediction(y_pred)
    xp = _arrays.array_module(y_pred)
    if y_pred.ndim < 1:
        raise ValueError(f"Argument `y_pred` must be at least rank 1. Received: y_pred.shape={tuple(y_pred.shape)}")
    class_axis = axis % y_pred.ndim if -y_pred.ndim <= axis < y_pred.ndim else None
    if class_axis is None:
        raise ValueError(f"Argument `axis` is out of bounds for y_pred of rank {y_pred.ndim}. Received: axis={axis}")
    labels, valid = _class_indices(y_true, y_pred, ignore_class)
    if labels.ndim == y_pred.ndim and labels.shape[class_axis] == 1:
        labels = xp.squeeze(labels, axis=class_axis)
        valid = None if valid is None else xp.squeeze(valid, axis=class_axis)
    expected = tuple(d for i, d in enumerate(y_pred.shape) if i != class_axis)
    if tuple(labels.shape) != expected:
        raise ValueError(
            "Arguments `y_true` and `y_pred` must have the same shape up until the class axis: "
            f"y_true.shape={tuple(labels.shape)}, y_pred.shape={tuple(y_pred.shape)}"
        )
    out_of_range = _check_labels_in_range(labels, y_pred.shape[class_axis], xp)
    if out_of_range is not None:
        labels = xp.where(out_of_range, 0, labels)
    if valid is not None:
        # Keras zeroes the ignored rows (0 / 0 = NaN there, then discarded); ones keep every
        # intermediate finite, and the ignored entries' losses are 0 all the same.
        y_pred = F.where(xp.expand_dims(valid, class_axis), y_pred, 1.0)
    log_prob = _log_probabilities(y_pred, from_logits, class_axis)
    picked = F.take_along_axis(log_prob, xp.expand_dims(labels, class_axis), axis=class_axis)
    res = F.negative(F.squeeze(picked, axis=class_axis))
    if out_of_range is not None:
        res = F.where(out_of_range, np.nan, res)
    if valid is not None:
        res = F.where(valid, res, 0.0)
    return res, valid


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    """``-log(p[y_true])`` for integer class indices ``y_true`` (0 where ``y_true ==
    ignore_class``); ``p`` as in ``categorical_crossentropy``."""
    return sparse_categorical_crossentropy_with_mask(y_true, y_pred, from_logits, ignore_class, axis)[0]


sparse_categorical_crossentropy.with_mask = sparse_categorical_crossentropy_with_mask


# --------------------------------------------------------------------------------------------
# Binary
# --------------------------------------------------------------------------------------------
def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """``mean(-(t log p + (1 - t) log(1 - p)), axis)``; smoothing moves labels toward 0.5."""
    _check_options(label_smoothing)
    y_true, y_pred = _binary_inputs(y_true, y_pred, label_smoothing)
    return F.mean(_binary_elementwise(y_true, y_pred, from_logits), axis=axis)


def binary_focal_crossentropy(y_true, y_pred, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False,
                              label_smoothing=0.0, axis=-1):
    """``mean((1 - p_t)^gamma * bce, axis)`` with ``p_t = t p + (1 - t)(1 - p)`` (unclipped ``p``),
    times ``t alpha + (1 - t)(1 - alpha)`` when ``apply_class_balancing``."""
    _check_options(label_smoothing, gamma)
    check_number(alpha, "alpha")
    y_true, y_pred = _binary_inputs(y_true, y_pred, label_smoothing)
    if from_logits:
        y_pred = _activations.sigmoid(y_pred)
    bce = _binary_elementwise(y_true, y_pred, from_logits=False)
    not_true = F.subtract(1.0, y_true)
    p_t = F.add(F.multiply(y_true, y_pred), F.multiply(not_true, F.subtract(1.0, y_pred)))
    focal = F.multiply(F.power(F.subtract(1.0, p_t), gamma), bce)
    if apply_class_balancing:
        weight = F.add(F.multiply(y_true, alpha), F.multiply(not_true, 1.0 - alpha))
        focal = F.multiply(weight, focal)
    return F.mean(focal, axis=axis)


# --------------------------------------------------------------------------------------------
# Divergences
# --------------------------------------------------------------------------------------------
def kl_divergence(y_true, y_pred):
    """``sum(t log(t / p), axis=-1)`` with both clipped to [epsilon, 1]."""
    y_true, y_pred = prepare(y_true, y_pred, align=False)
    t = F.clip(y_true, EPSILON, 1.0)
    p = F.clip(y_pred, EPSILON, 1.0)
    return F.sum(F.multiply(t, F.log(F.divide(t, p))), axis=-1)


def poisson(y_true, y_pred):
    """``mean(y_pred - y_true * log(y_pred + epsilon), axis=-1)``."""
    y_true, y_pred = prepare(y_true, y_pred, align=False)
    return F.mean(F.subtract(y_pred, F.multiply(y_true, F.log(F.add(y_pred, EPSILON)))), axis=-1)

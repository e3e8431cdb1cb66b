"""Losses as metrics: the mean of a per-sample loss of ``gpuconv.losses`` (MeanSquaredError,
MeanAbsoluteError, MeanAbsolutePercentageError, MeanSquaredLogarithmicError, LogCoshError,
the crossentropies, KLDivergence, Poisson, the hinges), plus RootMeanSquaredError and
CosineSimilarity, which Keras computes in the metrics themselves.

``gpuconv.losses`` is imported when a loss metric first computes (not when one is built), so the
metrics and their configs do not depend on it at import time. CosineSimilarity is Keras' metric
sign: +1 for vectors pointing the same way (the loss is its negative). Its config, as Keras',
has no ``axis``.
"""
from .base import scalar
from .reduction import BuiltinMeanMetric, Mean, call_with_mask
from .state import as_array, module_of, squeeze_or_expand_to_same_rank

EPSILON = 1e-7  # Keras' backend.epsilon()

# Keras' names of the per-sample loss functions a metric may wrap (also keras.metrics.<name>).
LOSS_FUNCTION_NAMES = (
    "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error", "log_cosh", "binary_crossentropy", "categorical_crossentropy",
    "sparse_categorical_crossentropy", "kl_divergence", "poisson", "hinge", "squared_hinge",
    "categorical_hinge", "huber", "binary_focal_crossentropy", "categorical_focal_crossentropy",
)


def loss_function(name):
    """gpuconv.losses' function ``name`` (one of LOSS_FUNCTION_NAMES), imported now."""
    if name not in LOSS_FUNCTION_NAMES:
        raise ValueError(f"Unknown loss function name: {name!r}")
    from .. import losses

    return getattr(losses, name)


def _deferred(name):
    """A function calling gpuconv.losses' ``name`` (imported at the first call)."""
    def call(y_true, y_pred, **kwargs):
        return loss_function(name)(y_true, y_pred, **kwargs)

    def with_mask(y_true, y_pred, **kwargs):
        return call_with_mask(loss_function(name), y_true, y_pred, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.with_mask = with_mask
    return call


def cosine_similarity(y_true, y_pred, axis=-1):
    """Per-sample cosine of the angle between ``y_true`` and ``y_pred`` along ``axis``."""
    xp = module_of(y_pred, y_true)
    y_pred = as_array(y_pred, xp)
    y_true = as_array(y_true, xp, y_pred.dtype)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)

    def l2_normalize(x):  # Keras: x * min(rsqrt(sum(x**2)), 1 / eps)
        squares = xp.sum(xp.square(x), axis=axis, keepdims=True)
        return x / xp.sqrt(xp.maximum(squares, x.dtype.type(EPSILON * EPSILON)))

    return xp.sum(l2_normalize(y_true) * l2_normalize(y_pred), axis=axis)


class _LossMetric(BuiltinMeanMetric):
    """The mean of the gpuconv.losses function ``_loss_name``, to be minimised (``_direction``,
    which callbacks' mode='auto' reads)."""

    _loss_name = None
    _direction = "down"

    def __init__(self, name, dtype=None, **kwargs):
        super().__init__(_deferred(self._loss_name), name=name, dtype=dtype, **kwargs)
        for key, value in kwargs.items():
            setattr(self, key, value)


class MeanSquaredError(_LossMetric):
    _loss_name = "mean_squared_error"

    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(name, dtype)


class MeanAbsoluteError(_LossMetric):
    _loss_name = "mean_absolute_error"

    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(name, dtype)


class MeanAbsolutePercentageError(_LossMetric):
    _loss_name = "mean_absolute_percentage_error"

    def __init__(self, name="mean_absolute_percentage_error", dtype=None):
        super().__init__(name, dtype)


class MeanSquaredLogarithmicError(_LossMetric):
    _loss_name = "mean_squared_logarithmic_error"

    def __init__(self, name="mean_squared_logarithmic_error", dtype=None):
        super().__init__(name, dtype)


class LogCoshError(_LossMetric):
    _loss_name = "log_cosh"

    def __init__(self, name="logcosh", dtype=None):
        super().__init__(name, dtype)


class KLDivergence(_LossMetric):
    _loss_name = "kl_divergence"

    def __init__(self, name="kl_divergence", dtype=None):
        super().__init__(name, dtype)


class Poisson(_LossMetric):
    _loss_name = "poisson"

    def __init__(self, name="poisson", dtype=None):
        super().__init__(name, dtype)


class Hinge(_LossMetric):
    _loss_name = "hinge"

    def __init__(self, name="hinge", dtype=None):
        super().__init__(name, dtype)


class SquaredHinge(_LossMetric):
    _loss_name = "squared_hinge"

    def __init__(self, name="squared_hinge", dtype=None):
        super().__init__(name, dtype)


class CategoricalHinge(_LossMetric):
    _loss_name = "categorical_hinge"

    def __init__(self, name="categorical_hinge", dtype=None):
        super().__init__(name, dtype)


class BinaryCrossentropy(_LossMetric):
    _loss_name = "binary_crossentropy"
    _config_keys = ("from_logits", "label_smoothing")

    def __init__(self, name="binary_crossentropy", dtype=None, from_logits=False, label_smoothing=0):
        super().__init__(name, dtype, from_logits=from_logits, label_smoothing=label_smoothing)


class CategoricalCrossentropy(_LossMetric):
    _loss_name = "categorical_crossentropy"
    _config_keys = ("from_logits", "label_smoothing", "axis")

    def __init__(self, name="categorical_crossentropy", dtype=None, from_logits=False, label_smoothing=0, axis=-1):
        super().__init__(name, dtype, from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)


class SparseCategoricalCrossentropy(_LossMetric):
    _loss_name = "sparse_categorical_crossentropy"
    _config_keys = ("from_logits", "ignore_class", "axis")

    def __init__(self, name="sparse_categorical_crossentropy", dtype=None, from_logits=False, ignore_class=None,
                 axis=-1):
        super().__init__(name, dtype, from_logits=from_logits, ignore_class=ignore_class, axis=axis)


class CosineSimilarity(BuiltinMeanMetric):
    _direction = "up"

    def __init__(self, name="cosine_similarity", dtype=None, axis=-1):
        super().__init__(cosine_similarity, name, dtype=dtype, axis=axis)


class RootMeanSquaredError(Mean):
    """sqrt of the (weighted) mean squared error over every value seen."""

    _direction = "down"

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        xp = module_of(y_pred, y_true)
        y_true, y_pred = squeeze_or_expand_to_same_rank(as_array(y_true, xp, self.dtype),
                                                        as_array(y_pred, xp, self.dtype))
        return super().update_state(xp.square(y_pred - y_true), sample_weight=sample_weight)

    def result(self):
        mean = super().result()
        return scalar(module_of(mean).sqrt(mean), module_of(mean))

"""Keras 3.15's loss classes: ``LossFunctionWrapper`` and one class per built-in loss function,
with Keras' constructor signatures, default names and ``get_config`` keys.

Why a module of its own: each class only binds a loss function to its keyword arguments and a
reduction; the arithmetic lives in the function modules. Classes whose constructor takes only
(reduction, name, dtype) are made by ``_simple_loss`` (one signature, ten defaults). As in
Keras, ``CosineSimilarity`` and ``Huber`` list neither ``axis`` nor ``delta`` in their config.
"""
from . import hinge_losses as _hinge
from . import probabilistic as _prob
from . import regression as _reg
from .loss import Loss, check_axis, check_number, squeeze_or_expand_to_same_rank

__all__ = [
    "LossFunctionWrapper", "MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError", "CosineSimilarity", "Huber", "LogCosh", "Hinge", "SquaredHinge",
    "CategoricalHinge", "KLDivergence", "Poisson", "BinaryCrossentropy", "BinaryFocalCrossentropy",
    "CategoricalCrossentropy", "CategoricalFocalCrossentropy", "SparseCategoricalCrossentropy",
]


class LossFunctionWrapper(Loss):
    """A ``Loss`` calling ``fn(y_true, y_pred, **kwargs)`` after Keras' rank alignment."""

    _config_keys = ()  # the kwargs a subclass lists in its config (Keras' per-class choice)

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        if not callable(fn):
            raise TypeError(f"Argument `fn` must be a callable loss function. Received: fn={fn!r}")
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.fn = fn
        self._fn_kwargs = kwargs
        for key in self._config_keys:
            setattr(self, key, kwargs[key])

    def call(self, y_true, y_pred):
        return self.call_with_mask(y_true, y_pred)[0]

    def call_with_mask(self, y_true, y_pred):
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        with_mask = getattr(self.fn, "with_mask", None)
        if with_mask is not None:
            return with_mask(y_true, y_pred, **self._fn_kwargs)
        return self.fn(y_true, y_pred, **self._fn_kwargs), None

    def get_config(self):
        config = Loss.get_config(self)
        if type(self) is LossFunctionWrapper:
            from . import serialize

            config["fn"] = serialize(self.fn)
            config.update(self._fn_kwargs)
        config.update({key: getattr(self, key) for key in self._config_keys})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "fn" in config:
            from . import deserialize

            config["fn"] = deserialize(config["fn"])
        return cls(**config)

    def __repr__(self):
        return f"<LossFunctionWrapper({self.fn}, kwargs={self._fn_kwargs})>"


def _simple_loss(class_name, fn, default_name):
    """A class whose constructor is Keras' ``(reduction="sum_over_batch_size", name=<default>,
    dtype=None)`` and whose config is the base one."""

    def __init__(self, reduction="sum_over_batch_size", name=default_name, dtype=None):
        LossFunctionWrapper.__init__(self, fn, reduction=reduction, name=name, dtype=dtype)

    doc = f"Keras' ``{class_name}``: ``{fn.__name__}`` averaged by ``reduction``.\n\n{fn.__doc__ or ''}"
    cls = type(class_name, (LossFunctionWrapper,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})
    cls.__qualname__ = class_name
    return cls


MeanSquaredError = _simple_loss("MeanSquaredError", _reg.mean_squared_error, "mean_squared_error")
MeanAbsoluteError = _simple_loss("MeanAbsoluteError", _reg.mean_absolute_error, "mean_absolute_error")
MeanAbsolutePercentageError = _simple_loss("MeanAbsolutePercentageError", _reg.mean_absolute_percentage_error,
                                           "mean_absolute_percentage_error")
MeanSquaredLogarithmicError = _simple_loss("MeanSquaredLogarithmicError", _reg.mean_squared_logarithmic_error,
                                           "mean_squared_logarithmic_error")
LogCosh = _simple_loss("LogCosh", _reg.log_cosh, "log_cosh")
Hinge = _simple_loss("Hinge", _hinge.hinge, "hinge")
SquaredHinge = _simple_loss("SquaredHinge", _hinge.squared_hinge, "squared_hinge")
CategoricalHinge = _simple_loss("CategoricalHinge", _hinge.categorical_hinge, "categorical_hinge")
KLDivergence = _simple_loss("KLDivergence", _prob.kl_divergence, "kl_divergence")
Poisson = _simple_loss("Poisson", _prob.poisson, "poisson")


class CosineSimilarity(LossFunctionWrapper):
    """Keras' ``CosineSimilarity`` (``axis`` is not in its config, as in Keras)."""

    def __init__(self, axis=-1, reduction="sum_over_batch_size", name="cosine_similarity", dtype=None):
        super().__init__(_reg.cosine_similarity, name=name, reduction=reduction, dtype=dtype, axis=check_axis(axis))


class Huber(LossFunctionWrapper):
    """Keras' ``Huber`` (``delta`` is not in its config, as in Keras)."""

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss", dtype=None):
        super().__init__(_reg.huber, name=name, reduction=reduction, dtype=dtype,
                         delta=check_number(delta, "delta", low=0))


class BinaryCrossentropy(LossFunctionWrapper):
    """Keras' ``BinaryCrossentropy``."""

    _config_keys = ("from_logits", "label_smoothing", "axis")

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="binary_crossentropy", dtype=None):
        super().__init__(_prob.binary_crossentropy, name=name, reduction=reduction, dtype=dtype,
                         from_logits=from_logits, label_smoothing=_smoothing(label_smoothing), axis=axis)


class BinaryFocalCrossentropy(LossFunctionWrapper):
    """Keras' ``BinaryFocalCrossentropy``."""

    _config_keys = ("from_logits", "label_smoothing", "axis", "apply_class_balancing", "alpha", "gamma")

    def __init__(self, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0,
                 axis=-1, reduction="sum_over_batch_size", name="binary_focal_crossentropy", dtype=None):
        super().__init__(_prob.binary_focal_crossentropy, name=name, reduction=reduction, dtype=dtype,
                         apply_class_balancing=apply_class_balancing, alpha=check_number(alpha, "alpha"),
                         gamma=check_number(gamma, "gamma", low=0), from_logits=from_logits,
                         label_smoothing=_smoothing(label_smoothing), axis=axis)


class CategoricalCrossentropy(LossFunctionWrapper):
    """Keras' ``CategoricalCrossentropy``."""

    _config_keys = ("from_logits", "label_smoothing", "axis")

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="categorical_crossentropy", dtype=None):
        super().__init__(_prob.categorical_crossentropy, name=name, reduction=reduction, dtype=dtype,
                         from_logits=from_logits, label_smoothing=_smoothing(label_smoothing), axis=check_axis(axis))


class CategoricalFocalCrossentropy(LossFunctionWrapper):
    """Keras' ``CategoricalFocalCrossentropy``."""

    _config_keys = ("from_logits", "label_smoothing", "axis", "alpha", "gamma")

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_focal_crossentropy", dtype=None):
        super().__init__(_prob.categorical_focal_crossentropy, name=name, reduction=reduction, dtype=dtype,
                         alpha=alpha, gamma=check_number(gamma, "gamma", low=0), from_logits=from_logits,
                         label_smoothing=_smoothing(label_smoothing), axis=check_axis(axis))


class SparseCategoricalCrossentropy(LossFunctionWrapper):
    """Keras' ``SparseCategoricalCrossentropy`` (``axis`` is not in its config, as in Keras)."""

    _config_keys = ("from_logits", "ignore_class")

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size", axis=-1,
                 name="sparse_categorical_crossentropy", dtype=None):
        super().__init__(_prob.sparse_categorical_crossentropy, name=name, reduction=reduction, dtype=dtype,
                         from_logits=from_logits, ignore_class=_prob.check_ignore_class(ignore_class),
                         axis=check_axis(axis))


def _smoothing(value):
    return check_number(value, "label_smoothing", low=0, high=1)


# Classes Keras builds by name (``losses.get("MeanSquaredError")``); the registry is __init__'s.
CLASSES = [LossFunctionWrapper, MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError,
           MeanSquaredLogarithmicError, CosineSimilarity, Huber, LogCosh, Hinge, SquaredHinge, CategoricalHinge,
           KLDivergence, Poisson, BinaryCrossentropy, BinaryFocalCrossentropy, CategoricalCrossentropy,
           CategoricalFocalCrossentropy, SparseCategoricalCrossentropy]

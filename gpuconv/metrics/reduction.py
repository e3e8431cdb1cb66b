"""``Sum``, ``Mean`` and ``MeanMetricWrapper``: the reductions every per-sample metric is built on
(``BuiltinMeanMetric`` is the wrapper the built-in accuracy and loss metrics share).

Keras' numbers: each update reduces the values to one per sample (the mean over the axes after
the first, or after the sample weight's axes), weights them, and adds the batch total to
``total`` (and the weight total, or the sample count, to ``count``); ``result`` is
``total / count``, 0 when no weight was seen.
"""
from ..autodiff import stop_recording
from .base import Metric, scalar
from .state import as_array, broadcast, divide_no_nan, module_of, squeeze_or_expand_to_same_rank


def reduce_to_samplewise_values(values, sample_weight, reduce_fn, dtype, mask=None):
    """(per-sample values, their weights) as Keras' ``reduce_to_samplewise_values`` computes them;
    ``reduce_fn`` is the module's ``sum`` or ``mean``. ``mask`` (the valid entries a loss with
    ``ignore_class`` reports) multiplies the sample weights when there are any: Keras applies the
    mask a tensor carries only to given weights."""
    xp = module_of(values, sample_weight)
    values = as_array(values, xp, dtype)
    if sample_weight is not None:
        sample_weight = as_array(sample_weight, xp, dtype)
        if mask is not None:
            float_mask, sample_weight = squeeze_or_expand_to_same_rank(as_array(mask, xp, dtype), sample_weight)
            sample_weight = sample_weight * float_mask
        values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
        weight_ndim = sample_weight.ndim
        if values.ndim > weight_ndim:
            values = reduce_fn(values, axis=tuple(range(weight_ndim, values.ndim)))
        sample_weight = broadcast(sample_weight, values.shape, "sample_weight")
        values = values * sample_weight
        if weight_ndim > 1:
            sample_weight = reduce_fn(sample_weight, axis=tuple(range(1, weight_ndim)))
    if values.ndim > 1:
        values = reduce_fn(values, axis=tuple(range(1, values.ndim)))
    return values, sample_weight


def call_with_mask(fn, y_true, y_pred, **kwargs):
    """(``fn``'s per-sample values, their validity mask or None): gpuconv.losses' functions that
    mask entries (``ignore_class``) offer ``fn.with_mask``, the mask Keras carries on the tensor."""
    with_mask = getattr(fn, "with_mask", None)
    if with_mask is None:
        return fn(y_true, y_pred, **kwargs), None
    return with_mask(y_true, y_pred, **kwargs)


class Sum(Metric):
    """The (weighted) sum of the values seen."""

    def __init__(self, name="sum", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), dtype=self.dtype, name="total")

    def update_state(self, values, sample_weight=None):
        xp = module_of(values, sample_weight)
        values, _ = reduce_to_samplewise_values(values, sample_weight, xp.sum, self.dtype)
        self.total.assign_add(xp.sum(values))

    def result(self):
        return scalar(self.total.value.astype(self.dtype), module_of(self.total.value))


class Mean(Metric):
    """The (weighted) mean of the values seen: ``total / count``."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), dtype=self.dtype, name="total")
        self.count = self.add_variable(shape=(), dtype=self.dtype, name="count")

    def update_state(self, values, sample_weight=None):
        self._accumulate(values, sample_weight)

    def _accumulate(self, values, sample_weight, mask=None):
        xp = module_of(values, sample_weight)
        values, sample_weight = reduce_to_samplewise_values(values, sample_weight, xp.mean, self.dtype, mask)
        self.total.assign_add(xp.sum(values))
        if sample_weight is not None:
            num_samples = xp.sum(sample_weight)
        else:
            num_samples = values.shape[0] if values.ndim >= 1 else 1
        self.count.assign_add(as_array(num_samples, xp, self.dtype))

    def result(self):
        xp = module_of(self.total.value, self.count.value)
        total = as_array(self.total.value, xp)
        return scalar(divide_no_nan(total, as_array(self.count.value, xp, self.dtype), xp), xp)


class MeanMetricWrapper(Mean):
    """The mean of ``fn(y_true, y_pred, **kwargs)``, a function returning one value per sample."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        if not callable(fn):
            raise TypeError(f"Argument `fn` must be a callable `fn(y_true, y_pred, **kwargs)`. Received: fn={fn!r}")
        super().__init__(name=name, dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs

    def update_state(self, y_true, y_pred, sample_weight=None):
        with stop_recording():  # a metric is never part of a gradient
            values, mask = call_with_mask(self._fn, y_true, y_pred, **self._fn_kwargs)
        self._accumulate(values, sample_weight, mask)

    def get_config(self):
        from .registry import serialize  # the registry imports every metric module

        return {**super().get_config(), "fn": serialize(self._fn), **self._fn_kwargs}

    @classmethod
    def from_config(cls, config):
        from .registry import deserialize

        config = dict(config)
        if isinstance(config.get("fn"), (dict, str)):
            config["fn"] = deserialize(config["fn"])
        return cls(**config)


class BuiltinMeanMetric(MeanMetricWrapper):
    """A mean metric whose function the class fixes (Keras' built-in ones): its config is the
    name, the dtype and the options in ``_config_keys``, without ``fn``."""

    _config_keys = ()

    def get_config(self):
        config = {"name": self.name, "dtype": self.dtype}
        config.update({key: getattr(self, key) for key in self._config_keys})
        return config

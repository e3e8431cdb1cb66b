"""Regularization and noise layers: SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout,
ActivityRegularization, with Keras 3.15's signatures, defaults, configs and error texts.

The random layers change their input only when called with ``training=True``; at inference
(``training`` None or False) they are the identity, as in Keras. Their randomness follows
``Dropout`` (gpuconv/layers/core.py): a NumPy ``Generator`` per layer, seeded by ``seed`` or,
with ``seed=None``, by a seed drawn at construction from gpuconv's global generator (so
``set_random_seed`` makes a run repeatable). Draws are made on the host, so one seed gives the
same mask or noise on NumPy and CuPy; the streams differ from Keras' (only the statistics match).

What a GradientTape differentiates: the recorded ``where`` with the drawn mask (spatial dropout),
the recorded ``add`` / ``multiply`` with the drawn noise (Gaussian layers).
"""
import math
import numbers

import numpy as np

from .. import arrays as _arrays
from .. import geometry as g
from .. import regularizers
from ..autodiff import functions as F
from .base_layer import InputSpec, Layer
from .core import Dropout

__all__ = [
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "GaussianNoise", "GaussianDropout", "ActivityRegularization",
]


def _check_unit_interval(value, name):
    """Keras' check for a rate / stddev: a real number in [0, 1] (bools refused, as Dropout does)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(
            f"Invalid value received for argument `{name}`. Expected a float value between 0 and 1. "
            f"Received: {name}={value!r}"
        )


def _check_seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"Argument `seed` must be an integer or None. Received: seed={seed!r}")


def _generator(seed):
    """A per-layer generator: ``seed``, or one drawn now from gpuconv's global generator."""
    from ..utils.random import draw_seed

    return np.random.default_rng(seed if seed is not None else draw_seed())


def _device_noise(rng_draw, like, dtype):
    """A host draw (float64) in ``dtype`` on ``like``'s device."""
    return _arrays.array_module(like).asarray(np.asarray(rng_draw, dtype=dtype))


# --------------------------------------------------------------------------------------------
# Spatial dropout
# --------------------------------------------------------------------------------------------
class _BaseSpatialDropout(Dropout):
    """Dropout of whole channels: one keep/drop draw per (sample, channel), broadcast over the
    spatial axes. Kept channels are divided by ``1 - rate`` (Keras' torch backend divides too,
    so kept values are bit-identical to Keras')."""

    _rank = None  # spatial rank, set by the subclasses

    def __init__(self, rate, data_format, seed=None, name=None, dtype=None):
        # Keras' signature has no **kwargs (no trainable/input_shape), nor does this one.
        _check_unit_interval(rate, "rate")
        _check_seed(seed)
        super().__init__(rate, seed=seed, name=name, dtype=dtype)
        self.data_format = data_format
        self.input_spec = InputSpec(ndim=self._rank + 2)

    def _noise_shape(self, shape):
        n = shape[0]
        if self.data_format == "channels_first":
            return (n, shape[1]) + (1,) * self._rank
        return (n,) + (1,) * self._rank + (shape[-1],)

    def _call_training(self, inputs, training):
        if not training or self.rate == 0:
            return inputs
        xp = _arrays.array_module(inputs)
        mask_shape = self._noise_shape(tuple(inputs.shape))
        if self.rate == 1:  # every channel dropped: zeros (and zero gradient), no division by 0
            return F.where(xp.zeros(mask_shape, dtype=bool), inputs, 0)
        keep_prob = 1.0 - self.rate
        keep = xp.asarray(self._rng.random(mask_shape) < keep_prob)  # host draw: same mask everywhere
        scaled = F.divide(inputs, inputs.dtype.type(keep_prob))
        return F.where(keep, scaled, 0)  # recorded: the gradient is the mask over keep_prob

    def get_config(self):
        # Keras' own short config: no `trainable`, the dtype as its name.
        return {"rate": self.rate, "seed": self.seed, "name": self.name, "dtype": self.dtype}


class SpatialDropout1D(_BaseSpatialDropout):
    """Drops whole feature maps of ``(batch, steps, channels)``: one draw per (sample, channel)."""

    _rank = 1

    def __init__(self, rate, seed=None, name=None, dtype=None):
        super().__init__(rate, "channels_last", seed=seed, name=name, dtype=dtype)


class SpatialDropout2D(_BaseSpatialDropout):
    """Drops whole channels of 4-D inputs (``data_format`` says which axis holds them)."""

    _rank = 2

    def __init__(self, rate, data_format=None, seed=None, name=None, dtype=None):
        super().__init__(rate, g.standardize_data_format(data_format), seed=seed, name=name, dtype=dtype)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class SpatialDropout3D(_BaseSpatialDropout):
    """Drops whole channels of 5-D inputs (``data_format`` says which axis holds them)."""

    _rank = 3

    def __init__(self, rate, data_format=None, seed=None, name=None, dtype=None):
        super().__init__(rate, g.standardize_data_format(data_format), seed=seed, name=name, dtype=dtype)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


# --------------------------------------------------------------------------------------------
# Gaussian noise / dropout
# --------------------------------------------------------------------------------------------
class GaussianNoise(Layer):
    """``inputs + N(0, stddev**2)`` noise when training; the identity at inference."""

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(**kwargs)
        _check_unit_interval(stddev, "stddev")
        _check_seed(seed)
        self.stddev = stddev
        self.seed = seed
        self._rng = _generator(seed)
        self._build_at_init()  # no weights: built at construction, as Keras does

    def call(self, inputs):
        return inputs

    def _call_training(self, inputs, training):
        if not training or self.stddev == 0:
            return inputs
        noise = self._rng.normal(0.0, self.stddev, size=tuple(inputs.shape))
        return F.add(inputs, _device_noise(noise, inputs, inputs.dtype))  # gradient: the identity

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


class GaussianDropout(Layer):
    """``inputs * N(1, rate / (1 - rate))`` noise when training; the identity at inference."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        _check_unit_interval(rate, "rate")
        _check_seed(seed)
        self.rate = rate
        self.seed = seed
        self._rng = _generator(seed)
        self._build_at_init()

    def call(self, inputs):
        return inputs

    def _call_training(self, inputs, training):
        if not training or self.rate == 0:
            return inputs
        if self.rate == 1:
            # Keras' stddev sqrt(rate / (1 - rate)) is infinite here (it fails dividing by zero);
            # a layer that cannot produce a value says why, naming the argument.
            raise ValueError(
                "GaussianDropout cannot run in training mode with `rate=1`: the noise's standard "
                f"deviation sqrt(rate / (1 - rate)) is infinite. Received: rate={self.rate!r}"
            )
        stddev = math.sqrt(self.rate / (1.0 - self.rate))
        noise = self._rng.normal(1.0, stddev, size=tuple(inputs.shape))
        return F.multiply(inputs, _device_noise(noise, inputs, inputs.dtype))  # gradient: the noise

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


# --------------------------------------------------------------------------------------------
# Activity regularization
# --------------------------------------------------------------------------------------------
class ActivityRegularization(Layer):
    """The identity, whose call leaves ``(l1 * sum|x| + l2 * sum x**2) / batch`` in ``layer.losses``
    (the base layer's activity-regularizer step, as in Keras)."""

    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        # L1L2 checks both values (Keras' check and text, naming the argument).
        super().__init__(activity_regularizer=regularizers.L1L2(l1=l1, l2=l2), **kwargs)
        self.l1 = l1
        self.l2 = l2
        self._build_at_init()

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.pop("activity_regularizer", None)  # carried by l1 / l2 instead (Keras)
        return {**config, "l1": self.l1, "l2": self.l2}

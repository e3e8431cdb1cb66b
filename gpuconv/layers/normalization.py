"""Keras 3.15's normalization layers: BatchNormalization, LayerNormalization,
GroupNormalization and the Normalization preprocessing layer (with ``adapt``).

Signatures, defaults, weights (names, order, shapes, trainable flags) and configs are Keras'.
Every number is computed with gpuconv's recorded array functions, so a ``GradientTape`` sees
the input, gamma and beta. Statistics are formed in float32 for float16 (and integer) inputs, as
Keras does. float64 inputs are normalized in float64: Keras 3.15 computes them in float32
(its ``result_type("float64", "float32")`` is float32) and casts back, so its float64 results
carry float32 rounding that gpuconv's do not.

BatchNormalization's moving statistics are updated in place on the device the batch lives on
(``Variable.array_for_update``): the next call on that device reads the new values with no
host round trip, and the update is never recorded on a tape.
"""
import itertools
import math
import numbers
import warnings

import numpy as np

from .. import arrays as _arrays
from .. import constraints, initializers, regularizers
from ..autodiff import functions as F
from ..variables import Variable
from .base_layer import InputSpec, Layer

__all__ = ["BatchNormalization", "LayerNormalization", "GroupNormalization", "Normalization"]

_KERAS_EPSILON = 1e-7  # keras.backend.epsilon(): Normalization's floor on the standard deviation


# --------------------------------------------------------------------------------------------
# Helpers shared by the layers
# --------------------------------------------------------------------------------------------
def _work_dtype(dtype):
    """Statistics in float32 at least: float64 stays float64, everything else (float16, ints,
    bools) is computed in float32 (Keras' ``result_type(dtype, "float32")``)."""
    return np.dtype("float64") if np.dtype(dtype) == np.float64 else np.dtype("float32")


def _as_float(value, name):
    """``float(value)`` for a real number; a bool, a string or None is refused by name."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Argument `{name}` must be a float. Received: {name}={value!r}")
    return float(value)


def _check_real(value, name):
    """A real number, kept as given (Keras stores LayerNormalization's epsilon unconverted)."""
    _as_float(value, name)
    return value


def _check_int_axis(axis, name="axis"):
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"Argument `{name}` must be an integer. Received: {name}={axis!r}")
    return int(axis)


def _positional_axis(axis, input_shape, shown_axis):
    """``axis`` as a non-negative index into ``input_shape``; out of range names the axis."""
    ndim = len(input_shape)
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"Axis {axis} is out of bounds for input shape {tuple(input_shape)}. Received: axis={shown_axis}"
        )
    return axis % ndim


def _check_axes_in_shape(axes, input_shape, shown_axis):
    """Keras' compute_output_shape check of every axis (no build needed)."""
    for axis in axes:
        _positional_axis(axis, input_shape, shown_axis)
    return input_shape


def _defined_dim(input_shape, axis, shown_axis):
    dim = input_shape[axis]
    if dim is None:
        raise ValueError(
            f"Axis {shown_axis} of the input should have a defined dimension, but the layer received an "
            f"input with shape {tuple(input_shape)}. Received: axis={shown_axis}"
        )
    return int(dim)


def _weight_as(var, like, shape, dtype):
    """``var`` on ``like``'s device, cast to ``dtype`` and reshaped to broadcast against it
    (recorded, so the tape reaches the variable)."""
    return F.reshape(F.cast(var.array_like(like), dtype), shape)


def _moments(x, axes):
    """Mean and biased variance over ``axes``, kept as size-1 dims. The variance is the mean of
    squared deviations: Keras' E[x^2] - E[x]^2 in exact arithmetic, without its cancellation."""
    mean = F.mean(x, axis=axes, keepdims=True)
    variance = F.mean(F.square(F.subtract(x, mean)), axis=axes, keepdims=True)
    return mean, variance


def _scale_and_shift(x, mean, variance, gamma, beta, epsilon):
    """(x - mean) * (rsqrt(variance + epsilon) * gamma) + beta, Keras' batch_normalization."""
    inv = F.divide(1.0, F.sqrt(F.add(variance, epsilon)))
    if gamma is not None:
        inv = F.multiply(inv, gamma)
    y = F.multiply(F.subtract(x, mean), inv)
    return y if beta is None else F.add(y, beta)


# --------------------------------------------------------------------------------------------
# BatchNormalization
# --------------------------------------------------------------------------------------------
def _batch_norm_axis(axis):
    """Keras stores ``int(axis)``. A one-element list or tuple (what a list-valued ``axis`` of
    another normalization layer looks like) is accepted as that axis; several axes are not:
    the statistics are per channel of one axis."""
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise ValueError(
                f"BatchNormalization normalizes a single axis: `axis` must be an integer or a list of one "
                f"integer. Received: axis={axis!r}"
            )
        axis = axis[0]
    return _check_int_axis(axis)


def _check_renorm_clipping(renorm_clipping):
    """Keras' checks of ``renorm_clipping`` (only made when ``renorm=True``)."""
    clipping = {} if renorm_clipping is None else renorm_clipping
    if not isinstance(clipping, dict):
        raise TypeError(
            f"Argument `renorm_clipping` must be a dict or None. Received: renorm_clipping={renorm_clipping!r}"
        )
    keys = ["rmax", "rmin", "dmax"]
    if set(clipping) - set(keys):
        raise ValueError(
            f"Received invalid keys for `renorm_clipping` argument: {clipping}. Supported values: {keys}."
        )
    rmax, rmin, dmax = clipping.get("rmax"), clipping.get("rmin"), clipping.get("dmax")
    if rmax is not None and rmin is not None and rmax < rmin:
        raise ValueError(
            f"rmax should be greater than rmin in the `renorm_clipping` argument. Received: rmax={rmax}, rmin={rmin}."
        )
    if dmax is not None and dmax < 0:
        raise ValueError(f"dmax should be non-negative in the `renorm_clipping` argument. Received: dmax={dmax}.")
    return clipping


def _blend(var, batch_value, momentum, like):
    """moving = moving * momentum + batch * (1 - momentum), in place where ``like`` lives, in
    the batch statistic's dtype and stored in the variable's. Plain array arithmetic: nothing
    is recorded on a tape."""
    buf = var.array_for_update(like)
    new = buf.astype(batch_value.dtype) * momentum + batch_value * (1.0 - momentum)
    buf[...] = new.astype(buf.dtype, copy=False)
    return new  # before rounding to the variable's dtype: Keras derives renorm's variance from it


def _store(var, value, like):
    buf = var.array_for_update(like)
    buf[...] = value.astype(buf.dtype, copy=False)


class BatchNormalization(Layer):
    """Keras' BatchNormalization. Inference (the default call) normalizes with the moving
    statistics; ``layer(x, training=True)`` with the batch's (mean and biased variance over every
    axis but ``axis``) and updates the moving ones. A layer with ``trainable = False`` runs in
    inference mode even with ``training=True`` (Keras' frozen BatchNormalization).

    ``synchronized=True`` is accepted: gpuconv trains on one device, so the batch statistics are
    already global (Keras on the torch backend refuses the argument).
    """

    def __init__(
        self,
        axis=-1,
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        renorm=False,
        renorm_clipping=None,
        renorm_momentum=0.99,
        synchronized=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.axis = _batch_norm_axis(axis)
        self.synchronized = synchronized  # stored as given, as Keras' config shows it
        self.momentum = _as_float(momentum, "momentum")
        self.epsilon = _as_float(epsilon, "epsilon")
        self.center = center
        self.scale = scale
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.renorm = renorm
        if self.renorm:
            _check_renorm_clipping(renorm_clipping)
        self.renorm_clipping = renorm_clipping
        self.renorm_momentum = renorm_momentum if not self.renorm else _as_float(renorm_momentum, "renorm_momentum")
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None
        self._reduction_axes = None

    def build(self, input_shape):
        axis = _positional_axis(self.axis, input_shape, self.axis)
        shape = (_defined_dim(input_shape, axis, self.axis),)
        if self.scale:
            self.gamma = self.add_weight("gamma", shape, initializer=self.gamma_initializer,
                                         regularizer=self.gamma_regularizer, constraint=self.gamma_constraint)
        if self.center:
            self.beta = self.add_weight("beta", shape, initializer=self.beta_initializer,
                                        regularizer=self.beta_regularizer, constraint=self.beta_constraint)
        self.moving_mean = self.add_weight("moving_mean", shape, initializer=self.moving_mean_initializer,
                                           trainable=False)
        self.moving_variance = self.add_weight("moving_variance", shape, initializer=self.moving_variance_initializer,
                                               trainable=False)
        if self.renorm:
            self._build_renorm(shape)
        self.input_spec = InputSpec(ndim=len(input_shape), axes={self.axis: shape[0]})
        self._reduction_axes = tuple(a for a in range(len(input_shape)) if a != axis)
        self._broadcast = tuple(shape[0] if a == axis else 1 for a in range(len(input_shape)))
        self.built = True

    def _build_renorm(self, shape):
        """Keras' renorm weights, after the four usual ones: moving_stddev, renorm_mean,
        renorm_stddev (the standard deviations start at sqrt of the moving variance's initializer)."""
        def stddev_initializer(shape, dtype=None):
            return np.sqrt(self.moving_variance_initializer(shape, dtype=dtype))

        self.moving_stddev = self.add_weight("moving_stddev", shape, initializer=stddev_initializer, trainable=False)
        self.renorm_mean = self.add_weight("renorm_mean", shape, initializer=self.moving_mean_initializer,
                                           trainable=False)
        self.renorm_stddev = self.add_weight("renorm_stddev", shape, initializer=stddev_initializer, trainable=False)

    def _affine(self, x, work):
        gamma = None if self.gamma is None else _weight_as(self.gamma, x, self._broadcast, work)
        beta = None if self.beta is None else _weight_as(self.beta, x, self._broadcast, work)
        return gamma, beta

    def call(self, inputs):
        work = _work_dtype(inputs.dtype)
        x = F.cast(inputs, work)
        mean = _weight_as(self.moving_mean, x, self._broadcast, work)
        variance = _weight_as(self.moving_variance, x, self._broadcast, work)
        gamma, beta = self._affine(x, work)
        y = _scale_and_shift(x, mean, variance, gamma, beta, self.epsilon)
        return F.cast(y, self.compute_dtype)

    def _call_training(self, inputs, training):
        if not (training and self.trainable):  # a frozen layer normalizes with its moving statistics
            return self.call(inputs)
        work = _work_dtype(inputs.dtype)
        x = F.cast(inputs, work)
        mean, variance = _moments(x, self._reduction_axes)
        gamma, beta = self._affine(x, work)
        # The update reads the statistics' values only (plain arrays): the tape records nothing.
        batch_mean, batch_variance = mean.reshape(-1), variance.reshape(-1)
        if self.renorm:
            gamma, beta = self._renorm_transforms(x, batch_mean, batch_variance, gamma, beta, work)
            self._update_renorm(x, batch_mean, batch_variance)
        else:
            _blend(self.moving_mean, batch_mean, self.momentum, x)
            _blend(self.moving_variance, batch_variance, self.momentum, x)
        y = _scale_and_shift(x, mean, variance, gamma, beta, self.epsilon)
        return F.cast(y, self.compute_dtype)

    # ---- batch renormalization (Ioffe, 2017), Keras' formulation ----------------------------------
    def _renorm_transforms(self, x, batch_mean, batch_variance, gamma, beta, work):
        """gamma * r and gamma * d + beta, with the corrections r, d constants (Keras' stop_gradient):
        computed from plain arrays, so the tape sees only gamma and beta."""
        xp = _arrays.array_module(x)
        stddev = xp.sqrt(batch_variance + self.epsilon)
        renorm_mean = self.renorm_mean.array_like(x).astype(work)
        renorm_stddev = xp.maximum(self.renorm_stddev.array_like(x).astype(work), math.sqrt(self.epsilon))
        r = stddev / renorm_stddev
        d = (batch_mean - renorm_mean) / renorm_stddev
        clipping = self.renorm_clipping or {}
        if clipping.get("rmin") is not None:
            r = xp.maximum(r, clipping["rmin"])
        if clipping.get("rmax") is not None:
            r = xp.minimum(r, clipping["rmax"])
        if clipping.get("dmax") is not None:
            d = xp.clip(d, -clipping["dmax"], clipping["dmax"])
        r = r.astype(work, copy=False).reshape(self._broadcast)
        d = d.astype(work, copy=False).reshape(self._broadcast)
        if gamma is not None:
            new_gamma, new_beta = F.multiply(r, gamma), F.multiply(d, gamma)
        else:
            new_gamma, new_beta = r, d
        return new_gamma, (new_beta if beta is None else F.add(new_beta, beta))

    def _update_renorm(self, x, batch_mean, batch_variance):
        xp = _arrays.array_module(x)
        stddev = xp.sqrt(batch_variance + self.epsilon)
        _blend(self.renorm_mean, batch_mean, self.renorm_momentum, x)
        _blend(self.renorm_stddev, stddev, self.renorm_momentum, x)
        _blend(self.moving_mean, batch_mean, self.momentum, x)
        new_stddev = _blend(self.moving_stddev, stddev, self.momentum, x)
        _store(self.moving_variance, xp.maximum(new_stddev * new_stddev - self.epsilon, 0), x)

    def compute_output_shape(self, input_shape):
        return _check_axes_in_shape([self.axis], input_shape, self.axis)

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
            "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
            "synchronized": self.synchronized,
            "renorm": self.renorm,
            "renorm_clipping": self.renorm_clipping,
            "renorm_momentum": self.renorm_momentum,
        }


# --------------------------------------------------------------------------------------------
# LayerNormalization
# --------------------------------------------------------------------------------------------
def _int_or_int_list(axis):
    """LayerNormalization's ``axis``: an int, or a list/tuple of ints (kept as a list)."""
    if isinstance(axis, (list, tuple)):
        return [_check_int_axis(a) for a in axis]
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"Expected an int or a list/tuple of ints for the argument 'axis'. Received: axis={axis!r}")
    return int(axis)


class LayerNormalization(Layer):
    """Keras' LayerNormalization: each sample normalized over ``axis`` (an int or a list), then
    scaled by gamma and shifted by beta (weights of the shape of those axes). After ``build``,
    ``axis`` is the sorted list, as in Keras' config. ``rms_scaling=True`` (deprecated in Keras,
    and kept as Keras computes it: the input divided by sqrt(variance + epsilon), no centring,
    no beta) is read from the keyword arguments, as Keras does."""

    def __init__(
        self,
        axis=-1,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        rms_scaling = kwargs.pop("rms_scaling", False)
        if rms_scaling:
            warnings.warn(
                "You passed `rms_scaling=True`, which is deprecated. This argument incorrectly scales the input "
                "by the variance, not the root mean square. To correctly use RMS Normalization, please use "
                "`keras.layers.RMSNormalization` instead.",
                stacklevel=2,
            )
        super().__init__(**kwargs)
        self.axis = _int_or_int_list(axis)
        self.epsilon = _check_real(epsilon, "epsilon")
        self.center = center
        self.scale = scale
        self.rms_scaling = rms_scaling
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.autocast = False  # Keras: the input's dtype is kept; the output is cast to the compute dtype
        self.gamma = self.beta = None

    def build(self, input_shape):
        shown = self.axis
        axes = sorted(self.axis) if isinstance(self.axis, list) else [self.axis]
        positions = [_positional_axis(a, input_shape, shown) for a in axes]
        if len(set(positions)) != len(positions):
            raise ValueError(f"Argument `axis` names the same input axis twice. Received: axis={shown}")
        shape = tuple(_defined_dim(input_shape, p, shown) for p in positions)
        if self.scale or self.rms_scaling:
            self.gamma = self.add_weight("gamma", shape, initializer=self.gamma_initializer,
                                         regularizer=self.gamma_regularizer, constraint=self.gamma_constraint)
        if self.center and not self.rms_scaling:
            self.beta = self.add_weight("beta", shape, initializer=self.beta_initializer,
                                        regularizer=self.beta_regularizer, constraint=self.beta_constraint)
        self.axis = axes
        self._positions = tuple(positions)
        # Keras reshapes gamma/beta (laid out in the sorted axes' order) to this broadcast shape.
        self._broadcast = tuple(input_shape[a] if a in positions else 1 for a in range(len(input_shape)))
        self.built = True

    def call(self, inputs):
        work = _work_dtype(inputs.dtype)
        x = F.cast(inputs, work)
        gamma = None if self.gamma is None else _weight_as(self.gamma, x, self._broadcast, work)
        beta = None if self.beta is None else _weight_as(self.beta, x, self._broadcast, work)
        mean, variance = _moments(x, self._positions)
        if self.rms_scaling:
            y = F.multiply(x, F.divide(1.0, F.sqrt(F.add(variance, self.epsilon))))
            y = y if gamma is None else F.multiply(y, gamma)
        else:
            y = _scale_and_shift(x, mean, variance, gamma, beta, self.epsilon)
        return F.cast(F.cast(y, inputs.dtype), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        return _check_axes_in_shape(axes, input_shape, self.axis)

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "rms_scaling": self.rms_scaling,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        }


# --------------------------------------------------------------------------------------------
# GroupNormalization
# --------------------------------------------------------------------------------------------
def _check_groups(groups):
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or (groups <= 0 and groups != -1):
        raise ValueError(
            "Received an invalid value for argument `groups`, expected a positive integer (or `-1` for instance "
            f"normalization). Received: groups={groups!r}"
        )
    return int(groups)


class GroupNormalization(Layer):
    """Keras' GroupNormalization: the channels of ``axis`` split into ``groups`` consecutive
    groups, each sample normalized over its group's channels and every other non-batch axis.
    ``groups=-1`` is instance normalization (one group per channel; the config then reads the
    channel count after build, as Keras')."""

    def __init__(
        self,
        groups=32,
        axis=-1,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        groups = _check_groups(groups)
        super().__init__(**kwargs)
        self.autocast = False  # Keras: the input's dtype is kept; the output is cast to the compute dtype
        self.groups = groups
        self.axis = _check_int_axis(axis)
        self.epsilon = _check_real(epsilon, "epsilon")
        self.center = center
        self.scale = scale
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.gamma = self.beta = None

    def build(self, input_shape):
        axis = _positional_axis(self.axis, input_shape, self.axis)
        if axis == 0:
            raise ValueError(f"GroupNormalization cannot normalize over the batch axis. Received: axis={self.axis}")
        dim = _defined_dim(input_shape, axis, self.axis)
        groups = dim if self.groups == -1 else self.groups
        if dim < groups:
            raise ValueError(
                f"Number of groups ({groups}) cannot be more than the number of channels ({dim}) of axis "
                f"{self.axis}. Received: groups={groups}"
            )
        if dim % groups != 0:
            raise ValueError(
                f"Number of groups ({groups}) must divide the number of channels ({dim}) of axis {self.axis}. "
                f"Received: groups={groups}"
            )
        self.groups = groups
        self.input_spec = InputSpec(ndim=len(input_shape), axes={self.axis: dim})
        if self.scale:
            self.gamma = self.add_weight("gamma", (dim,), initializer=self.gamma_initializer,
                                         regularizer=self.gamma_regularizer, constraint=self.gamma_constraint)
        if self.center:
            self.beta = self.add_weight("beta", (dim,), initializer=self.beta_initializer,
                                        regularizer=self.beta_regularizer, constraint=self.beta_constraint)
        self._position = axis
        self.built = True

    def call(self, inputs):
        work = _work_dtype(inputs.dtype)
        a, shape = self._position, tuple(inputs.shape)
        # The channel axis split into (groups, channels per group); statistics over everything but
        # the batch and the group index.
        grouped = shape[:a] + (self.groups, shape[a] // self.groups) + shape[a + 1:]
        x = F.reshape(F.cast(inputs, work), grouped)
        axes = tuple(i for i in range(1, len(grouped)) if i != a)
        broadcast = tuple(grouped[i] if i in (a, a + 1) else 1 for i in range(len(grouped)))
        gamma = None if self.gamma is None else _weight_as(self.gamma, x, broadcast, work)
        beta = None if self.beta is None else _weight_as(self.beta, x, broadcast, work)
        mean, variance = _moments(x, axes)
        y = _scale_and_shift(x, mean, variance, gamma, beta, self.epsilon)
        return F.cast(F.cast(F.reshape(y, shape), inputs.dtype), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return _check_axes_in_shape([self.axis], input_shape, self.axis)

    def get_config(self):
        return {
            **super().get_config(),
            "groups": self.groups,
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        }


# --------------------------------------------------------------------------------------------
# Normalization (preprocessing)
# --------------------------------------------------------------------------------------------
def _normalization_axes(axis):
    """Keras: None -> (), an int -> (axis,), anything else -> tuple(axis)."""
    if axis is None:
        return ()
    if isinstance(axis, (list, tuple)):
        return tuple(_check_int_axis(a) for a in axis)
    return (_check_int_axis(axis),)


def _first_of_pair(batch):
    """A (features, targets) batch contributes its features, as in Keras' adapt."""
    return batch[0] if isinstance(batch, tuple) else batch


def _is_whole_array(data):
    """An array to adapt to at once (NumPy, CuPy, a torch or JAX tensor: a shape and a dtype),
    rather than a sequence of batches."""
    return not isinstance(data, (list, tuple)) and hasattr(data, "shape") and hasattr(data, "dtype")


def _batches(data):
    """(the first batch, an iterator over every batch) of what ``adapt`` accepts besides an
    array: an indexable dataset (``__len__`` and ``__getitem__``, a PyDataset) or any iterable."""
    if hasattr(data, "__len__") and hasattr(data, "__getitem__") and not isinstance(data, (list, tuple)):
        iterator = (data[i] for i in range(len(data)))
    elif hasattr(data, "__iter__"):
        iterator = iter(data)
    else:
        raise TypeError(
            f"Unsupported data type: {type(data)}. `adapt` supports arrays (NumPy, CuPy, anything with a shape "
            "and a dtype) and iterables of batches (e.g. a list, a generator or a PyDataset)."
        )
    first = next(iterator, None)
    if first is None:
        raise ValueError("adapt() received an empty iterable (no batches). Expected at least one batch.")
    first = _first_of_pair(first)
    if getattr(first, "shape", None) is None:
        raise TypeError(
            "adapt() expects an iterable that yields arrays with a `.shape` attribute. Got an element of type "
            f"{type(first).__name__}."
        )
    return first, itertools.chain([first], iterator)


class Normalization(Layer):
    """Keras' Normalization preprocessing layer: ``(x - mean) / max(sqrt(variance), 1e-7)``
    (``invert=True``: ``mean + x * max(sqrt(variance), 1e-7)``), with statistics per index of the
    kept ``axis`` (None: one scalar mean). ``mean``/``variance`` given are constants broadcast as
    Keras does (a scalar everywhere, else aligned with the kept axes from the right); otherwise
    they are the non-trainable weights mean, variance and count (int32, left at 0 by ``adapt``, as
    in Keras), set by ``adapt(data)``."""

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        self.axis = _normalization_axes(axis)
        self.input_mean = mean
        self.input_variance = variance
        self.invert = invert
        self._build_input_shape = None
        self._given = None  # (mean, variance) broadcast to the input, when given
        if (mean is not None) != (variance is not None):
            raise ValueError(
                "When setting values directly, both `mean` and `variance` must be set. "
                f"Received: mean={mean} and variance={variance}"
            )
        if mean is not None:
            if np.shape(mean) != np.shape(variance):
                raise ValueError(
                    "When setting values directly, `mean` and `variance` must have the same shape. Received: "
                    f"mean shape {np.shape(mean)} and variance shape {np.shape(variance)}"
                )
            if len(np.shape(mean)) > len(self.axis):
                raise ValueError(
                    f"The rank of `mean` must be less than or equal to the number of axes ({len(self.axis)}). "
                    f"Received: mean shape {np.shape(mean)} for axis {self.axis}"
                )

    def build(self, input_shape):
        ndim = len(input_shape)
        if any(a < -ndim or a >= ndim for a in self.axis):
            raise ValueError(
                f"All `axis` values must be in the range [-ndim, ndim). Received inputs with ndim={ndim}, "
                f"while axis={self.axis}"
            )
        keep = tuple(sorted(a % ndim for a in self.axis))
        for d in keep:
            if input_shape[d] is None:
                raise ValueError(
                    f"All `axis` values to be kept must have a known shape. Received axis={self.axis}, "
                    f"inputs.shape={tuple(input_shape)}, with unknown axis at index {d}"
                )
        self._build_input_shape = tuple(input_shape)
        self._keep_axis = keep
        self._reduce_axis = tuple(d for d in range(ndim) if d not in keep)
        self._broadcast_shape = tuple(input_shape[d] if d in keep else 1 for d in range(ndim))
        self._mean_and_var_shape = tuple(input_shape[d] for d in keep)
        if self.input_mean is None:
            self.adapt_mean = self.add_weight("mean", self._mean_and_var_shape, initializer="zeros", trainable=False)
            self.adapt_variance = self.add_weight("variance", self._mean_and_var_shape, initializer="ones",
                                                  trainable=False)
            self.count = self._add_count_weight()
        else:
            self._given = (self._broadcast_given(self.input_mean, "mean"),
                           self._broadcast_given(self.input_variance, "variance"))
        self.built = True

    @property
    def mean(self):
        """Keras' ``layer.mean``: the mean in the input's broadcast shape (None before build)."""
        return self._host_statistic(0)

    @property
    def variance(self):
        return self._host_statistic(1)

    def _host_statistic(self, index):
        if not self.built:
            return None
        if self._given is not None:
            return self._given[index]
        var = self.adapt_mean if index == 0 else self.adapt_variance
        return var.numpy().reshape(self._broadcast_shape).astype(self.compute_dtype)

    def _add_count_weight(self):
        """Keras' ``count``: an int32 scalar (add_weight makes float weights only)."""
        var = Variable(np.zeros((), dtype="int32"), name="count", path=f"{self.name}/count", trainable=False)
        self._weights.append(var)
        return var

    def _broadcast_given(self, value, name):
        """A given mean/variance in the input's broadcast shape: a scalar everywhere, else its
        dims aligned with the last kept axes (Keras' expansion)."""
        array = np.asarray(value, dtype=self.compute_dtype)
        expanded = [1] * len(self._broadcast_shape)
        for i in range(1, array.ndim + 1):
            expanded[self._keep_axis[-i]] = array.shape[-i]
        try:
            return np.broadcast_to(array.reshape(expanded), self._broadcast_shape).copy()
        except ValueError:
            raise ValueError(
                f"`{name}` of shape {array.shape} cannot be broadcast to the kept axes {self._keep_axis} of an input "
                f"of shape {self._build_input_shape}. Received: {name}={value!r}"
            ) from None

    # ---- adapt -----------------------------------------------------------------------------
    def _check_adapt_shape(self, shape, what):
        for d in self._keep_axis:
            if shape[d] != self._build_input_shape[d]:
                raise ValueError(
                    f"The layer was built with input_shape={self._build_input_shape}, but adapt() is being called "
                    f"with {what} of an incompatible shape, shape={tuple(shape)}"
                )

    def adapt(self, data):
        """Set mean and variance to the statistics of ``data`` over the reduced axes: an array
        (NumPy, CuPy), or batches (an iterable or a PyDataset, (x, y) pairs contributing x),
        combined exactly (Chan's parallel formula)."""
        if _is_whole_array(data):
            data = _arrays.to_numpy(_arrays.as_array(data, "data", f'layer "{self.name}"'))
            batches, input_shape = None, data.shape
        else:
            first, batches = _batches(data)
            input_shape = tuple(first.shape)
        if len(input_shape) == 0:
            raise ValueError(f"adapt() needs data of rank >= 1. Received data of shape {tuple(input_shape)}")
        if not self.built:
            self._ensure_built(tuple(input_shape))
        else:
            self._check_adapt_shape(input_shape, "data")
        if self.input_mean is not None:
            raise ValueError(
                "adapt() cannot change the statistics of a Normalization layer built with `mean` and `variance`. "
                f"Received: mean={self.input_mean!r}"
            )
        if batches is None:
            mean, variance = data.mean(axis=self._reduce_axis), data.var(axis=self._reduce_axis)
        else:
            mean, variance = self._combine_batches(batches)
        self.adapt_mean.assign(np.asarray(mean))
        self.adapt_variance.assign(np.asarray(variance))

    def _combine_batches(self, batches):
        mean = np.zeros(self._mean_and_var_shape, dtype="float64")
        variance = np.zeros(self._mean_and_var_shape, dtype="float64")
        total = 0
        for batch in batches:
            batch = _arrays.to_numpy(_first_of_pair(batch)).astype(self.compute_dtype)
            self._check_adapt_shape(batch.shape, "a batch")
            count = math.prod(batch.shape[d] for d in self._reduce_axis)
            if count == 0:
                continue
            batch_mean = batch.mean(axis=self._reduce_axis, dtype="float64")
            batch_variance = batch.var(axis=self._reduce_axis, dtype="float64")
            total += count
            w_new = count / total
            w_old = 1.0 - w_new
            new_mean = mean * w_old + batch_mean * w_new
            variance = ((variance + (mean - new_mean) ** 2) * w_old
                        + (batch_variance + (batch_mean - new_mean) ** 2) * w_new)
            mean = new_mean
        return mean, variance

    # ---- call ------------------------------------------------------------------------------
    def _statistics(self, x):
        """(mean, variance) on ``x``'s device in the broadcast shape: the given constants, or the
        weights as they are now (so set_weights and adapt take effect at once)."""
        if self._given is not None:
            xp = _arrays.array_module(x)
            return xp.asarray(self._given[0]), xp.asarray(self._given[1])
        dtype = np.dtype(self.compute_dtype)
        return (_weight_as(self.adapt_mean, x, self._broadcast_shape, dtype),
                _weight_as(self.adapt_variance, x, self._broadcast_shape, dtype))

    def call(self, inputs):
        x = F.cast(inputs, self.compute_dtype)
        mean, variance = self._statistics(x)
        stddev = F.maximum(F.sqrt(variance), _KERAS_EPSILON)
        if self.invert:
            return F.add(mean, F.multiply(x, stddev))
        return F.divide(F.subtract(x, mean), stddev)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "invert": self.invert,
            "mean": np.array(self.input_mean).tolist(),
            "variance": np.array(self.input_variance).tolist(),
        }

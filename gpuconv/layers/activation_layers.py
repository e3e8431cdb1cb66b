"""The activation layers: ReLU, LeakyReLU, PReLU, ELU, Softmax, with Keras 3.15's signatures,
defaults, configs and error texts.

They compute with gpuconv's recorded functions (``gpuconv.activations`` and
``gpuconv.autodiff.functions``) on whichever array library owns the input (NumPy or CuPy), so a
``GradientTape`` differentiates them with Keras' (torch backend) choice at the kinks:
relu'(0) = 0, leaky_relu'(0) = the slope, elu'(0) = alpha, relu6' = 0 at 0 and 6.

Where gpuconv is stricter than Keras (Keras lets these through and fails later, or silently
computes something else): a non-numeric ``max_value`` / ``negative_slope`` / ``threshold`` /
``alpha`` is a TypeError naming the argument; a NaN one is a ValueError; PReLU's
``shared_axes`` must be axes 1..rank-1 of the input (Keras takes 0 or a negative axis to mean
another axis); Softmax's ``axis`` must be an int or a list/tuple of distinct ints in range.
"""
import math
import numbers
import threading
import warnings

import numpy as np

from .. import activations, constraints, initializers, regularizers
from .. import arrays as _arrays
from ..autodiff import functions as F
from .base_layer import InputSpec, Layer

__all__ = ["ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax"]


def _check_real(value, arg, layer):
    """``value`` must be a real number (not a bool, not NaN): Keras compares it with 0 and would
    raise a bare '<' TypeError for a string, or take True for 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Argument `{arg}` of a {layer} layer must be a number. Received: {arg}={value!r}")
    if math.isnan(value):
        raise ValueError(f"Argument `{arg}` of a {layer} layer cannot be NaN. Received: {arg}={value!r}")


def _plain(value):
    """A NumPy scalar as the Python number it holds, so the config stays JSON data."""
    return value.item() if isinstance(value, np.generic) else value


def _check_non_negative(value, arg, layer, message):
    """Keras' check (None or < 0 -> ValueError with ``message``), after the type check."""
    if value is None:
        raise ValueError(message)
    _check_real(value, arg, layer)
    if value < 0:
        raise ValueError(message)


# --------------------------------------------------------------------------------------------
# ReLU
# --------------------------------------------------------------------------------------------
class ReLU(Layer):
    """Keras' general relu: ``max_value`` clips from above, values below ``threshold`` get
    ``negative_slope * (x - threshold)``. ``ReLU(6.0)`` is MobileNet's relu6."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None:
            _check_non_negative(max_value, "max_value", "ReLU",
                                "max_value of a ReLU layer cannot be a negative value. "
                                f"Received: max_value={max_value}")
        _check_non_negative(negative_slope, "negative_slope", "ReLU",
                            "negative_slope of a ReLU layer cannot be None or a negative value. "
                            f"Received: negative_slope={negative_slope}")
        _check_non_negative(threshold, "threshold", "ReLU",
                            "threshold of a ReLU layer cannot be None or a negative value. "
                            f"Received: threshold={threshold}")
        # Stored as given (a NumPy scalar as a Python number): Keras writes them back unchanged
        # (ReLU(6.0) -> 6.0, ReLU(6) -> 6).
        self.max_value = _plain(max_value)
        self.negative_slope = _plain(negative_slope)
        self.threshold = _plain(threshold)
        self._build_at_init()  # no weights: built at construction, as Keras does

    def call(self, inputs):
        return activations.relu(inputs, negative_slope=self.negative_slope, max_value=self.max_value,
                                threshold=self.threshold)

    def compute_output_shape(self, input_shape):
        return input_shape  # Keras returns the argument itself (a list stays a list)

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold}


# --------------------------------------------------------------------------------------------
# LeakyReLU
# --------------------------------------------------------------------------------------------
class LeakyReLU(Layer):
    """``x`` for x >= 0, ``negative_slope * x`` below. The Keras 2 name ``alpha`` is still taken
    (with Keras' deprecation warning) so old configs load."""

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:  # Keras 2 configs; the legacy name wins, as in Keras
            negative_slope = kwargs.pop("alpha")
            warnings.warn("Argument `alpha` is deprecated. Use `negative_slope` instead.", stacklevel=2)
        super().__init__(**kwargs)
        _check_non_negative(negative_slope, "negative_slope", "LeakyReLU",
                            "The negative_slope value of a Leaky ReLU layer cannot be None or negative value. "
                            f"Expected a float. Received: negative_slope={negative_slope}")
        self.negative_slope = _plain(negative_slope)
        self._build_at_init()

    def call(self, inputs):
        return activations.leaky_relu(inputs, negative_slope=self.negative_slope)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


# --------------------------------------------------------------------------------------------
# PReLU
# --------------------------------------------------------------------------------------------
def _standardize_shared_axes(shared_axes):
    """Keras' normalisation (None, an int -> [int], a list/tuple -> list), each an int >= 1
    (axis 0 is the batch, which alpha never spans)."""
    if shared_axes is None:
        return None
    axes = list(shared_axes) if isinstance(shared_axes, (list, tuple)) else [shared_axes]
    for axis in axes:
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(
                f"Argument `shared_axes` must be an int or a list of ints. Received: shared_axes={shared_axes!r}"
            )
        if axis < 1:
            raise ValueError(
                "Argument `shared_axes` holds input axes >= 1 (axis 0 is the batch). "
                f"Received: shared_axes={shared_axes!r}"
            )
    return [int(a) for a in axes]


class PReLU(Layer):
    """``relu(x) - alpha * relu(-x)`` with a learned ``alpha`` of the input's shape without the
    batch, size 1 along ``shared_axes``."""

    def __init__(self, alpha_initializer="Zeros", alpha_regularizer=None, alpha_constraint=None, shared_axes=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        self.alpha_constraint = constraints.get(alpha_constraint)
        self.shared_axes = _standardize_shared_axes(shared_axes)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        shared = set(self.shared_axes or ())
        for axis in shared:
            if axis >= len(input_shape):
                raise ValueError(
                    f"Argument `shared_axes` names axis {axis}, but the input has rank {len(input_shape)}. "
                    f"Received: shared_axes={self.shared_axes}, input_shape={input_shape}"
                )
        param_shape = []
        for axis in range(1, len(input_shape)):
            size = 1 if axis in shared else input_shape[axis]
            if size is None:
                raise ValueError(
                    f"PReLU needs a known size for axis {axis} of its input (or that axis in `shared_axes`). "
                    f"Received: input_shape={input_shape}"
                )
            param_shape.append(size)
        self.alpha = self.add_weight("alpha", param_shape, initializer=self.alpha_initializer,
                                     regularizer=self.alpha_regularizer, constraint=self.alpha_constraint)
        # Every axis alpha spans must keep its size (Keras checks only with shared_axes and then
        # fails in the broadcast).
        axes = {axis: input_shape[axis] for axis in range(1, len(input_shape)) if axis not in shared}
        self.input_spec = InputSpec(ndim=len(input_shape), axes=axes)
        self.built = True

    def call(self, inputs):
        alpha = F.cast(self.alpha.array_like(inputs), inputs.dtype)  # mixed policy: float32 weight, float16 compute
        positive = activations.relu(inputs)
        negative = activations.relu(F.negative(inputs))
        return F.subtract(positive, F.multiply(alpha, negative))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "alpha_initializer": initializers.serialize(self.alpha_initializer),
            "alpha_regularizer": regularizers.serialize(self.alpha_regularizer),
            "alpha_constraint": constraints.serialize(self.alpha_constraint),
            "shared_axes": self.shared_axes,
        }


# --------------------------------------------------------------------------------------------
# ELU
# --------------------------------------------------------------------------------------------
class ELU(Layer):
    """``x`` for x > 0, ``alpha * (exp(x) - 1)`` below."""

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        _check_real(alpha, "alpha", "ELU")
        self.alpha = _plain(alpha)
        self._build_at_init()

    def call(self, inputs):
        return activations.elu(inputs, alpha=self.alpha)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        # Keras' ELU has no get_config of its own: its automatic config lists the constructor
        # arguments after the name (alpha, then an activity_regularizer if one was passed),
        # then the base keys.
        base = super().get_config()
        config = {"name": base.pop("name"), "alpha": self.alpha}
        if "activity_regularizer" in base:
            config["activity_regularizer"] = base.pop("activity_regularizer")
        return {**config, **base}


# --------------------------------------------------------------------------------------------
# Softmax
# --------------------------------------------------------------------------------------------
def _check_axis(axis):
    """An int, or a non-empty list/tuple of ints (the container kept: Keras writes it back as
    given; NumPy ints become Python ints so the config stays JSON data)."""
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    if not axes or any(isinstance(a, bool) or not isinstance(a, numbers.Integral) for a in axes):
        raise TypeError(f"Argument `axis` must be an int or a list of ints. Received: axis={axis!r}")
    if isinstance(axis, (list, tuple)):
        return type(axis)(int(a) for a in axis)
    return int(axis)


def _resolve_axes(axis, ndim):
    """The axes of an input of rank ``ndim``, non-negative and distinct."""
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    if any(not -ndim <= a < ndim for a in axes):
        raise ValueError(f"Argument `axis` is out of bounds for an input of rank {ndim}. Received: axis={axis!r}")
    resolved = tuple(int(a) % ndim for a in axes)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"Argument `axis` repeats an axis. Received: axis={axis!r}")
    return resolved


def _large_negative(dtype):
    """What a masked logit becomes: Keras' -1e9, or -3e4 where float16 would overflow to -inf."""
    return -3e4 if np.dtype(dtype) == np.float16 else -1e9


def _check_mask_shape(mask_shape, input_shape):
    """Keras' rule: the mask broadcasts to the input without adding axes."""
    if len(mask_shape) > len(input_shape):
        raise ValueError(
            "The `mask` must be broadcastable to `inputs` and must not have more dimensions. "
            f"Received: inputs.shape={input_shape}, mask.shape={mask_shape}"
        )
    for m, i in zip(mask_shape[::-1], input_shape[::-1]):
        if m != 1 and m != i:
            raise ValueError(
                "The `mask` must be broadcastable to `inputs`. Each mask dimension must be 1 or match the "
                f"corresponding input dimension. Received: inputs.shape={input_shape}, mask.shape={mask_shape}"
            )


# The mask of the call in progress, per thread and layer: the base __call__ (input conversion,
# activity regularizer, training) runs unchanged and hands only ``inputs`` to ``call``.
_call_masks = threading.local()


class Softmax(Layer):
    """Softmax over ``axis`` (an int, or several axes normalised together). A ``mask`` (True or
    > 0.5 keeps an entry) sends masked logits to a large negative number before the softmax and
    zeroes them after, so an all-masked row is all zeros, as in Keras."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = _check_axis(axis)
        self._build_at_init()

    def __call__(self, inputs, mask=None, training=None):
        if mask is None:
            return super().__call__(inputs, training=training)
        masks = getattr(_call_masks, "by_layer", None)
        if masks is None:
            masks = _call_masks.by_layer = {}
        masks[id(self)] = mask
        try:
            return super().__call__(inputs, training=training)
        finally:
            masks.pop(id(self), None)

    def call(self, inputs, mask=None):
        if mask is None:
            mask = getattr(_call_masks, "by_layer", {}).get(id(self))
        axes = _resolve_axes(self.axis, inputs.ndim)
        if mask is not None:
            mask = self._device_mask(mask, inputs)
            fill = _arrays.array_module(inputs).asarray(_large_negative(inputs.dtype), dtype=inputs.dtype)
            inputs = F.where(mask, inputs, fill)
        if len(axes) == 1:
            outputs = activations.softmax(inputs, axis=axes[0])
        else:  # several axes: one normalisation over all of them
            outputs = F.exp(F.subtract(inputs, F.logsumexp(inputs, axis=axes, keepdims=True)))
        if mask is not None:
            # A fully masked row would otherwise come out uniform.
            outputs = F.where(mask, outputs, _arrays.array_module(outputs).zeros((), dtype=outputs.dtype))
        return outputs

    def _device_mask(self, mask, inputs):
        """The mask as a bool array on the input's device, shape-checked (Keras' texts)."""
        mask = _arrays.as_array(mask, "mask", f'layer "{self.name}"')
        _check_mask_shape(tuple(mask.shape), tuple(inputs.shape))
        xp = _arrays.array_module(inputs)
        mask = xp.asarray(mask)
        return mask if mask.dtype == np.bool_ else mask > 0.5

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}

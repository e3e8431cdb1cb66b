"""The layers a whole CNN needs around the convolutions: Input / InputLayer, Dense, Flatten,
Dropout, Activation, with Keras 3.15's signatures, defaults, configs and error texts.

They compute with whichever array library owns the input (NumPy or CuPy, through
``arrays.array_module``), with the weights fetched on the input's device by
``Variable.array_like``, through the recorded array functions (``gpuconv.autodiff.functions``)
so a ``GradientTape`` can differentiate them.
"""
import math
import numbers

import numpy as np

from .. import activations, constraints, initializers, regularizers
from .. import arrays as _arrays
from .. import geometry as g
from ..autodiff import functions as F
from ..autodiff import tape as _ad
from ..dtypes import accumulation_dtype
from .base_layer import InputSpec, Layer, unique_name
from .symbolic import Node, SymbolicTensor

__all__ = ["Input", "InputLayer", "Dense", "Flatten", "Dropout", "Activation"]


def _standardize_shape(shape):
    """Keras' ``standardize_shape``: a tuple of non-negative ints or None."""
    if shape is None:
        raise ValueError("Undefined shapes are not supported.")
    if not hasattr(shape, "__iter__") or isinstance(shape, str):
        raise ValueError(f"Cannot convert '{shape}' to a shape.")
    shape = tuple(shape)
    out = []
    for d in shape:
        if d is None:
            out.append(None)
            continue
        if isinstance(d, (str, float, bool)) or not isinstance(d, numbers.Integral):
            raise ValueError(
                f"Cannot convert '{shape}' to a shape. Found invalid dimension '{d}' of type '{type(d)}'. "
            )
        if d < 0:
            raise ValueError(f"Cannot convert '{shape}' to a shape. Negative dimensions are not allowed.")
        out.append(int(d))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------
class InputLayer(Layer):
    """The entry point of a model: holds the batch shape and dtype; passes arrays through."""

    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None, ragged=None, batch_shape=None,
                 input_tensor=None, optional=False, name=None, **kwargs):
        if "input_shape" in kwargs:
            shape = kwargs.pop("input_shape")
        if "batch_input_shape" in kwargs:
            batch_shape = kwargs.pop("batch_input_shape")
        super().__init__(name=name or unique_name("input_layer"), **kwargs)
        if input_tensor is not None:
            raise ValueError(
                "Argument `input_tensor` is not supported by gpuconv's InputLayer. "
                f"Received: input_tensor={input_tensor!r}"
            )
        if shape is not None and batch_shape is not None:
            raise ValueError("You cannot pass both `shape` and `batch_shape` at the same time.")
        if batch_size is not None and batch_shape is not None:
            raise ValueError("You cannot pass both `batch_size` and `batch_shape` at the same time.")
        if shape is None and batch_shape is None:
            raise ValueError("You must pass a `shape` argument.")
        if sparse or ragged:
            raise ValueError(f"`sparse=True` and `ragged=True` are not supported. Received: sparse={sparse}, ragged={ragged}")
        if batch_shape is None:
            batch_shape = (batch_size,) + _standardize_shape(shape)
        self._batch_shape = _standardize_shape(batch_shape)
        self._input_dtype = np.dtype("float32" if dtype is None else dtype).name
        self.sparse = False
        self.ragged = False
        self.optional = bool(optional)
        self.output = SymbolicTensor(self._batch_shape, self._input_dtype, self.name, self)
        Node(self, [], [self.output])  # the input node every functional graph starts from
        self.built = True

    @property
    def batch_shape(self):
        return self._batch_shape

    @property
    def dtype(self):
        return self._input_dtype

    def __call__(self, inputs, training=None):
        """Arrays pass through, converted to the declared dtype (a Keras model converts its
        inputs to the Input's dtype); the next layer's InputSpec checks the shape."""
        if inputs is None:
            raise TypeError(f'Layer "{self.name}" received inputs=None; expected an array.')
        inputs = _arrays.as_array(inputs, "inputs", f'layer "{self.name}"')
        if inputs.dtype == self._input_dtype:
            return inputs
        cast = inputs.astype(self._input_dtype)
        _ad.record_identity(inputs, cast)
        return cast

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            "batch_shape": self.batch_shape,
            "dtype": self.dtype,
            "sparse": self.sparse,
            "ragged": self.ragged,
            "name": self.name,
            "optional": self.optional,
        }


def Input(shape=None, batch_size=None, dtype=None, sparse=None, ragged=None, batch_shape=None, name=None,
          tensor=None, optional=False):
    """A symbolic input of ``shape`` (without the batch) for ``Sequential([Input(...), ...])``."""
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse, ragged=ragged,
                       batch_shape=batch_shape, name=name, input_tensor=tensor, optional=optional)
    return layer.output


# --------------------------------------------------------------------------------------------
# Dense
# --------------------------------------------------------------------------------------------
class Dense(Layer):
    """``activation(inputs @ kernel + bias)`` over the last axis of an input of rank >= 2;
    kernel (in, units), bias (units,)."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, lora_rank=None,
                 lora_alpha=None, quantization_config=None, **kwargs):
        # Keras' signature, for drop-in calls; LoRA and quantization are training/compression
        # features this inference library does not implement, so only their defaults are accepted.
        for arg, value in (("lora_rank", lora_rank), ("lora_alpha", lora_alpha),
                           ("quantization_config", quantization_config)):
            if value is not None:
                raise ValueError(
                    f"gpuconv's Dense does not support LoRA or quantization; `{arg}` must be None. Received: {arg}={value}"
                )
        if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units <= 0:
            raise ValueError(
                f"Received an invalid value for `units`, expected a positive integer. Received: units={units}"
            )
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.input_spec = InputSpec(min_ndim=2)

    def build(self, input_shape):
        in_features = input_shape[-1]
        if in_features is None:
            raise ValueError(
                f"The last dimension of the inputs to a Dense layer should be defined. Found None. "
                f"Full input shape received: {tuple(input_shape)}"
            )
        self._kernel = self.add_weight("kernel", (in_features, self.units), initializer=self.kernel_initializer,
                                       regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.units,), initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        else:
            self.bias = None
        self.input_spec = InputSpec(min_ndim=2, axes={-1: in_features})
        self.built = True

    @property
    def kernel(self):
        if not self.built:
            raise AttributeError("You must build the layer before accessing `kernel`.")
        return self._kernel

    def call(self, inputs):
        work = accumulation_dtype(inputs.dtype)  # float16 multiplied in float32, rounded once
        kernel = F.cast(self._kernel.array_like(inputs), work)
        y = F.matmul(F.cast(inputs, work), kernel)
        if self.bias is not None:
            y = F.add(y, F.cast(self.bias.array_like(inputs), work))
        y = F.cast(y, inputs.dtype)
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "quantization_config": None,
        }


# --------------------------------------------------------------------------------------------
# Flatten
# --------------------------------------------------------------------------------------------
class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...). channels_first inputs are first moved to
    channels_last order, as Keras does, so a following Dense sees the same feature order."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = g.standardize_data_format(data_format)
        self.input_spec = InputSpec(min_ndim=1)

    def call(self, inputs):
        if self.data_format == "channels_first" and inputs.ndim > 1:
            inputs = F.transpose(inputs, (0, *range(2, inputs.ndim), 1))
        features = math.prod(inputs.shape[1:])  # 1 for a rank-1 input; explicit so a batch of 0 works
        return F.reshape(inputs, (inputs.shape[0], features))

    def compute_output_shape(self, input_shape):
        rest = tuple(input_shape[1:])
        features = None if any(d is None for d in rest) else math.prod(rest)
        return (input_shape[0], features)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


# --------------------------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------------------------
def _validate_noise_shape(noise_shape):
    if noise_shape is None:
        return None
    if isinstance(noise_shape, str):
        raise ValueError(
            "Invalid value received for argument `noise_shape`. Expected a tuple or list of integers. "
            f"Received: noise_shape={noise_shape}"
        )
    try:
        noise_shape = tuple(noise_shape)
    except TypeError:
        raise ValueError(
            "Invalid value received for argument `noise_shape`. Expected an iterable of integers "
            f"(e.g., a tuple or list). Received: noise_shape={noise_shape}"
        ) from None
    for i, dim in enumerate(noise_shape):
        if dim is None:
            continue
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
            raise ValueError(
                "Invalid value received for argument `noise_shape`. Expected all elements to be integers or None. "
                f"Received element at index {i}: {dim} (type: {type(dim).__name__})"
            )
        if dim <= 0:
            raise ValueError(
                "Invalid value received for argument `noise_shape`. Expected all dimensions to be positive "
                f"integers or None. Received negative or zero value at index {i}: {dim}"
            )
    return noise_shape


class Dropout(Layer):
    """The identity at inference (the default, and all a forward-only library runs).

    ``layer(x, training=True)`` does apply inverted dropout (kept units scaled by 1/(1-rate)),
    with a mask of ``noise_shape`` (None entries take the input's size) drawn from ``seed``.
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate <= 1:
            raise ValueError(
                "Invalid value received for argument `rate`. Expected a float value between 0 and 1. "
                f"Received: rate={rate}"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise ValueError(f"Argument `seed` must be an integer or None. Received: seed={seed!r}")
        self.rate = rate
        self.seed = seed
        self.noise_shape = _validate_noise_shape(noise_shape)
        # seed=None: drawn now from gpuconv's generator (Keras' SeedGenerator does the same), so
        # a model built after `set_random_seed` drops the same units on every run.
        from ..utils.random import draw_seed

        self._rng = np.random.default_rng(seed if seed is not None else draw_seed())
        self._build_at_init()  # no weights: built at construction, as Keras does

    def call(self, inputs):
        return inputs

    def _call_training(self, inputs, training):
        if not training or self.rate == 0:
            return inputs
        if self.rate == 1:
            return F.multiply(inputs, 0)
        shape = tuple(inputs.shape)
        if self.noise_shape is not None:
            shape = tuple(s if n is None else n for n, s in zip(self.noise_shape, inputs.shape))
        keep = self._rng.random(shape) >= self.rate  # drawn on the host so a seed gives the same mask everywhere
        xp = _arrays.array_module(inputs)
        scale = xp.asarray(keep / (1.0 - self.rate), dtype=inputs.dtype)
        return F.multiply(inputs, scale)  # recorded: the gradient is the mask times the scale

    def compute_output_shape(self, input_shape):
        return input_shape  # Keras returns the argument itself (a list stays a list)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed, "noise_shape": self.noise_shape}


# --------------------------------------------------------------------------------------------
# Activation
# --------------------------------------------------------------------------------------------
class Activation(Layer):
    """Applies ``activations.get(activation)`` to its input."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        self._build_at_init()  # no weights: built at construction, as Keras does

    def call(self, inputs):
        return self.activation(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape  # Keras returns the argument itself (a list stays a list)

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}

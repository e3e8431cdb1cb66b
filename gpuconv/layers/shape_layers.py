"""Identity, Reshape, Permute, RepeatVector, with Keras 3.15's signatures, configs and error texts.

Each only moves elements, through the recorded functions of ``gpuconv.autodiff.functions``
(reshape, transpose, a broadcast multiply by ones), so a ``GradientTape`` takes gradients back
through them, on NumPy or CuPy inputs alike.

Where gpuconv is stricter than Keras (which accepts these and fails later, or with a bare
Python error): ``target_shape`` / ``dims`` that are not sequences of ints are TypeErrors naming
the argument; ``RepeatVector`` also takes NumPy integers for ``n``.
"""
import math
import numbers

from ..autodiff import functions as F
from .. import arrays as _arrays
from .base_layer import InputSpec, Layer

__all__ = ["Identity", "Reshape", "Permute", "RepeatVector"]


def _is_int(value):
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)


def _int_tuple(value, arg):
    """``value`` as a tuple of Python ints, or a TypeError naming ``arg``."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"Argument `{arg}` must be a tuple of integers. Received: {arg}={value!r}")
    items = tuple(value)
    if not all(_is_int(d) for d in items):
        raise TypeError(f"Argument `{arg}` must be a tuple of integers. Received: {arg}={value!r}")
    return tuple(int(d) for d in items)


# --------------------------------------------------------------------------------------------
# Identity
# --------------------------------------------------------------------------------------------
class Identity(Layer):
    """Returns its input (a placeholder layer)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._build_at_init()

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


# --------------------------------------------------------------------------------------------
# Reshape
# --------------------------------------------------------------------------------------------
def _validate_target_shape(target_shape):
    """Keras' rule: each entry >= 0, or -1 at most once."""
    if any(d < -1 for d in target_shape):
        raise ValueError(
            "Each dimension in `target_shape` must be a non-negative integer, or `-1` for a single unknown "
            f"dimension. Received: target_shape={target_shape}."
        )
    if target_shape.count(-1) > 1:
        raise ValueError(
            "There must be at most one unknown dimension (-1) in `target_shape`. "
            f"Received: target_shape={target_shape}."
        )


def _resolve_target_shape(input_shape, target_shape):
    """``target_shape`` with its -1 worked out from ``input_shape`` (both without the batch);
    None where an input size is unknown. Keras' texts when the sizes cannot agree."""
    if None in input_shape:
        return tuple(None if d == -1 else d for d in target_shape)
    size = math.prod(input_shape)
    if -1 not in target_shape:
        if size != math.prod(target_shape):
            raise ValueError(
                "The total size of the tensor must be unchanged. Received: "
                f"input_shape={input_shape}, target_shape={target_shape}"
            )
        return target_shape
    known = math.prod(d for d in target_shape if d != -1)
    if known == 0 or size % known != 0:
        raise ValueError(
            "The total size of the tensor must be unchanged, however, the input size cannot by divided by the "
            f"specified dimensions in target_shape. Received: input_shape={input_shape}, target_shape={target_shape}"
        )
    return tuple(size // known if d == -1 else d for d in target_shape)


class Reshape(Layer):
    """Reshapes everything but the batch to ``target_shape`` (one entry may be -1)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        target_shape = _int_tuple(target_shape, "target_shape")
        _validate_target_shape(target_shape)
        self.target_shape = target_shape
        self._build_at_init()

    def call(self, inputs):
        shape = _resolve_target_shape(tuple(inputs.shape[1:]), self.target_shape)
        return F.reshape(inputs, (inputs.shape[0],) + shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *_resolve_target_shape(tuple(input_shape[1:]), self.target_shape))

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}


# --------------------------------------------------------------------------------------------
# Permute
# --------------------------------------------------------------------------------------------
class Permute(Layer):
    """Permutes the axes after the batch: ``dims`` is a permutation of 1..rank-1 (1-based, the
    batch stays first)."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        dims = _int_tuple(dims, "dims")
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(
                "Invalid permutation argument `dims` for Permute Layer. The set of indices in `dims` must be "
                f"consecutive and start from 1. Received dims={dims}"
            )
        self.dims = dims
        # Built on its first call, as in Keras (a model records its build shape).
        self.input_spec = InputSpec(ndim=len(dims) + 1)

    def call(self, inputs):
        return F.transpose(inputs, (0,) + self.dims)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *(input_shape[d] for d in self.dims))

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}


# --------------------------------------------------------------------------------------------
# RepeatVector
# --------------------------------------------------------------------------------------------
class RepeatVector(Layer):
    """(batch, features) -> (batch, n, features)."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if not _is_int(n):
            raise TypeError(f"Expected an integer value for `n`, got {type(n)}.")
        if n <= 0:
            raise ValueError(f"Argument `n` should be a positive integer. Received: n={n}")
        self.n = int(n)
        self.input_spec = InputSpec(ndim=2)  # built on first call, as Keras

    def call(self, inputs):
        rows = F.reshape(inputs, (inputs.shape[0], 1, inputs.shape[1]))
        # A broadcast multiply by ones copies each row n times exactly (NaN, inf and -0.0 kept),
        # and its recorded backward sums the n copies' gradients.
        ones = _arrays.array_module(inputs).ones((1, self.n, 1), dtype=inputs.dtype)
        return F.multiply(rows, ones)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])

    def get_config(self):
        return {**super().get_config(), "n": self.n}

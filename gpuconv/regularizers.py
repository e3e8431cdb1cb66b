"""Keras 3's weight regularizers: L1, L2, L1L2, OrthogonalRegularizer.

A regularizer is called on a weight array (NumPy or CuPy) and returns the penalty as a 0-d array
of the same library and dtype, computed with the recorded functions of
``gpuconv.autodiff.functions``: under a ``GradientTape`` that watches the weight, the penalty is
differentiable (``Layer.losses`` relies on it). Names, configs and error texts follow Keras 3.15
(``keras/src/regularizers``). Besides Keras' names ('l1', 'l2', 'l1l2', 'L1L2', ...), 'l1_l2'
is accepted too (the Keras 2 spelling).
"""
import numpy as np
import math

from . import arrays as _arrays
from .autodiff import functions as F
from .serialization import get_object, registry, serialize_object, deserialize_object

_KIND = "regularizer"
_MODULE = "keras.regularizers"
_EPSILON = 1e-7  # keras.config.epsilon()


def validate_float_arg(value, name):
    """A finite, non-negative int or float, returned as float (Keras' check and text)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (float, int))
        or math.isinf(value)
        or math.isnan(value)
        or value < 0
    ):
        raise ValueError(
            f"Invalid value for argument {name}: expected a non-negative float.Received: {name}={value}"
        )
    return float(value)


def _as_array(x):
    xp = _arrays.array_module(x)
    return xp, xp.asarray(x)


def _l1_penalty(l1, x):
    return F.multiply(l1, F.sum(F.abs(x)))


def _l2_penalty(l2, x):
    return F.multiply(l2, F.sum(F.square(x)))


class Regularizer:
    """Base class: ``__call__(x) -> penalty``, ``get_config``, ``from_config``."""

    def __call__(self, x):
        return 0.0

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def get_config(self):
        raise NotImplementedError(f"{self} does not implement get_config()")

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


class L1L2(Regularizer):
    """``l1 * sum(|x|) + l2 * sum(x**2)``."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = validate_float_arg(0.0 if l1 is None else l1, name="l1")
        self.l2 = validate_float_arg(0.0 if l2 is None else l2, name="l2")

    def __call__(self, x):
        xp, x = _as_array(x)
        penalty = xp.zeros((), dtype=x.dtype)
        if self.l1:
            penalty = F.add(penalty, _l1_penalty(self.l1, x))
        if self.l2:
            penalty = F.add(penalty, _l2_penalty(self.l2, x))
        return penalty

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    """``l1 * sum(|x|)``."""

    def __init__(self, l1=0.01):
        # Keras keeps l1 as a float32 tensor, so its config reports the float32-rounded value
        # (0.009999999776482582 for 0.01); L2/L1L2 keep Python floats.
        self.l1 = float(np.float32(validate_float_arg(0.01 if l1 is None else l1, name="l1")))

    def __call__(self, x):
        return _l1_penalty(self.l1, _as_array(x)[1])

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    """``l2 * sum(x**2)``."""

    def __init__(self, l2=0.01):
        self.l2 = validate_float_arg(0.01 if l2 is None else l2, name="l2")

    def __call__(self, x):
        return _l2_penalty(self.l2, _as_array(x)[1])

    def get_config(self):
        return {"l2": self.l2}


class OrthogonalRegularizer(Regularizer):
    """``factor/2 * mean over pairs |<u_i, u_j>|`` of the L2-normalised rows (mode='rows') or
    columns (mode='columns') of a 2-D weight: zero when they are mutually orthogonal."""

    def __init__(self, factor=0.01, mode="rows"):
        self.factor = validate_float_arg(factor, name="factor")
        if mode not in {"rows", "columns"}:
            raise ValueError(
                'Invalid value for argument `mode`. Expected one of {"rows", "columns"}. '
                f"Received: mode={mode}"
            )
        self.mode = mode

    def __call__(self, inputs):
        xp, x = _as_array(inputs)
        if x.ndim != 2:
            raise ValueError(f"Inputs to OrthogonalRegularizer must have rank 2. Received: inputs.shape={tuple(x.shape)}")
        vectors = x if self.mode == "rows" else F.transpose(x)
        # Keras' ops.normalize (zero rows stay zero, and keep a finite gradient here).
        unit = F.normalize(vectors, axis=1, epsilon=_EPSILON)
        product = F.matmul(unit, F.transpose(unit))
        size = product.shape[0]
        off_diagonal = F.multiply(product, 1.0 - xp.eye(size, dtype=product.dtype))
        num_pairs = size * (size - 1.0) / 2.0
        # a single row has no pairs: 0 / 0 is NaN, as in Keras
        return F.divide(F.multiply(self.factor * 0.5, F.sum(F.abs(off_diagonal))), num_pairs)

    def get_config(self):
        return {"factor": self.factor, "mode": self.mode}


ALL_OBJECTS_DICT = registry([Regularizer, L1, L2, L1L2, OrthogonalRegularizer], aliases={"l1_l2": L1L2})

l1, l2, l1l2, l1_l2, orthogonal_regularizer = L1, L2, L1L2, L1L2, OrthogonalRegularizer


def serialize(regularizer):
    return serialize_object(regularizer, _MODULE)


def deserialize(config, custom_objects=None):
    """The object a Keras config dict describes (built-ins, or objects the caller supplies)."""
    return deserialize_object(config, ALL_OBJECTS_DICT, _KIND, custom_objects)


def get(identifier, custom_objects=None):
    """Keras' ``regularizers.get``: None, a name, a config dict, a class, an instance or a callable."""
    return get_object(identifier, ALL_OBJECTS_DICT, _KIND, custom_objects)

"""Keras 3's weight initializers, producing NumPy arrays.

Calling convention (what ``Layer.add_weight`` uses): ``init(shape, dtype=None) -> numpy.ndarray``.
Distributions, limits, fans and configs follow Keras 3.15 (``keras/src/initializers``); the
random values come from NumPy's generator, so they are not bitwise Keras' values. Samples are
drawn in float64 and rounded once to ``dtype``.

Seeds: an int seed makes every call of the initializer (and of any initializer built with the
same seed) return the same values; ``seed=None`` draws fresh values on every call, from a seed
that gpuconv's generator gives (``gpuconv.utils.set_random_seed`` makes those reproducible).
"""
import math
import numbers

import numpy as np

from . import dtypes as _dtypes
from .serialization import get_object, registry, serialize_object, deserialize_object

_KIND = "initializer"
_MODULE = "keras.initializers"
_TRUNCATION_STDDEV = 0.87962566103423978  # stddev of a unit normal truncated to [-2, 2]


def _dtype(dtype):
    """``dtype`` as a NumPy dtype ('bfloat16' included); None is Keras' floatx, float32."""
    return _dtypes.resolve("float32" if dtype is None else dtype)


def _float_dtype(dtype):
    dtype = _dtype(dtype)
    if not _dtypes.is_float(dtype):
        raise ValueError(f"Initializers need a floating-point dtype. Received: dtype={dtype}")
    return dtype


def _standardize_shape(shape):
    try:
        shape = tuple(int(d) for d in shape)
    except TypeError:
        shape = (int(shape),)
    if any(d < 0 for d in shape):
        raise ValueError(f"Cannot convert '{shape}' to a shape. Negative dimensions are not allowed.")
    return shape


def compute_fans(shape, input_axes=None, output_axes=None):
    """Keras' fans: (fan_in, fan_out) = (prod(shape[:-2]) * shape[-2], prod(shape[:-2]) * shape[-1])
    for rank >= 3; shape[0], shape[1] for rank 2; shape[0] twice for rank 1; 1 for scalars.
    ``input_axes``/``output_axes`` (both given) override: the products of those dims."""
    shape = tuple(shape)
    if input_axes is not None and output_axes is not None:
        return int(math.prod(shape[a] for a in input_axes)), int(math.prod(shape[a] for a in output_axes))
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return int(shape[0]), int(shape[0])
    if len(shape) == 2:
        return int(shape[0]), int(shape[1])
    receptive_field = math.prod(shape[:-2])
    return int(shape[-2] * receptive_field), int(shape[-1] * receptive_field)


class Initializer:
    """Base class: ``__call__(shape, dtype=None)``, ``get_config``, ``from_config``, ``clone``."""

    def __call__(self, shape, dtype=None):
        raise NotImplementedError("Initializer subclasses must implement the `__call__()` method.")

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def clone(self):
        return type(self).from_config(self.get_config())

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


# --------------------------------------------------------------------------------------------
# Constant initializers
# --------------------------------------------------------------------------------------------
def _invalid_constant(value):
    return ValueError(
        "Argument `value` of Constant must be a real number, or a list or array of real numbers that "
        f"broadcasts to the weight's shape. Received: value={value!r}"
    )


def _decode_array_config(value):
    """Keras' serialized array (``{'class_name': '__numpy__', 'config': {'value', 'dtype'}}``, as
    its Constant.get_config writes an array value) as an array; any other dict is refused."""
    inner = value.get("config")
    if value.get("class_name") not in ("__numpy__", "__tensor__") or not isinstance(inner, dict):
        raise _invalid_constant(value)
    try:
        return np.asarray(inner.get("value"), dtype=np.dtype(inner.get("dtype")))
    except (TypeError, ValueError) as e:
        raise _invalid_constant(value) from e


def _constant_value(value):
    """What Keras' Constant computes with: a real scalar, or real numbers Keras broadcasts to the
    shape (``cast(value) * ones(shape)``). Anything else (strings, bytes, None, complex numbers,
    objects) is refused here, at construction, rather than inside a later cast."""
    if isinstance(value, dict):
        value = _decode_array_config(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, numbers.Real):  # bool and int included, as in Keras
        return value
    try:
        kind = np.asarray(value).dtype.kind
    except (TypeError, ValueError):  # ragged nesting
        kind = "O"
    if isinstance(value, (str, bytes)) or kind not in "fiub":
        raise _invalid_constant(value)
    return value


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = _constant_value(value)

    def __call__(self, shape, dtype=None):
        shape = _standardize_shape(shape)
        try:
            return np.full(shape, self.value, dtype=_dtype(dtype))
        except ValueError as e:  # an array value that does not broadcast
            raise ValueError(
                f"Constant value of shape {np.shape(self.value)} cannot be broadcast to the requested "
                f"shape {shape}."
            ) from e

    def get_config(self):
        if isinstance(self.value, np.ndarray):  # Keras' serialized form of an array
            return {"value": {"class_name": "__numpy__",
                              "config": {"value": self.value.tolist(), "dtype": self.value.dtype.name}}}
        return {"value": self.value}


class Zeros(Initializer):
    def __call__(self, shape, dtype=None):
        return np.zeros(_standardize_shape(shape), dtype=_dtype(dtype))


class Ones(Initializer):
    def __call__(self, shape, dtype=None):
        return np.ones(_standardize_shape(shape), dtype=_dtype(dtype))


class Identity(Initializer):
    """``gain * eye(rows, cols)``; 2-D shapes only."""

    def __init__(self, gain=1.0):
        self.gain = gain

    def __call__(self, shape, dtype=None):
        shape = _standardize_shape(shape)
        if len(shape) != 2:
            raise ValueError(
                "Identity matrix initializer can only be used for 2D matrices. "
                f"Received: shape={shape} of rank {len(shape)}."
            )
        return (self.gain * np.eye(*shape)).astype(_float_dtype(dtype))

    def get_config(self):
        # Keras 3.15 reports {} here and so loses a non-default gain on a round trip; we keep it.
        return {"gain": self.gain}


# --------------------------------------------------------------------------------------------
# Random initializers
# --------------------------------------------------------------------------------------------
class RandomInitializer(Initializer):
    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(
                "`seed` argument should be an instance of `keras.random.SeedGenerator()` or an integer. "
                f"Received: seed={seed}"
            )
        self.seed = None if seed is None else int(seed)

    def _rng(self):
        # seed=None: a fresh seed from gpuconv's generator, so `set_random_seed` makes it reproducible.
        from .utils.random import draw_seed

        return np.random.default_rng(self.seed if self.seed is not None else draw_seed())

    def get_config(self):
        return {"seed": self.seed}


def _truncated_normal(rng, shape, mean, stddev):
    """Normal samples redrawn until within two standard deviations (Keras/TF truncation)."""
    values = rng.standard_normal(shape)
    bad = np.abs(values) > 2.0
    while bad.any():
        values[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(values) > 2.0
    return mean + stddev * values


class RandomNormal(RandomInitializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean = mean
        self.stddev = stddev
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        values = self._rng().normal(self.mean, self.stddev, _standardize_shape(shape))
        return values.astype(_float_dtype(dtype))

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class TruncatedNormal(RandomInitializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean = mean
        self.stddev = stddev
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        values = _truncated_normal(self._rng(), _standardize_shape(shape), self.mean, self.stddev)
        return values.astype(_float_dtype(dtype))

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class RandomUniform(RandomInitializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval = minval
        self.maxval = maxval
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        values = self._rng().uniform(self.minval, self.maxval, _standardize_shape(shape))
        return values.astype(_float_dtype(dtype))

    def get_config(self):
        return {**super().get_config(), "minval": self.minval, "maxval": self.maxval}


class VarianceScaling(RandomInitializer):
    """Samples with variance ``scale / n``, n = fan_in, fan_out or their mean (each at least 1).

    'truncated_normal' (alias 'normal'): stddev sqrt(scale/n) / 0.8796..., truncated at 2 stddev;
    'untruncated_normal': stddev sqrt(scale/n); 'uniform': limits +-sqrt(3 scale/n).
    """

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("uniform", "truncated_normal", "untruncated_normal")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 input_axes=None, output_axes=None):
        if not isinstance(scale, (int, float, np.number)) or isinstance(scale, bool) or not scale > 0.0:
            raise ValueError(f"Argument `scale` must be positive float. Received: scale={scale}")
        if mode not in self._MODES:
            raise ValueError(f"Invalid `mode` argument: {mode}. Please use one of {set(self._MODES)}")
        distribution = str(distribution).lower()
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in self._DISTRIBUTIONS:
            raise ValueError(
                f"Invalid `distribution` argument: {distribution}.Please use one of {set(self._DISTRIBUTIONS)}"
            )
        self.scale = scale
        self.mode = mode
        self.distribution = distribution
        self.input_axes = input_axes
        self.output_axes = output_axes
        super().__init__(seed=seed)

    def variance(self, shape):
        """The target variance ``scale / max(1, n)`` for ``shape``."""
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        return self.scale / max(1.0, n)

    def __call__(self, shape, dtype=None):
        shape = _standardize_shape(shape)
        dtype = _float_dtype(dtype)
        variance = self.variance(shape)
        rng = self._rng()
        if self.distribution == "truncated_normal":
            values = _truncated_normal(rng, shape, 0.0, math.sqrt(variance) / _TRUNCATION_STDDEV)
        elif self.distribution == "untruncated_normal":
            values = rng.normal(0.0, math.sqrt(variance), shape)
        else:
            limit = math.sqrt(3.0 * variance)
            values = rng.uniform(-limit, limit, shape)
        return values.astype(dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "input_axes": self.input_axes,
            "output_axes": self.output_axes,
        }


def _fixed_variance_scaling(name, scale, mode, distribution):
    """A VarianceScaling subclass with fixed scale/mode/distribution (GlorotUniform, HeNormal, ...),
    whose config holds only seed, input_axes and output_axes, as in Keras."""

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        VarianceScaling.__init__(self, scale=scale, mode=mode, distribution=distribution, seed=seed,
                                 input_axes=input_axes, output_axes=output_axes)

    def get_config(self):
        return {"seed": self.seed, "input_axes": self.input_axes, "output_axes": self.output_axes}

    doc = f"VarianceScaling(scale={scale}, mode='{mode}', distribution='{distribution}')."
    return type(name, (VarianceScaling,), {"__init__": __init__, "get_config": get_config,
                                           "__doc__": doc, "__module__": __name__})


GlorotUniform = _fixed_variance_scaling("GlorotUniform", 1.0, "fan_avg", "uniform")
GlorotNormal = _fixed_variance_scaling("GlorotNormal", 1.0, "fan_avg", "truncated_normal")
LecunUniform = _fixed_variance_scaling("LecunUniform", 1.0, "fan_in", "uniform")
LecunNormal = _fixed_variance_scaling("LecunNormal", 1.0, "fan_in", "truncated_normal")
HeUniform = _fixed_variance_scaling("HeUniform", 2.0, "fan_in", "uniform")
HeNormal = _fixed_variance_scaling("HeNormal", 2.0, "fan_in", "truncated_normal")


class Orthogonal(RandomInitializer):
    """``gain`` times an orthogonal matrix (QR of a normal sample, signs fixed by diag(R)),
    reshaped from (prod(shape[:-1]), shape[-1])."""

    def __init__(self, gain=1.0, seed=None):
        self.gain = gain
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        shape = _standardize_shape(shape)
        if len(shape) < 2:
            raise ValueError(
                "The tensor to initialize must be at least two-dimensional. "
                f"Received: shape={shape} of rank {len(shape)}."
            )
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = self._rng().standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(shape)).astype(_float_dtype(dtype))

    def get_config(self):
        return {**super().get_config(), "gain": self.gain}


# --------------------------------------------------------------------------------------------
# Registry: get / serialize / deserialize
# --------------------------------------------------------------------------------------------
ALL_OBJECTS_DICT = registry(
    [Initializer, Constant, Identity, Ones, Zeros, GlorotNormal, GlorotUniform, HeNormal, HeUniform,
     LecunNormal, LecunUniform, Orthogonal, RandomNormal, RandomUniform, TruncatedNormal, VarianceScaling],
    aliases={"IdentityInitializer": Identity, "OrthogonalInitializer": Orthogonal, "normal": RandomNormal,
             "uniform": RandomUniform, "one": Ones, "zero": Zeros},
)

# snake_case functions, as ``keras.initializers.glorot_uniform`` etc.
constant, zeros, ones, identity = Constant, Zeros, Ones, Identity
random_normal, random_uniform, truncated_normal = RandomNormal, RandomUniform, TruncatedNormal
variance_scaling, orthogonal = VarianceScaling, Orthogonal
glorot_uniform, glorot_normal, lecun_uniform, lecun_normal = GlorotUniform, GlorotNormal, LecunUniform, LecunNormal
he_uniform, he_normal = HeUniform, HeNormal


def serialize(initializer):
    return serialize_object(initializer, _MODULE)


def deserialize(config, custom_objects=None):
    """The object a Keras config dict describes (built-ins, or objects the caller supplies)."""
    return deserialize_object(config, ALL_OBJECTS_DICT, _KIND, custom_objects)


def _from_array(value):
    """Keras accepts an array as an initializer: it must match the requested shape."""
    value = np.asarray(value)

    def initialize(shape, dtype=None):
        if tuple(shape) != value.shape:
            raise ValueError(
                f"Expected `shape` to be {value.shape} for direct tensor as initializer. Received shape={tuple(shape)}"
            )
        return value.astype(_dtype(dtype))

    return initialize


def get(identifier, custom_objects=None):
    """Keras' ``initializers.get``: None, a (snake_case) class name, a config dict, a class, an
    instance, a callable ``f(shape, dtype=None)`` or an array of the weight's shape."""
    if isinstance(identifier, (np.ndarray, np.generic)):
        return _from_array(identifier)
    return get_object(identifier, ALL_OBJECTS_DICT, _KIND, custom_objects)

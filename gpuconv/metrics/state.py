"""Where a metric's running state lives, and the array helpers every metric shares.

Keras keeps metric state in non-trainable backend variables. Here a state is a
:class:`MetricVariable`: one array of whichever module the last update came from (NumPy on the
host, CuPy on a GPU, ``gpuconv.emulator.xp`` on the cuda-emulator), so a batch on the device is
accumulated on the device with no host round trip. State moves to the device with the first
device batch and stays there (host inputs or Python numbers are then uploaded, never the state
downloaded); ``numpy()`` and ``to_numpy(result())`` bring values to the host. Updates build new arrays (never in place), so an array ``result()`` returned
earlier keeps its value.

The helpers use only functions NumPy and CuPy share, and no arithmetic here is recorded on a
gradient tape (they call the array module directly).
"""
import numpy as np

from .. import arrays as _arrays
from .. import dtypes as _dtypes
from .. import variables as _variables

# Keras' DTypePolicy names whose compute dtype a metric takes (Metric uses the compute dtype).
_POLICY_COMPUTE_DTYPES = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def metric_dtype(dtype):
    """The dtype name a metric computes in: Keras' ``dtype_policies.get(dtype or floatx).compute_dtype``
    for the float dtypes (None -> 'float32'; 'bfloat16' is ml_dtypes' NumPy dtype)."""
    original = dtype
    if dtype is None:
        return "float32"
    if isinstance(dtype, dict):  # a serialized DTypePolicy
        inner = dtype.get("config")
        dtype = inner.get("name") if isinstance(inner, dict) else None
    dtype = getattr(dtype, "compute_dtype", dtype)
    dtype = _POLICY_COMPUTE_DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    try:
        resolved = _dtypes.resolve(dtype)
    except TypeError:
        resolved = None
    if dtype is None or resolved is None or not _dtypes.is_float(resolved):
        raise ValueError(
            "Invalid value for argument `dtype`: a metric computes in a float dtype "
            f"('float16', 'bfloat16', 'float32', 'float64'). Received: dtype={original!r}"
        )
    return resolved.name


def module_of(*values):
    """The array module of the first value that is a device array, else NumPy."""
    for value in values:
        xp = _arrays.array_module(value)
        if xp is not np:
            return xp
    return np


def as_array(value, xp, dtype=None):
    """``value`` as an array of module ``xp`` (uploaded or brought to the host if it lives
    elsewhere), cast to ``dtype`` when given."""
    if isinstance(value, (MetricVariable, _variables.Variable)):
        value = value.value
    if xp is np:
        value = _arrays.to_numpy(value)
    elif _arrays.array_module(value) is not xp:
        value = xp.asarray(_arrays.to_numpy(value))
    return xp.asarray(value) if dtype is None else xp.asarray(value, dtype=dtype)


def divide_no_nan(numerator, denominator, xp):
    """``numerator / denominator``, 0 where the denominator is 0 (Keras' ``divide_no_nan``),
    without a division warning."""
    zero = denominator == 0
    safe = xp.where(zero, xp.ones_like(denominator), denominator)
    return xp.where(zero, xp.zeros_like(numerator / safe), numerator / safe)


def squeeze_or_expand_to_same_rank(x1, x2, expand_rank_1=True):
    """Keras' rule for pairs whose ranks differ by one where the longer one ends in 1: that
    axis is dropped, or, when the other one is a vector and ``expand_rank_1``, added to it."""
    if x1.ndim == x2.ndim + 1 and x1.shape[-1] == 1:
        if x2.ndim == 1 and expand_rank_1:
            x2 = x2[..., None]
        else:
            x1 = x1[..., 0]
    if x2.ndim == x1.ndim + 1 and x2.shape[-1] == 1:
        if x1.ndim == 1 and expand_rank_1:
            x1 = x1[..., None]
        else:
            x2 = x2[..., 0]
    return x1, x2


def broadcast(value, shape, argument):
    """``value`` broadcast to ``shape``, or a ValueError naming ``argument`` and both shapes."""
    xp = _arrays.array_module(value)
    try:
        return xp.broadcast_to(value, tuple(shape))
    except ValueError:
        raise ValueError(
            f"Argument `{argument}` of shape {tuple(value.shape)} cannot be broadcast to the "
            f"shape {tuple(shape)} of the values it weights."
        ) from None


class MetricVariable:
    """One piece of a metric's state (Keras' non-trainable metric variable): ``name``, ``path``
    ('<metric>/<name>'), ``shape``, ``dtype``, ``value`` (the array, of its current module),
    ``numpy()``, ``assign``, ``assign_add``."""

    trainable = False

    def __init__(self, initial, *, name, path, aggregation="sum"):
        self._value = initial
        self.name = name
        self.path = path
        self.aggregation = aggregation

    @property
    def value(self):
        return self._value

    @property
    def shape(self):
        return tuple(self._value.shape)

    @property
    def dtype(self):
        return str(self._value.dtype)

    def numpy(self):
        return np.array(_arrays.to_numpy(self._value))

    def _like(self, value):
        """``value`` in this variable's dtype and shape, on the device when either it or the
        state is there (a Python number or a host array never pulls device state to the host)."""
        xp = module_of(value, self._value)
        value = as_array(value, xp, self._value.dtype)
        if value.shape != self._value.shape:
            value = broadcast(value, self._value.shape, "value")
        return xp, value

    def assign(self, value):
        xp, value = self._like(value)
        self._value = xp.array(value, copy=True)

    def assign_add(self, value):
        """The state plus ``value``, on the device when either is there."""
        xp, value = self._like(value)
        self._value = as_array(self._value, xp) + value

    def __array__(self, dtype=None, copy=None):
        value = _arrays.to_numpy(self._value)
        return value if dtype is None else value.astype(dtype)

    def __repr__(self):
        return f"<MetricVariable path={self.path}, shape={self.shape}, dtype={self.dtype}>"

"""Keras 3's ``Loss`` base class and the reduction every loss (and metric) shares.

Why a module of its own: the rules that turn per-sample losses into one number -- the five
reductions, how a sample weight is squeezed or expanded to the losses' rank and broadcast, how
a mask (``ignore_class``) re-weights the valid entries -- are Keras 3.15's
(``keras/src/losses/loss.py``) and are the same for every loss; the loss functions only
compute per-sample values. Everything is computed with the recorded functions of
``gpuconv.autodiff.functions``, so a loss is differentiable under ``GradientTape``, on the
array module of ``y_pred`` (NumPy, CuPy or the cuda-emulator's).
"""
import math
import numbers

import numpy as np

from .. import arrays as _arrays
from .. import dtypes as _dtypes
from ..autodiff import functions as F
from ..autodiff import tape as _ad
from ..layers.base_layer import unique_name
from ..serialization import to_snake_case

EPSILON = 1e-7  # keras.config.epsilon()

# Keras' set, listed in a fixed order so the error text does not depend on hashing.
REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)
_MEAN_LIKE = ("sum_over_batch_size", "mean", "mean_with_sample_weight")

# Keras DTypePolicy names -> the compute dtype a loss works in.
_COMPUTE_DTYPES = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32", "float64": "float64",
                   "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------
def standardize_reduction(reduction):
    if not (reduction is None or isinstance(reduction, str)) or reduction not in REDUCTIONS:
        raise ValueError(
            f"Invalid value for argument `reduction`. Expected one of {set(REDUCTIONS)}. "
            f"Received: reduction={reduction}"
        )
    return reduction


def compute_dtype(dtype):
    """A loss' ``dtype`` argument (None, a policy name, a NumPy dtype, a DTypePolicy or its
    config) as the NumPy dtype it computes in; None is Keras' floatx, float32."""
    if dtype is None:
        return np.dtype("float32")
    name = dtype
    if isinstance(dtype, dict) and isinstance(dtype.get("config"), dict):
        name = dtype["config"].get("name")
    name = getattr(name, "name", name)  # a DTypePolicy or a NumPy dtype
    if not isinstance(name, str):
        try:
            name = np.dtype(name).name
        except TypeError:
            name = None
    if name not in _COMPUTE_DTYPES:
        raise ValueError(
            f"Invalid value for argument `dtype`. Expected one of {tuple(_COMPUTE_DTYPES)}. Received: dtype={dtype!r}"
        )
    return _dtypes.resolve(_COMPUTE_DTYPES[name])


def check_number(value, name, low=None, high=None):
    """A finite real number within [low, high] (a bool is not a number here)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        where = ""
        if low is not None or high is not None:
            where = f" in [{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ValueError(f"Argument `{name}` must be a finite number{where}. Received: {name}={value!r}")
    return value


def check_axis(axis):
    """Keras' check for a crossentropy's class ``axis``: an int, never a bool."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"`axis` must be of type `int`. Received: axis={axis} of type {type(axis)}")
    return int(axis)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
def _is_array(x):
    return isinstance(x, np.ndarray) or _arrays.is_cupy_array(x)


def as_prediction(y_pred, dtype=None):
    """``y_pred`` as an array of its own module: a float array keeps its dtype (``dtype`` casts
    it, as ``Loss.__call__`` does); a list or a scalar becomes float32 (Keras' floatx), an
    integer or bool array float32 too."""
    if y_pred is None:
        raise TypeError("Argument `y_pred` must be an array. Received: y_pred=None")
    if not _is_array(y_pred):
        try:
            y_pred = np.asarray(y_pred, dtype=np.float32 if dtype is None else dtype)
        except (TypeError, ValueError) as e:
            raise TypeError(f"Argument `y_pred` must be a numeric array. Received: y_pred={y_pred!r}") from e
    if _dtypes.kind(y_pred.dtype) not in "fiub":
        raise TypeError(f"Argument `y_pred` must be a real numeric array. Received dtype {y_pred.dtype}")
    target = dtype if dtype is not None else (y_pred.dtype if _dtypes.is_float(y_pred.dtype) else np.dtype("float32"))
    return F.cast(y_pred, target)


def on_module_of(x, like, name):
    """``x`` (an array, a list or a scalar) as an array of ``like``'s module, staying connected
    to a tape that watches it."""
    if x is None:
        raise TypeError(f"Argument `{name}` must be an array. Received: {name}=None")
    xp = _arrays.array_module(like)
    if _is_array(x) and _arrays.array_module(x) is xp:
        return x
    try:
        moved = xp.asarray(_arrays.to_numpy(x) if _is_array(x) else np.asarray(x))
    except (TypeError, ValueError) as e:
        raise TypeError(f"Argument `{name}` must be a numeric array. Received: {name}={x!r}") from e
    if _dtypes.kind(moved.dtype) not in "fiub":
        raise TypeError(f"Argument `{name}` must be a real numeric array. Received dtype {moved.dtype}")
    if _is_array(x):
        _ad.record_identity(x, moved)
    return moved


def as_target(y_true, y_pred):
    """``y_true`` on ``y_pred``'s module, cast to ``y_pred``'s dtype (Keras' ``ops.cast``)."""
    return F.cast(on_module_of(y_true, y_pred, "y_true"), y_pred.dtype)


def _require_broadcastable(a, b, message):
    """A ValueError with ``message`` (formatted with both shapes) unless ``a`` and ``b`` broadcast."""
    try:
        np.broadcast_shapes(tuple(a.shape), tuple(b.shape))
    except ValueError:
        raise ValueError(message.format(tuple(a.shape), tuple(b.shape))) from None


def check_broadcastable(y_true, y_pred):
    _require_broadcastable(y_true, y_pred, "Arguments `y_true` and `y_pred` must have broadcastable shapes. "
                                           "Received: y_true.shape={}, y_pred.shape={}")


def check_same_shape(y_true, y_pred):
    """The crossentropies compare elementwise: Keras' backends demand equal shapes."""
    if tuple(y_true.shape) != tuple(y_pred.shape):
        raise ValueError(
            "Arguments `y_true` and `y_pred` must have the same shape. "
            f"Received: y_true.shape={tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}"
        )
    if y_pred.ndim < 1:
        raise ValueError(
            "Arguments `y_true` and `y_pred` must be at least rank 1. "
            f"Received: y_true.shape={tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}"
        )


def squeeze_or_expand_to_same_rank(x1, x2, expand_rank_1=True):
    """Keras' rule: when the ranks differ by one and the longer has a last axis of 1, squeeze
    it -- or, when the shorter is rank 1 (``expand_rank_1``), expand the shorter instead."""
    if x1.ndim == x2.ndim + 1 and x1.shape[-1] == 1:
        if x2.ndim == 1 and expand_rank_1:
            return x1, F.expand_dims(x2, -1)
        return F.squeeze(x1, axis=-1), x2
    if x2.ndim == x1.ndim + 1 and x2.shape[-1] == 1:
        if x1.ndim == 1 and expand_rank_1:
            return F.expand_dims(x1, -1), x2
        return x1, F.squeeze(x2, axis=-1)
    return x1, x2


def prepare(y_true, y_pred, align=True):
    """The prelude of a loss function: ``y_pred`` as a float array, ``y_true`` cast to its dtype
    on its module, both brought to the same rank when ``align`` (Keras' functions that call
    ``squeeze_or_expand_to_same_rank``), and broadcastable."""
    y_pred = as_prediction(y_pred)
    y_true = as_target(y_true, y_pred)
    if align:
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    check_broadcastable(y_true, y_pred)
    return y_true, y_pred


# --------------------------------------------------------------------------------------------
# Reduction
# --------------------------------------------------------------------------------------------
def divide_no_nan(x, y):
    """``x / y``, 0 where ``y == 0`` (``y`` an array or a number)."""
    if not _is_array(y):
        return F.divide(x, y) if y else F.multiply(x, 0.0)
    zero = y == 0
    return F.where(zero, 0.0, F.divide(x, F.where(zero, 1.0, y)))


def apply_mask(sample_weight, mask, dtype, reduction):
    """Keras' merge of a mask into the sample weight: for the mean reductions the valid entries
    weigh total/valid (so the mean runs over the valid ones), for the others 1."""
    if mask is None:
        return sample_weight
    xp = _arrays.array_module(mask)
    if reduction in ("mean", "sum_over_batch_size"):
        valid = F.sum(F.cast(mask, dtype))
        weight = divide_no_nan(xp.asarray(float(math.prod(mask.shape)), dtype=dtype), valid)
        float_mask = F.where(mask.astype(bool), weight, xp.zeros((), dtype=dtype))
    else:
        float_mask = F.cast(mask, dtype)
    if sample_weight is None:
        return float_mask
    float_mask, sample_weight = squeeze_or_expand_to_same_rank(float_mask, F.cast(sample_weight, dtype))
    return F.multiply(sample_weight, float_mask)


def reduce_values(values, sample_weight=None, reduction="sum_over_batch_size"):
    if reduction is None or reduction == "none" or values.ndim == 0 or tuple(values.shape) == (0,):
        return values
    loss = F.sum(values)
    if reduction in _MEAN_LIKE:
        if reduction == "mean_with_sample_weight" and sample_weight is not None:
            divisor = F.cast(F.sum(sample_weight), loss.dtype)
        else:
            divisor = math.prod(values.shape)
        loss = divide_no_nan(loss, divisor)
    return loss


def reduce_weighted_values(values, sample_weight=None, mask=None, reduction="sum_over_batch_size", dtype=None):
    """Weight ``values`` by ``sample_weight`` (and ``mask``) and reduce them, as Keras does."""
    reduction = standardize_reduction(reduction)
    values = as_prediction(values, dtype)
    if sample_weight is not None:
        sample_weight = F.cast(on_module_of(sample_weight, values, "sample_weight"), values.dtype)
    if mask is not None:
        mask = on_module_of(mask, values, "mask")
    sample_weight = apply_mask(sample_weight, mask, values.dtype, reduction)
    if sample_weight is not None:
        values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
        _require_broadcastable(sample_weight, values, "Argument `sample_weight` must broadcast to the losses' shape. "
                                                      "Received: sample_weight.shape={}, losses shape={}")
        values = F.multiply(values, sample_weight)
    return reduce_values(values, sample_weight, reduction)


# --------------------------------------------------------------------------------------------
# The base class
# --------------------------------------------------------------------------------------------
class Loss:
    """Keras' ``Loss``: subclasses implement ``call(y_true, y_pred)`` returning per-sample
    losses; ``__call__`` casts both to ``dtype`` (float32 by default), weights and reduces."""

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Argument `name` must be a string. Received: name={name!r}")
        self.name = name or unique_name(to_snake_case(type(self).__name__))
        self.reduction = standardize_reduction(reduction)
        self._dtype = compute_dtype(dtype)

    @property
    def dtype(self):
        return self._dtype.name

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_pred = as_prediction(y_pred, self._dtype)
        y_true = F.cast(on_module_of(y_true, y_pred, "y_true"), self._dtype)
        values, mask = self.call_with_mask(y_true, y_pred)
        return reduce_weighted_values(values, sample_weight, mask, self.reduction, self._dtype)

    def call(self, y_true, y_pred):
        raise NotImplementedError

    def call_with_mask(self, y_true, y_pred):
        """(per-sample losses, the mask of the valid ones or None). Keras carries the mask on
        the tensor (``ignore_class``); gpuconv's arrays carry none, so it is returned."""
        return self.call(y_true, y_pred), None

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, reduction={self.reduction}>"

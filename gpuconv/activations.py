"""Keras 3's built-in activations, on NumPy or CuPy arrays.

Every function takes an array of either library and returns one of the same library and, for
float inputs, the same dtype (float16 is computed in float32 and rounded once at the end;
integer and bool inputs are computed as float32, Keras' floatx). Numbers follow Keras 3.15
(checked against ``keras.activations`` in tests/test_activations.py), with one deliberate
difference: ``sparsemax`` uses the threshold of Martins & Astudillo (2016), so its rows sum to 1;
Keras <= 3.15 sums the wrong cumulative sums (keras-team/keras#23425, fixed by PR #23469).

``get(identifier)`` resolves names exactly as ``keras.activations.get`` does (None -> linear,
case-sensitive names, the aliases swish / hard_swish, dicts, callables), ``serialize(fn)``
gives a built-in's canonical name. ``ELEMENTWISE`` lists the names an engine may fuse.
"""
import functools
import math

import numpy as np

from . import arrays as _arrays
from .autodiff import tape as _ad
from .dtypes import accumulation_dtype, is_float
from .serialization import deserialize_object, lookup_name, registered_name_of, unknown_identifier

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_PI = math.sqrt(math.pi)


# --------------------------------------------------------------------------------------------
# Plumbing shared by every activation
# --------------------------------------------------------------------------------------------
def _begin(x):
    """(xp, working array, output dtype). 16-bit floats work in float32; ints/bools become float32."""
    xp = _arrays.array_module(x)
    x = xp.asarray(x)
    out_dtype = x.dtype if is_float(x.dtype) else np.dtype("float32")
    work_dtype = accumulation_dtype(out_dtype)
    return xp, x.astype(work_dtype, copy=False), out_dtype


def _end(y, out_dtype):
    return y.astype(out_dtype, copy=False)


def _ieee(fn):
    """Run with NumPy's floating-point warnings off: inf and NaN are the intended IEEE results
    (exp overflow in a branch ``where`` discards, NaN inputs), as in Keras' backends."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return wrapper


def _recorded(derivative):
    """Record the activation on the active tape when it tracks ``x``, with the exact backward
    ``derivative(xp, w, y, g, *args, **kwargs)`` (``w`` the input and ``y`` the output in the
    working dtype, ``g`` the output gradient). The forward is untouched; when no tape tracks
    ``x`` the only cost is one thread-local lookup. Integer and bool inputs get no gradient."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(x, *args, **kwargs):
            y = fn(x, *args, **kwargs)
            if not _ad.recording(x):
                return y
            if not (isinstance(y, np.ndarray) or _arrays.is_cupy_array(y)):
                y = _arrays.array_module(x).asarray(y)  # a 0-d input gives a NumPy scalar; the tape needs an array

            def backward(g):
                if not is_float(x.dtype):
                    return (None,)
                xp, w, _ = _begin(x)
                with np.errstate(all="ignore"):
                    return (derivative(xp, w, y.astype(w.dtype, copy=False), g.astype(w.dtype, copy=False),
                                       *args, **kwargs),)

            _ad.record((x,), y, backward)
            return y

        return wrapper

    return decorate


def _mask(cond, dtype):
    return cond.astype(dtype)


def _sigmoid(xp, x):
    e = xp.exp(-xp.abs(x))  # never overflows; the two branches are the same function on their half-lines
    return xp.where(x >= 0, 1.0, e) / (1.0 + e)


def _softplus(xp, x):
    return xp.logaddexp(x, 0.0)


def _hard_sigmoid(xp, x):
    return xp.clip(x / 6.0 + 0.5, 0.0, 1.0)


def _erfc_f64(xp, z):
    """erfc in float64 with relative error below 1e-12 everywhere (NumPy has no erf, and SciPy is
    not a dependency). |z| < 2: the all-positive series
    erf(z) = 2/sqrt(pi) e^(-z^2) sum_n (2 z^2)^n z / (2n+1)!!  (30 terms reach 1e-16);
    |z| >= 2: the continued fraction erfc(z) = e^(-z^2)/sqrt(pi) / (z + (1/2)/(z + 1/(z + (3/2)/(z + ...))))
    (40 levels reach 1e-14). Negative z use erfc(-z) = 2 - erfc(z)."""
    z = xp.asarray(z, dtype=np.float64)
    a = xp.abs(z)
    small = xp.minimum(a, 2.0)  # each branch sees only arguments where it converges
    two_z2 = 2.0 * small * small
    term = small.copy()
    total = small.copy()
    for n in range(30):
        term = term * two_z2 / (2 * n + 3)
        total = total + term
    erfc_small = 1.0 - (2.0 / _SQRT_PI) * xp.exp(-small * small) * total
    large = xp.maximum(a, 2.0)
    f = large.copy()
    for k in range(40, 0, -1):
        f = large + (k / 2.0) / f
    erfc_large = xp.exp(-large * large) / (_SQRT_PI * f)
    erfc_abs = xp.where(a < 2.0, erfc_small, erfc_large)
    return xp.where(z < 0, 2.0 - erfc_abs, erfc_abs)


def _axis_op(fn, x, axis):
    """Apply ``fn(xp, x2d_last_axis)`` along ``axis`` by moving that axis last."""
    xp, w, dtype = _begin(x)
    moved = xp.moveaxis(w, axis, -1)
    return _end(xp.moveaxis(fn(xp, moved), -1, axis), dtype)


# --------------------------------------------------------------------------------------------
# The activations (Keras 3 names and signatures)
# --------------------------------------------------------------------------------------------
def _d_relu(xp, w, y, g, negative_slope=0.0, max_value=None, threshold=0.0):
    # Keras' composition, differentiated as keras.ops on torch does: relu'(0) = 0; leaky (slope
    # only) takes the slope at 0; x > threshold passes; relu6 (max_value=6, no threshold) is 0 at
    # 0 and 6; any other max_value clips with clamp's rule (passes AT max_value); the leaky part
    # relu(threshold - x) contributes the slope strictly below the threshold.
    if negative_slope == 0 and max_value is None and threshold == 0:  # plain relu: one pass
        return xp.multiply(g, w > 0)
    if negative_slope != 0 and max_value is None and threshold == 0:
        return g * xp.where(w > 0, 1.0, negative_slope).astype(w.dtype)
    if threshold != 0:
        d = w > threshold
        inner = xp.where(d, w, 0.0)
    elif max_value == 6:
        d = (w > 0) & (w < 6)
        inner = None
    else:
        d = w > 0
        inner = xp.maximum(w, 0.0)
    if max_value is not None and inner is not None:
        d = d & (inner <= max_value)
    out = _mask(d, w.dtype)
    if negative_slope != 0:
        out = out + negative_slope * _mask(w < threshold, w.dtype)
    return g * out


@_recorded(_d_relu)
@_ieee
def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras' general relu: leaky below ``threshold``, clipped at ``max_value``."""
    xp, w, dtype = _begin(x)
    if negative_slope != 0 and max_value is None and threshold == 0:
        return _end(xp.where(w >= 0, w, w * negative_slope), dtype)
    negative_part = xp.maximum(threshold - w, 0.0) if negative_slope != 0 else None
    y = xp.where(w > threshold, w, 0.0) if threshold != 0 else xp.maximum(w, 0.0)
    if max_value is not None:
        y = xp.clip(y, 0.0, max_value)
    if negative_part is not None:
        y = y - negative_slope * negative_part
    return _end(y, dtype)


def _d_leaky_relu(xp, w, y, g, negative_slope=0.2):
    return g * xp.where(w > 0, 1.0, negative_slope).astype(w.dtype)  # the slope at 0 (torch)


@_recorded(_d_leaky_relu)
@_ieee
def leaky_relu(x, negative_slope=0.2):
    xp, w, dtype = _begin(x)
    return _end(xp.where(w >= 0, w, w * negative_slope), dtype)


def _d_relu6(xp, w, y, g):
    return g * _mask((w > 0) & (w < 6), w.dtype)  # 0 at both kinks


@_recorded(_d_relu6)
@_ieee
def relu6(x):
    xp, w, dtype = _begin(x)
    return _end(xp.minimum(xp.maximum(w, 0.0), 6.0), dtype)


def _d_softmax(xp, w, y, g, axis=-1):
    return y * (g - xp.sum(g * y, axis=axis, keepdims=True))


@_recorded(_d_softmax)
@_ieee
def softmax(x, axis=-1):
    xp, w, dtype = _begin(x)
    e = xp.exp(w - xp.max(w, axis=axis, keepdims=True))
    return _end(e / xp.sum(e, axis=axis, keepdims=True), dtype)


def _d_log_softmax(xp, w, y, g, axis=-1):
    return g - xp.exp(y) * xp.sum(g, axis=axis, keepdims=True)


@_recorded(_d_log_softmax)
@_ieee
def log_softmax(x, axis=-1):
    xp, w, dtype = _begin(x)
    shifted = w - xp.max(w, axis=axis, keepdims=True)
    return _end(shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True)), dtype)


def _d_elu(xp, w, y, g, alpha=1.0):
    return g * xp.where(w > 0, 1.0, alpha * xp.exp(w)).astype(w.dtype)  # alpha at 0


@_recorded(_d_elu)
@_ieee
def elu(x, alpha=1.0):
    xp, w, dtype = _begin(x)
    return _end(xp.where(w >= 0, w, alpha * xp.expm1(w)), dtype)


def _d_selu(xp, w, y, g):
    return g * (_SELU_SCALE * xp.where(w > 0, 1.0, _SELU_ALPHA * xp.exp(w))).astype(w.dtype)  # scale*alpha at 0


@_recorded(_d_selu)
@_ieee
def selu(x):
    xp, w, dtype = _begin(x)
    return _end(_SELU_SCALE * xp.where(w >= 0, w, _SELU_ALPHA * xp.expm1(w)), dtype)


def _d_celu(xp, w, y, g, alpha=1.0):
    return g * xp.where(w > 0, 1.0, xp.exp(w / alpha)).astype(w.dtype)  # 1 at 0, both sides agree


@_recorded(_d_celu)
@_ieee
def celu(x, alpha=1.0):
    xp, w, dtype = _begin(x)
    return _end(xp.maximum(w, 0.0) + alpha * xp.expm1(xp.minimum(w, 0.0) / alpha), dtype)


def _d_softplus(xp, w, y, g):
    return g * _sigmoid(xp, w)


@_recorded(_d_softplus)
@_ieee
def softplus(x):
    xp, w, dtype = _begin(x)
    return _end(_softplus(xp, w), dtype)


def _d_softsign(xp, w, y, g):
    d = 1.0 + xp.abs(w)
    return g / (d * d)


@_recorded(_d_softsign)
@_ieee
def softsign(x):
    xp, w, dtype = _begin(x)
    return _end(w / (1.0 + xp.abs(w)), dtype)


def _d_squareplus(xp, w, y, g, b=4):
    return g * 0.5 * (1.0 + w / xp.sqrt(w * w + b))


@_recorded(_d_squareplus)
@_ieee
def squareplus(x, b=4):
    xp, w, dtype = _begin(x)
    root = xp.sqrt(w * w + b)
    # For x < 0, x + root cancels; b / (root - x) is the same value without the cancellation.
    return _end(xp.where(w >= 0, (w + root) / 2.0, b / (2.0 * (root - w))), dtype)


def _d_soft_shrink(xp, w, y, g, threshold=0.5):
    return g * _mask((w > threshold) | (w < -threshold), w.dtype)  # 0 at +-threshold


@_recorded(_d_soft_shrink)
@_ieee
def soft_shrink(x, threshold=0.5):
    xp, w, dtype = _begin(x)
    y = xp.where(w > threshold, w - threshold, xp.where(w < -threshold, w + threshold, 0.0))
    return _end(y, dtype)


def _d_sparse_plus(xp, w, y, g):
    return g * xp.where(w <= -1, 0.0, xp.where(w < 1, 0.5 * (w + 1), 1.0)).astype(w.dtype)  # continuous


@_recorded(_d_sparse_plus)
@_ieee
def sparse_plus(x):
    xp, w, dtype = _begin(x)
    y = xp.where(w <= -1, 0.0, xp.where(w < 1, 0.25 * (w + 1) ** 2, w))
    return _end(y, dtype)


def _d_silu(xp, w, y, g):
    s = _sigmoid(xp, w)
    return g * (s * (1.0 + w * (1.0 - s)))


@_recorded(_d_silu)
@_ieee
def silu(x):
    xp, w, dtype = _begin(x)
    return _end(w * _sigmoid(xp, w), dtype)


def _d_gelu(xp, w, y, g, approximate=False):
    if approximate:
        c = math.sqrt(2.0 / math.pi)
        s = _sigmoid(xp, 2.0 * c * (w + 0.044715 * w * w * w))
        return g * (s + w * s * (1.0 - s) * 2.0 * c * (1.0 + 3 * 0.044715 * w * w))
    w64 = w.astype(np.float64, copy=False)
    cdf = 0.5 * _erfc_f64(xp, -w64 / math.sqrt(2.0))
    pdf = xp.exp(-0.5 * w64 * w64) / math.sqrt(2.0 * math.pi)
    return g * (cdf + w64 * pdf).astype(w.dtype)


@_recorded(_d_gelu)
@_ieee
def gelu(x, approximate=False):
    """Exact: x * Phi(x) = x/2 * erfc(-x/sqrt(2)) (erfc keeps the far negative tail accurate).
    approximate=True: the tanh form."""
    xp, w, dtype = _begin(x)
    if approximate:
        # 0.5 x (1 + tanh(u)) written as x sigmoid(2u): no cancellation in the negative tail.
        inner = math.sqrt(2.0 / math.pi) * (w + 0.044715 * w * w * w)
        return _end(w * _sigmoid(xp, 2.0 * inner), dtype)
    w64 = w.astype(np.float64, copy=False)
    tail = _erfc_f64(xp, -w64 / math.sqrt(2.0))
    y = xp.where(tail == 0, 0.0, 0.5 * w64 * tail)  # x -> -inf: the limit 0, not -inf * 0 = NaN
    return _end(y, dtype)


def _d_glu(xp, w, y, g, axis=-1):
    a, b = xp.split(w, 2, axis=axis)
    s = _sigmoid(xp, b)
    return xp.concatenate([g * s, g * a * s * (1.0 - s)], axis=axis)


@_recorded(_d_glu)
@_ieee
def glu(x, axis=-1):
    xp, w, dtype = _begin(x)
    if w.shape[axis] % 2 != 0:
        raise ValueError(
            "axis size must be divisible by 2. "
            f"Received: x.shape={tuple(w.shape)} with axis={axis}"
        )
    a, b = xp.split(w, 2, axis=axis)
    return _end(a * _sigmoid(xp, b), dtype)


def _d_tanh(xp, w, y, g):
    c = xp.cosh(w)  # sech^2: 1 - tanh^2 would cancel where tanh saturates
    return g / (c * c)


@_recorded(_d_tanh)
@_ieee
def tanh(x):
    xp, w, dtype = _begin(x)
    return _end(xp.tanh(w), dtype)


def _d_tanh_shrink(xp, w, y, g):
    t = xp.tanh(w)
    return g * (t * t)


@_recorded(_d_tanh_shrink)
@_ieee
def tanh_shrink(x):
    xp, w, dtype = _begin(x)
    w64 = w.astype(np.float64, copy=False)  # x - tanh(x) cancels near 0: float32 would keep ~2 digits
    return _end(w64 - xp.tanh(w64), dtype)


def _d_threshold(xp, w, y, g, threshold, default_value):
    return g * _mask(w > threshold, w.dtype)  # 0 at the threshold


@_recorded(_d_threshold)
@_ieee
def threshold(x, threshold, default_value):
    """``x`` where ``x > threshold``, else ``default_value`` (no defaults, as in Keras)."""
    xp, w, dtype = _begin(x)
    return _end(xp.where(w > threshold, w, default_value), dtype)


def _d_sigmoid(xp, w, y, g):
    e = xp.exp(-xp.abs(w))  # s (1 - s) = e / (1 + e)^2, with no cancellation on either side
    return g * (e / ((1.0 + e) * (1.0 + e)))


@_recorded(_d_sigmoid)
@_ieee
def sigmoid(x):
    xp, w, dtype = _begin(x)
    return _end(_sigmoid(xp, w), dtype)


def _d_sparse_sigmoid(xp, w, y, g):
    return g * (0.5 * _mask((w > -1) & (w < 1), w.dtype))  # 0 at +-1


@_recorded(_d_sparse_sigmoid)
@_ieee
def sparse_sigmoid(x):
    xp, w, dtype = _begin(x)
    y = xp.where(w <= -1, 0.0, xp.where(w >= 1, 1.0, 0.5 * (w + 1)))
    return _end(y, dtype)


def _d_exponential(xp, w, y, g):
    return g * xp.exp(w)


@_recorded(_d_exponential)
@_ieee
def exponential(x):
    xp, w, dtype = _begin(x)
    return _end(xp.exp(w), dtype)


def _d_hard_sigmoid(xp, w, y, g):
    return g * (_mask((w > -3) & (w < 3), w.dtype) / 6.0)  # 0 at +-3


@_recorded(_d_hard_sigmoid)
@_ieee
def hard_sigmoid(x):
    xp, w, dtype = _begin(x)
    return _end(_hard_sigmoid(xp, w), dtype)


def _d_hard_silu(xp, w, y, g):
    # 0 at -3 and 1 at 3 (the one-sided outer values, as keras.ops on torch gives)
    return g * xp.where(w <= -3, 0.0, xp.where(w >= 3, 1.0, w / 3.0 + 0.5)).astype(w.dtype)


@_recorded(_d_hard_silu)
@_ieee
def hard_silu(x):
    xp, w, dtype = _begin(x)
    return _end(w * _hard_sigmoid(xp, w), dtype)


def _d_hard_tanh(xp, w, y, g):
    return g * _mask((w > -1) & (w < 1), w.dtype)  # 0 at +-1


@_recorded(_d_hard_tanh)
@_ieee
def hard_tanh(x):
    xp, w, dtype = _begin(x)
    return _end(xp.clip(w, -1.0, 1.0), dtype)


def _d_hard_shrink(xp, w, y, g, threshold=0.5):
    return g * _mask(xp.abs(w) > threshold, w.dtype)  # 0 at +-threshold


@_recorded(_d_hard_shrink)
@_ieee
def hard_shrink(x, threshold=0.5):
    xp, w, dtype = _begin(x)
    return _end(xp.where(xp.abs(w) > threshold, w, 0.0), dtype)


def linear(x):
    """The identity; returns ``x`` itself, as Keras does."""
    return x


def _d_mish(xp, w, y, g):
    t = xp.tanh(_softplus(xp, w))
    return g * (t + w * (1.0 - t * t) * _sigmoid(xp, w))


@_recorded(_d_mish)
@_ieee
def mish(x):
    xp, w, dtype = _begin(x)
    return _end(w * xp.tanh(_softplus(xp, w)), dtype)


def _d_log_sigmoid(xp, w, y, g):
    return g * _sigmoid(xp, -w)


@_recorded(_d_log_sigmoid)
@_ieee
def log_sigmoid(x):
    xp, w, dtype = _begin(x)
    return _end(-_softplus(xp, -w), dtype)


def _sparsemax_last_axis(xp, z):
    """Euclidean projection of each row (last axis) onto the probability simplex."""
    n = z.shape[-1]
    z_sorted = -xp.sort(-z, axis=-1)
    cumsum = xp.cumsum(z_sorted, axis=-1)
    ranks = xp.arange(1, n + 1, dtype=z.dtype)
    support = z_sorted - (cumsum - 1.0) / ranks > 0  # a prefix of the sorted row
    k = xp.sum(support, axis=-1, keepdims=True)
    # tau = (cumsum at the last supported index - 1) / k; that cumsum is the sum of the
    # supported sorted logits.
    tau = (xp.sum(xp.where(support, z_sorted, 0.0), axis=-1, keepdims=True) - 1.0) / k
    return xp.maximum(z - tau, 0.0)


def _d_sparsemax(xp, w, y, g, axis=-1):
    # The Jacobian is diag(s) - s s^T / |s| on the support s = {y > 0}.
    s = _mask(y > 0, w.dtype)
    return s * (g - xp.sum(g * s, axis=axis, keepdims=True) / xp.sum(s, axis=axis, keepdims=True))


@_recorded(_d_sparsemax)
@_ieee
def sparsemax(x, axis=-1):
    return _axis_op(_sparsemax_last_axis, x, axis)


# --------------------------------------------------------------------------------------------
# Registry: get / serialize / deserialize
# --------------------------------------------------------------------------------------------
_BUILTINS = (
    relu, leaky_relu, relu6, softmax, celu, elu, selu, softplus, softsign, squareplus, soft_shrink,
    sparse_plus, silu, gelu, glu, tanh, tanh_shrink, threshold, sigmoid, sparse_sigmoid,
    exponential, hard_sigmoid, hard_silu, hard_tanh, hard_shrink, linear, mish, log_softmax,
    log_sigmoid, sparsemax,
)
ALL_OBJECTS_DICT = {fn.__name__: fn for fn in _BUILTINS}
ALL_OBJECTS_DICT["swish"] = silu
ALL_OBJECTS_DICT["hard_swish"] = hard_silu
swish = silu
hard_swish = hard_silu

# Names whose function, called with its default arguments, maps each element on its own, so an
# engine may apply it in its epilogue. softmax/log_softmax/sparsemax normalise along an axis and
# glu halves one; threshold has no defaults (Keras' get("threshold")(x) fails too).
_NOT_ELEMENTWISE = {"softmax", "log_softmax", "glu", "sparsemax", "threshold"}
ELEMENTWISE = frozenset(name for name in ALL_OBJECTS_DICT if name not in _NOT_ELEMENTWISE)

_CANONICAL = {fn: fn.__name__ for fn in _BUILTINS}
_KIND = "activation function"


# Activations whose derivative the output alone gives exactly (relu: y > 0; relu6: 0 < y < 6,
# 0 at both kinks as above), so a convolution can keep its fused epilogue under a gradient tape
# and pass the output gradient through ``OUTPUT_DERIVATIVES[name](y, dy)`` in its backward. The
# smooth ones (sigmoid, tanh) are left out: from the output, 1 - y**2 and y * (1 - y) cancel
# where they saturate, which the input-based derivatives above avoid.
OUTPUT_DERIVATIVES = {
    "relu": lambda y, g, out=None: _arrays.array_module(y).multiply(g, y > 0, out=out),
    "relu6": lambda y, g, out=None: _arrays.array_module(y).multiply(g, (y > 0) & (y < 6), out=out),
}


def builtin_elementwise_name(fn):
    """The canonical name of ``fn`` when it is one of the built-in elementwise activations, else
    None. The very object is looked up, never its name, so a user function that happens to be
    called "relu" is applied as written rather than replaced by an engine's fused relu."""
    try:
        name = _CANONICAL.get(fn)
    except TypeError:  # an unhashable callable object
        return None
    return name if name in ELEMENTWISE else None


def deserialize(config, custom_objects=None):
    """A callable from a Keras activation config: a name, or a dict like
    ``{'module': 'keras.activations', 'class_name': 'function', 'config': 'relu', ...}``.
    Names resolve in ``custom_objects`` (and the registered / scoped custom objects), then in
    the built-ins; nothing a config names is ever imported."""
    if isinstance(config, str):
        return get(config, custom_objects=custom_objects)
    return deserialize_object(config, ALL_OBJECTS_DICT, _KIND, custom_objects)


def get(identifier, custom_objects=None):
    """Keras' ``activations.get``: None -> linear; exact names; dicts; callables pass through."""
    if identifier is None:
        return linear
    if isinstance(identifier, dict):
        obj = deserialize_object(identifier, ALL_OBJECTS_DICT, _KIND, custom_objects)
    elif isinstance(identifier, str):
        obj = lookup_name(identifier, ALL_OBJECTS_DICT, custom_objects)
    else:
        obj = identifier
    if callable(obj):
        return obj
    raise unknown_identifier(_KIND, identifier)


def serialize(activation):
    """A built-in's canonical name ('swish' -> 'silu'); a user function or object as Keras' dict."""
    if activation is None:
        return None
    try:
        name = _CANONICAL.get(activation)
    except TypeError:  # an unhashable callable object
        name = None
    if name is not None:
        return name
    if hasattr(activation, "get_config"):
        return {"module": type(activation).__module__, "class_name": type(activation).__name__,
                "config": activation.get_config(), "registered_name": registered_name_of(type(activation))}
    fn_name = getattr(activation, "__name__", None)
    if callable(activation) and isinstance(fn_name, str) and fn_name != "<lambda>":
        # Keras stores a registered function under its "package>name", so it reloads by that key.
        return {"module": activation.__module__, "class_name": "function",
                "config": registered_name_of(activation), "registered_name": "function"}
    raise ValueError(
        f"Unknown activation function '{activation}' cannot be serialized due to invalid function name. "
        "Make sure to use an activation name that matches the references defined in activations.py."
    )

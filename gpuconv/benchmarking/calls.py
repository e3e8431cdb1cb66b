"""The gpuconv call a row stands for, and the validation of a row, both through the library itself.

``call_op`` runs a row through the public ops API on the engine it is given (``engine=None``: the
active backend's; a backend name or an engine object: that engine, for this call only, the global
choice untouched). The benchmark uses it three ways: on the engine under test (the thing timed),
in float64 on ``engine="numpy"`` (the oracle), and with a batch of zero as the dry run of
``validate`` (every check in ``gpuconv.ops`` runs before its empty-input shortcut, so a zero batch
validates the whole call and never reaches an engine kernel).

``validate`` re-types none of the library's checks: it builds the ``gpuconv.layers`` layer a row
stands for with the row's arguments, so Keras' construction checks and ``compute_output_shape``
refuse what Keras refuses, with Keras' texts (no weights are made), then makes the dry run. What
stays here is the benchmark's own: which layer an op is, which arguments apply to which op, and
the rules that tie a row's channel counts to its op.
"""
import contextlib
import re

import numpy as np

from .. import geometry as _geometry
from .. import layers as _layers
from .. import ops
from ..layers.conv_common import check_input_groups
from .row import OPS, POOL_MODES


def call_op(row, arrays, data_format, engine=None):
    """Run ``row`` on ``arrays`` (``make_inputs``' dict) on ``engine``; returns the output."""
    x = arrays["x"]
    common = dict(strides=row.s, padding=row.padding, data_format=data_format, engine=engine)
    if row.op in ("conv", "dense"):
        return ops.conv_core(x, arrays["kernel"], arrays.get("bias"), dilation_rate=row.d,
                             activation=row.activation, **common)
    if row.op == "conv_transpose":
        return ops.conv_transpose_core(x, arrays["kernel"], arrays.get("bias"), dilation_rate=row.d,
                                       groups=row.g, activation=row.activation, **common)
    if row.op == "depthwise":
        return ops.depthwise_conv_core(x, arrays["kernel"], arrays.get("bias"), dilation_rate=row.d,
                                       activation=row.activation, **common)
    if row.op == "separable":
        return ops.separable_conv_core(x, arrays["depthwise_kernel"], arrays["pointwise_kernel"],
                                       arrays.get("bias"), dilation_rate=row.d, activation=row.activation,
                                       **common)
    if row.op in POOL_MODES:
        return ops.pool_core(x, POOL_MODES[row.op], row.k, row.s, row.padding, data_format, engine=engine)
    raise ValueError(f"Unknown op {row.op!r} in row {row.id}")


class RowError(ValueError):
    """A row the library (or the benchmark) refuses. ``fields`` names the Row fields involved (the
    CLI maps them to its flags); the message is the library's own where the library refused."""

    def __init__(self, message, fields):
        super().__init__(message)
        self.fields = tuple(fields)


# Row field -> the names the library's messages give it. Keras' texts name the argument they refuse
# (``Received: groups=3, filters=16``), the shape checks the input and the kernel (``inputs
# shape=...``, ``kernel shape=...``), so a refusal is blamed on the fields its message names, in
# this order (the order the CLI lists their flags in).
_NAMES = {
    "spatial": ("inputs shape", "inputs.shape"),
    "k": ("kernel_size", "pool_size", "kernel shape"),
    "s": ("strides",),
    "d": ("dilation_rate",),
    "padding": ("padding",),
    "g": ("groups",),
    "K": ("filters", "units"),
    "C": ("input channels",),
    "dm": ("depth_multiplier",),
    "activation": ("activation",),
}
_NAMED = {field: re.compile(r"\b(?:%s)\b" % "|".join(map(re.escape, names))) for field, names in _NAMES.items()}
_GEOMETRY = ("spatial", "k", "s", "d", "padding")


@contextlib.contextmanager
def _refusals(*fields):
    """The library's ValueError/TypeError inside the block as a :class:`RowError` blamed on those
    of ``fields`` (the ones the block involves) that its message names, or on all of them."""
    try:
        yield
    except RowError:
        raise
    except (ValueError, TypeError) as e:
        message = str(e)
        named = tuple(f for f in _NAMES if f in fields and _NAMED[f].search(message))
        raise RowError(message, named or fields) from e


def _fields_of(arguments):
    """The Row fields that set these layer arguments."""
    return tuple(f for f, names in _NAMES.items() if any(n in arguments for n in names))


def _check_row(row):
    """The benchmark's own rules, before the library's: an op it knows, a layer it can stand for,
    and arguments that apply to the op."""
    if row.op not in OPS:
        raise RowError(f"Unknown op {row.op!r}; expected one of {OPS}.", ("op",))
    if not 1 <= len(row.spatial) <= 3:
        raise RowError(f"Expected 1 to 3 spatial dims; received spatial={tuple(row.spatial)}.", ("spatial",))
    for field in ("N", "C", "K", "spatial"):  # they size arrays: integers, where a layer takes 4.0 too
        value = getattr(row, field)
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
               for v in (value if field == "spatial" else (value,))):
            raise RowError(f"Expected integer sizes in row field `{field}`; received {field}={value!r}.", (field,))
    with _refusals("N"):
        _geometry.check_positive_int(row.N, "batch")
    with _refusals("C"):
        _geometry.check_positive_int(row.C, "input channels")
    with _refusals("spatial"):
        for v in row.spatial:
            _geometry.check_positive_int(v, "spatial size")
    if row.g != 1 and row.op not in ("conv", "conv_transpose"):
        raise RowError(f"Argument `groups` applies only to conv and conv_transpose; received groups={row.g} "
                       f"for op {row.op!r}.", ("g",))
    if row.dm != 1 and row.op not in ("depthwise", "separable"):
        raise RowError(f"Argument `depth_multiplier` applies only to depthwise and separable convs; "
                       f"received depth_multiplier={row.dm} for op {row.op!r}.", ("dm",))
    if row.op == "dense" and (tuple(row.spatial) != (1,) or row.k not in (1, (1,))):
        raise RowError(f"A dense row is a length-1, k=1 conv; received spatial={tuple(row.spatial)}, k={row.k}.",
                       ("spatial", "k"))


def layer_steps(row, data_format):
    """``[(layer class, keyword arguments)]``: the ``gpuconv.layers`` layer the row stands for, with
    the row's arguments (two layers for a 3D separable row: there is no SeparableConv3D, in Keras
    either, so its depthwise and pointwise steps)."""
    r, op = row.rank, row.op
    if op == "dense":
        return [(_layers.Dense, dict(units=row.K, activation=row.activation, use_bias=row.bias))]
    if op in POOL_MODES:
        cls = getattr(_layers, ("MaxPooling{}D" if op == "max_pool" else "AveragePooling{}D").format(r))
        return [(cls, dict(pool_size=row.k, strides=row.s, padding=row.padding, data_format=data_format))]
    window = dict(kernel_size=row.k, strides=row.s, padding=row.padding, dilation_rate=row.d,
                  data_format=data_format)
    head = dict(activation=row.activation, use_bias=row.bias)
    if op == "conv":
        return [(getattr(_layers, f"Conv{r}D"), dict(filters=row.K, groups=row.g, **window, **head))]
    if op == "conv_transpose":
        return [(getattr(_layers, f"Conv{r}DTranspose"), dict(filters=row.K, groups=row.g, **window, **head))]
    if op == "depthwise":
        return [(getattr(_layers, f"DepthwiseConv{r}D"), dict(depth_multiplier=row.dm, **window, **head))]
    if r < 3:
        return [(getattr(_layers, f"SeparableConv{r}D"), dict(depth_multiplier=row.dm, filters=row.K, **window,
                                                              **head))]
    return [(_layers.DepthwiseConv3D, dict(depth_multiplier=row.dm, use_bias=False, **window)),
            (_layers.Conv3D, dict(filters=row.K, kernel_size=1, data_format=data_format, **head))]


def layer_output_shape(row, data_format):
    """Build the row's layer(s) and return their ``compute_output_shape`` of the row's input: the
    layers' construction checks, build()'s groups check and the shape checks, in Keras' order and
    with Keras' texts; no weights are made. Raises :class:`RowError`."""
    shape = (row.N, row.C) if row.op == "dense" else row.input_shape(data_format)
    for cls, arguments in layer_steps(row, data_format):
        with _refusals(*_fields_of(arguments)):
            layer = cls(**arguments)
        if "groups" in arguments:
            with _refusals("g", "C"):
                check_input_groups(layer.groups, shape[_geometry.channel_axis(data_format)], shape)
        with _refusals(*_GEOMETRY):
            shape = tuple(layer.compute_output_shape(shape))
    return shape


def _with_real_batch(message, batch):
    """The dry run's messages quote the zero batch it used; put the row's batch back."""
    return message.replace("inputs shape=(0,", f"inputs shape=({batch},").replace(
        "inputs.shape=[0 ", f"inputs.shape=[{batch} ")


def validate(row, data_format, dtype="float32"):
    """Validate ``row`` with the library's own checks (no compute); returns the output shape.
    Raises :class:`RowError`."""
    _check_row(row)
    shape = layer_output_shape(row, data_format)
    if row.op == "depthwise" and row.K != row.C * row.dm:
        raise RowError(f"A depthwise conv has C*depth_multiplier output channels: expected {row.C * row.dm}, "
                       f"received {row.K}.", ("K", "C", "dm"))
    if row.op in POOL_MODES and row.K != row.C:
        raise RowError(f"Pooling keeps the channel count: expected {row.C} output channels, received {row.K}.",
                       ("K", "C"))
    expected = (row.N, row.K) if row.op == "dense" else row.output_shape(data_format)
    if shape != tuple(expected):
        raise AssertionError(f"row {row.id}: the layer's output shape is {shape}, the row expects {expected}")

    # The dry run: the very ops call the benchmark makes, on a zero batch, on the NumPy engine.
    dtype = np.dtype(dtype)
    arrays = {"x": np.empty(row.input_shape(data_format, batch=0), dtype)}
    for name, weight_shape in row.weight_shapes().items():
        arrays[name] = np.zeros(weight_shape, dtype)  # calloc: no pages touched for the big kernels
    try:
        with _refusals(*_GEOMETRY):
            y = call_op(row, arrays, data_format, engine="numpy")
    except RowError as e:
        raise RowError(_with_real_batch(str(e), row.N), e.fields) from e.__cause__
    expected = row.output_shape(data_format, batch=0)
    if tuple(y.shape) != tuple(expected):
        raise AssertionError(f"row {row.id}: ops returned shape {tuple(y.shape)}, the row expects {expected}")
    return row.output_shape(data_format)

"""The gpuconv call a row stands for, through the public ops API only, and the dry run that
validates a row without computing it.

``call_op`` is used three ways: to compute on the chosen backend (the thing timed), to compute
the float64 oracle on the NumPy engine, and, with a batch of zero, to run the library's own
validation (every check in ``gpuconv.ops`` runs before its empty-input shortcut, so a zero batch
validates the full geometry and never touches an engine kernel).
"""
import contextlib

import numpy as np

from .. import backend as _backend
from .. import geometry as _geometry
from .. import ops
from .row import OPS, POOL_MODES


def call_op(row, arrays, data_format):
    """Run ``row`` on ``arrays`` (``make_inputs``' dict) with the active backend; returns the output."""
    x = arrays["x"]
    common = dict(strides=row.s, padding=row.padding, data_format=data_format)
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
        return ops.pool_core(x, POOL_MODES[row.op], row.k, row.s, row.padding, data_format)
    raise ValueError(f"Unknown op {row.op!r} in row {row.id}")


@contextlib.contextmanager
def numpy_backend():
    """Select the NumPy engine for the block and restore the previous selection after it.

    Nothing changes when NumPy is already in force (so 'auto' is not re-resolved, and re-logged,
    on every oracle call of a CPU run)."""
    if _backend.get_backend() == "numpy":
        yield
        return
    previous = _backend.requested_backend()
    _backend.set_backend("numpy")
    try:
        yield
    finally:
        _backend.set_backend(previous)


class RowError(ValueError):
    """A row the library refuses. ``fields`` names the Row fields involved (the CLI maps them to
    its flags), the message is the library's own."""

    def __init__(self, message, fields):
        super().__init__(message)
        self.fields = tuple(fields)


@contextlib.contextmanager
def _blame(*fields):
    try:
        yield
    except RowError:
        raise
    except (ValueError, TypeError) as e:
        raise RowError(str(e), fields) from e


def _positive(value, name, field):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise RowError(f"Invalid value for argument `{name}`. Expected a strictly positive integer. "
                       f"Received {name}={value!r}.", (field,))


def check_layer_arguments(row):
    """The checks a Keras layer makes at construction that the ops leave to the layers
    (keras_spec 2.1-2.4), with Keras' texts. Raises :class:`RowError`."""
    if row.op not in OPS:
        raise RowError(f"Unknown op {row.op!r}; expected one of {OPS}.", ("op",))
    _positive(row.N, "batch", "N")
    _positive(row.C, "input channels", "C")
    _positive(row.K, "filters", "K")
    if not row.spatial or len(row.spatial) > 3:
        raise RowError(f"Expected 1 to 3 spatial dims; received spatial={tuple(row.spatial)}.", ("spatial",))
    for v in row.spatial:
        _positive(v, "spatial size", "spatial")
    with _blame("k"):
        row.kernel_size
    with _blame("s"):
        row.strides
    with _blame("d"):
        row.dilation
    with _blame("padding"):
        allow_causal = row.rank == 1 and row.op in ("conv", "depthwise", "separable")
        if row.is_pool:
            if row.padding not in ("valid", "same"):
                raise ValueError(f"Argument `padding` must be either 'valid' or 'same'. Received: padding={row.padding}")
        else:
            _geometry.standardize_padding(row.padding, allow_causal=allow_causal)
    with _blame("dm"):
        _geometry.check_positive_int(row.dm, "depth_multiplier")
    if row.op in ("conv", "conv_transpose"):
        if isinstance(row.g, bool) or not isinstance(row.g, (int, np.integer)) or row.g <= 0:
            raise RowError(f"The number of groups must be a positive integer. Received: groups={row.g}.", ("g",))
        if row.K % row.g:
            raise RowError("The number of filters must be evenly divisible by the number of groups. "
                           f"Received: groups={row.g}, filters={row.K}.", ("g", "K"))
        if row.C % row.g:
            raise RowError("The number of input channels must be evenly divisible by the number of groups. "
                           f"Received groups={row.g}, but the input has {row.C} channels.", ("g", "C"))
        with _blame("s", "d"):
            _geometry.check_strides_dilation(row.strides, row.dilation)
    elif row.g != 1:
        raise RowError(f"Argument `groups` applies only to conv and conv_transpose; received groups={row.g} "
                       f"for op {row.op!r}.", ("g",))
    if row.op == "depthwise" and row.K != row.C * row.dm:
        raise RowError(f"A depthwise conv has C*depth_multiplier output channels: expected {row.C * row.dm}, "
                       f"received {row.K}.", ("K", "C", "dm"))
    if row.op not in ("depthwise", "separable") and row.dm != 1:
        raise RowError(f"Argument `depth_multiplier` applies only to depthwise and separable convs; "
                       f"received depth_multiplier={row.dm} for op {row.op!r}.", ("dm",))
    if row.is_pool and row.K != row.C:
        raise RowError(f"Pooling keeps the channel count: expected {row.C} output channels, received {row.K}.",
                       ("K", "C"))
    if row.op == "dense" and (tuple(row.spatial) != (1,) or row.kernel_size != (1,)):
        raise RowError(f"A dense row is a length-1, k=1 conv; received spatial={tuple(row.spatial)}, k={row.k}.",
                       ("spatial", "k"))


def _with_real_batch(message, batch):
    """The dry run's messages quote the zero batch it used; put the row's batch back."""
    return message.replace("inputs shape=(0,", f"inputs shape=({batch},").replace(
        "inputs.shape=[0 ", f"inputs.shape=[{batch} ")


def validate(row, data_format, dtype="float32"):
    """Validate ``row`` with the library's own checks (no compute); returns the output shape.
    Raises :class:`RowError`."""
    check_layer_arguments(row)
    dtype = np.dtype(dtype)
    arrays = {"x": np.empty(row.input_shape(data_format, batch=0), dtype)}
    for name, shape in row.weight_shapes().items():
        arrays[name] = np.zeros(shape, dtype)  # calloc: no pages touched for the big kernels
    try:
        with numpy_backend(), _blame("spatial", "k", "s", "d", "padding"):
            y = call_op(row, arrays, data_format)
    except RowError as e:
        raise RowError(_with_real_batch(str(e), row.N), e.fields) from e.__cause__
    expected = row.output_shape(data_format, batch=0)
    if tuple(y.shape) != tuple(expected):
        raise AssertionError(f"row {row.id}: ops returned shape {tuple(y.shape)}, the row expects {expected}")
    return row.output_shape(data_format)

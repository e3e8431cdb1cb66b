"""Functional API mirroring ``keras.ops``: conv, conv_transpose, depthwise_conv, separable_conv,
max_pool, average_pool; plus the private cores the layers call (with bias, fused activation,
groups on transposed convs, causal padding, locally connected, upsampling).

Why this layer exists: it is the one place arguments become a problem. Each function validates
its arguments (Keras' texts), resolves the geometry to integers once (``gpuconv.geometry``),
builds the frozen problem (``gpuconv.problems``) every engine takes, answers empty inputs without
an engine, and hands the problem to the planner (``gpuconv.planning``), which calls the engine.
The engine is the active backend's unless ``engine=`` names one (a backend name or an object
implementing ``gpuconv.engines.Engine``): the benchmark and the tests compare engines that way
without touching the global choice.
"""
import functools
import math

import numpy as np

from . import activations as _activations
from . import arrays as _arrays
from . import autodiff as _autodiff
from . import dtypes as _dtypes
from . import gradients as _gradients
from . import engines as _engines
from . import geometry as g
from . import planning as _planning
from . import problems as _problems


# --------------------------------------------------------------------------------------------
# Validation helpers (shared by every op)
# --------------------------------------------------------------------------------------------
def _check_array(x, name):
    """Refuse None / non-float arrays; take other libraries' arrays (torch, JAX, anything with
    ``__dlpack__`` / ``__array__``) and lists through ``arrays.as_array``."""
    x = _arrays.as_array(x, name)
    if not _dtypes.is_op_dtype(x.dtype):
        raise TypeError(
            f"Argument `{name}` must be a float16, bfloat16, float32 or float64 array; got {x.dtype}. "
            "Cast it first (layers cast to their dtype automatically)."
        )
    return x


def _prepare(eng, named_arrays):
    """Validate, check one dtype for all, move to the engine's device. Returns arrays in order."""
    arrays = []
    dtype = None
    first = None
    for name, a in named_arrays:
        if a is None and name == "bias":  # only the bias is optional; None elsewhere is a TypeError
            arrays.append(None)
            continue
        a = _check_array(a, name)
        if dtype is None:
            dtype, first = a.dtype, name
        elif a.dtype != dtype:
            raise TypeError(
                f"Argument `{name}` has dtype {a.dtype} but `{first}` has dtype {dtype}; they must be the same."
            )
        moved = eng.asarray(a)
        if moved is not a and _autodiff.recording(a):  # a watched host array uploaded: stay connected
            _autodiff.record_identity(a, moved)
        arrays.append(moved)
    return arrays


def _check_rank(x, rank, what, kernel_shape=None):
    if x.ndim != rank + 2:
        extra = f" for a kernel of shape {tuple(kernel_shape)}" if kernel_shape is not None else ""
        raise ValueError(
            f"Expected `inputs` of rank {rank + 2} ({what}){extra}; received inputs of shape {tuple(x.shape)}."
        )


def _channels(x, data_format):
    return x.shape[g.channel_axis(data_format)]


def _check_bias(bias, filters):
    if bias is not None and tuple(bias.shape) != (filters,):
        raise ValueError(f"Expected `bias` of shape ({filters},); received bias of shape {tuple(bias.shape)}.")


def _epilogue(eng, activation, recording=False):
    """``(fused, after)``: the name the engine fuses after the bias (None: nothing), and the
    callable ops applies to the engine's result (None: nothing). Resolved once per call from a
    name, a callable or None; only a built-in elementwise activation the engine lists in
    ``FUSED_ACTIVATIONS`` is fused. Under a gradient tape only one whose derivative the output
    gives (``activations.OUTPUT_DERIVATIVES``: relu, relu6) stays fused, its derivative applied
    first in the op's backward; any other is then a recorded op of its own, whose backward
    needs the pre-activation result."""
    if activation is None:
        return None, None
    fn = _activations.get(activation)
    name = _activations.builtin_elementwise_name(fn)
    if name == "linear":
        return None, None
    if name is not None and name in eng.FUSED_ACTIVATIONS and (
            not recording or name in _activations.OUTPUT_DERIVATIVES):
        return name, None
    return None, fn


def _finish(y, after):
    return y if after is None else after(y)


def _recorded(recording, inputs, y, backward, *arguments, activation=None):
    """``y``, recorded on the active tapes as computed from ``inputs`` with the gradient
    ``backward(*arguments, dy)`` when ``recording`` (the tape keeps ``arguments``: the inputs
    and weights a backward needs, never an intermediate). A fused ``activation`` (one of
    ``OUTPUT_DERIVATIVES``) is differentiated first, from ``y``, which the tape then keeps."""
    if recording:
        linear = functools.partial(backward, *arguments)
        if activation is None:
            _autodiff.record(inputs, y, linear)
        elif getattr(backward, "takes_output", False):  # the backward applies the derivative (fused on CUDA)
            _autodiff.record(inputs, y, lambda dy: linear(dy, output=y))
        else:
            derivative = _activations.OUTPUT_DERIVATIVES[activation]
            _autodiff.record(inputs, y, lambda dy: linear(derivative(y, dy)))
    return y


def _run(eng, problem, x, weights, bias, recording):
    """The planner's run of ``problem``, recorded with its backward when ``recording``."""
    y = _planning.run(eng, problem, x, weights, bias)
    return _recorded(recording, (x, *weights, bias), y, _gradients.BACKWARD[problem.kind], eng, problem, x,
                     *weights, bias, activation=problem.activation)


def _channel_bias(bias, ndim, data_format):
    """A ``(F,)`` bias shaped to broadcast over an output of ``ndim`` dims (None stays None)."""
    if bias is None:
        return None
    shape = [1] * ndim
    shape[g.channel_axis(data_format)] = -1
    return bias.reshape(shape)


def _empty_result(x, out_shape, bias=None, activation=None):
    """Result for an input with no elements: no launch. Zero in-channels still yield bias + act;
    ``bias`` is already shaped to broadcast against the output (or None)."""
    xp = _arrays.array_module(x)
    if xp is np:  # the host's limit; CuPy raises its own OutOfMemoryError
        from .cpu import memory

        memory.check_allocation(out_shape, x.dtype, "output")
    y = xp.zeros(out_shape, dtype=x.dtype)
    if y.size and bias is not None:
        y = y + bias
    if y.size and activation not in (None, "linear"):
        y = _activations.get(activation)(y)
    return y


class _Window:
    """The validated geometry of one windowed op, from its arguments as the caller gave them."""

    def __init__(self, x, kernel, what, strides, dilation_rate, padding, data_format, allow_causal):
        rank = kernel.ndim - 2
        if rank not in (1, 2, 3):
            raise ValueError(f"Expected a kernel of rank 3, 4 or 5; received kernel of shape {tuple(kernel.shape)}.")
        self.rank = rank
        self.data_format = g.standardize_data_format(data_format)
        self.channels_last = self.data_format == "channels_last"
        _check_rank(x, rank, f"{rank}D {what}", kernel.shape)
        self.strides = g.standardize_tuple(strides, rank, "strides")
        self.dilation = g.standardize_tuple(dilation_rate, rank, "dilation_rate")
        self.padding = g.standardize_padding(padding, allow_causal=allow_causal and rank == 1)
        self.ksize = g.standardize_tuple(kernel.shape[:rank], rank, "kernel_size")  # a 0 in the kernel is refused
        g.check_dilated_extent(self.ksize, self.dilation)
        self.spatial = g.spatial_dims(x.shape, self.data_format)
        self.c_in = _channels(x, self.data_format)

    def channel_mismatch(self, kernel_channels, extra=""):
        return ValueError(
            "The number of input channels must match the kernel's input channels. "
            f"Received: input channels={self.c_in}, kernel input channels={kernel_channels}, "
            f"{extra}data_format='{self.data_format}'"
        )

    def problem(self, x, kind, out_spatial, pad_before, out_channels, fused, bias, groups=1, depth_multiplier=1):
        return _problems.ConvProblem(
            kind=kind, batch=int(x.shape[0]), in_channels=int(self.c_in), out_channels=int(out_channels),
            in_spatial=tuple(self.spatial), out_spatial=tuple(out_spatial), kernel_size=self.ksize,
            strides=self.strides, dilation=self.dilation, pad_before=tuple(pad_before), groups=int(groups),
            depth_multiplier=int(depth_multiplier), channels_last=self.channels_last, dtype=x.dtype,
            activation=fused, has_bias=bias is not None,
        )


def _forward(eng, kind, x, weights, bias, win, filters, activation, empty, groups=1, depth_multiplier=1):
    """Shared tail of conv / depthwise / separable: output size, empty inputs, problem, launch."""
    _check_bias(bias, filters)
    out_spatial = g.conv_output_spatial(win.spatial, win.ksize, win.strides, win.dilation, win.padding)
    g.check_conv_output(out_spatial, x.shape, weights[0].shape, win.dilation, win.strides, win.padding)
    if empty:
        out_shape = g.make_shape(x.shape[0], filters, out_spatial, win.data_format)
        return _empty_result(x, out_shape, _channel_bias(bias, x.ndim, win.data_format), activation)
    recording = _autodiff.recording(x, *weights, bias)
    fused, after = _epilogue(eng, activation, recording)
    pad_before = [p[0] for p in g.conv_padding(win.spatial, win.ksize, win.strides, win.dilation, win.padding)]
    problem = win.problem(x, kind, out_spatial, pad_before, filters, fused, bias, groups, depth_multiplier)
    return _finish(_run(eng, problem, x, weights, bias, recording), after)


# --------------------------------------------------------------------------------------------
# Cores (what the layers call)
# --------------------------------------------------------------------------------------------
def conv_core(inputs, kernel, bias=None, *, strides=1, padding="valid", data_format=None,
              dilation_rate=1, activation=None, allow_causal=True, engine=None):
    """Grouped/dilated/strided N-d cross-correlation + bias + activation. Groups = C_in // kernel C."""
    eng = _engines.resolve(engine)
    x, kernel, bias = _prepare(eng, [("inputs", inputs), ("kernel", kernel), ("bias", bias)])
    win = _Window(x, kernel, "convolution", strides, dilation_rate, padding, data_format, allow_causal)
    c_in, kc, filters = win.c_in, kernel.shape[-2], kernel.shape[-1]
    zero_channels = c_in == 0 and kc == 0  # PyTorch allows it: the output is the bias (or zeros)
    if not zero_channels and (kc == 0 or c_in < kc or c_in % kc or filters % (c_in // kc)):
        raise win.channel_mismatch(kc)
    groups = c_in // kc if kc else 1
    return _forward(eng, _problems.CONV, x, (kernel,), bias, win, filters, activation, x.size == 0, groups=groups)


def conv_transpose_core(inputs, kernel, bias=None, *, strides=1, padding="valid", output_padding=None,
                        data_format=None, dilation_rate=1, groups=1, activation=None, engine=None):
    """Adjoint of conv with Keras' output length and crop rule. Kernel ``(k.., F // groups, C_in)``."""
    eng = _engines.resolve(engine)
    x, kernel, bias = _prepare(eng, [("inputs", inputs), ("kernel", kernel), ("bias", bias)])
    win = _Window(x, kernel, "transposed convolution", strides, dilation_rate, padding, data_format, False)
    if output_padding is not None:
        output_padding = g.standardize_tuple(output_padding, win.rank, "output_padding", allow_zero=True)
        g.check_output_padding(output_padding, win.strides)
    groups = g.check_positive_int(groups, "groups")
    if kernel.shape[-1] != win.c_in or win.c_in % groups:
        raise win.channel_mismatch(kernel.shape[-1], extra=f"groups={groups}, ")
    filters = kernel.shape[-2] * groups
    _check_bias(bias, filters)
    out_spatial, crop = g.conv_transpose_geometry(
        win.spatial, win.ksize, win.strides, win.dilation, win.padding, output_padding
    )
    # One rule for every windowed op: an empty output is refused, as conv and pooling do.
    g.check_conv_output(out_spatial, x.shape, kernel.shape, win.dilation, win.strides, win.padding)
    g.check_output_extent(out_spatial, "the transposed convolution", inputs_shape=tuple(x.shape),
                          kernel_shape=tuple(kernel.shape), strides=win.strides, dilation_rate=win.dilation,
                          output_padding=output_padding)
    if x.size == 0:
        out_shape = g.make_shape(x.shape[0], filters, out_spatial, win.data_format)
        return _empty_result(x, out_shape, _channel_bias(bias, x.ndim, win.data_format), activation)
    recording = _autodiff.recording(x, kernel, bias)
    fused, after = _epilogue(eng, activation, recording)
    problem = win.problem(x, _problems.CONV_TRANSPOSE, out_spatial, crop, filters, fused, bias, groups)
    return _finish(_run(eng, problem, x, (kernel,), bias, recording), after)


def depthwise_conv_core(inputs, kernel, bias=None, *, strides=1, padding="valid", data_format=None,
                        dilation_rate=1, activation=None, allow_causal=True, engine=None):
    """Depthwise conv, kernel ``(k.., C, depth_multiplier)``, output channel ``c*dm + m``."""
    eng = _engines.resolve(engine)
    x, kernel, bias = _prepare(eng, [("inputs", inputs), ("kernel", kernel), ("bias", bias)])
    win = _Window(x, kernel, "depthwise convolution", strides, dilation_rate, padding, data_format, allow_causal)
    if kernel.shape[-2] != win.c_in:
        raise win.channel_mismatch(kernel.shape[-2])
    filters = win.c_in * kernel.shape[-1]
    empty = x.size == 0 or kernel.size == 0
    return _forward(eng, _problems.DEPTHWISE, x, (kernel,), bias, win, filters, activation, empty,
                    depth_multiplier=kernel.shape[-1])


def separable_conv_core(inputs, depthwise_kernel, pointwise_kernel, bias=None, *, strides=1, padding="valid",
                        data_format=None, dilation_rate=1, activation=None, allow_causal=True, engine=None):
    """Depthwise (strides, padding, dilation) then pointwise 1x1, bias, activation."""
    eng = _engines.resolve(engine)
    x, dk, pk, bias = _prepare(
        eng, [("inputs", inputs), ("depthwise_kernel", depthwise_kernel),
              ("pointwise_kernel", pointwise_kernel), ("bias", bias)]
    )
    win = _Window(x, dk, "separable convolution", strides, dilation_rate, padding, data_format, allow_causal)
    if dk.shape[-2] != win.c_in:
        raise win.channel_mismatch(dk.shape[-2])
    rank, mid = win.rank, win.c_in * dk.shape[-1]
    if pk.ndim != rank + 2 or tuple(pk.shape[:rank]) != (1,) * rank or pk.shape[-2] != mid:
        raise ValueError(
            f"Expected `pointwise_kernel` of shape {(1,) * rank + (mid, 'filters')}; "
            f"received pointwise_kernel of shape {tuple(pk.shape)}."
        )
    empty = x.size == 0 or dk.size == 0
    return _forward(eng, _problems.SEPARABLE, x, (dk, pk), bias, win, pk.shape[-1], activation, empty,
                    depth_multiplier=dk.shape[-1])


def pool_core(inputs, mode, pool_size, strides=None, padding="valid", data_format=None, engine=None):
    """Max or average pooling; padded cells are ignored by max and not counted by average."""
    eng = _engines.resolve(engine)
    (x,) = _prepare(eng, [("inputs", inputs)])
    rank = x.ndim - 2
    if rank not in (1, 2, 3):
        raise ValueError(f"Expected `inputs` of rank 3, 4 or 5 for pooling; received inputs of shape {tuple(x.shape)}.")
    data_format = g.standardize_data_format(data_format)
    pool_size = g.standardize_tuple(pool_size, rank, "pool_size")
    strides = pool_size if strides is None else g.standardize_tuple(strides, rank, "strides", allow_zero=True)
    padding = padding.lower() if isinstance(padding, str) else padding
    out_shape = g.pool_output_shape(x.shape, pool_size, strides, padding, data_format)
    if x.size == 0:
        return _empty_result(x, out_shape)
    spatial = g.spatial_dims(x.shape, data_format)
    problem = _problems.PoolProblem(
        mode=mode, batch=int(x.shape[0]), channels=int(_channels(x, data_format)), in_spatial=tuple(spatial),
        out_spatial=tuple(g.spatial_dims(out_shape, data_format)), pool_size=pool_size, strides=strides,
        pad_before=tuple(p[0] for p in g.pool_padding(spatial, pool_size, strides, padding)),
        channels_last=data_format == "channels_last", dtype=x.dtype,
    )
    return _recorded(_autodiff.recording(x), (x,), eng.pool(problem, x), _gradients.pool, eng, problem, x)


def locally_connected_core(inputs, kernel, bias=None, *, kernel_size, strides=1, padding="valid",
                           data_format=None, activation=None, engine=None):
    """Unshared-weight conv (Keras 2 ``implementation=1`` layout: ``(positions, prod(k)*C, F)``)."""
    eng = _engines.resolve(engine)
    x, kernel, bias = _prepare(eng, [("inputs", inputs), ("kernel", kernel), ("bias", bias)])
    rank = x.ndim - 2 if isinstance(kernel_size, int) else len(kernel_size)
    if rank not in (1, 2, 3):
        raise ValueError(
            f"Expected `inputs` of rank 3, 4 or 5 for locally connected; received inputs of shape {tuple(x.shape)} "
            f"and kernel_size={kernel_size}."
        )
    data_format = g.standardize_data_format(data_format)
    _check_rank(x, rank, f"{rank}D locally connected", kernel.shape)
    if kernel.ndim != 3:
        raise ValueError(
            "Expected `kernel` of rank 3 (positions, prod(kernel_size) * channels, filters); received kernel of "
            f"shape {tuple(kernel.shape)}."
        )
    kernel_size = g.standardize_tuple(kernel_size, rank, "kernel_size")
    strides = g.standardize_tuple(strides, rank, "strides")
    padding = g.standardize_padding(padding)
    spatial = g.spatial_dims(x.shape, data_format)
    out_spatial = tuple(
        g.locally_connected_output_length(L, k, s, padding) for L, k, s in zip(spatial, kernel_size, strides)
    )
    c_in = _channels(x, data_format)
    if any(o <= 0 for o in out_spatial):
        raise ValueError(
            "Computed output size would be zero or negative. Received "
            f"`inputs shape={tuple(x.shape)}`, `kernel_size={kernel_size}`, `strides={strides}`, `padding={padding}`."
        )
    positions = math.prod(out_spatial)
    expect = (positions, math.prod(kernel_size) * c_in, kernel.shape[-1])
    if tuple(kernel.shape) != expect:
        raise ValueError(f"Expected `kernel` of shape {expect}; received kernel of shape {tuple(kernel.shape)}.")
    filters = kernel.shape[-1]
    if bias is not None and tuple(bias.shape) != (*out_spatial, filters):
        raise ValueError(
            f"Expected `bias` of shape {(*out_spatial, filters)}; received bias of shape {tuple(bias.shape)}."
        )
    out_shape = g.make_shape(x.shape[0], filters, out_spatial, data_format)
    if x.size == 0:  # only zero in-channels leave outputs: per-position bias + activation
        if bias is not None and data_format == "channels_first":
            bias = _arrays.array_module(bias).moveaxis(bias, -1, 0)
        return _empty_result(x, out_shape, bias, activation)
    recording = _autodiff.recording(x, kernel, bias)
    fused, after = _epilogue(eng, activation, recording)
    problem = _problems.LocalProblem(
        batch=int(x.shape[0]), in_channels=int(c_in), out_channels=int(filters), in_spatial=tuple(spatial),
        out_spatial=out_spatial, kernel_size=kernel_size, strides=strides,
        pad_before=tuple(g.locally_connected_padding_pair(L, k, s, padding)[0]
                         for L, k, s in zip(spatial, kernel_size, strides)),
        channels_last=data_format == "channels_last", dtype=x.dtype, activation=fused, has_bias=bias is not None,
    )
    y = eng.locally_connected(problem, x, kernel, bias)
    return _finish(_recorded(recording, (x, kernel, bias), y, _gradients.locally_connected_with_bias, eng,
                             problem, x, kernel, bias, activation=problem.activation), after)


def upsampling_core(inputs, size, interpolation="nearest", data_format=None, engine=None):
    """Nearest (repeat), bilinear (2-D) or trilinear (3-D) with half-pixel centres, edge clamp."""
    eng = _engines.resolve(engine)
    (x,) = _prepare(eng, [("inputs", inputs)])
    rank = len(size)
    data_format = g.standardize_data_format(data_format)
    _check_rank(x, rank, f"{rank}D upsampling")
    size = g.standardize_tuple(size, rank, "size")
    allowed = _problems.INTERPOLATIONS[rank]
    if interpolation not in allowed:
        raise ValueError(
            f"Invalid value for argument `interpolation`. Expected of one {allowed}. "
            f"Received: interpolation={interpolation}"
        )
    spatial = g.spatial_dims(x.shape, data_format)
    c = _channels(x, data_format)
    out_spatial = tuple(L * s for L, s in zip(spatial, size))
    g.check_output_extent(out_spatial, "the upsampling", inputs_shape=tuple(x.shape), size=size)
    out_shape = g.make_shape(x.shape[0], c, out_spatial, data_format)
    if x.size == 0:
        return _empty_result(x, out_shape)
    problem = _problems.ResampleProblem(
        batch=int(x.shape[0]), channels=int(c), in_spatial=tuple(spatial), out_spatial=out_spatial, size=size,
        interpolation=interpolation, channels_last=data_format == "channels_last", dtype=x.dtype,
    )
    # The adjoint needs only the geometry: the input is not kept.
    return _recorded(_autodiff.recording(x), (x,), eng.upsample(problem, x), _gradients.upsample, eng, problem,
                     None)


# --------------------------------------------------------------------------------------------
# Public, keras.ops signatures
# --------------------------------------------------------------------------------------------
def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1, *, engine=None):
    """``keras.ops.conv``: N-d cross-correlation; groups inferred as ``C_in // kernel.shape[-2]``."""
    return conv_core(inputs, kernel, None, strides=strides, padding=padding, data_format=data_format,
                     dilation_rate=dilation_rate, allow_causal=False, engine=engine)


def conv_transpose(inputs, kernel, strides=1, padding="valid", output_padding=None, data_format=None,
                   dilation_rate=1, *, engine=None):
    """``keras.ops.conv_transpose``: kernel ``(k.., filters, C_in)``, Keras' output length and crop."""
    return conv_transpose_core(inputs, kernel, None, strides=strides, padding=padding,
                               output_padding=output_padding, data_format=data_format,
                               dilation_rate=dilation_rate, engine=engine)


def depthwise_conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1, *, engine=None):
    """``keras.ops.depthwise_conv``: kernel ``(k.., C, depth_multiplier)`` (3-D allowed too)."""
    return depthwise_conv_core(inputs, kernel, None, strides=strides, padding=padding,
                               data_format=data_format, dilation_rate=dilation_rate, allow_causal=False,
                               engine=engine)


def separable_conv(inputs, depthwise_kernel, pointwise_kernel, strides=1, padding="valid", data_format=None,
                   dilation_rate=1, *, engine=None):
    """``keras.ops.separable_conv``: depthwise then pointwise 1x1."""
    return separable_conv_core(inputs, depthwise_kernel, pointwise_kernel, None, strides=strides,
                               padding=padding, data_format=data_format, dilation_rate=dilation_rate,
                               allow_causal=False, engine=engine)


def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None, *, engine=None):
    """``keras.ops.max_pool``."""
    return pool_core(inputs, "max", pool_size, strides, padding, data_format, engine=engine)


def average_pool(inputs, pool_size, strides=None, padding="valid", data_format=None, *, engine=None):
    """``keras.ops.average_pool``: 'same' divides by the number of real (non-padded) cells."""
    return pool_core(inputs, "average", pool_size, strides, padding, data_format, engine=engine)
from .autodiff.functions import *  # noqa: F401,F403  (keras.ops array functions, recorded by the tape)

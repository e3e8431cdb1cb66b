"""Functional API mirroring ``keras.ops``: conv, conv_transpose, depthwise_conv, separable_conv,
max_pool, average_pool; plus the private cores the layers call (with bias, fused activation,
groups on transposed convs, causal padding, locally connected, upsampling).

Every function validates once, resolves the geometry to explicit integers (``gpuconv.geometry``),
handles empty inputs without touching an engine, and dispatches to the engine of the active
backend. Engines (``gpuconv.cpu`` and ``gpuconv.cuda.engine``) share one contract, documented in
``gpuconv/cpu/__init__.py``.
"""
import numpy as np

from . import activations as _activations
from . import backend as _backend
from . import geometry as g

_FLOAT_DTYPES = (np.dtype("float16"), np.dtype("float32"), np.dtype("float64"))


# --------------------------------------------------------------------------------------------
# Validation helpers (shared by every op)
# --------------------------------------------------------------------------------------------
def _check_array(x, name):
    """Refuse None / non-float arrays; convert array-likes (lists) with ``np.asarray``."""
    if x is None:
        raise TypeError(f"Argument `{name}` must be an array. Received: {name}=None")
    if not (isinstance(x, np.ndarray) or _backend.is_cupy_array(x)):
        try:
            x = np.asarray(x)
        except Exception as e:
            raise TypeError(f"Argument `{name}` must be an array. Received: {name} of type {type(x)}") from e
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"Argument `{name}` must be a float16, float32 or float64 array; got {x.dtype}. "
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
        arrays.append(eng.asarray(a))
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


def _check_output(out_spatial, x, kernel_shape, dilation, strides, padding):
    if any(o <= 0 for o in out_spatial):
        raise ValueError(
            "Computed output size would be zero or negative. Received "
            f"`inputs shape={tuple(x.shape)}`, `kernel shape={tuple(kernel_shape)}`, "
            f"`dilation_rate={np.array(dilation)}`, `strides={tuple(strides)}`, `padding={padding}`."
        )


def _split_activation(eng, activation):
    """(name passed to the engine to fuse, name applied afterwards)."""
    if activation is None or activation == "linear":
        return None, None
    if activation in eng.FUSED_ACTIVATIONS:
        return activation, None
    return None, activation


def _finish(y, post_activation):
    return y if post_activation is None else _activations.get(post_activation)(y)


def _empty_result(x, out_shape, bias, activation, data_format):
    """Result for an input with no elements: no launch. Zero in-channels still yield bias + act."""
    xp = _backend.array_module(x)
    y = xp.zeros(out_shape, dtype=x.dtype)
    if y.size and bias is not None:
        shape = [1] * y.ndim
        shape[g.channel_axis(data_format)] = -1
        y = y + bias.reshape(shape)
    if y.size and activation not in (None, "linear"):
        y = _activations.get(activation)(y)
    return y


def _geometry_args(rank, strides, dilation_rate, padding, allow_causal):
    strides = g.standardize_tuple(strides, rank, "strides")
    dilation = g.standardize_tuple(dilation_rate, rank, "dilation_rate")
    padding = g.standardize_padding(padding, allow_causal=allow_causal and rank == 1)
    return strides, dilation, padding


# --------------------------------------------------------------------------------------------
# Cores (what the layers call)
# --------------------------------------------------------------------------------------------
def conv_core(inputs, kernel, bias=None, *, strides=1, padding="valid", data_format=None,
              dilation_rate=1, activation=None, allow_causal=True):
    """Grouped/dilated/strided N-d cross-correlation + bias + activation. Groups = C_in // kernel C."""
    eng = _backend.engine()
    x, kernel, bias = _prepare(eng, [("inputs", inputs), ("kernel", kernel), ("bias", bias)])
    rank = kernel.ndim - 2
    if rank not in (1, 2, 3):
        raise ValueError(f"Expected a kernel of rank 3, 4 or 5; received kernel of shape {tuple(kernel.shape)}.")
    data_format = g.standardize_data_format(data_format)
    _check_rank(x, rank, f"{rank}D convolution", kernel.shape)
    strides, dilation, padding = _geometry_args(rank, strides, dilation_rate, padding, allow_causal)
    ksize = g.standardize_tuple(kernel.shape[:rank], rank, "kernel_size")  # a 0 in the kernel is refused
    c_in, kc, filters = _channels(x, data_format), kernel.shape[-2], kernel.shape[-1]
    zero_channels = c_in == 0 and kc == 0  # PyTorch allows it: the output is the bias (or zeros)
    if not zero_channels and (kc == 0 or c_in < kc or c_in % kc or filters % (c_in // kc)):
        raise ValueError(
            "The number of input channels must match the kernel's input channels. "
            f"Received: input channels={c_in}, kernel input channels={kc}, data_format='{data_format}'"
        )
    groups = c_in // kc if kc else 1
    _check_bias(bias, filters)
    spatial = g.spatial_dims(x.shape, data_format)
    out_spatial = g.conv_output_spatial(spatial, ksize, strides, dilation, padding)
    _check_output(out_spatial, x, kernel.shape, dilation, strides, padding)
    out_shape = g.make_shape(x.shape[0], filters, out_spatial, data_format)
    if x.size == 0:
        return _empty_result(x, out_shape, bias, activation, data_format)
    fused, post = _split_activation(eng, activation)
    y = eng.conv(
        x, kernel, bias,
        strides=strides, padding=g.conv_padding(spatial, ksize, strides, dilation, padding),
        dilation=dilation, groups=groups, channels_last=data_format == "channels_last", activation=fused,
    )
    return _finish(y, post)


def conv_transpose_core(inputs, kernel, bias=None, *, strides=1, padding="valid", output_padding=None,
                        data_format=None, dilation_rate=1, groups=1, activation=None):
    """Adjoint of conv with Keras' output length and crop rule. Kernel ``(k.., F // groups, C_in)``."""
    eng = _backend.engine()
    x, kernel, bias = _prepare(eng, [("inputs", inputs), ("kernel", kernel), ("bias", bias)])
    rank = kernel.ndim - 2
    if rank not in (1, 2, 3):
        raise ValueError(f"Expected a kernel of rank 3, 4 or 5; received kernel of shape {tuple(kernel.shape)}.")
    data_format = g.standardize_data_format(data_format)
    _check_rank(x, rank, f"{rank}D transposed convolution", kernel.shape)
    strides, dilation, padding = _geometry_args(rank, strides, dilation_rate, padding, False)
    if output_padding is not None:
        output_padding = g.standardize_tuple(output_padding, rank, "output_padding", allow_zero=True)
        g.check_output_padding(output_padding, strides)
    groups = g.check_positive_int(groups, "groups")
    ksize = g.standardize_tuple(kernel.shape[:rank], rank, "kernel_size")  # a 0 in the kernel is refused
    c_in = _channels(x, data_format)
    if kernel.shape[-1] != c_in or c_in % groups:
        raise ValueError(
            "The number of input channels must match the kernel's input channels. "
            f"Received: input channels={c_in}, kernel input channels={kernel.shape[-1]}, "
            f"groups={groups}, data_format='{data_format}'"
        )
    filters = kernel.shape[-2] * groups
    _check_bias(bias, filters)
    spatial = g.spatial_dims(x.shape, data_format)
    out_spatial, crop = g.conv_transpose_geometry(spatial, ksize, strides, dilation, padding, output_padding)
    out_shape = g.make_shape(x.shape[0], filters, out_spatial, data_format)
    if x.size == 0 or 0 in out_spatial:
        return _empty_result(x, out_shape, bias, activation, data_format)
    fused, post = _split_activation(eng, activation)
    y = eng.conv_transpose(
        x, kernel, bias,
        strides=strides, dilation=dilation, groups=groups, out_spatial=out_spatial, crop=crop,
        channels_last=data_format == "channels_last", activation=fused,
    )
    return _finish(y, post)


def depthwise_conv_core(inputs, kernel, bias=None, *, strides=1, padding="valid", data_format=None,
                        dilation_rate=1, activation=None, allow_causal=True):
    """Depthwise conv, kernel ``(k.., C, depth_multiplier)``, output channel ``c*dm + m``."""
    eng = _backend.engine()
    x, kernel, bias = _prepare(eng, [("inputs", inputs), ("kernel", kernel), ("bias", bias)])
    rank = kernel.ndim - 2
    if rank not in (1, 2, 3):
        raise ValueError(f"Expected a kernel of rank 3, 4 or 5; received kernel of shape {tuple(kernel.shape)}.")
    data_format = g.standardize_data_format(data_format)
    _check_rank(x, rank, f"{rank}D depthwise convolution", kernel.shape)
    strides, dilation, padding = _geometry_args(rank, strides, dilation_rate, padding, allow_causal)
    ksize = g.standardize_tuple(kernel.shape[:rank], rank, "kernel_size")  # a 0 in the kernel is refused
    c_in = _channels(x, data_format)
    if kernel.shape[-2] != c_in:
        raise ValueError(
            "The number of input channels must match the kernel's input channels. "
            f"Received: input channels={c_in}, kernel input channels={kernel.shape[-2]}, data_format='{data_format}'"
        )
    filters = c_in * kernel.shape[-1]
    _check_bias(bias, filters)
    spatial = g.spatial_dims(x.shape, data_format)
    out_spatial = g.conv_output_spatial(spatial, ksize, strides, dilation, padding)
    _check_output(out_spatial, x, kernel.shape, dilation, strides, padding)
    out_shape = g.make_shape(x.shape[0], filters, out_spatial, data_format)
    if x.size == 0 or kernel.size == 0:
        return _empty_result(x, out_shape, bias, activation, data_format)
    fused, post = _split_activation(eng, activation)
    y = eng.depthwise_conv(
        x, kernel, bias,
        strides=strides, padding=g.conv_padding(spatial, ksize, strides, dilation, padding),
        dilation=dilation, channels_last=data_format == "channels_last", activation=fused,
    )
    return _finish(y, post)


def separable_conv_core(inputs, depthwise_kernel, pointwise_kernel, bias=None, *, strides=1, padding="valid",
                        data_format=None, dilation_rate=1, activation=None, allow_causal=True):
    """Depthwise (strides, padding, dilation) then pointwise 1x1, bias, activation."""
    eng = _backend.engine()
    x, dk, pk, bias = _prepare(
        eng, [("inputs", inputs), ("depthwise_kernel", depthwise_kernel),
              ("pointwise_kernel", pointwise_kernel), ("bias", bias)]
    )
    rank = dk.ndim - 2
    if rank not in (1, 2, 3):
        raise ValueError(f"Expected a depthwise kernel of rank 3, 4 or 5; received {tuple(dk.shape)}.")
    data_format = g.standardize_data_format(data_format)
    _check_rank(x, rank, f"{rank}D separable convolution", dk.shape)
    strides, dilation, padding = _geometry_args(rank, strides, dilation_rate, padding, allow_causal)
    ksize = g.standardize_tuple(dk.shape[:rank], rank, "kernel_size")
    c_in = _channels(x, data_format)
    if dk.shape[-2] != c_in:
        raise ValueError(
            "The number of input channels must match the kernel's input channels. "
            f"Received: input channels={c_in}, kernel input channels={dk.shape[-2]}, data_format='{data_format}'"
        )
    mid = c_in * dk.shape[-1]
    if pk.ndim != rank + 2 or tuple(pk.shape[:rank]) != (1,) * rank or pk.shape[-2] != mid:
        raise ValueError(
            f"Expected `pointwise_kernel` of shape {(1,) * rank + (mid, 'filters')}; "
            f"received pointwise_kernel of shape {tuple(pk.shape)}."
        )
    filters = pk.shape[-1]
    _check_bias(bias, filters)
    spatial = g.spatial_dims(x.shape, data_format)
    out_spatial = g.conv_output_spatial(spatial, ksize, strides, dilation, padding)
    _check_output(out_spatial, x, dk.shape, dilation, strides, padding)
    out_shape = g.make_shape(x.shape[0], filters, out_spatial, data_format)
    if x.size == 0 or dk.size == 0:
        return _empty_result(x, out_shape, bias, activation, data_format)
    fused, post = _split_activation(eng, activation)
    y = eng.separable_conv(
        x, dk, pk, bias,
        strides=strides, padding=g.conv_padding(spatial, ksize, strides, dilation, padding),
        dilation=dilation, channels_last=data_format == "channels_last", activation=fused,
    )
    return _finish(y, post)


def pool_core(inputs, mode, pool_size, strides=None, padding="valid", data_format=None):
    """Max or average pooling; padded cells are ignored by max and not counted by average."""
    eng = _backend.engine()
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
        return _empty_result(x, out_shape, None, None, data_format)
    spatial = g.spatial_dims(x.shape, data_format)
    return eng.pool(
        x, mode=mode, pool_size=pool_size, strides=strides,
        padding=g.pool_padding(spatial, pool_size, strides, padding),
        channels_last=data_format == "channels_last",
    )


def locally_connected_core(inputs, kernel, bias=None, *, kernel_size, strides=1, padding="valid",
                           data_format=None, activation=None):
    """Unshared-weight conv (Keras 2 ``implementation=1`` layout: ``(positions, prod(k)*C, F)``)."""
    eng = _backend.engine()
    x, kernel, bias = _prepare(eng, [("inputs", inputs), ("kernel", kernel), ("bias", bias)])
    rank = len(kernel_size)
    data_format = g.standardize_data_format(data_format)
    _check_rank(x, rank, f"{rank}D locally connected", kernel.shape)
    strides = g.standardize_tuple(strides, rank, "strides")
    padding = g.standardize_padding(padding)
    spatial = g.spatial_dims(x.shape, data_format)
    out_spatial = tuple(
        g.locally_connected_output_length(L, k, s, padding) for L, k, s in zip(spatial, kernel_size, strides)
    )
    c_in = _channels(x, data_format)
    positions = int(np.prod(out_spatial))
    expect = (positions, int(np.prod(kernel_size)) * c_in, kernel.shape[-1])
    if tuple(kernel.shape) != expect:
        raise ValueError(f"Expected `kernel` of shape {expect}; received kernel of shape {tuple(kernel.shape)}.")
    filters = kernel.shape[-1]
    if bias is not None and tuple(bias.shape) != (*out_spatial, filters):
        raise ValueError(
            f"Expected `bias` of shape {(*out_spatial, filters)}; received bias of shape {tuple(bias.shape)}."
        )
    out_shape = g.make_shape(x.shape[0], filters, out_spatial, data_format)
    if x.size == 0:  # only zero in-channels leave outputs: per-position bias + activation
        y = _empty_result(x, out_shape, None, None, data_format)
        if y.size and bias is not None:
            xp = _backend.array_module(bias)
            y = y + (bias if data_format == "channels_last" else xp.moveaxis(bias, -1, 0))
        return _finish(y, None if activation == "linear" else activation) if y.size else y
    pad = tuple(g.locally_connected_padding_pair(L, k, s, padding) for L, k, s in zip(spatial, kernel_size, strides))
    fused, post = _split_activation(eng, activation)
    y = eng.locally_connected(
        x, kernel, bias, kernel_size=tuple(kernel_size), strides=strides, padding=pad,
        out_spatial=out_spatial, channels_last=data_format == "channels_last", activation=fused,
    )
    return _finish(y, post)


def upsampling_core(inputs, size, interpolation="nearest", data_format=None):
    """Nearest (repeat), bilinear (2-D) or trilinear (3-D) with half-pixel centres, edge clamp."""
    eng = _backend.engine()
    (x,) = _prepare(eng, [("inputs", inputs)])
    rank = len(size)
    data_format = g.standardize_data_format(data_format)
    _check_rank(x, rank, f"{rank}D upsampling")
    size = g.standardize_tuple(size, rank, "size")
    allowed = {1: ("nearest",), 2: ("nearest", "bilinear"), 3: ("nearest", "trilinear")}[rank]
    if interpolation not in allowed:
        raise ValueError(
            f"Invalid value for argument `interpolation`. Expected of one {allowed}. "
            f"Received: interpolation={interpolation}"
        )
    spatial = g.spatial_dims(x.shape, data_format)
    c = _channels(x, data_format)
    out_shape = g.make_shape(x.shape[0], c, tuple(L * s for L, s in zip(spatial, size)), data_format)
    if x.size == 0:
        return _empty_result(x, out_shape, None, None, data_format)
    return eng.upsample(x, size=tuple(size), interpolation=interpolation,
                        channels_last=data_format == "channels_last")


# --------------------------------------------------------------------------------------------
# Public, keras.ops signatures
# --------------------------------------------------------------------------------------------
def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """``keras.ops.conv``: N-d cross-correlation; groups inferred as ``C_in // kernel.shape[-2]``."""
    return conv_core(inputs, kernel, None, strides=strides, padding=padding, data_format=data_format,
                     dilation_rate=dilation_rate, allow_causal=False)


def conv_transpose(inputs, kernel, strides=1, padding="valid", output_padding=None, data_format=None,
                   dilation_rate=1):
    """``keras.ops.conv_transpose``: kernel ``(k.., filters, C_in)``, Keras' output length and crop."""
    return conv_transpose_core(inputs, kernel, None, strides=strides, padding=padding,
                               output_padding=output_padding, data_format=data_format,
                               dilation_rate=dilation_rate)


def depthwise_conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """``keras.ops.depthwise_conv``: kernel ``(k.., C, depth_multiplier)`` (3-D allowed too)."""
    return depthwise_conv_core(inputs, kernel, None, strides=strides, padding=padding,
                               data_format=data_format, dilation_rate=dilation_rate, allow_causal=False)


def separable_conv(inputs, depthwise_kernel, pointwise_kernel, strides=1, padding="valid", data_format=None,
                   dilation_rate=1):
    """``keras.ops.separable_conv``: depthwise then pointwise 1x1."""
    return separable_conv_core(inputs, depthwise_kernel, pointwise_kernel, None, strides=strides,
                               padding=padding, data_format=data_format, dilation_rate=dilation_rate,
                               allow_causal=False)


def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    """``keras.ops.max_pool``."""
    return pool_core(inputs, "max", pool_size, strides, padding, data_format)


def average_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    """``keras.ops.average_pool``: 'same' divides by the number of real (non-padded) cells."""
    return pool_core(inputs, "average", pool_size, strides, padding, data_format)

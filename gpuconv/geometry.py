"""Argument normalisation and every output-size / padding formula, in Python ints, in one place.

Layers, ops, both engines and the benchmark all take their geometry from here, so a formula is
written once. Texts of the errors follow Keras 3.15 (see shared/keras_spec.md, sections 1.1, 1.4,
1.5, 2.5, 2.9) so that code catching Keras' messages keeps working.

Conventions used throughout:
- ``rank`` is the number of spatial dimensions (1, 2 or 3).
- A *padding pair* is ``(before, after)`` zero padding of one spatial dimension; a padding
  *spec* is a tuple of ``rank`` such pairs. Engines receive only resolved pairs, never the
  strings 'same'/'causal'.
- ``None`` stands for an unknown dimension (symbolic shapes) and propagates to outputs.
"""
import numbers

import numpy as np

DATA_FORMATS = ("channels_first", "channels_last")

# The largest value of any size argument (kernel size, strides, dilation, pool size, output
# padding, upsampling size, cropping/padding amount, filters, groups) and of any extent derived
# from them (a dilated kernel, an output length). It is what the kernels' 32-bit size arguments
# hold, and far beyond any real layer; refusing larger values here keeps every later product of
# sizes inside int64 and turns NumPy's OverflowError / "array is too big" into a ValueError.
MAX_SIZE = 2**31 - 1

_image_data_format = "channels_last"


def image_data_format():
    """The global default for ``data_format=None`` (Keras' ``keras.config.image_data_format``)."""
    return _image_data_format


def set_image_data_format(data_format):
    global _image_data_format
    _image_data_format = standardize_data_format(data_format)


# --------------------------------------------------------------------------------------------
# Argument normalisation
# --------------------------------------------------------------------------------------------
def _is_integral(v):
    if isinstance(v, bool):
        return False
    if isinstance(v, numbers.Integral):
        return True
    return isinstance(v, (float, np.floating)) and float(v).is_integer()


def standardize_tuple(value, n, name, allow_zero=False):
    """An int or a length-``n`` iterable of integers -> a tuple of ``n`` Python ints.

    Keras' rule and texts; stricter than Keras only in refusing non-integral values (Keras would
    store 2.5 and fail later in the backend) and bools.
    """
    error_msg = f"The `{name}` argument must be a tuple of {n} integers. Received {name}={value}"
    if _is_integral(value):
        values = (int(value),) * n
    else:
        if isinstance(value, (str, bytes)):
            raise ValueError(error_msg)
        try:
            raw = tuple(value)
        except TypeError:
            raise ValueError(error_msg) from None
        if len(raw) != n:
            raise ValueError(error_msg)
        for v in raw:
            if not _is_integral(v):
                raise ValueError(error_msg + f"including element {v} of type {type(v)}")
        values = tuple(int(v) for v in raw)
    if allow_zero:
        bad, req = {v for v in values if v < 0}, ">= 0"
    else:
        bad, req = {v for v in values if v <= 0}, "> 0"
    if bad:
        raise ValueError(error_msg + f", including values {bad} that do not satisfy `value {req}`")
    too_big = {v for v in values if v > MAX_SIZE}
    if too_big:
        raise ValueError(error_msg + f", including values {too_big} that do not satisfy `value <= {MAX_SIZE}`")
    return values


def standardize_padding(value, allow_causal=False):
    """'valid' | 'same' (| 'causal'), case-insensitive, returned lowercased.

    Keras lets an explicit tuple through __init__ and fails at build; we fail at once with
    the build-time text, so no layer is half-constructed.
    """
    if isinstance(value, (list, tuple)):
        raise ValueError(f"`padding` must be either `'valid'` or `'same'`. Received {value}.")
    allowed = {"valid", "same", "causal"} if allow_causal else {"valid", "same"}
    padding = value.lower() if isinstance(value, str) else value
    if padding not in allowed:
        raise ValueError(
            f"The `padding` argument must be a list/tuple or one of {allowed}. Received: {padding}"
        )
    return padding


def standardize_data_format(data_format):
    if data_format is None:
        return image_data_format()
    value = str(data_format).lower()
    if value not in DATA_FORMATS:
        raise ValueError(
            "The `data_format` argument must be one of {'channels_first', 'channels_last'}. "
            f"Received: data_format={value}"
        )
    return value


def check_positive_int(value, name):
    """Keras' ``Invalid value for argument `filters`...`` check, also refusing non-integers."""
    if not _is_integral(value):
        raise TypeError(f"Invalid value for argument `{name}`. Expected an integer. Received {name}={value!r}.")
    if value <= 0:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a strictly positive value. Received {name}={value}."
        )
    if value > MAX_SIZE:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a value <= {MAX_SIZE}. Received {name}={value}."
        )
    return int(value)


def check_dilated_extent(kernel_size, dilation_rate):
    """Refuse a dilated kernel (``(k - 1) * d + 1`` cells) longer than ``MAX_SIZE``: each factor
    may be in range while the product is not (kernel 3, dilation 2**31 - 1)."""
    for i, (k, d) in enumerate(zip(kernel_size, dilation_rate)):
        extent = effective_kernel(k, d)
        if extent > MAX_SIZE:
            raise ValueError(
                f"The dilated kernel extent `(kernel_size - 1) * dilation_rate + 1` of spatial dimension {i} "
                f"is {extent}, more than the largest supported size {MAX_SIZE}. "
                f"Received: kernel_size={tuple(kernel_size)}, dilation_rate={tuple(dilation_rate)}"
            )


def check_output_extent(out_spatial, what, **arguments):
    """Refuse an output longer than ``MAX_SIZE`` along a spatial dimension (transposed convs and
    upsampling grow their input); ``arguments`` are echoed in the message."""
    for i, o in enumerate(out_spatial):
        if o is not None and o > MAX_SIZE:
            received = ", ".join(f"{k}={v}" for k, v in arguments.items())
            raise ValueError(
                f"Computed output size {o} of {what} along spatial dimension {i} is more than the largest "
                f"supported size {MAX_SIZE}. Received: {received}"
            )


def check_strides_dilation(strides, dilation_rate):
    """Keras forbids strides > 1 together with dilation > 1 (across all dims) for Conv and ConvTranspose."""
    if max(strides) > 1 and max(dilation_rate) > 1:
        raise ValueError(
            "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
            f"Received: strides={strides} and dilation_rate={dilation_rate}"
        )


def check_output_padding(output_padding, strides):
    if output_padding is None:
        return
    for i, (op, s) in enumerate(zip(output_padding, strides)):
        if op >= s:
            raise ValueError(
                "`output_padding` must be strictly less than `strides` for all dimensions. "
                f"At dimension {i}, `output_padding` is {op} but `strides` is {s}. "
                f"Received: output_padding={output_padding}, strides={strides}"
            )


# --------------------------------------------------------------------------------------------
# Layout helpers
# --------------------------------------------------------------------------------------------
def channel_axis(data_format):
    return -1 if data_format == "channels_last" else 1


def spatial_dims(shape, data_format):
    """The spatial part of an ``(N, *spatial, C)`` / ``(N, C, *spatial)`` shape."""
    shape = tuple(shape)
    return shape[1:-1] if data_format == "channels_last" else shape[2:]


def make_shape(batch, channels, spatial, data_format):
    spatial = tuple(spatial)
    if data_format == "channels_last":
        return (batch, *spatial, channels)
    return (batch, channels, *spatial)


def effective_kernel(k, d):
    """Extent of a dilated kernel: ``(k - 1) * d + 1``."""
    return (k - 1) * d + 1


# --------------------------------------------------------------------------------------------
# Forward convolution, depthwise, separable (keras_spec 1.4)
# --------------------------------------------------------------------------------------------
def conv_output_length(length, k, s, d, padding):
    if length is None:
        return None
    if padding == "valid":
        return (length - effective_kernel(k, d)) // s + 1
    return (length - 1) // s + 1  # same, causal


def conv_padding_pair(length, k, s, d, padding):
    """Zero padding ``(before, after)`` that turns ``padding`` into a 'valid' conv."""
    if padding == "valid":
        return (0, 0)
    k_eff = effective_kernel(k, d)
    if padding == "causal":
        return (k_eff - 1, 0)
    out = (length - 1) // s + 1
    total = max((out - 1) * s + k_eff - length, 0)
    return (total // 2, total - total // 2)  # the odd pixel goes after (TF 'SAME')


def conv_padding(spatial, kernel_size, strides, dilation_rate, padding):
    return tuple(
        conv_padding_pair(L, k, s, d, padding)
        for L, k, s, d in zip(spatial, kernel_size, strides, dilation_rate)
    )


def padded_output_spatial(spatial, kernel_size, strides, padding_pairs, dilation_rate):
    """Output extents of a window op over ``spatial`` with explicit ``(before, after)`` zero
    padding: a 'valid' window over the padded length (what the engines receive)."""
    return tuple(
        conv_output_length(L + p0 + p1, k, s, d, "valid")
        for L, k, s, (p0, p1), d in zip(spatial, kernel_size, strides, padding_pairs, dilation_rate)
    )


def conv_output_spatial(spatial, kernel_size, strides, dilation_rate, padding):
    return tuple(
        conv_output_length(L, k, s, d, padding)
        for L, k, s, d in zip(spatial, kernel_size, strides, dilation_rate)
    )


def conv_output_shape(input_shape, filters, kernel_size, strides, padding, data_format, dilation_rate):
    """Keras' ``compute_conv_output_shape``: checks and messages included."""
    input_shape = tuple(input_shape)
    rank = len(kernel_size)
    cl = data_format == "channels_last"
    kernel_shape = tuple(kernel_size) + (input_shape[-1 if cl else 1], filters)
    if len(kernel_shape) != len(input_shape):
        raise ValueError(
            "Kernel shape must have the same length as input, but received kernel of shape "
            f"{kernel_shape} and input of shape {input_shape}."
        )
    if padding not in ("valid", "same", "causal"):
        raise ValueError(f"`padding` must be either `'valid'` or `'same'`. Received {padding}.")
    spatial = spatial_dims(input_shape, data_format)
    out = conv_output_spatial(spatial, kernel_size, strides, dilation_rate, padding)
    check_conv_output(out, input_shape, kernel_shape, dilation_rate, strides, padding)
    assert len(out) == rank
    return make_shape(input_shape[0], filters, out, data_format)


def check_conv_output(out_spatial, input_shape, kernel_shape, dilation_rate, strides, padding):
    """Keras' refusal of a conv whose (known) output size is zero or negative."""
    if any(o is not None and o <= 0 for o in out_spatial):
        raise ValueError(
            "Computed output size would be zero or negative. Received "
            f"`inputs shape={tuple(input_shape)}`, `kernel shape={tuple(kernel_shape)}`, "
            f"`dilation_rate={np.array(dilation_rate)}`, `strides={tuple(strides)}`, `padding={padding}`."
        )


# --------------------------------------------------------------------------------------------
# Transposed convolution (keras_spec 1.5)
# --------------------------------------------------------------------------------------------
def conv_transpose_output_length(length, k, s, d, padding, output_padding):
    if length is None:
        return None
    k_eff = effective_kernel(k, d)
    if output_padding is None:
        if padding == "valid":
            return length * s + max(k_eff - s, 0)
        return length * s
    if padding == "same":
        return (length - 1) * s + k_eff % 2 + output_padding
    return (length - 1) * s + k_eff + output_padding


def conv_transpose_crop(length, k, s, d, out_length):
    """Left crop of the full scatter result (length ``(I-1)*s + k_eff``): ``y[o] = full[o + crop]``."""
    full = (length - 1) * s + effective_kernel(k, d)
    return max(full - out_length, 0) // 2


def conv_transpose_geometry(spatial, kernel_size, strides, dilation_rate, padding, output_padding):
    """Per spatial dim: ``(out_spatial, crop)`` for the engines' conv_transpose."""
    ops_ = output_padding if output_padding is not None else (None,) * len(spatial)
    out = tuple(
        conv_transpose_output_length(L, k, s, d, padding, op)
        for L, k, s, d, op in zip(spatial, kernel_size, strides, dilation_rate, ops_)
    )
    crop = tuple(
        None if L is None else conv_transpose_crop(L, k, s, d, o)
        for L, k, s, d, o in zip(spatial, kernel_size, strides, dilation_rate, out)
    )
    return out, crop


# --------------------------------------------------------------------------------------------
# Pooling (keras_spec 2.5)
# --------------------------------------------------------------------------------------------
def pool_output_length(length, p, s, padding):
    if length is None:
        return None
    if padding == "valid":
        return (length - p) // s + 1
    return (length - 1) // s + 1


def pool_output_shape(input_shape, pool_size, strides, padding, data_format):
    input_shape = tuple(input_shape)
    if padding not in ("valid", "same"):
        raise ValueError(f"Argument `padding` must be either 'valid' or 'same'. Received: padding={padding}")
    if any(s == 0 for s in strides):
        raise ValueError(f"Argument `strides` must be positive for pooling. Received: strides={tuple(strides)}")
    spatial = spatial_dims(input_shape, data_format)
    out = tuple(pool_output_length(L, p, s, padding) for L, p, s in zip(spatial, pool_size, strides))
    if any(o is not None and o <= 0 for o in out):
        shape_txt = np.array([d if d is not None else None for d in input_shape], dtype=object)
        raise ValueError(
            "Computed output size would be zero or negative. Received: "
            f"`inputs.shape={shape_txt}`, `pool_size={np.array(pool_size)}`, "
            f"`strides={tuple(strides)}`, `padding={padding}`."
        )
    channels = input_shape[-1] if data_format == "channels_last" else input_shape[1]
    return make_shape(input_shape[0], channels, out, data_format)


def pool_padding(spatial, pool_size, strides, padding):
    """Pooling pads like conv 'same' (the odd cell after); padded cells never count."""
    return conv_padding(spatial, pool_size, strides, (1,) * len(pool_size), padding)


# --------------------------------------------------------------------------------------------
# Locally connected (Keras 2, keras_spec 2.9)
# --------------------------------------------------------------------------------------------
def locally_connected_output_length(length, k, s, padding):
    if length is None:
        return None
    if padding == "valid":
        return -(-(length - k + 1) // s)
    return -(-length // s)


def locally_connected_padding_pair(length, k, s, padding):
    """Keras 2's 'same' windows start at ``p*s - k//2`` (one more on the left than conv 'same'
    for even k); we express them as zero padding so the engine sees a 'valid' unshared conv."""
    if padding == "valid":
        return (0, 0)
    out = locally_connected_output_length(length, k, s, padding)
    before = k // 2
    after = max((out - 1) * s + k - before - length, 0)
    return (before, after)


# --------------------------------------------------------------------------------------------
# Taps that can touch real input, and the sub-problem a run of outputs reads
# --------------------------------------------------------------------------------------------
def live_taps(length, k, s, d, before, out_length):
    """Taps ``[lo, hi)`` of a window op (output ``o``, tap ``t`` reads input index
    ``o*s + t*d - before``) that read the input for at least one output; every tap outside
    reads only padding, at every output. Empty (``lo >= hi``) when no tap reaches the input.

    The bounds come from the first and last output: a superset of the live taps when the stride
    leaves gaps wider than the input, so a tap outside is always dead."""
    lo = max(0, -(-(before - (out_length - 1) * s) // d))
    hi = min(k, (before + length - 1) // d + 1)
    return lo, max(lo, hi)


def window_slice(length, s, d, before, outputs, taps):
    """What outputs ``outputs = (o0, o1)`` of a window op read with taps ``taps = (t0, t1)``:
    ``(input slice, (before, after))`` such that a 'valid' window op of ``t1 - t0`` taps over
    the slice, zero-padded by the pair, gives exactly those outputs. Where they read only
    padding the slice is empty and the padding alone has the length they read."""
    (o0, o1), (t0, t1) = outputs, taps
    first = o0 * s + t0 * d - before
    last = (o1 - 1) * s + (t1 - 1) * d - before
    if last < 0 or first >= length:
        return slice(0, 0), (last - first + 1, 0)
    return slice(max(first, 0), min(last + 1, length)), (max(0, -first), max(0, last - (length - 1)))


def transpose_live_taps(length, k, s, d, crop, out_length):
    """Taps ``[lo, hi)`` of a transposed conv (input ``i``, tap ``t`` lands on output
    ``i*s + t*d - crop``) that land inside ``[0, out_length)`` for at least one input; the others
    land only on cropped cells. Empty when none does."""
    lo = max(0, -(-(crop - (length - 1) * s) // d))
    hi = min(k, (crop + out_length - 1) // d + 1)
    return lo, max(lo, hi)


def transpose_input_rows(length, s, d, crop, outputs, taps):
    """The inputs ``[i0, i1)`` whose taps ``taps = (t0, t1)`` land on outputs
    ``outputs = (o0, o1)`` of a transposed conv, and the crop that makes outputs ``o0..o1-1``
    the first ones of the sub-problem over those inputs with those taps (negative when its
    first output lies before the first landing cell)."""
    (o0, o1), (t0, t1) = outputs, taps
    i0 = max(0, -(-(o0 + crop - (t1 - 1) * d) // s))
    i1 = min(length, (o1 - 1 + crop - t0 * d) // s + 1)
    i1 = max(i0, i1)
    return (i0, i1), crop + o0 - t0 * d - i0 * s

"""Image preprocessing layers: Rescaling, Resizing, CenterCrop, with Keras 3.15's signatures,
defaults and configs, and the numbers of Keras' torch backend (``torch.nn.functional.interpolate``
on the CPU, which Keras calls with ``align_corners=False`` and, by default, ``antialias=False``).

Resizing is separable: one pass per spatial axis, each output cell a weighted sum of a few input
cells ("taps"). The taps are computed on the host the way PyTorch computes them, in the same
floating-point type (float32 arithmetic for float32 images), so that the cells an output samples
are PyTorch's cells even where the sampling position lands on a rounding boundary:

- 'nearest' is PyTorch's 'nearest-exact' (what Keras maps 'nearest' to): output ``j`` takes
  input ``floor((j + 0.5) * in / out)``, clamped to the last cell. Half-pixel centres, for
  downscaling as well as upscaling.
- 'bilinear': position ``(j + 0.5) * in / out - 0.5``, clamped below at 0, two taps, the second
  clamped to the last cell. No low-pass filter when downscaling (antialias=False), as Keras.
- 'bicubic': Keys' cubic with a = -0.75, four taps clamped to the edges (PyTorch's bicubic).
- ``antialias=True`` (bilinear, bicubic): PyTorch's antialiased kernels (a triangle / cubic
  a = -0.5 filter widened by the downscaling factor, normalised per output cell).

An integer upscaling factor with 'nearest' or 'bilinear' (no antialias) is exactly UpSampling2D's
resampling, so it goes through ``ops.upsampling_core`` (and its CUDA kernel). Each pass is one
node on a GradientTape whose backward applies the transposed interpolation matrix.
"""
import numbers

import numpy as np

from .. import arrays as _arrays
from .. import geometry as g
from .. import ops
from ..autodiff import functions as F
from ..autodiff import tape as _ad
from ..dtypes import accumulation_dtype
from .base_layer import Layer
from .reshaping import _recorded_crop

__all__ = ["Rescaling", "Resizing", "CenterCrop"]

_INTERPOLATIONS = ("bilinear", "nearest", "bicubic")
# Keras lists these; neither its torch backend nor gpuconv implements them.
_UNSUPPORTED_INTERPOLATIONS = ("lanczos3", "lanczos5")


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------
def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"Argument `{name}` must be a positive integer. Received: {name}={value!r}")
    if value > g.MAX_SIZE:
        raise ValueError(f"Argument `{name}` must be at most {g.MAX_SIZE}. Received: {name}={value!r}")
    return int(value)


def _flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"Argument `{name}` must be a boolean. Received: {name}={value!r}")
    return bool(value)


def _real(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"Argument `{name}` must be a real number. Received: {name}={value!r}")
    return value


def _factor_array(value, name):
    """``scale`` / ``offset`` as a real array (a number, a list or an array broadcasting over the
    trailing axes), or a ValueError naming the argument."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.dtype.kind not in "fiu" or arr.dtype == object:
        raise ValueError(
            f"Argument `{name}` must be a real number or a list/array of real numbers. Received: {name}={value!r}"
        )
    return arr


def _image_rank(shape, layer):
    if len(shape) not in (3, 4):
        raise ValueError(
            f"Layer '{layer.name}' expects an image tensor of rank 3 (single image) or 4 (batch of images). "
            f"Received: inputs.shape={tuple(shape)}"
        )


def _hw_axes(ndim, data_format):
    """The (height, width) axes of a rank-3 or rank-4 image tensor."""
    return (ndim - 2, ndim - 1) if data_format == "channels_first" else (ndim - 3, ndim - 2)


def _with_hw(shape, data_format, height, width):
    out = list(shape)
    h_ax, w_ax = _hw_axes(len(out), data_format)
    out[h_ax], out[w_ax] = height, width
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Taps: for each output cell of one axis, the input cells it reads and their weights
# --------------------------------------------------------------------------------------------
def _scale(in_len, out_len, ftype):
    """PyTorch's ``in / out`` in the interpolation's float type."""
    return ftype(in_len) / ftype(out_len)


def _nearest_taps(in_len, out_len, ftype):
    # nearest-exact: floorf((j + 0.5) * scale); the product is formed in double and rounded to
    # the float type before the floor (as PyTorch's floorf call does).
    scale = _scale(in_len, out_len, np.float32)
    src = ((np.arange(out_len, dtype=np.float64) + 0.5) * np.float64(scale)).astype(np.float32)
    idx = np.minimum(np.floor(src).astype(np.int64), in_len - 1)
    return idx[:, None], np.ones((out_len, 1), dtype=ftype)


def _source_positions(in_len, out_len, ftype, clamp_negative):
    """Half-pixel source positions ``scale * (j + 0.5) - 0.5``, in ``ftype`` arithmetic."""
    scale = _scale(in_len, out_len, ftype)
    src = scale * (np.arange(out_len).astype(ftype) + ftype(0.5)) - ftype(0.5)
    return np.maximum(src, ftype(0)) if clamp_negative else src


def _bilinear_taps(in_len, out_len, ftype):
    src = _source_positions(in_len, out_len, ftype, clamp_negative=True)
    lo = np.minimum(np.floor(src).astype(np.int64), in_len - 1)
    frac = np.clip(src - lo.astype(ftype), ftype(0), ftype(1))
    hi = lo + (lo < in_len - 1)
    return np.stack([lo, hi], axis=1), np.stack([ftype(1) - frac, frac], axis=1)


def _cubic_weights(t, a):
    """Keys' cubic convolution weights of the four taps at offsets -1, 0, 1, 2 from floor(x)."""
    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)


def _bicubic_taps(in_len, out_len, ftype):
    src = _source_positions(in_len, out_len, ftype, clamp_negative=False)  # cubic: not clamped
    base = np.floor(src)
    t = (src - base).astype(ftype)
    idx = np.clip(base.astype(np.int64)[:, None] + np.arange(-1, 3), 0, in_len - 1)
    return idx, _cubic_weights(t, ftype(-0.75)).astype(ftype)


def _triangle(x):
    x = np.abs(x)
    return np.where(x < 1, 1 - x, 0)


def _aa_cubic(x):
    a = -0.5  # the antialiased (PIL-style) bicubic uses a = -0.5
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0))


def _antialias_taps(in_len, out_len, ftype, interp_size, kernel):
    """PyTorch's antialiased weights: the filter stretched by the downscaling factor (support
    ``interp_size / 2 * scale``), sampled at the input centres it covers, normalised to sum 1.
    Cells with fewer taps than the widest get zero-weight taps marked by index -1."""
    scale = _scale(in_len, out_len, ftype)
    support = ftype(interp_size * 0.5) * scale if scale >= 1 else ftype(interp_size * 0.5)
    invscale = ftype(1) / scale if scale >= 1 else ftype(1)
    centers = scale * (np.arange(out_len).astype(ftype) + ftype(0.5))
    xmin = np.maximum((centers - support + ftype(0.5)).astype(np.int64), 0)
    xmax = np.minimum((centers + support + ftype(0.5)).astype(np.int64), in_len)
    width = int(max(1, (xmax - xmin).max()))
    j = np.arange(width)
    idx = xmin[:, None] + j
    valid = idx < xmax[:, None]
    w = kernel(((idx - centers[:, None] + ftype(0.5)) * invscale).astype(ftype)).astype(ftype)
    w = np.where(valid, w, ftype(0))
    total = w.sum(axis=1, keepdims=True, dtype=ftype)
    w = np.where(total != 0, w / np.where(total != 0, total, ftype(1)), w).astype(ftype)
    return np.where(valid, idx, -1), w


def _taps(interpolation, antialias, in_len, out_len, ftype):
    if interpolation == "nearest":
        return _nearest_taps(in_len, out_len, ftype)
    if antialias:
        if interpolation == "bilinear":
            return _antialias_taps(in_len, out_len, ftype, 2, _triangle)
        return _antialias_taps(in_len, out_len, ftype, 4, _aa_cubic)
    if interpolation == "bilinear":
        return _bilinear_taps(in_len, out_len, ftype)
    return _bicubic_taps(in_len, out_len, ftype)


# --------------------------------------------------------------------------------------------
# One resampling pass, recorded
# --------------------------------------------------------------------------------------------
def _along(arr, axis, ndim):
    shape = [1] * ndim
    shape[axis] = -1
    return arr.reshape(shape)


def _resample_axis(x, axis, idx, w):
    """``y[..., j, ...] = sum_t w[j, t] * x[..., idx[j, t], ...]`` along ``axis``; idx -1 marks an
    unused tap. Only the cells a tap names are read (a non-finite pixel reaches only the outputs
    that sample it, as in PyTorch). The gradient is the transposed interpolation matrix applied
    to the output gradient."""
    xp = _arrays.array_module(x)
    in_len = x.shape[axis]
    y = None
    for t in range(idx.shape[1]):
        used = idx[:, t] >= 0
        term = xp.take(x, xp.asarray(np.where(used, idx[:, t], 0)), axis=axis)
        term = term * _along(xp.asarray(w[:, t]), axis, x.ndim)
        if not used.all():
            term = xp.where(_along(xp.asarray(used), axis, x.ndim), term, xp.zeros((), dtype=term.dtype))
        y = term if y is None else y + term
    if _ad.recording(x):
        matrix = np.zeros((idx.shape[0], in_len), dtype=w.dtype)  # (out, in)
        rows = np.broadcast_to(np.arange(idx.shape[0])[:, None], idx.shape)
        used = idx >= 0
        np.add.at(matrix, (rows[used], idx[used]), w[used])

        def backward(gy):
            m = xp.asarray(matrix.astype(gy.dtype, copy=False))
            gx = xp.moveaxis(gy, axis, -1) @ m  # (..., out) @ (out, in)
            return (xp.moveaxis(gx, -1, axis),)

        _ad.record((x,), y, backward)
    return y


def _recorded_constant_pad(x, widths, value):
    y = _arrays.array_module(x).pad(x, widths, constant_values=x.dtype.type(value))
    if _ad.recording(x):
        index = tuple(slice(before, before + size) for (before, _), size in zip(widths, x.shape))
        _ad.record((x,), y, lambda gy: (gy[index],))
    return y


def _aspect_crop_box(height, width, target_height, target_width):
    """Keras' largest centred window of the target aspect ratio: (top, left, height, width)."""
    crop_height = max(min(height, int(float(width * target_height) / target_width)), 1)
    crop_width = max(min(width, int(float(height * target_width) / target_height)), 1)
    return int(float(height - crop_height) / 2), int(float(width - crop_width) / 2), crop_height, crop_width


def _aspect_pad_widths(height, width, target_height, target_width):
    """Keras' symmetric padding to the target aspect ratio: (rows each side, columns each side)."""
    pad_height = max(height, int(float(width * target_height) / target_width))
    pad_width = max(width, int(float(height * target_width) / target_height))
    return int(float(pad_height - height) / 2), int(float(pad_width - width) / 2)


def _integer_factor(in_len, out_len):
    return out_len // in_len if in_len and out_len % in_len == 0 else None


def resize_images(images, height, width, interpolation="bilinear", antialias=False, crop_to_aspect_ratio=False,
                  pad_to_aspect_ratio=False, fill_value=0.0, data_format="channels_last"):
    """Keras' torch-backend ``image.resize`` of a float rank-4 array (its own dtype throughout)."""
    h_ax, w_ax = _hw_axes(4, data_format)
    in_h, in_w = images.shape[h_ax], images.shape[w_ax]
    x = images
    if crop_to_aspect_ratio:
        top, left, ch, cw = _aspect_crop_box(in_h, in_w, height, width)
        index = [slice(None)] * 4
        index[h_ax], index[w_ax] = slice(top, top + ch), slice(left, left + cw)
        x = _recorded_crop(x, tuple(index))
    elif pad_to_aspect_ratio:
        rows, cols = _aspect_pad_widths(in_h, in_w, height, width)
        if rows or cols:
            widths = [(0, 0)] * 4
            widths[h_ax], widths[w_ax] = (rows, rows), (cols, cols)
            x = _recorded_constant_pad(x, widths, fill_value)
    src_h, src_w = x.shape[h_ax], x.shape[w_ax]
    if (src_h, src_w) == (height, width) and not antialias:
        return x  # every half-pixel formula maps a cell onto itself
    if x.size == 0:
        return _arrays.array_module(x).zeros(_with_hw(x.shape, data_format, height, width), dtype=x.dtype)
    factors = (_integer_factor(src_h, height), _integer_factor(src_w, width))
    if interpolation in ("nearest", "bilinear") and not antialias and None not in factors:
        return ops.upsampling_core(x, factors, interpolation, data_format)  # UpSampling2D's resampling
    ftype = np.float64 if x.dtype == np.float64 else np.float32
    # Width first, then height (PyTorch's order of the separable passes).
    for axis, out_len in ((w_ax, width), (h_ax, height)):
        if x.shape[axis] != out_len or antialias:
            idx, w = _taps(interpolation, antialias, x.shape[axis], out_len, ftype)
            x = _resample_axis(x, axis, idx, w.astype(x.dtype, copy=False))
    return x


def _saturate_cast(x, dtype):
    """A float result back in an integer (or bool) image dtype: rounded, clipped to the range."""
    if dtype == np.bool_:
        return x != 0
    info = np.iinfo(dtype)
    xp = _arrays.array_module(x)
    return xp.clip(xp.round(x), info.min, info.max).astype(dtype)


# --------------------------------------------------------------------------------------------
# Rescaling
# --------------------------------------------------------------------------------------------
def _serialize_factor(value):
    """Keras' config form: numbers and lists as they are, an ndarray as a '__numpy__' entry."""
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return value.item()
        return {"class_name": "__numpy__", "config": {"value": value.tolist(), "dtype": value.dtype.name}}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _deserialize_factor(value, name):
    """The inverse of ``_serialize_factor``; only the '__numpy__' entry is understood, with a
    numeric dtype name (nothing a config names is imported)."""
    if isinstance(value, tuple):
        return list(value)  # as Keras' deserialization does
    if not isinstance(value, dict):
        return value
    config = value.get("config")
    if value.get("class_name") != "__numpy__" or not isinstance(config, dict) or "value" not in config:
        raise ValueError(f"Argument `{name}` in a config must be a number, a list or a '__numpy__' entry. "
                         f"Received: {name}={value!r}")
    dtype = config.get("dtype", "float32")
    try:
        dtype = np.dtype(dtype) if isinstance(dtype, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "fiu":
        raise ValueError(f"The '__numpy__' entry of `{name}` names a non-numeric dtype. Received: {name}={value!r}")
    return np.asarray(_factor_array(config["value"], name), dtype=dtype)


class Rescaling(Layer):
    """``inputs * scale + offset`` in the compute dtype (integer inputs become floats).

    ``scale`` / ``offset`` are numbers or arrays broadcasting over the trailing axes (e.g. one
    per channel). With the global image data format 'channels_first', a non-scalar ``scale`` is
    reshaped to broadcast over a ``(channels, height, width)`` tail, as Keras does (``offset``
    is not: Keras leaves it as given).
    """

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self._scale = _factor_array(scale, "scale")
        self._offset = _factor_array(offset, "offset")
        self.scale = scale  # as given, for the config (a list stays a list)
        self.offset = offset

    def call(self, inputs):
        xp = _arrays.array_module(inputs)
        dtype = self.compute_dtype
        scale = self._scale.astype(dtype)
        if scale.ndim > 0 and g.image_data_format() == "channels_first":
            scale = scale.reshape(scale.shape + (1,) * (3 - scale.ndim))
        y = F.multiply(F.cast(inputs, dtype), xp.asarray(scale))
        return F.add(y, xp.asarray(self._offset.astype(dtype)))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": _serialize_factor(self.scale),
                "offset": _serialize_factor(self.offset)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("scale", "offset"):
            if key in config:
                config[key] = _deserialize_factor(config[key], key)
        return super().from_config(config, custom_objects=custom_objects)


# --------------------------------------------------------------------------------------------
# Resizing
# --------------------------------------------------------------------------------------------
class Resizing(Layer):
    """Resizes ``(batch,) height, width`` images to ``(height, width)``; see the module docstring
    for the interpolations. Float images come out in the compute dtype; integer images are
    resized in float32 and come back rounded and clipped in their own dtype (Keras)."""

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
                 pad_to_aspect_ratio=False, fill_mode="constant", fill_value=0.0, antialias=False,
                 data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.height = _positive_int(height, "height")
        self.width = _positive_int(width, "width")
        if interpolation in _UNSUPPORTED_INTERPOLATIONS:
            raise ValueError(
                "Resizing with Lanczos interpolation is not supported by gpuconv (nor by Keras' torch "
                f"backend). Received: interpolation={interpolation!r}"
            )
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"Invalid value for argument `interpolation`. Expected of one {_INTERPOLATIONS}. "
                f"Received: interpolation={interpolation!r}"
            )
        self.interpolation = interpolation
        self.crop_to_aspect_ratio = _flag(crop_to_aspect_ratio, "crop_to_aspect_ratio")
        self.pad_to_aspect_ratio = _flag(pad_to_aspect_ratio, "pad_to_aspect_ratio")
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise ValueError(
                "Only one of `pad_to_aspect_ratio` & `crop_to_aspect_ratio` can be `True`. Received: "
                f"crop_to_aspect_ratio={crop_to_aspect_ratio!r}, pad_to_aspect_ratio={pad_to_aspect_ratio!r}"
            )
        if fill_mode != "constant":
            raise ValueError(
                "Invalid value for argument `fill_mode`. Only `'constant'` is supported. "
                f"Received: fill_mode={fill_mode!r}"
            )
        self.fill_mode = fill_mode
        self.fill_value = _real(fill_value, "fill_value")
        self.antialias = _flag(antialias, "antialias")
        self.data_format = g.standardize_data_format(data_format)
        # Integer images keep their dtype (Keras autocasts only floats): the cast is done in call.
        self._cast_floats = self.autocast
        self.autocast = False

    def call(self, inputs):
        _image_rank(inputs.shape, self)
        dtype = inputs.dtype
        if dtype.kind == "f":
            target = self.compute_dtype if self._cast_floats else dtype
            x = F.cast(inputs, target)
        else:
            x = inputs.astype(np.float32)
        work = accumulation_dtype(x.dtype)  # half is resized in float32 (PyTorch CPU)
        out_dtype = x.dtype
        x = F.cast(x, work)
        batched = x.ndim == 4
        if not batched:
            x = F.expand_dims(x, 0)
        y = resize_images(x, self.height, self.width, self.interpolation, self.antialias,
                          self.crop_to_aspect_ratio, self.pad_to_aspect_ratio, self.fill_value, self.data_format)
        if not batched:
            y = F.squeeze(y, 0)
        if dtype.kind != "f":
            if self.interpolation == "bicubic" and dtype == np.uint8:
                y = _arrays.array_module(y).clip(y, 0, 255)
            return _saturate_cast(y, dtype)
        return F.cast(y, out_dtype)

    def compute_output_shape(self, input_shape):
        _image_rank(input_shape, self)
        return _with_hw(input_shape, self.data_format, self.height, self.width)

    def get_config(self):
        return {
            **super().get_config(),
            "data_format": self.data_format,
            "height": self.height,
            "width": self.width,
            "interpolation": self.interpolation,
            "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
            "pad_to_aspect_ratio": self.pad_to_aspect_ratio,
            "fill_mode": self.fill_mode,
            "fill_value": self.fill_value,
            "antialias": self.antialias,
        }


# --------------------------------------------------------------------------------------------
# CenterCrop
# --------------------------------------------------------------------------------------------
class CenterCrop(Layer):
    """The centred ``(height, width)`` window of each image, in the compute dtype. When the
    image is smaller than the target on either axis, Keras' ``smart_resize`` runs instead: the
    largest centred window of the target's aspect ratio, resized bilinearly to the target."""

    def __init__(self, height, width, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.height = _positive_int(height, "height")
        self.width = _positive_int(width, "width")
        self.data_format = g.standardize_data_format(data_format)

    def call(self, inputs):
        _image_rank(inputs.shape, self)
        h_ax, w_ax = _hw_axes(inputs.ndim, self.data_format)
        h_diff = inputs.shape[h_ax] - self.height
        w_diff = inputs.shape[w_ax] - self.width
        if h_diff >= 0 and w_diff >= 0:
            index = [slice(None)] * inputs.ndim
            index[h_ax] = slice(h_diff // 2, h_diff // 2 + self.height)
            index[w_ax] = slice(w_diff // 2, w_diff // 2 + self.width)
            return _recorded_crop(inputs, tuple(index))
        x = inputs if inputs.ndim == 4 else F.expand_dims(inputs, 0)
        out_dtype = x.dtype
        x = F.cast(x, accumulation_dtype(x.dtype))
        y = resize_images(x, self.height, self.width, "bilinear", crop_to_aspect_ratio=True,
                          data_format=self.data_format)
        y = F.cast(y, out_dtype)
        return y if inputs.ndim == 4 else F.squeeze(y, 0)

    def compute_output_shape(self, input_shape):
        input_shape = list(input_shape)
        if (input_shape and isinstance(input_shape[0], (list, tuple))) or len(input_shape) not in (3, 4):
            raise ValueError(
                "`input_shape` must be a non-nested tuple or list of rank-1 with size 3 (unbatched) or 4 (batched). "
            )
        return _with_hw(input_shape, self.data_format, self.height, self.width)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format, "height": self.height, "width": self.width}

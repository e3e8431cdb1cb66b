"""Cropping1D/2D/3D, ZeroPadding1D/2D/3D, UpSampling1D/2D/3D (keras_spec 2.6-2.8).

Cropping and zero padding are slices / ``xp.pad`` on the input's array module; upsampling goes
through ``ops.upsampling_core`` (nearest repeat, bilinear for 2-D, trilinear for 3-D).

Beyond Keras: ``UpSampling3D(interpolation='nearest'|'trilinear')`` (tensorflow/tensorflow#46609).
With the default 'nearest' the config is exactly Keras' (no ``interpolation`` key); the key
appears only for 'trilinear'.
"""
from .. import arrays as _arrays
from .. import geometry as g
from .. import ops
from ..autodiff import tape as _ad
from .base_layer import InputSpec, Layer

__all__ = [
    "Cropping1D", "Cropping2D", "Cropping3D",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D",
]

_ORDINALS = ("1st", "2nd", "3rd")


def _pairs(value, rank, name, symmetric_hint):
    """Keras' normalisation of a cropping/padding argument to ``rank`` (before, after) pairs.

    An int is symmetric on every axis; a negative one is refused with Keras' cropping text (Keras
    accepts a negative int padding and then reports negative output sizes; we refuse it as Keras
    refuses a negative entry in any other form). A length-``rank`` sequence holds one int or pair
    per axis; anything else gets Keras' long message, whose wording ``symmetric_hint`` carries.
    """
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"`{name}` cannot be negative. Received: {name}={value}.")
        if value > g.MAX_SIZE:  # sizes are checked before any work (the tuple forms go through standardize_tuple)
            raise ValueError(f"`{name}` must be at most {g.MAX_SIZE}. Received: {name}={value}.")
        return ((value, value),) * rank
    if hasattr(value, "__len__"):
        if len(value) != rank:
            if rank == 2:
                raise ValueError(f"`{name}` should have two elements. Received: {name}={value}.")
            raise ValueError(f"`{name}` should have {rank} elements. Received: {value}.")
        return tuple(
            g.standardize_tuple(v, 2, f"{_ORDINALS[i]} entry of {name}", allow_zero=True) for i, v in enumerate(value)
        )
    raise ValueError(f"`{name}` should be either an int, {symmetric_hint}Received: {name}={value}.")


_CROP_HINT = {
    2: "a tuple of 2 ints (symmetric_height_crop, symmetric_width_crop), or a tuple of 2 tuples of 2 ints "
       "((top_crop, bottom_crop), (left_crop, right_crop)). ",
    3: "a tuple of 3 ints (symmetric_dim1_crop, symmetric_dim2_crop, symmetric_dim3_crop), or a tuple of 3 "
       "tuples of 2 ints ((left_dim1_crop, right_dim1_crop), (left_dim2_crop, right_dim2_crop), "
       "(left_dim3_crop, right_dim2_crop)). ",
}
# Keras' ZeroPadding2D message copy-pastes the cropping wording; kept so messages match.
_PAD_HINT = {
    2: _CROP_HINT[2],
    3: "a tuple of 3 ints (symmetric_dim1_pad, symmetric_dim2_pad, symmetric_dim3_pad), or a tuple of 3 "
       "tuples of 2 ints ((left_dim1_pad, right_dim1_pad), (left_dim2_pad, right_dim2_pad), "
       "(left_dim3_pad, right_dim2_pad)). ",
}


def _spatial_axes(rank, data_format):
    first = 1 if data_format == "channels_last" else 2
    return tuple(range(first, first + rank))


def _recorded_crop(inputs, index):
    """``inputs[index]``; on a tape, the gradient is the output gradient placed back in zeros."""
    y = inputs[index]
    if _ad.recording(inputs):
        xp, shape = _arrays.array_module(inputs), inputs.shape

        def backward(g):
            full = xp.zeros(shape, dtype=g.dtype)
            full[index] = g
            return (full,)

        _ad.record((inputs,), y, backward)
    return y


def _recorded_pad(inputs, widths):
    """Zero padding; on a tape, the gradient is the output gradient without the padded cells."""
    y = _arrays.array_module(inputs).pad(inputs, widths)
    if _ad.recording(inputs):
        index = tuple(slice(before, before + size) for (before, _), size in zip(widths, inputs.shape))
        _ad.record((inputs,), y, lambda g: (g[index],))
    return y


# --------------------------------------------------------------------------------------------
# Cropping
# --------------------------------------------------------------------------------------------

def _refuse_data_format(layer, kwargs):
    """Cropping1D/UpSampling1D take no data_format in Keras; passing one is an unknown kwarg there."""
    if "data_format" in kwargs:
        raise ValueError(
            f"Unrecognized keyword arguments passed to {type(layer).__name__}: {{'data_format': {kwargs['data_format']!r}}}"
        )

class BaseCropping(Layer):
    def __init__(self, rank, cropping, data_format, **kwargs):
        super().__init__(**kwargs)
        self.rank = rank
        self.data_format = g.standardize_data_format(data_format)
        if rank == 1:  # Keras stores a flat pair here
            self.cropping = g.standardize_tuple(cropping, 2, "cropping", allow_zero=True)
        else:
            self.cropping = _pairs(cropping, rank, "cropping", _CROP_HINT[rank])
        self.input_spec = InputSpec(ndim=rank + 2)

    @property
    def _pairs(self):
        return (self.cropping,) if self.rank == 1 else self.cropping

    def _too_large(self, shape, what):
        raise ValueError(
            "Values in `cropping` argument should be smaller than the corresponding spatial dimension "
            f"of the input. Received: {what}={shape}, cropping={self.cropping}"
        )

    def _check(self, shape, what):
        for axis, crop in zip(_spatial_axes(self.rank, self.data_format), self._pairs):
            if shape[axis] is not None and sum(crop) >= shape[axis]:
                self._too_large(shape, what)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        self._check(input_shape, "input_shape")
        out = list(input_shape)
        for axis, (before, after) in zip(_spatial_axes(self.rank, self.data_format), self._pairs):
            if out[axis] is not None:
                out[axis] -= before + after
        return tuple(out)

    def call(self, inputs):
        self._check(tuple(inputs.shape), "inputs.shape")
        index = [slice(None)] * inputs.ndim
        for axis, (before, after) in zip(_spatial_axes(self.rank, self.data_format), self._pairs):
            index[axis] = slice(before, inputs.shape[axis] - after)
        return _recorded_crop(inputs, tuple(index))

    def get_config(self):
        config = super().get_config()
        config.update({"cropping": self.cropping, "data_format": self.data_format})
        return config


class Cropping1D(BaseCropping):
    """Crops axis 1 of ``(batch, steps, features)``; no data_format argument (Keras)."""

    def __init__(self, cropping=(1, 1), **kwargs):
        _refuse_data_format(self, kwargs)
        super().__init__(1, cropping, "channels_last", **kwargs)

    def _too_large(self, shape, what):
        raise ValueError(
            "`cropping` parameter of `Cropping1D` layer must be smaller than the input length. "
            f"Received: {what}={shape}, cropping={self.cropping}"
        )

    def get_config(self):
        config = super().get_config()
        del config["data_format"]
        return config


class Cropping2D(BaseCropping):
    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(2, cropping, data_format, **kwargs)


class Cropping3D(BaseCropping):
    def __init__(self, cropping=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(3, cropping, data_format, **kwargs)


# --------------------------------------------------------------------------------------------
# Zero padding
# --------------------------------------------------------------------------------------------
class BaseZeroPadding(Layer):
    """Pads spatial axes with zeros. Every padding is >= 0 (checked at construction), so the
    output is never smaller than the input."""

    def __init__(self, rank, padding, data_format, **kwargs):
        super().__init__(**kwargs)
        self.rank = rank
        self.data_format = g.standardize_data_format(data_format)
        if rank == 1:
            self.padding = g.standardize_tuple(padding, 2, "padding", allow_zero=True)
        else:
            self.padding = _pairs(padding, rank, "padding", _PAD_HINT[rank])
        self.input_spec = InputSpec(ndim=rank + 2)

    @property
    def _pairs(self):
        return (self.padding,) if self.rank == 1 else self.padding

    def compute_output_shape(self, input_shape):
        out = list(input_shape)
        for axis, (before, after) in zip(_spatial_axes(self.rank, self.data_format), self._pairs):
            if out[axis] is not None:
                if out[axis] < 0:  # so no negative size is ever reported
                    raise ValueError(
                        f"Cannot convert '{tuple(input_shape)}' to a shape. Negative dimensions are not allowed."
                    )
                out[axis] += before + after
        return tuple(out)

    def call(self, inputs):
        widths = [(0, 0)] * inputs.ndim
        for axis, pair in zip(_spatial_axes(self.rank, self.data_format), self._pairs):
            widths[axis] = pair
        return _recorded_pad(inputs, widths)

    def get_config(self):
        config = super().get_config()
        config.update({"padding": self.padding, "data_format": self.data_format})
        return config


class ZeroPadding1D(BaseZeroPadding):
    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(1, padding, data_format, **kwargs)


class ZeroPadding2D(BaseZeroPadding):
    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(2, padding, data_format, **kwargs)


class ZeroPadding3D(BaseZeroPadding):
    def __init__(self, padding=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(3, padding, data_format, **kwargs)


# --------------------------------------------------------------------------------------------
# Upsampling
# --------------------------------------------------------------------------------------------
class BaseUpSampling(Layer):
    def __init__(self, rank, size, data_format, interpolation, **kwargs):
        super().__init__(**kwargs)
        self.rank = rank
        self.data_format = g.standardize_data_format(data_format)
        self.size = g.standardize_tuple(size, rank, "size")
        self.interpolation = interpolation.lower() if isinstance(interpolation, str) else interpolation
        self.input_spec = InputSpec(ndim=rank + 2)

    def call(self, inputs):
        return ops.upsampling_core(inputs, self.size, self.interpolation, self.data_format)

    def compute_output_shape(self, input_shape):
        out = list(input_shape)
        for axis, s in zip(_spatial_axes(self.rank, self.data_format), self.size):
            if out[axis] is not None:
                out[axis] *= s
        return tuple(out)

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "data_format": self.data_format})
        return config


class UpSampling1D(BaseUpSampling):
    """Repeats axis 1 of ``(batch, steps, features)`` ``size`` times (Keras: int size, no data_format)."""

    def __init__(self, size=2, **kwargs):
        _refuse_data_format(self, kwargs)
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError(f"Expected an integer value for `size`, got {type(size)}.")
        if size <= 0:
            raise ValueError(f"Argument `size` should be a positive integer. Received: size={size}")
        super().__init__(1, size, "channels_last", "nearest", **kwargs)
        self.size = size  # Keras keeps the int

    def call(self, inputs):
        return ops.upsampling_core(inputs, (self.size,), "nearest", "channels_last")

    def compute_output_shape(self, input_shape):
        # A list, as Keras returns here.
        return [input_shape[0], None if input_shape[1] is None else input_shape[1] * self.size, input_shape[2]]

    def get_config(self):
        config = super().get_config()
        del config["data_format"]
        return config


class UpSampling2D(BaseUpSampling):
    """interpolation 'nearest' | 'bilinear' (half-pixel centres); lowercased at init, checked at call (Keras)."""

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(2, size, data_format, interpolation, **kwargs)

    def get_config(self):
        config = super().get_config()
        config["interpolation"] = self.interpolation
        return config


class UpSampling3D(BaseUpSampling):
    """interpolation 'nearest' (Keras) | 'trilinear' (ours); checked at construction, since no Keras
    code can depend on a late failure of an argument Keras does not have."""

    _INTERPOLATIONS = ("nearest", "trilinear")

    def __init__(self, size=(2, 2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(3, size, data_format, interpolation, **kwargs)
        if self.interpolation not in self._INTERPOLATIONS:
            raise ValueError(
                f"Invalid value for argument `interpolation`. Expected of one {self._INTERPOLATIONS}. "
                f"Received: interpolation={interpolation}"
            )

    def get_config(self):
        config = super().get_config()
        if self.interpolation != "nearest":  # beyond Keras: absent at the default
            config["interpolation"] = self.interpolation
        return config
